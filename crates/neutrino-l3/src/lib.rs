//! Address-scope routing rules of a router, computed from its interfaces, gateway and
//! floating IPs. Pure data in, pure data out: the server computes it, the host agent renders
//! it into the kernel (routes, nftables marks, NAT).
//!
//! The rules (Neutron's address-scope semantics):
//! - two internal subnets of one IP version in the same scope (both unscoped counts as the
//!   same) are routed to each other without NAT; in different scopes they are blocked;
//! - internal → external: same (explicit) scope as the external subnet → routed without NAT;
//!   otherwise IPv4 with SNAT enabled → SNAT to the gateway address (an unscoped external
//!   network SNATs everything, as Neutron's L3 agent does); otherwise routed if both are
//!   unscoped, else blocked (IPv6 never NATs);
//! - a floating IP is DNATed to its fixed IP and the fixed IP SNATed to it, whatever the
//!   scopes; through it a fixed IP outside the external scope reaches the external network
//!   and every internal subnet that shares the external network's scope;
//! - a floating IP lives on the attachment whose subnet holds it: the gateway, or an
//!   interface on an external network (`router-interface-fip`); the NAT happens toward that
//!   attachment, and the fixed IP need not be on one of the router's own subnets (a router
//!   named to host it, `floating-ip-router-writable`, reaches it through its routes);
//! - a port forwarding DNATs one protocol's port (or range) of a floating IP to a port (or
//!   range) of an internal address; the floating IP lives where a 1:1 floating IP would.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One subnet a router is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Subnet id.
    pub subnet_id: String,
    /// Subnet CIDR.
    pub cidr: IpNet,
    /// The router's address on the subnet.
    pub address: IpAddr,
    /// Address scope of the subnet (through its subnet pool); `None` = no scope.
    pub scope: Option<String>,
}

impl Attachment {
    fn v6(&self) -> bool {
        matches!(self.cidr, IpNet::V6(_))
    }
}

/// A floating IP associated through this router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    /// Floating IP id.
    pub id: String,
    /// The public address.
    pub floating_ip: IpAddr,
    /// The internal address it maps to.
    pub fixed_ip: IpAddr,
    /// Its floating network is the router's gateway network. A floating IP from a subnet of
    /// that network the gateway port has no address on (e.g. a subnet of service type
    /// `network:floatingip`, announced by BGP host routes) lives on the gateway too, as
    /// upstream's L3 agent puts every floating IP on the gateway device.
    #[serde(default)]
    pub on_gateway_network: bool,
}

/// A port forwarding of a floating IP through this router (Neutron's
/// `floating-ip-port-forwarding`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForwarding {
    /// Port forwarding id.
    pub id: String,
    /// The floating IP's address.
    pub floating_ip: IpAddr,
    /// As [`FloatingIp::on_gateway_network`].
    #[serde(default)]
    pub on_gateway_network: bool,
    /// `tcp`, `udp`, `sctp`, `dccp` or `udplite`.
    pub protocol: String,
    /// External ports, inclusive.
    pub external: (u16, u16),
    /// The internal address.
    pub internal_ip: IpAddr,
    /// Internal ports, inclusive: one port, or as many as the external ones.
    pub internal: (u16, u16),
}

/// Everything the rules depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterModel {
    /// Internal interfaces.
    pub interfaces: Vec<Attachment>,
    /// Subnets of the gateway port on the external network (empty without a gateway).
    pub gateway: Vec<Attachment>,
    /// SNAT enabled on the gateway.
    pub enable_snat: bool,
    /// Associated floating IPs.
    pub floating_ips: Vec<FloatingIp>,
    /// Port forwardings of floating IPs through this router.
    #[serde(default)]
    pub port_forwardings: Vec<PortForwarding>,
}

/// How traffic between two internal subnets is treated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Between {
    /// Routed with the original addresses.
    Route,
    /// Dropped: different address scopes.
    Block,
}

/// How traffic from an internal subnet toward the external network is treated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Outbound {
    /// Routed without NAT (same scope as the external subnet).
    Route,
    /// Source-NATed to the gateway address.
    Snat {
        /// The gateway address used as source.
        to: IpAddr,
    },
    /// Dropped.
    Block,
}

/// A rule between two internal subnets (one direction; the reverse is symmetric).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalRule {
    /// Source subnet.
    pub from: String,
    /// Destination subnet.
    pub to: String,
    /// Treatment.
    #[serde(flatten)]
    pub between: Between,
}

/// A rule from an internal subnet toward one external subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalRule {
    /// Internal subnet.
    pub from: String,
    /// External subnet.
    pub to: String,
    /// Treatment.
    #[serde(flatten)]
    pub outbound: Outbound,
}

/// The 1:1 NAT of a floating IP and what its fixed IP may reach through it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingRule {
    /// Floating IP id.
    pub id: String,
    /// Public address (DNAT from, SNAT to).
    pub floating_ip: IpAddr,
    /// Internal address (DNAT to, SNAT from).
    pub fixed_ip: IpAddr,
    /// The attached subnet holding the floating IP (a gateway subnet or an interface's):
    /// where it is answered for and SNATed toward. `None`: no attachment holds it.
    pub via: Option<String>,
    /// Whether `via` is an interface (`router-interface-fip`) rather than the gateway.
    pub via_interface: bool,
    /// Internal subnets reachable through the floating IP (they share the floating IP's
    /// scope; `via` excluded).
    pub reaches: Vec<String>,
}

/// A port forwarding and where its floating IP lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardingRule {
    /// The forwarding.
    #[serde(flatten)]
    pub forwarding: PortForwarding,
    /// The attached subnet holding the floating IP (as [`FloatingRule::via`]).
    pub via: Option<String>,
}

/// The rules of one router.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterRules {
    /// Internal subnet pairs, both directions, same IP version only.
    pub internal: Vec<InternalRule>,
    /// Internal subnet → external subnet, same IP version only.
    pub external: Vec<ExternalRule>,
    /// Floating IPs.
    pub floating: Vec<FloatingRule>,
    /// Port forwardings.
    #[serde(default)]
    pub forwarded: Vec<ForwardingRule>,
}

/// The attachment that holds floating IP `ip` (and whether it is an interface): a gateway
/// subnet holding it first, then an interface's, else (`on_gateway_network`) the gateway of
/// its version.
fn holder(
    router: &RouterModel,
    ip: IpAddr,
    on_gateway_network: bool,
) -> Option<(&Attachment, bool)> {
    router
        .gateway
        .iter()
        .map(|g| (g, false))
        .chain(router.interfaces.iter().map(|i| (i, true)))
        .find(|(a, _)| a.cidr.contains(&ip))
        .or_else(|| {
            router
                .gateway
                .iter()
                .filter(|_| on_gateway_network)
                .find(|g| g.v6() == ip.is_ipv6())
                .map(|g| (g, false))
        })
}

/// Computes the rules of a router.
pub fn compute(router: &RouterModel) -> RouterRules {
    let mut rules = RouterRules::default();
    for a in &router.interfaces {
        for b in &router.interfaces {
            if a.subnet_id == b.subnet_id || a.v6() != b.v6() {
                continue;
            }
            let between = if a.scope == b.scope {
                Between::Route
            } else {
                Between::Block
            };
            rules.internal.push(InternalRule {
                from: a.subnet_id.clone(),
                to: b.subnet_id.clone(),
                between,
            });
        }
        for ext in router.gateway.iter().filter(|e| e.v6() == a.v6()) {
            // An unscoped external network never exempts anything from SNAT (Neutron's L3
            // agent adds the same-scope exemption only for a scoped external network).
            let outbound = if a.scope.is_some() && a.scope == ext.scope {
                Outbound::Route
            } else if !a.v6() && router.enable_snat {
                Outbound::Snat { to: ext.address }
            } else if a.scope == ext.scope {
                Outbound::Route
            } else {
                Outbound::Block
            };
            rules.external.push(ExternalRule {
                from: a.subnet_id.clone(),
                to: ext.subnet_id.clone(),
                outbound,
            });
        }
    }
    for fip in &router.floating_ips {
        let via = holder(router, fip.floating_ip, fip.on_gateway_network);
        let via = via.as_ref();
        let ext_scopes: Vec<&Option<String>> = via.map(|(a, _)| &a.scope).into_iter().collect();
        // The 1:1 NAT crossing: only a fixed IP outside the external scope needs its floating
        // IP to reach the internal subnets of that scope (same-scope subnets route anyway).
        let fixed_scope = router
            .interfaces
            .iter()
            .find(|i| i.cidr.contains(&fip.fixed_ip))
            .map(|i| &i.scope);
        let crossing = fixed_scope.is_some_and(|s| !ext_scopes.contains(&s));
        let via_id = via.map(|(a, _)| a.subnet_id.clone());
        let reaches = router
            .interfaces
            .iter()
            .filter(|_| crossing)
            .filter(|i| i.v6() == fip.fixed_ip.is_ipv6() && !i.cidr.contains(&fip.fixed_ip))
            .filter(|i| Some(&i.subnet_id) != via_id.as_ref())
            .filter(|i| ext_scopes.contains(&&i.scope))
            .map(|i| i.subnet_id.clone())
            .collect();
        rules.floating.push(FloatingRule {
            id: fip.id.clone(),
            floating_ip: fip.floating_ip,
            fixed_ip: fip.fixed_ip,
            via: via_id,
            via_interface: via.is_some_and(|(_, interface)| *interface),
            reaches,
        });
    }
    for pf in &router.port_forwardings {
        let via = holder(router, pf.floating_ip, pf.on_gateway_network);
        rules.forwarded.push(ForwardingRule {
            forwarding: pf.clone(),
            via: via.map(|(a, _)| a.subnet_id.clone()),
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(id: &str, cidr: &str, scope: Option<&str>) -> Attachment {
        let cidr: IpNet = cidr.parse().unwrap();
        let address = match cidr {
            IpNet::V4(n) => IpAddr::V4(n.hosts().next().unwrap()),
            IpNet::V6(n) => IpAddr::V6(n.hosts().nth(1).unwrap()),
        };
        Attachment {
            subnet_id: id.into(),
            cidr,
            address,
            scope: scope.map(str::to_string),
        }
    }

    fn between(r: &RouterRules, from: &str, to: &str) -> Between {
        r.internal
            .iter()
            .find(|x| x.from == from && x.to == to)
            .unwrap()
            .between
            .clone()
    }

    fn outbound(r: &RouterRules, from: &str) -> Outbound {
        r.external
            .iter()
            .find(|x| x.from == from)
            .unwrap()
            .outbound
            .clone()
    }

    fn router() -> RouterModel {
        RouterModel {
            interfaces: vec![
                att("a1", "10.1.0.0/24", Some("A")),
                att("a2", "10.2.0.0/24", Some("A")),
                att("b1", "10.3.0.0/24", Some("B")),
                att("n1", "10.4.0.0/24", None),
                att("n2", "10.5.0.0/24", None),
                att("a6", "2001:db8:1::/64", Some("A6")),
                att("x6", "2001:db8:2::/64", None),
            ],
            gateway: vec![
                att("ext", "172.24.4.0/24", Some("A")),
                att("ext6", "2001:db8:ff::/64", Some("A6")),
            ],
            enable_snat: true,
            floating_ips: vec![FloatingIp {
                id: "f".into(),
                floating_ip: "172.24.4.10".parse().unwrap(),
                fixed_ip: "10.3.0.5".parse().unwrap(),
                on_gateway_network: false,
            }],
            port_forwardings: Vec::new(),
        }
    }

    #[test]
    fn same_scope_routes_different_scopes_block() {
        let r = compute(&router());
        assert_eq!(between(&r, "a1", "a2"), Between::Route);
        assert_eq!(between(&r, "a2", "a1"), Between::Route);
        assert_eq!(between(&r, "a1", "b1"), Between::Block);
        assert_eq!(
            between(&r, "n1", "n2"),
            Between::Route,
            "unscoped subnets share the null scope"
        );
        assert_eq!(between(&r, "n1", "a1"), Between::Block);
        assert_eq!(between(&r, "a6", "x6"), Between::Block);
        assert!(
            r.internal.iter().all(|x| !(x.from == "a1" && x.to == "a6")),
            "no cross-version pairs"
        );
        assert_eq!(r.internal.len(), 5 * 4 + 2);
    }

    #[test]
    fn external_no_nat_in_scope_snat_otherwise() {
        let r = compute(&router());
        assert_eq!(outbound(&r, "a1"), Outbound::Route);
        assert_eq!(
            outbound(&r, "b1"),
            Outbound::Snat {
                to: "172.24.4.1".parse().unwrap()
            }
        );
        assert_eq!(
            outbound(&r, "n1"),
            Outbound::Snat {
                to: "172.24.4.1".parse().unwrap()
            }
        );
        assert_eq!(outbound(&r, "a6"), Outbound::Route);
        assert_eq!(outbound(&r, "x6"), Outbound::Block, "IPv6 never NATs");
        let mut no_snat = router();
        no_snat.enable_snat = false;
        let r = compute(&no_snat);
        assert_eq!(outbound(&r, "b1"), Outbound::Block);
        assert_eq!(outbound(&r, "a1"), Outbound::Route);
    }

    #[test]
    fn unscoped_external_network_snats_everything() {
        let mut m = router();
        for g in &mut m.gateway {
            g.scope = None;
        }
        let r = compute(&m);
        let snat = Outbound::Snat {
            to: "172.24.4.1".parse().unwrap(),
        };
        assert_eq!(outbound(&r, "n1"), snat, "unscoped to unscoped still SNATs");
        assert_eq!(outbound(&r, "a1"), snat);
        assert_eq!(
            outbound(&r, "x6"),
            Outbound::Route,
            "IPv6 unscoped to unscoped routes"
        );
        assert_eq!(outbound(&r, "a6"), Outbound::Block);
        m.enable_snat = false;
        let r = compute(&m);
        assert_eq!(outbound(&r, "n1"), Outbound::Route);
        assert_eq!(outbound(&r, "a1"), Outbound::Block);
    }

    #[test]
    fn floating_ip_in_the_external_scope_needs_no_crossing() {
        let mut m = router();
        m.floating_ips[0].fixed_ip = "10.1.0.5".parse().unwrap();
        let r = compute(&m);
        assert!(r.floating[0].reaches.is_empty());
    }

    #[test]
    fn floating_ip_crosses_into_the_external_scope() {
        let r = compute(&router());
        let f = &r.floating[0];
        assert_eq!(f.fixed_ip, "10.3.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(f.reaches, vec!["a1".to_string(), "a2".to_string()]);
        let b1 = r.external.iter().find(|x| x.from == "b1").unwrap();
        let json = serde_json::to_value(b1).unwrap();
        assert_eq!(json["verdict"], "snat");
    }

    fn fip(floating: &str, fixed: &str) -> FloatingIp {
        FloatingIp {
            id: "f".into(),
            floating_ip: floating.parse().unwrap(),
            fixed_ip: fixed.parse().unwrap(),
            on_gateway_network: false,
        }
    }

    #[test]
    fn a_forwarded_floating_ip_lives_where_a_floating_ip_would() {
        let mut m = router();
        let pf = |floating: &str, on_gateway_network| PortForwarding {
            id: "pf".into(),
            floating_ip: floating.parse().unwrap(),
            on_gateway_network,
            protocol: "tcp".into(),
            external: (2222, 2222),
            internal_ip: "10.1.0.5".parse().unwrap(),
            internal: (22, 22),
        };
        m.port_forwardings = vec![
            pf("172.24.4.20", false),
            pf("198.51.100.7", true),
            pf("198.51.100.8", false),
        ];
        let r = compute(&m);
        let via: Vec<Option<&str>> = r.forwarded.iter().map(|f| f.via.as_deref()).collect();
        assert_eq!(via, [Some("ext"), Some("ext"), None]);
        assert_eq!(r.forwarded[0].forwarding, m.port_forwardings[0]);
    }

    #[test]
    fn floating_ip_lives_on_the_gateway() {
        let r = compute(&router());
        assert_eq!(r.floating[0].via.as_deref(), Some("ext"));
        assert!(!r.floating[0].via_interface);
    }

    #[test]
    fn floating_ip_of_an_interface_network_lives_on_that_interface() {
        // router-interface-fip: 192.2.2.0/24 is an external network attached by an interface;
        // no gateway at all.
        let m = RouterModel {
            interfaces: vec![
                att("n1", "192.2.1.0/24", None),
                att("pub2", "192.2.2.0/24", None),
            ],
            gateway: vec![],
            enable_snat: true,
            floating_ips: vec![fip("192.2.2.10", "192.2.1.5")],
            port_forwardings: Vec::new(),
        };
        let r = compute(&m);
        let f = &r.floating[0];
        assert_eq!(f.via.as_deref(), Some("pub2"));
        assert!(f.via_interface);
        assert!(f.reaches.is_empty(), "same (null) scope: nothing to cross");
        assert!(r.external.is_empty());
    }

    #[test]
    fn interface_floating_ip_crosses_into_its_scope_but_not_onto_itself() {
        let mut m = router();
        m.interfaces.push(att("a-pub", "192.2.2.0/24", Some("A")));
        m.floating_ips = vec![fip("192.2.2.10", "10.3.0.5")];
        let f = &compute(&m).floating[0];
        assert_eq!(f.via.as_deref(), Some("a-pub"));
        assert!(f.via_interface);
        assert_eq!(f.reaches, vec!["a1".to_string(), "a2".to_string()]);
    }

    #[test]
    fn floating_ip_of_a_foreign_fixed_ip_is_still_mapped() {
        // floating-ip-router-writable: the fixed IP is behind another router.
        let mut m = router();
        m.floating_ips = vec![fip("172.24.4.20", "10.99.0.5")];
        let f = &compute(&m).floating[0];
        assert_eq!(f.via.as_deref(), Some("ext"));
        assert!(f.reaches.is_empty());
    }

    #[test]
    fn floating_ip_outside_every_attachment_has_no_via() {
        let mut m = router();
        m.floating_ips = vec![fip("203.0.113.9", "10.3.0.5")];
        let f = &compute(&m).floating[0];
        assert_eq!(f.via, None);
        assert!(f.reaches.is_empty());
    }

    #[test]
    fn floating_ip_of_another_gateway_network_subnet_lives_on_the_gateway() {
        // 203.0.113.0/24: a floating-IP-only subnet of the external network (no gateway
        // address there); the fixed IP is in scope B, the gateway in scope A.
        let mut m = router();
        m.floating_ips = vec![FloatingIp {
            on_gateway_network: true,
            ..fip("203.0.113.9", "10.3.0.5")
        }];
        let f = &compute(&m).floating[0];
        assert_eq!(f.via.as_deref(), Some("ext"));
        assert!(!f.via_interface);
        assert_eq!(f.reaches, vec!["a1".to_string(), "a2".to_string()]);
        // No gateway subnet of its IP version: nowhere.
        m.gateway.retain(|g| g.subnet_id == "ext6");
        assert_eq!(compute(&m).floating[0].via, None);
    }

    #[test]
    fn no_gateway_no_external_rules() {
        let mut m = router();
        m.gateway.clear();
        let r = compute(&m);
        assert!(r.external.is_empty());
        assert!(r.floating[0].reaches.is_empty());
    }
}
