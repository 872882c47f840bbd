//! Container ports (the CNI plugin's): the namespace belongs to the runtime, so the plan
//! bind-mounts it instead of creating it, names the interface as the profile says, and on
//! port deletion removes the host end and the mount only.

use std::net::IpAddr;

use neutrino_dataplane::desired::{container_attachment, drop_vanished_containers, PortOutcome};
use neutrino_dataplane::{desired, plan, Cluster, HostConfig, HostState, Op};
use serde_json::{json, Value};

const CTR: &str = "c0ffee00c0ffee00";
const PORT: &str = "c1aaaaaa-0000-4000-8000-000000000009";

fn cluster(with_container: bool) -> Cluster {
    cluster_with(if with_container { Some(false) } else { None })
}

/// The fixtures plus port `PORT`: `None` absent, `Some(true)` parked in a pool (not taken),
/// `Some(false)` the container's.
fn cluster_with(pooled: Option<bool>) -> Cluster {
    let with_container = pooled.is_some();
    let mut doc: Value = serde_json::from_str(include_str!("fixtures.json")).unwrap();
    if with_container {
        let ports = doc["resources"]["port"].as_array_mut().unwrap();
        let mut port = ports[0].clone();
        port["id"] = json!(PORT);
        port["device_id"] = json!(CTR);
        port["device_owner"] = json!("compute:container");
        port["mac_address"] = json!("FA:16:3E:00:00:99");
        port["fixed_ips"] = json!([{"subnet_id": "s1", "ip_address": "10.1.0.99"}]);
        port["binding:profile"] =
            json!({"neutrino:netns": "/run/netns/cni-test", "neutrino:ifname": "net1"});
        if pooled == Some(true) {
            port["device_id"] = json!("pool-1");
            port["device_owner"] = json!("compute:container-pool");
            port["binding:profile"] = json!({"neutrino:pool": "pool-1"});
        }
        ports.push(port);
    }
    Cluster::from_snapshot(&doc)
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

#[test]
fn profile_decides_the_attachment() {
    let p = json!({"device_owner": "compute:container",
        "binding:profile": {"neutrino:netns": "/proc/42/ns/net", "neutrino:ifname": "eth3"}});
    assert_eq!(
        container_attachment(&p),
        Some(("/proc/42/ns/net".into(), "eth3".into()))
    );
    let default_if = json!({"binding:profile": {"neutrino:netns": "/run/netns/x"}});
    assert_eq!(container_attachment(&default_if).unwrap().1, "eth0");
    assert_eq!(
        container_attachment(&json!({"device_owner": "compute:nova"})),
        None
    );
    let relative = json!({"binding:profile": {"neutrino:netns": "x"}});
    assert_eq!(container_attachment(&relative), None);
}

#[test]
fn container_namespace_is_attached_not_created() {
    let d = desired(&cluster(true), &host());
    let ns = "h1-ctr-c0ffee00c0ffee00";
    assert_eq!(
        d.state.namespaces[ns].external.as_deref(),
        Some("/run/netns/cni-test")
    );
    match &d.ports[PORT] {
        PortOutcome::Plug { netns, ifname, .. } => {
            assert_eq!(netns, ns);
            assert_eq!(ifname, "net1");
        }
        other => panic!("unexpected {other:?}"),
    }
    let ops = plan(&d.state, &HostState::default());
    assert!(ops.contains(&Op::AttachNetns {
        name: ns.into(),
        path: "/run/netns/cni-test".into()
    }));
    assert!(!ops.contains(&Op::AddNetns(ns.into())));
    assert!(!ops.contains(&Op::LoUp(ns.into())));
    // The veth's peer goes into the container under the profile's name with the port MAC.
    let rendered: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    let veth = rendered
        .iter()
        .find(|l| l.contains("tapc1aaaaaa-00") && l.contains("veth"))
        .expect("veth op");
    assert!(veth.contains("net1") && veth.contains(ns), "{veth}");
    assert!(rendered
        .iter()
        .any(|l| l.contains(&format!("-n {ns}")) && l.contains("10.1.0.99")));
    // Mounting comes before anything inside the namespace.
    let attach = ops
        .iter()
        .position(|o| matches!(o, Op::AttachNetns { .. }))
        .unwrap();
    let first_inside = rendered
        .iter()
        .position(|l| l.contains(&format!("-n {ns}")) || l.contains(&format!("netns {ns}")))
        .unwrap();
    assert!(attach < first_inside);
}

#[test]
fn port_delete_removes_the_host_end_and_the_mount_only() {
    let with = desired(&cluster(true), &host());
    let without = desired(&cluster(false), &host());
    // Pretend the kernel is exactly as desired with the container.
    let ops = plan(&without.state, &with.state);
    assert!(ops.contains(&Op::DelLink("tapc1aaaaaa-00".into())));
    // `ip netns del` of a bind mount unmounts it; the runtime's namespace lives on.
    assert!(ops.contains(&Op::DelNetns("h1-ctr-c0ffee00c0ffee00".into())));
}

#[test]
fn a_vanished_runtime_namespace_is_dropped() {
    let mut d = desired(&cluster(true), &host());
    let ns = "h1-ctr-c0ffee00c0ffee00";
    // The runtime's namespace is still there: kept.
    let gone = drop_vanished_containers(&mut d.state, &|_, _| false);
    assert!(gone.is_empty());
    // Gone (whether mounted here or not): dropped, with its veth; VMs untouched; asked
    // with the runtime's path.
    let vms = d.state.namespaces.len() - 1;
    let gone = drop_vanished_containers(&mut d.state, &|n, path| {
        assert_eq!(n, ns);
        assert!(path.starts_with('/'));
        true
    });
    assert_eq!(gone, vec![ns.to_string()]);
    assert_eq!(d.state.namespaces.len(), vms);
    assert!(!d.state.taps.contains_key("tapc1aaaaaa-00"));
    assert!(plan(&d.state, &HostState::default())
        .iter()
        .all(|o| !matches!(o, Op::AttachNetns { .. })));
}

#[test]
fn pooled_port_is_parked_in_the_agents_pool_namespace() {
    let d = desired(&cluster_with(Some(true)), &host());
    let ns = "h1-pool";
    assert!(neutrino_dataplane::names::is_managed_netns("h1-", ns));
    // The agent's own namespace: created, not attached.
    assert_eq!(d.state.namespaces[ns].external, None);
    match &d.ports[PORT] {
        PortOutcome::Plug { netns, ifname, .. } => {
            assert_eq!(netns, ns);
            assert_eq!(ifname, "ppc1aaaaaa-00");
        }
        other => panic!("unexpected {other:?}"),
    }
    let ops = plan(&d.state, &HostState::default());
    assert!(ops.contains(&Op::AddNetns(ns.into())));
    let rendered: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
    assert!(rendered
        .iter()
        .any(|l| l.contains(&format!("-n {ns}")) && l.contains("10.1.0.99")));
    // Wired as desired: nothing more to do (an agent restart adopts the parked ports).
    assert!(plan(&d.state, &d.state).is_empty());
}

#[test]
fn taking_a_pooled_port_moves_its_interface_and_keeps_the_tap() {
    let parked = desired(&cluster_with(Some(true)), &host());
    let taken = desired(&cluster_with(Some(false)), &host());
    let ctr = "h1-ctr-c0ffee00c0ffee00";
    let ops = plan(&taken.state, &parked.state);
    // The tap (bridge port, filter) stays; the instance end moves and is renamed.
    assert!(!ops.iter().any(|o| matches!(o, Op::DelLink(_))), "{ops:?}");
    assert!(
        !ops.iter().any(|o| matches!(o, Op::AddVeth { .. })),
        "{ops:?}"
    );
    let moved = Op::MoveLink {
        netns: "h1-pool".into(),
        name: "ppc1aaaaaa-00".into(),
        to: ctr.into(),
        new_name: "net1".into(),
    };
    assert_eq!(
        moved.to_string(),
        format!("ip -n h1-pool link set ppc1aaaaaa-00 netns {ctr} name net1")
    );
    let at = |want: &dyn Fn(&Op) -> bool| ops.iter().position(want).expect("op");
    let attach = at(&|o| matches!(o, Op::AttachNetns { .. }));
    let mv = at(&|o| *o == moved);
    let link = at(
        &|o| matches!(o, Op::SetNsLink { netns, name, up: true, .. } if netns == ctr && name == "net1"),
    );
    let addr =
        at(&|o| matches!(o, Op::AddAddr { netns, dev, .. } if netns == ctr && dev == "net1"));
    let route = at(&|o| matches!(o, Op::AddRoute { netns, .. } if netns == ctr));
    assert!(
        attach < mv && mv < link && link < addr && addr < route,
        "{ops:?}"
    );
    // The emptied parking namespace is not deleted under the moving interface.
    assert!(!ops.contains(&Op::DelNetns("h1-pool".into())), "{ops:?}");
    // Once moved, the empty parking namespace goes, and then nothing is left to do.
    let mut after = taken.state.clone();
    after
        .namespaces
        .insert("h1-pool".into(), Default::default());
    assert_eq!(
        plan(&taken.state, &after),
        vec![Op::DelNetns("h1-pool".into())]
    );
    assert!(plan(&taken.state, &taken.state).is_empty());
}

/// A macvlan-nested container's port is filtered at its VM's tap when the VM is plugged here
/// (by its own MAC and groups); not when the VM is elsewhere, nor in VLAN mode (a subport).
#[test]
fn a_nested_container_is_filtered_at_its_vms_tap() {
    let mut snapshot: Value = serde_json::from_str(include_str!("fixtures.json")).unwrap();
    let ports = snapshot["resources"]["port"].as_array_mut().unwrap();
    let vm = ports
        .iter()
        .find(|p| p["binding:host_id"] == "h1" && p["device_owner"] == "compute:nova")
        .expect("a VM port on h1")
        .clone();
    let nested = |id: &str, mode: &str, parent: &Value| {
        json!({"id": id, "network_id": vm["network_id"], "binding:host_id": "",
            "device_owner": "compute:container-nested", "mac_address": "fa:16:3e:00:00:77",
            "security_groups": ["sg-ctr"], "fixed_ips": [],
            "binding:profile": {"neutrino:nested_parent": parent["id"],
                                "neutrino:nested_mode": mode}})
    };
    ports.push(nested(
        "n1aaaaaa-0000-4000-8000-000000000001",
        "macvlan",
        &vm,
    ));
    ports.push(nested("n2aaaaaa-0000-4000-8000-000000000002", "vlan", &vm));
    let elsewhere = json!({"id": "p-elsewhere"});
    ports.push(nested(
        "n3aaaaaa-0000-4000-8000-000000000003",
        "macvlan",
        &elsewhere,
    ));
    let cluster = Cluster::from_snapshot(&snapshot);
    let d = desired(&cluster, &host());
    let edge: Vec<&String> = d.edge_ports.keys().collect();
    assert_eq!(edge, ["n1aaaaaa-0000-4000-8000-000000000001"]);
    let e = &d.edge_ports["n1aaaaaa-0000-4000-8000-000000000001"];
    assert_eq!(
        e.device,
        neutrino_dataplane::names::tap(vm["id"].as_str().unwrap())
    );
    let model = neutrino_dataplane::security::firewall_model(&cluster, &d);
    let f = model
        .ports
        .iter()
        .find(|p| p.port_id == "n1aaaaaa-0000-4000-8000-000000000001")
        .expect("filtered");
    assert!(f.shared_device);
    assert_eq!(f.security_groups, ["sg-ctr"]);
}
