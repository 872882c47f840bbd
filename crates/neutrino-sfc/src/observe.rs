//! The steering table as the kernel has it, read from `nft -j list table netdev
//! neutrino_sfc`: chains with their hooks and rule comments (and counters), sets, named
//! counters and the elements of maps the planner manages.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use crate::table::{Chain, Hook, Rule, Set, Table};

/// The command that lists the table (`nft` arguments).
pub const LIST_COMMAND: &[&str] = &["nft", "-j", "list", "table", "netdev", "neutrino_sfc"];

/// The listing could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read the nft listing: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// The device in a base chain's name (`dev-<ifname>-<ifindex>`, `egr-<ifname>-<ifindex>`).
fn device_of_base_chain(name: &str) -> Option<String> {
    let rest = name
        .strip_prefix("dev-")
        .or_else(|| name.strip_prefix("egr-"))?;
    let (dev, ifindex) = rest.rsplit_once('-')?;
    ifindex.parse::<u32>().ok()?;
    Some(dev.to_string())
}

/// Parses the JSON listing; empty text (no table) is an absent table.
pub fn observe(json: &str) -> Result<Table, ParseError> {
    let mut table = Table::default();
    if json.trim().is_empty() {
        return Ok(table);
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| ParseError(e.to_string()))?;
    let items = doc["nftables"]
        .as_array()
        .ok_or_else(|| ParseError("no \"nftables\" array".into()))?;
    for item in items {
        if item.get("table").is_some() {
            table.present = true;
        } else if let Some(c) = item.get("chain") {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            // nft 1.0.6 leaves the device out of its JSON; base chain names carry it.
            let dev = c["dev"]
                .as_str()
                .map(str::to_string)
                .or_else(|| device_of_base_chain(&name));
            let hook = match (c["hook"].as_str(), dev) {
                (Some("ingress"), Some(d)) => Some(Hook::Ingress(d)),
                (Some("egress"), Some(d)) => Some(Hook::Egress(d)),
                _ => None,
            };
            table.chains.entry(name).or_default().hook = hook;
        } else if let Some(r) = item.get("rule") {
            let chain = r["chain"].as_str().unwrap_or_default().to_string();
            let counter = r["expr"].as_array().and_then(|exprs| {
                exprs.iter().find_map(|e| {
                    let c = e.get("counter")?;
                    Some((c["packets"].as_u64()?, c["bytes"].as_u64()?))
                })
            });
            table
                .chains
                .entry(chain)
                .or_insert_with(Chain::default)
                .rules
                .push(Rule {
                    text: String::new(),
                    comment: r["comment"].as_str().unwrap_or_default().to_string(),
                    counter,
                });
        } else if let Some(c) = item.get("counter") {
            table
                .counters
                .insert(c["name"].as_str().unwrap_or_default().to_string());
        } else if let Some(s) = item.get("set") {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            table.sets.insert(
                name,
                Set {
                    map: false,
                    decl: String::new(),
                    elements: None,
                },
            );
        } else if let Some(m) = item.get("map") {
            let name = m["name"].as_str().unwrap_or_default().to_string();
            let elements: BTreeSet<String> = m["elem"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(map_element)
                .collect();
            table.sets.insert(
                name,
                Set {
                    map: true,
                    decl: String::new(),
                    elements: Some(elements),
                },
            );
        }
    }
    Ok(table)
}

/// `["10.0.0.2", "02:00:00:00:00:02"]` → `10.0.0.2 : 02:00:00:00:00:02`, `[49152, {"goto":
/// {"target": "c"}}]` → `49152 : goto c` (the forms the planner writes).
fn map_element(e: &Value) -> Option<String> {
    let pair = e.as_array()?;
    let key = pair.first()?;
    let key = match key.as_u64() {
        Some(n) => n.to_string(),
        None => key
            .as_str()
            .or_else(|| key.get("elem")?.get("val")?.as_str())?
            .parse::<IpAddr>()
            .ok()?
            .to_string(),
    };
    let value = pair.get(1)?;
    if let Some((verdict, target)) = value.as_object().and_then(|o| o.iter().next()) {
        return Some(format!("{key} : {verdict} {}", target["target"].as_str()?));
    }
    Some(format!("{key} : {}", value.as_str()?.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chains_rules_counters_and_maps() {
        let json = r#"{"nftables": [{"metainfo": {}},
          {"table": {"family": "netdev", "name": "neutrino_sfc", "handle": 1}},
          {"chain": {"family": "netdev", "table": "neutrino_sfc", "name": "dev-tapa", "handle": 1,
                     "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept", "dev": "tapa"}},
          {"chain": {"family": "netdev", "table": "neutrino_sfc", "name": "h-1-1-f", "handle": 2}},
          {"map": {"family": "netdev", "name": "mac4-n1", "table": "neutrino_sfc", "type": "ipv4_addr",
                   "handle": 3, "map": "ether_addr", "elem": [["10.0.0.2", "02:AA:00:00:00:02"]]}},
          {"set": {"family": "netdev", "name": "pin4-1-1-x", "table": "neutrino_sfc", "type": "ipv4_addr",
                   "handle": 4, "flags": ["dynamic", "timeout"]}},
          {"rule": {"family": "netdev", "table": "neutrino_sfc", "chain": "h-1-1-f", "handle": 5,
                    "comment": "closed#0000abcd", "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": null}]}}]}"#;
        let t = observe(json).unwrap();
        assert!(t.present);
        assert_eq!(
            t.chains["dev-tapa"].hook,
            Some(Hook::Ingress("tapa".into()))
        );
        assert_eq!(t.chains["h-1-1-f"].rules[0].comment, "closed#0000abcd");
        assert_eq!(t.chains["h-1-1-f"].rules[0].counter, Some((3, 180)));
        assert!(t.sets["mac4-n1"]
            .elements
            .as_ref()
            .unwrap()
            .contains("10.0.0.2 : 02:aa:00:00:00:02"));
        assert_eq!(t.sets["pin4-1-1-x"].elements, None);
        assert_eq!(observe("").unwrap(), Table::default());
    }

    #[test]
    fn reads_named_counters_and_verdict_maps() {
        let json = r#"{"nftables": [{"metainfo": {}},
          {"table": {"family": "netdev", "name": "neutrino_sfc", "handle": 7}},
          {"counter": {"family": "netdev", "name": "probe-pp1", "table": "neutrino_sfc",
                       "handle": 1, "packets": 12, "bytes": 840}},
          {"map": {"family": "netdev", "name": "probe-send", "table": "neutrino_sfc",
                   "type": "inet_service", "handle": 2, "map": "verdict",
                   "elem": [[49152, {"goto": {"target": "psend-pp1"}}]]}},
          {"map": {"family": "netdev", "name": "dir4-n1", "table": "neutrino_sfc",
                   "type": "ipv4_addr", "handle": 3, "map": "verdict",
                   "elem": [["10.0.0.7", {"goto": {"target": "dd-p7"}}]]}}]}"#;
        let t = observe(json).unwrap();
        assert!(t.counters.contains("probe-pp1"));
        assert_eq!(
            t.sets["probe-send"].elements,
            Some(["49152 : goto psend-pp1".to_string()].into())
        );
        assert_eq!(
            t.sets["dir4-n1"].elements,
            Some(["10.0.0.7 : goto dd-p7".to_string()].into())
        );
    }

    #[test]
    fn base_chain_device_comes_from_the_name_when_json_omits_it() {
        let json = r#"{"nftables": [{"table": {"family": "netdev", "name": "neutrino_sfc"}},
          {"chain": {"family": "netdev", "table": "neutrino_sfc", "name": "dev-vxlan-100-7",
                     "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept"}},
          {"chain": {"family": "netdev", "table": "neutrino_sfc", "name": "egr-tapb-12",
                     "type": "filter", "hook": "egress", "prio": 0, "policy": "accept"}}]}"#;
        let t = observe(json).unwrap();
        assert_eq!(
            t.chains["dev-vxlan-100-7"].hook,
            Some(Hook::Ingress("vxlan-100".into()))
        );
        assert_eq!(
            t.chains["egr-tapb-12"].hook,
            Some(Hook::Egress("tapb".into()))
        );
    }
}
