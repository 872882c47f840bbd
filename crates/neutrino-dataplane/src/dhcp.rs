//! DHCP servers: one `dnsmasq` per network whose DHCP port is bound to this host, in the
//! namespace `qdhcp-<network>`, answering with static leases only. Its three files are rendered
//! here: `conf` (interface, one static range per DHCP-enabled IPv4 subnet and per DHCPv6
//! subnet, file paths; a change restarts it), `hosts` (`MAC,IP` of every port with an address
//! on the IPv4 and DHCPv6-stateful subnets, IPv6 in brackets) and `opts` (router, classless
//! static routes, DNS servers, MTU per IPv4 subnet; DNS servers per DHCPv6 subnet); dnsmasq
//! re-reads these two on SIGHUP. DHCPv6 follows Neutron's DHCP agent: a subnet with
//! `ipv6_address_mode` dhcpv6-stateful (or with neither IPv6 mode set) hands out the port's
//! fixed IP to its MAC; dhcpv6-stateless answers information requests only (DNS servers);
//! SLAAC subnets and prefixes shorter than /64 are not served. [`plan_dhcp`] compares them with what the state directory holds and whether the
//! recorded process runs, so a restarted agent adopts a server whose configuration is current.
//! dnsmasq keeps running as root (`user=root`): the agent's state directory need not be
//! readable by anyone else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

/// How dnsmasq serves an IPv6 subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dhcp6Mode {
    /// Addresses (the ports' fixed IPs, by MAC) and options.
    Stateful,
    /// Options only (information requests).
    Stateless,
}

impl Dhcp6Mode {
    /// How a DHCP-enabled IPv6 subnet is served, from its `ipv6_address_mode` (and
    /// `ipv6_ra_mode`: with neither set, stateful, as Neutron's DHCP agent does); `None` for
    /// SLAAC.
    pub fn of(subnet: &Value) -> Option<Dhcp6Mode> {
        match (
            subnet["ipv6_address_mode"].as_str(),
            subnet["ipv6_ra_mode"].as_str(),
        ) {
            (Some("dhcpv6-stateful"), _) | (None, None) => Some(Dhcp6Mode::Stateful),
            (Some("dhcpv6-stateless"), _) => Some(Dhcp6Mode::Stateless),
            _ => None,
        }
    }
}

/// One DHCPv6 subnet served on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dhcp6Subnet {
    /// Subnet id (the dnsmasq tag is `subnet-<id>`).
    pub id: String,
    /// Its prefix (/64 or longer).
    pub cidr: Ipv6Net,
    /// Addresses and options, or options only.
    pub mode: Dhcp6Mode,
    /// DNS servers (option 23).
    pub dns: Vec<Ipv6Addr>,
}

/// The DHCP server of one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpServer {
    /// Network id.
    pub network_id: String,
    /// Interface it listens on inside its namespace.
    pub interface: String,
    /// The IPv4 subnets it serves.
    pub subnets: Vec<DhcpSubnet>,
    /// The IPv6 subnets it serves.
    pub subnets6: Vec<Dhcp6Subnet>,
    /// Static leases: `(MAC, address)`.
    pub hosts: BTreeSet<(String, IpAddr)>,
    /// Host names handed out with the leases (the ports' `dns_assignment`), by address.
    pub names: BTreeMap<IpAddr, String>,
    /// The DNS domain handed out (option 15), from the ports' fully qualified names.
    pub domain: Option<String>,
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

fn addrs<T: std::str::FromStr>(v: &Value) -> Vec<T> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect()
}

/// The DHCPv6 subnet `sn` as served, if it is.
fn subnet6(sn: &Value, cidr: Ipv6Net) -> Option<Dhcp6Subnet> {
    let mode = Dhcp6Mode::of(sn)?;
    (cidr.prefix_len() >= 64).then(|| Dhcp6Subnet {
        id: text(sn, "id").to_string(),
        cidr: cidr.trunc(),
        mode,
        dns: addrs(&sn["dns_nameservers"]),
    })
}

/// The server for the DHCP port `port` (on `network`, plugged as `interface`).
pub fn server(cluster: &Cluster, network: &Value, port: &Value, interface: &str) -> DhcpServer {
    let net_id = text(network, "id");
    let mtu = crate::desired::mtu(network);
    let mut subnets = Vec::new();
    let mut subnets6 = Vec::new();
    for sn in cluster.all("subnet") {
        if text(sn, "network_id") != net_id || sn["enable_dhcp"] != true {
            continue;
        }
        let cidr = match text(sn, "cidr").parse::<IpNet>() {
            Ok(IpNet::V4(cidr)) => cidr,
            Ok(IpNet::V6(cidr)) => {
                subnets6.extend(subnet6(sn, cidr));
                continue;
            }
            Err(_) => continue,
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
    subnets6.sort_by(|a, b| a.id.cmp(&b.id));
    // Addresses are handed out on the IPv4 and the stateful DHCPv6 subnets.
    let served: BTreeSet<&str> = subnets
        .iter()
        .map(|s| s.id.as_str())
        .chain(
            subnets6
                .iter()
                .filter(|s| s.mode == Dhcp6Mode::Stateful)
                .map(|s| s.id.as_str()),
        )
        .collect();
    let mut hosts = BTreeSet::new();
    let mut names = BTreeMap::new();
    let mut domain = None;
    for p in cluster.all("port") {
        if text(p, "network_id") != net_id || text(p, "id") == text(port, "id") {
            continue;
        }
        for a in p["dns_assignment"].as_array().into_iter().flatten() {
            let (Ok(ip), host) = (text(a, "ip_address").parse::<IpAddr>(), text(a, "hostname"))
            else {
                continue;
            };
            if host.is_empty() {
                continue;
            }
            names.insert(ip, host.to_string());
            let fqdn = text(a, "fqdn").trim_end_matches('.');
            if let Some(d) = fqdn
                .strip_prefix(&format!("{host}."))
                .filter(|d| !d.is_empty())
            {
                domain.get_or_insert_with(|| d.to_string());
            }
        }
        for fixed in p["fixed_ips"].as_array().into_iter().flatten() {
            let ip = text(fixed, "ip_address").parse::<IpAddr>();
            if let Some(ip) = ip
                .ok()
                .filter(|_| served.contains(text(fixed, "subnet_id")))
            {
                hosts.insert((text(p, "mac_address").to_ascii_lowercase(), ip));
            }
        }
    }
    DhcpServer {
        network_id: net_id.to_string(),
        interface: interface.to_string(),
        subnets,
        subnets6,
        hosts,
        names,
        domain,
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
        if let Some(domain) = &self.domain {
            let _ = writeln!(conf, "domain={domain}");
        }
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
        for sn in &self.subnets6 {
            let _ = writeln!(
                conf,
                "dhcp-range=set:subnet-{},{},static,{},{}s",
                sn.id,
                sn.cidr.network(),
                sn.cidr.prefix_len(),
                LEASE_SECS
            );
            if !sn.dns.is_empty() {
                let dns: Vec<String> = sn.dns.iter().map(|a| format!("[{a}]")).collect();
                let _ = writeln!(
                    opts,
                    "tag:subnet-{},option6:dns-server,{}",
                    sn.id,
                    dns.join(",")
                );
            }
        }
        let hosts = self
            .hosts
            .iter()
            .map(|(mac, ip)| {
                let name = self
                    .names
                    .get(ip)
                    .map(|n| format!(",{n}"))
                    .unwrap_or_default();
                match ip {
                    IpAddr::V4(ip) => format!("{mac},{ip}{name}\n"),
                    IpAddr::V6(ip) => format!("{mac},[{ip}]{name}\n"),
                }
            })
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
            subnets6: vec![
                Dhcp6Subnet {
                    id: "sub-c".into(),
                    cidr: "2001:db8:c::/64".parse().unwrap(),
                    mode: Dhcp6Mode::Stateful,
                    dns: vec![],
                },
                Dhcp6Subnet {
                    id: "sub-d".into(),
                    cidr: "2001:db8:d::/64".parse().unwrap(),
                    mode: Dhcp6Mode::Stateless,
                    dns: vec![
                        "2001:db8::53".parse().unwrap(),
                        "2001:db8::54".parse().unwrap(),
                    ],
                },
            ],
            hosts: [
                ("fa:16:3e:00:00:02".to_string(), "10.0.0.5".parse().unwrap()),
                ("fa:16:3e:00:00:01".to_string(), "10.0.1.3".parse().unwrap()),
                (
                    "fa:16:3e:00:00:02".to_string(),
                    "2001:db8:c::5".parse().unwrap(),
                ),
            ]
            .into_iter()
            .collect(),
            names: Default::default(),
            domain: None,
        }
    }

    #[test]
    fn host_names_and_the_domain_go_with_the_leases() {
        let mut server = sample();
        server
            .names
            .insert("10.0.0.5".parse().unwrap(), "web".to_string());
        server.domain = Some("example.org".to_string());
        let f = server.files("/s/qdhcp-net-1");
        assert!(f.conf.contains("\ndomain=example.org\n"), "{}", f.conf);
        assert!(
            f.hosts.contains("fa:16:3e:00:00:02,10.0.0.5,web\n"),
            "{}",
            f.hosts
        );
        assert!(
            f.hosts.contains("fa:16:3e:00:00:01,10.0.1.3\n"),
            "{}",
            f.hosts
        );
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
             dhcp-range=set:subnet-sub-b,10.0.1.0,static,255.255.255.240,86400s\n\
             dhcp-range=set:subnet-sub-c,2001:db8:c::,static,64,86400s\n\
             dhcp-range=set:subnet-sub-d,2001:db8:d::,static,64,86400s\n"
        );
        assert_eq!(
            f.hosts,
            "fa:16:3e:00:00:01,10.0.1.3\nfa:16:3e:00:00:02,10.0.0.5\n\
             fa:16:3e:00:00:02,[2001:db8:c::5]\n"
        );
        assert_eq!(
            f.opts,
            "tag:subnet-sub-a,option:router,10.0.0.1\n\
             tag:subnet-sub-a,option:classless-static-route,172.16.0.0/16,10.0.0.254,0.0.0.0/0,10.0.0.1\n\
             tag:subnet-sub-a,option:dns-server,192.0.2.53\n\
             tag:subnet-sub-a,option:mtu,1450\n\
             tag:subnet-sub-b,option:router\n\
             tag:subnet-sub-b,option:mtu,1450\n\
             tag:subnet-sub-d,option6:dns-server,[2001:db8::53],[2001:db8::54]\n"
        );
    }

    #[test]
    fn dhcpv6_serves_stateful_and_stateless_subnets_only() {
        use serde_json::json;
        let cluster = Cluster::from_snapshot(&json!({"revision": 1, "resources": {
            "network": [{"id": "n1", "mtu": 1450}],
            "subnet": [
                {"id": "full", "network_id": "n1", "cidr": "2001:db8:1::/64", "enable_dhcp": true,
                 "ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": "dhcpv6-stateful"},
                {"id": "info", "network_id": "n1", "cidr": "2001:db8:2::/64", "enable_dhcp": true,
                 "ipv6_address_mode": "dhcpv6-stateless", "dns_nameservers": ["2001:db8::53"]},
                {"id": "slaac", "network_id": "n1", "cidr": "2001:db8:3::/64", "enable_dhcp": true,
                 "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"},
                {"id": "legacy", "network_id": "n1", "cidr": "2001:db8:4::/64", "enable_dhcp": true},
                {"id": "wide", "network_id": "n1", "cidr": "2001:db8:5::/56", "enable_dhcp": true},
                {"id": "off", "network_id": "n1", "cidr": "2001:db8:6::/64", "enable_dhcp": false},
            ],
            "port": [
                {"id": "dhcp", "network_id": "n1", "mac_address": "fa:16:3e:00:00:aa",
                 "fixed_ips": [{"subnet_id": "full", "ip_address": "2001:db8:1::2"}]},
                {"id": "vm", "network_id": "n1", "mac_address": "FA:16:3E:00:00:01", "fixed_ips": [
                    {"subnet_id": "full", "ip_address": "2001:db8:1::10"},
                    {"subnet_id": "info", "ip_address": "2001:db8:2::f816:3eff:fe00:1"},
                    {"subnet_id": "slaac", "ip_address": "2001:db8:3::f816:3eff:fe00:1"},
                    {"subnet_id": "legacy", "ip_address": "2001:db8:4::7"}]},
            ],
        }}));
        let net = cluster.get("network", "n1").unwrap();
        let dhcp_port = cluster.get("port", "dhcp").unwrap();
        let s = server(&cluster, net, dhcp_port, "ns-dhcp");
        let served: Vec<(&str, Dhcp6Mode)> = s
            .subnets6
            .iter()
            .map(|sn| (sn.id.as_str(), sn.mode))
            .collect();
        assert_eq!(
            served,
            vec![
                ("full", Dhcp6Mode::Stateful),
                ("info", Dhcp6Mode::Stateless),
                ("legacy", Dhcp6Mode::Stateful)
            ]
        );
        let hosts: Vec<String> = s.hosts.iter().map(|(m, ip)| format!("{m} {ip}")).collect();
        assert_eq!(
            hosts,
            vec![
                "fa:16:3e:00:00:01 2001:db8:1::10",
                "fa:16:3e:00:00:01 2001:db8:4::7"
            ]
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
