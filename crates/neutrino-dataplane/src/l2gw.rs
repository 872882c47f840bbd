//! The software L2 gateway: a host whose agent runs with `--l2gw-device NAME` is the device
//! `NAME` of networking-l2gw's gateways. Each connection of a gateway with such a device
//! bridges the network's VXLAN overlay on this host to the device's interfaces: VLAN 0 (or
//! an interface listed without VLANs under a connection whose VLAN is 0) is the interface
//! itself, untagged; any other VLAN is the 802.1q sub-interface `<interface>.<vlan>`, as for
//! VLAN provider networks. The other hosts of the network flood to the gateway host, and
//! the MACs its bridges learn behind the interfaces ([`learned_macs`], reported to the
//! server) become static FDB entries toward it on those hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::cluster::{text, Cluster};

/// One interface (and VLAN) of this host's gateway device joined to a network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    /// The connected network.
    pub network: String,
    /// The device's interface.
    pub interface: String,
    /// 802.1q VLAN on the interface; 0 is untagged.
    pub vlan: u16,
}

fn vlan_of(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) if s.is_empty() => Some(0),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|v| *v <= 4094)
}

/// The attachments of gateway device `device`, from the mirrored gateways and connections,
/// sorted; an interface named by several connections keeps the first (by network id).
pub fn attachments(cluster: &Cluster, device: &str) -> Vec<Attachment> {
    let mut out: Vec<Attachment> = Vec::new();
    for conn in cluster.all("l2_gateway_connection") {
        let Some(gw) = cluster.get("l2_gateway", text(conn, "l2_gateway_id")) else {
            continue;
        };
        let default = vlan_of(&conn["segmentation_id"]).unwrap_or(0);
        let devices = gw["devices"].as_array().into_iter().flatten();
        for dev in devices.filter(|d| text(d, "device_name") == device) {
            for iface in dev["interfaces"].as_array().into_iter().flatten() {
                let vlans: Vec<u16> = match iface["segmentation_id"].as_array() {
                    Some(list) if !list.is_empty() => list.iter().filter_map(vlan_of).collect(),
                    _ => vec![default],
                };
                for vlan in vlans {
                    out.push(Attachment {
                        network: text(conn, "network_id").to_string(),
                        interface: text(iface, "name").to_string(),
                        vlan,
                    });
                }
            }
        }
    }
    out.sort();
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|a| seen.insert((a.interface.clone(), a.vlan)));
    out
}

/// The gateway device an agent document reports (`configurations.l2gw_device`), if any.
pub fn agent_device(agent: &Value) -> Option<&str> {
    agent["configurations"]["l2gw_device"]
        .as_str()
        .filter(|d| !d.is_empty())
}

/// The interface enslaved for an attachment: the interface itself for VLAN 0, else its VLAN
/// sub-interface.
pub fn uplink_name(a: &Attachment) -> String {
    match a.vlan {
        0 => a.interface.clone(),
        vid => crate::provider::vlan_interface(&a.interface, vid),
    }
}

/// What this gateway host's bridges learned on its gateway interfaces, per connected network
/// (every connected network present, possibly empty), from `bridge -j fdb show`: entries on
/// an attachment's interface whose master is the network's bridge, neither permanent nor
/// static nor the device's own (`self`).
pub fn learned_macs(
    cluster: &Cluster,
    device: &str,
    fdb: &Value,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let mut by_uplink = std::collections::BTreeMap::new();
    for a in attachments(cluster, device) {
        out.entry(a.network.clone()).or_default();
        by_uplink.insert(uplink_name(&a), a.network);
    }
    for e in fdb.as_array().into_iter().flatten() {
        let Some(network) = by_uplink.get(text(e, "ifname")) else {
            continue;
        };
        let own = e["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "self"));
        let state = text(e, "state");
        if own
            || matches!(state, "permanent" | "static" | "noarp")
            || text(e, "master") != crate::names::bridge(network)
        {
            continue;
        }
        let mac = text(e, "mac").to_ascii_lowercase();
        if !mac.is_empty() {
            out.entry(network.clone()).or_default().insert(mac);
        }
    }
    out
}

/// Whether remote gateway connection `rc` belongs to a gateway with device `device`.
fn on_device(cluster: &Cluster, rc: &Value, device: &str) -> bool {
    cluster
        .get("l2_gateway", text(rc, "gateway"))
        .and_then(|gw| gw["devices"].as_array())
        .is_some_and(|ds| ds.iter().any(|d| text(d, "device_name") == device))
}

/// The remote MACs (lowercase) and their IPv4 addresses (if given) of the remote gateway
/// connections of gateway device `device` on `network`: what that gateway tunnels to other
/// clouds, so the network's hosts send those MACs to it.
pub(crate) fn remote_macs<'a>(
    cluster: &'a Cluster,
    device: &'a str,
    network: &'a str,
) -> impl Iterator<Item = (String, Option<std::net::Ipv4Addr>)> + 'a {
    cluster
        .all("l2_remote_gateway_connection")
        .filter(move |rc| text(rc, "network") == network && on_device(cluster, rc, device))
        .flat_map(move |rc| macs_of(cluster, rc))
}

/// The remote MACs of one remote gateway connection, with their IPv4 addresses.
fn macs_of<'a>(
    cluster: &'a Cluster,
    rc: &'a Value,
) -> impl Iterator<Item = (String, Option<std::net::Ipv4Addr>)> + 'a {
    cluster
        .all("l2_remote_mac")
        .filter(move |m| text(m, "rgw_connection") == text(rc, "id"))
        .map(|m| {
            (
                text(m, "mac").to_ascii_lowercase(),
                text(m, "ipaddr").parse().ok(),
            )
        })
}

/// Border gateways (Neutrino's remote-gateway extension) on this gateway host: each remote
/// gateway connection of a gateway with this host's device, on a network bridged here, sends
/// the network to the remote gateway's `ipaddr` over VXLAN with the WAN key (`seg_id`, or the
/// network's own VNI when empty: then the network's VXLAN device carries it). A separate key
/// gets its own VXLAN device `vxlan-<key>` on the network's bridge, unless that name is taken
/// by another network here. `flood` adds the remote gateway to the flood list; each remote MAC
/// is a static FDB entry toward it, and the bridge answers ARP requests for a remote MAC's
/// IPv4 address itself ([`crate::desired::Desired::arp_answers`]), so that with `flood` off
/// address resolution still works without crossing the WAN.
pub(crate) fn add_remote_gateways(
    cluster: &Cluster,
    cfg: &crate::HostConfig,
    local_networks: &std::collections::BTreeMap<String, String>,
    out: &mut crate::desired::Desired,
) {
    use crate::state::{FdbEntry, Vxlan, FLOOD_MAC};
    let Some(device) = &cfg.l2gw_device else {
        return;
    };
    for rc in cluster.all("l2_remote_gateway_connection") {
        let ours = on_device(cluster, rc, device);
        let network = text(rc, "network");
        let (true, Some(local_dev), Some(net)) = (
            ours,
            local_networks.get(network),
            cluster.get("network", network),
        ) else {
            continue;
        };
        let Some(remote) = cluster
            .get("l2_remote_gateway", text(rc, "remote_gateway"))
            .and_then(|r| text(r, "ipaddr").parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        let vni = net["provider:segmentation_id"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok());
        let key = text(rc, "seg_id").parse::<u32>().ok().or(vni);
        let dev = match key {
            Some(key) if Some(key) != vni => {
                let name = crate::names::vxlan(key);
                let bridge = crate::names::bridge(network);
                match out.state.vxlans.get(&name) {
                    Some(v) if v.master.as_deref() != Some(bridge.as_str()) => continue,
                    Some(_) => {}
                    None => {
                        let mtu = out.state.bridges.get(&bridge).map_or(1450, |b| b.mtu);
                        out.state.vxlans.insert(
                            name.clone(),
                            Vxlan {
                                vni: key,
                                local: cfg.tunnel_ip,
                                port: cfg.vxlan_port,
                                mtu,
                                master: Some(bridge),
                            },
                        );
                    }
                }
                name
            }
            _ => local_dev.clone(),
        };
        out.borders.push(Border {
            network: network.to_string(),
            dev: dev.clone(),
            remote,
            key: key.unwrap_or_default(),
        });
        if text(rc, "flood") != "False" {
            out.state.fdb.insert(FdbEntry {
                dev: dev.clone(),
                mac: FLOOD_MAC.to_string(),
                dst: remote,
            });
        }
        let bridge = crate::names::bridge(network);
        for (mac, ip) in macs_of(cluster, rc) {
            if let Some(ip) = ip {
                out.arp_answers.insert(crate::local_ip::ArpAnswer {
                    bridge: bridge.clone(),
                    port: dev.clone(),
                    ip,
                    mac: mac.clone(),
                });
            }
            out.state.fdb.insert(FdbEntry {
                dev: dev.clone(),
                mac,
                dst: remote,
            });
        }
    }
}

/// One tunnel of this gateway host to another cloud's border gateway: a remote gateway
/// connection as [`add_remote_gateways`] realised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Border {
    /// The stretched network.
    pub network: String,
    /// The VXLAN device carrying it over the WAN.
    pub dev: String,
    /// The remote gateway's tunnel address.
    pub remote: IpAddr,
    /// The WAN VXLAN key.
    pub key: u32,
}

/// What a gateway tells another cloud's gateway about its own side of a stretched network
/// (the MAC exchange, an optional Neutrino extension between border gateways): the MACs of
/// the network's bound ports (with their first IPv4 address) and those learned behind the
/// gateway's interfaces, never what it learned from another cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The remote gateway's tunnel address.
    pub remote: IpAddr,
    /// The WAN key the MACs are reachable on.
    pub key: u32,
    /// MACs (lowercase) and IPv4 addresses.
    pub macs: BTreeSet<(String, Option<Ipv4Addr>)>,
}

/// A MAC another cloud's gateway announced: reached through `remote` on WAN key `key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LearnedRemote {
    /// The announcing gateway's tunnel address.
    pub remote: IpAddr,
    /// The WAN key.
    pub key: u32,
    /// The MAC (lowercase).
    pub mac: String,
    /// Its IPv4 address, when announced.
    pub ip: Option<Ipv4Addr>,
}

/// The announcements of this gateway host (`want` as [`crate::desired()`] made it), one per
/// border tunnel; `behind`: the MACs learned behind the gateway's interfaces, per network
/// ([`learned_macs`]).
pub fn announcements(
    cluster: &Cluster,
    want: &crate::desired::Desired,
    behind: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Announcement> {
    want.borders
        .iter()
        .map(|b| {
            let mut macs: BTreeSet<(String, Option<Ipv4Addr>)> = cluster
                .all("port")
                .filter(|p| {
                    text(p, "network_id") == b.network && !text(p, "binding:host_id").is_empty()
                })
                .filter(|p| !text(p, "mac_address").is_empty())
                .map(|p| {
                    let ip = p["fixed_ips"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find_map(|f| text(f, "ip_address").parse::<Ipv4Addr>().ok());
                    (text(p, "mac_address").to_ascii_lowercase(), ip)
                })
                .collect();
            let known: BTreeSet<String> = macs.iter().map(|(m, _)| m.clone()).collect();
            for mac in behind.get(&b.network).into_iter().flatten() {
                if !known.contains(mac) {
                    macs.insert((mac.clone(), None));
                }
            }
            Announcement {
                remote: b.remote,
                key: b.key,
                macs,
            }
        })
        .collect()
}

/// Adds what other clouds' gateways announced to this gateway host's desired state, as API
/// remote MACs would be: a static FDB entry toward the announcing gateway on the border's
/// WAN device, and an ARP answer when an address came with it. Only announcements from the
/// remote gateway of a border with the same key count. Returns the MACs added, per network
/// (the gateway reports them like MACs learned behind its interfaces, so the network's
/// other hosts send them here).
pub fn add_learned_remote(
    want: &mut crate::desired::Desired,
    learned: &BTreeSet<LearnedRemote>,
) -> BTreeMap<String, BTreeSet<String>> {
    use crate::state::FdbEntry;
    let mut added: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in want.borders.clone() {
        added.entry(b.network.clone()).or_default();
        for l in learned
            .iter()
            .filter(|l| l.remote == b.remote && l.key == b.key)
        {
            want.state.fdb.insert(FdbEntry {
                dev: b.dev.clone(),
                mac: l.mac.clone(),
                dst: b.remote,
            });
            if let Some(ip) = l.ip {
                want.arp_answers.insert(crate::local_ip::ArpAnswer {
                    bridge: crate::names::bridge(&b.network),
                    port: b.dev.clone(),
                    ip,
                    mac: l.mac.clone(),
                });
            }
            added
                .entry(b.network.clone())
                .or_default()
                .insert(l.mac.clone());
        }
    }
    added
}
