//! DHCP servers: one `dnsmasq` per network whose DHCP port is bound to this host, in the
//! namespace `qdhcp-<network>`, answering with static leases only. Its three files are rendered
//! here: `conf` (interface, one static range per DHCP-enabled IPv4 subnet, file paths; a change
//! restarts it), `hosts` (`MAC,IP` of every port with an address on those subnets) and `opts`
//! (router, classless static routes, DNS servers, MTU per subnet); dnsmasq re-reads these two
//! on SIGHUP. [`plan_dhcp`] compares them with what the state directory holds and whether the
//! recorded process runs, so a restarted agent adopts a server whose configuration is current.
//! dnsmasq keeps running as root (`user=root`): the agent's state directory need not be
//! readable by anyone else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::cluster::{text, Cluster};

/// Lease time handed out (Neutron's default `dhcp_lease_duration`).
pub const LEASE_SECS: u32 = 86_400;

/// One DHCP-enabled IPv4 subnet served on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpSubnet {
    /// Subnet id (the dnsmasq tag is `subnet-<id>`).
    pub id: String,
    /// Its prefix.
    pub cidr: Ipv4Net,
    /// Default gateway (option 3, and the default route in option 121).
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Host routes `(destination, next hop)` (option 121).
    pub host_routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// The network's MTU (option 26).
    pub mtu: u32,
}

/// The DHCP server of one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpServer {
    /// Network id.
    pub network_id: String,
    /// Interface it listens on inside its namespace.
    pub interface: String,
    /// The subnets it serves.
    pub subnets: Vec<DhcpSubnet>,
    /// Static leases: `(MAC, address)`.
    pub hosts: BTreeSet<(String, Ipv4Addr)>,
}

/// The files of one server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhcpFiles {
    /// `dnsmasq --conf-file`.
    pub conf: String,
    /// `dhcp-hostsfile`.
    pub hosts: String,
    /// `dhcp-optsfile`.
    pub opts: String,
}

/// A server as found on the host: its files (empty when missing) and whether it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedDhcp {
    /// The files in its state directory.
    pub files: DhcpFiles,
    /// The process named in its pid file is a live dnsmasq.
    pub running: bool,
}

/// One change to the DHCP servers; `dir` is the server's state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhcpOp {
    /// Write all files, stop a running instance, start dnsmasq in `netns`.
    Start {
        /// Namespace.
        netns: String,
        /// State directory.
        dir: String,
        /// Files to write.
        files: DhcpFiles,
    },
    /// Write the hosts and options files and send SIGHUP.
    Reload {
        /// Namespace.
        netns: String,
        /// State directory.
        dir: String,
        /// Files to write.
        files: DhcpFiles,
    },
    /// Stop the server and remove its state directory.
    Stop {
        /// Namespace.
        netns: String,
        /// State directory.
        dir: String,
    },
}

/// Whether a port asks to be addressed by DHCP instead of by the agent
/// (`binding:profile` `{"neutrino_dhcp": true}`).
pub fn is_dhcp_client(port: &Value) -> bool {
    let flag = &port["binding:profile"]["neutrino_dhcp"];
    *flag == true
        || flag
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

fn v4(fixed: &Value) -> Option<Ipv4Addr> {
    text(fixed, "ip_address").parse().ok()
}

/// The server for the DHCP port `port` (on `network`, plugged as `interface`).
pub fn server(cluster: &Cluster, network: &Value, port: &Value, interface: &str) -> DhcpServer {
    let net_id = text(network, "id");
    let mtu = crate::desired::mtu(network);
    let mut subnets = Vec::new();
    for sn in cluster.all("subnet") {
        if text(sn, "network_id") != net_id || sn["enable_dhcp"] != true {
            continue;
        }
        let Ok(cidr) = text(sn, "cidr").parse::<Ipv4Net>() else {
            continue;
        };
        let addrs = |v: &Value| -> Vec<Ipv4Addr> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect()
        };
        let host_routes = sn["host_routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|hr| {
                let dst = text(hr, "destination").parse::<Ipv4Net>().ok()?;
                Some((dst.trunc(), text(hr, "nexthop").parse().ok()?))
            })
            .collect();
        subnets.push(DhcpSubnet {
            id: text(sn, "id").to_string(),
            cidr: cidr.trunc(),
            gateway: text(sn, "gateway_ip").parse().ok(),
            dns: addrs(&sn["dns_nameservers"]),
            host_routes,
            mtu,
        });
    }
    subnets.sort_by(|a, b| a.id.cmp(&b.id));
    let served: BTreeSet<&str> = subnets.iter().map(|s| s.id.as_str()).collect();
    let mut hosts = BTreeSet::new();
    for p in cluster.all("port") {
        if text(p, "network_id") != net_id || text(p, "id") == text(port, "id") {
            continue;
        }
        for fixed in p["fixed_ips"].as_array().into_iter().flatten() {
            if let Some(ip) = v4(fixed).filter(|_| served.contains(text(fixed, "subnet_id"))) {
                hosts.insert((text(p, "mac_address").to_ascii_lowercase(), ip));
            }
        }
    }
    DhcpServer {
        network_id: net_id.to_string(),
        interface: interface.to_string(),
        subnets,
        hosts,
    }
}

impl DhcpServer {
    /// The files of this server with state directory `dir`.
    pub fn files(&self, dir: &str) -> DhcpFiles {
        let mut conf = format!(
            "# neutrino: DHCP of network {}\nno-resolv\nno-hosts\nport=0\nbind-interfaces\n\
             interface={}\nexcept-interface=lo\nuser=root\ndhcp-authoritative\npid-file={dir}/pid\n\
             dhcp-leasefile={dir}/leases\ndhcp-hostsfile={dir}/hosts\ndhcp-optsfile={dir}/opts\n\
             log-facility={dir}/log\n",
            self.network_id, self.interface
        );
        let mut opts = String::new();
        for sn in &self.subnets {
            let tag = format!("tag:subnet-{}", sn.id);
            let _ = writeln!(
                conf,
                "dhcp-range=set:subnet-{},{},static,{},{}s",
                sn.id,
                sn.cidr.network(),
                sn.cidr.netmask(),
                LEASE_SECS
            );
            match sn.gateway {
                Some(gw) => {
                    let _ = writeln!(opts, "{tag},option:router,{gw}");
                }
                None => {
                    let _ = writeln!(opts, "{tag},option:router");
                }
            }
            if !sn.host_routes.is_empty() {
                // With option 121 clients ignore option 3: the default route goes in too.
                let mut routes: Vec<String> = sn
                    .host_routes
                    .iter()
                    .map(|(dst, via)| format!("{dst},{via}"))
                    .collect();
                if let Some(gw) = sn.gateway {
                    routes.push(format!("0.0.0.0/0,{gw}"));
                }
                let _ = writeln!(
                    opts,
                    "{tag},option:classless-static-route,{}",
                    routes.join(",")
                );
            }
            if !sn.dns.is_empty() {
                let dns: Vec<String> = sn.dns.iter().map(ToString::to_string).collect();
                let _ = writeln!(opts, "{tag},option:dns-server,{}", dns.join(","));
            }
            let _ = writeln!(opts, "{tag},option:mtu,{}", sn.mtu);
        }
        let hosts = self
            .hosts
            .iter()
            .map(|(mac, ip)| format!("{mac},{ip}\n"))
            .collect();
        DhcpFiles { conf, hosts, opts }
    }
}

/// The operations that bring the servers found under `root` (one directory per namespace)
/// to the desired ones; empty when they agree.
pub fn plan_dhcp(
    desired: &BTreeMap<String, DhcpServer>,
    observed: &BTreeMap<String, ObservedDhcp>,
    root: &str,
) -> Vec<DhcpOp> {
    let mut ops = Vec::new();
    for netns in observed.keys() {
        if !desired.contains_key(netns) {
            ops.push(DhcpOp::Stop {
                netns: netns.clone(),
                dir: format!("{root}/{netns}"),
            });
        }
    }
    for (netns, server) in desired {
        let dir = format!("{root}/{netns}");
        let files = server.files(&dir);
        let (have, netns) = (observed.get(netns), netns.clone());
        match have {
            Some(h) if h.running && h.files.conf == files.conf => {
                if h.files != files {
                    ops.push(DhcpOp::Reload { netns, dir, files });
                }
            }
            _ => ops.push(DhcpOp::Start { netns, dir, files }),
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DhcpServer {
        DhcpServer {
            network_id: "net-1".into(),
            interface: "ns-port1".into(),
            subnets: vec![
                DhcpSubnet {
                    id: "sub-a".into(),
                    cidr: "10.0.0.0/24".parse().unwrap(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                    dns: vec!["192.0.2.53".parse().unwrap()],
                    host_routes: vec![(
                        "172.16.0.0/16".parse().unwrap(),
                        "10.0.0.254".parse().unwrap(),
                    )],
                    mtu: 1450,
                },
                DhcpSubnet {
                    id: "sub-b".into(),
                    cidr: "10.0.1.0/28".parse().unwrap(),
                    gateway: None,
                    dns: vec![],
                    host_routes: vec![],
                    mtu: 1450,
                },
            ],
            hosts: [
                ("fa:16:3e:00:00:02".to_string(), "10.0.0.5".parse().unwrap()),
                ("fa:16:3e:00:00:01".to_string(), "10.0.1.3".parse().unwrap()),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn files_are_rendered() {
        let f = sample().files("/s/qdhcp-net-1");
        assert_eq!(
            f.conf,
            "# neutrino: DHCP of network net-1\nno-resolv\nno-hosts\nport=0\nbind-interfaces\n\
             interface=ns-port1\nexcept-interface=lo\nuser=root\ndhcp-authoritative\n\
             pid-file=/s/qdhcp-net-1/pid\ndhcp-leasefile=/s/qdhcp-net-1/leases\n\
             dhcp-hostsfile=/s/qdhcp-net-1/hosts\ndhcp-optsfile=/s/qdhcp-net-1/opts\n\
             log-facility=/s/qdhcp-net-1/log\n\
             dhcp-range=set:subnet-sub-a,10.0.0.0,static,255.255.255.0,86400s\n\
             dhcp-range=set:subnet-sub-b,10.0.1.0,static,255.255.255.240,86400s\n"
        );
        assert_eq!(
            f.hosts,
            "fa:16:3e:00:00:01,10.0.1.3\nfa:16:3e:00:00:02,10.0.0.5\n"
        );
        assert_eq!(
            f.opts,
            "tag:subnet-sub-a,option:router,10.0.0.1\n\
             tag:subnet-sub-a,option:classless-static-route,172.16.0.0/16,10.0.0.254,0.0.0.0/0,10.0.0.1\n\
             tag:subnet-sub-a,option:dns-server,192.0.2.53\n\
             tag:subnet-sub-a,option:mtu,1450\n\
             tag:subnet-sub-b,option:router\n\
             tag:subnet-sub-b,option:mtu,1450\n"
        );
    }

    #[test]
    fn plan_starts_reloads_adopts_and_stops() {
        let server = sample();
        let desired: BTreeMap<String, DhcpServer> =
            [("qdhcp-net-1".to_string(), server.clone())].into();
        let files = server.files("/s/qdhcp-net-1");
        // Nothing there: start.
        let ops = plan_dhcp(&desired, &BTreeMap::new(), "/s");
        assert!(matches!(&ops[..], [DhcpOp::Start { netns, .. }] if netns == "qdhcp-net-1"));
        // Running with the same files (a restarted agent): adopted, nothing to do.
        let running = ObservedDhcp {
            files: files.clone(),
            running: true,
        };
        let observed = [("qdhcp-net-1".to_string(), running.clone())].into();
        assert!(plan_dhcp(&desired, &observed, "/s").is_empty());
        // Another host: reload only.
        let mut stale = running.clone();
        stale.files.hosts = String::new();
        let observed = [("qdhcp-net-1".to_string(), stale)].into();
        assert!(matches!(
            &plan_dhcp(&desired, &observed, "/s")[..],
            [DhcpOp::Reload { .. }]
        ));
        // Not running, or another range: start again.
        let mut dead = running.clone();
        dead.running = false;
        let observed = [("qdhcp-net-1".to_string(), dead)].into();
        assert!(matches!(
            &plan_dhcp(&desired, &observed, "/s")[..],
            [DhcpOp::Start { .. }]
        ));
        // Not wanted any more: stop.
        let observed = [("qdhcp-net-2".to_string(), running)].into();
        let ops = plan_dhcp(&BTreeMap::new(), &observed, "/s");
        assert_eq!(
            ops,
            vec![DhcpOp::Stop {
                netns: "qdhcp-net-2".into(),
                dir: "/s/qdhcp-net-2".into()
            }]
        );
    }
}
