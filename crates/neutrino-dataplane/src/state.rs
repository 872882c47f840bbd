//! The kernel state of one host that the agent manages, in one shape for both what should be
//! ([`crate::desired`]) and what is ([`crate::observe`]). Only what the agent sets is
//! represented, so comparing the two says exactly what to change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

/// Everything the agent manages on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// Linux bridges, by name.
    pub bridges: BTreeMap<String, Bridge>,
    /// VXLAN devices, by name.
    pub vxlans: BTreeMap<String, Vxlan>,
    /// Static forwarding entries on VXLAN devices.
    pub fdb: BTreeSet<FdbEntry>,
    /// Host-side ends of port veth pairs, by name.
    pub taps: BTreeMap<String, Tap>,
    /// Network namespaces (instances), by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// The bridge-family table that keeps distributed routers' gateway ARP off the overlay
    /// (`bridge neutrino_dvr`, see [`crate::dvr`]).
    pub arp_guard: Option<NftTable>,
    /// Provider-network uplinks (physical interfaces and VLAN sub-interfaces), by name.
    pub uplinks: BTreeMap<String, Uplink>,
    /// Trunk subports' VLAN devices on their parent's tap (`vlan`: the tap and VLAN id),
    /// enslaved to the subport network's bridge, by name (see [`crate::trunk`]).
    pub subports: BTreeMap<String, Uplink>,
}

/// An interface carrying a flat or VLAN provider network, enslaved to the network's bridge
/// (see [`crate::provider`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uplink {
    /// VLAN sub-interfaces: `(parent interface, VLAN id)`; `None`: the physical interface.
    pub vlan: Option<(String, u16)>,
    /// The bridge it is a port of.
    pub master: Option<String>,
}

/// A Linux bridge (one per network present on the host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    /// MTU.
    pub mtu: u32,
}

/// A VXLAN device enslaved to its network's bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vxlan {
    /// Segment id.
    pub vni: u32,
    /// This host's tunnel address.
    pub local: IpAddr,
    /// UDP destination port.
    pub port: u16,
    /// MTU.
    pub mtu: u32,
    /// The bridge it is a port of.
    pub master: Option<String>,
}

/// One static forwarding entry: frames to `mac` go to the tunnel endpoint `dst`; the all-zero
/// MAC marks a flooding destination (broadcast, unknown unicast, multicast).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    /// VXLAN device.
    pub dev: String,
    /// Destination MAC (`00:00:00:00:00:00` for flooding).
    pub mac: String,
    /// Remote tunnel endpoint.
    pub dst: IpAddr,
}

/// The all-zero MAC of flooding entries.
pub const FLOOD_MAC: &str = "00:00:00:00:00:00";

/// Host-side end of a port's veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    /// MTU.
    pub mtu: u32,
    /// The bridge it is a port of.
    pub master: Option<String>,
    /// Where the other end lives: `(namespace, interface name)`.
    pub peer: (String, String),
}

/// An instance's network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    /// Interfaces (the instance ends of veth pairs), by name.
    pub links: BTreeMap<String, NsLink>,
    /// Addresses: `(interface, address/prefix)`.
    pub addrs: BTreeSet<(String, IpNet)>,
    /// Routes that are not the kernel's own connected routes.
    pub routes: BTreeSet<Route>,
    /// IP forwarding on (routers).
    pub forwarding: bool,
    /// The agent's nftables table inside the namespace (routers: NAT and scope rules).
    pub nft: Option<NftTable>,
    /// Routers with metering labels: the metering table ([`crate::meter`]).
    pub meter: Option<NftTable>,
    /// Routers with conntrack helpers: the helpers table ([`crate::conntrack_helpers`]).
    pub helpers: Option<NftTable>,
    /// Desired state only: interfaces addressed by a DHCP client inside the instance, whose
    /// addresses and routes the agent leaves alone.
    pub dhcp_clients: BTreeSet<String>,
    /// Permanent neighbour entries (distributed routers know every address on their subnets).
    pub neighbors: BTreeSet<Neighbor>,
    /// Proxied neighbours: `(interface, IPv6 address)` the namespace answers neighbour
    /// solicitations for (routers' NDP proxies; `proxy_ndp` is on with forwarding).
    pub ndp_proxies: BTreeSet<(String, std::net::Ipv6Addr)>,
    /// Source-based default routes (distributed routers: per subnet toward its SNAT port).
    pub src_routes: BTreeSet<SrcRoute>,
    /// Desired state only: the namespace belongs to a container runtime (the path it gave
    /// the CNI plugin, `binding:profile` `neutrino:netns`). The agent never creates or
    /// deletes it: it bind-mounts that path under the managed name and later removes only
    /// the mount.
    pub external: Option<String>,
}

/// A permanent neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbor {
    /// Interface.
    pub dev: String,
    /// Address.
    pub ip: IpAddr,
    /// Link-layer address.
    pub mac: String,
}

/// Traffic from `from` that the main table cannot route goes `via` on `dev`: an `ip rule`
/// (priority [`SrcRoute::PRIORITY`]) into a table of its own holding that default route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SrcRoute {
    /// Source prefix.
    pub from: IpNet,
    /// Next hop.
    pub via: IpAddr,
    /// Interface.
    pub dev: String,
}

impl SrcRoute {
    /// Priority of the rules: after `main` (32766) and `default` (32767).
    pub const PRIORITY: u32 = 40000;

    /// The routing table of this source prefix: derived from it, so it is stable.
    pub fn table(&self) -> u32 {
        let h = self.from.to_string().bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        1000 + h % 1_000_000
    }
}

/// An nftables table the agent loads whole, known by the digest of its rules (kept in the
/// table's comment, so the observed table can be compared without parsing it back).
#[derive(Clone, Debug, Eq)]
pub struct NftTable {
    /// Digest of the rules.
    pub digest: String,
    /// The `nft -f` script that loads it (empty when observed).
    pub script: String,
}

impl PartialEq for NftTable {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

/// An instance's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsLink {
    /// MAC address, lower case.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
}

/// A route inside an instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` / `::/0` for the default route).
    pub dst: IpNet,
    /// Next hop.
    pub via: IpAddr,
    /// Outgoing interface.
    pub dev: String,
}
