//! Hardware VTEPs: a gateway device that is a physical switch is programmed through its OVSDB
//! server (RFC 7047, schema `hardware_vtep`) the way networking-l2gw's OVSDB agent does it.
//! [`wanted`] computes the rows the switch should hold from the mirrored cluster: one
//! `Logical_Switch` per connected network (named by the network id, described by its name,
//! `tunnel_key` = its VNI), the `vlan_bindings` of the device's interfaces (its
//! `Physical_Port`s), a `Ucast_Macs_Remote` per port of the network (and per MAC of its
//! allowed address pairs) at its host's tunnel IP (a `Physical_Locator` with
//! `vxlan_over_ipv4`) and an `unknown-dst` `Mcast_Macs_Remote`
//! flooding to those hosts; the network's other gateways (software gateways, other VTEPs)
//! are flooded to as well, and the MACs they learnt are remote MACs at their tunnel IPs.
//! [`observe`] reads the switch's rows from the results of [`select_ops`] (or rows of the
//! [`TABLES`] in that form, e.g. from a replica the agent keeps by `monitor`), [`plan`] diffs
//! the two into the operations of one `transact`, and [`learned`] gives the switch's own
//! `Ucast_Macs_Local` per network, to report like a software gateway's learned MACs. No I/O
//! here: the agent runs the transactions.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::cluster::{text, Cluster};

/// The OVSDB database name of the schema.
pub const DATABASE: &str = "hardware_vtep";
/// The encapsulation of every locator written.
pub const ENCAPSULATION: &str = "vxlan_over_ipv4";
/// The MAC of the flooding (broadcast, unknown unicast, multicast) entry.
pub const UNKNOWN_DST: &str = "unknown-dst";

/// The logical switch of a network: its id (networking-l2gw's naming).
pub fn switch_name(network: &str) -> String {
    network.to_string()
}

/// The `host` of the learned-MAC reports (`l2gw_learned_macs`) of physical switch `name`.
pub fn report_host(name: &str) -> String {
    format!("vtep:{name}")
}

/// Whether a logical switch name is one Neutrino manages: a network id (a UUID in its
/// hyphenated form).
fn managed_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A remote MAC: the port's first address (may be empty) and its host's tunnel IP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteMac {
    /// `ipaddr` of the row.
    pub ip: String,
    /// `dst_ip` of its locator.
    pub locator: String,
}

/// What one physical switch should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Logical switches by name: the network id and its VNI.
    pub switches: BTreeMap<String, (String, i64)>,
    /// Their descriptions (the networks' names), by logical switch name.
    pub descriptions: BTreeMap<String, String>,
    /// VLAN bindings per physical port name: VLAN to logical switch name.
    pub bindings: BTreeMap<String, BTreeMap<i64, String>>,
    /// Remote unicast MACs by (logical switch, MAC).
    pub ucast: BTreeMap<(String, String), RemoteMac>,
    /// Flood locators (tunnel IPs) per logical switch.
    pub flood: BTreeMap<String, BTreeSet<String>>,
}

/// IPv4 tunnel endpoints of the registered agents, by host.
fn tunnel_ips(cluster: &Cluster) -> BTreeMap<String, String> {
    cluster
        .all("agent")
        .filter_map(|a| {
            let ip: std::net::Ipv4Addr = a["configurations"]["tunnel_ip"].as_str()?.parse().ok()?;
            Some((text(a, "host").to_string(), ip.to_string()))
        })
        .collect()
}

/// The rows gateway device `device` (a physical switch) should hold.
pub fn wanted(cluster: &Cluster, device: &str) -> Wanted {
    let mut out = Wanted::default();
    let mut networks = BTreeMap::new();
    for a in crate::l2gw::attachments(cluster, device) {
        let Some(net) = cluster.get("network", &a.network) else {
            continue;
        };
        let Some(vni) = net["provider:segmentation_id"]
            .as_i64()
            .filter(|v| (1..=0xff_ffff).contains(v))
        else {
            continue;
        };
        let name = switch_name(&a.network);
        out.descriptions
            .insert(name.clone(), text(net, "name").to_string());
        out.switches.insert(name.clone(), (a.network.clone(), vni));
        networks.insert(a.network.clone(), name.clone());
        out.bindings
            .entry(a.interface.clone())
            .or_default()
            .insert(i64::from(a.vlan), name);
    }
    let tunnels = tunnel_ips(cluster);
    for port in cluster.all("port") {
        let (Some(ls), Some(locator)) = (
            networks.get(text(port, "network_id")),
            tunnels.get(text(port, "binding:host_id")),
        ) else {
            continue;
        };
        let mac = text(port, "mac_address").to_ascii_lowercase();
        // Bound ports only (the lookup above): those are plugged somewhere.
        if mac.is_empty() {
            continue;
        }
        let ip = port["fixed_ips"]
            .as_array()
            .and_then(|ips| ips.first())
            .map(|f| text(f, "ip_address").to_string())
            .unwrap_or_default();
        out.flood
            .entry(ls.clone())
            .or_default()
            .insert(locator.clone());
        // The MACs of its allowed address pairs too (a pair without one uses the port's).
        let pairs = port["allowed_address_pairs"]
            .as_array()
            .into_iter()
            .flatten();
        for pair in pairs {
            let pair_mac = text(pair, "mac_address").to_ascii_lowercase();
            if pair_mac.is_empty() || pair_mac == mac {
                continue;
            }
            let pair_ip = text(pair, "ip_address");
            let pair_ip = pair_ip.split('/').next().unwrap_or_default().to_string();
            out.ucast
                .entry((ls.clone(), pair_mac))
                .or_insert_with(|| RemoteMac {
                    ip: pair_ip,
                    locator: locator.clone(),
                });
        }
        out.ucast.insert(
            (ls.clone(), mac),
            RemoteMac {
                ip,
                locator: locator.clone(),
            },
        );
    }
    // The network's other gateways (software gateways, other VTEPs): flooding to them, and
    // what they learnt behind their interfaces at their tunnel IPs (a port's MAC wins).
    let all_tunnels = crate::desired::tunnel_endpoints(cluster);
    for (other, reporter, ip) in crate::desired::gateways(cluster, &all_tunnels) {
        let std::net::IpAddr::V4(ip) = ip else {
            continue;
        };
        if other == device {
            continue;
        }
        let locator = ip.to_string();
        for a in crate::l2gw::attachments(cluster, &other) {
            let Some(ls) = networks.get(&a.network) else {
                continue;
            };
            out.flood
                .entry(ls.clone())
                .or_default()
                .insert(locator.clone());
            let learned = cluster
                .all("l2gw_learned_macs")
                .filter(|r| text(r, "host") == reporter && text(r, "network_id") == a.network);
            for r in learned {
                for mac in r["macs"].as_array().into_iter().flatten() {
                    let Some(mac) = mac.as_str().filter(|m| !m.is_empty()) else {
                        continue;
                    };
                    out.ucast
                        .entry((ls.clone(), mac.to_ascii_lowercase()))
                        .or_insert_with(|| RemoteMac {
                            ip: String::new(),
                            locator: locator.clone(),
                        });
                }
            }
        }
    }
    out
}

/// One `Ucast_Macs_*` or `Mcast_Macs_*` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacRow {
    /// `_uuid`.
    pub uuid: String,
    /// `logical_switch` (a row uuid).
    pub logical_switch: String,
    /// `MAC`, lowercase.
    pub mac: String,
    /// `ipaddr`.
    pub ip: String,
    /// `locator` or `locator_set` (a row uuid).
    pub locator: String,
}

/// The rows of one physical switch's database, as [`select_ops`] read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The switch's `tunnel_ips`.
    pub tunnel_ips: Vec<String>,
    /// Its ports by name: `_uuid` and `vlan_bindings` (VLAN to logical switch uuid).
    pub ports: BTreeMap<String, (String, BTreeMap<i64, String>)>,
    /// Logical switches by uuid: name and tunnel key.
    pub switches: BTreeMap<String, (String, Option<i64>)>,
    /// VXLAN locators by uuid: their `dst_ip`.
    pub locators: BTreeMap<String, String>,
    /// Locator sets by uuid: their locators' uuids.
    pub locator_sets: BTreeMap<String, BTreeSet<String>>,
    /// `Ucast_Macs_Remote`.
    pub ucast_remote: Vec<MacRow>,
    /// `Mcast_Macs_Remote` (locator: the locator set).
    pub mcast_remote: Vec<MacRow>,
    /// `Ucast_Macs_Local`.
    pub ucast_local: Vec<MacRow>,
    /// `Mcast_Macs_Local` (locator: the locator set).
    pub mcast_local: Vec<MacRow>,
}

/// The tables [`observe`] reads, in the order of its results (what the agent's `monitor`
/// replicates).
pub const TABLES: [&str; 9] = [
    "Physical_Switch",
    "Physical_Port",
    "Logical_Switch",
    "Physical_Locator",
    "Physical_Locator_Set",
    "Ucast_Macs_Remote",
    "Mcast_Macs_Remote",
    "Ucast_Macs_Local",
    "Mcast_Macs_Local",
];

/// The operations of the `transact` that reads what [`observe`] needs, in its order.
pub fn select_ops() -> Vec<Value> {
    TABLES
        .iter()
        .map(|t| json!({"op": "select", "table": t, "where": []}))
        .collect()
}

/// A uuid atom `["uuid", "..."]`.
fn uuid_of(v: &Value) -> Option<String> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::String(u)]) if tag == "uuid" => Some(u.clone()),
        _ => None,
    }
}

/// The members of an OVSDB set (a lone atom is a one-element set).
fn set_of(v: &Value) -> Vec<Value> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(items)]) if tag == "set" => items.clone(),
        _ if v.is_null() => Vec::new(),
        _ => vec![v.clone()],
    }
}

/// The pairs of an OVSDB map.
fn map_of(v: &Value) -> Vec<(Value, Value)> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, Value::Array(pairs)]) if tag == "map" => pairs
            .iter()
            .filter_map(|p| match p.as_array().map(Vec::as_slice) {
                Some([k, v]) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn rows(result: Option<&Value>) -> impl Iterator<Item = &Value> {
    result
        .and_then(|r| r["rows"].as_array())
        .into_iter()
        .flatten()
}

fn mac_rows(result: Option<&Value>, locator: &str) -> Vec<MacRow> {
    rows(result)
        .filter_map(|r| {
            Some(MacRow {
                uuid: uuid_of(&r["_uuid"])?,
                logical_switch: uuid_of(&r["logical_switch"])?,
                mac: text(r, "MAC").to_ascii_lowercase(),
                ip: text(r, "ipaddr").to_string(),
                locator: uuid_of(&r[locator]).unwrap_or_default(),
            })
        })
        .collect()
}

/// Reads the results of [`select_ops`] for physical switch `switch`; `None` when the
/// database has no such switch (yet).
pub fn observe(switch: &str, results: &[Value]) -> Option<Observed> {
    let sw = rows(results.first()).find(|r| text(r, "name") == switch)?;
    let port_ids: BTreeSet<String> = set_of(&sw["ports"]).iter().filter_map(uuid_of).collect();
    let mut out = Observed {
        tunnel_ips: set_of(&sw["tunnel_ips"])
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        ..Observed::default()
    };
    for r in rows(results.get(1)) {
        let Some(id) = uuid_of(&r["_uuid"]).filter(|u| port_ids.contains(u)) else {
            continue;
        };
        let bindings = map_of(&r["vlan_bindings"])
            .into_iter()
            .filter_map(|(k, v)| Some((k.as_i64()?, uuid_of(&v)?)))
            .collect();
        out.ports
            .insert(text(r, "name").to_string(), (id, bindings));
    }
    for r in rows(results.get(2)) {
        if let Some(id) = uuid_of(&r["_uuid"]) {
            let key = set_of(&r["tunnel_key"]).first().and_then(Value::as_i64);
            out.switches.insert(id, (text(r, "name").to_string(), key));
        }
    }
    for r in rows(results.get(3)) {
        let vxlan = set_of(&r["encapsulation_type"])
            .iter()
            .any(|e| e == ENCAPSULATION);
        if let (Some(id), true) = (uuid_of(&r["_uuid"]), vxlan) {
            out.locators.insert(id, text(r, "dst_ip").to_string());
        }
    }
    for r in rows(results.get(4)) {
        if let Some(id) = uuid_of(&r["_uuid"]) {
            let locs = set_of(&r["locators"]).iter().filter_map(uuid_of).collect();
            out.locator_sets.insert(id, locs);
        }
    }
    out.ucast_remote = mac_rows(results.get(5), "locator");
    out.mcast_remote = mac_rows(results.get(6), "locator_set");
    out.ucast_local = mac_rows(results.get(7), "locator");
    out.mcast_local = mac_rows(results.get(8), "locator_set");
    Some(out)
}

/// Builds one transaction's references to rows that exist or are inserted by it.
struct Refs<'a> {
    have: &'a Observed,
    ops: Vec<Value>,
    named: usize,
    locators: BTreeMap<String, Value>,
}

impl Refs<'_> {
    fn name(&mut self, prefix: &str) -> String {
        self.named += 1;
        format!("{prefix}{}", self.named)
    }

    /// The locator of tunnel IP `ip`: an existing one, else inserted once.
    fn locator(&mut self, ip: &str) -> Value {
        if let Some(r) = self.locators.get(ip) {
            return r.clone();
        }
        let existing = self
            .have
            .locators
            .iter()
            .find(|(_, dst)| dst.as_str() == ip)
            .map(|(u, _)| json!(["uuid", u]));
        let r = existing.unwrap_or_else(|| {
            let name = self.name("loc");
            self.ops
                .push(json!({"op": "insert", "table": "Physical_Locator",
                "uuid-name": name,
                "row": {"dst_ip": ip, "encapsulation_type": ENCAPSULATION}}));
            json!(["named-uuid", name])
        });
        self.locators.insert(ip.to_string(), r.clone());
        r
    }

    fn delete(&mut self, table: &str, uuid: &str) {
        self.ops.push(json!({"op": "delete", "table": table,
            "where": [["_uuid", "==", ["uuid", uuid]]]}));
    }
}

/// The operations (without the database name) of one `transact` bringing `have` to `want`;
/// empty when nothing differs. Neutrino owns the logical switches named like network ids
/// (hyphenated UUIDs), their remote MACs, and the `vlan_bindings` of the switch's
/// ports; other logical switches and their rows are left alone. A port `want` names that the
/// switch lacks is skipped (see [`missing_ports`]).
pub fn plan(want: &Wanted, have: &Observed) -> Vec<Value> {
    let mut refs = Refs {
        have,
        ops: Vec::new(),
        named: 0,
        locators: BTreeMap::new(),
    };
    // Logical switches: the first row of each name is the one kept.
    let mut by_name: BTreeMap<&str, &str> = BTreeMap::new();
    for (uuid, (name, _)) in &have.switches {
        by_name.entry(name.as_str()).or_insert(uuid.as_str());
    }
    let mut ls_ref: BTreeMap<&str, Value> = BTreeMap::new();
    for (name, (_, vni)) in &want.switches {
        match by_name.get(name.as_str()) {
            Some(uuid) => {
                if have.switches[*uuid].1 != Some(*vni) {
                    refs.ops
                        .push(json!({"op": "update", "table": "Logical_Switch",
                        "where": [["_uuid", "==", ["uuid", uuid]]],
                        "row": {"tunnel_key": vni}}));
                }
                ls_ref.insert(name, json!(["uuid", uuid]));
            }
            None => {
                let n = refs.name("ls");
                refs.ops
                    .push(json!({"op": "insert", "table": "Logical_Switch",
                    "uuid-name": n,
                    "row": {"name": name, "tunnel_key": vni,
                            "description": want.descriptions.get(name).cloned().unwrap_or_default()}}));
                ls_ref.insert(name, json!(["named-uuid", n]));
            }
        }
    }
    // Managed rows by uuid: kept (wanted, first of its name) or deleted.
    let kept: BTreeMap<&str, &str> = have
        .switches
        .iter()
        .filter(|(u, (name, _))| {
            want.switches.contains_key(name) && by_name.get(name.as_str()) == Some(&u.as_str())
        })
        .map(|(u, (name, _))| (u.as_str(), name.as_str()))
        .collect();
    let doomed: BTreeSet<&str> = have
        .switches
        .iter()
        .filter(|(u, (name, _))| managed_name(name) && !kept.contains_key(u.as_str()))
        .map(|(u, _)| u.as_str())
        .collect();
    // Port bindings.
    for (port, (uuid, bindings)) in &have.ports {
        let target: BTreeMap<i64, Value> = want
            .bindings
            .get(port)
            .into_iter()
            .flatten()
            .filter_map(|(vlan, ls)| Some((*vlan, ls_ref.get(ls.as_str())?.clone())))
            .collect();
        // Bindings to logical switches Neutrino does not manage stay.
        let mut row: BTreeMap<i64, Value> = bindings
            .iter()
            .filter(|(_, ls)| {
                !kept.contains_key(ls.as_str())
                    && !doomed.contains(ls.as_str())
                    && have.switches.contains_key(ls.as_str())
            })
            .map(|(vlan, ls)| (*vlan, json!(["uuid", ls])))
            .collect();
        row.extend(target);
        let now: BTreeMap<i64, Value> = bindings
            .iter()
            .map(|(vlan, ls)| (*vlan, json!(["uuid", ls])))
            .collect();
        if row != now {
            let pairs: Vec<Value> = row.into_iter().map(|(k, v)| json!([k, v])).collect();
            refs.ops
                .push(json!({"op": "update", "table": "Physical_Port",
                "where": [["_uuid", "==", ["uuid", uuid]]],
                "row": {"vlan_bindings": ["map", pairs]}}));
        }
    }
    // Remote unicast MACs.
    let mut present: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &have.ucast_remote {
        let ls = row.logical_switch.as_str();
        if let Some(name) = kept.get(ls) {
            let key = (name.to_string(), row.mac.clone());
            let same = want.ucast.get(&key).is_some_and(|m| {
                m.ip == row.ip && have.locators.get(&row.locator) == Some(&m.locator)
            });
            if same && present.insert(key) {
                continue;
            }
        } else if !doomed.contains(ls) {
            continue;
        }
        refs.delete("Ucast_Macs_Remote", &row.uuid);
    }
    for ((ls, mac), m) in &want.ucast {
        if present.contains(&(ls.clone(), mac.clone())) {
            continue;
        }
        let Some(ls_r) = ls_ref.get(ls.as_str()).cloned() else {
            continue;
        };
        let loc = refs.locator(&m.locator);
        refs.ops
            .push(json!({"op": "insert", "table": "Ucast_Macs_Remote",
            "row": {"MAC": mac, "ipaddr": m.ip, "logical_switch": ls_r, "locator": loc}}));
    }
    // Flooding toward the network's hosts.
    let mut flooded: BTreeSet<&str> = BTreeSet::new();
    for row in &have.mcast_remote {
        let ls = row.logical_switch.as_str();
        if let Some(name) = kept.get(ls) {
            let dsts: BTreeSet<String> = have
                .locator_sets
                .get(&row.locator)
                .into_iter()
                .flatten()
                .filter_map(|l| have.locators.get(l).cloned())
                .collect();
            let same = row.mac == UNKNOWN_DST && want.flood.get(*name) == Some(&dsts);
            if same && flooded.insert(name) {
                continue;
            }
        } else if !doomed.contains(ls) {
            continue;
        }
        refs.delete("Mcast_Macs_Remote", &row.uuid);
    }
    for (ls, dsts) in &want.flood {
        let Some(ls_r) = ls_ref.get(ls.as_str()).cloned() else {
            continue;
        };
        if flooded.contains(ls.as_str()) || dsts.is_empty() {
            continue;
        }
        let locs: Vec<Value> = dsts.iter().map(|d| refs.locator(d)).collect();
        let set = refs.name("set");
        refs.ops
            .push(json!({"op": "insert", "table": "Physical_Locator_Set",
            "uuid-name": set, "row": {"locators": ["set", locs]}}));
        refs.ops
            .push(json!({"op": "insert", "table": "Mcast_Macs_Remote",
            "row": {"MAC": UNKNOWN_DST, "logical_switch": ls_r,
                    "locator_set": ["named-uuid", set]}}));
    }
    // Logical switches no connection wants any more, with what the switch learnt on them.
    for uuid in &doomed {
        for row in have
            .ucast_local
            .iter()
            .filter(|r| r.logical_switch == *uuid)
        {
            refs.delete("Ucast_Macs_Local", &row.uuid);
        }
        for row in have
            .mcast_local
            .iter()
            .filter(|r| r.logical_switch == *uuid)
        {
            refs.delete("Mcast_Macs_Local", &row.uuid);
        }
        refs.delete("Logical_Switch", uuid);
    }
    refs.ops
}

/// The ports `want` binds that the switch does not have.
pub fn missing_ports<'a>(want: &'a Wanted, have: &Observed) -> Vec<&'a str> {
    want.bindings
        .keys()
        .filter(|p| !have.ports.contains_key(*p))
        .map(String::as_str)
        .collect()
}

/// What the switch learnt locally (`Ucast_Macs_Local`) per connected network: every network
/// of `want` present, possibly empty.
pub fn learned(want: &Wanted, have: &Observed) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = want
        .switches
        .values()
        .map(|(network, _)| (network.clone(), BTreeSet::new()))
        .collect();
    for row in &have.ucast_local {
        let network = have
            .switches
            .get(&row.logical_switch)
            .and_then(|(name, _)| want.switches.get(name));
        if let Some((network, _)) = network {
            if !row.mac.is_empty() {
                out.entry(network.clone())
                    .or_default()
                    .insert(row.mac.clone());
            }
        }
    }
    out
}
