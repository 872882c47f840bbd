//! The health prober of service functions (see `neutrino_sfc::probe`): one thread that,
//! every probe period, sends one UDP probe per pair from the agent's probe namespace, reads
//! the counters of the probes that came through and the carrier of the functions' taps, and
//! tells the agent when a pair's health changes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neutrino_sfc::probe::{Probe, Tracker, Verdict, INTERVAL_MS, PORT};
use tokio::sync::mpsc;

use crate::kernel::Kernel;

/// A pair the prober watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// Port pair id.
    pub pair: String,
    /// Its ports plugged here: (role, port id, tap).
    pub taps: Vec<(&'static str, String, String)>,
    /// Its probe, when both ports are here.
    pub probe: Option<Probe>,
}

/// A verdict: `(pair id, healthy, detail)`.
pub type Health = (String, bool, String);

/// What the thread works from.
#[derive(Default)]
struct Targets {
    pairs: Vec<Watched>,
    /// The probe namespace was (re)created: sockets must be opened there again.
    generation: u64,
}

/// Handle of the prober thread.
pub struct Prober {
    targets: Arc<Mutex<Targets>>,
}

impl Prober {
    /// Starts the thread; verdicts that change arrive on the returned channel.
    pub fn start(
        kernel: Arc<dyn Kernel>,
        probe_netns: String,
    ) -> (Prober, mpsc::UnboundedReceiver<Vec<Health>>) {
        let targets = Arc::new(Mutex::new(Targets::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        // Two threads: the sender lives in the probe namespace; the reader must not (the
        // commands it runs inherit its namespace).
        let shared = targets.clone();
        let sender = std::thread::Builder::new()
            .name("sfc-probe-send".into())
            .spawn(move || send_loop(probe_netns, shared));
        let shared = targets.clone();
        let reader = std::thread::Builder::new()
            .name("sfc-prober".into())
            .spawn(move || judge_loop(kernel, shared, tx));
        if let Err(e) = sender.and(reader) {
            tracing::warn!(error = %e, "cannot start the SFC prober");
        }
        (Prober { targets }, rx)
    }

    /// Replaces what is watched; `recreated`: the probe namespace is new.
    pub fn watch(&self, pairs: Vec<Watched>, recreated: bool) {
        if let Ok(mut t) = self.targets.lock() {
            t.pairs = pairs;
            if recreated {
                t.generation += 1;
            }
        }
    }
}

/// Every period: one probe per probed pair, from the probe namespace.
fn send_loop(probe_netns: String, targets: Arc<Mutex<Targets>>) {
    let mut sockets: BTreeMap<u16, UdpSocket> = BTreeMap::new();
    let mut generation = None;
    loop {
        std::thread::sleep(Duration::from_millis(INTERVAL_MS));
        let (pairs, gen) = match targets.lock() {
            Ok(t) => (t.pairs.clone(), t.generation),
            Err(_) => return,
        };
        if pairs.iter().all(|w| w.probe.is_none()) {
            continue;
        }
        if generation != Some(gen) {
            sockets.clear();
            match enter(&probe_netns) {
                Ok(()) => generation = Some(gen),
                Err(e) => {
                    tracing::debug!(error = %e, netns = %probe_netns, "probe namespace not ready");
                    continue;
                }
            }
        }
        send(&pairs, &mut sockets);
    }
}

/// Every period: the probes counted and the carrier of the taps → verdicts; the changed
/// ones go to the agent.
fn judge_loop(
    kernel: Arc<dyn Kernel>,
    targets: Arc<Mutex<Targets>>,
    tx: mpsc::UnboundedSender<Vec<Health>>,
) {
    let start = Instant::now();
    let mut tracker = Tracker::default();
    let mut reported: BTreeMap<String, (bool, String)> = BTreeMap::new();
    loop {
        std::thread::sleep(Duration::from_millis(INTERVAL_MS));
        let pairs = match targets.lock() {
            Ok(t) => t.pairs.clone(),
            Err(_) => return,
        };
        if pairs.is_empty() {
            reported.clear();
            continue;
        }
        let counters = probe_counters(kernel.as_ref(), &pairs);
        let links = kernel.links().unwrap_or_default();
        let alive = tracker.update(start.elapsed().as_millis() as u64, &counters);
        let mut changed = Vec::new();
        for w in &pairs {
            let dead_ports: Vec<String> = w
                .taps
                .iter()
                .filter(|(_, _, tap)| !links.get(tap).is_some_and(|l| l.carrier))
                .map(|(role, port, tap)| format!("{role} port {port} ({tap}) has no carrier"))
                .collect();
            let verdict = if !dead_ports.is_empty() {
                (false, dead_ports.join("; "))
            } else {
                match alive.get(&w.pair) {
                    // Its first probes are on their way: what was said stands.
                    Some(Verdict::Pending) => continue,
                    Some(Verdict::Dead) => (
                        false,
                        format!(
                            "probes (UDP to port {PORT}) sent to its ingress port stopped \
                             coming out of its egress port"
                        ),
                    ),
                    Some(Verdict::Unproven) => (
                        true,
                        "no probe has come through it yet: judged by the carrier of its \
                         ports until one does"
                            .to_string(),
                    ),
                    _ => (true, String::new()),
                }
            };
            if reported.get(&w.pair) != Some(&verdict) {
                reported.insert(w.pair.clone(), verdict.clone());
                changed.push((w.pair.clone(), verdict.0, verdict.1));
            }
        }
        reported.retain(|pair, _| pairs.iter().any(|w| &w.pair == pair));
        if !changed.is_empty() && tx.send(changed).is_err() {
            return;
        }
    }
}

/// Moves this thread into a named network namespace (`/run/netns/<name>`).
pub(crate) fn enter(netns: &str) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let file = std::fs::File::open(format!("/run/netns/{netns}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(())
}

fn send(pairs: &[Watched], sockets: &mut BTreeMap<u16, UdpSocket>) {
    for probe in pairs.iter().filter_map(|w| w.probe.as_ref()) {
        let socket = match sockets.entry(probe.source_port) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                match UdpSocket::bind(SocketAddr::new(probe.source, probe.source_port)) {
                    Ok(s) => e.insert(s),
                    Err(err) => {
                        tracing::debug!(error = %err, "cannot open a probe socket");
                        continue;
                    }
                }
            }
        };
        // A socket bound to the other family: open it again next round.
        if socket.local_addr().ok().map(|a| a.ip()) != Some(probe.source) {
            sockets.remove(&probe.source_port);
            continue;
        }
        let _ = socket.send_to(&probe.payload(), SocketAddr::new(probe.destination, PORT));
    }
}

/// Probes counted per probed pair (0 when its counter is missing).
fn probe_counters(kernel: &dyn Kernel, pairs: &[Watched]) -> BTreeMap<String, u64> {
    let counters = kernel.sfc_counters().unwrap_or_default();
    pairs
        .iter()
        .filter_map(|w| w.probe.as_ref())
        .map(|p| {
            let n = counters.get(&p.key()).map_or(0, |(packets, _)| *packets);
            (p.pair.clone(), n)
        })
        .collect()
}
