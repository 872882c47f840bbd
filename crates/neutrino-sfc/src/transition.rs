//! Live changes without loss across hosts: make before break.
//!
//! A chain change reaches every agent at about the same time, but not at exactly the same
//! time, and a loaded host may apply it seconds later than the others. If the host that
//! classifies switches its traffic to a new path before the host of a new function has the
//! rules that take the traffic on after it, packets are lost there; if a function's host
//! drops its part of an old path while a classifier still sends into it, the same. So an
//! agent whose chains span hosts applies a change in three steps:
//! 1. [`transition`]: the new paths are added and the old ones kept; entries still lead into
//!    the old paths. The agent then acknowledges the revision and waits until the other
//!    hosts of its chains have acknowledged it too (they have their new paths), bounded.
//! 2. [`switched`]: the entries switch to the new paths; the old paths stay, because another
//!    host's entries may still lead into them for a moment.
//! 3. After a grace period in which every other agent has switched too, the new table
//!    itself, which removes what is no longer used.
//!
//! Entries are the classifier chains (`cls-…`) and the steering ports' egress chains
//! (`egr-sfs…`): where a flow is first matched or matched again. In the first step they keep
//! their old version when they had one; device base chains (`dev-…`) keep the dispatch jumps
//! of both versions; every other chain takes its new version, and chains, sets, maps and
//! counters that only the old table had stay.

use crate::table::{Chain, Rule, Table};

/// Whether a chain is an entry: its old version is kept until the second step.
fn is_entry(name: &str) -> bool {
    name.starts_with("cls-") || name.starts_with("egr-sfs")
}

/// Whether a rule of a device base chain is a dispatch jump (`jump cls-…`).
fn is_dispatch(rule: &Rule) -> bool {
    rule.text.starts_with("jump cls-")
}

/// The table of the first step from `old` (the last table applied) to `new`: equal to
/// `new` when nothing needs to wait.
pub fn transition(old: &Table, new: &Table) -> Table {
    if !old.present || !new.present {
        return new.clone();
    }
    let mut t = new.clone();
    for (name, was) in &old.chains {
        match t.chains.get_mut(name) {
            None => {
                t.chains.insert(name.clone(), was.clone());
            }
            Some(now) if is_entry(name) => *now = was.clone(),
            Some(now) if name.starts_with("dev-") => *now = both_dispatches(was, now),
            Some(_) => {}
        }
    }
    for (name, set) in &old.sets {
        t.sets.entry(name.clone()).or_insert_with(|| set.clone());
    }
    t.counters.extend(old.counters.iter().cloned());
    t
}

/// The table of the second step from `old` (the last table applied) to `new`: entries and
/// device base chains as in `new`, the paths (chains, sets, counters) only `old` had kept.
/// Equal to `new` when nothing is removed.
pub fn switched(old: &Table, new: &Table) -> Table {
    if !old.present || !new.present {
        return new.clone();
    }
    let mut t = new.clone();
    for (name, was) in &old.chains {
        if !is_entry(name) && !name.starts_with("dev-") {
            t.chains.entry(name.clone()).or_insert_with(|| was.clone());
        }
    }
    for (name, set) in &old.sets {
        t.sets.entry(name.clone()).or_insert_with(|| set.clone());
    }
    t.counters.extend(old.counters.iter().cloned());
    t
}

/// A device base chain as in its new version, with the dispatch jumps only the old version
/// had added before the new version's first jump (or before its guards, when it has none).
fn both_dispatches(was: &Chain, now: &Chain) -> Chain {
    let gone: Vec<Rule> = was
        .rules
        .iter()
        .filter(|r| is_dispatch(r) && !now.rules.iter().any(|n| n.comment == r.comment))
        .cloned()
        .collect();
    let mut rules = now.rules.clone();
    let at = rules.iter().position(is_dispatch).unwrap_or_else(|| {
        rules
            .iter()
            .position(|r| !r.comment.starts_with("probe"))
            .unwrap_or(rules.len())
    });
    rules.splice(at..at, gone);
    Chain {
        hook: now.hook.clone(),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Hook;

    fn chain(rules: &[(&str, &str)]) -> Chain {
        Chain {
            hook: None,
            rules: rules.iter().map(|(k, t)| Rule::new(k, *t)).collect(),
        }
    }

    fn table(chains: Vec<(&str, Chain)>) -> Table {
        Table {
            present: true,
            chains: chains
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            sets: Default::default(),
            counters: Default::default(),
        }
    }

    #[test]
    fn entries_stay_old_new_paths_come_old_paths_stay() {
        let mut dev_old = chain(&[("c1", "jump cls-1-tapa"), ("foreign", "drop")]);
        dev_old.hook = Some(Hook::Ingress("tapa".into()));
        let mut dev_new = chain(&[("c2", "jump cls-2-tapa"), ("foreign", "drop")]);
        dev_new.hook = Some(Hook::Ingress("tapa".into()));
        let old = table(vec![
            ("cls-1-tapa", chain(&[("fc", "goto h-1-1-f")])),
            ("dev-tapa-3", dev_old),
            ("h-1-1-f", chain(&[("x", "goto m-1-1-a-f")])),
        ]);
        let new = table(vec![
            ("cls-1-tapa", chain(&[("fc", "goto h-1-0-f")])),
            ("cls-2-tapa", chain(&[("fc", "goto h-2-1-f")])),
            ("dev-tapa-3", dev_new),
            ("h-1-0-f", chain(&[("x", "goto m-1-0-b-f")])),
        ]);
        let t = transition(&old, &new);
        assert_eq!(t.chains["cls-1-tapa"], old.chains["cls-1-tapa"]);
        assert_eq!(t.chains["cls-2-tapa"], new.chains["cls-2-tapa"]);
        assert!(t.chains.contains_key("h-1-1-f") && t.chains.contains_key("h-1-0-f"));
        let dev: Vec<&str> = t.chains["dev-tapa-3"]
            .rules
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(dev, ["jump cls-1-tapa", "jump cls-2-tapa", "drop"]);
        // Nothing to wait for: the same table.
        assert_eq!(transition(&new, &new), new);

        // The switch: entries and device chains new, the old path still there.
        let s = switched(&old, &new);
        assert_eq!(s.chains["cls-1-tapa"], new.chains["cls-1-tapa"]);
        assert_eq!(s.chains["dev-tapa-3"], new.chains["dev-tapa-3"]);
        assert_eq!(s.chains["h-1-1-f"], old.chains["h-1-1-f"]);
        assert!(s.chains.contains_key("h-1-0-f"));
        // A classifier gone: its entry goes at the switch, with its dispatch.
        let gone = table(vec![("dev-tapa-3", new.chains["dev-tapa-3"].clone())]);
        assert!(!switched(&new, &gone).chains.contains_key("cls-2-tapa"));
        assert_eq!(switched(&new, &new), new);
    }
}
