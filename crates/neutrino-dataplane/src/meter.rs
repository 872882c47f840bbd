//! L3 metering in a router's namespace: one nftables table, `inet neutrino_meter`, kept
//! apart from the router's own table so that a change to the router does not reset the
//! counters. It holds one named counter per metering label rule that applies to the router
//! (a label of the router's project, or a shared label) and one chain per label.
//!
//! As Neutron's metering agent, only traffic through the router's gateway interface is
//! counted, in the forward hook: `ingress` is what comes in from the gateway, `egress` what
//! leaves through it. `remote_ip_prefix` is the far side (the source of ingress traffic, the
//! destination of egress traffic); `source_ip_prefix` and `destination_ip_prefix` match the
//! packet's own addresses as the router forwards it (after a floating IP's DNAT, before its
//! SNAT). Within a label's chain the excluded rules come first and `return`, so what they
//! match is counted by no rule of that label; the label's other rules cannot match the same
//! packet (the server refuses overlapping rules), so the label's traffic is the sum of its
//! rules' counters.
//!
//! Counter and chain names are the ids' hex digits after `r` (rule) or `l` (label);
//! [`MeterTable::counters`] maps them back.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::IpNet;
use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::router::digest;
use crate::state::NftTable;

/// Name of the metering table in a router namespace.
pub const TABLE: &str = "neutrino_meter";

/// The `nft -f` script that removes the table (whether or not it exists).
pub const DROP_SCRIPT: &str = "table inet neutrino_meter {}\ndelete table inet neutrino_meter\n";

/// What a named counter of the table counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Counted {
    /// The metering label.
    pub label: String,
    /// The metering label rule.
    pub rule: String,
}

/// A router's metering table and what each of its counters counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterTable {
    /// The table to load.
    pub table: NftTable,
    /// Counter name → label and rule.
    pub counters: BTreeMap<String, Counted>,
}

fn short(prefix: char, id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(32)
        .collect();
    format!("{prefix}{hex}")
}

/// The name of the counter of rule `id`.
pub fn counter_name(rule: &str) -> String {
    short('r', rule)
}

fn prefix(rule: &Value, key: &str) -> Option<IpNet> {
    rule[key].as_str().and_then(|s| s.parse().ok())
}

fn family(net: &IpNet) -> &'static str {
    if net.addr().is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// The match of one rule through gateway `qg` (`None` when its prefixes are of two
/// families, which can match no packet).
fn rule_match(rule: &Value, qg: &str) -> Option<String> {
    let ingress = text(rule, "direction") != "egress";
    let dev = if ingress {
        format!("iifname \"{qg}\"")
    } else {
        format!("oifname \"{qg}\"")
    };
    let (src, dst) = match prefix(rule, "remote_ip_prefix") {
        Some(remote) if ingress => (Some(remote), None),
        Some(remote) => (None, Some(remote)),
        None => (
            prefix(rule, "source_ip_prefix"),
            prefix(rule, "destination_ip_prefix"),
        ),
    };
    if let (Some(s), Some(d)) = (src, dst) {
        if s.addr().is_ipv4() != d.addr().is_ipv4() {
            return None;
        }
    }
    let mut out = dev;
    if let Some(s) = src {
        let _ = write!(out, " {} saddr {}", family(&s), s.trunc());
    }
    if let Some(d) = dst {
        let _ = write!(out, " {} daddr {}", family(&d), d.trunc());
    }
    Some(out)
}

/// The labels that apply to a router of `project`, by id.
fn labels_for<'a>(cluster: &'a Cluster, project: &str) -> BTreeMap<&'a str, &'a Value> {
    cluster
        .all("metering_label")
        .filter(|l| l["shared"].as_bool() == Some(true) || text(l, "project_id") == project)
        .map(|l| (text(l, "id"), l))
        .collect()
}

/// The metering table of router `router` whose gateway interface in this namespace is
/// `qg`; `None` when no label applies to it.
pub fn router_table(cluster: &Cluster, router: &str, qg: &str) -> Option<MeterTable> {
    let project = cluster
        .get("router", router)
        .map(|r| text(r, "project_id"))
        .unwrap_or_default();
    let labels = labels_for(cluster, project);
    if labels.is_empty() {
        return None;
    }
    let mut rules: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for rule in cluster.all("metering_label_rule") {
        if let Some((id, _)) = labels.get_key_value(text(rule, "metering_label_id")) {
            rules.entry(id).or_default().push(rule);
        }
    }
    let mut objects = String::new();
    let mut jumps = String::new();
    let mut chains = String::new();
    let mut counters = BTreeMap::new();
    for label in labels.keys() {
        let chain = short('l', label);
        let _ = writeln!(jumps, "    jump {chain}");
        let _ = writeln!(chains, "  chain {chain} {{");
        let mut list = rules.remove(label).unwrap_or_default();
        // Excluded rules first, then by id: a stable order.
        list.sort_by_key(|r| (r["excluded"].as_bool() != Some(true), text(r, "id")));
        for rule in list {
            let Some(m) = rule_match(rule, qg) else {
                continue;
            };
            if rule["excluded"].as_bool() == Some(true) {
                let _ = writeln!(chains, "    {m} return");
            } else {
                let name = counter_name(text(rule, "id"));
                let _ = writeln!(objects, "  counter {name} {{\n  }}");
                let _ = writeln!(chains, "    {m} counter name \"{name}\"");
                counters.insert(
                    name,
                    Counted {
                        label: label.to_string(),
                        rule: text(rule, "id").to_string(),
                    },
                );
            }
        }
        chains.push_str("  }\n");
    }
    let body = format!(
        "{objects}  chain forward {{\n    type filter hook forward priority filter - 10; policy accept;\n{jumps}  }}\n{chains}"
    );
    let digest = digest(&body);
    let script = format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  comment \"{digest}\"\n{body}}}\n"
    );
    Some(MeterTable {
        table: NftTable { digest, script },
        counters,
    })
}

/// The `(packets, bytes)` of each named counter in `nft -j list counters` output.
pub fn parse_counters(doc: &Value) -> BTreeMap<String, (u64, u64)> {
    doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let c = item.get("counter")?;
            let name = c["name"].as_str()?;
            Some((
                name.to_string(),
                (c["packets"].as_u64()?, c["bytes"].as_u64()?),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const L1: &str = "11111111-1111-1111-1111-111111111111";
    const L2: &str = "22222222-2222-2222-2222-222222222222";
    const L3: &str = "33333333-3333-3333-3333-333333333333";

    fn cluster() -> Cluster {
        let rule = |id: &str, label: &str, extra: Value| {
            let mut r = json!({"id": id, "metering_label_id": label, "direction": "ingress",
                               "excluded": false, "remote_ip_prefix": null,
                               "source_ip_prefix": null, "destination_ip_prefix": null});
            for (k, v) in extra.as_object().unwrap() {
                r[k] = v.clone();
            }
            r
        };
        Cluster::from_snapshot(&json!({"revision": 1, "resources": {
            "router": [{"id": "r1", "project_id": "p1"}],
            "metering_label": [
                {"id": L1, "project_id": "p1", "shared": false},
                {"id": L2, "project_id": "p2", "shared": true},
                {"id": L3, "project_id": "p2", "shared": false}],
            "metering_label_rule": [
                rule("aaaaaaaa-0000-0000-0000-000000000001", L1,
                     json!({"remote_ip_prefix": "198.51.100.0/24"})),
                rule("aaaaaaaa-0000-0000-0000-000000000002", L1,
                     json!({"remote_ip_prefix": "198.51.100.7/32", "excluded": true})),
                rule("aaaaaaaa-0000-0000-0000-000000000003", L1,
                     json!({"direction": "egress", "remote_ip_prefix": "2001:db8::/64"})),
                rule("aaaaaaaa-0000-0000-0000-000000000004", L2,
                     json!({"source_ip_prefix": "10.0.0.0/24",
                            "destination_ip_prefix": "192.0.2.0/24", "direction": "egress"})),
                rule("aaaaaaaa-0000-0000-0000-000000000005", L3,
                     json!({"remote_ip_prefix": "0.0.0.0/0"})),
                rule("aaaaaaaa-0000-0000-0000-000000000006", L2,
                     json!({"source_ip_prefix": "10.0.0.0/24",
                            "destination_ip_prefix": "2001:db8::/64"}))]
        }}))
    }

    #[test]
    fn own_and_shared_labels_excluded_first() {
        let t = router_table(&cluster(), "r1", "qg-x").unwrap();
        let s = &t.table.script;
        let l1 = short('l', L1);
        // The project's own label and the shared one; not another project's.
        assert!(s.contains(&format!("jump {l1}")));
        assert!(s.contains(&format!("jump {}", short('l', L2))));
        assert!(!s.contains(&short('l', L3)));
        let excluded = s
            .find("iifname \"qg-x\" ip saddr 198.51.100.7/32 return")
            .unwrap();
        let counted = s
            .find("iifname \"qg-x\" ip saddr 198.51.100.0/24 counter name \"raaaaaaaa000000000000000000000001\"")
            .unwrap();
        assert!(excluded < counted);
        assert!(s.contains("oifname \"qg-x\" ip6 daddr 2001:db8::/64 counter"));
        assert!(s.contains("oifname \"qg-x\" ip saddr 10.0.0.0/24 ip daddr 192.0.2.0/24 counter"));
        // Mixed families match nothing and get no counter; excluded rules have none either.
        assert_eq!(t.counters.len(), 3);
        assert_eq!(
            t.counters[&counter_name("aaaaaaaa-0000-0000-0000-000000000004")],
            Counted {
                label: L2.into(),
                rule: "aaaaaaaa-0000-0000-0000-000000000004".into()
            }
        );
    }

    #[test]
    fn stable_digest_and_none_without_labels() {
        let a = router_table(&cluster(), "r1", "qg-x").unwrap();
        let b = router_table(&cluster(), "r1", "qg-x").unwrap();
        assert_eq!(a.table.digest, b.table.digest);
        assert!(a
            .table
            .script
            .contains(&format!("comment \"{}\"", a.table.digest)));
        let empty = Cluster::from_snapshot(&json!({"revision": 1, "resources": {
            "router": [{"id": "r1", "project_id": "p1"}]}}));
        assert!(router_table(&empty, "r1", "qg-x").is_none());
    }

    #[test]
    fn plan_loads_keeps_and_drops_the_table() {
        use crate::plan::{plan, Op};
        use crate::state::{HostState, Namespace};
        let t = router_table(&cluster(), "r1", "qg-x").unwrap();
        let with = |meter: Option<NftTable>| {
            let mut s = HostState::default();
            s.namespaces.insert(
                "qrouter-r1".into(),
                Namespace {
                    meter,
                    ..Namespace::default()
                },
            );
            s
        };
        let observed = |d: &str| NftTable {
            digest: d.into(),
            script: String::new(),
        };
        let want = with(Some(t.table.clone()));
        let load = plan(&want, &with(None));
        assert!(matches!(&load[..], [Op::LoadNft { script, .. }] if *script == t.table.script));
        assert!(plan(&want, &with(Some(observed(&t.table.digest)))).is_empty());
        let stale = plan(&want, &with(Some(observed("old"))));
        assert!(matches!(&stale[..], [Op::LoadNft { .. }]));
        let drop = plan(&with(None), &with(Some(observed("old"))));
        assert!(matches!(&drop[..], [Op::LoadNft { script, .. }] if script == DROP_SCRIPT));
    }

    #[test]
    fn counters_from_nft_json() {
        let doc = json!({"nftables": [{"metainfo": {}},
            {"counter": {"family": "inet", "name": "r1", "table": TABLE, "packets": 3, "bytes": 252}}]});
        assert_eq!(parse_counters(&doc)["r1"], (3, 252));
    }
}
