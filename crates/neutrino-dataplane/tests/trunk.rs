//! Trunk subports: VLAN devices on the parent's tap, enslaved to the subport network's
//! bridge and filtered like ports; the plans for a trunk with two subports, adding and
//! removing one, and the parent unbound are golden files; trunk and subport statuses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use neutrino_dataplane::security::firewall_model;
use neutrino_dataplane::trunk::{
    drop_failed_subports, subport_status, trunk_statuses, SubportOutcome,
};
use neutrino_dataplane::{desired, plan, Cluster, HostConfig, HostState, Op};
use serde_json::{json, Value};

const PARENT: &str = "p1aaaaaa-0000-4000-8000-000000000001";
const SUB_A: &str = "5aaaaaaa-0000-4000-8000-00000000000a";
const SUB_B: &str = "5bbbbbbb-0000-4000-8000-00000000000b";
const NET1: &str = "11111111-aaaa-4000-8000-000000000001";
const NET2: &str = "22222222-bbbb-4000-8000-000000000002";

/// The fixture cluster with a trunk on h1's port p1 carrying `subs` (`(port, network, tag)`);
/// `parent_host` is where p1 (and so its subports) is bound.
fn cluster(subs: &[(&str, &str, u64)], parent_host: &str) -> Cluster {
    let mut doc: Value = serde_json::from_str(include_str!("fixtures.json")).unwrap();
    let ports = doc["resources"]["port"].as_array_mut().unwrap();
    ports[0]["binding:host_id"] = json!(parent_host);
    for (i, (id, net, tag)) in subs.iter().enumerate() {
        let subnet = if *net == NET1 { "s1" } else { "s2" };
        ports.push(json!({
            "id": id, "network_id": net, "binding:host_id": parent_host,
            "device_id": "", "device_owner": "trunk:subport",
            "mac_address": format!("FA:16:3E:00:01:0{i}"), "admin_state_up": true,
            "created_at": format!("2026-01-02T00:00:0{i}Z"),
            "fixed_ips": [{"subnet_id": subnet, "ip_address": format!("10.9.0.{}", 10 + i)}],
            "security_groups": ["sg-sub"],
            "binding:profile": {"parent_name": PARENT, "tag": tag},
        }));
    }
    let sub_ports: Vec<Value> = subs
        .iter()
        .map(|(id, _, tag)| json!({"port_id": id, "segmentation_type": "vlan", "segmentation_id": tag}))
        .collect();
    doc["resources"]["trunk"] = json!([{"id": "t1", "port_id": PARENT, "status": "DOWN",
                                         "sub_ports": sub_ports}]);
    Cluster::from_snapshot(&doc)
}

fn two() -> Vec<(&'static str, &'static str, u64)> {
    vec![(SUB_A, NET2, 100), (SUB_B, NET1, 200)]
}

fn host() -> HostConfig {
    HostConfig {
        host: "h1".into(),
        tunnel_ip: "192.0.2.1".parse::<IpAddr>().unwrap(),
        vxlan_port: 4789,
        netns_prefix: "h1-".into(),
        interface_mappings: Default::default(),
        l2gw_device: None,
    }
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "golden file {name} differs");
}

fn render(ops: &[Op]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

fn state(subs: &[(&str, &str, u64)], parent_host: &str) -> HostState {
    desired(&cluster(subs, parent_host), &host()).state
}

#[test]
fn trunk_with_two_subports() {
    let d = desired(&cluster(&two(), "h1"), &host());
    assert_eq!(
        d.subports[SUB_A],
        SubportOutcome::Plug {
            device: "spt5aaaaaaa-00".into(),
            parent_tap: "tapp1aaaaaa-00".into(),
            vid: 100
        }
    );
    // On a host that already has the parent plugged: only the subports' devices.
    let ops = plan(&d.state, &state(&[], "h1"));
    golden("trunk-two-subports.plan", &render(&ops));
    // From scratch, each device comes after the tap it rides on.
    let fresh = plan(&d.state, &HostState::default());
    let tap = fresh
        .iter()
        .position(|o| matches!(o, Op::AddVeth { tap, .. } if tap == "tapp1aaaaaa-00"))
        .unwrap();
    let vlan = fresh
        .iter()
        .position(|o| matches!(o, Op::AddVlan { name, .. } if name == "spt5aaaaaaa-00"))
        .unwrap();
    assert!(tap < vlan);
    // Converged: nothing to do.
    assert_eq!(plan(&d.state, &d.state), vec![]);
}

#[test]
fn adding_and_removing_a_subport() {
    let one = state(&two()[..1], "h1");
    let both = state(&two(), "h1");
    golden("trunk-add-subport.plan", &render(&plan(&both, &one)));
    golden("trunk-remove-subport.plan", &render(&plan(&one, &both)));
}

#[test]
fn parent_unbound_takes_the_subports_away() {
    let d = desired(&cluster(&two(), ""), &host());
    assert!(d.subports.is_empty());
    golden(
        "trunk-parent-unbound.plan",
        &render(&plan(&d.state, &state(&two(), "h1"))),
    );
}

#[test]
fn subports_are_filtered_with_their_own_groups() {
    let d = desired(&cluster(&two(), "h1"), &host());
    let model = firewall_model(&cluster(&two(), "h1"), &d);
    let sub = model
        .ports
        .iter()
        .find(|p| p.port_id == SUB_A)
        .expect("subport filtered");
    assert_eq!(sub.device, "spt5aaaaaaa-00");
    assert_eq!(sub.bridge.as_deref(), Some("brq22222222-bb"));
    assert_eq!(sub.security_groups, vec!["sg-sub".to_string()]);
    assert_eq!(sub.mac, "fa:16:3e:00:01:00");
}

#[test]
fn statuses_follow_the_wiring() {
    let c = cluster(&two(), "h1");
    let d = desired(&c, &host());
    let up = |_: &str| true;
    // Everything wired.
    assert_eq!(trunk_statuses(&c, &d, &d.state, &up)["t1"], "ACTIVE");
    assert_eq!(subport_status(&d.subports[SUB_A], &d.state), "ACTIVE");
    // Devices not there yet, or the parent not plugged yet.
    let bare = state(&[], "h1");
    assert_eq!(trunk_statuses(&c, &d, &bare, &up)["t1"], "BUILD");
    assert_eq!(subport_status(&d.subports[SUB_A], &bare), "BUILD");
    assert_eq!(trunk_statuses(&c, &d, &d.state, &|_| false)["t1"], "BUILD");
    // The kernel refused one device: it is not tried again, the trunk is DEGRADED.
    let mut failing = d.clone();
    let failed = BTreeMap::from([(
        SUB_A.to_string(),
        (d.subports[SUB_A].clone(), "no 802.1q".to_string()),
    )]);
    assert_eq!(drop_failed_subports(&mut failing, &failed), vec![SUB_A]);
    assert_eq!(
        failing.subports[SUB_A],
        SubportOutcome::Fail("no 802.1q".into())
    );
    let ops = plan(&failing.state, &bare);
    assert!(!ops
        .iter()
        .any(|o| matches!(o, Op::AddVlan { name, .. } if name == "spt5aaaaaaa-00")));
    assert_eq!(
        trunk_statuses(&c, &failing, &failing.state, &up)["t1"],
        "DEGRADED"
    );
    assert_eq!(subport_status(&failing.subports[SUB_A], &d.state), "ERROR");
    // A different wiring of the same subport (another VLAN id) is tried afresh.
    let retagged = desired(&cluster(&[(SUB_A, NET2, 101)], "h1"), &host());
    let mut again = retagged.clone();
    assert!(drop_failed_subports(&mut again, &failed).is_empty());
    // A subport without a usable tag cannot be wired.
    let bad = desired(&cluster(&[(SUB_A, NET2, 5000)], "h1"), &host());
    assert!(matches!(bad.subports[SUB_A], SubportOutcome::Fail(_)));
    // Trunks whose parent is elsewhere are not this host's to report.
    let away = cluster(&two(), "h2");
    assert!(trunk_statuses(&away, &desired(&away, &host()), &bare, &up).is_empty());
}

#[test]
fn a_subport_brings_its_distributed_router_to_the_parents_host() {
    let mut doc: Value = serde_json::json!({"revision": 1, "resources": {
    "router": [{"id": "r1", "distributed": true}],
    "port": [
        {"id": "ri", "device_id": "r1", "binding:host_id": "",
         "device_owner": "network:router_interface_distributed",
         "fixed_ips": [{"subnet_id": "s2", "ip_address": "10.2.0.1"}]},
    ]}});
    let sub = json!({"id": SUB_A, "binding:host_id": "h1", "device_owner": "trunk:subport",
                     "fixed_ips": [{"subnet_id": "s2", "ip_address": "10.2.0.9"}]});
    let without = neutrino_dataplane::dvr::placement(&Cluster::from_snapshot(&doc));
    assert!(without.get("r1").is_none_or(|h| !h.contains("h1")));
    doc["resources"]["port"].as_array_mut().unwrap().push(sub);
    let with = neutrino_dataplane::dvr::placement(&Cluster::from_snapshot(&doc));
    assert!(with["r1"].contains("h1"), "{with:?}");
}
