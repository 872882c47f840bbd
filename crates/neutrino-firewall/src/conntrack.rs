//! Which established connections to cut after a security-group change.
//!
//! The tables accept `ct established,related` before any rule, so removing a rule (or a group
//! from a port, or an address from a remote group) would leave the connections it admitted
//! running. As Neutron does, the agent deletes their conntrack entries: the next packet of
//! such a connection is then seen as new (TCP is picked up mid-stream) and judged by the
//! rules the port has now, so it is dropped if nothing allows it any more.
//!
//! This module decides, without I/O: [`affected_ports`] compares the rules each port had
//! with those it has now (with remote groups and address groups resolved to addresses) and
//! names the ports that lost something; [`cuts`] takes the entries `conntrack -L` lists
//! ([`parse_list`]) and returns those of affected ports that no current rule allows. Entries
//! still allowed are kept, as is everything on other ports, other zones and protocols the
//! fixed rules always accept (DHCP, ICMPv6 other than echo).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Direction, EtherType, FirewallModel, PortFilter, Rule};

/// The original direction of one conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Conntrack zone (0 when the listing shows none).
    pub zone: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Source of the first packet.
    pub src: IpAddr,
    /// Destination of the first packet.
    pub dst: IpAddr,
    /// Ports (TCP, UDP, SCTP, DCCP, UDP-Lite).
    pub ports: Option<(u16, u16)>,
    /// ICMP / ICMPv6 type, code and id.
    pub icmp: Option<(u8, u8, u16)>,
}

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// Parses `conntrack -L` output (one entry a line, `key=value` fields; the first `src`,
/// `dst`, ports and ICMP fields are the original direction). Lines it cannot read are skipped.
pub fn parse_list(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut words = line.split_whitespace();
    let _name = words.next()?;
    let proto: u8 = words.next()?.parse().ok()?;
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for word in words {
        if let Some((k, v)) = word.split_once('=') {
            fields.entry(k).or_insert(v);
        }
    }
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<u16>().ok());
    let ports = num("sport").zip(num("dport"));
    let icmp = match (num("type"), num("code"), num("id")) {
        (Some(t), Some(c), id) => Some((
            u8::try_from(t).ok()?,
            u8::try_from(c).ok()?,
            id.unwrap_or(0),
        )),
        _ => None,
    };
    Some(Entry {
        zone: num("zone").unwrap_or(0),
        proto,
        src: fields.get("src")?.parse().ok()?,
        dst: fields.get("dst")?.parse().ok()?,
        ports,
        icmp,
    })
}

impl Entry {
    /// Arguments of the `conntrack` command that deletes this entry (and nothing else).
    pub fn delete_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["-D".into()];
        if self.src.is_ipv6() {
            args.extend(["-f".into(), "ipv6".into()]);
        }
        args.extend([
            "-w".into(),
            self.zone.to_string(),
            "-p".into(),
            self.proto.to_string(),
            "-s".into(),
            self.src.to_string(),
            "-d".into(),
            self.dst.to_string(),
        ]);
        if let Some((sport, dport)) = self.ports {
            args.extend([
                "--sport".into(),
                sport.to_string(),
                "--dport".into(),
                dport.to_string(),
            ]);
        }
        if let Some((t, c, id)) = self.icmp {
            let p = if self.proto == ICMPV6 {
                "icmpv6"
            } else {
                "icmp"
            };
            args.extend([
                format!("--{p}-type"),
                t.to_string(),
                format!("--{p}-code"),
                c.to_string(),
                format!("--{p}-id"),
                id.to_string(),
            ]);
        }
        args
    }
}

/// A protocol name or number as a number; `None` is any protocol, `Err` an unknown name.
fn protocol_number(p: Option<&str>) -> Result<Option<u8>, ()> {
    let Some(p) = p.map(str::to_ascii_lowercase) else {
        return Ok(None);
    };
    let n = match p.as_str() {
        "any" | "0" | "" => return Ok(None),
        "icmp" => ICMP,
        "tcp" => TCP,
        "udp" => UDP,
        "icmpv6" | "ipv6-icmp" => ICMPV6,
        "igmp" => 2,
        "dccp" => 33,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ospf" => 89,
        "vrrp" => 112,
        "sctp" => 132,
        "udplite" => 136,
        other => return other.parse().map(Some).map_err(|_| ()),
    };
    Ok(Some(n))
}

/// Addresses a rule's remote side may have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Remote {
    Any,
    Nets(BTreeSet<IpNet>),
}

/// A rule as it applies to one port, with its remote side resolved to addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Effective {
    direction: Direction,
    v6: bool,
    /// `Err`: an unknown protocol name (treated as allowing everything: never cut for it).
    proto: Result<Option<u8>, ()>,
    min: Option<u16>,
    max: Option<u16>,
    remote: Remote,
}

fn effective(model: &FirewallModel, rule: &Rule) -> Effective {
    let v6 = rule.ethertype == EtherType::IPv6;
    let remote = if let Some(net) = rule.remote_ip_prefix {
        Remote::Nets([net].into())
    } else if let Some(g) = &rule.remote_group_id {
        Remote::Nets(model.group_members.get(g).cloned().unwrap_or_default())
    } else if let Some(a) = &rule.remote_address_group_id {
        Remote::Nets(model.address_groups.get(a).cloned().unwrap_or_default())
    } else {
        Remote::Any
    };
    Effective {
        direction: rule.direction,
        v6,
        proto: protocol_number(rule.protocol.as_deref()),
        min: rule.port_range_min,
        max: rule.port_range_max,
        remote,
    }
}

/// The rules that apply to a port now (empty without port security: nothing to cut).
fn port_rules(model: &FirewallModel, port: &PortFilter) -> BTreeSet<Effective> {
    model
        .rules
        .iter()
        .filter(|r| port.security_groups.contains(&r.security_group_id))
        .map(|r| effective(model, r))
        .collect()
}

/// Ids of the ports (present in both models, with port security now) that lost an
/// allowance: a rule, a group, or an address of a remote group or address group. A port
/// that only gained (a new rule, a new member of a remote group) lost nothing.
pub fn affected_ports(old: &FirewallModel, new: &FirewallModel) -> BTreeSet<String> {
    let (old_rules, new_rules) = (rules_by_group(old), rules_by_group(new));
    let old_ports: BTreeMap<&str, &PortFilter> =
        old.ports.iter().map(|p| (p.port_id.as_str(), p)).collect();
    // Ports mostly share their groups: decide each (groups before, groups now) once.
    let mut lost_for: BTreeMap<(&[String], &[String]), bool> = BTreeMap::new();
    let mut affected = BTreeSet::new();
    for p in new.ports.iter().filter(|p| p.port_security_enabled) {
        let Some(before) = old_ports.get(p.port_id.as_str()) else {
            continue;
        };
        let has = || group_rules(&new_rules, &p.security_groups);
        let lost = if before.port_security_enabled {
            *lost_for
                .entry((&before.security_groups, &p.security_groups))
                .or_insert_with(|| {
                    let has = has();
                    group_rules(&old_rules, &before.security_groups)
                        .iter()
                        .any(|had| !has.iter().any(|h| h.covers(had)))
                })
        } else {
            // Everything was allowed before.
            let everything = Effective {
                direction: Direction::Ingress,
                v6: false,
                proto: Err(()),
                min: None,
                max: None,
                remote: Remote::Any,
            };
            !has().iter().any(|h| h.covers(&everything))
        };
        if lost {
            affected.insert(p.port_id.clone());
        }
    }
    affected
}

/// Each group's rules as they apply (remote sides resolved), computed once per model.
fn rules_by_group(model: &FirewallModel) -> BTreeMap<&str, Vec<Effective>> {
    let mut by_group: BTreeMap<&str, Vec<Effective>> = BTreeMap::new();
    for r in &model.rules {
        by_group
            .entry(r.security_group_id.as_str())
            .or_default()
            .push(effective(model, r));
    }
    by_group
}

/// The rules of these groups.
fn group_rules<'a>(
    by_group: &'a BTreeMap<&str, Vec<Effective>>,
    groups: &[String],
) -> Vec<&'a Effective> {
    groups
        .iter()
        .filter_map(|g| by_group.get(g.as_str()))
        .flatten()
        .collect()
}

impl Effective {
    /// Whether this rule allows at least what `other` allows: the same match, and a
    /// remote side holding all of `other`'s.
    fn covers(&self, other: &Effective) -> bool {
        (self.direction, self.v6, &self.proto, self.min, self.max)
            == (
                other.direction,
                other.v6,
                &other.proto,
                other.min,
                other.max,
            )
            && match (&self.remote, &other.remote) {
                (Remote::Any, _) => true,
                (Remote::Nets(_), Remote::Any) => false,
                (Remote::Nets(mine), Remote::Nets(theirs)) => theirs.is_subset(mine),
            }
    }
}

fn allows(rule: &Effective, direction: Direction, e: &Entry, remote: IpAddr) -> bool {
    if rule.direction != direction || rule.v6 != remote.is_ipv6() {
        return false;
    }
    let proto = match rule.proto {
        Err(()) => return true,
        Ok(None) => return remote_matches(&rule.remote, remote),
        Ok(Some(p)) => p,
    };
    if proto != e.proto && !(proto == ICMP && e.proto == ICMPV6 && rule.v6) {
        return false;
    }
    let in_range = match (e.ports, e.icmp) {
        (Some((_, dport)), _) => {
            rule.min.is_none_or(|m| dport >= m) && rule.max.is_none_or(|m| dport <= m)
        }
        (None, Some((t, c, _))) => {
            rule.min.is_none_or(|m| u16::from(t) == m) && rule.max.is_none_or(|m| u16::from(c) == m)
        }
        (None, None) => true,
    };
    in_range && remote_matches(&rule.remote, remote)
}

fn remote_matches(remote: &Remote, ip: IpAddr) -> bool {
    match remote {
        Remote::Any => true,
        Remote::Nets(nets) => nets.iter().any(|n| n.contains(&ip)),
    }
}

/// Whether the fixed rules accept this traffic whatever the groups say (DHCP, ICMPv6 other
/// than echo).
fn always_allowed(e: &Entry) -> bool {
    let dhcp = e.proto == UDP
        && e.ports.is_some_and(|(s, d)| {
            [67, 68, 546, 547].contains(&s) || [67, 68, 546, 547].contains(&d)
        });
    let icmpv6_control = e.proto == ICMPV6 && e.icmp.is_none_or(|(t, _, _)| t != 128);
    dhcp || icmpv6_control
}

fn owns(port: &PortFilter, ip: IpAddr) -> bool {
    port.fixed_ips.contains(&ip)
        || port
            .allowed_address_pairs
            .iter()
            .any(|(n, _)| n.contains(&ip))
}

/// The entries of affected ports that the model's current rules no longer allow: in the
/// zone of the port's bridge (`zones`: bridge → zone), started by the port (egress rules,
/// remote = destination) or toward it (ingress rules, remote = source).
pub fn cuts(
    model: &FirewallModel,
    zones: &BTreeMap<String, u16>,
    affected: &BTreeSet<String>,
    entries: &[Entry],
) -> Vec<Entry> {
    let ports: Vec<(&PortFilter, u16, BTreeSet<Effective>)> = model
        .ports
        .iter()
        .filter(|p| p.port_security_enabled && affected.contains(&p.port_id))
        .map(|p| {
            let zone = p
                .bridge
                .as_ref()
                .and_then(|b| zones.get(b).copied())
                .unwrap_or(0);
            (p, zone, port_rules(model, p))
        })
        .collect();
    entries
        .iter()
        .filter(|e| !always_allowed(e))
        .filter(|e| {
            ports.iter().any(|(port, zone, rules)| {
                if *zone != e.zone {
                    return false;
                }
                let check =
                    |direction, remote| !rules.iter().any(|r| allows(r, direction, e, remote));
                (owns(port, e.dst) && check(Direction::Ingress, e.src))
                    || (owns(port, e.src) && check(Direction::Egress, e.dst))
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
tcp      6 431999 ESTABLISHED src=10.0.0.3 dst=10.0.0.4 sport=40000 dport=5001 src=10.0.0.4 dst=10.0.0.3 sport=5001 dport=40000 [ASSURED] mark=0 zone=3 use=1
tcp      6 431999 ESTABLISHED src=10.0.0.3 dst=10.0.0.4 sport=40001 dport=5002 src=10.0.0.4 dst=10.0.0.3 sport=5002 dport=40001 [ASSURED] mark=0 zone=3 use=1
icmp     1 29 src=10.0.0.3 dst=10.0.0.4 type=8 code=0 id=77 src=10.0.0.4 dst=10.0.0.3 type=0 code=0 id=77 mark=0 zone=3 use=1
udp      17 29 src=0.0.0.0 dst=255.255.255.255 sport=68 dport=67 [UNREPLIED] src=255.255.255.255 dst=0.0.0.0 sport=67 dport=68 mark=0 zone=3 use=1
tcp      6 431999 ESTABLISHED src=10.0.0.3 dst=10.0.0.4 sport=40002 dport=5001 src=10.0.0.4 dst=10.0.0.3 sport=5001 dport=40002 [ASSURED] mark=0 zone=9 use=1
tcp      6 431999 ESTABLISHED src=10.0.0.4 dst=10.0.0.9 sport=40003 dport=443 src=10.0.0.9 dst=10.0.0.4 sport=443 dport=40003 [ASSURED] mark=0 zone=3 use=1
conntrack v1.4.7 (conntrack-tools): 6 flow entries have been shown.
";

    fn rule(id: &str, direction: Direction, proto: &str, port: Option<u16>) -> Rule {
        Rule {
            id: id.into(),
            security_group_id: "web".into(),
            direction,
            ethertype: EtherType::IPv4,
            protocol: (!proto.is_empty()).then(|| proto.to_string()),
            port_range_min: port,
            port_range_max: port,
            remote_ip_prefix: None,
            remote_group_id: None,
            remote_address_group_id: None,
        }
    }

    fn model(rules: Vec<Rule>) -> FirewallModel {
        FirewallModel {
            ports: vec![PortFilter {
                port_id: "p".into(),
                device: "tapserver".into(),
                bridge: Some("brqnet".into()),
                mac: "fa:16:3e:00:00:04".into(),
                fixed_ips: vec!["10.0.0.4".parse().unwrap()],
                allowed_address_pairs: Vec::new(),
                port_security_enabled: true,
                security_groups: vec!["web".into()],
                shared_device: false,
            }],
            rules,
            ..Default::default()
        }
    }

    fn full() -> Vec<Rule> {
        vec![
            rule("x", Direction::Ingress, "tcp", Some(5001)),
            rule("y", Direction::Ingress, "tcp", Some(5002)),
            rule("i", Direction::Ingress, "icmp", None),
            rule("e", Direction::Egress, "", None),
        ]
    }

    #[test]
    fn listing_is_parsed_in_the_original_direction() {
        let entries = parse_list(LIST);
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[0].ports, Some((40000, 5001)));
        assert_eq!(entries[0].zone, 3);
        assert_eq!(entries[2].icmp, Some((8, 0, 77)));
        assert_eq!(
            entries[0].delete_args().join(" "),
            "-D -w 3 -p 6 -s 10.0.0.3 -d 10.0.0.4 --sport 40000 --dport 5001"
        );
        assert_eq!(
            entries[2].delete_args().join(" "),
            "-D -w 3 -p 1 -s 10.0.0.3 -d 10.0.0.4 --icmp-type 8 --icmp-code 0 --icmp-id 77"
        );
    }

    #[test]
    fn removing_a_rule_cuts_only_what_it_alone_allowed() {
        let old = model(full());
        let mut rules = full();
        rules.retain(|r| r.id != "x");
        let new = model(rules);
        let affected = affected_ports(&old, &new);
        assert_eq!(affected, BTreeSet::from(["p".to_string()]));
        let zones = BTreeMap::from([("brqnet".to_string(), 3)]);
        let cut = cuts(&new, &zones, &affected, &parse_list(LIST));
        // The 5001 stream in the port's zone goes; 5002, ICMP, DHCP, the other zone and the
        // port's own egress stay.
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].ports, Some((40000, 5001)));
    }

    #[test]
    fn nothing_is_cut_when_nothing_was_lost() {
        let old = model(full()[1..].to_vec());
        let new = model(full());
        assert!(affected_ports(&old, &new).is_empty());
        assert!(affected_ports(&new, &new).is_empty());
        let zones = BTreeMap::from([("brqnet".to_string(), 3)]);
        let all = BTreeSet::from(["p".to_string()]);
        // Even when asked, entries allowed by the current rules are kept.
        assert!(cuts(&new, &zones, &all, &parse_list(LIST)).is_empty());
    }

    #[test]
    fn remote_group_members_and_group_changes_count() {
        let mut ssh = rule("g", Direction::Ingress, "tcp", Some(5001));
        ssh.remote_group_id = Some("clients".into());
        let mut old = model(vec![ssh]);
        old.group_members
            .insert("clients".into(), ["10.0.0.3/32".parse().unwrap()].into());
        // A member more is no loss.
        let mut more = old.clone();
        more.group_members.insert(
            "clients".into(),
            [
                "10.0.0.3/32".parse().unwrap(),
                "10.0.0.9/32".parse().unwrap(),
            ]
            .into(),
        );
        assert!(affected_ports(&old, &more).is_empty());
        assert_eq!(affected_ports(&more, &old).len(), 1);
        let mut new = old.clone();
        new.group_members.insert("clients".into(), BTreeSet::new());
        assert_eq!(affected_ports(&old, &new).len(), 1);
        let zones = BTreeMap::from([("brqnet".to_string(), 3)]);
        let cut = cuts(&new, &zones, &affected_ports(&old, &new), &parse_list(LIST));
        // Both streams from the removed member, and ICMP and the port's own egress, which no
        // rule of the group allows either.
        assert_eq!(cut.len(), 4);
        // The port leaves the group: everything it had is lost.
        let mut moved = old.clone();
        moved.ports[0].security_groups.clear();
        assert_eq!(affected_ports(&old, &moved).len(), 1);
        // Port security turned off: nothing to filter, nothing to cut.
        moved.ports[0].port_security_enabled = false;
        assert!(affected_ports(&old, &moved).is_empty());
    }
}
