//! Health probes: does a function really forward?
//!
//! The agent keeps a small namespace of its own whose veth end `sfqprobe` (in the host's
//! dataplane namespace, on no bridge) sends, every [`INTERVAL_MS`], one UDP datagram per local
//! port pair: from [`SOURCE_V4`] / [`SOURCE_V6`], source port the pair's own, to
//! [`PORT`] at an address the pair's chain sends to (its classifier's logical destination
//! port or destination prefix; else [`FALLBACK_V4`] / [`FALLBACK_V6`]). A pair in no chain
//! is not probed (only its carrier counts). The steering table
//! rewrites its destination MAC to the pair's ingress port and forwards it there, exactly
//! like steered traffic, so a bump in the wire forwards it unchanged and a routed function
//! routes it toward that destination. Where it leaves the function (the egress port's tap)
//! the table recognises it by its payload ([`MAGIC`], then the pair's probe number: a
//! function that translates addresses or ports leaves those alone), counts it in the pair's
//! named counter `probe-<pair>` and drops it, before anything else: a probe never reaches an
//! instance or the bridge.
//!
//! A pair keeps its probe number (and so its source port, its send rule and its counter) for
//! as long as it is probed: [`assign`] reuses the numbers the table in force gives
//! ([`numbers`]) and hands new pairs the lowest free ones, so a pair joining or leaving a
//! chain changes only its own probe objects and its send chain ([`SEND_CHAINS`]).
//!
//! A pair whose counter stops moving is dead ([`Tracker`]); a port without carrier is dead
//! at once. Pairs only in tap groups are not probed (a tap function forwards nothing). The agent reports the verdicts; the server marks the pair
//! (`neutrino:health`), and every host takes it out of its group.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// UDP destination port of probes (the single-hop BFD port).
pub const PORT: u16 = 3784;
/// First source port of probes (source port = this + the pair's probe number).
pub const FIRST_SOURCE_PORT: u16 = 49152;
/// Probe numbers available (source ports up to 65535).
pub const NUMBERS: u16 = u16::MAX - FIRST_SOURCE_PORT + 1;
/// Source address of IPv4 probes.
pub const SOURCE_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 77);
/// Source address of IPv6 probes (unique local: link-local sources are never routed).
pub const SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0xfd5f, 0x5350, 0x7072, 0, 0, 0, 0, 1);
/// Destination when the pair's chains name none (IPv4).
pub const FALLBACK_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Destination when the pair's chains name none (IPv6).
pub const FALLBACK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// First 8 bytes of a probe's UDP payload ("NTRNPRBE"); the probe number (16 bits, big
/// endian) follows, then the pair id as text.
pub const MAGIC: u64 = 0x4e54_524e_5052_4245;
/// The device probes enter the steering table by.
pub const DEVICE: &str = "sfqprobe";
/// Probe period.
pub const INTERVAL_MS: u64 = 100;
/// A pair whose probes have not come through for this long is dead.
pub const DEAD_AFTER_MS: u64 = 400;
/// Send chains: the probe device's ingress jumps by `source port % SEND_CHAINS` (a rule
/// that never changes) to one of them, which holds the rules of its pairs. A pair joining or
/// leaving rewrites one short chain, and no map element is touched (an element change makes
/// nft 1.0.6 read every set's elements first: ~0.4 s with 1,000 chains).
pub const SEND_CHAINS: u16 = 64;

/// The send chain of a probe number.
pub fn send_chain(number: u16) -> String {
    format!("psend-{}", number % SEND_CHAINS)
}

/// Key of a pair's send rule: its number and pair id (read back by [`numbers`]).
pub fn send_key(number: u16, pair: &str) -> String {
    format!("p{number}-{pair}")
}

/// The probe numbers the table gives its pairs (from the keys of the send rules).
pub fn numbers(table: &crate::table::Table) -> BTreeMap<String, u16> {
    table
        .chains
        .iter()
        .filter(|(name, _)| name.starts_with("psend-"))
        .flat_map(|(_, chain)| &chain.rules)
        .filter_map(|rule| {
            let key = rule.comment.split('#').next()?;
            let (number, pair) = key.strip_prefix('p')?.split_once('-')?;
            Some((pair.to_string(), number.parse().ok()?))
        })
        .collect()
}

/// Probe numbers of `pairs`: the one in `previous` when a pair has one (and no other pair
/// took it first), else the lowest free number; pairs beyond [`NUMBERS`] get none.
pub fn assign<'a>(
    pairs: impl IntoIterator<Item = &'a str>,
    previous: &BTreeMap<String, u16>,
) -> BTreeMap<String, u16> {
    let pairs: Vec<&str> = pairs.into_iter().collect();
    let mut taken = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for pair in &pairs {
        if let Some(n) = previous.get(*pair).filter(|n| **n < NUMBERS) {
            if taken.insert(*n) {
                out.insert(pair.to_string(), *n);
            }
        }
    }
    let mut free = (0..NUMBERS).filter(|n| !taken.contains(n));
    for pair in pairs {
        if out.contains_key(pair) {
            continue;
        }
        let Some(n) = free.next() else { break };
        out.insert(pair.to_string(), n);
    }
    out
}

/// One pair to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Port pair id.
    pub pair: String,
    /// Its number on this host (in its payload).
    pub number: u16,
    /// Its UDP source port.
    pub source_port: u16,
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
}

impl Probe {
    /// Name of its counter (and key of its counting rule).
    pub fn key(&self) -> String {
        format!("probe-{}", self.pair)
    }

    /// The UDP payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = MAGIC.to_be_bytes().to_vec();
        p.extend(self.number.to_be_bytes());
        p.extend(self.pair.as_bytes());
        p
    }
}

/// Probes seen through per pair over time → health.
///
/// A pair is judged by its probes only once one has come through (after the agent started
/// or the pair's counter was made): a function that never forwards its probes (a routed
/// function with no route to the probe's destination) keeps the verdict of its carrier
/// instead of being declared dead from the start. A pair just (re)probed is [`Verdict::Pending`]
/// for [`DEAD_AFTER_MS`]: its first probes are on their way, nothing is to be said yet.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Pair → (last counter value, ms of the last change or first sight, one came through,
    /// ms of the first sight).
    seen: BTreeMap<String, (u64, u64, bool, u64)>,
}

/// What the probes say about a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Probes come through.
    Forwards,
    /// Probes came through before and stopped.
    Dead,
    /// No probe has come through yet, for longer than a probe needs.
    Unproven,
    /// Probed since less than [`DEAD_AFTER_MS`], no probe through yet: keep what was said.
    Pending,
}

impl Tracker {
    /// Feeds the counters read at `now_ms` (pair → probes counted).
    pub fn update(
        &mut self,
        now_ms: u64,
        counters: &BTreeMap<String, u64>,
    ) -> BTreeMap<String, Verdict> {
        self.seen.retain(|pair, _| counters.contains_key(pair));
        counters
            .iter()
            .map(|(pair, n)| {
                let entry = self
                    .seen
                    .entry(pair.clone())
                    .or_insert((*n, now_ms, false, now_ms));
                if *n > entry.0 {
                    *entry = (*n, now_ms, true, entry.3);
                } else if *n < entry.0 {
                    // The counter was made again: a fresh start.
                    *entry = (*n, now_ms, false, now_ms);
                }
                let verdict = if !entry.2 && now_ms.saturating_sub(entry.3) < DEAD_AFTER_MS {
                    Verdict::Pending
                } else if !entry.2 {
                    Verdict::Unproven
                } else if now_ms.saturating_sub(entry.1) < DEAD_AFTER_MS {
                    Verdict::Forwards
                } else {
                    Verdict::Dead
                };
                (pair.clone(), verdict)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_with_their_pairs_and_new_pairs_fill_gaps() {
        let previous: BTreeMap<String, u16> = [
            ("b".to_string(), 0),
            ("d".to_string(), 2),
            ("e".to_string(), 5),
        ]
        .into();
        // "a" joins (sorts first), "e" left: the others keep theirs, "a" takes the lowest
        // free number, "f" the next.
        let got = assign(["a", "b", "d", "f"], &previous);
        let want: BTreeMap<String, u16> = [
            ("a".to_string(), 1),
            ("b".to_string(), 0),
            ("d".to_string(), 2),
            ("f".to_string(), 3),
        ]
        .into();
        assert_eq!(got, want);
        // A number claimed twice (a corrupted table) goes to one pair only.
        let twice: BTreeMap<String, u16> = [("x".to_string(), 4), ("y".to_string(), 4)].into();
        let got = assign(["x", "y"], &twice);
        assert_eq!((got["x"], got["y"]), (4, 0));
    }

    fn counters(n: u64) -> BTreeMap<String, u64> {
        [("pp".to_string(), n)].into()
    }

    #[test]
    fn dead_when_the_counter_stops_alive_when_it_moves_again() {
        let mut t = Tracker::default();
        assert_eq!(t.update(0, &counters(5))["pp"], Verdict::Pending);
        assert_eq!(t.update(300, &counters(5))["pp"], Verdict::Pending);
        assert_eq!(t.update(900, &counters(5))["pp"], Verdict::Unproven);
        assert_eq!(t.update(1000, &counters(6))["pp"], Verdict::Forwards);
        assert_eq!(t.update(1300, &counters(6))["pp"], Verdict::Forwards);
        assert_eq!(t.update(1500, &counters(6))["pp"], Verdict::Dead);
        assert_eq!(t.update(1600, &counters(7))["pp"], Verdict::Forwards);
        // A new counter (back to 0) must prove itself again.
        assert_eq!(t.update(1700, &counters(0))["pp"], Verdict::Pending);
        assert_eq!(t.update(2500, &counters(0))["pp"], Verdict::Unproven);
    }

    /// A pair probed anew whose first probe comes through within the period says nothing
    /// in between: no "unproven" flap.
    #[test]
    fn a_pair_probed_anew_is_pending_until_its_first_probe() {
        let mut t = Tracker::default();
        assert_eq!(t.update(0, &counters(0))["pp"], Verdict::Pending);
        assert_eq!(t.update(100, &counters(0))["pp"], Verdict::Pending);
        assert_eq!(t.update(200, &counters(1))["pp"], Verdict::Forwards);
        // Gone from the probed pairs (left its chains), back: pending again, not unproven.
        assert!(t.update(300, &BTreeMap::new()).is_empty());
        assert_eq!(t.update(400, &counters(1))["pp"], Verdict::Pending);
        assert_eq!(t.update(500, &counters(2))["pp"], Verdict::Forwards);
    }
}
