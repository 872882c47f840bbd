//! Floating IPs in a router namespace: on the gateway, and on an interface attached to an
//! external network (`router-interface-fip`). The namespace's addresses and nftables table
//! are compared with `tests/golden/router-fips.txt` (`UPDATE_GOLDEN=1` rewrites it).

use std::path::PathBuf;

use neutrino_dataplane::names;
use neutrino_dataplane::router::{add_router, RouterPort};
use neutrino_dataplane::state::Namespace;
use neutrino_dataplane::Cluster;
use serde_json::{json, Value};

const ROUTER: &str = "r1";
const QR_PRIVATE: &str = "p1aaaaaa-0000-4000-8000-000000000001";
const QR_PUBLIC2: &str = "p2aaaaaa-0000-4000-8000-000000000002";
const QG: &str = "p3aaaaaa-0000-4000-8000-000000000003";

fn router_port(id: &str, subnet: &str, ip: &str, owner: &str) -> Value {
    json!({"id": id, "device_id": ROUTER, "device_owner": owner,
           "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}]})
}

fn fip(id: &str, floating: &str, fixed: &str) -> Value {
    json!({"id": id, "router_id": ROUTER, "floating_ip_address": floating,
           "fixed_ip_address": fixed})
}

fn forwarding(id: &str, protocol: &str, external: &str, ip: &str, internal: &str) -> Value {
    json!({"id": id, "floatingip_id": "f-forward", "protocol": protocol,
           "external_port_range": external, "internal_ip_address": ip,
           "internal_port_range": internal})
}

/// Router r1: an interface on a private subnet (192.2.1.0/24), an interface on a second
/// external network (192.2.2.0/24) and its gateway on `public` (172.24.4.0/24). One
/// floating IP from each external network maps to a private address; one maps to an
/// address behind another router (hosted here by name, `floating-ip-router-writable`); one
/// forwards ports (one port, a range to one port, a range to a range).
fn cluster() -> Cluster {
    Cluster::from_snapshot(&json!({"revision": 1, "resources": {
        "router": [{"id": ROUTER, "external_gateway_info": {"network_id": "public", "enable_snat": true},
                    "enable_ndp_proxy": true,
                    "routes": [{"destination": "10.50.0.0/24", "nexthop": "192.2.1.254"}]}],
        "subnet": [
            {"id": "private", "cidr": "192.2.1.0/24"},
            {"id": "public2", "cidr": "192.2.2.0/24"},
            {"id": "public", "cidr": "172.24.4.0/24"},
        ],
        "port": [
            router_port(QR_PRIVATE, "private", "192.2.1.1", "network:router_interface"),
            router_port(QR_PUBLIC2, "public2", "192.2.2.1", "network:router_interface"),
            router_port(QG, "public", "172.24.4.100", "network:router_gateway"),
        ],
        "floatingip": [
            fip("f-interface", "192.2.2.10", "192.2.1.5"),
            fip("f-gateway", "172.24.4.20", "192.2.1.6"),
            fip("f-indirect", "172.24.4.21", "10.50.0.7"),
            json!({"id": "f-free", "router_id": null, "floating_ip_address": "192.2.2.11",
                   "fixed_ip_address": null}),
            json!({"id": "f-forward", "router_id": ROUTER, "floating_ip_address": "172.24.4.30",
                   "fixed_ip_address": null, "floating_network_id": "public"}),
        ],
        "ndp_proxy": [
            {"id": "np1", "router_id": ROUTER, "ip_address": "2001:db8::5"},
            {"id": "np2", "router_id": "another", "ip_address": "2001:db8::6"},
        ],
        "port_forwarding": [
            forwarding("pf-ssh", "tcp", "2222:2222", "192.2.1.7", "22:22"),
            forwarding("pf-one", "udp", "5000:5009", "192.2.1.7", "6000:6000"),
            forwarding("pf-many", "tcp", "8000:8002", "192.2.1.8", "9000:9002"),
        ],
    }}))
}

fn namespace(cluster: &Cluster) -> Namespace {
    let ports: Vec<Value> = cluster.all("port").cloned().collect();
    let plugged: Vec<RouterPort<'_>> = ports
        .iter()
        .map(|p| {
            let gateway = p["device_owner"] == "network:router_gateway";
            RouterPort {
                port: p,
                ifname: names::router_interface(p["id"].as_str().unwrap(), gateway),
                gateway,
            }
        })
        .collect();
    let mut ns = Namespace::default();
    add_router(cluster, ROUTER, &plugged, &mut ns);
    ns
}

fn render(ns: &Namespace) -> String {
    let mut out = String::new();
    for (dev, addr) in &ns.addrs {
        out.push_str(&format!("addr {dev} {addr}\n"));
    }
    for r in &ns.routes {
        out.push_str(&format!("route {} via {} dev {}\n", r.dst, r.via, r.dev));
    }
    out.push_str(&ns.nft.as_ref().expect("a router table").script);
    out
}

#[test]
fn floating_ips_on_gateway_and_interface() {
    let ns = namespace(&cluster());
    let actual = render(&ns);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/router-fips.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "golden file router-fips.txt differs");
}

#[test]
fn interface_floating_ip_is_answered_and_natted_on_its_interface() {
    let ns = namespace(&cluster());
    let qr_public2 = names::router_interface(QR_PUBLIC2, false);
    let qg = names::router_interface(QG, true);
    let addrs: Vec<(String, String)> = ns
        .addrs
        .iter()
        .map(|(d, a)| (d.clone(), a.to_string()))
        .collect();
    assert!(addrs.contains(&(qr_public2.clone(), "192.2.2.10/32".into())));
    assert!(addrs.contains(&(qg.clone(), "172.24.4.20/32".into())));
    assert!(addrs.contains(&(qg.clone(), "172.24.4.21/32".into())));
    assert!(
        !addrs.iter().any(|(_, a)| a == "192.2.2.11/32"),
        "an unassociated floating IP is not answered for"
    );
    let script = &ns.nft.as_ref().unwrap().script;
    for line in [
        "ip daddr 192.2.2.10 dnat ip to 192.2.1.5".to_string(),
        format!("oifname \"{qr_public2}\" ip saddr 192.2.1.5 snat ip to 192.2.2.10"),
        format!("iifname \"{qr_public2}\" ip daddr 192.2.1.5 ct status dnat accept"),
        format!("oifname \"{qg}\" ip saddr 192.2.1.6 snat ip to 172.24.4.20"),
        format!("oifname \"{qg}\" ip saddr 10.50.0.7 snat ip to 172.24.4.21"),
    ] {
        assert!(script.contains(&line), "missing {line:?} in\n{script}");
    }
    assert!(
        !script.contains(&format!(
            "oifname \"{qg}\" ip saddr 192.2.1.5 snat ip to 192.2.2.10"
        )),
        "an interface floating IP is not SNATed toward the gateway"
    );
}

#[test]
fn without_a_gateway_an_interface_floating_ip_still_works() {
    let mut c = cluster();
    c.put("port", QG, None);
    c.put("floatingip", "f-gateway", None);
    c.put("floatingip", "f-indirect", None);
    let ns = namespace(&c);
    let script = &ns.nft.as_ref().unwrap().script;
    assert!(script.contains("ip daddr 192.2.2.10 dnat ip to 192.2.1.5"));
    assert!(!script.contains("172.24.4"));
}

#[test]
fn port_forwardings_dnat_their_ports_and_the_floating_ip_is_on_the_gateway() {
    let ns = namespace(&cluster());
    let qg = names::router_interface(QG, true);
    assert!(ns.addrs.contains(&(qg, "172.24.4.30/32".parse().unwrap())));
    let script = &ns.nft.as_ref().unwrap().script;
    for rule in [
        "ip daddr 172.24.4.30 tcp dport 2222 dnat ip to 192.2.1.7:22",
        "ip daddr 172.24.4.30 udp dport 5000-5009 dnat ip to 192.2.1.7:6000",
        "ip daddr 172.24.4.30 tcp dport 8000-8002 dnat ip to 192.2.1.8 : tcp dport map { 8000 : 9000, 8001 : 9001, 8002 : 9002 }",
    ] {
        assert!(script.contains(rule), "{rule} missing from\n{script}");
    }
    // No 1:1 NAT for a floating IP that only forwards ports.
    assert!(!script.contains("snat ip to 172.24.4.30"), "{script}");
}

#[test]
fn ndp_proxies_of_the_router_are_answered_on_its_gateway() {
    let ns = namespace(&cluster());
    let qg = names::router_interface(QG, true);
    let want: std::collections::BTreeSet<(String, std::net::Ipv6Addr)> =
        [(qg, "2001:db8::5".parse().unwrap())].into();
    assert_eq!(ns.ndp_proxies, want);
}
