//! Hardware VTEPs as data: the rows a switch should hold, the transaction from what it holds,
//! what it learnt, and the hosts' forwarding toward it.

use std::net::IpAddr;

use neutrino_dataplane::state::{FdbEntry, FLOOD_MAC};
use neutrino_dataplane::vtep::{learned, observe, plan, select_ops, wanted, Observed};
use neutrino_dataplane::{desired, names, Cluster, HostConfig};
use serde_json::{json, Value};

const NET: &str = "11111111-1111-4111-8111-111111111111";
const GW: &str = "33333333-3333-4333-8333-333333333333";
const LS: &str = NET;

fn cluster() -> Cluster {
    Cluster::from_snapshot(&json!({"revision": 1, "resources": {
        "agent": [
            {"id": "a1", "host": "compute", "configurations": {"tunnel_ip": "198.18.0.1"}},
            {"id": "a2", "host": "ctl", "configurations": {"tunnel_ip": "198.18.0.9",
                                                         "vteps": {"sw1": "198.18.0.50"}}},
        ],
        "network": [{"id": NET, "name": "blue", "provider:network_type": "vxlan",
                     "provider:segmentation_id": 1001, "mtu": 1450}],
        "port": [{"id": "p1", "network_id": NET, "binding:host_id": "compute", "device_id": "vm1",
                  "device_owner": "compute:nova", "mac_address": "FA:16:3E:00:00:01",
                  "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}], "created_at": "1",
                  "allowed_address_pairs": [{"ip_address": "10.0.0.99/32",
                                             "mac_address": "fa:16:3e:00:00:99"}]},
                 {"id": "p2", "network_id": NET, "binding:host_id": "", "device_owner": "",
                  "mac_address": "fa:16:3e:00:00:02", "fixed_ips": [], "created_at": "2"}],
        "l2_gateway": [{"id": GW, "devices": [{"id": "d1", "device_name": "sw1",
            "interfaces": [{"name": "eth1", "segmentation_id": ["7"]}]}]}],
        "l2_gateway_connection": [{"id": "c1", "l2_gateway_id": GW, "network_id": NET,
                                   "segmentation_id": ""}],
        "l2gw_learned_macs": [{"id": "x", "host": "vtep:sw1", "network_id": NET,
                               "macs": ["00:00:5e:00:53:01"]}],
    }}))
}

/// A database with switch sw1 (port eth1), a logical switch Neutrino does not manage, and
/// optionally the network's logical switch with `key`.
fn observed(ls_key: Option<i64>) -> Observed {
    let mut lss = vec![json!({"_uuid": ["uuid", "ls-other"], "name": "operator",
                              "tunnel_key": 9})];
    if let Some(k) = ls_key {
        lss.push(json!({"_uuid": ["uuid", "ls-net"], "name": LS, "tunnel_key": k}));
    }
    let results: Vec<Value> = vec![
        json!({"rows": [{"_uuid": ["uuid", "sw"], "name": "sw1", "tunnel_ips": "198.18.0.50",
                         "ports": ["uuid", "port1"]}]}),
        json!({"rows": [{"_uuid": ["uuid", "port1"], "name": "eth1",
                         "vlan_bindings": ["map", [[3, ["uuid", "ls-other"]]]]}]}),
        json!({"rows": lss}),
        json!({"rows": []}),
        json!({"rows": []}),
        json!({"rows": []}),
        json!({"rows": []}),
        json!({"rows": [{"_uuid": ["uuid", "m1"], "MAC": "00:00:5E:00:53:01",
                         "logical_switch": ["uuid", "ls-net"], "locator": ["uuid", "l"],
                         "ipaddr": ""}]}),
        json!({"rows": []}),
    ];
    assert_eq!(results.len(), select_ops().len());
    observe("sw1", &results).expect("sw1 is there")
}

#[test]
fn an_empty_switch_gets_the_network() {
    let c = cluster();
    let want = wanted(&c, "sw1");
    assert_eq!(want.switches[LS], (NET.to_string(), 1001));
    let ops = plan(&want, &observed(None));
    let table = |t: &str| -> Vec<&Value> { ops.iter().filter(|o| o["table"] == t).collect() };
    let ls = table("Logical_Switch");
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0]["op"], "insert");
    assert_eq!(ls[0]["row"]["tunnel_key"], 1001);
    assert_eq!(ls[0]["row"]["name"], NET);
    assert_eq!(ls[0]["row"]["description"], "blue");
    let ls_ref = json!(["named-uuid", ls[0]["uuid-name"]]);
    // VLAN 7 on eth1; the operator's binding on VLAN 3 stays.
    let port = table("Physical_Port");
    assert_eq!(
        port[0]["row"]["vlan_bindings"],
        json!(["map", [[3, ["uuid", "ls-other"]], [7, ls_ref]]])
    );
    let loc = table("Physical_Locator");
    assert_eq!(
        loc[0]["row"],
        json!({"dst_ip": "198.18.0.1", "encapsulation_type": "vxlan_over_ipv4"})
    );
    // The port's MAC and its address pair's; not the unbound port's.
    let macs: Vec<(&str, &str)> = table("Ucast_Macs_Remote")
        .iter()
        .map(|m| {
            (
                m["row"]["MAC"].as_str().unwrap(),
                m["row"]["ipaddr"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        macs,
        [
            ("fa:16:3e:00:00:01", "10.0.0.5"),
            ("fa:16:3e:00:00:99", "10.0.0.99")
        ]
    );
    assert_eq!(table("Mcast_Macs_Remote")[0]["row"]["MAC"], "unknown-dst");
    // The operator's logical switch is never touched.
    assert!(!ops
        .iter()
        .any(|o| o.to_string().contains("ls-other") && o["op"] == "delete"));
}

#[test]
fn a_wrong_key_is_updated_and_an_unwanted_switch_deleted() {
    let c = cluster();
    let ops = plan(&wanted(&c, "sw1"), &observed(Some(5)));
    assert!(ops.iter().any(|o| o["op"] == "update"
        && o["table"] == "Logical_Switch"
        && o["row"]["tunnel_key"] == 1001));
    assert_eq!(
        json!(learned(&wanted(&c, "sw1"), &observed(Some(1001)))),
        json!({NET: ["00:00:5e:00:53:01"]})
    );

    // Without the connection: the logical switch goes, with what the switch learnt on it.
    let mut c2 = c.clone();
    c2.put("l2_gateway_connection", "c1", None);
    let ops = plan(&wanted(&c2, "sw1"), &observed(Some(1001)));
    let deleted: Vec<&str> = ops
        .iter()
        .filter(|o| o["op"] == "delete")
        .map(|o| o["table"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["Ucast_Macs_Local", "Logical_Switch"]);
}

#[test]
fn hosts_flood_to_the_vtep_and_reach_what_it_learnt() {
    let c = cluster();
    let cfg = HostConfig {
        host: "compute".into(),
        tunnel_ip: "198.18.0.1".parse().unwrap(),
        vxlan_port: 4789,
        netns_prefix: "compute-".into(),
        interface_mappings: Default::default(),
        l2gw_device: None,
    };
    let fdb = desired(&c, &cfg).state.fdb;
    let sw: IpAddr = "198.18.0.50".parse().unwrap();
    for mac in [FLOOD_MAC, "00:00:5e:00:53:01"] {
        assert!(
            fdb.contains(&FdbEntry {
                dev: names::vxlan(1001),
                mac: mac.into(),
                dst: sw
            }),
            "{mac}"
        );
    }
    // The managing agent's own host is not a gateway.
    assert!(!fdb.iter().any(|e| e.dst.to_string() == "198.18.0.9"));
}

#[test]
fn other_gateways_are_flooded_to_and_their_macs_remote() {
    let mut c = cluster();
    // A software gateway host on the same network, and what it learnt.
    c.put(
        "agent",
        "a3",
        Some(&json!({"id": "a3", "host": "gwhost",
                     "configurations": {"tunnel_ip": "198.18.0.7", "l2gw_device": "soft"}})),
    );
    c.put(
        "l2_gateway",
        "g2",
        Some(&json!({"id": "g2", "devices": [{"device_name": "soft",
                     "interfaces": [{"name": "bm0", "segmentation_id": []}]}]})),
    );
    c.put(
        "l2_gateway_connection",
        "c2",
        Some(
            &json!({"id": "c2", "l2_gateway_id": "g2", "network_id": NET,
                     "segmentation_id": "0"}),
        ),
    );
    c.put(
        "l2gw_learned_macs",
        "y",
        Some(&json!({"id": "y", "host": "gwhost", "network_id": NET,
                     "macs": ["00:00:5E:00:53:09"]})),
    );
    let want = wanted(&c, "sw1");
    assert_eq!(
        want.flood[LS].iter().collect::<Vec<_>>(),
        ["198.18.0.1", "198.18.0.7"]
    );
    let m = &want.ucast[&(LS.to_string(), "00:00:5e:00:53:09".to_string())];
    assert_eq!(m.locator, "198.18.0.7");
    // Its own learnt MACs are not sent back to it.
    assert!(!want
        .ucast
        .contains_key(&(LS.to_string(), "00:00:5e:00:53:01".to_string())));
}
