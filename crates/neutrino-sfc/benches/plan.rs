//! Benchmark: one chain change on a host with 1,000 chains, planned without I/O.
//!
//!     cargo bench -p neutrino-sfc --bench plan
//!
//! The host (worst case for one host: everything of every chain is plugged here): 10
//! networks, each with 10 source instances (every other one with port security, so it
//! enters through its network's steering port), 5 destination instances and 100 service
//! function instances (two ports each, no port security); 1,000 chains, each with one TCP
//! classifier from one source /32 to its own destination port and one port pair group of
//! one pair (a group is in one chain only, so 1,000 chains mean 1,000 pairs). Every pair is
//! health-probed, as the agent does for pairs with both ports here. One spare pair per
//! network is a function in no chain.
//!
//! Timed (criterion): `compile` of the whole model; `plan` of one change against the
//! table as applied (one chain's group list replaced by the spare group, as `PUT
//! port_chains/{id}` with new `port_pair_groups`; one chain added; nothing changed); and
//! compile + plan together, the pure work of the agent's reconcile per change.
//! `NEUTRINO_SFC_BENCH_CHAINS` changes the number of chains.
//!
//! For the kernel side, `NEUTRINO_SFC_BENCH_SCRIPTS=DIR` writes into DIR: `devices.txt`
//! (the devices the table names, one per line), `full.nft` (the whole table from nothing),
//! `update.nft` / `update-revert.nft` and `add.nft` / `add-revert.nft` (the one-change
//! transactions and their inverses) and `summary.json` (sizes). `scripts/bench-dataplane
//! --only sfc-apply` loads them into a private network namespace and times them; when it
//! has left the kernel's listing of the full table in `DIR/listing.json`, this bench also
//! times parsing it (`observe`), which the agent does at start, after an error and every
//! 60 s.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use criterion::Criterion;
use neutrino_sfc::table::Table;
use neutrino_sfc::{
    compile, observe, plan, probe, steering, Chain, Classifier, Family, Group, Location, NTuple,
    NTupleMapping, NetworkMacs, Pair, Port, SfcModel,
};

const NETWORKS: u32 = 10;
const SOURCES: u32 = 10;
const DESTINATIONS: u32 = 5;

/// A UUID-shaped id whose first 12 hex digits (what nft names use) are `kind` and `n`.
fn id(kind: u32, n: u32) -> String {
    format!(
        "{kind:04x}{:04x}-{:04x}-4000-8000-000000000000",
        n >> 16,
        n & 0xffff
    )
}

/// Network ids differ in their first 11 characters (steering port and bridge names).
fn network_id(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-000000006e65")
}

fn mac(kind: u8, n: u32) -> String {
    let [_, a, b, c] = n.to_be_bytes();
    format!("fa:16:3e:{kind:02x}:{:02x}:{:02x}", a ^ b, c)
}

struct Host {
    model: SfcModel,
    /// Per network: its spare pair (in no chain).
    spares: Vec<Pair>,
    next_ifindex: u32,
}

impl Host {
    fn device(&mut self, name: &str) -> Location {
        self.model
            .ifindex
            .insert(name.to_string(), self.next_ifindex);
        self.next_ifindex += 1;
        Location::Local(name.to_string())
    }

    fn port(&mut self, kind: u8, n: u32, net: u32, tap: &str, ip: IpAddr, secure: bool) -> Port {
        let location = self.device(tap);
        let p = Port {
            id: id(u32::from(kind), n),
            mac: mac(kind, n),
            network: network_id(net),
            location,
            addresses: vec![ip],
            port_security: secure,
            bridge: Some(format!("brq{}", &network_id(net)[..11])),
        };
        self.model
            .networks
            .get_mut(&p.network)
            .unwrap()
            .hosts
            .insert(ip, p.mac.clone());
        p
    }

    fn pair(&mut self, net: u32, k: u32) -> Pair {
        let n = net * 1000 + k;
        let ip = |third: u32| IpAddr::from([10, net as u8, third as u8, 10 + k as u8]);
        let ingress = self.port(0xf1, n, net, &format!("tapf{n:05}i"), ip(3), false);
        let egress = self.port(0xf2, n, net, &format!("tapf{n:05}o"), ip(4), false);
        Pair {
            id: id(0x7070, n),
            ingress,
            egress,
            weight: 1,
            out_of_service: None,
            proxied: None,
        }
    }
}

fn group(number: u32, pair: Pair) -> Group {
    Group {
        id: id(0x6767, number),
        number,
        tap: false,
        lb_fields: Vec::new(),
        egress_mapping: NTupleMapping::default(),
        fail_open: false,
        pairs: vec![pair],
    }
}

/// The host with `chains` chains (see the file's header).
fn host(chains: u32) -> Host {
    let mut h = Host {
        model: SfcModel {
            pin_timeout: 120,
            ..SfcModel::default()
        },
        spares: Vec::new(),
        next_ifindex: 10,
    };
    h.device(probe::DEVICE);
    let per_network = chains.div_ceil(NETWORKS);
    let mut sources = Vec::new();
    let mut destinations = Vec::new();
    let mut pairs = Vec::new();
    for net in 0..NETWORKS {
        let tunnel = format!("vxlan-{}", 100 + net);
        h.device(&tunnel);
        let network = network_id(net);
        h.device(&steering::port_name(&network));
        h.model.networks.insert(
            network.clone(),
            NetworkMacs {
                hosts: BTreeMap::new(),
                gateways: [(format!("10.{net}.0.0/16").parse().unwrap(), mac(0xee, net))].into(),
                tunnel: Some(tunnel),
                direct: BTreeMap::new(),
            },
        );
        let n = |i: u32| net * 1000 + i;
        let ip = |third: u8, i: u32| IpAddr::from([10, net as u8, third, 10 + i as u8]);
        sources.push(
            (0..SOURCES)
                .map(|i| {
                    h.port(
                        0x50,
                        n(i),
                        net,
                        &format!("taps{:05}", n(i)),
                        ip(1, i),
                        i % 2 == 1,
                    )
                })
                .collect::<Vec<_>>(),
        );
        destinations.push(
            (0..DESTINATIONS)
                .map(|i| {
                    h.port(
                        0xd0,
                        n(i),
                        net,
                        &format!("tapd{:05}", n(i)),
                        ip(2, i),
                        false,
                    )
                })
                .collect::<Vec<_>>(),
        );
        pairs.push((0..per_network).map(|k| h.pair(net, k)).collect::<Vec<_>>());
        let spare = h.pair(net, per_network);
        h.spares.push(spare);
    }
    for c in 0..chains {
        let (net, k) = ((c % NETWORKS) as usize, c / NETWORKS);
        let src = sources[net][(k % SOURCES) as usize].clone();
        let dst = destinations[net][(k % DESTINATIONS) as usize].clone();
        let number = c + 1;
        h.model.chains.push(Chain {
            id: id(0x6363, number),
            number,
            symmetric: false,
            groups: vec![group(number, pairs[net][k as usize].clone())],
            classifiers: vec![Classifier {
                id: id(0x6663, number),
                tuple: NTuple {
                    family: Family::V4,
                    protocol: Some(6),
                    source: Some(format!("{}/32", src.addresses[0]).parse().unwrap()),
                    destination: None,
                    source_ports: None,
                    destination_ports: Some((1000 + c as u16, 1000 + c as u16)),
                },
                sources: vec![src],
                destination: Some(dst),
            }],
            next_chains: Vec::new(),
        });
    }
    h.model.functions = pairs.into_iter().flatten().collect();
    h.model.functions.extend(h.spares.iter().cloned());
    h
}

/// What the kernel shows after applying `want` (rule texts and declarations are not read
/// back; the planner compares comments and elements).
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

/// The model after `PUT port_chains/{id}` of the middle chain with the spare group of its
/// network instead of its own.
fn updated(h: &Host) -> SfcModel {
    let mut m = h.model.clone();
    let i = m.chains.len() / 2;
    let net = i % NETWORKS as usize;
    let number = 100_000 + i as u32;
    m.chains[i].groups = vec![group(number, h.spares[net].clone())];
    m
}

/// The model with one more chain (through the spare pair of network 0).
fn added(h: &Host) -> SfcModel {
    let mut m = h.model.clone();
    let mut chain = m.chains[0].clone();
    chain.number = m.chains.len() as u32 + 1;
    chain.id = id(0x6363, chain.number);
    chain.groups = vec![group(200_000, h.spares[0].clone())];
    chain.classifiers[0].id = id(0x6663, chain.number);
    chain.classifiers[0].tuple.destination_ports = Some((999, 999));
    m.chains.push(chain);
    m
}

/// `m` compiled as the agent does: keeping the probe numbers of the table in force.
fn compile_over(m: &SfcModel, in_force: &Table) -> Table {
    let mut m = m.clone();
    m.probe_numbers = probe::numbers(in_force);
    compile(&m).table
}

fn write_scripts(dir: &Path, h: &Host) {
    std::fs::create_dir_all(dir).expect("script directory");
    let before = compile(&h.model).table;
    let update = compile_over(&updated(h), &before);
    let add = compile_over(&added(h), &before);
    let scripts = [
        ("full.nft", plan(&before, &Table::default())),
        ("update.nft", plan(&update, &applied(&before))),
        (
            "update-revert.nft",
            plan(&compile_over(&h.model, &update), &applied(&update)),
        ),
        ("add.nft", plan(&add, &applied(&before))),
        (
            "add-revert.nft",
            plan(&compile_over(&h.model, &add), &applied(&add)),
        ),
    ];
    let mut commands = BTreeMap::new();
    for (name, p) in &scripts {
        std::fs::write(dir.join(name), p.script()).expect("write script");
        commands.insert(*name, p.commands().len());
    }
    let devices: Vec<&str> = h.model.ifindex.keys().map(String::as_str).collect();
    std::fs::write(dir.join("devices.txt"), devices.join("\n") + "\n").expect("devices");
    let rules: usize = before.chains.values().map(|c| c.rules.len()).sum();
    let summary = serde_json::json!({
        "chains": h.model.chains.len(),
        "pairs": h.model.functions.len(),
        "devices": devices.len(),
        "nft_chains": before.chains.len(),
        "nft_rules": rules,
        "nft_sets": before.sets.len(),
        "commands": commands,
    });
    std::fs::write(dir.join("summary.json"), summary.to_string()).expect("summary");
}

fn main() {
    let chains = std::env::var("NEUTRINO_SFC_BENCH_CHAINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let h = host(chains);
    let dir = std::env::var_os("NEUTRINO_SFC_BENCH_SCRIPTS");
    if let Some(dir) = &dir {
        write_scripts(Path::new(dir), &h);
    }
    let before = compile(&h.model).table;
    let have = applied(&before);
    // The agent compiles with the probe numbers of the table in force.
    let mut update = updated(&h);
    update.probe_numbers = probe::numbers(&have);
    let mut add = added(&h);
    add.probe_numbers = probe::numbers(&have);
    let update_table = compile(&update).table;
    // The change is a change, and the table does not get rebuilt for it.
    let p = plan(&update_table, &have);
    assert!(!p.is_empty() && !p.script().contains("delete table"));

    let mut c = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut g = c.benchmark_group(format!("sfc_{chains}_chains"));
    g.bench_function("compile", |b| b.iter(|| compile(black_box(&h.model))));
    g.bench_function("plan_update", |b| {
        b.iter(|| plan(black_box(&update_table), black_box(&have)))
    });
    g.bench_function("plan_unchanged", |b| {
        b.iter(|| plan(black_box(&before), black_box(&have)))
    });
    g.bench_function("compile_plan_update", |b| {
        b.iter(|| plan(&compile(black_box(&update)).table, black_box(&have)))
    });
    g.bench_function("compile_plan_add", |b| {
        b.iter(|| plan(&compile(black_box(&add)).table, black_box(&have)))
    });
    if let Some(listing) = dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(Path::new(d).join("listing.json")).ok())
    {
        g.bench_function("observe_listing", |b| {
            b.iter(|| observe(black_box(&listing)).expect("listing"))
        });
    }

    g.finish();
    c.final_summary();
}
