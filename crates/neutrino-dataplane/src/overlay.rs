//! The encrypted overlay's peer set (`neutrino agent --encrypt-overlay`): which other hosts
//! this host's WireGuard device should have as peers, from the agents' reported
//! `configurations.wireguard` (`{public_key, port}`), and the difference to the peers the
//! device has. Peers are keyed by public key (base64); hosts that report no key are
//! `unkeyed`: VXLAN toward them is blackholed rather than sent in clear.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::cluster::{text, Cluster};
use crate::desired::HostConfig;

/// One WireGuard peer: another host of the deployment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    /// Public key, base64 (as `wg` shows it).
    pub public_key: String,
    /// The peer's tunnel IP: its WireGuard endpoint address and its only allowed IP.
    pub tunnel_ip: IpAddr,
    /// The peer's WireGuard UDP port.
    pub port: u16,
}

/// What the overlay of this host should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overlay {
    /// Peers by public key.
    pub peers: BTreeMap<String, Peer>,
    /// Tunnel IPs of other hosts that report no (valid) key: not reachable encrypted.
    pub unkeyed: Vec<IpAddr>,
}

/// A change to the device's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOp {
    /// Add the peer, or set its endpoint and allowed IP.
    Set(Peer),
    /// Remove the peer with this public key.
    Remove(String),
}

impl fmt::Display for PeerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerOp::Set(p) => write!(f, "peer {} at {}:{}", p.public_key, p.tunnel_ip, p.port),
            PeerOp::Remove(k) => write!(f, "remove peer {k}"),
        }
    }
}

/// Whether `key` looks like a WireGuard public key: 44 characters of base64 ending in `=`
/// (32 bytes).
pub fn valid_key(key: &str) -> bool {
    key.len() == 44
        && key.ends_with('=')
        && key[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The overlay this host wants: every other registered agent with a tunnel IP is a peer when
/// it reports a valid key and port, else unkeyed. An agent at this host's own tunnel IP (or
/// of this host) is never a peer; two agents reporting one key keep the first by host name.
pub fn desired(cluster: &Cluster, cfg: &HostConfig) -> Overlay {
    let mut agents: Vec<_> = cluster
        .all("agent")
        .filter(|a| text(a, "host") != cfg.host)
        .filter_map(|a| {
            let ip: IpAddr = a["configurations"]["tunnel_ip"].as_str()?.parse().ok()?;
            (ip != cfg.tunnel_ip).then_some((text(a, "host").to_string(), ip, a))
        })
        .collect();
    agents.sort_by(|a, b| a.0.cmp(&b.0));
    let mut overlay = Overlay::default();
    for (_, ip, agent) in agents {
        let wg = &agent["configurations"]["wireguard"];
        let key = wg["public_key"].as_str().filter(|k| valid_key(k));
        let port = wg["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        match (key, port) {
            (Some(key), Some(port)) if !overlay.peers.contains_key(key) => {
                overlay.peers.insert(
                    key.to_string(),
                    Peer {
                        public_key: key.to_string(),
                        tunnel_ip: ip,
                        port,
                    },
                );
            }
            (Some(_), Some(_)) => {}
            _ => overlay.unkeyed.push(ip),
        }
    }
    overlay.unkeyed.sort();
    overlay.unkeyed.dedup();
    // A tunnel IP that some keyed agent has is reachable encrypted.
    let keyed: Vec<IpAddr> = overlay.peers.values().map(|p| p.tunnel_ip).collect();
    overlay.unkeyed.retain(|ip| !keyed.contains(ip));
    overlay
}

/// The operations that turn the device's peers `have` into `want`: additions and changes
/// first, removals last (boringtun's UAPI keeps a peer section's `remove=true` for the
/// sections after it, so a removal must not precede another peer's section).
pub fn plan(want: &BTreeMap<String, Peer>, have: &BTreeMap<String, Peer>) -> Vec<PeerOp> {
    let mut ops: Vec<PeerOp> = want
        .iter()
        .filter(|(k, p)| have.get(*k) != Some(p))
        .map(|(_, p)| PeerOp::Set(p.clone()))
        .collect();
    ops.extend(
        have.keys()
            .filter(|k| !want.contains_key(*k))
            .map(|k| PeerOp::Remove(k.clone())),
    );
    ops
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const K1: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";
    const K2: &str = "MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXY=";

    fn cfg() -> HostConfig {
        HostConfig {
            host: "h1".into(),
            tunnel_ip: "198.18.0.1".parse().unwrap(),
            vxlan_port: 4789,
            netns_prefix: "nt-".into(),
            interface_mappings: BTreeMap::new(),
            l2gw_device: None,
        }
    }

    fn agent(host: &str, ip: &str, wg: serde_json::Value) -> serde_json::Value {
        json!({"id": format!("a-{host}"), "host": host,
               "configurations": {"tunnel_ip": ip, "wireguard": wg}})
    }

    fn cluster(agents: Vec<serde_json::Value>) -> Cluster {
        Cluster::from_snapshot(&json!({"revision": 1, "resources": {"agent": agents}}))
    }

    #[test]
    fn keys() {
        assert!(valid_key(K1) && valid_key(K2));
        assert!(!valid_key("short="));
        assert!(!valid_key(&K1.replace('Y', "-")));
    }

    #[test]
    fn peers_from_the_feed() {
        let c = cluster(vec![
            agent("h1", "198.18.0.1", json!({"public_key": K1, "port": 51820})),
            agent("h2", "198.18.0.2", json!({"public_key": K2, "port": 51821})),
            agent("h3", "198.18.0.3", json!(null)),
            agent("h4", "198.18.0.4", json!({"public_key": "bad", "port": 1})),
            agent("h5", "198.18.0.5", json!({"public_key": K1, "port": 0})),
        ]);
        let o = desired(&c, &cfg());
        assert_eq!(o.peers.len(), 1, "itself is never a peer");
        let p = &o.peers[K2];
        assert_eq!(
            (p.tunnel_ip.to_string(), p.port),
            ("198.18.0.2".into(), 51821)
        );
        let unkeyed: Vec<String> = o.unkeyed.iter().map(|i| i.to_string()).collect();
        assert_eq!(unkeyed, ["198.18.0.3", "198.18.0.4", "198.18.0.5"]);
    }

    #[test]
    fn duplicate_key_keeps_the_first_host() {
        let c = cluster(vec![
            agent("h3", "198.18.0.3", json!({"public_key": K2, "port": 1})),
            agent("h2", "198.18.0.2", json!({"public_key": K2, "port": 1})),
        ]);
        let o = desired(&c, &cfg());
        assert_eq!(o.peers[K2].tunnel_ip.to_string(), "198.18.0.2");
        assert!(o.unkeyed.is_empty(), "{:?}", o.unkeyed);
    }

    #[test]
    fn plan_is_the_difference() {
        let peer = |k: &str, ip: &str, port| Peer {
            public_key: k.into(),
            tunnel_ip: ip.parse().unwrap(),
            port,
        };
        let want: BTreeMap<_, _> = [(K1.to_string(), peer(K1, "198.18.0.2", 7))].into();
        assert!(plan(&want, &want).is_empty(), "converged");
        // A new peer is set; a peer whose endpoint moved is set again; a gone one removed
        // (after the others).
        assert_eq!(
            plan(&want, &BTreeMap::new()),
            [PeerOp::Set(want[K1].clone())]
        );
        let moved: BTreeMap<_, _> = [(K1.to_string(), peer(K1, "198.18.0.9", 7))].into();
        assert_eq!(plan(&want, &moved), [PeerOp::Set(want[K1].clone())]);
        let old: BTreeMap<_, _> = [(K2.to_string(), peer(K2, "198.18.0.3", 7))].into();
        assert_eq!(
            plan(&want, &old),
            [PeerOp::Set(want[K1].clone()), PeerOp::Remove(K2.into())]
        );
    }
}
