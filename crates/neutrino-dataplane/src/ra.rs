//! Router advertisements: one `radvd` per router namespace with an IPv6 subnet on an internal
//! interface, configured as Neutron's L3 agent does. Each `qr-` interface with IPv6 subnets
//! gets a section: the M flag when one of its subnets has `ipv6_ra_mode` dhcpv6-stateful, the
//! O flag for dhcpv6-stateless, the link MTU (network MTU, when at least 1280), the DNS servers
//! of its SLAAC subnets (RDNSS, at most three), and one prefix per subnet with a mode:
//! autonomous for slaac and dhcpv6-stateless, on-link only for dhcpv6-stateful. Hosts take the
//! router's link-local address (the source of the advertisements) as their default router.
//!
//! The configuration file is rendered here; [`plan_ra`] compares it with the state directory
//! and the recorded process: missing or dead → start; another configuration → rewrite and
//! SIGHUP (radvd re-reads it, as the L3 agent's reload does; a restart would first announce
//! a zero router lifetime); not wanted → stop and remove, so a restarted agent adopts a
//! running radvd whose configuration is current.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

use crate::cluster::{text, Cluster};
use crate::router::RouterPort;

/// Advertisement intervals in seconds (the L3 agent's `min_rtr_adv_interval` /
/// `max_rtr_adv_interval` defaults).
pub const MIN_INTERVAL: u32 = 30;
/// See [`MIN_INTERVAL`].
pub const MAX_INTERVAL: u32 = 100;
/// radvd's RDNSS section takes at most three servers.
pub const MAX_RDNSS: usize = 3;
/// The smallest IPv6 MTU; a smaller network MTU is not advertised.
pub const IPV6_MIN_MTU: u32 = 1280;

/// An IPv6 subnet's `ipv6_ra_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaMode {
    /// `slaac`.
    Slaac,
    /// `dhcpv6-stateless`.
    Stateless,
    /// `dhcpv6-stateful`.
    Stateful,
}

impl RaMode {
    /// The mode named by a subnet's `ipv6_ra_mode` (`None` when unset or unknown).
    pub fn of(subnet: &serde_json::Value) -> Option<RaMode> {
        match subnet["ipv6_ra_mode"].as_str()? {
            "slaac" => Some(RaMode::Slaac),
            "dhcpv6-stateless" => Some(RaMode::Stateless),
            "dhcpv6-stateful" => Some(RaMode::Stateful),
            _ => None,
        }
    }
}

/// One IPv6 subnet on a router interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaSubnet {
    /// Its prefix.
    pub cidr: Ipv6Net,
    /// Its `ipv6_ra_mode` (`None`: advertised as a router, without the prefix).
    pub mode: Option<RaMode>,
    /// Its DNS servers.
    pub dns: Vec<Ipv6Addr>,
}

/// The advertisements on one router interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaInterface {
    /// Interface name in the router namespace.
    pub ifname: String,
    /// The network's MTU.
    pub mtu: u32,
    /// Its IPv6 subnets, in the order of the port's fixed IPs.
    pub subnets: Vec<RaSubnet>,
}

/// The radvd of one router: its interfaces, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaConfig {
    /// Interfaces with IPv6 subnets.
    pub interfaces: Vec<RaInterface>,
}

/// A radvd as found on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedRa {
    /// Its configuration file (empty when missing).
    pub conf: String,
    /// The process named in its pid file is a live radvd started with that file.
    pub running: bool,
}

/// One change to the radvd processes; `dir` is the state directory of the router's radvd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaOp {
    /// Write the configuration, stop a running instance, start radvd in `netns`.
    Start {
        /// Router namespace.
        netns: String,
        /// State directory.
        dir: String,
        /// `radvd.conf`.
        conf: String,
    },
    /// Write the configuration and send SIGHUP.
    Reload {
        /// Router namespace.
        netns: String,
        /// State directory.
        dir: String,
        /// `radvd.conf`.
        conf: String,
    },
    /// Stop radvd and remove its state directory.
    Stop {
        /// Router namespace.
        netns: String,
        /// State directory.
        dir: String,
    },
}

/// The advertisements of a router from its plugged ports; `None` when no internal interface
/// has an IPv6 subnet (then no radvd runs).
pub fn router_advertisements(cluster: &Cluster, ports: &[RouterPort<'_>]) -> Option<RaConfig> {
    let mut config = RaConfig::default();
    for rp in ports.iter().filter(|rp| !rp.gateway) {
        let mut subnets = Vec::new();
        for fixed in rp.port["fixed_ips"].as_array().into_iter().flatten() {
            let Some(subnet) = cluster.get("subnet", text(fixed, "subnet_id")) else {
                continue;
            };
            let Ok(IpNet::V6(cidr)) = text(subnet, "cidr").parse::<IpNet>() else {
                continue;
            };
            let dns = subnet["dns_nameservers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            subnets.push(RaSubnet {
                cidr: cidr.trunc(),
                mode: RaMode::of(subnet),
                dns,
            });
        }
        if subnets.is_empty() {
            continue;
        }
        let mtu = cluster
            .get("network", text(rp.port, "network_id"))
            .map_or(0, crate::desired::mtu);
        config.interfaces.push(RaInterface {
            ifname: rp.ifname.clone(),
            mtu,
            subnets,
        });
    }
    config.interfaces.sort_by(|a, b| a.ifname.cmp(&b.ifname));
    (!config.interfaces.is_empty()).then_some(config)
}

impl RaConfig {
    /// `radvd.conf`.
    pub fn render(&self) -> String {
        let mut out = String::from("# neutrino: router advertisements\n");
        for i in &self.interfaces {
            let has = |m: RaMode| i.subnets.iter().any(|s| s.mode == Some(m));
            let _ = write!(
                out,
                "interface {}\n{{\n   AdvSendAdvert on;\n   MinRtrAdvInterval {MIN_INTERVAL};\n   \
                 MaxRtrAdvInterval {MAX_INTERVAL};\n",
                i.ifname
            );
            if i.mtu >= IPV6_MIN_MTU {
                let _ = writeln!(out, "   AdvLinkMTU {};", i.mtu);
            }
            if has(RaMode::Stateless) {
                out.push_str("   AdvOtherConfigFlag on;\n");
            }
            if has(RaMode::Stateful) {
                out.push_str("   AdvManagedFlag on;\n");
            }
            let dns: Vec<String> = i
                .subnets
                .iter()
                .filter(|s| s.mode == Some(RaMode::Slaac))
                .flat_map(|s| s.dns.iter().map(ToString::to_string))
                .take(MAX_RDNSS)
                .collect();
            if !dns.is_empty() {
                let _ = writeln!(out, "   RDNSS {} {{}};", dns.join(" "));
            }
            // Autonomous prefixes first, then the stateful ones (on-link only).
            for autonomous in [true, false] {
                for s in &i.subnets {
                    let auto = match s.mode {
                        Some(RaMode::Slaac | RaMode::Stateless) => true,
                        Some(RaMode::Stateful) => false,
                        None => continue,
                    };
                    if auto == autonomous {
                        let _ = write!(
                            out,
                            "   prefix {}\n   {{\n        AdvOnLink on;\n        AdvAutonomous {};\n   }};\n",
                            s.cidr,
                            if auto { "on" } else { "off" }
                        );
                    }
                }
            }
            out.push_str("};\n");
        }
        out
    }
}

/// The operations that bring the radvd processes found under `root` (one directory per router
/// namespace) to the desired configurations; empty when they agree.
pub fn plan_ra(
    desired: &BTreeMap<String, RaConfig>,
    observed: &BTreeMap<String, ObservedRa>,
    root: &str,
) -> Vec<RaOp> {
    let dir = |netns: &str| format!("{root}/{netns}");
    let mut ops: Vec<RaOp> = observed
        .keys()
        .filter(|netns| !desired.contains_key(*netns))
        .map(|netns| RaOp::Stop {
            netns: netns.clone(),
            dir: dir(netns),
        })
        .collect();
    for (netns, config) in desired {
        let conf = config.render();
        let (netns, dir) = (netns.clone(), dir(netns));
        match observed.get(&netns) {
            Some(have) if have.running && have.conf == conf => {}
            Some(have) if have.running => ops.push(RaOp::Reload { netns, dir, conf }),
            _ => ops.push(RaOp::Start { netns, dir, conf }),
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subnet(cidr: &str, mode: Option<RaMode>, dns: &[&str]) -> RaSubnet {
        RaSubnet {
            cidr: cidr.parse().unwrap(),
            mode,
            dns: dns.iter().map(|d| d.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn config_is_rendered_per_mode() {
        let config = RaConfig {
            interfaces: vec![
                RaInterface {
                    ifname: "qr-aaaaaaaa-aa".into(),
                    mtu: 1450,
                    subnets: vec![
                        subnet(
                            "2001:db8:a::/64",
                            Some(RaMode::Slaac),
                            &["2001:db8::53", "2001:db8::54"],
                        ),
                        subnet("2001:db8:c::/64", Some(RaMode::Stateful), &["2001:db8::99"]),
                        subnet("2001:db8:b::/64", Some(RaMode::Stateless), &[]),
                    ],
                },
                RaInterface {
                    ifname: "qr-bbbbbbbb-bb".into(),
                    mtu: 1000,
                    subnets: vec![subnet("2001:db8:d::/64", None, &["2001:db8::1"])],
                },
            ],
        };
        assert_eq!(
            config.render(),
            "# neutrino: router advertisements\n\
             interface qr-aaaaaaaa-aa\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 30;\n   \
             MaxRtrAdvInterval 100;\n   AdvLinkMTU 1450;\n   AdvOtherConfigFlag on;\n   \
             AdvManagedFlag on;\n   RDNSS 2001:db8::53 2001:db8::54 {};\n\
             \x20  prefix 2001:db8:a::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };\n\
             \x20  prefix 2001:db8:b::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous on;\n   };\n\
             \x20  prefix 2001:db8:c::/64\n   {\n        AdvOnLink on;\n        AdvAutonomous off;\n   };\n\
             };\n\
             interface qr-bbbbbbbb-bb\n{\n   AdvSendAdvert on;\n   MinRtrAdvInterval 30;\n   \
             MaxRtrAdvInterval 100;\n};\n"
        );
    }

    #[test]
    fn slaac_only_interface_has_no_flags() {
        let config = RaConfig {
            interfaces: vec![RaInterface {
                ifname: "qr-x".into(),
                mtu: 1500,
                subnets: vec![subnet(
                    "2001:db8::/64",
                    Some(RaMode::Slaac),
                    &["2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"],
                )],
            }],
        };
        let conf = config.render();
        assert!(!conf.contains("AdvManagedFlag") && !conf.contains("AdvOtherConfigFlag"));
        assert!(conf.contains("   RDNSS 2001:db8::1 2001:db8::2 2001:db8::3 {};\n"));
        assert!(conf.contains("AdvLinkMTU 1500;"));
    }

    #[test]
    fn advertisements_come_from_internal_ipv6_interfaces() {
        let cluster = Cluster::from_snapshot(&json!({
            "revision": 1,
            "resources": {
                "network": [{"id": "n1", "mtu": 1450}, {"id": "ext", "mtu": 1500}],
                "subnet": [
                    {"id": "s6", "network_id": "n1", "cidr": "2001:db8:1::/64",
                     "ipv6_ra_mode": "dhcpv6-stateful", "dns_nameservers": []},
                    {"id": "s4", "network_id": "n1", "cidr": "10.0.0.0/24"},
                    {"id": "e6", "network_id": "ext", "cidr": "2001:db8:ffff::/64",
                     "ipv6_ra_mode": "slaac"},
                ],
            },
        }));
        let internal = json!({"id": "p1", "network_id": "n1", "fixed_ips": [
            {"subnet_id": "s4", "ip_address": "10.0.0.1"},
            {"subnet_id": "s6", "ip_address": "2001:db8:1::1"}]});
        let v4_only = json!({"id": "p2", "network_id": "n1", "fixed_ips": [
            {"subnet_id": "s4", "ip_address": "10.0.0.2"}]});
        let gateway = json!({"id": "p3", "network_id": "ext", "fixed_ips": [
            {"subnet_id": "e6", "ip_address": "2001:db8:ffff::5"}]});
        let ports = [
            RouterPort {
                port: &internal,
                ifname: "qr-p1".into(),
                gateway: false,
            },
            RouterPort {
                port: &v4_only,
                ifname: "qr-p2".into(),
                gateway: false,
            },
            RouterPort {
                port: &gateway,
                ifname: "qg-p3".into(),
                gateway: true,
            },
        ];
        let config = router_advertisements(&cluster, &ports).unwrap();
        assert_eq!(
            config.interfaces,
            vec![RaInterface {
                ifname: "qr-p1".into(),
                mtu: 1450,
                subnets: vec![subnet("2001:db8:1::/64", Some(RaMode::Stateful), &[])],
            }]
        );
        assert!(router_advertisements(&cluster, &ports[1..]).is_none());
    }

    #[test]
    fn plan_starts_reloads_adopts_and_stops() {
        let config = RaConfig {
            interfaces: vec![RaInterface {
                ifname: "qr-x".into(),
                mtu: 1450,
                subnets: vec![subnet("2001:db8::/64", Some(RaMode::Slaac), &[])],
            }],
        };
        let desired: BTreeMap<String, RaConfig> =
            [("qrouter-r".to_string(), config.clone())].into();
        let conf = config.render();
        let start = RaOp::Start {
            netns: "qrouter-r".into(),
            dir: "/s/qrouter-r".into(),
            conf: conf.clone(),
        };
        assert_eq!(
            plan_ra(&desired, &BTreeMap::new(), "/s"),
            vec![start.clone()]
        );
        let running = ObservedRa {
            conf: conf.clone(),
            running: true,
        };
        let observed = [("qrouter-r".to_string(), running.clone())].into();
        assert!(plan_ra(&desired, &observed, "/s").is_empty(), "adopted");
        let stale = ObservedRa {
            conf: "old".into(),
            running: true,
        };
        let observed = [("qrouter-r".to_string(), stale)].into();
        assert!(
            matches!(&plan_ra(&desired, &observed, "/s")[..], [RaOp::Reload { conf: c, .. }] if *c == conf)
        );
        let dead = ObservedRa {
            conf: conf.clone(),
            running: false,
        };
        let observed = [("qrouter-r".to_string(), dead)].into();
        assert_eq!(plan_ra(&desired, &observed, "/s"), vec![start]);
        let observed = [("qrouter-gone".to_string(), running)].into();
        assert_eq!(
            plan_ra(&BTreeMap::new(), &observed, "/s"),
            vec![RaOp::Stop {
                netns: "qrouter-gone".into(),
                dir: "/s/qrouter-gone".into()
            }]
        );
    }
}
