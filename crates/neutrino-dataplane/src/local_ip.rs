//! Local IPs (Neutron's `local_ip`) on this host: each port association whose port is plugged
//! here serves the Local IP's address to the other ports of that port's network on this host.
//!
//! - **ARP.** The network's bridge answers ARP requests for the address itself with the
//!   associated port's MAC: a permanent neighbour entry on the bridge (tagged with protocol
//!   [`NEIGH_PROTOCOL`]), a static FDB entry for that MAC on the port's tap, and
//!   `neigh_suppress` on that tap (the kernel's proxy-ARP suppression answers only for MACs
//!   behind such ports). A side effect: the tap no longer receives other ports' gratuitous ARP
//!   and duplicate address probes.
//! - **Translation** (`ip_mode` `translate`; `passthrough` needs ARP only), in the bridge
//!   table [`TABLE`], IPv4 only. This kernel has no conntrack in the bridge family and
//!   br_netfilter re-routes (drops) bridged packets whose destination changes in the inet
//!   family, so translation is stateless, around the firewall: a request to the address,
//!   entering from another port of the network (prerouting, priority -300, before the firewall
//!   and br_netfilter), goes to the port's fixed IP and MAC, and its flow is remembered in a
//!   dynamic set keyed by the client's address, protocol and ports (ICMP echo: address and
//!   id); the port's replies of remembered flows leave with the Local IP as source (forward,
//!   priority 100, after br_netfilter's inet hooks). Conntrack and the security groups see
//!   only the fixed IP. TCP flows are kept for five days (conntrack's established timeout),
//!   two minutes after FIN or RST; UDP three minutes after the last packet; ICMP 30 s.
//!
//! ```text
//! table bridge neutrino_localip
//!   map port-net   ifname : verdict           tap of a served network → jump net-<bridge>
//!   map reply      ifname . ipv4_addr : verdict   associated tap . fixed IP → jump rep-…
//!   chain prerouting (prerouting, -300): ether type ip iifname vmap @port-net
//!   chain forward    (forward, 100):     ether type ip iifname . ip saddr vmap @reply
//!   map lip-<bridge>  ipv4_addr : verdict    Local IP → jump req-…
//!   chain net-<bridge>: ip daddr vmap @lip-<bridge>
//!   set flows-<k>, closing-<k>, icmp-<k>      one association's remembered flows
//!   chain req-<k>-<h> / rep-<k>-<h>           named after their content, so a changed port
//!                                             address is a new chain, its flows kept
//! ```
//!
//! Observed and desired state are compared object by object; the plan is one `nft -f`
//! transaction plus `ip`/`bridge` commands, empty once they agree, and never recreates a set
//! that is still wanted (established flows survive other associations' changes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::desired::PortOutcome;
use crate::names;
use crate::router::digest;

/// The bridge-family table of the translation.
pub const TABLE: &str = "neutrino_localip";
/// The protocol tag of the neighbour entries this module owns (`0x4e`).
pub const NEIGH_PROTOCOL: &str = "78";
/// The kinds of records the module reads.
pub const KINDS: &[&str] = &["local_ip", "local_ip_port_association"];

/// One association served on this host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Served {
    /// Short stable name of the association (its sets' suffix).
    pub key: String,
    /// The network's bridge.
    pub bridge: String,
    /// The associated port's tap.
    pub tap: String,
    /// The Local IP's address.
    pub local_ip: Ipv4Addr,
    /// The associated port's address that serves it.
    pub fixed_ip: Ipv4Addr,
    /// The associated port's MAC.
    pub mac: String,
    /// `ip_mode` is `translate` (else `passthrough`).
    pub translate: bool,
}

/// An ARP request for `ip` on `bridge` answered by the bridge itself with `mac`, which sits
/// behind the bridge port `port` (a tap, or a border gateway's WAN VXLAN device): the same
/// neighbour entry, static FDB entry and `neigh_suppress` as a Local IP's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArpAnswer {
    /// The network's bridge.
    pub bridge: String,
    /// The bridge port the MAC is behind.
    pub port: String,
    /// The address asked for.
    pub ip: Ipv4Addr,
    /// The MAC answered (lowercase).
    pub mac: String,
}

/// What this host should serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalIpModel {
    /// The associations served here, one per (bridge, Local IP).
    pub served: Vec<Served>,
    /// The taps plugged on each bridge that serves a Local IP.
    pub taps: BTreeMap<String, BTreeSet<String>>,
    /// Other addresses the bridges answer for (remote MACs of border gateways, see
    /// [`crate::l2gw`]).
    pub answers: BTreeSet<ArpAnswer>,
}

impl LocalIpModel {
    /// Nothing to serve: no association and no other answer.
    pub fn is_empty(&self) -> bool {
        self.served.is_empty() && self.answers.is_empty()
    }

    /// Every ARP answer: the associations' and the others.
    fn all_answers(&self) -> BTreeSet<ArpAnswer> {
        let mut out = self.answers.clone();
        out.extend(self.served.iter().map(|s| ArpAnswer {
            bridge: s.bridge.clone(),
            port: s.tap.clone(),
            ip: s.local_ip,
            mac: s.mac.clone(),
        }));
        out
    }
}

/// A bridge port whose ARP state this module may own: a tap or a VXLAN device.
fn answering_port(dev: &str) -> bool {
    dev.starts_with("tap") || dev.starts_with("vxlan-")
}

/// Kernel state this module owns, as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalIpObserved {
    /// The table exists.
    pub table: bool,
    /// Chain names.
    pub chains: BTreeSet<String>,
    /// Set names (maps excluded).
    pub sets: BTreeSet<String>,
    /// Map elements by map name: key text → target chain.
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Tagged neighbour entries: (bridge, address, MAC).
    pub neighbours: BTreeSet<(String, String, String)>,
    /// Taps with `neigh_suppress` on.
    pub suppressing: BTreeSet<String>,
    /// Static FDB entries on taps: (tap, MAC).
    pub static_fdb: BTreeSet<(String, String)>,
}

/// The kernel output [`observe`] reads.
#[derive(Clone, Debug, Default)]
pub struct RawLocalIp {
    /// `nft -j list table bridge neutrino_localip` (empty: no table).
    pub table: String,
    /// `ip -j neigh show nud permanent`.
    pub neighbours: Value,
    /// `bridge -j -d link show`.
    pub links: Value,
    /// `bridge -j fdb show`.
    pub fdb: Value,
}

/// One step of a plan.
pub type LocalIpOp = crate::host_op::HostOp;

/// The Local IPs the ports plugged here (`ports`, as [`crate::desired`] decided) serve, and
/// the other ARP answers `answers` ([`crate::desired::Desired::arp_answers`]).
pub fn desired(
    cluster: &Cluster,
    ports: &BTreeMap<String, PortOutcome>,
    answers: &BTreeSet<ArpAnswer>,
) -> LocalIpModel {
    let plugged: BTreeMap<&str, &str> = ports
        .iter()
        .filter_map(|(id, o)| match o {
            PortOutcome::Plug { tap, .. } => Some((id.as_str(), tap.as_str())),
            PortOutcome::Fail(_) => None,
        })
        .collect();
    let mut served: BTreeMap<(String, Ipv4Addr), Served> = BTreeMap::new();
    for assoc in cluster.all("local_ip_port_association") {
        let port_id = text(assoc, "fixed_port_id");
        let (Some(tap), Some(port)) = (plugged.get(port_id), cluster.get("port", port_id)) else {
            continue;
        };
        let (Ok(local_ip), Ok(fixed_ip)) = (
            text(assoc, "local_ip_address").parse::<Ipv4Addr>(),
            text(assoc, "fixed_ip").parse::<Ipv4Addr>(),
        ) else {
            continue;
        };
        let has_address = port["fixed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|ip| text(ip, "ip_address") == fixed_ip.to_string());
        if !has_address {
            continue;
        }
        let lip = text(assoc, "local_ip_id");
        let translate = cluster
            .get("local_ip", lip)
            .is_none_or(|l| text(l, "ip_mode") != "passthrough");
        let bridge = names::bridge(text(port, "network_id"));
        let key = digest(&format!("{lip}/{port_id}"))[..10].to_string();
        // Replies are told apart by port and address only: one translated Local IP each.
        let replies_taken = translate
            && served
                .values()
                .any(|s| s.translate && s.tap == *tap && s.fixed_ip == fixed_ip);
        if replies_taken {
            continue;
        }
        served.entry((bridge.clone(), local_ip)).or_insert(Served {
            key,
            bridge,
            tap: tap.to_string(),
            local_ip,
            fixed_ip,
            mac: text(port, "mac_address").to_ascii_lowercase(),
            translate,
        });
    }
    let bridges: BTreeSet<&String> = served.values().map(|s| &s.bridge).collect();
    let mut taps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, tap) in &plugged {
        let Some(port) = cluster.get("port", id) else {
            continue;
        };
        let bridge = names::bridge(text(port, "network_id"));
        if bridges.contains(&bridge) {
            taps.entry(bridge).or_default().insert(tap.to_string());
        }
    }
    LocalIpModel {
        served: served.into_values().collect(),
        taps,
        answers: answers.clone(),
    }
}

/// The request chain of an association: translate requests from the network's other ports.
fn request_rules(s: &Served) -> Vec<String> {
    let k = &s.key;
    let key = "ip saddr . meta l4proto . th sport . th dport";
    vec![
        format!("iifname \"{}\" return", s.tap),
        format!("meta l4proto udp update @flows-{k} {{ {key} }}"),
        format!("tcp flags syn delete @closing-{k} {{ {key} }}"),
        format!("tcp flags & (fin | rst) != 0 update @closing-{k} {{ {key} }}"),
        format!("meta l4proto tcp {key} != @closing-{k} update @flows-{k} {{ {key} timeout 5d }}"),
        format!("meta l4proto tcp {key} @closing-{k} update @flows-{k} {{ {key} timeout 2m }}"),
        format!("icmp type echo-request update @icmp-{k} {{ ip saddr . icmp id }}"),
        format!(
            "ip daddr set {} ether daddr set {} counter",
            s.fixed_ip, s.mac
        ),
    ]
}

/// The reply chain of an association: the remembered flows' replies leave from the Local IP.
fn reply_rules(s: &Served) -> Vec<String> {
    let (k, lip) = (&s.key, s.local_ip);
    let key = "ip daddr . meta l4proto . th dport . th sport";
    vec![
        format!("meta l4proto udp {key} @flows-{k} update @flows-{k} {{ {key} }} ip saddr set {lip}"),
        format!("tcp flags & (fin | rst) != 0 {key} @flows-{k} update @closing-{k} {{ {key} }}"),
        format!("meta l4proto tcp {key} @flows-{k} {key} != @closing-{k} update @flows-{k} {{ {key} timeout 5d }} ip saddr set {lip}"),
        format!("meta l4proto tcp {key} @flows-{k} {key} @closing-{k} update @flows-{k} {{ {key} timeout 2m }} ip saddr set {lip}"),
        format!("icmp type echo-reply ip daddr . icmp id @icmp-{k} ip saddr set {lip}"),
    ]
}

/// A content-named chain: `prefix-<key>-<digest of rules>`.
fn named(prefix: &str, s: &Served, rules: &[String]) -> String {
    let h = digest(&rules.join("\n"));
    format!("{prefix}-{}-{}", s.key, &h[..8])
}

/// The sets of an association, with their definitions.
fn sets_of(s: &Served) -> Vec<(String, String)> {
    let k = &s.key;
    let flow =
        "typeof ip saddr . meta l4proto . th sport . th dport; flags dynamic,timeout; size 65536;";
    vec![
        (format!("flows-{k}"), format!("{flow} timeout 3m;")),
        (format!("closing-{k}"), format!("{flow} timeout 2m;")),
        (
            format!("icmp-{k}"),
            "typeof ip saddr . icmp id; flags dynamic,timeout; size 65536; timeout 30s;".into(),
        ),
    ]
}

/// The table's objects for `model`: chains (name → rules), sets (name → definition), and
/// map elements (map → key → chain).
struct Objects {
    chains: BTreeMap<String, Vec<String>>,
    sets: BTreeMap<String, String>,
    maps: BTreeMap<String, BTreeMap<String, String>>,
}

/// The base chains and maps, present whenever the table is.
const BASE: &str = "  map port-net { type ifname : verdict; }
  map reply { type ifname . ipv4_addr : verdict; }
  chain prerouting {
    type filter hook prerouting priority -300; policy accept;
    ether type ip iifname vmap @port-net
  }
  chain forward {
    type filter hook forward priority 100; policy accept;
    ether type ip iifname . ip saddr vmap @reply
  }
";

/// Whether a chain or map is one of the base objects.
fn is_base(name: &str) -> bool {
    matches!(name, "prerouting" | "forward" | "port-net" | "reply")
}

fn objects(model: &LocalIpModel) -> Objects {
    let mut o = Objects {
        chains: BTreeMap::new(),
        sets: BTreeMap::new(),
        maps: BTreeMap::new(),
    };
    o.maps.insert("port-net".into(), BTreeMap::new());
    o.maps.insert("reply".into(), BTreeMap::new());
    for s in model.served.iter().filter(|s| s.translate) {
        let net = format!("net-{}", s.bridge);
        let lips = format!("lip-{}", s.bridge);
        o.chains
            .entry(net.clone())
            .or_insert_with(|| vec![format!("ip daddr vmap @{lips}")]);
        for tap in model.taps.get(&s.bridge).into_iter().flatten() {
            o.maps
                .entry("port-net".into())
                .or_default()
                .insert(tap.clone(), net.clone());
        }
        let req = request_rules(s);
        let rep = reply_rules(s);
        let (req_name, rep_name) = (named("req", s, &req), named("rep", s, &rep));
        o.maps
            .entry(lips)
            .or_default()
            .insert(s.local_ip.to_string(), req_name.clone());
        o.maps
            .entry("reply".into())
            .or_default()
            .entry(format!("{} . {}", s.tap, s.fixed_ip))
            .or_insert(rep_name.clone());
        o.chains.insert(req_name, req);
        o.chains.insert(rep_name, rep);
        o.sets.extend(sets_of(s));
    }
    o
}

/// An nft key as a script names it (interface names quoted).
fn key_text(key: &str) -> String {
    key.split(" . ")
        .map(|part| {
            if part.parse::<Ipv4Addr>().is_ok() {
                part.to_string()
            } else {
                format!("\"{part}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(" . ")
}

/// The nft script from `have` to `want` (`None` when they agree).
fn nft_script(model: &LocalIpModel, have: &LocalIpObserved) -> Option<String> {
    let t = format!("bridge {TABLE}");
    let want = objects(model);
    if !model.served.iter().any(|s| s.translate) {
        return have.table.then(|| format!("delete table {t}\n"));
    }
    let mut out = String::new();
    if !have.table {
        out.push_str(&format!("table {t} {{\n{BASE}}}\n"));
    }
    // Maps of bridges, then sets, then chains (which name them), then elements.
    for map in want.maps.keys().filter(|m| !is_base(m)) {
        if !have.maps.contains_key(map) {
            out.push_str(&format!(
                "add map {t} {map} {{ type ipv4_addr : verdict; }}\n"
            ));
        }
    }
    for (set, def) in &want.sets {
        if !have.sets.contains(set) {
            out.push_str(&format!("add set {t} {set} {{ {def} }}\n"));
        }
    }
    for (chain, rules) in &want.chains {
        if !have.chains.contains(chain) {
            out.push_str(&format!("add chain {t} {chain}\n"));
            for r in rules {
                out.push_str(&format!("add rule {t} {chain} {r}\n"));
            }
        }
    }
    let empty = BTreeMap::new();
    for (map, elements) in &want.maps {
        let had = have.maps.get(map).unwrap_or(&empty);
        for (key, chain) in elements {
            match had.get(key) {
                Some(c) if c == chain => {}
                Some(_) => {
                    out.push_str(&format!(
                        "delete element {t} {map} {{ {} }}\n",
                        key_text(key)
                    ));
                    out.push_str(&format!(
                        "add element {t} {map} {{ {} : jump {chain} }}\n",
                        key_text(key)
                    ));
                }
                None => out.push_str(&format!(
                    "add element {t} {map} {{ {} : jump {chain} }}\n",
                    key_text(key)
                )),
            }
        }
    }
    for (map, elements) in &have.maps {
        let wanted = want.maps.get(map).unwrap_or(&empty);
        for key in elements.keys().filter(|k| !wanted.contains_key(*k)) {
            out.push_str(&format!(
                "delete element {t} {map} {{ {} }}\n",
                key_text(key)
            ));
        }
    }
    for chain in &have.chains {
        if !is_base(chain) && !want.chains.contains_key(chain) {
            out.push_str(&format!("delete chain {t} {chain}\n"));
        }
    }
    for map in have.maps.keys() {
        if !is_base(map) && !want.maps.contains_key(map) {
            out.push_str(&format!("delete map {t} {map}\n"));
        }
    }
    for set in &have.sets {
        if !want.sets.contains_key(set) {
            out.push_str(&format!("delete set {t} {set}\n"));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The steps from `have` to `model`: ARP state first, then the table.
pub fn plan(model: &LocalIpModel, have: &LocalIpObserved) -> Vec<LocalIpOp> {
    let mut ops = Vec::new();
    let answers = model.all_answers();
    let neighbours: BTreeSet<(String, String, String)> = answers
        .iter()
        .map(|a| (a.bridge.clone(), a.ip.to_string(), a.mac.clone()))
        .collect();
    let suppressing: BTreeSet<String> = answers.iter().map(|a| a.port.clone()).collect();
    let fdb: BTreeSet<(String, String)> = answers
        .iter()
        .map(|a| (a.port.clone(), a.mac.clone()))
        .collect();
    for (tap, mac) in fdb.difference(&have.static_fdb) {
        ops.push(LocalIpOp::cmd(&[
            "bridge", "fdb", "replace", mac, "dev", tap, "master", "static",
        ]));
    }
    for tap in suppressing.difference(&have.suppressing) {
        ops.push(LocalIpOp::cmd(&[
            "bridge",
            "link",
            "set",
            "dev",
            tap,
            "neigh_suppress",
            "on",
        ]));
    }
    for (bridge, ip, mac) in neighbours.difference(&have.neighbours) {
        ops.push(LocalIpOp::cmd(&[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            bridge,
            "nud",
            "permanent",
            "protocol",
            NEIGH_PROTOCOL,
        ]));
    }
    for (bridge, ip, _) in have.neighbours.difference(&neighbours) {
        if !neighbours.iter().any(|(b, i, _)| b == bridge && i == ip) {
            ops.push(LocalIpOp::cmd(&["ip", "neigh", "del", ip, "dev", bridge]));
        }
    }
    for tap in have.suppressing.difference(&suppressing) {
        ops.push(LocalIpOp::cmd(&[
            "bridge",
            "link",
            "set",
            "dev",
            tap,
            "neigh_suppress",
            "off",
        ]));
    }
    for (tap, mac) in have.static_fdb.difference(&fdb) {
        ops.push(LocalIpOp::cmd(&[
            "bridge", "fdb", "del", mac, "dev", tap, "master",
        ]));
    }
    if let Some(script) = nft_script(model, have) {
        ops.push(LocalIpOp::Nft(script));
    }
    ops
}

/// The target chain of a verdict map element's value.
fn jump_target(v: &Value) -> Option<String> {
    ["jump", "goto"]
        .iter()
        .find_map(|k| v.get(k))
        .and_then(|j| j.get("target"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An element key as [`key_text`] reads it (`tap . 10.0.0.5`).
fn element_key(v: &Value) -> String {
    match v.get("concat").and_then(Value::as_array) {
        Some(parts) => parts
            .iter()
            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(" . "),
        None => v.as_str().map_or_else(|| v.to_string(), str::to_string),
    }
}

/// Reads what this module owns from the kernel's output; `taps` decides which links and FDB
/// entries are candidates (`tap…` devices).
pub fn observe(raw: &RawLocalIp) -> LocalIpObserved {
    let mut out = LocalIpObserved::default();
    if let Ok(doc) = serde_json::from_str::<Value>(&raw.table) {
        for item in doc["nftables"].as_array().into_iter().flatten() {
            if item.get("table").is_some() {
                out.table = true;
            } else if let Some(c) = item.get("chain") {
                out.chains.insert(text(c, "name").to_string());
            } else if let Some(m) = item.get("map") {
                let elements = m["elem"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        let pair = e.as_array()?;
                        Some((element_key(pair.first()?), jump_target(pair.get(1)?)?))
                    })
                    .collect();
                out.maps.insert(text(m, "name").to_string(), elements);
            } else if let Some(s) = item.get("set") {
                out.sets.insert(text(s, "name").to_string());
            }
        }
    }
    for n in raw.neighbours.as_array().into_iter().flatten() {
        if text(n, "protocol") == NEIGH_PROTOCOL {
            out.neighbours.insert((
                text(n, "dev").to_string(),
                text(n, "dst").to_string(),
                text(n, "lladdr").to_ascii_lowercase(),
            ));
        }
    }
    for l in raw.links.as_array().into_iter().flatten() {
        if l["neigh_suppress"] == true && answering_port(text(l, "ifname")) {
            out.suppressing.insert(text(l, "ifname").to_string());
        }
    }
    for f in raw.fdb.as_array().into_iter().flatten() {
        let dev = text(f, "ifname");
        if text(f, "state") == "static" && answering_port(dev) && f.get("master").is_some() {
            out.static_fdb
                .insert((dev.to_string(), text(f, "mac").to_ascii_lowercase()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(mode: &str) -> Cluster {
        Cluster::from_snapshot(&json!({"resources": {
            "port": [
                {"id": "pf", "network_id": "n1", "mac_address": "FA:16:3E:00:00:30",
                 "fixed_ips": [{"ip_address": "10.0.0.30"}]},
                {"id": "pa", "network_id": "n1", "mac_address": "fa:16:3e:00:00:10",
                 "fixed_ips": [{"ip_address": "10.0.0.10"}]},
                {"id": "px", "network_id": "n2", "mac_address": "fa:16:3e:00:00:99",
                 "fixed_ips": [{"ip_address": "10.9.0.10"}]}
            ],
            "local_ip": [{"id": "l1", "ip_mode": mode}],
            "local_ip_port_association": [
                {"id": "l1:pf", "local_ip_id": "l1", "fixed_port_id": "pf",
                 "fixed_ip": "10.0.0.30", "local_ip_address": "10.0.0.200"}
            ]
        }}))
    }

    fn ports() -> BTreeMap<String, PortOutcome> {
        ["pf", "pa", "px"]
            .iter()
            .map(|p| {
                let plug = PortOutcome::Plug {
                    tap: names::tap(p),
                    netns: format!("ns-{p}"),
                    ifname: "eth0".into(),
                    up: true,
                };
                (p.to_string(), plug)
            })
            .collect()
    }

    #[test]
    fn the_associated_port_serves_its_network_on_this_host() {
        let model = desired(&cluster("translate"), &ports(), &BTreeSet::new());
        assert_eq!(model.served.len(), 1);
        let s = &model.served[0];
        assert_eq!(
            (s.local_ip, s.fixed_ip, s.mac.as_str(), s.translate),
            (
                "10.0.0.200".parse().unwrap(),
                "10.0.0.30".parse().unwrap(),
                "fa:16:3e:00:00:30",
                true
            )
        );
        // Only the taps of the served network take part.
        let taps: Vec<&String> = model.taps.values().flatten().collect();
        assert_eq!(taps, [&names::tap("pa"), &names::tap("pf")]);
        // A port plugged elsewhere serves nothing here.
        let mut elsewhere = ports();
        elsewhere.remove("pf");
        assert!(desired(&cluster("translate"), &elsewhere, &BTreeSet::new())
            .served
            .is_empty());
    }

    #[test]
    fn plans_everything_then_nothing_once_observed() {
        let model = desired(&cluster("translate"), &ports(), &BTreeSet::new());
        let ops = plan(&model, &LocalIpObserved::default());
        let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
        assert!(text[0].starts_with("bridge fdb replace fa:16:3e:00:00:30 dev tap"));
        assert!(text[1].ends_with("neigh_suppress on"));
        assert!(text[2].starts_with("ip neigh replace 10.0.0.200 lladdr fa:16:3e:00:00:30"));
        let LocalIpOp::Nft(script) = &ops[3] else {
            panic!("no script: {ops:?}")
        };
        assert!(script.contains("ip daddr set 10.0.0.30 ether daddr set fa:16:3e:00:00:30"));
        assert!(script.contains("add element bridge neutrino_localip reply"));
        // What the kernel then shows, as observe reads it: nothing to do.
        let o = objects(&model);
        let s = &model.served[0];
        let have = LocalIpObserved {
            table: true,
            chains: o
                .chains
                .keys()
                .cloned()
                .chain(["prerouting".into(), "forward".into()])
                .collect(),
            sets: o.sets.keys().cloned().collect(),
            maps: o.maps.clone(),
            neighbours: [(s.bridge.clone(), "10.0.0.200".into(), s.mac.clone())].into(),
            suppressing: [s.tap.clone()].into(),
            static_fdb: [(s.tap.clone(), s.mac.clone())].into(),
        };
        assert_eq!(plan(&model, &have), vec![]);
        // The association gone: everything of it goes, the table too.
        let gone = plan(&LocalIpModel::default(), &have);
        let text: Vec<String> = gone.iter().map(ToString::to_string).collect();
        assert!(text
            .iter()
            .any(|t| t.starts_with("ip neigh del 10.0.0.200")));
        assert!(text.iter().any(|t| t.ends_with("neigh_suppress off")));
        assert!(text.iter().any(|t| t.starts_with("bridge fdb del")));
        assert_eq!(
            gone.last(),
            Some(&LocalIpOp::Nft(
                "delete table bridge neutrino_localip\n".into()
            ))
        );
    }

    #[test]
    fn one_translated_local_ip_per_port_address() {
        let mut c = cluster("translate");
        let second = json!({"id": "l2:pf", "local_ip_id": "l2", "fixed_port_id": "pf",
                            "fixed_ip": "10.0.0.30", "local_ip_address": "10.0.0.201"});
        c.put("local_ip_port_association", "l2:pf", Some(&second));
        let model = desired(&c, &ports(), &BTreeSet::new());
        assert_eq!(model.served.len(), 1);
        assert_eq!(model.served[0].local_ip.to_string(), "10.0.0.200");
    }

    #[test]
    fn passthrough_needs_arp_only() {
        let model = desired(&cluster("passthrough"), &ports(), &BTreeSet::new());
        let ops = plan(&model, &LocalIpObserved::default());
        assert_eq!(ops.len(), 3);
        assert!(ops.iter().all(|o| matches!(o, LocalIpOp::Cmd(_))));
    }

    #[test]
    fn a_changed_port_address_swaps_chains_and_keeps_the_sets() {
        let model = desired(&cluster("translate"), &ports(), &BTreeSet::new());
        let o = objects(&model);
        let have = LocalIpObserved {
            table: true,
            chains: o.chains.keys().cloned().collect(),
            sets: o.sets.keys().cloned().collect(),
            maps: o.maps.clone(),
            ..Default::default()
        };
        let mut moved = model.clone();
        moved.served[0].fixed_ip = "10.0.0.31".parse().unwrap();
        let Some(script) = nft_script(&moved, &have) else {
            panic!("nothing planned")
        };
        assert!(!script.contains("add set"));
        assert!(!script.contains("delete set"));
        assert!(script.contains("delete chain bridge neutrino_localip req-"));
        assert!(script.contains("ip daddr set 10.0.0.31"));
    }

    #[test]
    fn observes_tables_links_and_neighbours() {
        let raw = RawLocalIp {
            table: json!({"nftables": [
                {"metainfo": {}},
                {"table": {"family": "bridge", "name": TABLE}},
                {"chain": {"name": "prerouting"}},
                {"map": {"name": "reply", "elem": [[{"concat": ["tapf", "10.0.0.30"]},
                                                    {"jump": {"target": "rep-k-1"}}]]}},
                {"map": {"name": "port-net", "elem": [["tapa", {"jump": {"target": "net-b"}}]]}},
                {"set": {"name": "flows-k"}}
            ]})
            .to_string(),
            neighbours: json!([
                {"dst": "10.0.0.200", "dev": "brq1", "lladdr": "FA:16:3E:00:00:30", "protocol": "78"},
                {"dst": "10.0.0.1", "dev": "brq1", "lladdr": "fa:16:3e:00:00:01"}
            ]),
            links: json!([{"ifname": "tapf", "neigh_suppress": true},
                          {"ifname": "tapa", "neigh_suppress": false}]),
            fdb: json!([{"mac": "fa:16:3e:00:00:30", "ifname": "tapf", "master": "brq1",
                         "state": "static"},
                        {"mac": "fa:16:3e:00:00:31", "ifname": "tapf", "master": "brq1"}]),
        };
        let o = observe(&raw);
        assert!(o.table);
        assert_eq!(o.maps["reply"]["tapf . 10.0.0.30"], "rep-k-1");
        assert_eq!(o.maps["port-net"]["tapa"], "net-b");
        assert_eq!(o.sets, ["flows-k".to_string()].into());
        assert_eq!(o.neighbours.len(), 1);
        assert_eq!(o.suppressing, ["tapf".to_string()].into());
        assert_eq!(o.static_fdb.len(), 1);
        assert_eq!(key_text("tapf . 10.0.0.30"), "\"tapf\" . 10.0.0.30");
    }
}
