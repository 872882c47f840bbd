//! Input of the compiler: the ports plugged on this host and the security-group data they
//! need, as the agent builds it from the server's port, security_group,
//! security_group_rule and address_group documents.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One port plugged on this host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFilter {
    /// Port id (used in comments only).
    pub port_id: String,
    /// Host-side interface of the port (`tap` + 11 characters of the port id), a bridge port.
    pub device: String,
    /// The bridge the device is enslaved to (`brq` + 11 characters of the network id). It
    /// selects the port's conntrack zone (one zone per bridge, so overlapping tenant
    /// addresses never share connection state); `None`: default zone.
    #[serde(default)]
    pub bridge: Option<String>,
    /// The port's MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The port's fixed IPs.
    #[serde(default)]
    pub fixed_ips: Vec<IpAddr>,
    /// Allowed address pairs: an address or CIDR, and a MAC (`None`: the port's MAC).
    #[serde(default)]
    pub allowed_address_pairs: Vec<(IpNet, Option<String>)>,
    /// `false`: the port is passed untouched (no anti-spoofing, no security groups).
    pub port_security_enabled: bool,
    /// Security group ids, in the port's order.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The device also carries other endpoints' frames: a provider network's uplink in
    /// front of a bare-metal server, a VM's tap in front of the containers nested in it.
    /// The port is then the device's frames from and to its MACs (its own and its address
    /// pairs'), not the whole device.
    #[serde(default)]
    pub shared_device: bool,
}

/// Direction of a security-group rule, seen from the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the port.
    Ingress,
    /// Traffic from the port.
    Egress,
}

/// IP version of a security-group rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EtherType {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// One security-group rule (Neutron's attributes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule id: the comment on its set element or nft rule.
    pub id: String,
    /// The group the rule belongs to.
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: Direction,
    /// `IPv4` or `IPv6`.
    pub ethertype: EtherType,
    /// `None`/`"any"`/`"0"`: any protocol; otherwise a name (`tcp`, `udp`, `icmp`, `icmpv6`,
    /// `ipv6-icmp`, `sctp`, ...) or a number `"0"`..`"255"`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Lowest destination port (tcp/udp/sctp/dccp/udplite) or ICMP type.
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// Highest destination port, or ICMP code.
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// Remote CIDR (source for ingress, destination for egress).
    #[serde(default)]
    pub remote_ip_prefix: Option<IpNet>,
    /// Remote security group: the addresses of its member ports.
    #[serde(default)]
    pub remote_group_id: Option<String>,
    /// Remote address group.
    #[serde(default)]
    pub remote_address_group_id: Option<String>,
}

/// Everything the host's firewall depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallModel {
    /// Ports plugged on this host.
    #[serde(default)]
    pub ports: Vec<PortFilter>,
    /// Rules of (at least) every group a port of this host is in.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Security group id → addresses (fixed IPs and allowed address pairs) of every port in
    /// the group, on every host.
    #[serde(default)]
    pub group_members: BTreeMap<String, BTreeSet<IpNet>>,
    /// Address group id → its addresses.
    #[serde(default)]
    pub address_groups: BTreeMap<String, BTreeSet<IpNet>>,
    /// Port id → what its security-group logs record (ports without a log are absent).
    #[serde(default)]
    pub logs: BTreeMap<String, PortLog>,
}

/// What the enabled security-group logs of one port record: new connections its groups
/// accept, packets its chains drop, or both. Each becomes a rate-limited nftables `log`
/// statement to the netlink log group [`crate::LOG_GROUP`], prefixed `ACCEPT <port id>` or
/// `DROP <port id>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortLog {
    /// Log the first packet of every connection the groups accept.
    pub accept: bool,
    /// Log every packet the port's chains drop.
    pub drop: bool,
}
