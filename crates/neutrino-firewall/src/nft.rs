//! The nftables objects the planner reasons about: tables of chains (rules identified by
//! their comment) and sets/maps whose elements are typed keys, printed in `nft -f` syntax
//! and read back from `nft -j` output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

/// Name of both of Neutrino's tables (`inet neutrino`, `bridge neutrino`).
pub const TABLE: &str = "neutrino";

/// The two table families Neutrino owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `table inet neutrino`: stateful filtering (conntrack), security groups.
    Inet,
    /// `table bridge neutrino`: anti-spoofing and port marks.
    Bridge,
}

impl Family {
    /// The family keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Family> {
        match s {
            "inet" => Some(Family::Inet),
            "bridge" => Some(Family::Bridge),
            _ => None,
        }
    }
}

/// One dimension of a set key: an interface name, or a closed numeric interval (a single
/// value is `lo == hi`; addresses, ports, protocols, MACs, marks are all numbers here).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Atom {
    Name(String),
    Range(u128, u128),
}

impl Atom {
    pub(crate) fn point(v: u128) -> Atom {
        Atom::Range(v, v)
    }

    fn intersects(&self, other: &Atom) -> bool {
        match (self, other) {
            (Atom::Range(a, b), Atom::Range(c, d)) => a <= d && c <= b,
            (x, y) => x == y,
        }
    }
}

/// A set key: one atom per field of the set type.
pub(crate) type Key = Vec<Atom>;

/// Whether two keys share at least one point (such elements cannot live in one interval set).
pub(crate) fn overlaps(a: &Key, b: &Key) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.intersects(y))
}

/// Field types used in Neutrino's sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Ipv4,
    Ipv6,
    Proto,
    Service,
    IcmpType,
    IcmpCode,
    Icmp6Type,
    Icmp6Code,
    Ifname,
    Ether,
    Mark,
}

impl Field {
    pub(crate) fn decl(self) -> &'static str {
        match self {
            Field::Ipv4 => "ipv4_addr",
            Field::Ipv6 => "ipv6_addr",
            Field::Proto => "inet_proto",
            Field::Service => "inet_service",
            Field::IcmpType => "icmp_type",
            Field::IcmpCode => "icmp_code",
            Field::Icmp6Type => "icmpv6_type",
            Field::Icmp6Code => "icmpv6_code",
            Field::Ifname => "ifname",
            Field::Ether => "ether_addr",
            Field::Mark => "mark",
        }
    }

    pub(crate) fn from_decl(s: &str) -> Option<Field> {
        [
            Field::Ipv4,
            Field::Ipv6,
            Field::Proto,
            Field::Service,
            Field::IcmpType,
            Field::IcmpCode,
            Field::Icmp6Type,
            Field::Icmp6Code,
            Field::Ifname,
            Field::Ether,
            Field::Mark,
        ]
        .into_iter()
        .find(|f| f.decl() == s)
    }

    fn format(self, atom: &Atom) -> String {
        let (lo, hi) = match atom {
            Atom::Name(n) => return format!("\"{n}\""),
            Atom::Range(lo, hi) => (*lo, *hi),
        };
        match self {
            Field::Ipv4 => format_addr(lo, hi, 32, |v| Ipv4Addr::from(v as u32).to_string()),
            Field::Ipv6 => format_addr(lo, hi, 128, |v| Ipv6Addr::from(v).to_string()),
            Field::Ether => format_mac(lo as u64),
            Field::Mark => format!("0x{lo:08x}"),
            _ if lo == hi => lo.to_string(),
            _ => format!("{lo}-{hi}"),
        }
    }

    /// One atom from its JSON form (a value, a `prefix`, or a `range`).
    fn parse_json(self, v: &Value) -> Option<Atom> {
        if let Some(p) = v.get("prefix") {
            let base = self.parse_scalar(p.get("addr")?)?;
            let len = p.get("len")?.as_u64()? as u32;
            let bits = if self == Field::Ipv4 { 32 } else { 128 };
            let Atom::Range(lo, _) = base else {
                return None;
            };
            let host = if len >= bits {
                0
            } else {
                (u128::MAX >> (128 - bits + len)) & low_mask(bits)
            };
            return Some(Atom::Range(lo & !host, lo | host));
        }
        if let Some(r) = v.get("range").and_then(Value::as_array) {
            let (Atom::Range(lo, _), Atom::Range(_, hi)) =
                (self.parse_json(r.first()?)?, self.parse_json(r.get(1)?)?)
            else {
                return None;
            };
            return Some(Atom::Range(lo, hi));
        }
        self.parse_scalar(v)
    }

    fn parse_scalar(self, v: &Value) -> Option<Atom> {
        if let Some(n) = v.as_u64() {
            return Some(Atom::point(n as u128));
        }
        let s = v.as_str()?;
        let n: u128 = match self {
            Field::Ifname => return Some(Atom::Name(s.to_string())),
            Field::Ipv4 => u32::from(s.parse::<Ipv4Addr>().ok()?) as u128,
            Field::Ipv6 => u128::from(s.parse::<Ipv6Addr>().ok()?),
            Field::Ether => parse_mac(s)? as u128,
            _ => match s.parse::<u128>() {
                Ok(n) => n,
                Err(_) => s
                    .strip_prefix("0x")
                    .and_then(|h| u128::from_str_radix(h, 16).ok())
                    .or_else(|| symbol(self, s))?,
            },
        };
        Some(Atom::point(n))
    }
}

fn low_mask(bits: u32) -> u128 {
    if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn format_addr(lo: u128, hi: u128, bits: u32, show: impl Fn(u128) -> String) -> String {
    if lo == hi {
        return show(lo);
    }
    let span = hi.wrapping_sub(lo);
    // A CIDR: the span is 2^k - 1 and lo is aligned on it.
    if (span & span.wrapping_add(1)) == 0 && lo & span == 0 {
        let host_bits = if span == u128::MAX {
            128
        } else {
            128 - (span + 1).leading_zeros() - 1
        };
        return format!("{}/{}", show(lo), bits - host_bits);
    }
    format!("{}-{}", show(lo), show(hi))
}

/// `aa:bb:cc:dd:ee:ff` as a number.
pub(crate) fn parse_mac(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    parts.iter().try_fold(0u64, |acc, p| {
        (p.len() == 2)
            .then(|| u8::from_str_radix(p, 16).ok())
            .flatten()
            .map(|b| (acc << 8) | b as u64)
    })
}

pub(crate) fn format_mac(v: u64) -> String {
    let b = v.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// Symbolic names nft prints without `-n` (the agent lists with `-n`; this is a fallback).
fn symbol(field: Field, s: &str) -> Option<u128> {
    let table: &[(&str, u128)] = match field {
        Field::Proto => &[
            ("hopopt", 0),
            ("icmp", 1),
            ("igmp", 2),
            ("ipip", 4),
            ("ipencap", 4),
            ("tcp", 6),
            ("egp", 8),
            ("udp", 17),
            ("ipv6", 41),
            ("ipv6-route", 43),
            ("ipv6-frag", 44),
            ("rsvp", 46),
            ("gre", 47),
            ("esp", 50),
            ("ah", 51),
            ("ipv6-icmp", 58),
            ("icmpv6", 58),
            ("ipv6-nonxt", 59),
            ("ipv6-opts", 60),
            ("ospf", 89),
            ("vrrp", 112),
            ("pgm", 113),
            ("sctp", 132),
            ("dccp", 33),
            ("udplite", 136),
        ],
        Field::IcmpType => &[
            ("echo-reply", 0),
            ("destination-unreachable", 3),
            ("source-quench", 4),
            ("redirect", 5),
            ("echo-request", 8),
            ("router-advertisement", 9),
            ("router-solicitation", 10),
            ("time-exceeded", 11),
            ("parameter-problem", 12),
            ("timestamp-request", 13),
            ("timestamp-reply", 14),
            ("info-request", 15),
            ("info-reply", 16),
            ("address-mask-request", 17),
            ("address-mask-reply", 18),
        ],
        Field::IcmpCode => &[
            ("net-unreachable", 0),
            ("host-unreachable", 1),
            ("prot-unreachable", 2),
            ("port-unreachable", 3),
            ("frag-needed", 4),
            ("net-prohibited", 9),
            ("host-prohibited", 10),
            ("admin-prohibited", 13),
        ],
        Field::Icmp6Type => &[
            ("destination-unreachable", 1),
            ("packet-too-big", 2),
            ("time-exceeded", 3),
            ("parameter-problem", 4),
            ("echo-request", 128),
            ("echo-reply", 129),
            ("mld-listener-query", 130),
            ("mld-listener-report", 131),
            ("mld-listener-done", 132),
            ("mld-listener-reduction", 132),
            ("nd-router-solicit", 133),
            ("nd-router-advert", 134),
            ("nd-neighbor-solicit", 135),
            ("nd-neighbor-advert", 136),
            ("nd-redirect", 137),
            ("router-renumbering", 138),
            ("ind-neighbor-solicit", 141),
            ("ind-neighbor-advert", 142),
            ("mld2-listener-report", 143),
        ],
        Field::Icmp6Code => &[
            ("no-route", 0),
            ("admin-prohibited", 1),
            ("addr-unreachable", 3),
            ("port-unreachable", 4),
            ("policy-fail", 5),
            ("reject-route", 6),
        ],
        _ => &[],
    };
    table.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
}

/// Data of a map element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Data {
    /// A packet mark (`type ... : mark`).
    Mark(u32),
    /// A conntrack zone (`typeof iifname : ct zone`).
    Zone(u16),
    /// `goto CHAIN` (`type ... : verdict`).
    Goto(String),
}

impl Data {
    fn format(&self) -> String {
        match self {
            Data::Mark(m) => format!("0x{m:08x}"),
            Data::Zone(z) => z.to_string(),
            Data::Goto(c) => format!("goto {c}"),
        }
    }
}

/// What a map's elements map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataKind {
    Mark,
    Zone,
    Verdict,
}

/// One element's payload besides its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Elem {
    pub data: Option<Data>,
    pub comment: Option<String>,
}

/// A named set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetDef {
    pub name: String,
    pub fields: Vec<Field>,
    pub data: Option<DataKind>,
    pub interval: bool,
    pub elems: BTreeMap<Key, Elem>,
}

impl SetDef {
    pub(crate) fn new(name: impl Into<String>, fields: Vec<Field>, interval: bool) -> SetDef {
        SetDef {
            name: name.into(),
            fields,
            data: None,
            interval,
            elems: BTreeMap::new(),
        }
    }

    pub(crate) fn map(name: impl Into<String>, field: Field, data: DataKind) -> SetDef {
        SetDef {
            data: Some(data),
            ..SetDef::new(name, vec![field], false)
        }
    }

    /// `set NAME { type ...; flags interval; }` without the keyword and name.
    pub(crate) fn declaration(&self) -> String {
        let key = self
            .fields
            .iter()
            .map(|f| f.decl())
            .collect::<Vec<_>>()
            .join(" . ");
        let ty = match self.data {
            None => format!("type {key};"),
            Some(DataKind::Mark) => format!("type {key} : mark;"),
            Some(DataKind::Verdict) => format!("type {key} : verdict;"),
            Some(DataKind::Zone) => "typeof iifname : ct zone;".to_string(),
        };
        let flags = if self.interval {
            " flags interval;"
        } else {
            ""
        };
        format!("{{ {ty}{flags} }}")
    }

    pub(crate) fn keyword(&self) -> &'static str {
        if self.data.is_some() {
            "map"
        } else {
            "set"
        }
    }

    /// One element in `nft -f` syntax.
    pub(crate) fn element(&self, key: &Key, elem: Option<&Elem>) -> String {
        let mut s = key
            .iter()
            .zip(&self.fields)
            .map(|(a, f)| f.format(a))
            .collect::<Vec<_>>()
            .join(" . ");
        if let Some(e) = elem {
            if let Some(c) = &e.comment {
                let _ = write!(s, " comment \"{c}\"");
            }
            if let Some(d) = &e.data {
                let _ = write!(s, " : {}", d.format());
            }
        }
        s
    }

    /// Parse one element of `nft -j` output (`"elem"` array entry) for this set's type.
    pub(crate) fn parse_element(&self, v: &Value) -> Option<(Key, Elem)> {
        let (keyv, datav) = match v.as_array() {
            Some(pair) if pair.len() == 2 && self.data.is_some() => (&pair[0], Some(&pair[1])),
            _ => (v, None),
        };
        let (keyv, comment) = match keyv.get("elem") {
            Some(e) => (
                e.get("val")?,
                e.get("comment").and_then(Value::as_str).map(str::to_string),
            ),
            None => (keyv, None),
        };
        let key: Key = match keyv.get("concat").and_then(Value::as_array) {
            Some(parts) if parts.len() == self.fields.len() => parts
                .iter()
                .zip(&self.fields)
                .map(|(p, f)| f.parse_json(p))
                .collect::<Option<_>>()?,
            Some(_) => return None,
            None if self.fields.len() == 1 => vec![self.fields[0].parse_json(keyv)?],
            None => return None,
        };
        let data = match (self.data, datav) {
            (Some(DataKind::Verdict), Some(d)) => {
                let t = d.get("goto").or_else(|| d.get("jump"))?;
                Some(Data::Goto(t.get("target")?.as_str()?.to_string()))
            }
            (Some(DataKind::Mark), Some(d)) => Some(Data::Mark(as_number(d)? as u32)),
            (Some(DataKind::Zone), Some(d)) => Some(Data::Zone(as_number(d)? as u16)),
            _ => None,
        };
        Some((key, Elem { data, comment }))
    }
}

fn as_number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let s = v.as_str()?;
        s.strip_prefix("0x")
            .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
    })
}

/// A rule: its identity (`key`, unique in its chain) and its statement text. Its comment is
/// `KEY #HASH` where HASH digests the text, so a changed rule is recognised without parsing
/// nft's expression JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleDef {
    pub key: String,
    pub body: String,
}

impl RuleDef {
    pub(crate) fn new(key: impl Into<String>, body: impl Into<String>) -> RuleDef {
        RuleDef {
            key: key.into(),
            body: body.into(),
        }
    }

    pub(crate) fn comment(&self) -> String {
        format!("{} #{}", self.key, digest(&self.body))
    }

    /// The statement followed by its comment.
    pub(crate) fn text(&self) -> String {
        format!("{} comment \"{}\"", self.body, self.comment())
    }
}

/// A chain: a base chain has a hook specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainDef {
    pub name: String,
    pub hook: Option<&'static str>,
    pub rules: Vec<RuleDef>,
}

impl ChainDef {
    pub(crate) fn new(name: impl Into<String>) -> ChainDef {
        ChainDef {
            name: name.into(),
            hook: None,
            rules: Vec::new(),
        }
    }

    pub(crate) fn rule(&mut self, key: impl Into<String>, body: impl Into<String>) {
        self.rules.push(RuleDef::new(key, body));
    }
}

/// The desired content of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableDef {
    pub family: Family,
    pub chains: Vec<ChainDef>,
    pub sets: Vec<SetDef>,
}

/// 48-bit FNV-1a digest in hex: stable across Rust releases and platforms.
pub(crate) fn digest(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h >> 16)
}

/// Keep only characters nft accepts inside identifiers and comments.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_print_as_nft_reads_them() {
        let f = Field::Ipv4;
        assert_eq!(f.format(&Atom::point(0x0a00_0005)), "10.0.0.5");
        assert_eq!(
            f.format(&Atom::Range(0x0a00_0000, 0x0a00_00ff)),
            "10.0.0.0/24"
        );
        assert_eq!(f.format(&Atom::Range(0, u32::MAX as u128)), "0.0.0.0/0");
        assert_eq!(
            f.format(&Atom::Range(0x0a00_0001, 0x0a00_0009)),
            "10.0.0.1-10.0.0.9"
        );
        assert_eq!(Field::Ipv6.format(&Atom::Range(0, u128::MAX)), "::/0");
        assert_eq!(Field::Service.format(&Atom::Range(22, 22)), "22");
        assert_eq!(Field::Service.format(&Atom::Range(1, 9)), "1-9");
    }

    #[test]
    fn json_atoms_parse_back() {
        let f = Field::Ipv4;
        let p = json!({"prefix": {"addr": "10.0.0.0", "len": 24}});
        assert_eq!(
            f.parse_json(&p),
            Some(Atom::Range(0x0a00_0000, 0x0a00_00ff))
        );
        let p = json!({"prefix": {"addr": "::", "len": 0}});
        assert_eq!(Field::Ipv6.parse_json(&p), Some(Atom::Range(0, u128::MAX)));
        let r = json!({"range": ["net-unreachable", 255]});
        assert_eq!(Field::IcmpCode.parse_json(&r), Some(Atom::Range(0, 255)));
        assert_eq!(Field::Proto.parse_json(&json!("tcp")), Some(Atom::point(6)));
        assert_eq!(
            Field::Ether.parse_json(&json!("02:00:00:00:00:0a")),
            Some(Atom::point(0x0200_0000_000a))
        );
        assert_eq!(format_mac(0x0200_0000_000a), "02:00:00:00:00:0a");
    }

    #[test]
    fn overlap_needs_every_dimension() {
        let a = vec![Atom::Range(0, 10), Atom::point(6), Atom::Range(1, 5)];
        let b = vec![Atom::Range(5, 20), Atom::point(6), Atom::Range(5, 9)];
        let c = vec![Atom::Range(5, 20), Atom::point(17), Atom::Range(5, 9)];
        assert!(overlaps(&a, &b));
        assert!(!overlaps(&a, &c));
    }
}
