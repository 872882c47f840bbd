//! Golden tests: the plan for fixed desired states, and the IPv6 daemons' files (radvd,
//! DHCPv6 in dnsmasq), compared with files under `tests/golden/` (run with `UPDATE_GOLDEN=1` to rewrite them after an intended change).

use std::net::IpAddr;
use std::path::PathBuf;

use neutrino_dataplane::desired::PortOutcome;
use neutrino_dataplane::{desired, plan, Cluster, HostConfig, HostState};

fn cluster() -> Cluster {
    let text = include_str!("fixtures.json");
    Cluster::from_snapshot(&serde_json::from_str(text).unwrap())
}

fn host(name: &str, ip: &str) -> HostConfig {
    HostConfig {
        host: name.into(),
        tunnel_ip: ip.parse::<IpAddr>().unwrap(),
        vxlan_port: 4789,
        netns_prefix: format!("{name}-"),
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

fn render(ops: &[neutrino_dataplane::Op]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}

#[test]
fn fresh_host_plan() {
    let d = desired(&cluster(), &host("h1", "192.0.2.1"));
    golden(
        "h1-fresh.plan",
        &render(&plan(&d.state, &HostState::default())),
    );
}

#[test]
fn port_outcomes() {
    let d = desired(&cluster(), &host("h1", "192.0.2.1"));
    let text: String = d
        .ports
        .iter()
        .map(|(id, o)| match o {
            PortOutcome::Plug {
                tap,
                netns,
                ifname,
                up,
            } => format!("{id} plug {tap} {netns} {ifname} up={up}\n"),
            PortOutcome::Fail(why) => format!("{id} fail {why}\n"),
        })
        .collect();
    golden("h1-ports.txt", &text);
}

#[test]
fn converged_host_plans_nothing() {
    let d = desired(&cluster(), &host("h1", "192.0.2.1"));
    assert!(plan(&d.state, &d.state).is_empty());
}

#[test]
fn changes_plan_only_the_difference() {
    let before = desired(&cluster(), &host("h1", "192.0.2.1")).state;
    let mut c = cluster();
    // The port on h3 goes away, a new one appears on h2, p1 moves to a new address.
    c.put("port", "p4aaaaaa-0000-4000-8000-000000000004", None);
    let mut p1 = c
        .get("port", "p1aaaaaa-0000-4000-8000-000000000001")
        .unwrap()
        .clone();
    p1["fixed_ips"][0]["ip_address"] = "10.1.0.21".into();
    c.put("port", "p1aaaaaa-0000-4000-8000-000000000001", Some(&p1));
    let mut p8 = c
        .get("port", "p3aaaaaa-0000-4000-8000-000000000003")
        .unwrap()
        .clone();
    p8["id"] = "p8aaaaaa-0000-4000-8000-000000000008".into();
    p8["mac_address"] = "fa:16:3e:00:00:08".into();
    c.put("port", "p8aaaaaa-0000-4000-8000-000000000008", Some(&p8));
    let after = desired(&c, &host("h1", "192.0.2.1")).state;
    golden("h1-change.plan", &render(&plan(&after, &before)));
}

#[test]
fn everything_unbound_tears_down() {
    let before = desired(&cluster(), &host("h1", "192.0.2.1")).state;
    golden(
        "h1-teardown.plan",
        &render(&plan(&HostState::default(), &before)),
    );
}

// IPv6 services: the radvd configuration of a router with SLAAC, DHCPv6-stateful and
// DHCPv6-stateless interfaces, and the dnsmasq files of the DHCPv6 networks.

fn ipv6_cluster() -> Cluster {
    Cluster::from_snapshot(&serde_json::from_str(include_str!("fixtures-ipv6.json")).unwrap())
}

#[test]
fn router_advertisements_per_mode() {
    let d = desired(&ipv6_cluster(), &host("h1", "192.0.2.1"));
    assert_eq!(d.ra.keys().collect::<Vec<_>>(), ["h1-qrouter-r6"]);
    golden("ipv6-radvd.conf", &d.ra["h1-qrouter-r6"].render());
    // Other hosts run no radvd for this router.
    assert!(desired(&ipv6_cluster(), &host("h2", "192.0.2.2"))
        .ra
        .is_empty());
}

#[test]
fn dhcpv6_files() {
    let d = desired(&ipv6_cluster(), &host("h1", "192.0.2.1"));
    let mut text = String::new();
    for (netns, server) in &d.dhcp {
        let files = server.files(&format!("/state/dhcp/{netns}"));
        for (name, body) in [
            ("conf", &files.conf),
            ("hosts", &files.hosts),
            ("opts", &files.opts),
        ] {
            text.push_str(&format!("== {netns} {name}\n{body}"));
        }
    }
    golden("ipv6-dnsmasq.txt", &text);
}

/// A host with `physnet1:eth1,physnet2:eth2`, on the flat/VLAN fixture.
fn provider_host() -> (Cluster, HostConfig) {
    let text = include_str!("provider.json");
    let cluster = Cluster::from_snapshot(&serde_json::from_str(text).unwrap());
    let mut cfg = host("h1", "192.0.2.1");
    cfg.interface_mappings =
        neutrino_dataplane::provider::parse_interface_mappings("physnet1:eth1,physnet2:eth2")
            .unwrap();
    (cluster, cfg)
}

#[test]
fn provider_networks_plan() {
    let (cluster, cfg) = provider_host();
    let d = desired(&cluster, &cfg);
    // The flat network enslaves eth1, the VLAN network eth2.7; no VXLAN device, no FDB entry
    // toward h2 (the physical segment carries the traffic).
    let fresh = render(&plan(&d.state, &HostState::default()));
    golden("h1-provider.plan", &fresh);
    assert!(d.state.vxlans.is_empty() && d.state.fdb.is_empty());
    assert!(plan(&d.state, &d.state).is_empty());
    let outcomes: Vec<String> = d
        .ports
        .iter()
        .map(|(id, o)| match o {
            PortOutcome::Plug { tap, .. } => format!("{id} plug {tap}"),
            PortOutcome::Fail(why) => format!("{id} fail {why}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            "pf1aaaaa-0000-4000-8000-000000000001 plug tappf1aaaaa-00",
            "pu1aaaaa-0000-4000-8000-000000000004 fail physical network \"physnet9\" is not mapped on this host",
            "pv1aaaaa-0000-4000-8000-000000000003 plug tappv1aaaaa-00",
        ]
    );
    // Unbinding everything deletes the VLAN device and releases the physical interface.
    golden(
        "h1-provider-teardown.plan",
        &render(&plan(&HostState::default(), &d.state)),
    );
}

/// An instance with two ports on one subnet (a service function) gets one default route per
/// IP version, so planning again after applying plans nothing.
#[test]
fn two_ports_of_one_instance_share_one_default_route() {
    let mut snapshot: serde_json::Value =
        serde_json::from_str(include_str!("fixtures.json")).unwrap();
    let ports = snapshot["resources"]["port"].as_array_mut().unwrap();
    let mut second = ports[0].clone();
    second["id"] = "p1aaaaaa-0000-4000-8000-0000000000f2".into();
    second["mac_address"] = "fa:16:3e:00:00:f2".into();
    second["created_at"] = "2026-01-01T00:00:09Z".into();
    second["fixed_ips"] = serde_json::json!([{"subnet_id": "s1", "ip_address": "10.1.0.99"}]);
    ports.push(second);
    let d = desired(&Cluster::from_snapshot(&snapshot), &host("h1", "192.0.2.1"));
    let ns = &d.state.namespaces["h1-vm-vm1"];
    let defaults: Vec<_> = ns
        .routes
        .iter()
        .filter(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4())
        .collect();
    assert_eq!(defaults.len(), 1, "{:?}", ns.routes);
    assert!(ns.links.len() >= 2);
}

/// Bare-metal servers' ports are filtered at the uplinks of the provider networks this
/// host carries, by MAC on the shared device; not on networks the host does not carry, not
/// before they are bound, and not without port security.
#[test]
fn bare_metal_ports_are_filtered_at_the_uplink() {
    let mut snapshot: serde_json::Value =
        serde_json::from_str(include_str!("provider.json")).unwrap();
    let ports = snapshot["resources"]["port"].as_array_mut().unwrap();
    let bm = |id: &str, net: &str, host: &str, ip: &str| {
        serde_json::json!({
            "id": id, "network_id": net, "binding:host_id": host,
            "binding:vnic_type": "baremetal", "mac_address": "FA:16:3E:00:00:B1",
            "device_owner": "baremetal:none", "security_groups": ["sg-bm"],
            "fixed_ips": [{"subnet_id": "sf", "ip_address": ip}], "created_at": "2026-01-01"})
    };
    let flat = "f1111111-aaaa-4000-8000-000000000001";
    ports.push(bm(
        "b1aaaaaa-0000-4000-8000-000000000001",
        flat,
        "node-1",
        "203.0.113.31",
    ));
    ports.push(bm(
        "b2aaaaaa-0000-4000-8000-000000000002",
        flat,
        "",
        "203.0.113.32",
    ));
    ports.push(bm(
        "b3aaaaaa-0000-4000-8000-000000000003",
        "v3333333-cccc-4000-8000-000000000003",
        "node-3",
        "10.9.0.33",
    ));
    let mut insecure = bm(
        "b4aaaaaa-0000-4000-8000-000000000004",
        flat,
        "node-4",
        "203.0.113.34",
    );
    insecure["port_security_enabled"] = false.into();
    ports.push(insecure);
    let cluster = Cluster::from_snapshot(&snapshot);
    let (_, cfg) = provider_host();
    let d = desired(&cluster, &cfg);
    let edge: Vec<(&str, &str)> = d
        .edge_ports
        .iter()
        .map(|(id, e)| (id.as_str(), e.device.as_str()))
        .collect();
    assert_eq!(
        edge,
        [
            ("b1aaaaaa-0000-4000-8000-000000000001", "eth1"),
            ("b4aaaaaa-0000-4000-8000-000000000004", "eth1"),
        ]
    );
    let model = neutrino_dataplane::security::firewall_model(&cluster, &d);
    let filters: Vec<_> = model.ports.iter().filter(|p| p.shared_device).collect();
    assert_eq!(filters.len(), 1, "{filters:#?}");
    assert_eq!(filters[0].port_id, "b1aaaaaa-0000-4000-8000-000000000001");
    assert_eq!(filters[0].device, "eth1");
    assert_eq!(filters[0].mac, "fa:16:3e:00:00:b1");
    assert_eq!(filters[0].security_groups, ["sg-bm"]);
    assert_eq!(
        filters[0].bridge.as_deref(),
        Some(neutrino_dataplane::names::bridge(flat).as_str())
    );
    // A host that does not map the physical network filters nothing.
    let other = host("h3", "192.0.2.3");
    assert!(desired(&cluster, &other).edge_ports.is_empty());
}
