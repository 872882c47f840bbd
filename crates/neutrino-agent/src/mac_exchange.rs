//! The MAC exchange between border gateways (`--l2gw-exchange-macs`): a gateway host tells
//! each remote gateway of its border tunnels, over UDP on the underlay, which MACs (and IPv4
//! addresses) its own cloud has on the stretched network, and learns theirs the same way,
//! so neither cloud has to create the other's remote MACs by hand and the WAN need not
//! flood (see "Learning the other cloud's MACs" in docs/L2GW.md).
//!
//! One thread in the dataplane namespace owns a UDP socket on the host's tunnel address,
//! port [`PORT`]. It sends every announcement every [`EVERY`] (and at once when one
//! changes), accepts datagrams only from the remote gateways of its borders for their key,
//! and forgets a learned MAC [`EXPIRY`] after its last announcement. The agent is told when
//! what was learned changes, and reconciles.
//!
//! A datagram is JSON: `{"neutrino_macs": 1, "key": <WAN key>, "macs": [["<mac>", "<ipv4>"
//! or null], ...]}`, at most [`PER_DATAGRAM`] MACs each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neutrino_dataplane::l2gw::{Announcement, LearnedRemote};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The UDP port of the exchange.
pub const PORT: u16 = 4792;
/// How often every announcement is sent again.
pub const EVERY: Duration = Duration::from_secs(10);
/// A learned MAC not announced again for this long is forgotten.
pub const EXPIRY: Duration = Duration::from_secs(35);
/// MACs per datagram (a datagram stays well under 1,400 bytes).
pub const PER_DATAGRAM: usize = 24;
/// Learned MACs kept per remote gateway and key, at most.
const MAX_LEARNED: usize = 16_384;

#[derive(Default)]
struct Shared {
    /// What to send.
    outgoing: Vec<Announcement>,
    /// `outgoing` changed since it was last sent.
    changed: bool,
    /// (remote gateway, key) pairs whose announcements are accepted.
    accepted: BTreeSet<(IpAddr, u32)>,
    /// What was learned, and when it was last announced.
    learned: BTreeMap<(IpAddr, u32, String), (Option<Ipv4Addr>, Instant)>,
}

/// Handle of the exchange thread.
pub struct MacExchange {
    shared: Arc<Mutex<Shared>>,
}

impl MacExchange {
    /// Starts the thread in `netns` (`None`: the agent's own namespace), bound to `local`
    /// port [`PORT`]; a message arrives on the returned channel whenever what was learned
    /// changes.
    pub fn start(
        netns: Option<String>,
        local: IpAddr,
    ) -> (MacExchange, mpsc::UnboundedReceiver<()>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("l2gw-macs".into())
            .spawn(move || run(netns, local, inner, tx));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the gateway MAC exchange");
        }
        (MacExchange { shared }, rx)
    }

    /// Replaces what is announced and whose announcements are accepted (the borders').
    pub fn announce(&self, outgoing: Vec<Announcement>) {
        let Ok(mut s) = self.shared.lock() else {
            return;
        };
        let accepted: BTreeSet<(IpAddr, u32)> =
            outgoing.iter().map(|a| (a.remote, a.key)).collect();
        s.learned
            .retain(|(r, k, _), _| accepted.contains(&(*r, *k)));
        s.accepted = accepted;
        if s.outgoing != outgoing {
            s.outgoing = outgoing;
            s.changed = true;
        }
    }

    /// What the other gateways announced and is still fresh.
    pub fn learned(&self) -> BTreeSet<LearnedRemote> {
        let Ok(s) = self.shared.lock() else {
            return BTreeSet::new();
        };
        s.learned
            .iter()
            .map(|((remote, key, mac), (ip, _))| LearnedRemote {
                remote: *remote,
                key: *key,
                mac: mac.clone(),
                ip: *ip,
            })
            .collect()
    }
}

/// The datagrams of one announcement.
pub fn datagrams(a: &Announcement) -> Vec<Vec<u8>> {
    let macs: Vec<&Entry> = a.macs.iter().collect();
    // An empty announcement is still sent: it keeps nothing alive, but shows the peer is up.
    let chunks: Vec<&[&Entry]> = if macs.is_empty() {
        vec![&[]]
    } else {
        macs.chunks(PER_DATAGRAM).collect()
    };
    chunks
        .into_iter()
        .map(|chunk| {
            let list: Vec<Value> = chunk
                .iter()
                .map(|(mac, ip)| json!([mac, ip.map(|ip| ip.to_string())]))
                .collect();
            json!({"neutrino_macs": 1, "key": a.key, "macs": list})
                .to_string()
                .into_bytes()
        })
        .collect()
}

/// A MAC (lowercase) and its IPv4 address, if announced.
type Entry = (String, Option<Ipv4Addr>);

/// Parses one datagram: its key and MACs (lowercase, unicast, well-formed), or `None`.
pub fn parse(datagram: &[u8]) -> Option<(u32, Vec<Entry>)> {
    let doc: Value = serde_json::from_slice(datagram).ok()?;
    if doc["neutrino_macs"] != 1 {
        return None;
    }
    let key = u32::try_from(doc["key"].as_u64()?).ok()?;
    let mut out = Vec::new();
    for entry in doc["macs"].as_array()? {
        let Ok(mac) = neutrino_types::l2gw::mac(entry.get(0).and_then(Value::as_str)?) else {
            continue;
        };
        let ip = entry
            .get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        out.push((mac, ip));
    }
    Some((key, out))
}

fn run(
    netns: Option<String>,
    local: IpAddr,
    shared: Arc<Mutex<Shared>>,
    tx: mpsc::UnboundedSender<()>,
) {
    if let Some(ns) = &netns {
        if let Err(e) = crate::prober::enter(ns) {
            tracing::warn!(error = %e, netns = %ns, "gateway MAC exchange: cannot enter the namespace");
            return;
        }
    }
    let socket = loop {
        // The tunnel address may not be configured yet.
        match UdpSocket::bind(SocketAddr::new(local, PORT)) {
            Ok(s) => break s,
            Err(e) => {
                tracing::debug!(error = %e, "gateway MAC exchange: cannot bind yet");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        if tx.is_closed() {
            return;
        }
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(10)));
    let mut last_sent: Option<Instant> = None;
    let mut buf = vec![0u8; 65_536];
    loop {
        if tx.is_closed() {
            return;
        }
        let mut changed = false;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => changed |= receive(&shared, from.ip(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => tracing::debug!(error = %e, "gateway MAC exchange: receive failed"),
        }
        let outgoing = {
            let Ok(mut s) = shared.lock() else {
                return;
            };
            let before = s.learned.len();
            s.learned.retain(|_, (_, seen)| seen.elapsed() < EXPIRY);
            changed |= s.learned.len() != before;
            let due = last_sent.is_none_or(|t| t.elapsed() >= EVERY);
            if due || s.changed {
                s.changed = false;
                Some(s.outgoing.clone())
            } else {
                None
            }
        };
        if let Some(outgoing) = outgoing {
            last_sent = Some(Instant::now());
            for a in &outgoing {
                for d in datagrams(a) {
                    if let Err(e) = socket.send_to(&d, SocketAddr::new(a.remote, PORT)) {
                        tracing::debug!(error = %e, remote = %a.remote, "gateway MAC exchange: send failed");
                    }
                }
            }
        }
        if changed && tx.send(()).is_err() {
            return;
        }
    }
}

/// Takes one datagram from `from`; whether what was learned changed.
fn receive(shared: &Mutex<Shared>, from: IpAddr, datagram: &[u8]) -> bool {
    let Some((key, macs)) = parse(datagram) else {
        tracing::debug!(%from, "gateway MAC exchange: malformed datagram");
        return false;
    };
    let Ok(mut s) = shared.lock() else {
        return false;
    };
    if !s.accepted.contains(&(from, key)) {
        tracing::debug!(%from, key, "gateway MAC exchange: not a border of ours");
        return false;
    }
    let now = Instant::now();
    let mut changed = false;
    for (mac, ip) in macs {
        let count = s
            .learned
            .keys()
            .filter(|(r, k, _)| *r == from && *k == key)
            .count();
        match s.learned.get_mut(&(from, key, mac.clone())) {
            Some(entry) => {
                changed |= entry.0 != ip;
                *entry = (ip, now);
            }
            None if count < MAX_LEARNED => {
                s.learned.insert((from, key, mac), (ip, now));
                changed = true;
            }
            None => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(n: usize) -> Announcement {
        Announcement {
            remote: "198.18.0.9".parse().unwrap(),
            key: 456,
            macs: (0..n)
                .map(|i| {
                    (
                        format!("fa:16:3e:00:{:02x}:{:02x}", i / 256, i % 256),
                        (i % 2 == 0)
                            .then(|| Ipv4Addr::new(10, 0, (i / 256) as u8, (i % 256) as u8)),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn announcements_round_trip_in_small_datagrams() {
        let a = announcement(60);
        let ds = datagrams(&a);
        assert_eq!(ds.len(), 3);
        let mut back = BTreeSet::new();
        for d in &ds {
            assert!(d.len() < 1400, "{}", d.len());
            let (key, macs) = parse(d).unwrap();
            assert_eq!(key, 456);
            back.extend(macs);
        }
        assert_eq!(back, a.macs);
        // An empty announcement is one datagram with no MAC.
        assert_eq!(parse(&datagrams(&announcement(0))[0]).unwrap().1, vec![]);
    }

    #[test]
    fn malformed_or_foreign_datagrams_teach_nothing() {
        for bad in [
            &b"not json"[..],
            br#"{"key": 456, "macs": []}"#,
            br#"{"neutrino_macs": 1, "key": -1, "macs": []}"#,
        ] {
            assert!(parse(bad).is_none());
        }
        // Multicast and malformed MACs are skipped, the rest kept.
        let (_, macs) = parse(
            br#"{"neutrino_macs": 1, "key": 7, "macs": [["01:00:5e:00:00:01", null], ["zz", null], ["FA:16:3E:00:00:01", "10.0.0.1"]]}"#,
        )
        .unwrap();
        assert_eq!(
            macs,
            vec![(
                "fa:16:3e:00:00:01".to_string(),
                Some(Ipv4Addr::new(10, 0, 0, 1))
            )]
        );

        let shared = Mutex::new(Shared::default());
        let from: IpAddr = "198.18.0.9".parse().unwrap();
        let d = &datagrams(&announcement(2))[0];
        assert!(
            !receive(&shared, from, d),
            "accepted before any border names it"
        );
        shared.lock().unwrap().accepted.insert((from, 456));
        assert!(
            !receive(&shared, "198.18.0.8".parse().unwrap(), d),
            "another sender"
        );
        assert!(receive(&shared, from, d));
        assert!(!receive(&shared, from, d), "the same again changes nothing");
        assert_eq!(shared.lock().unwrap().learned.len(), 2);
    }
}
