//! Distributed routers: golden plans of the three hosts of `dvr_fixtures.json` (h1 and h2
//! with instances, h3 the SNAT host), and the properties the layout relies on.

use std::net::IpAddr;
use std::path::PathBuf;

use neutrino_dataplane::state::{Neighbor, SrcRoute};
use neutrino_dataplane::{desired, names, plan, Cluster, HostConfig, HostState};

const ROUTER: &str = "r1000000-0000-4000-8000-000000000001";
const IFACE_A: &str = "pia00000-0000-4000-8000-000000000004";

fn cluster() -> Cluster {
    Cluster::from_snapshot(&serde_json::from_str(include_str!("dvr_fixtures.json")).unwrap())
}

fn host(name: &str) -> HostConfig {
    let n = &name[1..];
    HostConfig {
        host: name.into(),
        tunnel_ip: format!("192.0.2.{n}").parse::<IpAddr>().unwrap(),
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

#[test]
fn fresh_plans_of_every_host() {
    for h in ["h1", "h2", "h3"] {
        let d = desired(&cluster(), &host(h));
        let text: String = plan(&d.state, &HostState::default())
            .iter()
            .map(|op| format!("{op}\n"))
            .collect();
        golden(&format!("dvr-{h}-fresh.plan"), &text);
        assert!(plan(&d.state, &d.state).is_empty());
    }
}

#[test]
fn every_host_with_instances_routes_locally_with_its_own_mac() {
    let qrouter = |h: &str| names::router_netns(&format!("{h}-"), ROUTER);
    let qr_a = names::router_interface(IFACE_A, false);
    let mut macs = Vec::new();
    for h in ["h1", "h2", "h3"] {
        let d = desired(&cluster(), &host(h));
        let ns = &d.state.namespaces[&qrouter(h)];
        let link = &ns.links[&qr_a];
        assert_eq!(link.mac, names::dvr_mac(h, IFACE_A));
        macs.push(link.mac.clone());
        assert!(ns
            .addrs
            .contains(&(qr_a.clone(), "10.10.1.1/24".parse().unwrap())));
        // Every address on the subnet is known; the router never asks the overlay.
        assert!(ns.neighbors.contains(&Neighbor {
            dev: qr_a.clone(),
            ip: "10.10.1.10".parse().unwrap(),
            mac: "fa:16:3e:00:01:10".into(),
        }));
        // What the main table cannot route goes to the subnet's SNAT port.
        assert!(ns.src_routes.contains(&SrcRoute {
            from: "10.10.1.0/24".parse().unwrap(),
            via: "10.10.1.5".parse().unwrap(),
            dev: qr_a.clone(),
        }));
        // Gateway ARP never crosses the overlay.
        let guard = d.state.arp_guard.as_ref().unwrap();
        assert!(guard
            .script
            .contains("iifname \"vxlan-201\" arp daddr ip 10.10.1.1 drop"));
        // The other hosts' copies are reached through their tunnels.
        for (other, ip) in [
            ("h1", "192.0.2.1"),
            ("h2", "192.0.2.2"),
            ("h3", "192.0.2.3"),
        ] {
            let entry = d
                .state
                .fdb
                .iter()
                .any(|e| e.mac == names::dvr_mac(other, IFACE_A) && e.dst.to_string() == ip);
            assert_eq!(entry, other != h, "{h} -> {other}");
        }
    }
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 3);
}

#[test]
fn snat_namespace_only_on_the_snat_host() {
    let snat = |h: &str| names::snat_netns(&format!("{h}-"), ROUTER);
    for h in ["h1", "h2"] {
        let d = desired(&cluster(), &host(h));
        assert!(!d.state.namespaces.contains_key(&snat(h)));
    }
    let d = desired(&cluster(), &host("h3"));
    let ns = &d.state.namespaces[&snat("h3")];
    let mut links: Vec<&str> = ns.links.keys().map(String::as_str).collect();
    links.sort();
    assert_eq!(
        links,
        ["qg-pgw00000-00", "sg-psa00000-00", "sg-psb00000-00"]
    );
    let table = &ns.nft.as_ref().unwrap().script;
    assert!(
        table.contains("oifname \"qg-pgw00000-00\" ip saddr 10.10.2.0/24 snat ip to 198.51.100.10")
    );
    // Floating IPs stay central.
    assert!(table.contains("ip daddr 198.51.100.20 dnat ip to 10.10.2.10"));
    assert!(ns
        .addrs
        .contains(&("qg-pgw00000-00".into(), "198.51.100.20/32".parse().unwrap())));
}
