//! The security-group input of one host, from the cluster mirror: every port plugged here
//! (instances filtered; router ports, which the network owns, passed untouched), the
//! ports filtered by MAC on a shared device (bare-metal servers' at its uplinks, nested
//! containers' at their VM's tap), the rules
//! of their groups, the members of every group those rules name as a remote group (ports on
//! any host: fixed IPs and allowed address pairs), the address groups they name, and what
//! the enabled security-group logs record of each filtered port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use neutrino_firewall::{Direction, EtherType, FirewallModel, PortFilter, PortLog, Rule};
use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::desired::{Desired, PortOutcome};
use crate::names;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn fixed_ips(port: &Value) -> Vec<IpAddr> {
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| text(f, "ip_address").parse().ok())
        .collect()
}

fn address_pairs(port: &Value) -> Vec<(IpNet, Option<String>)> {
    port["allowed_address_pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let raw = text(p, "ip_address");
            let net = raw
                .parse::<IpNet>()
                .ok()
                .or_else(|| raw.parse::<IpAddr>().ok().map(IpNet::from))?;
            let mac = p["mac_address"].as_str().map(str::to_ascii_lowercase);
            Some((net, mac))
        })
        .collect()
}

fn port_range(v: &Value) -> Option<u16> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u16::try_from(n).ok())
}

fn rule(doc: &Value) -> Option<Rule> {
    let direction = match text(doc, "direction") {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    let ethertype = match text(doc, "ethertype") {
        "IPv6" => EtherType::IPv6,
        _ => EtherType::IPv4,
    };
    let protocol = match &doc["protocol"] {
        Value::String(p) => Some(p.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let opt = |k: &str| {
        doc[k]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some(Rule {
        id: text(doc, "id").to_string(),
        security_group_id: text(doc, "security_group_id").to_string(),
        direction,
        ethertype,
        protocol,
        port_range_min: port_range(&doc["port_range_min"]),
        port_range_max: port_range(&doc["port_range_max"]),
        remote_ip_prefix: doc["remote_ip_prefix"]
            .as_str()
            .and_then(|p| p.parse::<IpNet>().ok()),
        remote_group_id: opt("remote_group_id"),
        remote_address_group_id: opt("remote_address_group_id"),
    })
}

/// Whether the enabled `log` covers `port` (of `project`): its `target_id`, else the
/// members of its `resource_id`, else every port of its project.
pub fn log_covers(log: &Value, port: &Value) -> bool {
    if log["enabled"].as_bool() == Some(false) || text(log, "resource_type") != "security_group" {
        return false;
    }
    let (group, target) = (text(log, "resource_id"), text(log, "target_id"));
    if !target.is_empty() {
        return target == text(port, "id");
    }
    if !group.is_empty() {
        return strings(&port["security_groups"]).iter().any(|g| g == group);
    }
    text(log, "project_id") == text(port, "project_id")
}

/// What the enabled logs record of each port filtered here (ports with security only).
fn port_logs(cluster: &Cluster, ports: &[PortFilter]) -> BTreeMap<String, PortLog> {
    let mut out: BTreeMap<String, PortLog> = BTreeMap::new();
    for log in cluster.all("log") {
        let event = text(log, "event");
        for p in ports.iter().filter(|p| p.port_security_enabled) {
            let Some(port) = cluster.get("port", &p.port_id) else {
                continue;
            };
            if !log_covers(log, port) {
                continue;
            }
            let e = out.entry(p.port_id.clone()).or_default();
            e.accept |= event != "DROP";
            e.drop |= event != "ACCEPT";
        }
    }
    out
}

/// The firewall input of the host whose plug decisions are `desired`.
pub fn firewall_model(cluster: &Cluster, desired: &Desired) -> FirewallModel {
    let mut model = FirewallModel::default();
    let mut groups: BTreeSet<String> = BTreeSet::new();
    // Ports' taps, and trunk subports' VLAN devices (filtered with the subport's groups).
    let plugged = desired.ports.iter().filter_map(|(id, o)| match o {
        PortOutcome::Plug { tap, .. } => Some((id, tap)),
        PortOutcome::Fail(_) => None,
    });
    let subports = desired.subports.iter().filter_map(|(id, o)| match o {
        crate::trunk::SubportOutcome::Plug { device, .. } => Some((id, device)),
        crate::trunk::SubportOutcome::Fail(_) => None,
    });
    for (id, tap) in plugged.chain(subports) {
        let Some(port) = cluster.get("port", id) else {
            continue;
        };
        let network_owned = text(port, "device_owner").starts_with("network:");
        let security = !network_owned && port["port_security_enabled"].as_bool().unwrap_or(true);
        let security_groups = if security {
            strings(&port["security_groups"])
        } else {
            Vec::new()
        };
        groups.extend(security_groups.iter().cloned());
        model.ports.push(PortFilter {
            port_id: id.clone(),
            device: tap.clone(),
            bridge: Some(names::bridge(text(port, "network_id"))),
            mac: text(port, "mac_address").to_ascii_lowercase(),
            fixed_ips: fixed_ips(port),
            allowed_address_pairs: address_pairs(port),
            port_security_enabled: security,
            security_groups,
            shared_device: false,
        });
    }
    // Ports on a shared device (bare-metal servers' at this host's uplink into their
    // network, macvlan-nested containers' at their VM's tap), filtered by MAC.
    for (id, edge) in &desired.edge_ports {
        let Some(port) = cluster.get("port", id) else {
            continue;
        };
        if port["port_security_enabled"].as_bool() == Some(false) {
            continue;
        }
        let security_groups = strings(&port["security_groups"]);
        groups.extend(security_groups.iter().cloned());
        model.ports.push(PortFilter {
            port_id: id.clone(),
            device: edge.device.clone(),
            bridge: Some(edge.bridge.clone()),
            mac: text(port, "mac_address").to_ascii_lowercase(),
            fixed_ips: fixed_ips(port),
            allowed_address_pairs: address_pairs(port),
            port_security_enabled: true,
            security_groups,
            shared_device: true,
        });
    }
    model.logs = port_logs(cluster, &model.ports);
    let mut remote_groups: BTreeSet<String> = BTreeSet::new();
    let mut address_groups: BTreeSet<String> = BTreeSet::new();
    for doc in cluster.all("security_group_rule") {
        if !groups.contains(text(doc, "security_group_id")) {
            continue;
        }
        if let Some(r) = rule(doc) {
            remote_groups.extend(r.remote_group_id.clone());
            address_groups.extend(r.remote_address_group_id.clone());
            model.rules.push(r);
        }
    }
    model.rules.sort_by(|a, b| a.id.cmp(&b.id));
    if !remote_groups.is_empty() {
        for port in cluster.all("port") {
            let members: Vec<String> = strings(&port["security_groups"])
                .into_iter()
                .filter(|g| remote_groups.contains(g))
                .collect();
            if members.is_empty() {
                continue;
            }
            let mut addrs: BTreeSet<IpNet> = fixed_ips(port).into_iter().map(IpNet::from).collect();
            addrs.extend(address_pairs(port).into_iter().map(|(net, _)| net));
            for g in members {
                model
                    .group_members
                    .entry(g)
                    .or_default()
                    .extend(addrs.iter().copied());
            }
        }
        for g in remote_groups {
            model.group_members.entry(g).or_default();
        }
    }
    for id in address_groups {
        let addrs = cluster
            .get("address_group", &id)
            .map(|ag| {
                strings(&ag["addresses"])
                    .iter()
                    .filter_map(|a| a.parse::<IpNet>().ok())
                    .collect()
            })
            .unwrap_or_default();
        model.address_groups.insert(id, addrs);
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(logs: Value) -> Cluster {
        Cluster::from_snapshot(&json!({"revision": 1, "resources": {
            "port": [
                {"id": "p1", "project_id": "a", "security_groups": ["g1"]},
                {"id": "p2", "project_id": "a", "security_groups": ["g2"]},
                {"id": "p3", "project_id": "b", "security_groups": []}],
            "log": logs}}))
    }

    fn filters() -> Vec<PortFilter> {
        ["p1", "p2", "p3"]
            .iter()
            .map(|id| PortFilter {
                port_id: id.to_string(),
                device: format!("tap{id}"),
                bridge: None,
                mac: String::new(),
                fixed_ips: vec![],
                allowed_address_pairs: vec![],
                port_security_enabled: true,
                security_groups: vec![],
                shared_device: false,
            })
            .collect()
    }

    #[test]
    fn logs_cover_target_group_or_project_and_merge_events() {
        let c = cluster(json!([
            {"id": "l1", "project_id": "x", "resource_type": "security_group",
             "resource_id": "g1", "target_id": null, "event": "DROP", "enabled": true},
            {"id": "l2", "project_id": "x", "resource_type": "security_group",
             "resource_id": null, "target_id": "p1", "event": "ACCEPT", "enabled": true},
            {"id": "l3", "project_id": "b", "resource_type": "security_group",
             "resource_id": null, "target_id": null, "event": "ALL", "enabled": true},
            {"id": "l4", "project_id": "a", "resource_type": "security_group",
             "resource_id": null, "target_id": null, "event": "ALL", "enabled": false}]));
        let logs = port_logs(&c, &filters());
        let both = PortLog {
            accept: true,
            drop: true,
        };
        assert_eq!(logs.get("p1"), Some(&both));
        assert_eq!(logs.get("p2"), None);
        assert_eq!(logs.get("p3"), Some(&both));
    }
}
