//! What one host's kernel should hold, computed from the cluster mirror.
//!
//! - Every network with a port bound to this host gets a bridge and, for VXLAN networks, a
//!   VXLAN device with this host's tunnel address, enslaved to the bridge; flat and VLAN
//!   networks enslave the mapped interface or its VLAN sub-interface ([`crate::provider`]).
//! - Every port bound here (instance ports: not `network:*` owners) gets a veth pair: the
//!   `tap…` end on the bridge, the other end in the instance's namespace with the port's MAC,
//!   MTU, fixed IPs (prefix length from the subnet), default routes through the subnets'
//!   gateways and the subnets' host routes.
//! - Router ports bound here (the server schedules each router on one host) are plugged the
//!   same way into the router's namespace (`qr-…` inside, `qg-…` for the gateway), which also
//!   gets forwarding, extra routes, floating IPs and the scope/NAT table ([`crate::router`]),
//!   and router advertisements on its IPv6 interfaces ([`crate::ra`]).
//! - The DHCP port of a network bound here is plugged into `qdhcp-<network>` (`ns-…`) with its
//!   addresses, and the network gets a DHCP server ([`crate::dhcp`]). An instance port with
//!   `binding:profile` `{"neutrino_dhcp": true}` gets no addresses or routes from the agent:
//!   its instance asks the DHCP server for them.
//! - A pooled container port (`device_owner` [`POOL_OWNER`]) is an instance parked in the
//!   agent's `<prefix>pool` namespace; when a container takes it, the plan moves the
//!   interface into the container's namespace ([`crate::plan`]).
//! - Distributed routers ([`crate::dvr`]): a local copy on every host with instances on
//!   their subnets; their gateway and SNAT ports go into `snat-<router>` on the SNAT host.
//! - Toward every other host that has ports on the same network: a flooding entry (broadcast
//!   and ARP go to those hosts only) and a static entry per remote MAC; no flood-and-learn.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::dhcp::{self, DhcpServer};
use crate::dvr;
use crate::names;
use crate::provider::{self, Segment};
use crate::ra::{router_advertisements, RaConfig};
use crate::router::{add_router, RouterPort};
use crate::state::{Bridge, FdbEntry, HostState, NsLink, Route, Tap, Uplink, Vxlan, FLOOD_MAC};

/// This host's settings.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The host name ports are bound to (`binding:host_id`).
    pub host: String,
    /// This host's VXLAN tunnel endpoint.
    pub tunnel_ip: IpAddr,
    /// UDP port of VXLAN.
    pub vxlan_port: u16,
    /// Prefix of the namespace names this agent owns (lets several agents share one machine).
    pub netns_prefix: String,
    /// Physical network → host interface, for flat and VLAN provider networks.
    pub interface_mappings: BTreeMap<String, String>,
    /// The L2 gateway device this host is (`device_name` of networking-l2gw), if any.
    pub l2gw_device: Option<String>,
}

/// What should happen to one port bound to this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortOutcome {
    /// Plugged as this veth pair: `(tap, namespace, interface)`; `up` is its admin state.
    Plug {
        /// Host-side interface.
        tap: String,
        /// Instance namespace.
        netns: String,
        /// Interface name inside the namespace.
        ifname: String,
        /// `admin_state_up`.
        up: bool,
    },
    /// Cannot be plugged here (the reason is logged and the port reported in ERROR).
    Fail(String),
}

/// The desired state and the fate of every port bound to the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Kernel state to reach.
    pub state: HostState,
    /// Ports bound here, by id.
    pub ports: BTreeMap<String, PortOutcome>,
    /// DHCP servers to run, by namespace.
    pub dhcp: BTreeMap<String, DhcpServer>,
    /// Router advertisement daemons to run, by router namespace.
    pub ra: BTreeMap<String, RaConfig>,
    /// What the named counters of each router namespace's metering table count.
    pub meters: BTreeMap<String, BTreeMap<String, crate::meter::Counted>>,
    /// Ports with no interface of their own that this host filters where their frames
    /// enter it, by id (see [`edge_ports`]).
    pub edge_ports: BTreeMap<String, EdgePort>,
    /// Trunk subports bound here, by port id ([`crate::trunk`]).
    pub subports: BTreeMap<String, crate::trunk::SubportOutcome>,
    /// ARP requests the bridges answer themselves (a border gateway's remote MACs with an
    /// address; applied with the Local IPs' answers, see [`crate::local_ip`]).
    pub arp_answers: BTreeSet<crate::local_ip::ArpAnswer>,
    /// This gateway host's tunnels to other clouds' border gateways ([`crate::l2gw`]).
    pub borders: Vec<crate::l2gw::Border>,
}

/// A port filtered at a device it shares with other endpoints: a bare-metal server's port
/// (`binding:vnic_type` `baremetal`) on a flat or VLAN provider network, at this host's
/// uplink into that network; a container nested in a VM with a macvlan device
/// (`device_owner` `compute:container-nested`), at its VM's tap. Its frames are told apart
/// by their MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgePort {
    /// The shared device: the bridge's uplink (interface or VLAN sub-interface), or the
    /// VM's tap.
    pub device: String,
    /// The network's bridge (the port's conntrack zone).
    pub bridge: String,
}

/// `device_owner` of containers nested in a VM (the CNI plugin's nested modes).
pub const NESTED_OWNER: &str = "compute:container-nested";

/// A macvlan-nested container's port whose VM port (`binding:profile`
/// `neutrino:nested_parent`) is plugged here: filtered at the VM's tap by its own MAC, so its
/// own groups apply to it, not the VM's. (Containers of one VM reach each other through the
/// VM's macvlan bridge without crossing the tap: that traffic is out of reach.)
fn nested_edge(
    cluster: &Cluster,
    port: &Value,
    plugged: &BTreeMap<String, PortOutcome>,
) -> Option<EdgePort> {
    let profile = &port["binding:profile"];
    if text(port, "device_owner") != NESTED_OWNER || profile["neutrino:nested_mode"] != "macvlan" {
        return None;
    }
    let parent_id = profile["neutrino:nested_parent"].as_str()?;
    let PortOutcome::Plug { tap, .. } = plugged.get(parent_id)? else {
        return None;
    };
    let parent = cluster.get("port", parent_id)?;
    Some(EdgePort {
        device: tap.clone(),
        bridge: names::bridge(text(parent, "network_id")),
    })
}

/// `binding:vnic_type` of bare-metal servers' ports.
pub const BAREMETAL_VNIC: &str = "baremetal";

/// The ports this host filters on a shared device: macvlan-nested containers of the VMs
/// plugged here (see [`nested_edge`]), and the bare-metal ports bound (to their server) on a provider
/// network whose uplink this host has on a bridge (so some of its ports use the network).
/// Every host with the uplink filters them, so whatever enters a host from the server, or
/// leaves it toward the server, passes the server's groups; what the physical network
/// carries between servers without crossing a host is out of reach.
pub fn edge_ports(
    cluster: &Cluster,
    cfg: &HostConfig,
    state: &HostState,
    plugged: &BTreeMap<String, PortOutcome>,
) -> BTreeMap<String, EdgePort> {
    let mut out = BTreeMap::new();
    for port in cluster.all("port") {
        if let Some(edge) = nested_edge(cluster, port, plugged) {
            out.insert(text(port, "id").to_string(), edge);
            continue;
        }
        if text(port, "binding:vnic_type") != BAREMETAL_VNIC
            || text(port, "binding:host_id").is_empty()
        {
            continue;
        }
        let net_id = text(port, "network_id");
        let Some(net) = cluster.get("network", net_id) else {
            continue;
        };
        let Ok(Segment::Uplink { name, .. }) = provider::segment(net, &cfg.interface_mappings)
        else {
            continue;
        };
        let bridge = names::bridge(net_id);
        if state
            .uplinks
            .get(&name)
            .is_some_and(|u| u.master.as_deref() == Some(bridge.as_str()))
        {
            out.insert(
                text(port, "id").to_string(),
                EdgePort {
                    device: name,
                    bridge,
                },
            );
        }
    }
    out
}

/// What a port bound to a host is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An instance's interface.
    Instance,
    /// A router's interface on an internal subnet.
    RouterInterface,
    /// A router's gateway on the external network.
    RouterGateway,
    /// A distributed router's SNAT port (in the SNAT namespace).
    RouterSnat,
    /// A network's DHCP server.
    Dhcp,
    /// A trunk subport: a VLAN device on its parent's tap ([`crate::trunk`]).
    Subport,
}

fn role(port: &Value) -> Option<Role> {
    let owner = text(port, "device_owner");
    if owner == "network:router_gateway" {
        Some(Role::RouterGateway)
    } else if owner == dvr::SNAT_OWNER {
        Some(Role::RouterSnat)
    } else if owner.starts_with("network:router_interface")
        || owner == "network:ha_router_replicated_interface"
    {
        Some(Role::RouterInterface)
    } else if owner == "network:dhcp" {
        Some(Role::Dhcp)
    } else if owner == crate::trunk::SUBPORT_OWNER {
        Some(Role::Subport)
    } else if owner.starts_with("network:") {
        // Floating IP ports are not plugged as interfaces.
        None
    } else {
        Some(Role::Instance)
    }
}

/// `device_owner` of container ports (the CNI plugin's); any port whose profile carries
/// `neutrino:netns` is wired the same way.
pub const CONTAINER_OWNER: &str = "compute:container";

/// `device_owner` of a pooled container port while it waits for a container: wired in the
/// agent's parking namespace ([`names::pool_netns`]) under [`names::pool_interface`].
pub const POOL_OWNER: &str = "compute:container-pool";

/// A container port's runtime namespace path and interface name, from its
/// `binding:profile` (`neutrino:netns`, `neutrino:ifname`, default `eth0`). `None` for
/// ports that are not containers' (or whose profile names no namespace).
pub fn container_attachment(port: &Value) -> Option<(String, String)> {
    let profile = &port["binding:profile"];
    let path = profile["neutrino:netns"]
        .as_str()
        .filter(|p| p.starts_with('/'))?;
    let ifname = profile["neutrino:ifname"]
        .as_str()
        .filter(|n| !n.is_empty() && n.len() <= 15 && !n.contains(['/', ':', ' ']))
        .unwrap_or("eth0");
    Some((path.to_string(), ifname.to_string()))
}

/// Drops from `state` the container namespaces the runtime has removed: `gone(name, path)`
/// says whether the runtime's namespace at `path` is gone (no file there any more, or a
/// different namespace than the one mounted at `name`). Their ports stay DOWN instead of
/// failing every reconcile, the bind mount (which alone kept such a namespace alive) goes,
/// and the agent asks the server to delete the ports whose DEL never arrived.
pub fn drop_vanished_containers(
    state: &mut HostState,
    gone: &dyn Fn(&str, &str) -> bool,
) -> Vec<String> {
    let gone: Vec<String> = state
        .namespaces
        .iter()
        .filter(|(name, ns)| ns.external.as_deref().is_some_and(|path| gone(name, path)))
        .map(|(name, _)| name.clone())
        .collect();
    for name in &gone {
        state.namespaces.remove(name);
        state.taps.retain(|_, tap| &tap.peer.0 != name);
    }
    gone
}

/// Tunnel endpoints of the registered agents, by host.
pub(crate) fn tunnel_endpoints(cluster: &Cluster) -> BTreeMap<String, IpAddr> {
    cluster
        .all("agent")
        .filter_map(|a| {
            let ip = a["configurations"]["tunnel_ip"].as_str()?.parse().ok()?;
            Some((text(a, "host").to_string(), ip))
        })
        .collect()
}

/// Every gateway device of the cluster: `(device, host its learned MACs are reported under,
/// tunnel IP)`: software gateways (agents with `l2gw_device`) at their host's tunnel IP, and
/// the hardware VTEPs agents program (`configurations.vteps`: device name to the switch's
/// tunnel IP) under `vtep:<NAME>`.
pub(crate) fn gateways(
    cluster: &Cluster,
    tunnels: &BTreeMap<String, IpAddr>,
) -> Vec<(String, String, IpAddr)> {
    let mut out = Vec::new();
    for agent in cluster.all("agent") {
        let host = text(agent, "host");
        if let (Some(device), Some(ip)) = (crate::l2gw::agent_device(agent), tunnels.get(host)) {
            out.push((device.to_string(), host.to_string(), *ip));
        }
        let vteps = agent["configurations"]["vteps"]
            .as_object()
            .into_iter()
            .flatten();
        for (name, ip) in vteps {
            if let Some(ip) = ip.as_str().and_then(|ip| ip.parse().ok()) {
                out.push((name.clone(), crate::vtep::report_host(name), ip));
            }
        }
    }
    out
}

/// A network's MTU (1450 when unset or implausible).
pub(crate) fn mtu(net: &Value) -> u32 {
    net["mtu"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .filter(|m| *m >= 576)
        .unwrap_or(1450)
}

/// Computes the desired state of `cfg.host`.
pub fn desired(cluster: &Cluster, cfg: &HostConfig) -> Desired {
    let tunnels = tunnel_endpoints(cluster);
    let mut out = Desired::default();
    // Ports bound here, grouped by instance namespace in creation order (interface names
    // eth0, eth1, ... follow that order).
    let placement = dvr::placement(cluster);
    let dvr_here = dvr::local_interfaces(cluster, &placement, &cfg.host);
    let mut local: Vec<&Value> = cluster
        .all("port")
        .filter(|p| {
            (text(p, "binding:host_id") == cfg.host || dvr_here.contains(text(p, "id")))
                && role(p).is_some()
        })
        .collect();
    // Router ports by (router, namespace): a distributed router has two on its SNAT host.
    let mut routers: BTreeMap<(String, String), Vec<RouterPort<'_>>> = BTreeMap::new();
    local.sort_by_key(|p| (text(p, "created_at"), text(p, "id")));
    let mut next_if: BTreeMap<String, usize> = BTreeMap::new();
    let mut local_networks: BTreeMap<String, String> = BTreeMap::new();
    // Subports and their networks' bridges, wired once every parent's tap is known.
    let mut subports: Vec<(&Value, String)> = Vec::new();
    for port in local {
        let id = text(port, "id");
        let net_id = text(port, "network_id");
        let Some(net) = cluster.get("network", net_id) else {
            out.ports.insert(
                id.to_string(),
                PortOutcome::Fail(format!("network {net_id} unknown")),
            );
            continue;
        };
        let segment = match provider::segment(net, &cfg.interface_mappings) {
            Ok(s) => s,
            Err(reason) => {
                out.ports.insert(id.to_string(), PortOutcome::Fail(reason));
                continue;
            }
        };
        let mtu = mtu(net);
        let bridge = names::bridge(net_id);
        out.state.bridges.insert(bridge.clone(), Bridge { mtu });
        match segment {
            Segment::Vxlan(vni) => {
                let vxlan = add_vxlan(&mut out, cfg, vni, mtu, &bridge);
                local_networks.insert(net_id.to_string(), vxlan);
            }
            Segment::Uplink { name, mut uplink } => {
                uplink.master = Some(bridge.clone());
                out.state.uplinks.insert(name, uplink);
            }
        }
        let role = role(port).unwrap_or(Role::Instance);
        if role == Role::Subport {
            subports.push((port, bridge));
            continue;
        }
        let container = container_attachment(port);
        let (netns, ifname) = match role {
            Role::Instance if text(port, "device_owner") == POOL_OWNER => (
                names::pool_netns(&cfg.netns_prefix),
                names::pool_interface(id),
            ),
            Role::Instance if container.is_some() => {
                let (_, ifname) = container.clone().expect("checked");
                let netns = names::container_netns(&cfg.netns_prefix, text(port, "device_id"));
                (netns, ifname)
            }
            Role::Instance => {
                let netns = names::instance_netns(&cfg.netns_prefix, text(port, "device_id"), id);
                let n = next_if.entry(netns.clone()).or_default();
                let ifname = format!("eth{n}");
                *n += 1;
                (netns, ifname)
            }
            Role::RouterInterface | Role::RouterGateway | Role::RouterSnat => {
                let router = text(port, "device_id");
                let gateway = role == Role::RouterGateway;
                let central =
                    role == Role::RouterSnat || (gateway && dvr::is_distributed(cluster, router));
                let (netns, ifname) = if central {
                    let ifname = if gateway {
                        names::router_interface(id, true)
                    } else {
                        names::snat_interface(id)
                    };
                    (names::snat_netns(&cfg.netns_prefix, router), ifname)
                } else {
                    let ifname = names::router_interface(id, gateway);
                    (names::router_netns(&cfg.netns_prefix, router), ifname)
                };
                routers
                    .entry((router.to_string(), netns.clone()))
                    .or_default()
                    .push(RouterPort {
                        port,
                        ifname: ifname.clone(),
                        gateway,
                    });
                (netns, ifname)
            }
            Role::Subport => unreachable!("handled above"),
            Role::Dhcp => {
                let netns = names::dhcp_netns(&cfg.netns_prefix, net_id);
                let ifname = names::dhcp_interface(id);
                let server = dhcp::server(cluster, net, port, &ifname);
                out.dhcp.insert(netns.clone(), server);
                (netns, ifname)
            }
        };
        let tap = names::tap(id);
        let up = port["admin_state_up"].as_bool().unwrap_or(true);
        out.state.taps.insert(
            tap.clone(),
            Tap {
                mtu,
                master: Some(bridge),
                peer: (netns.clone(), ifname.clone()),
            },
        );
        let ns = out.state.namespaces.entry(netns.clone()).or_default();
        if let Some((path, _)) = &container {
            ns.external = Some(path.clone());
        }
        let mac = if dvr_here.contains(id) {
            names::dvr_mac(&cfg.host, id)
        } else {
            text(port, "mac_address").to_ascii_lowercase()
        };
        ns.links.insert(ifname.clone(), NsLink { mac, mtu, up });
        let mut default_route: BTreeSet<bool> = BTreeSet::new();
        let dhcp_client = role == Role::Instance && dhcp::is_dhcp_client(port);
        if dhcp_client {
            ns.dhcp_clients.insert(ifname.clone());
        }
        let fixed_ips = if dhcp_client {
            None
        } else {
            port["fixed_ips"].as_array()
        };
        for fixed in fixed_ips.into_iter().flatten() {
            let Some(subnet) = cluster.get("subnet", text(fixed, "subnet_id")) else {
                continue;
            };
            let (Ok(ip), Ok(cidr)) = (
                text(fixed, "ip_address").parse::<IpAddr>(),
                text(subnet, "cidr").parse::<IpNet>(),
            ) else {
                continue;
            };
            if let Ok(addr) = IpNet::new(ip, cidr.prefix_len()) {
                ns.addrs.insert((ifname.clone(), addr));
            }
            // Instances route through their subnets' gateways, a router through the external
            // subnet's; a router's own interfaces are the gateways of internal subnets.
            let routed = role == Role::Instance || role == Role::RouterGateway;
            if let Ok(gw) = text(subnet, "gateway_ip").parse::<IpAddr>() {
                if routed && gw != ip && default_route.insert(gw.is_ipv4()) {
                    let any: IpNet = if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }
                        .parse()
                        .expect("literal");
                    // An instance with several ports has one default route: the kernel
                    // keeps one route per destination.
                    if !ns.routes.iter().any(|r| r.dst == any) {
                        ns.routes.insert(Route {
                            dst: any,
                            via: gw,
                            dev: ifname.clone(),
                        });
                    }
                }
            }
            let host_routes = if role == Role::Instance {
                subnet["host_routes"].as_array()
            } else {
                None
            };
            for hr in host_routes.into_iter().flatten() {
                if let (Ok(dst), Ok(via)) = (
                    text(hr, "destination").parse::<IpNet>(),
                    text(hr, "nexthop").parse::<IpAddr>(),
                ) {
                    let dst = dst.trunc();
                    if dst.addr().is_ipv4() == via.is_ipv4()
                        && !ns.routes.iter().any(|r| r.dst == dst)
                    {
                        ns.routes.insert(Route {
                            dst,
                            via,
                            dev: ifname.clone(),
                        });
                    }
                }
            }
        }
        out.ports.insert(
            id.to_string(),
            PortOutcome::Plug {
                tap,
                netns,
                ifname,
                up,
            },
        );
    }
    crate::trunk::add_subports(&subports, &mut out);
    for ((router, netns), ports) in &routers {
        if let Some(ns) = out.state.namespaces.get_mut(netns) {
            add_router(cluster, router, ports, ns);
            ns.helpers = crate::conntrack_helpers::router_table(cluster, router);
            let gateway = ports.iter().find(|p| p.gateway);
            if let Some(m) =
                gateway.and_then(|qg| crate::meter::router_table(cluster, router, &qg.ifname))
            {
                ns.meter = Some(m.table);
                out.meters.insert(netns.clone(), m.counters);
            }
        }
        if let Some(ra) = router_advertisements(cluster, ports) {
            out.ra.insert(netns.clone(), ra);
        }
    }
    dvr::add_host_part(
        cluster,
        cfg,
        &placement,
        &dvr_here,
        &tunnels,
        &local_networks,
        &mut out,
    );
    add_gateway_attachments(cluster, cfg, &mut local_networks, &mut out);
    out.edge_ports = edge_ports(cluster, cfg, &out.state, &out.ports);
    crate::l2gw::add_remote_gateways(cluster, cfg, &local_networks, &mut out);
    // Toward the gateway hosts and hardware VTEPs of our networks: they flood to us and we
    // to them, and reach what they learnt behind their interfaces through them.
    for (device, reporter, dst) in gateways(cluster, &tunnels) {
        if dst == cfg.tunnel_ip {
            continue;
        }
        for a in crate::l2gw::attachments(cluster, &device) {
            if let Some(vxlan) = local_networks.get(&a.network) {
                out.state.fdb.insert(FdbEntry {
                    dev: vxlan.clone(),
                    mac: FLOOD_MAC.to_string(),
                    dst,
                });
                // The hosts behind its interfaces, as the gateway reported them, and (a
                // software gateway) the other clouds' MACs it tunnels to.
                let learned = cluster
                    .all("l2gw_learned_macs")
                    .filter(|r| text(r, "host") == reporter && text(r, "network_id") == a.network)
                    .flat_map(|r| r["macs"].as_array().into_iter().flatten())
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase);
                let software = reporter != crate::vtep::report_host(&device);
                let remote =
                    crate::l2gw::remote_macs(cluster, &device, &a.network).filter(|_| software);
                for mac in learned.chain(remote.map(|(mac, _)| mac)) {
                    out.state.fdb.insert(FdbEntry {
                        dev: vxlan.clone(),
                        mac,
                        dst,
                    });
                }
            }
        }
    }
    // Toward the other hosts with ports on our networks.
    for port in cluster.all("port") {
        let host = text(port, "binding:host_id");
        if host.is_empty() || host == cfg.host {
            continue;
        }
        let Some(vxlan) = local_networks.get(text(port, "network_id")) else {
            continue;
        };
        let Some(dst) = tunnels.get(host).copied().filter(|ip| *ip != cfg.tunnel_ip) else {
            continue;
        };
        for mac in [FLOOD_MAC, text(port, "mac_address")] {
            if !mac.is_empty() {
                out.state.fdb.insert(FdbEntry {
                    dev: vxlan.clone(),
                    mac: mac.to_ascii_lowercase(),
                    dst,
                });
            }
        }
    }
    out
}

/// Adds this host's VXLAN device of segment `vni`, a port of `bridge`; returns its name.
fn add_vxlan(out: &mut Desired, cfg: &HostConfig, vni: u32, mtu: u32, bridge: &str) -> String {
    let vxlan = names::vxlan(vni);
    out.state.vxlans.insert(
        vxlan.clone(),
        Vxlan {
            vni,
            local: cfg.tunnel_ip,
            port: cfg.vxlan_port,
            mtu,
            master: Some(bridge.to_string()),
        },
    );
    vxlan
}

/// On a gateway host: each network a connection joins to this device gets its bridge and
/// VXLAN device, and the device's interface (or its VLAN sub-interface) as an uplink.
fn add_gateway_attachments(
    cluster: &Cluster,
    cfg: &HostConfig,
    local_networks: &mut BTreeMap<String, String>,
    out: &mut Desired,
) {
    let Some(device) = &cfg.l2gw_device else {
        return;
    };
    for a in crate::l2gw::attachments(cluster, device) {
        let Some(net) = cluster.get("network", &a.network) else {
            continue;
        };
        // Only VXLAN networks can be connected (the server checks it).
        let Ok(Segment::Vxlan(vni)) = provider::segment(net, &cfg.interface_mappings) else {
            continue;
        };
        let mtu = mtu(net);
        let bridge = names::bridge(&a.network);
        out.state.bridges.insert(bridge.clone(), Bridge { mtu });
        let vxlan = add_vxlan(out, cfg, vni, mtu, &bridge);
        local_networks.insert(a.network.clone(), vxlan);
        let name = crate::l2gw::uplink_name(&a);
        let vlan = (a.vlan != 0).then(|| (a.interface.clone(), a.vlan));
        out.state.uplinks.entry(name).or_insert(Uplink {
            vlan,
            master: Some(bridge),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trunk_subports_ride_on_their_parent() {
        let port = |owner: &str| json!({"device_owner": owner});
        assert!(matches!(role(&port("trunk:subport")), Some(Role::Subport)));
        assert!(role(&port("network:floatingip")).is_none());
        assert!(matches!(role(&port("network:dhcp")), Some(Role::Dhcp)));
        // An HA router's interfaces are plugged like any router's; its HA ports are not.
        assert!(matches!(
            role(&port("network:ha_router_replicated_interface")),
            Some(Role::RouterInterface)
        ));
        assert!(role(&port("network:router_ha_interface")).is_none());
        assert!(matches!(role(&port("compute:nova")), Some(Role::Instance)));
        assert!(matches!(role(&port("")), Some(Role::Instance)));
    }
}
