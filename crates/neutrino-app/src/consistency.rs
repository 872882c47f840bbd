//! Store consistency check: every reference between stored objects points at an existing
//! object of the right kind, and every claim (IP, MAC, segment, chain id, membership...)
//! belongs to existing objects, and every object's claims exist. Used after fuzzing and
//! crash tests (`neutrino check-store`): a failed request must have left nothing behind.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use neutrino_store::{Record, Store, StoreError};
use neutrino_types::attrs::is_uuid;
use serde_json::Value;

/// Reads the whole store and returns every inconsistency found (empty: consistent).
pub async fn check_store(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut tx = store.read().await?;
    let (records, claims) = tx.dump().await?;
    Ok(check(&records, &claims))
}

/// The checks of [`check_store`] over a dump of the store.
pub fn check(records: &[Record], claims: &[(String, String, String)]) -> Vec<String> {
    let by_id: HashMap<&str, &Record> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let claim_set: HashMap<(&str, &str), &str> = claims
        .iter()
        .map(|(s, k, o)| ((s.as_str(), k.as_str()), o.as_str()))
        .collect();
    let mut problems = Vec::new();
    let mut expect = |r: &Record, field: &str, id: &str, kinds: &[&str]| match by_id.get(id) {
        Some(t) if kinds.contains(&t.kind.as_str()) => {}
        Some(t) => problems.push(format!(
            "{} {}: {field} {id} is a {}, not a {}",
            r.kind,
            r.id,
            t.kind,
            kinds.join("/")
        )),
        None => problems.push(format!("{} {}: {field} {id} does not exist", r.kind, r.id)),
    };
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let ids_of = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut ip_problems = Vec::new();
    for r in records {
        if let Some(parent) = &r.parent_id {
            if !by_id.contains_key(parent.as_str()) {
                ip_problems.push(format!(
                    "{} {}: parent {parent} does not exist",
                    r.kind, r.id
                ));
            }
        }
        let b = &r.body;
        match r.kind.as_str() {
            "subnet" => {
                if let Some(n) = str_of(b, "network_id") {
                    expect(r, "network_id", &n, &["network"]);
                }
                if let Some(p) = str_of(b, "subnetpool_id") {
                    expect(r, "subnetpool_id", &p, &["subnetpool"]);
                }
            }
            "port" => {
                let network = str_of(b, "network_id").unwrap_or_default();
                expect(r, "network_id", &network, &["network"]);
                for ip in b
                    .get("fixed_ips")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let subnet = str_of(ip, "subnet_id").unwrap_or_default();
                    match by_id.get(subnet.as_str()) {
                        Some(s) if s.kind == "subnet" => {
                            if str_of(&s.body, "network_id").as_deref() != Some(&network) {
                                ip_problems.push(format!(
                                    "port {}: fixed IP on subnet {subnet} of another network",
                                    r.id
                                ));
                            }
                        }
                        _ => ip_problems.push(format!(
                            "port {}: fixed IP on subnet {subnet} that does not exist",
                            r.id
                        )),
                    }
                    let addr = str_of(ip, "ip_address").and_then(|a| a.parse::<IpAddr>().ok());
                    if let Some(addr) = addr {
                        let scope = format!("ip:{subnet}");
                        let key = neutrino_ipam::ip_key(addr);
                        if !claim_set.contains_key(&(scope.as_str(), key.as_str())) {
                            ip_problems.push(format!(
                                "port {}: fixed IP {addr} of subnet {subnet} is not claimed",
                                r.id
                            ));
                        }
                    }
                }
                for g in ids_of(b, "security_groups") {
                    expect(r, "security_groups", &g, &["security_group"]);
                }
                let owner = str_of(b, "device_owner").unwrap_or_default();
                let device = str_of(b, "device_id").unwrap_or_default();
                if (owner.starts_with("network:router_interface")
                    || owner == "network:router_gateway")
                    && !device.is_empty()
                {
                    expect(r, "device_id", &device, &["router"]);
                }
                if owner == "network:floatingip" && !device.is_empty() {
                    expect(r, "device_id", &device, &["floatingip"]);
                }
            }
            "security_group_rule" => {
                if let Some(g) = str_of(b, "security_group_id") {
                    expect(r, "security_group_id", &g, &["security_group"]);
                }
                if let Some(g) = str_of(b, "remote_group_id") {
                    expect(r, "remote_group_id", &g, &["security_group"]);
                }
                if let Some(g) = str_of(b, "remote_address_group_id") {
                    expect(r, "remote_address_group_id", &g, &["address_group"]);
                }
            }
            "floatingip" => {
                if let Some(n) = str_of(b, "floating_network_id") {
                    expect(r, "floating_network_id", &n, &["network"]);
                }
                if let Some(p) = str_of(b, "port_id") {
                    expect(r, "port_id", &p, &["port"]);
                    let scope = format!("fip:port:{p}");
                    if !claim_set.contains_key(&(scope.as_str(), r.id.as_str())) {
                        ip_problems.push(format!(
                            "floatingip {}: no index claim {scope} for its port",
                            r.id
                        ));
                    }
                }
                if let Some(x) = str_of(b, "router_id") {
                    expect(r, "router_id", &x, &["router"]);
                }
            }
            "router" => {
                if let Some(n) = b
                    .get("external_gateway_info")
                    .and_then(|g| str_of(g, "network_id"))
                {
                    expect(r, "external_gateway_info.network_id", &n, &["network"]);
                }
            }
            "trunk" => {
                if let Some(p) = str_of(b, "port_id") {
                    expect(r, "port_id", &p, &["port"]);
                }
                for s in b
                    .get("sub_ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let p = str_of(s, "port_id").unwrap_or_default();
                    expect(r, "sub_ports.port_id", &p, &["port"]);
                }
            }
            "port_pair" => {
                for f in ["ingress", "egress"] {
                    if let Some(p) = str_of(b, f) {
                        expect(r, f, &p, &["port"]);
                    }
                }
            }
            "port_pair_group" => {
                for p in ids_of(b, "port_pairs") {
                    expect(r, "port_pairs", &p, &["port_pair"]);
                }
            }
            "port_chain" => {
                for p in ids_of(b, "port_pair_groups") {
                    expect(r, "port_pair_groups", &p, &["port_pair_group"]);
                }
                for p in ids_of(b, "flow_classifiers") {
                    expect(r, "flow_classifiers", &p, &["flow_classifier"]);
                }
            }
            "flow_classifier" => {
                for f in ["logical_source_port", "logical_destination_port"] {
                    if let Some(p) = str_of(b, f) {
                        expect(r, f, &p, &["port"]);
                    }
                }
            }
            "l2_gateway_connection" | "l2_remote_gateway_connection" | "l2_remote_mac" => {
                for (f, kind) in [
                    ("l2_gateway_id", "l2_gateway"),
                    ("network_id", "network"),
                    ("gateway", "l2_gateway"),
                    ("network", "network"),
                    ("remote_gateway", "l2_remote_gateway"),
                    ("rgw_connection", "l2_remote_gateway_connection"),
                ] {
                    if let Some(id) = str_of(b, f) {
                        expect(r, f, &id, &[kind]);
                    }
                }
            }
            "bgp_speaker" => {
                for (f, kind) in [("peers", "bgp_peer"), ("networks", "network")] {
                    for id in b[f].as_array().into_iter().flatten() {
                        if let Some(id) = id.as_str() {
                            expect(r, f, id, &[kind]);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    problems.extend(ip_problems);
    // Claims: every object named in a scope or an owner exists.
    let ids: HashSet<&str> = by_id.keys().copied().collect();
    for (scope, key, owner) in claims {
        // A BGP speaker's agent binding is keyed by the agent's id.
        let agent_key = (scope == "bgp-dragent").then_some(key.as_str());
        let named = scope
            .split(':')
            .chain(owner.split(['|', '/']))
            .chain(agent_key)
            .filter(|t| is_uuid(t));
        for id in named {
            if !ids.contains(id) {
                problems.push(format!(
                    "claim {scope} {key} (owner {owner}): {id} does not exist"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(kind: &str, id: &str, parent: Option<&str>, body: Value) -> Record {
        Record {
            kind: kind.into(),
            id: id.into(),
            project_id: "p".into(),
            parent_id: parent.map(str::to_string),
            body,
        }
    }

    const NET: &str = "11111111-1111-4111-8111-111111111111";
    const SUB: &str = "22222222-2222-4222-8222-222222222222";
    const PORT: &str = "33333333-3333-4333-8333-333333333333";

    fn store() -> (Vec<Record>, Vec<(String, String, String)>) {
        let records = vec![
            rec("network", NET, None, json!({"id": NET})),
            rec(
                "subnet",
                SUB,
                Some(NET),
                json!({"id": SUB, "network_id": NET}),
            ),
            rec(
                "port",
                PORT,
                Some(NET),
                json!({"id": PORT, "network_id": NET, "device_owner": "",
                       "fixed_ips": [{"subnet_id": SUB, "ip_address": "10.0.0.5"}]}),
            ),
        ];
        let key = neutrino_ipam::ip_key("10.0.0.5".parse().unwrap());
        let claims = vec![(format!("ip:{SUB}"), key, PORT.to_string())];
        (records, claims)
    }

    #[test]
    fn a_consistent_store_passes() {
        let (records, claims) = store();
        assert_eq!(check(&records, &claims), Vec::<String>::new());
    }

    #[test]
    fn a_subnet_without_its_network_fails() {
        let (mut records, claims) = store();
        records.remove(0);
        let problems = check(&records, &claims);
        assert!(problems
            .iter()
            .any(|p| p.contains("subnet") && p.contains(NET)));
        assert!(problems
            .iter()
            .any(|p| p.contains("port") && p.contains(NET)));
    }

    #[test]
    fn orphan_claims_and_unclaimed_ips_fail() {
        let (mut records, claims) = store();
        records.pop();
        let problems = check(&records, &claims);
        assert!(
            problems.iter().any(|p| p.starts_with("claim ip:")),
            "{problems:?}"
        );
        let (records, _) = store();
        let problems = check(&records, &[]);
        assert!(
            problems.iter().any(|p| p.contains("not claimed")),
            "{problems:?}"
        );
    }
}
