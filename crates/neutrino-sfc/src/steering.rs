//! Steering ports: how traffic from a port with port security enters a chain.
//!
//! Classifying a frame where it leaves such a port and forwarding it straight to the first
//! function would skip the bridge, and with it the port's security group and conntrack: the
//! port's egress rules would not apply, and a reply coming back unsteered would find no
//! connection (a TCP SYN-ACK is then invalid and dropped). So the classifier only rewrites
//! the destination MAC to the network's steering MAC and lets the frame cross the bridge like
//! any other; the bridge forwards it (static forwarding entry) to the network's steering port,
//! a veth end `sfs<network>` enslaved to the bridge, whose egress hook classifies it again
//! (by source MAC and n-tuple) and sends it to the first function. Its peer `sfp<network>`
//! only keeps the link up; nothing ever reaches it.
//!
//! [`commands`] computes, from `ip -j link show` and `bridge -j fdb show`, the `ip` and
//! `bridge` invocations that create, fix or remove the steering ports.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::table::digest;

/// A steering port wanted on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteeringPort {
    /// The network's bridge.
    pub bridge: String,
    /// The MAC frames to be steered are sent to.
    pub mac: String,
}

/// The bridge end of a network's steering port.
pub fn port_name(network: &str) -> String {
    format!("sfs{}", short(network))
}

/// The peer end (keeps the link up).
pub fn peer_name(port: &str) -> String {
    format!("sfp{}", port.strip_prefix("sfs").unwrap_or(port))
}

/// A network's steering MAC: locally administered, unicast, a digest of the network id.
pub fn mac(network: &str) -> String {
    let [_, a, b, c] = digest(network).to_be_bytes();
    format!("0e:5f:53:{a:02x}:{b:02x}:{c:02x}")
}

fn short(id: &str) -> String {
    id.chars().take(11).collect()
}

/// The `ip` / `bridge` argument lists (program first) that take the host from `links`
/// (`ip -j link show`) and `fdb` (`bridge -j fdb show`) to `want`.
pub fn commands(
    want: &BTreeMap<String, SteeringPort>,
    links: &Value,
    fdb: &Value,
) -> Vec<Vec<String>> {
    let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let mut masters: BTreeMap<&str, &str> = BTreeMap::new();
    let mut up: BTreeMap<&str, bool> = BTreeMap::new();
    for l in links.as_array().into_iter().flatten() {
        let name = l["ifname"].as_str().unwrap_or_default();
        if name.starts_with("sfs") || name.starts_with("sfp") {
            masters.insert(name, l["master"].as_str().unwrap_or_default());
            let flags = l["flags"].as_array().into_iter().flatten();
            up.insert(name, flags.filter_map(Value::as_str).any(|f| f == "UP"));
        }
    }
    let mut cmds = Vec::new();
    for name in masters.keys().filter(|n| n.starts_with("sfs")) {
        if !want.contains_key(*name) {
            cmds.push(argv(&format!("ip link del {name}")));
        }
    }
    for (name, port) in want {
        let peer = peer_name(name);
        if !masters.contains_key(name.as_str()) {
            cmds.push(argv(&format!(
                "ip link add {name} type veth peer name {peer}"
            )));
        }
        if masters.get(name.as_str()) != Some(&port.bridge.as_str()) {
            cmds.push(argv(&format!("ip link set {name} master {}", port.bridge)));
        }
        for dev in [name.as_str(), peer.as_str()] {
            if up.get(dev) != Some(&true) {
                cmds.push(argv(&format!("ip link set {dev} up")));
            }
        }
        let present = fdb.as_array().into_iter().flatten().any(|e| {
            e["ifname"] == name.as_str()
                && e["mac"].as_str().map(str::to_ascii_lowercase).as_deref() == Some(&port.mac)
                && e["state"] == "static"
        });
        if !present {
            cmds.push(argv(&format!(
                "bridge fdb replace {} dev {name} master static",
                port.mac
            )));
        }
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn want() -> BTreeMap<String, SteeringPort> {
        let mut w = BTreeMap::new();
        w.insert(
            port_name("net-1-aaaaaaaa"),
            SteeringPort {
                bridge: "brqnet-1-aaaaa".into(),
                mac: mac("net-1-aaaaaaaa"),
            },
        );
        w
    }

    #[test]
    fn creates_enslaves_raises_and_pins_the_mac() {
        let cmds = commands(&want(), &json!([]), &json!([]));
        let text: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        let m = mac("net-1-aaaaaaaa");
        assert_eq!(
            text,
            vec![
                "ip link add sfsnet-1-aaaaa type veth peer name sfpnet-1-aaaaa".to_string(),
                "ip link set sfsnet-1-aaaaa master brqnet-1-aaaaa".into(),
                "ip link set sfsnet-1-aaaaa up".into(),
                "ip link set sfpnet-1-aaaaa up".into(),
                format!("bridge fdb replace {m} dev sfsnet-1-aaaaa master static"),
            ]
        );
    }

    #[test]
    fn nothing_when_in_place_and_removal_when_unwanted() {
        let m = mac("net-1-aaaaaaaa");
        let links = json!([
            {"ifname": "sfsnet-1-aaaaa", "master": "brqnet-1-aaaaa", "flags": ["UP"]},
            {"ifname": "sfpnet-1-aaaaa", "flags": ["UP"]},
            {"ifname": "sfsgone", "master": "brqgone", "flags": ["UP"]},
        ]);
        let fdb = json!([{"mac": m, "ifname": "sfsnet-1-aaaaa", "state": "static"}]);
        let cmds = commands(&want(), &links, &fdb);
        assert_eq!(cmds, vec![vec!["ip", "link", "del", "sfsgone"]]);
    }

    #[test]
    fn mac_is_locally_administered_unicast() {
        let m = mac("x");
        let first = u8::from_str_radix(&m[..2], 16).unwrap();
        assert_eq!(first & 0b11, 0b10);
    }
}
