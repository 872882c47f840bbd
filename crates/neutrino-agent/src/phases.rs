//! Where a reconcile's time goes: named phases measured one after another, logged at debug
//! level under the target `reconcile_phases` (`RUST_LOG=info,reconcile_phases=debug`).

use std::fmt;
use std::time::{Duration, Instant};

/// The phases of one reconcile so far.
pub struct Phases {
    started: Instant,
    last: Instant,
    spent: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Starts timing.
    pub fn start() -> Phases {
        let now = Instant::now();
        Phases {
            started: now,
            last: now,
            spent: Vec::new(),
        }
    }

    /// Ends the phase `name`, which began at the previous mark.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.spent.push((name, now - self.last));
        self.last = now;
    }

    /// Time since the start.
    pub fn total(&self) -> Duration {
        self.started.elapsed()
    }
}

impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} ms:", self.total().as_secs_f64() * 1e3)?;
        for (name, spent) in &self.spent {
            write!(f, " {name} {:.1}", spent.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_listed_in_order_with_the_total_first() {
        let mut p = Phases::start();
        p.mark("observe");
        p.mark("apply");
        let shown = p.to_string();
        assert!(shown.ends_with(" ms: observe 0.0 apply 0.0"), "{shown}");
        assert!(p.total() >= p.spent.iter().map(|(_, d)| *d).sum());
    }
}
