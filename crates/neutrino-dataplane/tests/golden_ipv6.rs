//! Golden tests of IPv6 services: the radvd configuration of a router with SLAAC,
//! DHCPv6-stateful and DHCPv6-stateless interfaces, and the dnsmasq files of the DHCPv6
//! networks, compared with files under `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them).

use std::path::PathBuf;

use neutrino_dataplane::{desired, Cluster, HostConfig};

fn cluster() -> Cluster {
    Cluster::from_snapshot(&serde_json::from_str(include_str!("fixtures-ipv6.json")).unwrap())
}

fn h1() -> HostConfig {
    HostConfig {
        host: "h1".into(),
        tunnel_ip: "192.0.2.1".parse().unwrap(),
        vxlan_port: 4789,
        netns_prefix: "h1-".into(),
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
fn router_advertisements_per_mode() {
    let d = desired(&cluster(), &h1());
    assert_eq!(d.ra.keys().collect::<Vec<_>>(), ["h1-qrouter-r6"]);
    golden("ipv6-radvd.conf", &d.ra["h1-qrouter-r6"].render());
    // Other hosts run no radvd for this router.
    let h2 = HostConfig {
        host: "h2".into(),
        tunnel_ip: "192.0.2.2".parse().unwrap(),
        ..h1()
    };
    assert!(desired(&cluster(), &h2).ra.is_empty());
}

#[test]
fn dhcpv6_files() {
    let d = desired(&cluster(), &h1());
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
