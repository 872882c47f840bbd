//! The security-group input of one host, from the cluster mirror: every port plugged here
//! (instances filtered; router ports, which the network owns, passed untouched), the rules
//! of their groups, the members of every group those rules name as a remote group (ports on
//! any host: fixed IPs and allowed address pairs), and the address groups they name.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use neutrino_firewall::{Direction, EtherType, FirewallModel, PortFilter, Rule};
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

/// The firewall input of the host whose plug decisions are `desired`.
pub fn firewall_model(cluster: &Cluster, desired: &Desired) -> FirewallModel {
    let mut model = FirewallModel::default();
    let mut groups: BTreeSet<String> = BTreeSet::new();
    for (id, outcome) in &desired.ports {
        let PortOutcome::Plug { tap, .. } = outcome else {
            continue;
        };
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
        });
    }
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
