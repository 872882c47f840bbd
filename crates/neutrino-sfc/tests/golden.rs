//! Golden tests: a host's model → the nft transaction, compared with files under
//! `tests/golden/` (`NEUTRINO_BLESS=1` rewrites them), and the planner's incremental
//! behaviour (apply = empty plan; one change touches only what changed).

use std::collections::BTreeMap;
use std::path::PathBuf;

use neutrino_sfc::table::{Chain as NftChain, Rule, Set, Table};
use neutrino_sfc::*;

fn port(id: &str, mac: &str, loc: Location, ip: &str) -> Port {
    Port {
        id: id.into(),
        mac: mac.into(),
        network: "net-1".into(),
        location: loc,
        addresses: vec![ip.parse().unwrap()],
        port_security: true,
        bridge: None,
    }
}

fn local(tap: &str) -> Location {
    Location::Local(tap.into())
}

fn remote() -> Location {
    Location::Remote("vxlan-100".into())
}

fn pair(id: &str, n: u8, ingress: Location, egress: Location, weight: u32) -> Pair {
    let mut inp = port(
        &format!("{id}-in"),
        &format!("fa:16:3e:00:{n:02x}:01"),
        ingress,
        &format!("10.0.0.{}", 100 + n),
    );
    inp.port_security = false;
    let mut outp = port(
        &format!("{id}-out"),
        &format!("fa:16:3e:00:{n:02x}:02"),
        egress,
        &format!("10.0.0.{}", 150 + n),
    );
    outp.port_security = false;
    Pair {
        id: format!("{id}0000-0000-0000-0000-000000000000"),
        ingress: inp,
        egress: outp,
        weight,
        out_of_service: None,
        proxied: None,
    }
}

fn group(id: &str, number: u32, pairs: Vec<Pair>) -> Group {
    Group {
        id: id.into(),
        number,
        tap: false,
        lb_fields: Vec::new(),
        egress_mapping: NTupleMapping::default(),
        fail_open: false,
        pairs,
    }
}

fn tcp80() -> NTuple {
    NTuple {
        family: Family::V4,
        protocol: Some(6),
        source: Some("10.0.0.0/24".parse().unwrap()),
        destination: None,
        source_ports: None,
        destination_ports: Some((80, 80)),
    }
}

/// Source on this host, function 1 here (two instances, weights 2:1, one remote), function 2
/// remote, destination remote; symmetric.
fn model() -> SfcModel {
    let src = port("src-port", "fa:16:3e:aa:00:01", local("tapsrc"), "10.0.0.5");
    let dst = port("dst-port", "fa:16:3e:bb:00:01", remote(), "10.0.0.9");
    let chain = Chain {
        id: "chain-1".into(),
        number: 7,
        symmetric: true,
        groups: vec![
            group(
                "ppg-a",
                1,
                vec![
                    pair("aaaaaaaa", 1, local("tapa1in"), local("tapa1out"), 2),
                    pair("bbbbbbbb", 2, remote(), remote(), 1),
                ],
            ),
            group("ppg-b", 2, vec![pair("cccccccc", 3, remote(), remote(), 1)]),
        ],
        classifiers: vec![Classifier {
            id: "fc-1".into(),
            tuple: tcp80(),
            sources: vec![src],
            destination: Some(dst),
        }],
        next_chains: Vec::new(),
    };
    let mut networks = BTreeMap::new();
    networks.insert(
        "net-1".to_string(),
        NetworkMacs {
            hosts: [("10.0.0.9".parse().unwrap(), "fa:16:3e:bb:00:01".to_string())].into(),
            gateways: [(
                "10.0.0.0/24".parse().unwrap(),
                "fa:16:3e:ee:00:01".to_string(),
            )]
            .into(),
            tunnel: Some("vxlan-100".into()),
            direct: BTreeMap::new(),
        },
    );
    let ifindex = [
        "tapsrc",
        "tapa1in",
        "tapa1out",
        "tapd1in",
        "tapd1out",
        "vxlan-100",
    ]
    .iter()
    .enumerate()
    .map(|(i, d)| (d.to_string(), i as u32 + 10))
    .collect();
    SfcModel {
        chains: vec![chain],
        networks,
        pin_timeout: 120,
        ifindex,
        functions: Vec::new(),
        probe_numbers: BTreeMap::new(),
    }
}

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("NEUTRINO_BLESS").is_some() || !path.exists() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text, want,
        "golden {name} differs (NEUTRINO_BLESS=1 to accept)"
    );
}

/// What the kernel would show after applying `want`: same chains, rules, sets.
fn applied(want: &Table) -> Table {
    let mut t = want.clone();
    for c in t.chains.values_mut() {
        for r in &mut c.rules {
            r.text.clear();
        }
    }
    for s in t.sets.values_mut() {
        s.decl.clear();
    }
    t
}

#[test]
fn fresh_host_symmetric_two_groups() {
    let c = compile(&model());
    golden(
        "symmetric-fresh.nft",
        &plan(&c.table, &Table::default()).script(),
    );
}

#[test]
fn applying_again_plans_nothing() {
    let c = compile(&model());
    assert!(plan(&c.table, &applied(&c.table)).is_empty());
}

#[test]
fn adding_a_pair_rewrites_only_that_hop() {
    let before = compile(&model());
    let mut m = model();
    m.chains[0].groups[0]
        .pairs
        .push(pair("dddddddd", 4, local("tapd1in"), local("tapd1out"), 1));
    let after = compile(&m);
    let p = plan(&after.table, &applied(&before.table));
    golden("add-pair.nft", &p.script());
    // Pins of the pairs already there are never flushed or deleted.
    assert!(
        !p.script()
            .contains("set netdev neutrino_sfc pin4-7-1-aaaaaaaa0000"),
        "{}",
        p.script()
    );
    assert!(!p.script().contains("delete"), "{}", p.script());
}

#[test]
fn teardown_removes_everything() {
    let c = compile(&model());
    let p = plan(&compile(&SfcModel::default()).table, &applied(&c.table));
    assert_eq!(p.script(), "delete table netdev neutrino_sfc\n");
}

#[test]
fn weights_shape_the_buckets() {
    let b = buckets(&[2, 1, 1]);
    let count = |m| b.iter().filter(|x| **x == m).count();
    assert_eq!((count(0), count(1), count(2)), (32, 16, 16));
    let b = buckets(&[0, 3]);
    assert!(b.iter().all(|m| *m == 1));
    let b = buckets(&[0, 0]);
    assert_eq!(b.iter().filter(|m| **m == 0).count(), 32);
}

#[test]
fn dead_group_fails_closed_or_open() {
    let mut m = model();
    for p in &mut m.chains[0].groups[1].pairs {
        p.out_of_service = Some("dead".into());
    }
    let c = compile(&m);
    let h = &c.table.chains["h-7-2-f"];
    assert!(
        h.rules
            .iter()
            .any(|r| r.text == "counter name \"h-7-2-f\" drop"),
        "{h:?}"
    );
    assert!(c.table.counters.contains("h-7-2-f"));
    m.chains[0].groups[1].fail_open = true;
    let c = compile(&m);
    let h = &c.table.chains["h-7-2-f"];
    assert!(h.rules.iter().any(|r| r.text == "goto out-7-f"), "{h:?}");
}

#[allow(dead_code)]
fn unused(_: NftChain, _: Rule, _: Set) {}

/// A source with port security enters across the bridge: its tap only rewrites the
/// destination MAC to the steering port's, whose egress hook classifies again.
#[test]
fn port_security_source_enters_through_the_steering_port() {
    let mut m = model();
    m.chains[0].classifiers[0].sources[0].bridge = Some("brqnet-1".into());
    let dev = steering::port_name("net-1");
    let mac = steering::mac("net-1");
    // Before the steering port exists: straight to the function, and the port is wanted.
    let c = compile(&m);
    assert_eq!(c.steering[&dev].bridge, "brqnet-1");
    assert!(!c.table.chains.keys().any(|k| k.starts_with("egr-sfs")));
    m.ifindex.insert(dev.clone(), 99);
    let c = compile(&m);
    let script = plan(&c.table, &Table::default()).script();
    golden("steering-port.nft", &script);
    assert!(
        script.contains(&format!("ether daddr set {mac} accept")),
        "{script}"
    );
    let egress = &c.table.chains[&format!("egr-{dev}-99")];
    assert_eq!(egress.rules.last().unwrap().text, "drop");
    assert!(egress.rules[0]
        .text
        .contains("ether saddr fa:16:3e:aa:00:01"));
    assert!(egress.rules[0].text.contains("goto h-7-1-f"));
    // Without port security the source is steered where it leaves.
    m.chains[0].classifiers[0].sources[0].port_security = false;
    let c = compile(&m);
    assert!(!c.table.chains.keys().any(|k| k.starts_with("egr-sfs")));
    assert!(c.steering.is_empty());
}

/// A function in no chain is still a function: it gets no flood and puts nothing foreign
/// into its bridge (a bump in the wire would otherwise loop broadcasts).
#[test]
fn idle_function_ports_are_guarded() {
    let mut m = model();
    let mut idle = pair("eeeeeeee", 5, local("tape1in"), local("tape1out"), 1);
    idle.ingress.addresses.push("fd00::1:2:3".parse().unwrap());
    m.ifindex.insert("tape1in".into(), 50);
    m.ifindex.insert("tape1out".into(), 51);
    m.functions = vec![idle];
    let c = compile(&m);
    for (dev, idx) in [("tape1in", 50), ("tape1out", 51)] {
        let ingress = &c.table.chains[&format!("dev-{dev}-{idx}")];
        assert!(ingress
            .rules
            .iter()
            .any(|r| r.text.starts_with("ether saddr !=")));
        let egress = &c.table.chains[&format!("egr-{dev}-{idx}")];
        assert_eq!(egress.rules.last().unwrap().text, "drop");
    }
    let guard = &c.table.chains["egr-tape1in-50"];
    assert!(
        guard
            .rules
            .iter()
            .any(|r| r.text
                == "ether daddr 33:33:ff:02:00:03 icmpv6 type nd-neighbor-solicit accept"),
        "{guard:?}"
    );
    // Only the function: no chain, yet the table exists.
    m.chains.clear();
    let c = compile(&m);
    assert!(c.table.present);
}

/// Every pair with both ports here is probed: probes enter by the probe device, go to the
/// pair's ingress port, and are counted and dropped first thing where they leave it.
#[test]
fn functions_here_are_probed() {
    let mut m = model();
    m.ifindex.insert(probe::DEVICE.into(), 60);
    let c = compile(&m);
    // aaaaaaaa has both ports here; bbbbbbbb and cccccccc are remote.
    m.functions = m.chains[0]
        .groups
        .iter()
        .flat_map(|g| g.pairs.clone())
        .collect();
    let c2 = compile(&m);
    assert!(c.probes.is_empty());
    assert_eq!(c2.probes.len(), 1, "{:?}", c2.probes);
    let p = &c2.probes[0];
    assert_eq!(p.source_port, probe::FIRST_SOURCE_PORT);
    // The chain's logical destination port.
    assert_eq!(p.destination.to_string(), "10.0.0.9");
    let exit = &c2.table.chains["dev-tapa1out-12"];
    assert_eq!(
        exit.rules[0].text,
        format!(
            "udp dport 3784 @th,64,64 0x4e54524e50524245 @th,128,16 0 counter name \"{}\" drop",
            p.key()
        ),
        "{:?}",
        exit.rules
    );
    assert!(c2.table.counters.contains(&p.key()));
    let entry = &c2.table.chains["dev-sfqprobe-60"];
    assert!(entry.rules[0]
        .text
        .starts_with("udp sport & 63 vmap { 0 : jump psend-0, 1 : jump psend-1,"));
    assert_eq!(entry.rules.last().unwrap().text, "drop");
    let send = &c2.table.chains[&probe::send_chain(p.number)];
    assert_eq!(
        send.rules[0].text,
        "udp sport 49152 ether daddr set fa:16:3e:00:01:01 fwd to \"tapa1in\""
    );
    assert!(p.payload().starts_with(b"NTRNPRBE\0\0"));
    // The table gives the assignment back.
    assert_eq!(probe::numbers(&c2.table)[&p.pair], 0);
}

/// Eight probed pairs, each in a chain of its own; `n` more of the same shape.
fn probed_host(n: u8) -> SfcModel {
    let mut m = model();
    m.chains.clear();
    m.ifindex.insert(probe::DEVICE.into(), 60);
    for i in 0..n {
        let id = format!("{:08x}", 0x1000_0000_u32 + u32::from(i) * 0x0100_0000);
        let (tin, tout) = (format!("tp{i}in"), format!("tp{i}out"));
        m.ifindex.insert(tin.clone(), 100 + u32::from(i) * 2);
        m.ifindex.insert(tout.clone(), 101 + u32::from(i) * 2);
        let p = pair(&id, 20 + i, local(&tin), local(&tout), 1);
        let mut chain = model().chains[0].clone();
        chain.id = format!("chain-{i}");
        chain.number = 100 + u32::from(i);
        chain.symmetric = false;
        chain.groups = vec![group(
            &format!("ppg-{i}"),
            10 + u32::from(i),
            vec![p.clone()],
        )];
        m.chains.push(chain);
        m.functions.push(p);
    }
    m
}

/// A pair joining (its id sorting first) or leaving keeps every other pair's probe number,
/// and the transaction touches only the pair's own probe objects: no counter of another
/// pair is flushed or deleted, no probe chain is flushed.
#[test]
fn a_pair_joining_or_leaving_touches_only_its_own_probe() {
    let before_model = probed_host(8);
    let before = compile(&before_model);
    assert_eq!(before.probes.len(), 8);
    let mut m = probed_host(8);
    m.probe_numbers = probe::numbers(&applied(&before.table));
    // A new pair whose id sorts before all the others, in a chain of its own.
    let newcomer = pair("00000001", 90, local("tpnewin"), local("tpnewout"), 1);
    m.ifindex.insert("tpnewin".into(), 300);
    m.ifindex.insert("tpnewout".into(), 301);
    let mut chain = m.chains[0].clone();
    chain.id = "chain-new".into();
    chain.number = 99;
    chain.groups = vec![group("ppg-new", 99, vec![newcomer.clone()])];
    m.chains.push(chain);
    m.functions.push(newcomer.clone());
    let after = compile(&m);
    let number =
        |c: &Compiled, pair: &str| c.probes.iter().find(|p| p.pair == pair).unwrap().number;
    for p in &before.probes {
        assert_eq!(number(&after, &p.pair), p.number, "{} renumbered", p.pair);
    }
    assert_eq!(number(&after, &newcomer.id), 8);
    let script = plan(&after.table, &applied(&before.table)).script();
    for line in script.lines() {
        // (The shared source's dispatch chain gains the new chain's jump, the tunnel's
        // ingress the arrivals for the new function ports.)
        if line.starts_with("flush") || line.starts_with("delete") {
            assert!(
                [
                    "flush chain netdev neutrino_sfc dev-tapsrc-10",
                    "flush chain netdev neutrino_sfc dev-vxlan-100-15"
                ]
                .contains(&line),
                "adding a pair removes nothing of the others: {line}\n{script}"
            );
        }
        if line.contains("probe") || line.contains("psend") {
            assert!(
                line.contains(&newcomer.id) || line.contains("tpnewout"),
                "only the newcomer's probe objects: {line}\n{script}"
            );
        }
    }
    golden("add-probed-pair.nft", &script);
    // And it leaves again: only its own objects go.
    let mut back = probed_host(8);
    back.probe_numbers = probe::numbers(&applied(&after.table));
    let left = compile(&back);
    for p in &before.probes {
        assert_eq!(number(&left, &p.pair), p.number);
    }
    let script = plan(&left.table, &applied(&after.table)).script();
    for line in script
        .lines()
        .filter(|l| l.contains("probe") || l.contains("psend"))
    {
        assert!(
            line.contains(&newcomer.id)
                || line.contains("tpnewout")
                || line == "flush chain netdev neutrino_sfc psend-8",
            "{line}\n{script}"
        );
    }
    assert!(script.contains(&format!(
        "delete counter netdev neutrino_sfc probe-{}",
        newcomer.id
    )));
}

/// A tap group, `lb_fields`, an egress n-tuple mapping, an IPv6 classifier and a service
/// graph successor, all on one host: the whole table, golden.
#[test]
fn tap_lb_fields_mapping_ipv6_and_graph() {
    let mut m = model();
    m.chains[0].symmetric = false;
    // The last function here, so the graph's successors are tried on this host.
    m.chains[0].groups[1].pairs = vec![pair("dddddddd", 4, local("tapd1in"), local("tapd1out"), 1)];
    let tap_pair = pair("tttttttt", 9, local("taptapin"), local("taptapin"), 1);
    m.ifindex.insert("taptapin".into(), 70);
    let mut tap = group("ppg-tap", 3, vec![tap_pair]);
    tap.tap = true;
    m.chains[0].groups.insert(1, tap);
    m.chains[0].groups[0].lb_fields = vec![LbField::IpSrc];
    m.chains[0].groups[0].egress_mapping = NTupleMapping {
        source: Some("10.0.0.250/32".parse().unwrap()),
        ..NTupleMapping::default()
    };
    let mut v6 = m.chains[0].classifiers[0].clone();
    v6.id = "fc-6".into();
    v6.tuple = NTuple {
        family: Family::V6,
        protocol: Some(17),
        source: Some("fd00::/64".parse().unwrap()),
        destination: Some("fd00:1::/64".parse().unwrap()),
        source_ports: None,
        destination_ports: Some((53, 53)),
    };
    v6.destination = None;
    m.chains[0].classifiers.push(v6);
    let mut next = m.chains[0].clone();
    next.id = "chain-2".into();
    next.number = 8;
    next.groups.truncate(1);
    next.classifiers.truncate(1);
    next.classifiers[0].sources.clear();
    m.chains[0].next_chains = vec![8];
    m.chains.push(next);
    let c = compile(&m);
    let script = plan(&c.table, &Table::default()).script();
    golden("tap-lb-mapping-ipv6-graph.nft", &script);
    // The tap copy, the ip_src-only hash, the mapped re-classification, the IPv6 entry and
    // the graph successor are all there.
    for needle in [
        "dup to \"taptapin\"",
        "jhash ip saddr mod 64",
        "ip saddr 10.0.0.250",
        "ip6 daddr fd00:1::/64",
        "goto h-8-1-f",
    ] {
        assert!(script.contains(needle), "{needle} missing:\n{script}");
    }
    assert!(plan(&c.table, &applied(&c.table)).is_empty());
    // The IPv4 mapping leaves the IPv6 classifier alone.
    assert!(!script.contains("ip6 saddr 10.0.0.250"), "{script}");
}

/// The last probed pair leaving: its probe objects go, the send chains after the dispatch
/// rule that jumps to them (nft refuses to delete a chain a rule still names).
#[test]
fn the_last_probe_leaving_removes_the_send_chains_after_their_dispatch() {
    let before = compile(&probed_host(1));
    let mut m = probed_host(1);
    m.chains.clear();
    m.probe_numbers = probe::numbers(&applied(&before.table));
    let after = compile(&m);
    assert!(after.probes.is_empty());
    let script = plan(&after.table, &applied(&before.table)).script();
    let at = |needle: &str| {
        script
            .lines()
            .position(|l| l == needle)
            .unwrap_or_else(|| panic!("no {needle}:\n{script}"))
    };
    assert!(
        at("flush chain netdev neutrino_sfc dev-sfqprobe-60")
            < at("delete chain netdev neutrino_sfc psend-0"),
        "{script}"
    );
    assert!(script.contains(&format!(
        "delete counter netdev neutrino_sfc probe-{}",
        before.probes[0].pair
    )));
}

/// After the last function, a destination without port security gets the frame straight
/// (no bridge, no conntrack): by the chain's logical destination port, or by its address
/// when the classifiers name a prefix. A destination with port security still crosses the
/// bridge (its security group).
#[test]
fn destination_without_port_security_is_delivered_directly() {
    let mut m = model();
    m.chains[0].symmetric = false;
    m.chains[0].groups = vec![group(
        "ppg-a",
        1,
        vec![pair("aaaaaaaa", 1, local("tapa1in"), local("tapa1out"), 1)],
    )];
    // By the logical destination port, here.
    let dst = m.chains[0].classifiers[0].destination.as_mut().unwrap();
    dst.location = local("tapdst");
    dst.port_security = false;
    m.ifindex.insert("tapdst".into(), 80);
    let c = compile(&m);
    let out = &c.table.chains["out-7-f"];
    assert!(
        out.rules
            .iter()
            .any(|r| r.text == "ether daddr set fa:16:3e:bb:00:01 fwd to \"tapdst\""),
        "{out:?}"
    );
    // With port security: the bridge, as before.
    m.chains[0].classifiers[0]
        .destination
        .as_mut()
        .unwrap()
        .port_security = true;
    let c = compile(&m);
    let out = &c.table.chains["out-7-f"];
    assert!(
        out.rules
            .iter()
            .any(|r| r.text == "ether daddr set fa:16:3e:bb:00:01 accept"),
        "{out:?}"
    );
    // By address: the network's map of open ports, one chain per port.
    m.chains[0].classifiers[0].destination = None;
    let net = m.networks.get_mut("net-1").unwrap();
    net.direct.insert(
        "10.0.0.9".parse().unwrap(),
        Delivery {
            port: "dst-port".into(),
            mac: "fa:16:3e:bb:00:01".into(),
            device: "tapdst".into(),
        },
    );
    let c = compile(&m);
    let script = plan(&c.table, &Table::default()).script();
    golden("direct-delivery.nft", &script);
    let out: Vec<&str> = c.table.chains["out-7-f"]
        .rules
        .iter()
        .map(|r| r.text.as_str())
        .collect();
    let direct = out
        .iter()
        .position(|t| *t == "meta protocol ip ip daddr vmap @dir4-net1")
        .expect("the direct map is looked up");
    let bridge = out
        .iter()
        .position(|t| t.contains("map @mac4-net1 accept"))
        .expect("else the bridge");
    assert!(direct < bridge, "{out:?}");
    assert_eq!(
        c.table.sets["dir4-net1"].elements,
        Some(["10.0.0.9 : goto dd-dstport".to_string()].into())
    );
    assert_eq!(
        c.table.chains["dd-dstport"].rules[0].text,
        "ether daddr set fa:16:3e:bb:00:01 fwd to \"tapdst\""
    );
    assert!(plan(&c.table, &applied(&c.table)).is_empty());
}
