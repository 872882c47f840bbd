//! The model of one host compiled into the desired steering table.
//!
//! Per chain `C` (its `chain_id`) and non-tap group `G` (its `group_id`), with `d` = `f`
//! (forward) or `r` (reverse, symmetric chains):
//!
//! ```text
//! dev-<ifname>-<idx>  base chain (ingress) of a tap or VXLAN device (idx: its interface
//!                     index, so a re-created device gets a new hook): jump cls-C-<ifname>
//!                     per chain entered there; function ports then drop frames they
//!                     forward with a foreign source MAC (never into the bridge)
//! egr-<ifname>-<idx>  base chain (egress) of a function port: only frames for its MAC,
//!                     ARP requests and IPv6 neighbour solicitations for its addresses
//!                     reach the function (no floods
//!                     through it: a broadcast it forwarded would come back around)
//! cls-C-<ifname>      the classifiers of C at that device: n-tuple → goto the next step
//!                     (from a port with port security: set the steering MAC and accept,
//!                     so the frame crosses the bridge, its security group and conntrack)
//! egr-sfs<net>-<idx>  base chain (egress) of a network's steering port: the same
//!                     classifiers, by source MAC, → goto the first step; else drop
//! h-C-G-d             choose an instance: pinned flow → its pair, else jhash of the
//!                     group's lb_fields into 64 weighted buckets; nothing usable → drop
//!                     (or, with fail_open, on to the next step)
//! m-C-G-P-d           pin the flow (dynamic set pinN-C-G-P), count (named counter of the
//!                     same name), rewrite the destination MAC and fwd to the pair's port
//!                     (tap or VXLAN device)
//! tap-C-G / tm-C-G-P  tap groups: a copy (dup) to one tap instance, the original goes on
//! out-C-d             after the last hop: service-graph successors, else set the source
//!                     MAC to the last function port's and deliver: a destination without
//!                     port security straight (fwd to its tap or the VXLAN device; by the
//!                     chain's logical destination port, else its address in dirN-<network>
//!                     → dd-<port>); else restore the destination MAC (macN-<network> map /
//!                     gateway) and hand the frame to the bridge (its security group)
//! dev-sfqprobe-<idx>  health probes: `udp sport & 63` → psend-<0..63>, one rule per pair
//!                     (set the ingress port's MAC, fwd to its tap); where they leave the
//!                     function, the egress tap's dev chain counts them in the named
//!                     counter probe-<pair> (by the number in the payload) and drops them
//! ```
//!
//! Everything that counts uses a named counter (`m-…`, `tm-…`, `h-…`, `probe-…`): the agent
//! reads them all with one small listing, and a chain rewritten for another reason keeps its
//! counts.
//!
//! A step is entered by `goto`: the first (classifier at the source port, or the reverse
//! classifier at the logical destination port) and each re-classification at a function's
//! exit (its egress port forward, its ingress port in reverse) name the next step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::{Chain, Classifier, Family, Group, LbField, NTuple, Pair, Port, SfcModel};
use crate::probe::{self, Probe};
use crate::steering::{self, SteeringPort};
use crate::table::{digest, Chain as NftChain, Hook, Rule, Set, Table};

/// Buckets of a group's hash.
pub const BUCKETS: usize = 64;

/// Direction of traffic through a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Source → destination.
    Forward,
    /// Replies of a symmetric chain.
    Reverse,
    /// Copies to a tap group.
    Tap,
}

impl Direction {
    fn tag(self) -> &'static str {
        match self {
            Direction::Forward => "f",
            Direction::Reverse => "r",
            Direction::Tap => "t",
        }
    }

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
            Direction::Tap => "tap",
        }
    }
}

/// What a counting nft chain stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counted {
    /// Packets sent to one instance of a group.
    Hop {
        /// Chain id.
        chain: String,
        /// Group id.
        group: String,
        /// Port pair id.
        pair: String,
        /// Direction.
        direction: Direction,
    },
    /// Packets a group dropped because no instance could take them.
    Dropped {
        /// Chain id.
        chain: String,
    },
}

/// The compiled table and where its counters are.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// Desired table.
    pub table: Table,
    /// nft chain name → what its counting rule measures.
    pub counters: BTreeMap<String, Counted>,
    /// Port pairs that take no traffic from here, with the reason.
    pub out_of_service: BTreeMap<String, String>,
    /// Steering ports the table needs (by device name); see [`crate::steering`].
    pub steering: BTreeMap<String, SteeringPort>,
    /// Health probes to send (pairs with both ports here); see [`crate::probe`].
    pub probes: Vec<Probe>,
    /// A chain steered here has a function or a source on another host: a change must be
    /// applied in two steps (see [`crate::transition`]); otherwise one is enough.
    pub spans_hosts: bool,
}

/// Short, stable name part of a UUID.
fn short(id: &str) -> String {
    id.chars().filter(|c| *c != '-').take(12).collect()
}

/// Compiles the model of one host.
pub fn compile(model: &SfcModel) -> Compiled {
    let mut c = Compiler {
        model,
        out: Compiled::default(),
        devices: BTreeMap::new(),
        function_ports: BTreeMap::new(),
        steered: BTreeMap::new(),
        probe_exits: BTreeMap::new(),
    };
    let mut chains: Vec<&Chain> = model.chains.iter().collect();
    chains.sort_by_key(|ch| ch.number);
    let active = active_chains(&chains);
    for chain in &chains {
        if active.contains(&chain.number) {
            c.chain(chain);
        }
    }
    for pair in &model.functions {
        c.note_function_port(&pair.ingress);
        c.note_function_port(&pair.egress);
    }
    c.probes();
    c.finish();
    c.out
}

/// Chains with something on this host, and the service-graph successors of those.
fn active_chains(chains: &[&Chain]) -> BTreeSet<u32> {
    let mut active: BTreeSet<u32> = chains
        .iter()
        .filter(|ch| touches_host(ch))
        .map(|ch| ch.number)
        .collect();
    loop {
        let more: Vec<u32> = chains
            .iter()
            .filter(|ch| active.contains(&ch.number))
            .flat_map(|ch| ch.next_chains.iter().copied())
            .filter(|n| !active.contains(n))
            .collect();
        if more.is_empty() {
            return active;
        }
        active.extend(more);
    }
}

fn touches_host(chain: &Chain) -> bool {
    let local = |p: &Port| p.local_tap().is_some();
    chain
        .classifiers
        .iter()
        .any(|fc| fc.sources.iter().any(local) || fc.destination.as_ref().is_some_and(local))
        || chain
            .groups
            .iter()
            .flat_map(|g| &g.pairs)
            .any(|p| local(&p.ingress) || local(&p.egress))
}

struct Compiler<'a> {
    model: &'a SfcModel,
    out: Compiled,
    /// Ingress dispatch per device: rules (ordered by chain).
    devices: BTreeMap<String, Vec<Rule>>,
    /// Local function ports: tap → (MAC, network, addresses).
    function_ports: BTreeMap<String, (String, String, Vec<IpAddr>)>,
    /// Egress rules of steering ports (by device): the second classification.
    steered: BTreeMap<String, Vec<Rule>>,
    /// Exit taps of probed pairs and their counting rules: probes are caught there first.
    probe_exits: BTreeMap<String, Vec<Rule>>,
}

/// Hash and pin layout of one group for one IP family.
struct Key {
    /// Forward expressions.
    fields: Vec<&'static str>,
    /// The same fields seen from the other end.
    swapped: Vec<&'static str>,
    /// nft types.
    types: Vec<&'static str>,
    /// Hash fields of packets without transport ports (when `fields` has ports).
    portless: Option<(Vec<&'static str>, Vec<&'static str>)>,
}

fn field(f: LbField, fam: Family) -> (&'static str, &'static str) {
    match (f, fam) {
        (LbField::EthSrc, _) => ("ether saddr", "ether_addr"),
        (LbField::EthDst, _) => ("ether daddr", "ether_addr"),
        (LbField::IpSrc, Family::V4) => ("ip saddr", "ipv4_addr"),
        (LbField::IpDst, Family::V4) => ("ip daddr", "ipv4_addr"),
        (LbField::IpSrc, Family::V6) => ("ip6 saddr", "ipv6_addr"),
        (LbField::IpDst, Family::V6) => ("ip6 daddr", "ipv6_addr"),
        (LbField::IpProto, _) => ("meta l4proto", "inet_proto"),
        (LbField::SrcPort, _) => ("th sport", "inet_service"),
        (LbField::DstPort, _) => ("th dport", "inet_service"),
    }
}

fn key(group: &Group, fam: Family) -> Key {
    let fields = if group.lb_fields.is_empty() {
        LbField::five_tuple()
    } else {
        group.lb_fields.clone()
    };
    let has_ports = fields
        .iter()
        .any(|f| matches!(f, LbField::SrcPort | LbField::DstPort));
    let portless = has_ports.then(|| {
        let rest: Vec<LbField> = fields
            .iter()
            .copied()
            .filter(|f| !matches!(f, LbField::SrcPort | LbField::DstPort))
            .collect();
        let rest = if rest.is_empty() {
            vec![LbField::IpProto]
        } else {
            rest
        };
        (
            rest.iter().map(|f| field(*f, fam).0).collect(),
            rest.iter().map(|f| field(f.swapped(), fam).0).collect(),
        )
    });
    Key {
        fields: fields.iter().map(|f| field(*f, fam).0).collect(),
        swapped: fields.iter().map(|f| field(f.swapped(), fam).0).collect(),
        types: fields.iter().map(|f| field(*f, fam).1).collect(),
        portless,
    }
}

/// Spreads [`BUCKETS`] over members by weight, in contiguous ranges (members with weight 0
/// get none unless all are 0): the member of each bucket.
pub fn buckets(weights: &[u32]) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let all_zero = weights.iter().all(|w| *w == 0);
    let w: Vec<u64> = weights
        .iter()
        .map(|x| if all_zero { 1 } else { u64::from(*x) })
        .collect();
    let total: u64 = w.iter().sum();
    let n = BUCKETS as u64;
    // Largest remainder.
    let mut counts: Vec<u64> = w.iter().map(|x| x * n / total).collect();
    let mut rest: Vec<(u64, usize)> = w
        .iter()
        .enumerate()
        .map(|(i, x)| (x * n % total, i))
        .collect();
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let short = n - counts.iter().sum::<u64>();
    for (_, i) in rest.iter().take(short as usize) {
        counts[*i] += 1;
    }
    counts
        .iter()
        .enumerate()
        .flat_map(|(i, c)| std::iter::repeat_n(i, *c as usize))
        .collect()
}

/// nft text of an n-tuple match (the family's protocol first).
fn tuple_match(t: &NTuple) -> String {
    let k = t.family.keyword();
    let mut parts = vec![format!("meta protocol {k}")];
    if let Some(p) = t.source {
        parts.push(format!("{k} saddr {p}"));
    }
    if let Some(p) = t.destination {
        parts.push(format!("{k} daddr {p}"));
    }
    if let Some(proto) = t.protocol {
        parts.push(format!("meta l4proto {proto}"));
    }
    let range = |(a, b): (u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    if let Some(r) = t.source_ports {
        parts.push(format!("th sport {}", range(r)));
    }
    if let Some(r) = t.destination_ports {
        parts.push(format!("th dport {}", range(r)));
    }
    parts.join(" ")
}

fn addr_set(addrs: &[&IpAddr]) -> String {
    if addrs.len() == 1 {
        addrs[0].to_string()
    } else {
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        format!("{{ {} }}", list.join(", "))
    }
}

/// What a port may send from: its MAC and, without a classifier prefix, its addresses.
fn source_guard(port: &Port, fam: Family, field: &str) -> String {
    if !port.port_security {
        return String::new();
    }
    let addrs: Vec<&IpAddr> = port
        .addresses
        .iter()
        .filter(|a| Family::of(a) == fam)
        .collect();
    let mut s = format!(" ether saddr {}", port.mac);
    if !addrs.is_empty() {
        s.push_str(&format!(" {} {field} {}", fam.keyword(), addr_set(&addrs)));
    }
    s
}

fn destination_addrs(fc: &Classifier, fam: Family, field: &str) -> String {
    let Some(dst) = &fc.destination else {
        return String::new();
    };
    if fc.tuple.destination.is_some() {
        return String::new();
    }
    let addrs: Vec<&IpAddr> = dst
        .addresses
        .iter()
        .filter(|a| Family::of(a) == fam)
        .collect();
    if addrs.is_empty() {
        String::new()
    } else {
        format!(" {} {field} {}", fam.keyword(), addr_set(&addrs))
    }
}

impl Compiler<'_> {
    /// The salt of a rule that sends to `dev`.
    fn salt(&self, dev: &str) -> String {
        format!("@{}", self.model.ifindex.get(dev).copied().unwrap_or(0))
    }

    /// Name of a base chain on `dev` (with its interface index).
    fn base_name(&self, kind: &str, dev: &str) -> String {
        format!(
            "{kind}-{dev}-{}",
            self.model.ifindex.get(dev).copied().unwrap_or(0)
        )
    }

    fn chain_named(&mut self, name: String, rules: Vec<Rule>) {
        self.out
            .table
            .chains
            .insert(name, NftChain { hook: None, rules });
    }

    fn dispatch(&mut self, dev: &str, cid: u32, rule: Rule) {
        let cls = format!("cls-{cid}-{dev}");
        let rules = self.devices.entry(dev.to_string()).or_default();
        let jump = Rule::new(&format!("c{cid}"), format!("jump {cls}"));
        if !rules.contains(&jump) {
            rules.push(jump);
        }
        self.out
            .table
            .chains
            .entry(cls)
            .or_default()
            .rules
            .push(rule);
    }

    /// Entry into a chain for frames from `src` (plugged at `tap`) that match `what`: straight
    /// to `target`, or, for a port with port security, across the bridge to the steering port
    /// first (see [`crate::steering`]).
    fn enter(&mut self, src: &Port, tap: &str, cid: u32, key: &str, what: String, target: &str) {
        let detour = src
            .bridge
            .as_ref()
            .filter(|_| src.port_security && target.starts_with("h-"));
        if let Some(bridge) = detour {
            let dev = steering::port_name(&src.network);
            let mac = steering::mac(&src.network);
            self.out.steering.insert(
                dev.clone(),
                SteeringPort {
                    bridge: bridge.clone(),
                    mac: mac.clone(),
                },
            );
            // Until the steering port exists, frames go straight to the function.
            if self.model.ifindex.contains_key(&dev) {
                let rule = Rule::new(key, format!("{what} ether daddr set {mac} accept"));
                self.dispatch(tap, cid, rule);
                self.steered.entry(dev).or_default().push(Rule::new(
                    &format!("{key}-{}", short(&src.id)),
                    format!("{what} goto {target}"),
                ));
                return;
            }
        }
        self.dispatch(tap, cid, Rule::new(key, format!("{what} goto {target}")));
    }

    fn note_function_port(&mut self, port: &Port) {
        if let Some(tap) = port.local_tap() {
            let addrs = port.addresses.to_vec();
            self.function_ports.insert(
                tap.to_string(),
                (port.mac.clone(), port.network.clone(), addrs),
            );
        }
    }

    fn chain(&mut self, chain: &Chain) {
        let cid = chain.number;
        let families: BTreeSet<Family> = chain.classifiers.iter().map(|f| f.tuple.family).collect();
        if families.is_empty() {
            return;
        }
        let elsewhere = |p: &Port| p.local_tap().is_none();
        self.out.spans_hosts |= chain
            .classifiers
            .iter()
            .flat_map(|f| &f.sources)
            .any(elsewhere)
            || chain
                .groups
                .iter()
                .flat_map(|g| &g.pairs)
                .any(|p| elsewhere(&p.ingress) || elsewhere(&p.egress));
        for g in &chain.groups {
            for p in &g.pairs {
                if let Some(why) = self.pair_problem(p) {
                    self.out.out_of_service.insert(p.id.clone(), why);
                }
                self.note_function_port(&p.ingress);
                self.note_function_port(&p.egress);
            }
        }
        let hops: Vec<&Group> = chain.groups.iter().filter(|g| !g.tap).collect();
        // Tap groups before hop k (k = hops.len(): after the last).
        let mut taps: Vec<Vec<&Group>> = vec![Vec::new(); hops.len() + 1];
        let mut k = 0;
        for g in &chain.groups {
            if g.tap {
                taps[k].push(g);
            } else {
                k += 1;
            }
        }
        let step = |k: usize, d: Direction| -> String {
            match (d, k < hops.len()) {
                (Direction::Forward, true) => format!("h-{cid}-{}-f", hops[k].number),
                (_, _) if d == Direction::Forward => format!("out-{cid}-f"),
                _ => format!("h-{cid}-{}-r", hops[k].number),
            }
        };
        // Instance choice and delivery per hop.
        for (k, g) in hops.iter().enumerate() {
            let next_f = step(k + 1, Direction::Forward);
            let tap_jumps = self.taps(chain, &taps[k], &families);
            self.hop(chain, g, Direction::Forward, &families, tap_jumps, &next_f);
            if chain.symmetric {
                let prev_r = if k == 0 {
                    format!("out-{cid}-r")
                } else {
                    step(k - 1, Direction::Reverse)
                };
                self.hop(chain, g, Direction::Reverse, &families, Vec::new(), &prev_r);
            }
        }
        // Final delivery.
        let tap_jumps = self.taps(chain, &taps[hops.len()], &families);
        let last_exit = hops
            .last()
            .map(|g| g.pairs.iter().map(|p| &p.egress).collect::<Vec<_>>());
        self.out_chain(
            chain,
            Direction::Forward,
            tap_jumps,
            last_exit.as_deref(),
            &families,
        );
        if chain.symmetric && !hops.is_empty() {
            let first_exit: Vec<&Port> = hops[0].pairs.iter().map(|p| &p.ingress).collect();
            self.out_chain(
                chain,
                Direction::Reverse,
                Vec::new(),
                Some(&first_exit),
                &families,
            );
        }
        // Entry: classifiers at their source ports (and, reversed, at the destination port).
        let first_f = step(0, Direction::Forward);
        for (i, fc) in chain.classifiers.iter().enumerate() {
            let fam = fc.tuple.family;
            let m = tuple_match(&fc.tuple);
            let dst = destination_addrs(fc, fam, "daddr");
            for src in &fc.sources {
                let Some(tap) = src.local_tap() else { continue };
                let guard = source_guard(src, fam, "saddr");
                let key = format!("fc{}-{i}", short(&fc.id));
                self.enter(src, tap, cid, &key, format!("{m}{guard}{dst}"), &first_f);
            }
            if chain.symmetric && !hops.is_empty() {
                if let Some(dport) = &fc.destination {
                    if let Some(tap) = dport.local_tap() {
                        let rm = tuple_match(&fc.tuple.reversed());
                        let guard = source_guard(dport, fam, "saddr");
                        let back = destination_addrs(fc, fam, "saddr");
                        let key = format!("rfc{}-{i}", short(&fc.id));
                        let first_r = step(hops.len() - 1, Direction::Reverse);
                        self.enter(
                            dport,
                            tap,
                            cid,
                            &key,
                            format!("{rm}{guard}{back}"),
                            &first_r,
                        );
                    }
                }
            }
        }
        // Re-classification where traffic leaves a function.
        for (k, g) in hops.iter().enumerate() {
            let next_f = step(k + 1, Direction::Forward);
            for p in &g.pairs {
                let Some(tap) = p.egress.local_tap() else {
                    continue;
                };
                for (i, fc) in chain.classifiers.iter().enumerate() {
                    let t = g.egress_mapping.apply(&fc.tuple);
                    let dst = destination_addrs(fc, t.family, "daddr");
                    let rule = Rule::new(
                        &format!("g{}-fc{}-{i}", g.number, short(&fc.id)),
                        format!("{}{dst} goto {next_f}", tuple_match(&t)),
                    );
                    self.dispatch(tap, cid, rule);
                }
            }
            if chain.symmetric {
                let prev_r = if k == 0 {
                    format!("out-{cid}-r")
                } else {
                    step(k - 1, Direction::Reverse)
                };
                for p in &g.pairs {
                    let Some(tap) = p.ingress.local_tap() else {
                        continue;
                    };
                    for (i, fc) in chain.classifiers.iter().enumerate() {
                        let t = fc.tuple.reversed();
                        let back = destination_addrs(fc, t.family, "saddr");
                        let rule = Rule::new(
                            &format!("rg{}-fc{}-{i}", g.number, short(&fc.id)),
                            format!("{}{back} goto {prev_r}", tuple_match(&t)),
                        );
                        self.dispatch(tap, cid, rule);
                    }
                }
            }
        }
    }

    fn pair_problem(&self, p: &Pair) -> Option<String> {
        if let Some(why) = &p.out_of_service {
            return Some(why.clone());
        }
        if p.ingress.egress_device().is_none() || p.egress.egress_device().is_none() {
            return Some("a port of the pair is not reachable from this host".into());
        }
        None
    }

    /// `jump` rules into the tap groups of one transition (their chains are created here).
    fn taps(&mut self, chain: &Chain, groups: &[&Group], families: &BTreeSet<Family>) -> Vec<Rule> {
        let cid = chain.number;
        let mut jumps = Vec::new();
        for g in groups {
            let usable: Vec<&Pair> = g.pairs.iter().filter(|p| p.usable()).collect();
            if usable.is_empty() {
                continue;
            }
            let gid = g.number;
            let mut targets = Vec::new();
            for p in &usable {
                let name = format!("tm-{cid}-{gid}-{}", short(&p.id));
                let dev = p.ingress.egress_device().unwrap_or_default();
                let rule = Rule::salted(
                    "copy",
                    format!(
                        "counter name \"{name}\" ether daddr set {} dup to \"{dev}\"",
                        p.ingress.mac
                    ),
                    &self.salt(dev),
                );
                self.chain_named(name.clone(), vec![rule]);
                self.out.table.counters.insert(name.clone());
                self.out.counters.insert(
                    name.clone(),
                    Counted::Hop {
                        chain: chain.id.clone(),
                        group: g.id.clone(),
                        pair: p.id.clone(),
                        direction: Direction::Tap,
                    },
                );
                targets.push(name);
            }
            let name = format!("tap-{cid}-{gid}");
            let mut rules = Vec::new();
            if targets.len() == 1 {
                rules.push(Rule::new("one", format!("goto {}", targets[0])));
            } else {
                let weights: Vec<u32> = usable.iter().map(|p| p.weight).collect();
                let spread = buckets(&weights);
                for fam in families {
                    let k = key(g, *fam);
                    let vmap = bucket_vmap(&spread, &targets);
                    let seed = digest(&format!("sfc-{gid}"));
                    if let Some((portless, _)) = &k.portless {
                        rules.push(Rule::new(
                            &format!("hash{}", fam.keyword()),
                            format!(
                                "meta protocol {} meta l4proto {{ tcp, udp, sctp }} jhash {} mod {BUCKETS} seed 0x{seed:08x} vmap {vmap}",
                                fam.keyword(),
                                k.fields.join(" . ")
                            ),
                        ));
                        rules.push(Rule::new(
                            &format!("hashx{}", fam.keyword()),
                            format!(
                                "meta protocol {} jhash {} mod {BUCKETS} seed 0x{seed:08x} vmap {vmap}",
                                fam.keyword(),
                                portless.join(" . ")
                            ),
                        ));
                    } else {
                        rules.push(Rule::new(
                            &format!("hash{}", fam.keyword()),
                            format!(
                                "meta protocol {} jhash {} mod {BUCKETS} seed 0x{seed:08x} vmap {vmap}",
                                fam.keyword(),
                                k.fields.join(" . ")
                            ),
                        ));
                    }
                }
            }
            self.chain_named(name.clone(), rules);
            jumps.push(Rule::new(&format!("tap{gid}"), format!("jump {name}")));
        }
        jumps
    }

    /// `h-C-G-d` and the member chains of one hop.
    fn hop(
        &mut self,
        chain: &Chain,
        g: &Group,
        d: Direction,
        families: &BTreeSet<Family>,
        mut rules: Vec<Rule>,
        skip_to: &str,
    ) {
        let (cid, gid) = (chain.number, g.number);
        let tag = d.tag();
        let usable: Vec<&Pair> = g.pairs.iter().filter(|p| p.usable()).collect();
        let mut members = Vec::new();
        for p in &usable {
            let pp = short(&p.id);
            let name = format!("m-{cid}-{gid}-{pp}-{tag}");
            let (port, _) = match d {
                Direction::Reverse => (&p.egress, &p.ingress),
                _ => (&p.ingress, &p.egress),
            };
            let dev = port.egress_device().unwrap_or_default();
            let mut mrules = Vec::new();
            for fam in families {
                let k = key(g, *fam);
                let set = pin_set(cid, gid, &pp, *fam, &k);
                let expr = if d == Direction::Reverse {
                    &k.swapped
                } else {
                    &k.fields
                };
                let guard = if k.portless.is_some() {
                    " meta l4proto { tcp, udp, sctp }"
                } else {
                    ""
                };
                mrules.push(Rule::new(
                    &format!("pin{}", fam.keyword()),
                    format!(
                        "meta protocol {}{guard} update @{set} {{ {} }}",
                        fam.keyword(),
                        expr.join(" . ")
                    ),
                ));
                self.out.table.sets.insert(
                    set,
                    Set {
                        map: false,
                        decl: format!(
                            "type {}; flags dynamic,timeout; timeout {}s; size 65536;",
                            k.types.join(" . "),
                            self.model.pin_timeout.max(1)
                        ),
                        elements: None,
                    },
                );
            }
            mrules.push(Rule::salted(
                "deliver",
                format!(
                    "counter name \"{name}\" ether daddr set {} fwd to \"{dev}\"",
                    port.mac
                ),
                &self.salt(dev),
            ));
            self.chain_named(name.clone(), mrules);
            self.out.table.counters.insert(name.clone());
            self.out.counters.insert(
                name.clone(),
                Counted::Hop {
                    chain: chain.id.clone(),
                    group: g.id.clone(),
                    pair: p.id.clone(),
                    direction: d,
                },
            );
            members.push((pp, name));
        }
        let seed = digest(&format!("sfc-{gid}"));
        for fam in families {
            let k = key(g, *fam);
            let fw = fam.keyword();
            let (expr, portless) = match d {
                Direction::Reverse => (&k.swapped, k.portless.as_ref().map(|p| &p.1)),
                _ => (&k.fields, k.portless.as_ref().map(|p| &p.0)),
            };
            let guard = if portless.is_some() {
                " meta l4proto { tcp, udp, sctp }"
            } else {
                ""
            };
            for (pp, target) in &members {
                rules.push(Rule::new(
                    &format!("pinned{fw}-{pp}"),
                    format!(
                        "meta protocol {fw}{guard} {} @{} goto {target}",
                        expr.join(" . "),
                        pin_set(cid, gid, pp, *fam, &k)
                    ),
                ));
            }
            if members.is_empty() {
                continue;
            }
            let weights: Vec<u32> = usable.iter().map(|p| p.weight).collect();
            let targets: Vec<String> = members.iter().map(|m| m.1.clone()).collect();
            let vmap = bucket_vmap(&buckets(&weights), &targets);
            rules.push(Rule::new(
                &format!("hash{fw}"),
                format!(
                    "meta protocol {fw}{guard} jhash {} mod {BUCKETS} seed 0x{seed:08x} vmap {vmap}",
                    expr.join(" . ")
                ),
            ));
            if let Some(rest) = portless {
                rules.push(Rule::new(
                    &format!("hashx{fw}"),
                    format!(
                        "meta protocol {fw} jhash {} mod {BUCKETS} seed 0x{seed:08x} vmap {vmap}",
                        rest.join(" . ")
                    ),
                ));
            }
        }
        if g.fail_open {
            rules.push(Rule::new("open", format!("goto {skip_to}")));
        } else {
            let name = format!("h-{cid}-{gid}-{tag}");
            rules.push(Rule::new("closed", format!("counter name \"{name}\" drop")));
            self.out.table.counters.insert(name);
            self.out.counters.insert(
                format!("h-{cid}-{gid}-{tag}"),
                Counted::Dropped {
                    chain: chain.id.clone(),
                },
            );
        }
        self.chain_named(format!("h-{cid}-{gid}-{tag}"), rules);
    }

    /// `out-C-d`: service-graph successors, then the frame goes to the bridge with the
    /// destination MAC its receiver expects.
    fn out_chain(
        &mut self,
        chain: &Chain,
        d: Direction,
        mut rules: Vec<Rule>,
        exits: Option<&[&Port]>,
        families: &BTreeSet<Family>,
    ) {
        let cid = chain.number;
        if d == Direction::Forward {
            for next in &chain.next_chains {
                let Some(nc) = self.model.chains.iter().find(|c| c.number == *next) else {
                    continue;
                };
                let target = nc
                    .groups
                    .iter()
                    .find(|g| !g.tap)
                    .map_or(format!("out-{next}-f"), |g| {
                        format!("h-{next}-{}-f", g.number)
                    });
                for (i, fc) in nc.classifiers.iter().enumerate() {
                    let dst = destination_addrs(fc, fc.tuple.family, "daddr");
                    rules.push(Rule::new(
                        &format!("graph{next}-{i}"),
                        format!("{}{dst} goto {target}", tuple_match(&fc.tuple)),
                    ));
                }
            }
        }
        let Some(exits) = exits else {
            // No function: the frame goes on unchanged.
            rules.push(Rule::new("pass", "accept"));
            self.chain_named(format!("out-{cid}-f"), rules);
            return;
        };
        let local: Vec<&&Port> = exits.iter().filter(|p| p.local_tap().is_some()).collect();
        let Some(exit) = local.first() else {
            // The last functions are elsewhere: nothing arrives here.
            self.chain_named(
                format!("out-{cid}-{}", d.tag()),
                vec![Rule::new("none", "drop")],
            );
            return;
        };
        // Every exit port of the group is on one network in practice; the source MAC is
        // set per exit port so that the bridge learns nothing wrong.
        let src_mac = |rules: &mut Vec<Rule>| {
            let list: Vec<String> = local
                .iter()
                .map(|p| format!("\"{}\" : {}", p.local_tap().unwrap_or_default(), p.mac))
                .collect();
            rules.push(Rule::new(
                "smac",
                format!("ether saddr set iifname map {{ {} }}", list.join(", ")),
            ));
        };
        rules.push(Rule::new("delivered", "counter"));
        src_mac(&mut rules);
        let known_dst = match d {
            Direction::Forward => {
                let dsts: BTreeSet<&str> = chain
                    .classifiers
                    .iter()
                    .filter_map(|fc| fc.destination.as_ref().map(|p| p.mac.as_str()))
                    .collect();
                let all = chain.classifiers.iter().all(|fc| fc.destination.is_some());
                (all && dsts.len() == 1).then(|| dsts.into_iter().next().unwrap_or_default())
            }
            Direction::Reverse | Direction::Tap => None,
        };
        let direct_dst = known_dst.and_then(|_| {
            let dst = chain.classifiers.first()?.destination.as_ref()?;
            Some((dst.mac.clone(), dst.egress_device()?.to_string())).filter(|_| !dst.port_security)
        });
        if let Some((mac, dev)) = direct_dst {
            // No security group to apply: straight to the destination, no bridge.
            rules.push(Rule::salted(
                "direct",
                format!("ether daddr set {mac} fwd to \"{dev}\""),
                &self.salt(&dev),
            ));
        } else if let Some(mac) = known_dst {
            rules.push(Rule::new("dmac", format!("ether daddr set {mac} accept")));
        } else {
            let net = &exit.network;
            let macs = self.model.networks.get(net).cloned().unwrap_or_default();
            for fam in families {
                // Destinations without port security first: straight to them.
                let name = direct_map(net, *fam);
                let kw = fam.keyword();
                let mut elements = BTreeSet::new();
                for (ip, to) in macs.direct.iter().filter(|(ip, _)| Family::of(ip) == *fam) {
                    let target = format!("dd-{}", short(&to.port));
                    elements.insert(format!("{ip} : goto {target}"));
                    let rule = Rule::salted(
                        "direct",
                        format!("ether daddr set {} fwd to \"{}\"", to.mac, to.device),
                        &self.salt(&to.device),
                    );
                    self.chain_named(target, vec![rule]);
                }
                self.out.table.sets.insert(
                    name.clone(),
                    Set {
                        map: true,
                        decl: format!("type {} : verdict;", fam.addr_type()),
                        elements: Some(elements),
                    },
                );
                rules.push(Rule::new(
                    &format!("direct{kw}"),
                    format!("meta protocol {kw} {kw} daddr vmap @{name}"),
                ));
            }
            for fam in families {
                let name = mac_map(net, *fam);
                let kw = fam.keyword();
                let elements: BTreeSet<String> = macs
                    .hosts
                    .iter()
                    .filter(|(ip, _)| Family::of(ip) == *fam)
                    .map(|(ip, mac)| format!("{ip} : {mac}"))
                    .collect();
                self.out.table.sets.insert(
                    name.clone(),
                    Set {
                        map: true,
                        decl: format!("type {} : ether_addr;", fam.addr_type()),
                        elements: Some(elements),
                    },
                );
                // A lookup that finds nothing ends the rule: the next one is tried.
                rules.push(Rule::new(
                    &format!("dmac{kw}"),
                    format!("meta protocol {kw} ether daddr set {kw} daddr map @{name} accept"),
                ));
                for (subnet, mac) in &macs.gateways {
                    let sub_fam = match subnet {
                        ipnet::IpNet::V4(_) => Family::V4,
                        ipnet::IpNet::V6(_) => Family::V6,
                    };
                    if sub_fam == *fam {
                        rules.push(Rule::new(
                            &format!("gw-{subnet}"),
                            format!("meta protocol {kw} {kw} saddr {subnet} ether daddr set {mac} accept"),
                        ));
                    }
                }
            }
            rules.push(Rule::new("asis", "accept"));
        }
        self.chain_named(format!("out-{cid}-{}", d.tag()), rules);
    }

    /// Health probes of the pairs with both ports here (see [`crate::probe`]): each keeps
    /// the number it had ([`SfcModel::probe_numbers`]), so another pair joining or leaving
    /// touches none of its objects.
    fn probes(&mut self) {
        let mut pairs: Vec<(&Pair, IpAddr)> = self
            .model
            .functions
            .iter()
            .filter(|p| p.ingress.local_tap().is_some() && p.egress.local_tap().is_some())
            // A pair in no chain has nowhere meaningful to send to: carrier only.
            .filter_map(|p| Some((p, self.probe_destination(&p.id)?)))
            .collect();
        pairs.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let numbers = probe::assign(
            pairs.iter().map(|(p, _)| p.id.as_str()),
            &self.model.probe_numbers,
        );
        let mut sending: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        for (p, destination) in pairs {
            let Some(number) = numbers.get(&p.id).copied() else {
                continue;
            };
            let source_port = probe::FIRST_SOURCE_PORT + number;
            let source = match destination {
                IpAddr::V4(_) => IpAddr::V4(probe::SOURCE_V4),
                IpAddr::V6(_) => IpAddr::V6(probe::SOURCE_V6),
            };
            let probe = Probe {
                pair: p.id.clone(),
                number,
                source_port,
                source,
                destination,
            };
            let (tap, exit) = (
                p.ingress.local_tap().unwrap_or_default(),
                p.egress.local_tap().unwrap_or_default(),
            );
            let counter = probe.key();
            self.probe_exits
                .entry(exit.to_string())
                .or_default()
                .push(Rule::new(
                    &counter,
                    format!(
                        "udp dport {} @th,64,64 {:#x} @th,128,16 {number} counter name \"{counter}\" drop",
                        probe::PORT,
                        probe::MAGIC,
                    ),
                ));
            self.out.table.counters.insert(counter);
            sending
                .entry(probe::send_chain(number))
                .or_default()
                .push(Rule::salted(
                    &probe::send_key(number, &p.id),
                    format!(
                        "udp sport {source_port} ether daddr set {} fwd to \"{tap}\"",
                        p.ingress.mac
                    ),
                    &self.salt(tap),
                ));
            self.out.probes.push(probe);
        }
        if sending.is_empty() {
            return;
        }
        // Every send chain exists (the dispatch rule never changes), most hold a few rules.
        let mut dispatch = Vec::new();
        for k in 0..probe::SEND_CHAINS {
            let name = probe::send_chain(k);
            dispatch.push(format!("{k} : jump {name}"));
            let mut rules = sending.remove(&name).unwrap_or_default();
            rules.sort_by(|a, b| a.comment.cmp(&b.comment));
            self.chain_named(name, rules);
        }
        if self.model.ifindex.contains_key(probe::DEVICE) {
            self.out.table.chains.insert(
                self.base_name("dev", probe::DEVICE),
                NftChain {
                    hook: Some(Hook::Ingress(probe::DEVICE.to_string())),
                    rules: vec![
                        Rule::new(
                            "send",
                            format!(
                                "udp sport & {} vmap {{ {} }}",
                                probe::SEND_CHAINS - 1,
                                dispatch.join(", ")
                            ),
                        ),
                        Rule::new("other", "drop"),
                    ],
                },
            );
        }
    }

    /// Where a pair's probes go: the first address its first chain's classifiers send to
    /// (`None`: the pair is in no chain).
    fn probe_destination(&self, pair: &str) -> Option<IpAddr> {
        let chain = self.model.chains.iter().find(|c| {
            c.groups
                .iter()
                .any(|g| g.pairs.iter().any(|p| p.id == pair))
        })?;
        let fc = chain.classifiers.first();
        let fam = fc.map_or(Family::V4, |fc| fc.tuple.family);
        let named = fc.and_then(|fc| {
            let port = fc
                .destination
                .as_ref()
                .and_then(|d| d.addresses.iter().find(|a| Family::of(a) == fam).copied());
            port.or_else(|| {
                let net = fc.tuple.destination?;
                net.hosts().next().or(Some(net.addr()))
            })
        });
        Some(named.unwrap_or(match fam {
            Family::V4 => IpAddr::V4(probe::FALLBACK_V4),
            Family::V6 => IpAddr::V6(probe::FALLBACK_V6),
        }))
    }

    fn finish(&mut self) {
        let devices = std::mem::take(&mut self.devices);
        let function_ports = std::mem::take(&mut self.function_ports);
        let mut base: BTreeMap<String, Vec<Rule>> = devices;
        // Probes leaving a function are counted and dropped before anything else.
        for (tap, mut counting) in std::mem::take(&mut self.probe_exits) {
            counting.push(Rule::new(
                "probe",
                format!(
                    "udp dport {} @th,64,64 {:#x} drop",
                    probe::PORT,
                    probe::MAGIC
                ),
            ));
            base.entry(tap).or_default().splice(0..0, counting);
        }
        // Function ports: frames they forward are steered or dropped.
        for (tap, (mac, _, addrs)) in &function_ports {
            let rules = base.entry(tap.clone()).or_default();
            rules.push(Rule::new("foreign", format!("ether saddr != {mac} drop")));
            // Toward the function only what is addressed to it: a broadcast it forwarded
            // from one port to the other would come back around through the bridge.
            let mut guard = vec![Rule::new("own", format!("ether daddr {mac} accept"))];
            let ips: Vec<&IpAddr> = addrs.iter().filter(|a| a.is_ipv4()).collect();
            if !ips.is_empty() {
                guard.push(Rule::new(
                    "arp",
                    format!(
                        "arp operation request arp daddr ip {} accept",
                        addr_set(&ips)
                    ),
                ));
            }
            // IPv6 neighbour solicitations for its addresses (solicited-node multicast).
            let solicited: BTreeSet<String> = addrs
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V6(a) => {
                        let o = a.octets();
                        Some(format!(
                            "33:33:ff:{:02x}:{:02x}:{:02x}",
                            o[13], o[14], o[15]
                        ))
                    }
                    IpAddr::V4(_) => None,
                })
                .collect();
            if !solicited.is_empty() {
                let list: Vec<&str> = solicited.iter().map(String::as_str).collect();
                let set = if list.len() == 1 {
                    list[0].to_string()
                } else {
                    format!("{{ {} }}", list.join(", "))
                };
                guard.push(Rule::new(
                    "nd",
                    format!("ether daddr {set} icmpv6 type nd-neighbor-solicit accept"),
                ));
            }
            guard.push(Rule::new("flood", "drop"));
            self.out.table.chains.insert(
                self.base_name("egr", tap),
                NftChain {
                    hook: Some(Hook::Egress(tap.clone())),
                    rules: guard,
                },
            );
        }
        // Steering ports: frames that crossed the bridge are classified again; nothing
        // else (floods) goes through.
        for (dev, mut rules) in std::mem::take(&mut self.steered) {
            rules.push(Rule::new("other", "drop"));
            self.out.table.chains.insert(
                self.base_name("egr", &dev),
                NftChain {
                    hook: Some(Hook::Egress(dev.clone())),
                    rules,
                },
            );
        }
        // Tunnels: frames for a local function port go straight to it.
        let mut arrivals: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        for (tap, (mac, net, _)) in &function_ports {
            if let Some(vxlan) = self.model.networks.get(net).and_then(|n| n.tunnel.clone()) {
                let rule = Rule::salted(
                    &format!("to-{tap}"),
                    format!("ether daddr {mac} fwd to \"{tap}\""),
                    &self.salt(tap),
                );
                arrivals.entry(vxlan).or_default().push(rule);
            }
        }
        for (dev, rules) in arrivals {
            base.entry(dev).or_default().extend(rules);
        }
        for (dev, rules) in base {
            self.out.table.chains.insert(
                self.base_name("dev", &dev),
                NftChain {
                    hook: Some(Hook::Ingress(dev.clone())),
                    rules,
                },
            );
        }
        self.out.table.present = !self.out.table.chains.is_empty();
    }
}

/// A pin set's name carries a digest of its key type: another `lb_fields` is another set.
fn pin_set(cid: u32, gid: u32, pp: &str, fam: Family, k: &Key) -> String {
    let n = match fam {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    let kind = digest(&k.types.join(".")) & 0xffff;
    format!("pin{n}-{cid}-{gid}-{pp}-{kind:04x}")
}

/// The verdict map of a network's destinations without port security (address → `dd-…`).
fn direct_map(network: &str, fam: Family) -> String {
    let n = match fam {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    format!("dir{n}-{}", short(network))
}

fn mac_map(network: &str, fam: Family) -> String {
    let n = match fam {
        Family::V4 => 4,
        Family::V6 => 6,
    };
    format!("mac{n}-{}", short(network))
}

fn bucket_vmap(spread: &[usize], targets: &[String]) -> String {
    let mut elems = Vec::new();
    let mut start = 0;
    for b in 1..=spread.len() {
        if b == spread.len() || spread[b] != spread[start] {
            let range = if b - 1 == start {
                start.to_string()
            } else {
                format!("{start}-{}", b - 1)
            };
            elems.push(format!("{range} : goto {}", targets[spread[start]]));
            start = b;
        }
    }
    format!("{{ {} }}", elems.join(", "))
}
