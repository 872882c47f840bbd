//! What the kernel holds, from iproute2's JSON output (`ip -d -j link show`,
//! `bridge -j fdb show`, and per namespace `ip -d -j link/addr/route show`), in the shape of
//! [`HostState`]. Only the agent's own objects are kept (by name prefix); kernel-made routes
//! (connected ones, and those learnt from router advertisements) and link-local addresses are
//! left out, as the desired state never holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::cluster::text;
use crate::names;
use crate::state::{
    Bridge, FdbEntry, HostState, Namespace, Neighbor, NftTable, NsLink, Route, SrcRoute, Tap, Vxlan,
};

/// The digest in the comment of the table in `nft -j list table` output.
fn table_digest(doc: &Value) -> Option<String> {
    items(&doc["nftables"])
        .find_map(|item| item["table"]["comment"].as_str())
        .map(str::to_string)
}

/// Raw command output of the agent's own namespace.
#[derive(Clone, Debug, Default)]
pub struct RawHost {
    /// `ip -d -j link show`.
    pub links: Value,
    /// `bridge -j fdb show` (all devices).
    pub fdb: Value,
    /// The managed namespaces that were read.
    pub namespaces: Vec<RawNamespace>,
    /// The names of all managed namespaces, read or not.
    pub listed: Vec<String>,
    /// `nft -j list table bridge neutrino_dvr`, when the table exists.
    pub arp_guard: Option<Value>,
}

/// Raw command output of one namespace.
#[derive(Clone, Debug, Default)]
pub struct RawNamespace {
    /// Its name.
    pub name: String,
    /// `ip -d -j link show`.
    pub links: Value,
    /// `ip -j addr show`.
    pub addrs: Value,
    /// `ip -j -4 route show` and `ip -j -6 route show`, concatenated.
    pub routes: Vec<Value>,
    /// Routers only: `/proc/sys/net/ipv4/ip_forward` and
    /// `/proc/sys/net/ipv6/conf/all/proxy_ndp`, one after the other (`"11"` when both on).
    pub ip_forward: Option<String>,
    /// Routers only, when the table `inet neutrino_router` exists: its comment (the digest),
    /// as `{"nftables": [{"table": {"comment": ...}}]}` (the shape of `nft -j` output).
    pub nft: Option<Value>,
    /// Routers only, when the table `inet neutrino_meter` exists: its comment, as `nft`.
    pub meter: Option<Value>,
    /// Routers only, when the table `inet neutrino_cthelper` exists: its comment, as `nft`.
    pub helpers: Option<Value>,
    /// Routers only: `ip -j neigh show nud permanent`.
    pub neighbors: Value,
    /// Routers only: `ip -j neigh show proxy`.
    pub ndp_proxies: Value,
    /// Routers only: `ip -j rule show`.
    pub rules: Value,
    /// Routers only: `ip -j route show table all`.
    pub table_routes: Value,
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn kind(link: &Value) -> &str {
    link["linkinfo"]["info_kind"].as_str().unwrap_or_default()
}

fn u32_of(v: &Value) -> u32 {
    v.as_u64().and_then(|m| u32::try_from(m).ok()).unwrap_or(0)
}

/// Permanent neighbours and the agent's source routes (rules at [`SrcRoute::PRIORITY`] with
/// the default route of their table).
fn observe_dvr(ns: &RawNamespace, parsed: &mut Namespace) {
    for n in items(&ns.ndp_proxies) {
        if let Ok(ip) = text(n, "dst").parse::<std::net::Ipv6Addr>() {
            parsed.ndp_proxies.insert((text(n, "dev").to_string(), ip));
        }
    }
    for n in items(&ns.neighbors) {
        let permanent = items(&n["state"]).any(|s| s == "PERMANENT");
        if let (true, Ok(ip)) = (permanent, text(n, "dst").parse::<IpAddr>()) {
            parsed.neighbors.insert(Neighbor {
                dev: text(n, "dev").to_string(),
                ip,
                mac: text(n, "lladdr").to_ascii_lowercase(),
            });
        }
    }
    let table_text = |v: &Value| match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    for rule in items(&ns.rules) {
        if rule["priority"].as_u64() != Some(u64::from(SrcRoute::PRIORITY)) {
            continue;
        }
        let (Ok(src), Some(len)) = (text(rule, "src").parse::<IpAddr>(), rule["srclen"].as_u64())
        else {
            continue;
        };
        let Ok(from) = IpNet::new(src, len as u8) else {
            continue;
        };
        let table = text(rule, "table");
        let found = items(&ns.table_routes)
            .find(|r| table_text(&r["table"]) == table && text(r, "dst") == "default");
        if let Some(r) = found {
            if let Ok(via) = text(r, "gateway").parse() {
                let route = SrcRoute {
                    from,
                    via,
                    dev: text(r, "dev").to_string(),
                };
                if route.table().to_string() == table {
                    parsed.src_routes.insert(route);
                }
            }
        }
    }
}

/// Parses the raw output into the managed part of the host's state.
pub fn observe(raw: &RawHost) -> HostState {
    let mut state = HostState::default();
    // Peers of host veths, by the host-side ifindex they point at.
    let mut peers: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for ns in &raw.namespaces {
        let mut parsed = Namespace::default();
        for link in items(&ns.links) {
            let name = text(link, "ifname");
            if name == "lo" || name.is_empty() {
                continue;
            }
            if kind(link) == "veth" {
                if let Some(index) = link["link_index"].as_u64() {
                    peers.insert(index, (ns.name.clone(), name.to_string()));
                }
            }
            let flags = link["flags"].as_array().cloned().unwrap_or_default();
            parsed.links.insert(
                name.to_string(),
                NsLink {
                    mac: text(link, "address").to_ascii_lowercase(),
                    mtu: u32_of(&link["mtu"]),
                    up: flags.iter().any(|f| f == "UP"),
                },
            );
        }
        for link in items(&ns.addrs) {
            let dev = text(link, "ifname");
            for a in items(&link["addr_info"]) {
                if text(a, "scope") == "link" || dev == "lo" {
                    continue;
                }
                let (Ok(ip), Some(len)) =
                    (text(a, "local").parse::<IpAddr>(), a["prefixlen"].as_u64())
                else {
                    continue;
                };
                if let Ok(net) = IpNet::new(ip, len as u8) {
                    parsed.addrs.insert((dev.to_string(), net));
                }
            }
        }
        for r in ns.routes.iter().flat_map(items) {
            let (Ok(via), dev) = (text(r, "gateway").parse::<IpAddr>(), text(r, "dev")) else {
                continue;
            };
            if text(r, "protocol") == "ra" {
                // Learnt from router advertisements: the kernel's own.
                continue;
            }
            let dst = match text(r, "dst") {
                "default" if via.is_ipv4() => "0.0.0.0/0".parse().ok(),
                "default" => "::/0".parse().ok(),
                d if d.contains('/') => d.parse().ok(),
                d => d.parse::<IpAddr>().ok().map(IpNet::from),
            };
            if let Some(dst) = dst {
                parsed.routes.insert(Route {
                    dst,
                    via,
                    dev: dev.to_string(),
                });
            }
        }
        parsed.forwarding = ns.ip_forward.as_deref().map(str::trim) == Some("11");
        parsed.nft = ns
            .nft
            .as_ref()
            .and_then(table_digest)
            .map(|digest| NftTable {
                digest,
                script: String::new(),
            });
        parsed.meter = ns
            .meter
            .as_ref()
            .and_then(table_digest)
            .map(|digest| NftTable {
                digest,
                script: String::new(),
            });
        parsed.helpers = ns
            .helpers
            .as_ref()
            .and_then(table_digest)
            .map(|digest| NftTable {
                digest,
                script: String::new(),
            });
        observe_dvr(ns, &mut parsed);
        state.namespaces.insert(ns.name.clone(), parsed);
    }
    state.arp_guard = raw
        .arp_guard
        .as_ref()
        .and_then(table_digest)
        .map(|digest| NftTable {
            digest,
            script: String::new(),
        });
    for link in items(&raw.links) {
        let name = text(link, "ifname");
        if !names::is_managed_link(name) {
            continue;
        }
        let mtu = u32_of(&link["mtu"]);
        let master = link["master"].as_str().map(str::to_string);
        match kind(link) {
            "bridge" if name.starts_with("brq") => {
                state.bridges.insert(name.to_string(), Bridge { mtu });
            }
            "vxlan" if name.starts_with("vxlan-") => {
                let data = &link["linkinfo"]["info_data"];
                let Ok(local) = text(data, "local").parse() else {
                    continue;
                };
                state.vxlans.insert(
                    name.to_string(),
                    Vxlan {
                        vni: u32_of(&data["id"]),
                        local,
                        port: data["port"].as_u64().unwrap_or(0) as u16,
                        mtu,
                        master,
                    },
                );
            }
            "veth" if name.starts_with("tap") => {
                let peer = link["ifindex"]
                    .as_u64()
                    .and_then(|i| peers.get(&i).cloned())
                    .unwrap_or_default();
                state
                    .taps
                    .insert(name.to_string(), Tap { mtu, master, peer });
            }
            _ => {}
        }
    }
    crate::provider::observe_uplinks(&raw.links, &mut state);
    for e in items(&raw.fdb) {
        let dev = text(e, "ifname");
        // By name, not by the devices read: a targeted observation may not read the device.
        if !dev.starts_with("vxlan-") {
            continue;
        }
        if let Ok(dst) = text(e, "dst").parse() {
            state.fdb.insert(FdbEntry {
                dev: dev.to_string(),
                mac: text(e, "mac").to_ascii_lowercase(),
                dst,
            });
        }
    }
    state
}

/// What a targeted observation leaves unread, to be taken from the previous one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// Managed namespaces (still listed, not read).
    pub namespaces: BTreeSet<String>,
    /// The bridge forwarding database.
    pub fdb: bool,
    /// The distributed routers' ARP guard table.
    pub arp_guard: bool,
    /// `Some`: of the host's own devices (bridges, tunnels, taps, uplinks, subport
    /// devices) read only these; `None`: all.
    pub links: Option<BTreeSet<String>>,
}

impl Unread {
    /// What need not be read again: the namespaces `believed` holds whose desired state is
    /// the same in `before` (what the kernel was last brought to) and `after`, and the
    /// forwarding entries and ARP guard when they are wanted alike.
    pub fn unchanged(before: &HostState, after: &HostState, believed: &HostState) -> Unread {
        Unread {
            namespaces: unchanged_namespaces(before, after, believed),
            fdb: before.fdb == after.fdb,
            arp_guard: before.arp_guard == after.arp_guard,
            links: Some(changed_links(before, after, believed)),
        }
    }

    /// Reads again, after a plan ran, what its operations (their text, `touched`) name.
    pub fn after_plan(&self, touched: &str, wanted: &HostState, believed: &HostState) -> Unread {
        let names = |state: &HostState| link_names(state).map(str::to_string).collect::<Vec<_>>();
        let links = self.links.as_ref().map(|read| {
            let mut read = read.clone();
            read.extend(
                names(wanted)
                    .into_iter()
                    .chain(names(believed))
                    .filter(|name| touched.contains(name.as_str())),
            );
            read
        });
        Unread {
            namespaces: self
                .namespaces
                .iter()
                .filter(|name| !touched.contains(name.as_str()))
                .cloned()
                .collect(),
            fdb: self.fdb,
            arp_guard: self.arp_guard,
            links,
        }
    }
}

/// The names of a state's own host devices.
fn link_names(state: &HostState) -> impl Iterator<Item = &str> {
    state
        .bridges
        .keys()
        .chain(state.vxlans.keys())
        .chain(state.taps.keys())
        .chain(state.uplinks.keys())
        .chain(state.subports.keys())
        .map(String::as_str)
}

/// Host devices to read: those wanted differently in `before` and `after`, and those wanted
/// now that `believed` does not hold.
fn changed_links(before: &HostState, after: &HostState, believed: &HostState) -> BTreeSet<String> {
    fn differ<T: PartialEq>(
        a: &BTreeMap<String, T>,
        b: &BTreeMap<String, T>,
        out: &mut BTreeSet<String>,
    ) {
        out.extend(
            a.iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, _)| k.clone()),
        );
        out.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    }
    let mut read = BTreeSet::new();
    differ(&before.bridges, &after.bridges, &mut read);
    differ(&before.vxlans, &after.vxlans, &mut read);
    differ(&before.taps, &after.taps, &mut read);
    differ(&before.uplinks, &after.uplinks, &mut read);
    differ(&before.subports, &after.subports, &mut read);
    let known: BTreeSet<&str> = link_names(believed).collect();
    read.extend(
        link_names(after)
            .filter(|name| !known.contains(name))
            .map(str::to_string),
    );
    read
}

/// Completes an observation that left `unread` unread (a targeted one): each unread
/// namespace the kernel still lists, the instance end of a tap that lives in one, and the
/// unread forwarding entries and ARP guard are taken from `believed`, the state the
/// previous observation found.
pub fn complete_from(
    observed: &mut HostState,
    believed: &HostState,
    listed: &[String],
    unread: &Unread,
) {
    if unread.fdb {
        observed.fdb = believed.fdb.clone();
    }
    if unread.arp_guard {
        observed.arp_guard = believed.arp_guard.clone();
    }
    if let Some(read) = &unread.links {
        fn keep<T: Clone>(
            have: &mut BTreeMap<String, T>,
            believed: &BTreeMap<String, T>,
            read: &BTreeSet<String>,
        ) {
            for (name, value) in believed.iter().filter(|(n, _)| !read.contains(*n)) {
                have.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        keep(&mut observed.bridges, &believed.bridges, read);
        keep(&mut observed.vxlans, &believed.vxlans, read);
        keep(&mut observed.taps, &believed.taps, read);
        keep(&mut observed.uplinks, &believed.uplinks, read);
        keep(&mut observed.subports, &believed.subports, read);
    }
    let skipped = &unread.namespaces;
    for name in listed.iter().filter(|n| skipped.contains(*n)) {
        if let Some(ns) = believed.namespaces.get(name) {
            observed.namespaces.insert(name.clone(), ns.clone());
        }
    }
    for (name, tap) in observed.taps.iter_mut() {
        if tap.peer.0.is_empty() {
            if let Some(old) = believed.taps.get(name) {
                if skipped.contains(&old.peer.0) {
                    tap.peer = old.peer.clone();
                }
            }
        }
    }
}

/// The namespaces a targeted observation may skip: those `believed` holds whose desired
/// state is the same in `before` (what the kernel was last brought to) and `after`.
fn unchanged_namespaces(
    before: &HostState,
    after: &HostState,
    believed: &HostState,
) -> BTreeSet<String> {
    believed
        .namespaces
        .keys()
        .filter(|name| {
            let wanted = after.namespaces.get(*name);
            wanted.is_some() && before.namespaces.get(*name) == wanted
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Namespace, NsLink, Tap};

    fn ns(mac: &str) -> Namespace {
        let mut n = Namespace::default();
        n.links.insert(
            "eth0".into(),
            NsLink {
                mac: mac.into(),
                mtu: 1450,
                up: true,
            },
        );
        n
    }

    fn host(namespaces: &[(&str, &str)]) -> HostState {
        let mut h = HostState::default();
        for (name, mac) in namespaces {
            h.namespaces.insert(name.to_string(), ns(mac));
            h.taps.insert(
                format!("tap-{name}"),
                Tap {
                    mtu: 1450,
                    master: None,
                    peer: (name.to_string(), "eth0".into()),
                },
            );
        }
        h
    }

    #[test]
    fn only_namespaces_wanted_alike_before_and_after_and_known_are_skipped() {
        let before = host(&[("a", "m1"), ("b", "m2"), ("c", "m3")]);
        // b changes, c goes, d is new; e is known but wanted neither before nor now.
        let after = host(&[("a", "m1"), ("b", "m9"), ("d", "m4")]);
        let believed = host(&[("a", "m1"), ("b", "m2"), ("c", "m3"), ("e", "m5")]);
        let skip = unchanged_namespaces(&before, &after, &believed);
        assert_eq!(skip, BTreeSet::from(["a".to_string()]));
        // Not known: read, even when wanted alike.
        assert!(unchanged_namespaces(&before, &before, &HostState::default()).is_empty());
    }

    #[test]
    fn forwarding_entries_and_arp_guard_are_unread_when_wanted_alike() {
        let before = host(&[("a", "m1")]);
        let mut after = before.clone();
        let unread = Unread::unchanged(&before, &after, &before);
        assert!(unread.fdb && unread.arp_guard);
        after.fdb.insert(crate::state::FdbEntry {
            dev: "vxlan-1".into(),
            mac: "fa:16:3e:00:00:01".into(),
            dst: "198.18.0.2".parse().unwrap(),
        });
        let unread = Unread::unchanged(&before, &after, &before);
        assert!(!unread.fdb && unread.arp_guard);
        // Taken from what was believed when unread, kept as read otherwise.
        let mut observed = HostState::default();
        complete_from(
            &mut observed,
            &after,
            &[],
            &Unread {
                fdb: true,
                ..unread.clone()
            },
        );
        assert_eq!(observed.fdb, after.fdb);
        let mut observed = HostState::default();
        complete_from(&mut observed, &after, &[], &Unread::default());
        assert!(observed.fdb.is_empty());
    }

    #[test]
    fn only_devices_wanted_differently_or_unknown_or_touched_are_read() {
        let before = host(&[("a", "m1"), ("b", "m2")]);
        let mut after = host(&[("a", "m1"), ("c", "m3")]);
        after.taps.get_mut("tap-a").unwrap().mtu = 9000;
        let believed = before.clone();
        let unread = Unread::unchanged(&before, &after, &believed);
        let read = unread.links.clone().unwrap();
        // a's tap changed, b's goes, c's is new.
        assert_eq!(
            read,
            BTreeSet::from(["tap-a".into(), "tap-b".into(), "tap-c".into()])
        );
        let again = unread.after_plan("link set tap-zz up\nlink del tap-b\n", &after, &believed);
        assert_eq!(again.links.unwrap(), read);
        // Unread devices come from what was believed; read ones as found (gone: gone).
        let mut observed = HostState::default();
        let only_a = Unread {
            links: Some(BTreeSet::from(["tap-a".to_string()])),
            ..Unread::default()
        };
        complete_from(&mut observed, &believed, &[], &only_a);
        assert!(!observed.taps.contains_key("tap-a"));
        assert_eq!(observed.taps["tap-b"], believed.taps["tap-b"]);
    }

    #[test]
    fn skipped_namespaces_and_their_taps_peers_come_from_what_was_believed() {
        let believed = host(&[("a", "m1"), ("b", "m2")]);
        // Read: b (changed) and the host's links; a was skipped, so its tap's peer is unknown.
        let mut observed = host(&[("b", "m7")]);
        observed.taps.insert(
            "tap-a".into(),
            Tap {
                mtu: 1450,
                master: None,
                peer: Default::default(),
            },
        );
        let skip = Unread {
            namespaces: BTreeSet::from(["a".to_string()]),
            ..Unread::default()
        };
        let listed = vec!["a".to_string(), "b".to_string()];
        complete_from(&mut observed, &believed, &listed, &skip);
        assert_eq!(observed.namespaces["a"], believed.namespaces["a"]);
        assert_eq!(observed.namespaces["b"], ns("m7"));
        assert_eq!(
            observed.taps["tap-a"].peer,
            ("a".to_string(), "eth0".to_string())
        );
        // A skipped namespace the kernel no longer lists is gone.
        let mut observed = host(&[]);
        complete_from(&mut observed, &believed, &["b".to_string()], &skip);
        assert!(!observed.namespaces.contains_key("a"));
    }
}
