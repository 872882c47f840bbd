//! Plan minimality and idempotence, without a kernel: the observed tables come from the
//! listing nft would print after applying the previous plan.

use std::collections::BTreeSet;

use neutrino_firewall::testing::simulated_listing;
use neutrino_firewall::{
    plan, render, Direction, EtherType, FirewallModel, ObservedTables, PortFilter, Rule,
};

fn port(n: u8, groups: &[&str]) -> PortFilter {
    PortFilter {
        port_id: format!("port-{n}"),
        device: format!("tap{n:02}"),
        bridge: Some("brq1".into()),
        mac: format!("fa:16:3e:00:00:{n:02x}"),
        fixed_ips: vec![format!("10.0.0.{n}").parse().unwrap()],
        allowed_address_pairs: vec![],
        port_security_enabled: true,
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        shared_device: false,
    }
}

fn tcp(id: &str, sg: &str, lo: u16, hi: u16, prefix: &str) -> Rule {
    Rule {
        id: id.into(),
        security_group_id: sg.into(),
        direction: Direction::Ingress,
        ethertype: EtherType::IPv4,
        protocol: Some("tcp".into()),
        port_range_min: Some(lo),
        port_range_max: Some(hi),
        remote_ip_prefix: Some(prefix.parse().unwrap()),
        remote_group_id: None,
        remote_address_group_id: None,
    }
}

fn from_group(id: &str, sg: &str, remote: &str) -> Rule {
    Rule {
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote_ip_prefix: None,
        remote_group_id: Some(remote.into()),
        ..tcp(id, sg, 0, 0, "0.0.0.0/0")
    }
}

fn base() -> FirewallModel {
    let mut m = FirewallModel {
        ports: vec![port(1, &["web"]), port(2, &["web", "default"])],
        ..FirewallModel::default()
    };
    for i in 0..50u16 {
        m.rules.push(tcp(
            &format!("r{i:03}"),
            "web",
            1000 + i,
            1000 + i,
            "10.0.0.0/8",
        ));
    }
    m.rules.push(from_group("r-self", "default", "default"));
    m.group_members.insert(
        "default".into(),
        BTreeSet::from(["10.0.0.2/32".parse().unwrap()]),
    );
    m
}

/// What the kernel holds after applying `plan(model, previous)`.
fn applied(model: &FirewallModel, previous: &ObservedTables) -> ObservedTables {
    ObservedTables::parse(&simulated_listing(model, previous)).unwrap()
}

/// Plan `next` against `observed`, check that applying it converges; the commands and the
/// tables after it.
fn apply(observed: &ObservedTables, next: &FirewallModel) -> (Vec<String>, ObservedTables) {
    let p = plan(next, observed);
    let after = applied(next, observed);
    let again = plan(next, &after);
    assert!(again.is_empty(), "not idempotent:\n{}", again.script());
    (p.commands().to_vec(), after)
}

/// The plan from a host rendered fresh for `prev` to `next`.
fn step(prev: &FirewallModel, next: &FirewallModel) -> Vec<String> {
    apply(&applied(prev, &ObservedTables::default()), next).0
}

#[test]
fn unchanged_model_plans_nothing() {
    let m = base();
    assert!(plan(&m, &applied(&m, &ObservedTables::default())).is_empty());
}

#[test]
fn absent_tables_plan_the_full_render() {
    let m = base();
    assert_eq!(plan(&m, &ObservedTables::default()).script(), render(&m));
    assert!(render(&m).starts_with("add table bridge neutrino\nadd table inet neutrino\n"));
}

#[test]
fn one_rule_added_is_one_element() {
    let prev = base();
    let mut next = prev.clone();
    next.rules.push(tcp("r-new", "web", 443, 443, "0.0.0.0/0"));
    assert_eq!(
        step(&prev, &next),
        ["add element inet neutrino sg-web-i4-cidr-port-0 { 0.0.0.0/0 . 6 . 443 comment \"r-new\" }"]
    );
}

#[test]
fn one_rule_removed_is_one_element() {
    let prev = base();
    let mut next = prev.clone();
    next.rules.retain(|r| r.id != "r007");
    assert_eq!(
        step(&prev, &next),
        ["delete element inet neutrino sg-web-i4-cidr-port-0 { 10.0.0.0/8 . 6 . 1007 }"]
    );
}

#[test]
fn an_overlapping_rule_opens_a_layer() {
    let prev = base();
    let mut next = prev.clone();
    next.rules
        .push(tcp("r-wide", "web", 1000, 2000, "10.1.0.0/16"));
    let cmds = step(&prev, &next);
    assert_eq!(cmds.len(), 3, "{cmds:#?}");
    assert!(cmds[0].starts_with("add set inet neutrino sg-web-i4-cidr-port-1 "));
    assert!(cmds[1]
        .contains("sg-web-i4-cidr-port-1 { 10.1.0.0/16 . 6 . 1000-2000 comment \"r-wide\" }"));
    assert!(cmds[2].starts_with("add rule inet neutrino sg-web-ingress position "));
    // Removing it again deletes the rule (by handle) and the empty layer.
    let (_, with_wide) = apply(&applied(&prev, &ObservedTables::default()), &next);
    let (back, _) = apply(&with_wide, &prev);
    assert_eq!(back.len(), 2, "{back:#?}");
    assert!(back[0].starts_with("delete rule inet neutrino sg-web-ingress handle "));
    assert_eq!(back[1], "delete set inet neutrino sg-web-i4-cidr-port-1");
}

#[test]
fn membership_changes_are_set_elements() {
    let prev = base();
    let mut next = prev.clone();
    let members = next.group_members.get_mut("default").unwrap();
    members.insert("10.0.0.9/32".parse().unwrap());
    members.remove(&"10.0.0.2/32".parse().unwrap());
    assert_eq!(
        step(&prev, &next),
        [
            "delete element inet neutrino rg-default-4 { 10.0.0.2 }",
            "add element inet neutrino rg-default-4 { 10.0.0.9 }",
        ]
    );
}

#[test]
fn a_new_port_adds_its_chains_and_map_entries_only() {
    let prev = base();
    let mut next = prev.clone();
    next.ports.push(port(3, &["web"]));
    let cmds = step(&prev, &next);
    assert!(!cmds.is_empty());
    for c in &cmds {
        assert!(
            c.contains("tap03") || c.contains("0x4e4f0003") || c.contains("0x4e490003"),
            "unrelated command {c}"
        );
        assert!(!c.starts_with("delete"), "{c}");
    }
}

#[test]
fn a_removed_port_deletes_its_chains_and_map_entries_only() {
    let prev = base();
    let mut next = prev.clone();
    next.ports.retain(|p| p.device != "tap01");
    let cmds = step(&prev, &next);
    for c in &cmds {
        assert!(
            c.starts_with("delete") || c.starts_with("flush chain"),
            "{c}"
        );
        assert!(
            c.contains("tap01") || c.contains("0x4e4f0001") || c.contains("0x4e490001"),
            "unrelated command {c}"
        );
    }
    // Its chains are emptied whole, then deleted: no rule handle is needed.
    assert!(cmds.contains(&"flush chain inet neutrino e-tap01".to_string()));
    assert!(cmds.contains(&"delete chain inet neutrino e-tap01".to_string()));
    assert!(
        !cmds.iter().any(|c| c.starts_with("delete rule")),
        "{cmds:#?}"
    );
}

#[test]
fn port_security_disabled_ports_are_not_filtered() {
    let mut m = base();
    m.ports[0].port_security_enabled = false;
    let script = render(&m);
    assert!(!script.contains("tap01"), "{script}");
    assert!(script.contains("tap02"));
}

#[test]
fn adding_a_group_to_a_port_inserts_one_jump_per_direction() {
    let prev = base();
    let mut next = prev.clone();
    next.ports[0].security_groups.push("default".into());
    let cmds = step(&prev, &next);
    assert_eq!(cmds.len(), 2, "{cmds:#?}");
    assert!(cmds[0].starts_with("add rule inet neutrino e-tap01 position "));
    assert!(cmds[0].contains("jump sg-default-egress"));
    assert!(cmds[1].contains("jump sg-default-ingress"));
}

#[test]
fn changed_addresses_replace_only_the_rules_that_use_them() {
    let prev = base();
    let mut next = prev.clone();
    next.ports[0].fixed_ips = vec!["10.0.0.77".parse().unwrap()];
    let cmds = step(&prev, &next);
    let rules: Vec<&String> = cmds.iter().filter(|c| c.contains(" rule ")).collect();
    assert_eq!(rules.len(), 2, "{cmds:#?}");
    assert!(rules[0].starts_with("delete rule inet neutrino i-tap01 handle "));
    assert!(rules[1].contains("ip daddr { 10.0.0.77, 255.255.255.255 } udp sport 67"));
    assert!(cmds.iter().all(|c| c.contains("tap01")), "{cmds:#?}");
}

#[test]
fn invalid_rules_are_skipped_with_a_warning() {
    let mut m = base();
    m.rules.push(Rule {
        protocol: Some("nonsense".into()),
        ..tcp("r-bad", "web", 1, 2, "10.0.0.0/8")
    });
    let p = plan(&m, &ObservedTables::default());
    assert!(!p.script().contains("r-bad"));
    assert!(p.warnings().iter().any(|w| w.contains("r-bad")));
}

#[test]
fn a_port_log_adds_its_statements_and_goes_away_cleanly() {
    use neutrino_firewall::{PortLog, LOG_GROUP};
    let prev = base();
    let mut logged = base();
    logged.logs.insert(
        "port-2".into(),
        PortLog {
            accept: true,
            drop: true,
        },
    );
    let text = render(&logged);
    let drop = format!("log prefix \"DROP port-2\" group {LOG_GROUP}");
    let accept = format!("ct state new limit rate 100/second burst 100 packets log prefix \"ACCEPT port-2\" group {LOG_GROUP}");
    assert_eq!(text.matches(&drop).count(), 2, "{text}");
    assert_eq!(text.matches(&accept).count(), 2, "{text}");
    assert!(text.contains("type filter hook forward priority 10;"));
    // The drop log comes right before the port's default drop.
    let at = text.find(&drop).unwrap();
    assert!(text[at..].contains("default-drop"));
    assert!(!text.contains("DROP port-1"));
    // Adding the log touches only what it adds; removing it removes as much.
    let added = step(&prev, &logged);
    assert_eq!(added.len(), 2 + 2 + 2, "{added:#?}");
    let removed = step(&logged, &prev);
    assert!(
        removed
            .iter()
            .any(|c| c.contains("delete chain inet neutrino log-egress")),
        "{removed:#?}"
    );
    // Drops only: no accept chains.
    let mut drops = base();
    drops.logs.insert(
        "port-1".into(),
        PortLog {
            accept: false,
            drop: true,
        },
    );
    assert!(!render(&drops).contains("log-egress"));
    let (_, after) = apply(&ObservedTables::default(), &logged);
    assert!(plan(&logged, &after).script().is_empty());
}
