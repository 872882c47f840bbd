//! Router conntrack helpers (`l3-conntrack-helper`) in a router's namespace: one nftables
//! table, `inet neutrino_cthelper`, apart from the router's own table, so that a helper the
//! kernel lacks fails only this table and never the router's NAT. It holds one `ct helper`
//! object per helper of the router and, in the prerouting hook, a rule assigning it to new
//! connections of its protocol to its port (as Neutron's L3 agent's `CT --helper` rules).
//!
//! Helper names are the kernel's: H.323 is `RAS` over UDP and `Q.931` over TCP; the others
//! keep their API names (`ftp`, `tftp`, `sip`, ...).

use std::fmt::Write as _;

use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::router::digest;
use crate::state::NftTable;

/// Name of the helpers table in a router namespace.
pub const TABLE: &str = "neutrino_cthelper";

/// The `nft -f` script that removes the table (whether or not it exists).
pub const DROP_SCRIPT: &str =
    "table inet neutrino_cthelper {}\ndelete table inet neutrino_cthelper\n";

/// The kernel's name of an API helper over `protocol`.
fn kernel_helper<'a>(helper: &'a str, protocol: &str) -> &'a str {
    match (helper, protocol) {
        ("h323", "udp") => "RAS",
        ("h323", "tcp") => "Q.931",
        _ => helper,
    }
}

/// Whether a name is safe inside the quotes of an nft script.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The helpers table of router `router`; `None` when it has no helpers.
pub fn router_table(cluster: &Cluster, router: &str) -> Option<NftTable> {
    let mut helpers: Vec<(u64, &str, &str)> = cluster
        .all("conntrack_helper")
        .filter(|h| text(h, "router_id") == router)
        .filter_map(|h: &Value| {
            let protocol = text(h, "protocol");
            let port = h["port"].as_u64().filter(|p| (1..=65535).contains(p))?;
            let helper = text(h, "helper");
            (["tcp", "udp"].contains(&protocol) && plain(helper))
                .then_some((port, protocol, helper))
        })
        .collect();
    if helpers.is_empty() {
        return None;
    }
    helpers.sort_unstable();
    helpers.dedup();
    let mut objects = String::new();
    let mut rules = String::new();
    for (n, (port, protocol, helper)) in helpers.into_iter().enumerate() {
        let kernel = kernel_helper(helper, protocol);
        let _ = writeln!(
            objects,
            "  ct helper h{n} {{\n    type \"{kernel}\" protocol {protocol}\n    l3proto inet\n  }}"
        );
        let _ = writeln!(rules, "    {protocol} dport {port} ct helper set \"h{n}\"");
    }
    let body = format!(
        "{objects}  chain prerouting {{\n    type filter hook prerouting priority filter; policy accept;\n{rules}  }}\n"
    );
    let digest = digest(&body);
    let script = format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  comment \"{digest}\"\n{body}}}\n"
    );
    Some(NftTable { digest, script })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, Op};
    use crate::state::{HostState, Namespace};
    use serde_json::json;

    fn cluster(helpers: Value) -> Cluster {
        Cluster::from_snapshot(&json!({"revision": 1, "resources": {
            "router": [{"id": "r1"}, {"id": "r2"}],
            "conntrack_helper": helpers,
        }}))
    }

    #[test]
    fn one_object_and_rule_per_helper_of_the_router() {
        let c = cluster(json!([
            {"id": "a", "router_id": "r1", "protocol": "udp", "port": 69, "helper": "tftp"},
            {"id": "b", "router_id": "r1", "protocol": "tcp", "port": 21, "helper": "ftp"},
            {"id": "c", "router_id": "r1", "protocol": "udp", "port": 1719, "helper": "h323"},
            {"id": "d", "router_id": "r2", "protocol": "tcp", "port": 6667, "helper": "irc"},
            {"id": "e", "router_id": "r1", "protocol": "tcp", "port": 1, "helper": "bad\"name"},
        ]));
        let table = router_table(&c, "r1").expect("helpers");
        let body = table.script.split_once("\n  comment").unwrap().1;
        let expected = "  ct helper h0 {\n    type \"ftp\" protocol tcp\n    l3proto inet\n  }\n\
                        \x20 ct helper h1 {\n    type \"tftp\" protocol udp\n    l3proto inet\n  }\n\
                        \x20 ct helper h2 {\n    type \"RAS\" protocol udp\n    l3proto inet\n  }\n\
                        \x20 chain prerouting {\n    type filter hook prerouting priority filter; policy accept;\n\
                        \x20   tcp dport 21 ct helper set \"h0\"\n\
                        \x20   udp dport 69 ct helper set \"h1\"\n\
                        \x20   udp dport 1719 ct helper set \"h2\"\n  }\n}\n";
        assert!(body.ends_with(expected), "{}", table.script);
        assert!(table
            .script
            .starts_with("table inet neutrino_cthelper {}\ndelete table inet neutrino_cthelper\n"));
        assert!(router_table(&c, "r3").is_none());
    }

    #[test]
    fn the_table_is_loaded_changed_and_dropped() {
        let c = cluster(json!([
            {"id": "a", "router_id": "r1", "protocol": "udp", "port": 69, "helper": "tftp"},
        ]));
        let table = router_table(&c, "r1");
        let state = |helpers: Option<NftTable>| {
            let mut s = HostState::default();
            s.namespaces.insert(
                "qrouter-r1".to_string(),
                Namespace {
                    helpers,
                    ..Namespace::default()
                },
            );
            s
        };
        let loads = |want: &HostState, have: &HostState| -> Vec<String> {
            plan(want, have)
                .into_iter()
                .filter_map(|op| match op {
                    Op::LoadNft { script, .. } => Some(script),
                    _ => None,
                })
                .collect()
        };
        let want = state(table.clone());
        assert_eq!(
            loads(&want, &state(None)),
            vec![table.clone().unwrap().script]
        );
        let observed = table.clone().map(|t| NftTable {
            digest: t.digest,
            script: String::new(),
        });
        assert!(loads(&want, &state(observed.clone())).is_empty());
        assert_eq!(
            loads(&state(None), &state(observed)),
            vec![DROP_SCRIPT.to_string()]
        );
    }
}
