//! Security groups of one host compiled into nftables: pure data in, `nft -f` text out.
//!
//! The agent builds a [`FirewallModel`] (the ports plugged here, the rules of their groups,
//! the members of remote groups and address groups), reads Neutrino's tables with
//! `nft -j -n list table …` ([`LIST_COMMANDS`]) into [`ObservedTables`], and applies
//! [`plan`]`(model, observed).script()` with one `nft -f -`. With the tables absent the plan
//! is the full [`render`]; afterwards it is the minimal difference (one rule = one set
//! element, one member = one set element, one port = its chains and map entries). Tables
//! are never flushed or recreated, so established connections that are still allowed
//! survive every update.
//!
//! # Packet path and layout
//!
//! Ports are veth ends (`tapXXXXXXXXXXX`) enslaved to Linux bridges. This kernel has no
//! conntrack in the bridge family, so stateful filtering runs in the inet family through
//! br_netfilter (`net.bridge.bridge-nf-call-ip{,6}tables=1`), where the input and output
//! interface are the bridge, not the port. The bridge family therefore marks packets with
//! the port they come from / go to, and the inet family dispatches on the mark:
//!
//! ```text
//! table bridge neutrino
//!   set filtered          ifname                            ports with port security
//!   map from-port         ifname : mark   0x4e4f0000 | idx  (idx: stable per port, 1..65535)
//!   map to-port           ifname : mark   0x4e490000 | idx
//!   set allowed-mac       ifname . ether_addr               port MAC + pair MACs
//!   set allowed-ip4/ip6   ifname . ether_addr . ip (interval) fixed IPs, pairs, EUI-64 LLAs
//!   chain prerouting (hook prerouting, -200): @edge → jump edge-in; unfiltered → accept;
//!         mark from-port, then from-mac;
//!         MAC spoof, VLAN-tagged, ARP spoof (sender IP), IPv4 spoof (DHCP discover from
//!         0.0.0.0 excepted), IPv6 spoof (DAD from :: excepted) → drop
//!   chain forward    (hook forward, -200): mark to-port (runs before br_netfilter's hook),
//!         then to-mac
//!   set edge          ifname                  shared devices that are no port (uplinks)
//!   map from-mac / to-mac  ifname . ether_addr : mark   ports on a shared device (below)
//!   chain edge-in: from an @edge device: other MACs return (unfiltered); mark from-mac;
//!         the same spoofing checks as prerouting
//!
//! table inet neutrino
//!   map zones       ifname(bridge) : ct zone   chain zone (prerouting, raw -300):
//!                   one conntrack zone per bridge, so overlapping tenant addresses never
//!                   share connection state
//!   chain egress  (prerouting, 0): ct established,related accept; meta mark vmap @egress-ports
//!   chain ingress (forward, 0):    ct established,related accept; meta mark vmap @ingress-ports
//!   map egress-ports / ingress-ports   mark : goto e-<tap> / i-<tap>
//!   chain e-<tap>: jump egress-common; jump sg-<G>-egress (each group); drop
//!   chain i-<tap>: jump ingress-common; DHCP replies to its addresses; RA (IPv6 ports);
//!                  jump sg-<G>-ingress (each group); drop
//!   chain egress-common:  DHCP client accept, RA drop, ICMPv6 accept, DHCPv6 client accept,
//!                         DHCP/DHCPv6 server replies drop, ct invalid drop
//!   chain ingress-common: MLD query / NS / NA accept, ct invalid drop
//!   chain log-egress  (prerouting, 10) / log-ingress (forward, 10), only while a port has a
//!                  log of accepted traffic: the packets that got past `egress` / `ingress`
//!                  (accepted), per logged port `meta mark M ct state new limit … log`
//!   (a port logging drops has `limit … log prefix "DROP <port>" group N` before its
//!    default drop)
//!   chain sg-<G>-ingress / sg-<G>-egress: one rule per non-empty *layer set*:
//!       ip saddr . meta l4proto . th dport @sg-<G>-i4-cidr-port-0 accept
//!       ip saddr @rg-<R>-4 meta l4proto . th dport @sg-<G>-i4-rg-<R>-port-0 accept
//!   set rg-<R>-4/6, ag-<A>-4/6   members of remote groups / address groups (interval)
//! ```
//!
//! A port on a *shared device* ([`PortFilter::shared_device`]: a bare-metal server behind a
//! provider network's uplink, a container nested behind its VM's tap) is that device's
//! frames from and to its MACs: `mark-from-mac` / `mark-to-mac` give them the port's own
//! mark (overriding the device's, when the device is a filtered port itself), so they reach
//! the port's own chains `e-<dev>-<mac>` / `i-<dev>-<mac>`. Other frames on an uplink pass
//! unfiltered, as before.
//!
//! A security-group rule is an *element* (commented with its rule id) of the layer set of
//! its class: (group, direction, IP version, remote kind = CIDR | remote group R | address
//! group A, shape = any | protocol | protocol+ports | ICMP type+code). The kernel refuses
//! overlapping elements in one interval set, so a class is spread over layers `-0`, `-1`, …
//! with no overlap inside a layer; the number of rules evaluated per packet is the number of
//! non-empty layers, not the number of rules (5,000 disjoint rules = one lookup). Rules with
//! a remote group and any protocol are one nft rule each (`ip saddr @rg-R-4 accept`).
//!
//! Every nft rule's comment is `KEY #DIGEST`: KEY identifies it in its chain (a rule id, a
//! layer set name, `default-drop`…), DIGEST is a hash of the statement, so the planner
//! recognises unchanged rules without parsing nft's expression JSON and replaces changed
//! ones by handle.

mod applied;
mod compile;
pub mod conntrack;
mod model;
mod nft;
mod observe;
mod plan;
#[doc(hidden)]
pub mod testing;

pub use applied::{after_apply, AddedRules};
pub use compile::{LOG_GROUP, LOG_LIMIT};
pub use compile::{MARK_FROM_PORT, MARK_TO_PORT};
pub use model::{Direction, EtherType, FirewallModel, PortFilter, PortLog, Rule};
pub use nft::{Family, TABLE};
pub use observe::{ObservedTables, ParseError, LIST_COMMANDS};
pub use plan::{plan, render, Plan};
