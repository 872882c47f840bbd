//! The software L2 gateway in the desired state: a gateway host bridges connected VXLAN
//! networks to its device's interfaces (untagged for VLAN 0, a VLAN sub-interface
//! otherwise), and the network's other hosts flood to it.

use std::net::IpAddr;

use neutrino_dataplane::state::{FdbEntry, Uplink, FLOOD_MAC};
use neutrino_dataplane::{desired, names, plan, Cluster, HostConfig, HostState, Op};
use serde_json::{json, Value};

const NET: &str = "11111111-1111-4111-8111-111111111111";
const NET2: &str = "22222222-2222-4222-8222-222222222222";
const GW: &str = "33333333-3333-4333-8333-333333333333";

fn host(name: &str, ip: &str, device: Option<&str>) -> HostConfig {
    HostConfig {
        host: name.into(),
        tunnel_ip: ip.parse::<IpAddr>().unwrap(),
        vxlan_port: 4789,
        netns_prefix: format!("{name}-"),
        interface_mappings: Default::default(),
        l2gw_device: device.map(str::to_string),
    }
}

fn agent(host: &str, ip: &str, device: Option<&str>) -> Value {
    json!({"id": format!("agent-{host}"), "host": host,
           "configurations": {"tunnel_ip": ip, "l2gw_device": device}})
}

/// A network with a VM port on `compute`, a gateway whose device `gw1` has `interfaces`,
/// connected with `segmentation_id`.
fn cluster(interfaces: Value, segmentation_id: Value) -> Cluster {
    Cluster::from_snapshot(&json!({"revision": 1, "resources": {
        "agent": [agent("compute", "198.18.0.1", None), agent("gwhost", "198.18.0.2", Some("gw1"))],
        "network": [
            {"id": NET, "provider:network_type": "vxlan", "provider:segmentation_id": 1001, "mtu": 1450},
            {"id": NET2, "provider:network_type": "vxlan", "provider:segmentation_id": 1002, "mtu": 1450},
        ],
        "port": [{"id": "p1", "network_id": NET, "binding:host_id": "compute", "device_id": "vm1",
                  "device_owner": "compute:nova", "mac_address": "fa:16:3e:00:00:01",
                  "fixed_ips": [], "created_at": "1"}],
        "l2_gateway": [{"id": GW, "devices": [
            {"id": "d1", "device_name": "gw1", "interfaces": interfaces},
            {"id": "d2", "device_name": "other", "interfaces": [{"name": "eth7", "segmentation_id": []}]}]}],
        "l2_gateway_connection": [{"id": "c1", "l2_gateway_id": GW, "network_id": NET,
                                   "segmentation_id": segmentation_id}],
    }}))
}

#[test]
fn gateway_host_bridges_the_interface_untagged() {
    let c = cluster(
        json!([{"name": "veth-bm", "segmentation_id": []}]),
        json!(""),
    );
    let gw = desired(&c, &host("gwhost", "198.18.0.2", Some("gw1")));
    let bridge = names::bridge(NET);
    assert!(gw.state.bridges.contains_key(&bridge));
    assert_eq!(
        gw.state.vxlans[&names::vxlan(1001)].master.as_deref(),
        Some(bridge.as_str())
    );
    assert_eq!(
        gw.state.uplinks.get("veth-bm"),
        Some(&Uplink {
            vlan: None,
            master: Some(bridge.clone())
        })
    );
    // The other device's interface and the unconnected network stay off this host.
    assert!(!gw.state.uplinks.contains_key("eth7"));
    assert!(!gw.state.bridges.contains_key(&names::bridge(NET2)));
    // Toward the compute host: flood and the VM's MAC.
    let to_compute: Vec<&FdbEntry> = gw.state.fdb.iter().collect();
    let compute_ip: IpAddr = "198.18.0.1".parse().unwrap();
    for mac in [FLOOD_MAC, "fa:16:3e:00:00:01"] {
        assert!(
            to_compute
                .iter()
                .any(|e| e.mac == mac && e.dst == compute_ip),
            "{mac}"
        );
    }
    // The plan enslaves the interface to the bridge.
    let ops = plan(&gw.state, &HostState::default());
    assert!(ops.iter().any(
        |op| matches!(op, Op::SetMaster { name, master } if name == "veth-bm" && *master == bridge)
    ));

    // The compute host floods to the gateway host.
    let compute = desired(&c, &host("compute", "198.18.0.1", None));
    let gw_ip: IpAddr = "198.18.0.2".parse().unwrap();
    assert!(compute.state.fdb.contains(&FdbEntry {
        dev: names::vxlan(1001),
        mac: FLOOD_MAC.into(),
        dst: gw_ip,
    }));
    assert!(compute.state.uplinks.is_empty());

    // Without the connection nothing is bridged and nobody floods to the gateway.
    let mut c2 = c.clone();
    c2.apply_page(&json!({"revision": 2, "changes": [{"kind": "l2_gateway_connection", "id": "c1", "body": null}]}));
    assert!(desired(&c2, &host("gwhost", "198.18.0.2", Some("gw1")))
        .state
        .uplinks
        .is_empty());
    let compute = desired(&c2, &host("compute", "198.18.0.1", None));
    assert!(!compute.state.fdb.iter().any(|e| e.dst == gw_ip));
}

#[test]
fn vlans_become_sub_interfaces() {
    // The connection's VLAN applies to interfaces without their own.
    let c = cluster(json!([{"name": "eth1", "segmentation_id": []}]), json!(100));
    let gw = desired(&c, &host("gwhost", "198.18.0.2", Some("gw1")));
    assert_eq!(
        gw.state.uplinks.get("eth1.100"),
        Some(&Uplink {
            vlan: Some(("eth1".into(), 100)),
            master: Some(names::bridge(NET))
        })
    );
    // An interface's own VLANs, each a sub-interface on the same bridge.
    let c = cluster(
        json!([{"name": "eth1", "segmentation_id": ["10", "20"]}]),
        json!(""),
    );
    let gw = desired(&c, &host("gwhost", "198.18.0.2", Some("gw1")));
    let names: Vec<&String> = gw.state.uplinks.keys().collect();
    assert_eq!(names, ["eth1.10", "eth1.20"]);
}

#[test]
fn a_host_that_is_not_the_device_is_untouched() {
    let c = cluster(json!([{"name": "eth1", "segmentation_id": []}]), json!(""));
    let other = desired(&c, &host("gwhost", "198.18.0.2", Some("not-this-one")));
    assert!(other.state.uplinks.is_empty() && other.state.bridges.is_empty());
}

#[test]
fn learned_macs_are_reported_and_become_fdb_entries_elsewhere() {
    let c = cluster(
        json!([{"name": "veth-bm", "segmentation_id": []}]),
        json!(""),
    );
    let bridge = names::bridge(NET);
    let fdb = json!([
        {"mac": "02:00:00:00:00:aa", "ifname": "veth-bm", "master": bridge, "state": ""},
        {"mac": "02:00:00:00:00:AB", "ifname": "veth-bm", "master": bridge},
        // The interface's own address, a static entry, another interface, the device itself.
        {"mac": "02:00:00:00:00:01", "ifname": "veth-bm", "master": bridge, "state": "permanent"},
        {"mac": "02:00:00:00:00:02", "ifname": "veth-bm", "master": bridge, "state": "static"},
        {"mac": "02:00:00:00:00:03", "ifname": "tap1", "master": bridge},
        {"mac": "02:00:00:00:00:04", "ifname": "veth-bm", "flags": ["self"], "state": "permanent"},
    ]);
    let learned = neutrino_dataplane::l2gw::learned_macs(&c, "gw1", &fdb);
    let macs: Vec<&String> = learned[NET].iter().collect();
    assert_eq!(macs, ["02:00:00:00:00:aa", "02:00:00:00:00:ab"]);
    // A device without attachments reports nothing.
    assert!(neutrino_dataplane::l2gw::learned_macs(&c, "other-device", &fdb).is_empty());

    // Once the server has the report, the compute host sends those MACs to the gateway host.
    let mut c2 = c.clone();
    c2.apply_page(
        &json!({"revision": 2, "changes": [{"kind": "l2gw_learned_macs",
        "id": "l2gw-macs:gwhost:n", "body": {"id": "l2gw-macs:gwhost:n", "host": "gwhost",
        "network_id": NET, "macs": ["02:00:00:00:00:aa"]}}]}),
    );
    let compute = desired(&c2, &host("compute", "198.18.0.1", None));
    assert!(compute.state.fdb.contains(&FdbEntry {
        dev: names::vxlan(1001),
        mac: "02:00:00:00:00:aa".into(),
        dst: "198.18.0.2".parse().unwrap(),
    }));
    // Not once the connection is gone.
    c2.apply_page(&json!({"revision": 3, "changes": [{"kind": "l2_gateway_connection", "id": "c1", "body": null}]}));
    let compute = desired(&c2, &host("compute", "198.18.0.1", None));
    assert!(!compute
        .state
        .fdb
        .iter()
        .any(|e| e.mac == "02:00:00:00:00:aa"));
}

fn with_remote(c: &Cluster, seg_id: &str, flood: &str) -> Cluster {
    let mut c = c.clone();
    c.apply_page(&json!({"revision": 5, "changes": [
        {"kind": "l2_remote_gateway", "id": "r1", "body": {"id": "r1", "ipaddr": "198.18.9.1"}},
        {"kind": "l2_remote_gateway_connection", "id": "rc1", "body": {"id": "rc1", "gateway": GW,
         "network": NET, "remote_gateway": "r1", "seg_id": seg_id, "flood": flood}},
        {"kind": "l2_remote_mac", "id": "m1", "body": {"id": "m1", "uuid": "m1",
         "mac": "02:00:00:00:09:01", "ipaddr": "", "rgw_connection": "rc1"}},
    ]}));
    c
}

#[test]
fn remote_gateways_get_a_wan_tunnel() {
    let base = cluster(
        json!([{"name": "veth-bm", "segmentation_id": []}]),
        json!(""),
    );
    let remote: IpAddr = "198.18.9.1".parse().unwrap();
    let entry = |dev: &str, mac: &str| FdbEntry {
        dev: dev.into(),
        mac: mac.into(),
        dst: remote,
    };

    // A WAN key of its own: a second VXLAN device on the network's bridge.
    let gw = desired(
        &with_remote(&base, "456", "True"),
        &host("gwhost", "198.18.0.2", Some("gw1")),
    );
    let wan = &gw.state.vxlans[&names::vxlan(456)];
    assert_eq!(
        (wan.vni, wan.master.as_deref()),
        (456, Some(names::bridge(NET).as_str()))
    );
    assert!(gw.state.fdb.contains(&entry("vxlan-456", FLOOD_MAC)));
    assert!(gw
        .state
        .fdb
        .contains(&entry("vxlan-456", "02:00:00:00:09:01")));

    // No key: the network's own VXLAN device; no flooding when `flood` is "False".
    let gw = desired(
        &with_remote(&base, "", "False"),
        &host("gwhost", "198.18.0.2", Some("gw1")),
    );
    assert!(!gw.state.vxlans.contains_key("vxlan-456"));
    assert!(!gw.state.fdb.contains(&entry("vxlan-1001", FLOOD_MAC)));
    assert!(gw
        .state
        .fdb
        .contains(&entry("vxlan-1001", "02:00:00:00:09:01")));

    // Other hosts, and a gateway host whose network is not connected, do nothing of it.
    let compute = desired(
        &with_remote(&base, "456", "True"),
        &host("compute", "198.18.0.1", None),
    );
    assert!(!compute.state.fdb.iter().any(|e| e.dst == remote));
    let mut c = with_remote(&base, "456", "True");
    c.apply_page(&json!({"revision": 6, "changes": [{"kind": "l2_gateway_connection", "id": "c1", "body": null}]}));
    let gw = desired(&c, &host("gwhost", "198.18.0.2", Some("gw1")));
    assert!(gw.state.vxlans.is_empty() && gw.state.fdb.is_empty());
}

#[test]
fn remote_macs_with_an_address_are_answered_by_the_gateway_and_sent_to_it() {
    let mut c = with_remote(
        &cluster(
            json!([{"name": "veth-bm", "segmentation_id": []}]),
            json!(""),
        ),
        "456",
        "False",
    );
    c.apply_page(&json!({"revision": 7, "changes": [
        {"kind": "l2_remote_mac", "id": "m2", "body": {"id": "m2", "uuid": "m2",
         "mac": "02:00:00:00:09:02", "ipaddr": "10.70.0.60", "rgw_connection": "rc1"}},
    ]}));
    let gw = desired(&c, &host("gwhost", "198.18.0.2", Some("gw1")));
    // The bridge answers for the MAC that has an address, behind the WAN device; not for the
    // one without.
    let answers: Vec<_> = gw.arp_answers.iter().collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        (
            answers[0].bridge.as_str(),
            answers[0].port.as_str(),
            answers[0].ip.to_string(),
            answers[0].mac.as_str()
        ),
        (
            names::bridge(NET).as_str(),
            "vxlan-456",
            "10.70.0.60".to_string(),
            "02:00:00:00:09:02"
        )
    );
    let model = neutrino_dataplane::local_ip::desired(&c, &gw.ports, &gw.arp_answers);
    let ops: Vec<String> = neutrino_dataplane::local_ip::plan(&model, &Default::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        ops.iter()
            .any(|o| o.contains("fdb replace 02:00:00:00:09:02 dev vxlan-456 master static"))
            && ops
                .iter()
                .any(|o| o.contains("dev vxlan-456 neigh_suppress on"))
            && ops
                .iter()
                .any(|o| o.contains("neigh replace 10.70.0.60 lladdr 02:00:00:00:09:02")),
        "{ops:?}"
    );

    // The network's other hosts send both remote MACs to the gateway host (no flooding for
    // a known MAC); none gets an ARP answer.
    let compute = desired(&c, &host("compute", "198.18.0.1", None));
    let gateway: IpAddr = "198.18.0.2".parse().unwrap();
    for mac in ["02:00:00:00:09:01", "02:00:00:00:09:02"] {
        assert!(
            compute.state.fdb.contains(&FdbEntry {
                dev: names::vxlan(1001),
                mac: mac.into(),
                dst: gateway,
            }),
            "{mac}: {:?}",
            compute.state.fdb
        );
    }
    assert!(compute.arp_answers.is_empty());
}

#[test]
fn the_mac_exchange_announces_this_cloud_and_learns_only_from_the_border_peer() {
    use neutrino_dataplane::l2gw::{add_learned_remote, announcements, LearnedRemote};
    let c = with_remote(
        &cluster(
            json!([{"name": "veth-bm", "segmentation_id": []}]),
            json!(""),
        ),
        "456",
        "False",
    );
    let mut gw = desired(&c, &host("gwhost", "198.18.0.2", Some("gw1")));
    assert_eq!(gw.borders.len(), 1);
    let remote: IpAddr = "198.18.9.1".parse().unwrap();
    // This cloud's bound port and what was learned behind the interface are announced; the
    // API's remote MACs (the other cloud's) are not.
    let behind = [(NET.to_string(), ["02:00:00:00:00:bb".to_string()].into())].into();
    let out = announcements(&c, &gw, &behind);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].remote, out[0].key), (remote, 456));
    let macs: Vec<&str> = out[0].macs.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(macs, ["02:00:00:00:00:bb", "fa:16:3e:00:00:01"]);

    // Learned from the border's peer on its key: forwarded over the WAN device and answered;
    // from anyone else, or on another key: ignored.
    let learned = [
        LearnedRemote {
            remote,
            key: 456,
            mac: "02:00:00:00:0a:01".into(),
            ip: Some("10.70.0.61".parse().unwrap()),
        },
        LearnedRemote {
            remote,
            key: 457,
            mac: "02:00:00:00:0a:02".into(),
            ip: None,
        },
        LearnedRemote {
            remote: "198.18.9.2".parse().unwrap(),
            key: 456,
            mac: "02:00:00:00:0a:03".into(),
            ip: None,
        },
    ]
    .into();
    let added = add_learned_remote(&mut gw, &learned);
    assert_eq!(added[NET].iter().collect::<Vec<_>>(), ["02:00:00:00:0a:01"]);
    assert!(gw.state.fdb.contains(&FdbEntry {
        dev: "vxlan-456".into(),
        mac: "02:00:00:00:0a:01".into(),
        dst: remote,
    }));
    assert!(!gw
        .state
        .fdb
        .iter()
        .any(|e| e.mac.starts_with("02:00:00:00:0a:0") && e.mac != "02:00:00:00:0a:01"));
    assert!(gw
        .arp_answers
        .iter()
        .any(|a| a.mac == "02:00:00:00:0a:01" && a.ip.to_string() == "10.70.0.61"));
}
