//! What the planner needs to know about the chains that touch one host, already resolved
//! from the server's documents: ports with their MAC, addresses and where they are from this
//! host's point of view, groups with their usable pairs, classifiers as n-tuples.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Where a port is, seen from this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Plugged here: the host-side interface (`tap…`).
    Local(String),
    /// Plugged on another host, reached through this host's VXLAN device of its network.
    Remote(String),
    /// Not reachable from here (unbound, or its network has no tunnel on this host).
    Unreachable,
}

/// A Neutron port as steering sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Port id.
    pub id: String,
    /// MAC address, lower case.
    pub mac: String,
    /// Network id.
    pub network: String,
    /// Where it is.
    pub location: Location,
    /// Fixed IPs and allowed address-pair addresses (the sources the port may use).
    pub addresses: Vec<IpAddr>,
    /// Port security on (only frames from its own MAC and addresses are steered).
    pub port_security: bool,
    /// The bridge of its network on this host (a local port's).
    pub bridge: Option<String>,
}

impl Port {
    /// The tap when the port is plugged here.
    pub fn local_tap(&self) -> Option<&str> {
        match &self.location {
            Location::Local(tap) => Some(tap),
            _ => None,
        }
    }

    /// The device a frame for this port leaves this host by.
    pub fn egress_device(&self) -> Option<&str> {
        match &self.location {
            Location::Local(dev) | Location::Remote(dev) => Some(dev),
            Location::Unreachable => None,
        }
    }
}

/// IP version of a classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`ip`).
    V4,
    /// IPv6 (`ip6`).
    V6,
}

impl Family {
    /// nft payload keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// nft address type.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// Family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// An inclusive port range.
pub type PortRange = (u16, u16);

/// The n-tuple of a flow classifier (logical ports resolved separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NTuple {
    /// IP version.
    pub family: Family,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// Source prefix.
    pub source: Option<IpNet>,
    /// Destination prefix.
    pub destination: Option<IpNet>,
    /// Source ports.
    pub source_ports: Option<PortRange>,
    /// Destination ports.
    pub destination_ports: Option<PortRange>,
}

impl NTuple {
    /// The same tuple seen from the other end (a reply).
    pub fn reversed(&self) -> NTuple {
        NTuple {
            family: self.family,
            protocol: self.protocol,
            source: self.destination,
            destination: self.source,
            source_ports: self.destination_ports,
            destination_ports: self.source_ports,
        }
    }
}

/// Overrides of a group's `ppg_n_tuple_mapping` (what a function that rewrites headers
/// emits); `None` keeps the classifier's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NTupleMapping {
    /// Source prefix.
    pub source: Option<IpNet>,
    /// Destination prefix.
    pub destination: Option<IpNet>,
    /// Source ports.
    pub source_ports: Option<PortRange>,
    /// Destination ports.
    pub destination_ports: Option<PortRange>,
}

impl NTupleMapping {
    /// Applies the overrides to a tuple.
    pub fn apply(&self, t: &NTuple) -> NTuple {
        // A prefix of the other IP version says nothing about this classifier's traffic.
        let same = |p: Option<IpNet>| p.filter(|p| Family::of(&p.addr()) == t.family);
        NTuple {
            family: t.family,
            protocol: t.protocol,
            source: same(self.source).or(t.source),
            destination: same(self.destination).or(t.destination),
            source_ports: self.source_ports.or(t.source_ports),
            destination_ports: self.destination_ports.or(t.destination_ports),
        }
    }
}

/// A flow classifier of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classifier {
    /// Classifier id.
    pub id: String,
    /// What it matches.
    pub tuple: NTuple,
    /// Where matching traffic enters the chain: the logical source port, or every instance
    /// port of the chain's network when the classifier names none.
    pub sources: Vec<Port>,
    /// The logical destination port (symmetric chains classify replies there).
    pub destination: Option<Port>,
}

/// A field of `lb_fields`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LbField {
    /// `eth_src`.
    EthSrc,
    /// `eth_dst`.
    EthDst,
    /// `ip_src`.
    IpSrc,
    /// `ip_dst`.
    IpDst,
    /// `ip_proto` (implied by the default 5-tuple).
    IpProto,
    /// `tcp_src` / `udp_src`.
    SrcPort,
    /// `tcp_dst` / `udp_dst`.
    DstPort,
}

impl LbField {
    /// Parses one `lb_fields` entry.
    pub fn parse(s: &str) -> Option<LbField> {
        Some(match s {
            "eth_src" => LbField::EthSrc,
            "eth_dst" => LbField::EthDst,
            "ip_src" => LbField::IpSrc,
            "ip_dst" => LbField::IpDst,
            "ip_proto" => LbField::IpProto,
            "tcp_src" | "udp_src" => LbField::SrcPort,
            "tcp_dst" | "udp_dst" => LbField::DstPort,
            _ => return None,
        })
    }

    /// The default: the 5-tuple.
    pub fn five_tuple() -> Vec<LbField> {
        vec![
            LbField::IpSrc,
            LbField::IpDst,
            LbField::IpProto,
            LbField::SrcPort,
            LbField::DstPort,
        ]
    }

    /// The field at the other end of the flow.
    pub fn swapped(self) -> LbField {
        match self {
            LbField::EthSrc => LbField::EthDst,
            LbField::EthDst => LbField::EthSrc,
            LbField::IpSrc => LbField::IpDst,
            LbField::IpDst => LbField::IpSrc,
            LbField::IpProto => LbField::IpProto,
            LbField::SrcPort => LbField::DstPort,
            LbField::DstPort => LbField::SrcPort,
        }
    }
}

/// One instance of a service function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// Port pair id.
    pub id: String,
    /// Where traffic enters the function.
    pub ingress: Port,
    /// Where it leaves.
    pub egress: Port,
    /// Share of new flows (`service_function_parameters.weight`).
    pub weight: u32,
    /// Why the pair takes no traffic (dead, unreachable), if so.
    pub out_of_service: Option<String>,
    /// The correlation the pair asked for (`mpls`, `nsh`), served as plain packets: the
    /// agent keeps the chain's state itself (it is the function's SFC proxy).
    pub proxied: Option<String>,
}

impl Pair {
    /// The pair may receive traffic from this host.
    pub fn usable(&self) -> bool {
        self.out_of_service.is_none()
            && self.ingress.egress_device().is_some()
            && self.egress.egress_device().is_some()
    }
}

/// A port pair group: load-balanced instances of one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// Numeric `group_id` (names its nft objects).
    pub number: u32,
    /// A tap group: copies, the original goes on.
    pub tap: bool,
    /// Hash fields (empty: the 5-tuple).
    pub lb_fields: Vec<LbField>,
    /// Re-classification after the function (`ppg_n_tuple_mapping.egress_n_tuple`).
    pub egress_mapping: NTupleMapping,
    /// With every pair out of service, traffic skips the hop instead of being dropped.
    pub fail_open: bool,
    /// Instances.
    pub pairs: Vec<Pair>,
}

/// A port chain, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Chain id.
    pub id: String,
    /// Numeric `chain_id` (names its nft objects).
    pub number: u32,
    /// Replies come back through the same instances (`chain_parameters.symmetric`).
    pub symmetric: bool,
    /// Groups in order.
    pub groups: Vec<Group>,
    /// Classifiers.
    pub classifiers: Vec<Classifier>,
    /// Service graph: chains whose classifiers take over after this chain's last hop.
    pub next_chains: Vec<u32>,
}

/// Addresses on a network and the MAC each answers with, for restoring the destination MAC
/// after the last function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkMacs {
    /// Address → MAC of the port holding it.
    pub hosts: BTreeMap<IpAddr, String>,
    /// Subnet → its gateway's MAC (a router interface), for destinations off the network.
    pub gateways: BTreeMap<IpNet, String>,
    /// This host's VXLAN device of the network, if it has one.
    pub tunnel: Option<String>,
    /// Addresses of the instance ports without port security (no security group to apply):
    /// after the last function, frames for them skip the bridge.
    pub direct: BTreeMap<IpAddr, Delivery>,
}

/// Where a frame for a port without port security is handed over directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Port id.
    pub port: String,
    /// Its MAC address.
    pub mac: String,
    /// Its tap (here) or this host's VXLAN device of its network (elsewhere).
    pub device: String,
}

/// Everything about chains that matters on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SfcModel {
    /// Chains (in any order; the planner sorts by number).
    pub chains: Vec<Chain>,
    /// Per network id.
    pub networks: BTreeMap<String, NetworkMacs>,
    /// Seconds a flow stays pinned to its instance after its last packet.
    pub pin_timeout: u32,
    /// Interface index of every device steering uses: `fwd`/`dup` and netdev hooks hold
    /// the index, so a re-created device means rules and hooks to rebuild.
    pub ifindex: BTreeMap<String, u32>,
    /// Every port pair with a port plugged here, in a chain or not: a function forwards
    /// only what is steered to it, never floods or frames of others into its bridge.
    pub functions: Vec<Pair>,
    /// The probe numbers in force (pair id → number, from the table applied last:
    /// [`crate::probe::numbers`]); a probed pair keeps its number (see [`crate::probe`]).
    pub probe_numbers: BTreeMap<String, u16>,
}
