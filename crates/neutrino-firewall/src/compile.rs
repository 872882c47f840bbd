//! Model → desired tables. Pure, deterministic; the observed tables only decide the two
//! things a fresh render would choose arbitrarily: the index (mark) of each port and zone of
//! each bridge, and which layer set holds each security-group rule. Keeping what the kernel
//! already has is what makes one change touch one element.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Direction, EtherType, FirewallModel, PortFilter, Rule};
use crate::nft::{
    clean, overlaps, parse_mac, Atom, ChainDef, Data, DataKind, Elem, Family, Field, Key, SetDef,
    TableDef,
};
use crate::observe::ObservedTables;

/// Mark of a packet coming from port `index` (its egress filter).
pub const MARK_FROM_PORT: u32 = 0x4e4f_0000;

/// The netlink log group (NFLOG) security-group log statements send to; the agent reads it.
pub const LOG_GROUP: u16 = 42;

/// The rate limit of each logged port's log statements (packets per second, burst).
pub const LOG_LIMIT: &str = "limit rate 100/second burst 100 packets";

/// A log statement for `event` (`ACCEPT`, `DROP`) of `port`.
fn log_statement(event: &str, port: &str) -> String {
    format!(
        "{LOG_LIMIT} log prefix \"{event} {}\" group {LOG_GROUP}",
        clean(port)
    )
}
/// Mark of a packet going to port `index` (its ingress filter).
pub const MARK_TO_PORT: u32 = 0x4e49_0000;
const INDEX_MASK: u32 = 0xffff;

/// Closed numeric intervals (addresses).
type Ranges = Vec<(u128, u128)>;

const FULL4: (u128, u128) = (0, u32::MAX as u128);
const FULL6: (u128, u128) = (0, u128::MAX);
const PORT_PROTOCOLS: [u8; 5] = [6, 17, 33, 132, 136];

/// The desired tables plus what could not be compiled.
pub(crate) struct Desired {
    pub inet: TableDef,
    pub bridge: TableDef,
    pub warnings: Vec<String>,
}

/// Shape of a rule's match besides the remote address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// Any protocol.
    Any,
    /// A protocol, no ports.
    Proto,
    /// tcp/udp/sctp/dccp/udplite and a destination port range.
    Port,
    /// ICMP / ICMPv6 type and code range.
    Icmp,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Any => "any",
            Shape::Proto => "proto",
            Shape::Port => "port",
            Shape::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Remote {
    Cidr,
    Group(String),
    AddressGroup(String),
}

/// Rules that compile into one lookup: same group, direction, family, remote kind, shape.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Class {
    sg: String,
    direction: Direction,
    v6: bool,
    remote: Remote,
    shape: Shape,
}

impl Class {
    /// Prefix of this class's layer sets; the layer number follows.
    fn set_prefix(&self) -> String {
        let remote = match &self.remote {
            Remote::Cidr => "cidr".to_string(),
            Remote::Group(g) => format!("rg-{}", clean(g)),
            Remote::AddressGroup(a) => format!("ag-{}", clean(a)),
        };
        format!(
            "sg-{}-{}{}-{}-{}-",
            clean(&self.sg),
            dir_letter(self.direction),
            version(self.v6),
            remote,
            self.shape.name()
        )
    }

    fn fields(&self) -> Vec<Field> {
        let mut f = Vec::new();
        if self.remote == Remote::Cidr {
            f.push(if self.v6 { Field::Ipv6 } else { Field::Ipv4 });
        }
        match self.shape {
            Shape::Any => {}
            Shape::Proto => f.push(Field::Proto),
            Shape::Port => f.extend([Field::Proto, Field::Service]),
            Shape::Icmp if self.v6 => f.extend([Field::Icmp6Type, Field::Icmp6Code]),
            Shape::Icmp => f.extend([Field::IcmpType, Field::IcmpCode]),
        }
        f
    }

    /// The address match (`ip saddr`, `ip6 daddr`) of the remote side.
    fn addr_expr(&self) -> String {
        let field = match self.direction {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        };
        format!("{} {field}", if self.v6 { "ip6" } else { "ip" })
    }

    /// The rule matching the class's set `set` (or, for `Any` with a group, no set).
    fn lookup(&self, set: Option<&str>) -> String {
        let mut exprs = Vec::new();
        let mut prefix = String::new();
        match &self.remote {
            Remote::Cidr => exprs.push(self.addr_expr()),
            Remote::Group(g) => {
                prefix = format!("{} @{} ", self.addr_expr(), member_set("rg", g, self.v6))
            }
            Remote::AddressGroup(a) => {
                prefix = format!("{} @{} ", self.addr_expr(), member_set("ag", a, self.v6))
            }
        }
        match self.shape {
            Shape::Any => {}
            Shape::Proto => exprs.push("meta l4proto".into()),
            Shape::Port => exprs.extend(["meta l4proto".into(), "th dport".into()]),
            Shape::Icmp if self.v6 => exprs.extend(["icmpv6 type".into(), "icmpv6 code".into()]),
            Shape::Icmp => exprs.extend(["icmp type".into(), "icmp code".into()]),
        }
        match set {
            Some(s) => format!("{prefix}{} @{s} accept", exprs.join(" . ")),
            None => format!("{prefix}accept"),
        }
    }
}

fn dir_letter(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "i",
        Direction::Egress => "e",
    }
}

fn version(v6: bool) -> &'static str {
    if v6 {
        "6"
    } else {
        "4"
    }
}

/// Named set of a remote group's (`rg`) or address group's (`ag`) addresses.
fn member_set(kind: &str, id: &str, v6: bool) -> String {
    format!("{kind}-{}-{}", clean(id), version(v6))
}

/// Chain of a security group's rules in one direction.
fn sg_chain(sg: &str, d: Direction) -> String {
    let dir = match d {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    format!("sg-{}-{dir}", clean(sg))
}

fn range_of(net: &IpNet) -> (u128, u128) {
    match net.trunc() {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Protocol number of a rule (`None`: any), Neutron's names and numbers.
fn protocol(rule: &Rule) -> Result<Option<u8>, String> {
    let Some(p) = rule.protocol.as_deref().map(str::to_ascii_lowercase) else {
        return Ok(None);
    };
    let v6 = rule.ethertype == EtherType::IPv6;
    let n = match p.as_str() {
        "" | "any" | "0" => return Ok(None),
        "icmp" if v6 => 58,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "dccp" => 33,
        "udplite" => 136,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "igmp" => 2,
        "egp" => 8,
        "ipip" => 4,
        "ipv6-encap" => 41,
        "ipv6-route" => 43,
        "ipv6-frag" => 44,
        "rsvp" => 46,
        "ipv6-nonxt" => 59,
        "ipv6-opts" => 60,
        "ospf" => 89,
        "vrrp" => 112,
        "pgm" => 113,
        "hopopt" => 0,
        other => other
            .parse::<u8>()
            .map_err(|_| format!("unknown protocol {other:?}"))?,
    };
    Ok(Some(n))
}

/// A rule's class and key, or why it cannot be compiled.
fn compile_rule(rule: &Rule) -> Result<(Class, Key), String> {
    let v6 = rule.ethertype == EtherType::IPv6;
    let mut key = Vec::new();
    let remote = if let Some(p) = &rule.remote_ip_prefix {
        if matches!(p, IpNet::V6(_)) != v6 {
            return Err("remote_ip_prefix does not match the ethertype".into());
        }
        let (lo, hi) = range_of(p);
        key.push(Atom::Range(lo, hi));
        Remote::Cidr
    } else if let Some(g) = &rule.remote_group_id {
        Remote::Group(g.clone())
    } else if let Some(a) = &rule.remote_address_group_id {
        Remote::AddressGroup(a.clone())
    } else {
        let (lo, hi) = if v6 { FULL6 } else { FULL4 };
        key.push(Atom::Range(lo, hi));
        Remote::Cidr
    };
    let proto = protocol(rule)?;
    let shape = match proto {
        None => Shape::Any,
        Some(p) if PORT_PROTOCOLS.contains(&p) => {
            let (lo, hi) = match (rule.port_range_min, rule.port_range_max) {
                (Some(lo), hi) => (lo, hi.unwrap_or(lo)),
                (None, _) => (0, u16::MAX),
            };
            if lo > hi {
                return Err(format!("port range {lo}-{hi} is empty"));
            }
            key.extend([Atom::point(p as u128), Atom::Range(lo as u128, hi as u128)]);
            Shape::Port
        }
        Some(p) if (p == 58 && v6) || (p == 1 && !v6) => match rule.port_range_min {
            Some(t) if t > 255 || rule.port_range_max.is_some_and(|c| c > 255) => {
                return Err("ICMP type and code must be 0-255".into())
            }
            Some(t) => {
                let code = rule
                    .port_range_max
                    .map_or(Atom::Range(0, 255), |c| Atom::point(c as u128));
                key.extend([Atom::point(t as u128), code]);
                Shape::Icmp
            }
            None => {
                key.push(Atom::point(p as u128));
                Shape::Proto
            }
        },
        Some(p) => {
            key.push(Atom::point(p as u128));
            Shape::Proto
        }
    };
    Ok((
        Class {
            sg: rule.security_group_id.clone(),
            direction: rule.direction,
            v6,
            remote,
            shape,
        },
        key,
    ))
}

/// Drop prefixes contained in others (CIDRs nest or are disjoint), so that an interval set
/// never receives overlapping elements.
fn outermost(mut ranges: Ranges) -> Ranges {
    ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Ranges = Vec::new();
    for r in ranges {
        match out.last() {
            Some(last) if r.0 <= last.1 => {}
            _ => out.push(r),
        }
    }
    out
}

/// EUI-64 link-local address of a MAC.
fn link_local(mac: u64) -> u128 {
    let b = mac.to_be_bytes();
    let iid = [b[2] ^ 0x02, b[3], b[4], 0xff, 0xfe, b[5], b[6], b[7]];
    (0xfe80u128 << 112) | u64::from_be_bytes(iid) as u128
}

/// Index allocator keeping observed assignments and handing out the lowest free numbers.
struct Indexes {
    used: BTreeSet<u32>,
    max: u32,
}

impl Indexes {
    fn take(&mut self) -> Option<u32> {
        let n = (1..=self.max).find(|n| !self.used.contains(n))?;
        self.used.insert(n);
        Some(n)
    }
}

/// Keep observed names → numbers for the wanted names, number the rest.
fn assign(
    wanted: &BTreeSet<String>,
    observed: BTreeMap<String, u32>,
    max: u32,
) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut idx = Indexes {
        used: BTreeSet::new(),
        max,
    };
    for (name, n) in observed {
        if wanted.contains(&name) && (1..=max).contains(&n) && idx.used.insert(n) {
            out.insert(name, n);
        }
    }
    for name in wanted {
        if !out.contains_key(name) {
            if let Some(n) = idx.take() {
                out.insert(name.clone(), n);
            }
        }
    }
    out
}

/// A filtered port's name in the tables (its chains `e-KEY`/`i-KEY`, its index): its device,
/// or for a port on a shared device, the device and the port's MAC.
fn port_key(p: &PortFilter) -> Option<String> {
    let dev = clean(&p.device);
    if !p.shared_device {
        return Some(dev);
    }
    parse_mac(&p.mac).map(|mac| format!("{dev}-{mac:012x}"))
}

/// The ports with port security, one per key, in key order.
fn filtered_ports(model: &FirewallModel) -> Vec<(String, &PortFilter)> {
    let mut seen = BTreeSet::new();
    let mut ports: Vec<(String, &PortFilter)> = model
        .ports
        .iter()
        .filter(|p| p.port_security_enabled)
        .filter_map(|p| port_key(p).map(|k| (k, p)))
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    ports
}

/// Compute the desired tables.
pub(crate) fn desired(model: &FirewallModel, observed: &ObservedTables) -> Desired {
    let mut warnings = Vec::new();
    let ports = filtered_ports(model);

    // Port indexes (marks), kept from the bridge table's from-port and from-mac maps.
    let keys: BTreeSet<String> = ports.iter().map(|(k, _)| k.clone()).collect();
    let shared_keys = observed
        .map_entries(Family::Bridge, "from-mac")
        .into_iter()
        .filter_map(|(key, d)| match key.as_slice() {
            [Atom::Name(dev), Atom::Range(mac, _)] => Some((format!("{dev}-{mac:012x}"), d)),
            _ => None,
        });
    let observed_idx = observed
        .map_elements(Family::Bridge, "from-port")
        .into_iter()
        .chain(shared_keys)
        .filter_map(|(name, d)| match d {
            Data::Mark(m) if m & !INDEX_MASK == MARK_FROM_PORT => Some((name, m & INDEX_MASK)),
            _ => None,
        })
        .collect();
    let index = assign(&keys, observed_idx, INDEX_MASK);
    if index.len() < keys.len() {
        warnings.push(format!(
            "more than {INDEX_MASK} filtered ports: some left unfiltered"
        ));
    }

    // Conntrack zones per bridge (every port's bridge: unfiltered ports share conntrack too).
    let bridges: BTreeSet<String> = model
        .ports
        .iter()
        .filter_map(|p| p.bridge.as_deref().map(clean))
        .collect();
    let observed_zones = observed
        .map_elements(Family::Inet, "zones")
        .into_iter()
        .filter_map(|(name, d)| match d {
            Data::Zone(z) => Some((name, z as u32)),
            _ => None,
        })
        .collect();
    let zones = assign(&bridges, observed_zones, u16::MAX as u32);

    let bridge = bridge_table(&ports, &index, &mut warnings);
    let inet = inet_table(model, &ports, &index, &zones, observed, &mut warnings);
    Desired {
        inet,
        bridge,
        warnings,
    }
}

/// The anti-spoofing checks of frames from a filtered port (also those of a port on a
/// shared device, whose frames are recognised by their source MAC).
fn spoof_checks(chain: &mut ChainDef) {
    chain.rule("vlan-drop", "ether type { 8021q, 8021ad } drop");
    chain.rule(
        "arp-spoof",
        "iifname . arp saddr ether . arp saddr ip != @allowed-ip4 drop",
    );
    chain.rule(
        "dhcp4-discover",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
    );
    chain.rule(
        "ip4-spoof",
        "iifname . ether saddr . ip saddr != @allowed-ip4 drop",
    );
    chain.rule(
        "ip6-dad",
        "ip6 saddr :: ip6 daddr ff02::/16 icmpv6 type { mld-listener-report, nd-neighbor-solicit, mld2-listener-report } accept",
    );
    chain.rule(
        "ip6-spoof",
        "iifname . ether saddr . ip6 saddr != @allowed-ip6 drop",
    );
}

fn bridge_table(
    ports: &[(String, &PortFilter)],
    index: &BTreeMap<String, u32>,
    warnings: &mut Vec<String>,
) -> TableDef {
    let mut filtered = SetDef::new("filtered", vec![Field::Ifname], false);
    let mut from = SetDef::map("from-port", Field::Ifname, DataKind::Mark);
    let mut to = SetDef::map("to-port", Field::Ifname, DataKind::Mark);
    // Ports on a shared device: the device's frames from / to their MACs.
    let mut edge = SetDef::new("edge", vec![Field::Ifname], false);
    let mut from_mac = SetDef::new("from-mac", vec![Field::Ifname, Field::Ether], false);
    from_mac.data = Some(DataKind::Mark);
    let mut to_mac = from_mac.clone();
    to_mac.name = "to-mac".into();
    let mut macs = SetDef::new("allowed-mac", vec![Field::Ifname, Field::Ether], false);
    let mut ip4 = SetDef::new(
        "allowed-ip4",
        vec![Field::Ifname, Field::Ether, Field::Ipv4],
        true,
    );
    let mut ip6 = SetDef::new(
        "allowed-ip6",
        vec![Field::Ifname, Field::Ether, Field::Ipv6],
        true,
    );
    for (key, p) in ports {
        let dev = clean(&p.device);
        let Some(&i) = index.get(key) else { continue };
        let name = Atom::Name(dev.clone());
        let mark = |m| Elem {
            data: Some(Data::Mark(m | i)),
            comment: None,
        };
        if !p.shared_device {
            filtered.elems.insert(vec![name.clone()], Elem::default());
            from.elems.insert(vec![name.clone()], mark(MARK_FROM_PORT));
            to.elems.insert(vec![name.clone()], mark(MARK_TO_PORT));
        }

        // (mac, v4 ranges, v6 ranges) allowed from this port.
        let mut allowed: BTreeMap<u64, (Ranges, Ranges)> = BTreeMap::new();
        let Some(port_mac) = parse_mac(&p.mac) else {
            warnings.push(format!(
                "port {}: invalid MAC {:?}; all its traffic is dropped",
                p.port_id, p.mac
            ));
            continue;
        };
        let mut add = |mac: u64, net: IpNet| {
            let entry = allowed.entry(mac).or_default();
            let r = range_of(&net);
            match net {
                IpNet::V4(_) => entry.0.push(r),
                IpNet::V6(_) => {
                    entry.1.push(r);
                    let lla = link_local(mac);
                    entry.1.push((lla, lla));
                }
            }
        };
        for ip in &p.fixed_ips {
            add(port_mac, IpNet::from(*ip));
        }
        for (net, mac) in &p.allowed_address_pairs {
            match mac.as_deref().map_or(Some(port_mac), parse_mac) {
                Some(m) => add(m, *net),
                None => warnings.push(format!(
                    "port {}: invalid allowed address pair MAC {mac:?}",
                    p.port_id
                )),
            }
        }
        if p.fixed_ips.is_empty() {
            // Neutron: a port without addresses may use any address from its MAC.
            let e = allowed.entry(port_mac).or_default();
            e.0.push(FULL4);
            e.1.push(FULL6);
        }
        allowed.entry(port_mac).or_default();
        for (mac, (v4, v6)) in allowed {
            let m = Atom::point(mac as u128);
            if p.shared_device {
                let at = vec![name.clone(), m.clone()];
                from_mac.elems.insert(at.clone(), mark(MARK_FROM_PORT));
                to_mac.elems.insert(at, mark(MARK_TO_PORT));
            }
            macs.elems
                .insert(vec![name.clone(), m.clone()], Elem::default());
            for (set, ranges) in [(&mut ip4, v4), (&mut ip6, v6)] {
                for (lo, hi) in outermost(ranges) {
                    set.elems.insert(
                        vec![name.clone(), m.clone(), Atom::Range(lo, hi)],
                        Elem::default(),
                    );
                }
            }
        }
    }
    // A shared device that is no filtered port itself (an uplink): only its ports' frames
    // are checked; other endpoints behind it pass as before.
    for (_, p) in ports.iter().filter(|(_, p)| p.shared_device) {
        let name = vec![Atom::Name(clean(&p.device))];
        if !filtered.elems.contains_key(&name) {
            edge.elems.insert(name, Elem::default());
        }
    }

    let mut pre = ChainDef::new("prerouting");
    pre.hook = Some("type filter hook prerouting priority -200; policy accept;");
    pre.rule("edge", "iifname @edge jump edge-in");
    pre.rule("unfiltered", "iifname != @filtered accept");
    pre.rule("mark-from-port", "meta mark set iifname map @from-port");
    pre.rule(
        "mark-from-mac",
        "meta mark set iifname . ether saddr map @from-mac",
    );
    pre.rule("mac-spoof", "iifname . ether saddr != @allowed-mac drop");
    spoof_checks(&mut pre);
    let mut edge_in = ChainDef::new("edge-in");
    edge_in.rule("others", "iifname . ether saddr != @allowed-mac return");
    edge_in.rule(
        "mark-from-mac",
        "meta mark set iifname . ether saddr map @from-mac",
    );
    spoof_checks(&mut edge_in);
    let mut fwd = ChainDef::new("forward");
    fwd.hook = Some("type filter hook forward priority -200; policy accept;");
    fwd.rule("mark-to-port", "meta mark set oifname map @to-port");
    fwd.rule(
        "mark-to-mac",
        "meta mark set oifname . ether daddr map @to-mac",
    );

    TableDef {
        family: Family::Bridge,
        chains: vec![pre, edge_in, fwd],
        sets: vec![filtered, from, to, edge, from_mac, to_mac, macs, ip4, ip6],
    }
}

fn inet_table(
    model: &FirewallModel,
    ports: &[(String, &PortFilter)],
    index: &BTreeMap<String, u32>,
    zones: &BTreeMap<String, u32>,
    observed: &ObservedTables,
    warnings: &mut Vec<String>,
) -> TableDef {
    let mut chains = Vec::new();
    let mut sets = Vec::new();

    let mut zone_hook = ChainDef::new("zone");
    zone_hook.hook = Some("type filter hook prerouting priority -300; policy accept;");
    zone_hook.rule("zone", "ct zone set iifname map @zones");
    let mut zone_map = SetDef::map("zones", Field::Ifname, DataKind::Zone);
    for (bridge, z) in zones {
        zone_map.elems.insert(
            vec![Atom::Name(bridge.clone())],
            Elem {
                data: Some(Data::Zone(*z as u16)),
                comment: None,
            },
        );
    }
    sets.push(zone_map);

    let mut egress_hook = ChainDef::new("egress");
    egress_hook.hook = Some("type filter hook prerouting priority 0; policy accept;");
    egress_hook.rule("established", "ct state established,related accept");
    egress_hook.rule("ports", "meta mark vmap @egress-ports");
    let mut ingress_hook = ChainDef::new("ingress");
    ingress_hook.hook = Some("type filter hook forward priority 0; policy accept;");
    ingress_hook.rule("established", "ct state established,related accept");
    ingress_hook.rule("ports", "meta mark vmap @ingress-ports");
    chains.extend([zone_hook, egress_hook, ingress_hook]);

    let mut egress_common = ChainDef::new("egress-common");
    egress_common.rule(
        "dhcp4-client",
        "meta nfproto ipv4 udp sport 68 udp dport 67 accept",
    );
    egress_common.rule("ra-drop", "icmpv6 type nd-router-advert drop");
    egress_common.rule("icmp6", "meta nfproto ipv6 meta l4proto 58 accept");
    egress_common.rule(
        "dhcp6-client",
        "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
    );
    egress_common.rule(
        "dhcp4-server-drop",
        "meta nfproto ipv4 udp sport 67 udp dport 68 drop",
    );
    egress_common.rule(
        "dhcp6-server-drop",
        "meta nfproto ipv6 udp sport 547 udp dport 546 drop",
    );
    egress_common.rule("invalid", "ct state invalid drop");
    let mut ingress_common = ChainDef::new("ingress-common");
    ingress_common.rule(
        "icmp6-nd",
        "icmpv6 type { mld-listener-query, nd-neighbor-solicit, nd-neighbor-advert } accept",
    );
    ingress_common.rule("invalid", "ct state invalid drop");
    chains.extend([egress_common, ingress_common]);

    // Accepted traffic of logged ports: base chains after the filter's.
    let mut log_egress = ChainDef::new("log-egress");
    log_egress.hook = Some("type filter hook prerouting priority 10; policy accept;");
    let mut log_ingress = ChainDef::new("log-ingress");
    log_ingress.hook = Some("type filter hook forward priority 10; policy accept;");

    // Per-port chains and the verdict maps reaching them.
    let mut egress_ports = SetDef::map("egress-ports", Field::Mark, DataKind::Verdict);
    let mut ingress_ports = SetDef::map("ingress-ports", Field::Mark, DataKind::Verdict);
    let mut used_groups = BTreeSet::new();
    for (dev, p) in ports {
        let Some(&i) = index.get(dev) else { continue };
        let groups: Vec<&String> = {
            let mut seen = BTreeSet::new();
            p.security_groups
                .iter()
                .filter(|g| seen.insert(*g))
                .collect()
        };
        used_groups.extend(groups.iter().map(|g| g.to_string()));

        let mut e = ChainDef::new(format!("e-{dev}"));
        e.rule("common", "jump egress-common");
        let mut n = ChainDef::new(format!("i-{dev}"));
        n.rule("common", "jump ingress-common");
        let lla: IpNet = "fe80::/64".parse().expect("a CIDR");
        let mut v4: BTreeSet<IpAddr> = p
            .fixed_ips
            .iter()
            .filter(|ip| ip.is_ipv4())
            .copied()
            .collect();
        v4.insert(IpAddr::from([255, 255, 255, 255]));
        let v4: Vec<String> = v4.iter().map(IpAddr::to_string).collect();
        let v6: BTreeSet<IpAddr> = p
            .fixed_ips
            .iter()
            .filter(|ip| ip.is_ipv6() && !lla.contains(*ip))
            .copied()
            .collect();
        let v6: Vec<String> = v6
            .iter()
            .map(IpAddr::to_string)
            .chain([lla.to_string()])
            .collect();
        n.rule(
            "dhcp4-reply",
            format!(
                "ip daddr {{ {} }} udp sport 67 udp dport 68 accept",
                v4.join(", ")
            ),
        );
        n.rule(
            "dhcp6-reply",
            format!(
                "ip6 daddr {{ {} }} udp sport 547 udp dport 546 accept",
                v6.join(", ")
            ),
        );
        if p.fixed_ips.iter().any(IpAddr::is_ipv6) {
            n.rule("ra", "icmpv6 type nd-router-advert accept");
        }
        for g in &groups {
            e.rule(
                format!("sg-{}", clean(g)),
                format!("jump {}", sg_chain(g, Direction::Egress)),
            );
            n.rule(
                format!("sg-{}", clean(g)),
                format!("jump {}", sg_chain(g, Direction::Ingress)),
            );
        }
        let log = model.logs.get(&p.port_id).copied().unwrap_or_default();
        if log.drop {
            e.rule("log-drop", log_statement("DROP", &p.port_id));
            n.rule("log-drop", log_statement("DROP", &p.port_id));
        }
        if log.accept {
            let accept = log_statement("ACCEPT", &p.port_id);
            log_egress.rule(
                format!("accept-{dev}"),
                format!(
                    "meta mark 0x{:08x} ct state new {accept}",
                    MARK_FROM_PORT | i
                ),
            );
            log_ingress.rule(
                format!("accept-{dev}"),
                format!("meta mark 0x{:08x} ct state new {accept}", MARK_TO_PORT | i),
            );
        }
        e.rule("default-drop", "drop");
        n.rule("default-drop", "drop");
        let goto = |c: &ChainDef| Elem {
            data: Some(Data::Goto(c.name.clone())),
            comment: Some(clean(&p.port_id)),
        };
        egress_ports
            .elems
            .insert(vec![Atom::point((MARK_FROM_PORT | i) as u128)], goto(&e));
        ingress_ports
            .elems
            .insert(vec![Atom::point((MARK_TO_PORT | i) as u128)], goto(&n));
        chains.extend([e, n]);
    }
    sets.extend([egress_ports, ingress_ports]);
    if !log_egress.rules.is_empty() {
        chains.extend([log_egress, log_ingress]);
    }

    // Security groups: one chain per group and direction; rules become set elements.
    let mut classes: BTreeMap<Class, Vec<(String, Key)>> = BTreeMap::new();
    let mut rules: Vec<&Rule> = model
        .rules
        .iter()
        .filter(|r| used_groups.contains(&r.security_group_id))
        .collect();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    for r in rules {
        match compile_rule(r) {
            Ok((class, key)) => classes.entry(class).or_default().push((clean(&r.id), key)),
            Err(why) => warnings.push(format!("rule {} skipped: {why}", r.id)),
        }
    }
    let mut sg_chains: BTreeMap<String, ChainDef> = BTreeMap::new();
    for g in &used_groups {
        for d in [Direction::Egress, Direction::Ingress] {
            sg_chains.insert(sg_chain(g, d), ChainDef::new(sg_chain(g, d)));
        }
    }
    let mut member_sets: BTreeMap<String, SetDef> = BTreeMap::new();
    for (class, entries) in classes {
        let chain = sg_chains
            .get_mut(&sg_chain(&class.sg, class.direction))
            .expect("chain of a used group");
        match &class.remote {
            Remote::Group(g) => {
                let name = member_set("rg", g, class.v6);
                member_sets
                    .entry(name.clone())
                    .or_insert_with(|| members(&name, class.v6, model.group_members.get(g)));
            }
            Remote::AddressGroup(a) => {
                let name = member_set("ag", a, class.v6);
                member_sets
                    .entry(name.clone())
                    .or_insert_with(|| members(&name, class.v6, model.address_groups.get(a)));
            }
            Remote::Cidr => {}
        }
        if class.remote != Remote::Cidr && class.shape == Shape::Any {
            // Nothing to look up besides the member set: one rule per rule id.
            for (id, _) in &entries {
                chain.rule(id.clone(), class.lookup(None));
            }
            continue;
        }
        for set in layers(&class, entries, observed) {
            chain.rule(set.name.clone(), class.lookup(Some(&set.name)));
            sets.push(set);
        }
    }
    for c in sg_chains.values_mut() {
        c.rules.sort_by(|a, b| a.key.cmp(&b.key));
    }
    chains.extend(sg_chains.into_values());
    sets.extend(member_sets.into_values());
    TableDef {
        family: Family::Inet,
        chains,
        sets,
    }
}

fn members(name: &str, v6: bool, nets: Option<&BTreeSet<IpNet>>) -> SetDef {
    let mut set = SetDef::new(name, vec![if v6 { Field::Ipv6 } else { Field::Ipv4 }], true);
    let ranges = nets
        .into_iter()
        .flatten()
        .filter(|n| matches!(n, IpNet::V6(_)) == v6)
        .map(range_of)
        .collect();
    for (lo, hi) in outermost(ranges) {
        set.elems.insert(vec![Atom::Range(lo, hi)], Elem::default());
    }
    set
}

/// Spread a class's elements over layer sets so that no set holds two overlapping
/// elements (the kernel refuses them). Elements the kernel already holds stay in their
/// layer; new ones go to the lowest layer where they fit.
fn layers(class: &Class, entries: Vec<(String, Key)>, observed: &ObservedTables) -> Vec<SetDef> {
    let prefix = class.set_prefix();
    let fields = class.fields();
    let mut placed: BTreeMap<u32, Vec<(String, Key)>> = BTreeMap::new();
    let mut observed_at: BTreeMap<(String, Key), u32> = BTreeMap::new();
    for (name, elems) in observed.sets_with_prefix(Family::Inet, &prefix) {
        let Ok(layer) = name[prefix.len()..].parse::<u32>() else {
            continue;
        };
        for (key, elem) in elems {
            if let Some(c) = elem.comment {
                observed_at.entry((c, key)).or_insert(layer);
            }
        }
    }
    let mut pending = Vec::new();
    for entry in entries {
        match observed_at.remove(&entry) {
            Some(layer) => placed.entry(layer).or_default().push(entry),
            None => pending.push(entry),
        }
    }
    for entry in pending {
        let layer = (0..)
            .find(|l| {
                placed
                    .get(l)
                    .is_none_or(|es| es.iter().all(|(_, k)| !overlaps(k, &entry.1)))
            })
            .expect("a free layer");
        placed.entry(layer).or_default().push(entry);
    }
    placed
        .into_iter()
        .map(|(layer, entries)| {
            let mut set = SetDef::new(format!("{prefix}{layer}"), fields.clone(), true);
            for (id, key) in entries {
                set.elems.insert(
                    key,
                    Elem {
                        data: None,
                        comment: Some(id),
                    },
                );
            }
            set
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(proto: Option<&str>, min: Option<u16>, max: Option<u16>) -> Rule {
        Rule {
            id: "r".into(),
            security_group_id: "g".into(),
            direction: Direction::Ingress,
            ethertype: EtherType::IPv4,
            protocol: proto.map(str::to_string),
            port_range_min: min,
            port_range_max: max,
            remote_ip_prefix: None,
            remote_group_id: None,
            remote_address_group_id: None,
        }
    }

    #[test]
    fn rules_compile_to_neutron_semantics() {
        let (c, k) = compile_rule(&rule(Some("tcp"), Some(22), Some(22))).unwrap();
        assert_eq!(c.shape, Shape::Port);
        assert_eq!(k[1..], [Atom::point(6), Atom::point(22)]);
        let (c, k) = compile_rule(&rule(Some("udp"), None, None)).unwrap();
        assert_eq!((c.shape, &k[2]), (Shape::Port, &Atom::Range(0, 65535)));
        let (c, k) = compile_rule(&rule(Some("icmp"), Some(8), None)).unwrap();
        assert_eq!(c.shape, Shape::Icmp);
        assert_eq!(k[1..], [Atom::point(8), Atom::Range(0, 255)]);
        let (c, _) = compile_rule(&rule(Some("icmp"), None, None)).unwrap();
        assert_eq!(c.shape, Shape::Proto);
        let (c, _) = compile_rule(&rule(Some("any"), None, None)).unwrap();
        assert_eq!(c.shape, Shape::Any);
        let mut r = rule(Some("icmp"), Some(128), None);
        r.ethertype = EtherType::IPv6;
        let (c, k) = compile_rule(&r).unwrap();
        assert!(c.v6);
        assert_eq!((c.shape, &k[0]), (Shape::Icmp, &Atom::Range(0, u128::MAX)));
        assert!(compile_rule(&rule(Some("bogus"), None, None)).is_err());
        assert!(compile_rule(&rule(Some("tcp"), Some(30), Some(20))).is_err());
        let (c, k) = compile_rule(&rule(Some("47"), None, None)).unwrap();
        assert_eq!((c.shape, &k[1]), (Shape::Proto, &Atom::point(47)));
    }

    #[test]
    fn nested_prefixes_collapse() {
        assert_eq!(
            outermost(vec![(5, 5), (0, 255), (300, 300), (256, 511)]),
            vec![(0, 255), (256, 511)]
        );
    }

    #[test]
    fn eui64_link_local() {
        let mac = parse_mac("fa:16:3e:00:00:01").unwrap();
        let lla: std::net::Ipv6Addr = "fe80::f816:3eff:fe00:1".parse().unwrap();
        assert_eq!(link_local(mac), u128::from(lla));
    }
}
