//! Distributed routers (DVR) on one host.
//!
//! A distributed router is realised on every host that has instance ports on one of its
//! interface subnets, and on its SNAT host (where its gateway port is bound):
//!
//! - a local `qrouter-<id>` namespace holding every interface of the router, each carrying
//!   the subnet's gateway address with a MAC of this host's own ([`names::dvr_mac`]), so
//!   traffic between the router's subnets is routed on the sending host; the address-scope
//!   table applies there as on a centralized router;
//! - permanent neighbour entries for every address on the router's subnets, so the local
//!   router never asks the overlay who has an address;
//! - a bridge-family table (`bridge neutrino_dvr`) that drops ARP to or from the gateway
//!   addresses on the VXLAN devices: instances learn their gateway from the local router
//!   only, and the copies on other hosts never answer;
//! - static forwarding entries for the other hosts' router MACs;
//! - when the router has a gateway: per IPv4 subnet an `ip rule` sending what the main table
//!   cannot route (no default route there) to the subnet's SNAT port. On the SNAT host the
//!   gateway port and the SNAT ports are plugged into `snat-<id>`, which SNATs and holds the
//!   floating IPs (Neutron's `dvr_no_external` compute mode: floating IPs stay central).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::desired::{Desired, HostConfig};
use crate::names;
use crate::state::{FdbEntry, Neighbor, NftTable, SrcRoute};

/// Device owner of a distributed router's interfaces.
pub const INTERFACE_OWNER: &str = "network:router_interface_distributed";
/// Device owner of a distributed router's SNAT ports.
pub const SNAT_OWNER: &str = "network:router_centralized_snat";
/// Name of the host-level ARP guard table (bridge family).
pub const ARP_GUARD_TABLE: &str = "neutrino_dvr";
/// `nft -f` script removing the ARP guard table.
pub const ARP_GUARD_DELETE: &str =
    "table bridge neutrino_dvr {}\ndelete table bridge neutrino_dvr\n";

/// Whether the router is distributed.
pub fn is_distributed(cluster: &Cluster, router: &str) -> bool {
    cluster
        .get("router", router)
        .is_some_and(|r| r["distributed"] == true)
}

fn subnet_ids(port: &Value) -> impl Iterator<Item = &str> {
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| text(f, "subnet_id"))
}

fn addresses(port: &Value) -> impl Iterator<Item = (&str, IpAddr)> {
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((text(f, "subnet_id"), text(f, "ip_address").parse().ok()?)))
}

/// The hosts that realise each distributed router: those with instance ports on one of its
/// interface subnets, and its SNAT host.
pub fn placement(cluster: &Cluster) -> BTreeMap<String, BTreeSet<String>> {
    let mut subnet_hosts: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for port in cluster.all("port") {
        let host = text(port, "binding:host_id");
        let owner = text(port, "device_owner");
        // Trunk subports count: they are instance interfaces riding on their parent's tap.
        if host.is_empty() || owner.starts_with("network:") {
            continue;
        }
        for subnet in subnet_ids(port) {
            subnet_hosts.entry(subnet).or_default().insert(host);
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for port in cluster.all("port") {
        let router = text(port, "device_id");
        match text(port, "device_owner") {
            INTERFACE_OWNER => {
                let hosts = out.entry(router.to_string()).or_default();
                for subnet in subnet_ids(port) {
                    let found = subnet_hosts.get(subnet).into_iter().flatten();
                    hosts.extend(found.map(|h| h.to_string()));
                }
            }
            "network:router_gateway" if is_distributed(cluster, router) => {
                let host = text(port, "binding:host_id");
                if !host.is_empty() {
                    out.entry(router.to_string())
                        .or_default()
                        .insert(host.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// The distributed interface ports this host realises.
pub fn local_interfaces(
    cluster: &Cluster,
    placement: &BTreeMap<String, BTreeSet<String>>,
    host: &str,
) -> BTreeSet<String> {
    cluster
        .all("port")
        .filter(|p| {
            text(p, "device_owner") == INTERFACE_OWNER
                && placement
                    .get(text(p, "device_id"))
                    .is_some_and(|hosts| hosts.contains(host))
        })
        .map(|p| text(p, "id").to_string())
        .collect()
}

/// Adds what a host needs beyond the plugged interfaces of its local distributed routers:
/// neighbours, source routes toward the SNAT ports, forwarding entries for the other hosts'
/// router MACs, and the ARP guard. `local_networks` maps a network here to its VXLAN device.
pub fn add_host_part(
    cluster: &Cluster,
    cfg: &HostConfig,
    placement: &BTreeMap<String, BTreeSet<String>>,
    here: &BTreeSet<String>,
    tunnels: &BTreeMap<String, IpAddr>,
    local_networks: &BTreeMap<String, String>,
    out: &mut Desired,
) {
    let mut guard = String::new();
    for id in here {
        let Some(port) = cluster.get("port", id) else {
            continue;
        };
        let router = text(port, "device_id");
        let network = text(port, "network_id");
        let Some(vxlan) = local_networks.get(network) else {
            continue;
        };
        let ifname = names::router_interface(id, false);
        let netns = names::router_netns(&cfg.netns_prefix, router);
        let Some(ns) = out.state.namespaces.get_mut(&netns) else {
            continue;
        };
        let subnets: BTreeSet<&str> = subnet_ids(port).collect();
        for other in cluster.all("port") {
            let owner = text(other, "device_owner");
            if text(other, "network_id") != network
                || owner == INTERFACE_OWNER
                || owner == "network:floatingip"
            {
                continue;
            }
            for (subnet, ip) in addresses(other) {
                if subnets.contains(subnet) {
                    ns.neighbors.insert(Neighbor {
                        dev: ifname.clone(),
                        ip,
                        mac: text(other, "mac_address").to_ascii_lowercase(),
                    });
                }
            }
            if owner == SNAT_OWNER && text(other, "device_id") == router {
                for (subnet, via) in addresses(other).filter(|(_, a)| a.is_ipv4()) {
                    let cidr = cluster
                        .get("subnet", subnet)
                        .and_then(|s| text(s, "cidr").parse::<IpNet>().ok());
                    if let (Some(from), true) = (cidr, subnets.contains(subnet)) {
                        ns.src_routes.insert(SrcRoute {
                            from: from.trunc(),
                            via,
                            dev: ifname.clone(),
                        });
                    }
                }
            }
        }
        for host in placement.get(router).into_iter().flatten() {
            let Some(dst) = tunnels.get(host).copied() else {
                continue;
            };
            if host != &cfg.host && dst != cfg.tunnel_ip {
                out.state.fdb.insert(FdbEntry {
                    dev: vxlan.clone(),
                    mac: names::dvr_mac(host, id),
                    dst,
                });
            }
        }
        for (_, gateway) in addresses(port).filter(|(_, a)| a.is_ipv4()) {
            for dir in ["iifname", "oifname"] {
                for field in ["saddr", "daddr"] {
                    let _ = writeln!(guard, "    {dir} \"{vxlan}\" arp {field} ip {gateway} drop");
                }
            }
        }
    }
    if !guard.is_empty() {
        let body = format!(
            "  chain forward {{\n    type filter hook forward priority -10; policy accept;\n{guard}  }}\n"
        );
        let digest = crate::router::digest(&body);
        let script = format!(
            "table bridge {ARP_GUARD_TABLE} {{}}\ndelete table bridge {ARP_GUARD_TABLE}\ntable bridge {ARP_GUARD_TABLE} {{\n  comment \"{digest}\"\n{body}}}\n"
        );
        out.state.arp_guard = Some(NftTable { digest, script });
    }
}
