//! Golden tests: fixed models → the exact rendered script and incremental plans, stored
//! under tests/golden/. `UPDATE_GOLDEN=1 cargo test -p neutrino-firewall --test golden`
//! rewrites them (review the diff).

use std::path::PathBuf;

use neutrino_firewall::testing::simulated_listing;
use neutrino_firewall::{plan, render, FirewallModel, ObservedTables};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn model(name: &str) -> FirewallModel {
    let text = std::fs::read_to_string(dir().join(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture is a FirewallModel")
}

fn after(model: &FirewallModel, previous: &ObservedTables) -> ObservedTables {
    ObservedTables::parse(&simulated_listing(model, previous)).expect("simulated listing parses")
}

fn check(name: &str, actual: &str) {
    let path = dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden file written");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {name}: run with UPDATE_GOLDEN=1"));
    assert!(
        expected == actual,
        "{name} differs (UPDATE_GOLDEN=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn fresh_host_renders_the_full_script() {
    check("h1.nft", &render(&model("h1.model.json")));
}

#[test]
fn changes_plan_only_their_elements_rules_and_chains() {
    let h1 = model("h1.model.json");
    let changed = model("h1-change.model.json");
    let observed = after(&h1, &ObservedTables::default());
    let p = plan(&changed, &observed);
    check("h1-change.plan", &p.script());
    // Applying it leaves nothing to do.
    assert!(plan(&changed, &after(&changed, &observed)).is_empty());
}

#[test]
fn removing_every_port_keeps_the_tables_and_base_chains() {
    let h1 = model("h1.model.json");
    let observed = after(&h1, &ObservedTables::default());
    let p = plan(&FirewallModel::default(), &observed);
    check("h1-teardown.plan", &p.script());
    assert!(!p.script().contains("delete table"));
    // Only chains that go are emptied (whole, without rule handles), base chains stay.
    for line in p.script().lines() {
        if let Some(chain) = line.strip_prefix("flush chain ") {
            assert!(
                p.script().contains(&format!("delete chain {chain}\n")),
                "{line}"
            );
        }
        assert!(!line.starts_with("flush table") && !line.starts_with("flush ruleset"));
    }
    assert!(!p.script().contains("prerouting"), "the base chains stay");
}

/// Ports on shared devices: a bare-metal server behind a provider uplink (`eth1`, no port of
/// its own) and a container nested behind a VM's tap. Each gets its own chains, reached
/// through the `from-mac` / `to-mac` maps; adding them to a running host touches nothing
/// else, and removing them restores the host's tables.
#[test]
fn ports_on_shared_devices_get_their_own_chains() {
    let h1 = model("h1.model.json");
    let edge = model("edge.model.json");
    check("edge.nft", &render(&edge));
    let observed = after(&h1, &ObservedTables::default());
    let added = plan(&edge, &observed);
    check("edge-add.plan", &added.script());
    let with_edge = after(&edge, &observed);
    assert!(plan(&edge, &with_edge).is_empty());
    let removed = plan(&h1, &with_edge);
    check("edge-remove.plan", &removed.script());
    assert!(plan(&h1, &after(&h1, &with_edge)).is_empty());
}
