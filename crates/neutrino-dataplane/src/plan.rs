//! The plan: typed operations that take a host from the observed state to the desired one,
//! in an order the kernel accepts (removals first, then namespaces, bridges, uplinks, tunnels,
//! forwarding entries, veth pairs, and what is inside each instance). Each operation renders
//! as one iproute2 batch line for the tool and namespace named by its [`Target`].

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::state::{FdbEntry, HostState, Namespace, Neighbor, Route, SrcRoute, FLOOD_MAC};

/// Where an operation runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `ip netns` in the agent's own namespace (namespaces are named globally).
    Namespaces,
    /// A bind mount of a runtime's namespace file (run by the agent itself, one at a time).
    Mount,
    /// `ip` in the host's dataplane namespace.
    Host,
    /// `bridge` (forwarding database) in the agent's own namespace.
    Bridge,
    /// `ip` inside the named namespace.
    Netns(String),
    /// A command of its own run inside the named namespace (`sysctl`, `nft -f`).
    Exec(String),
    /// `nft -f` in the host's dataplane namespace.
    HostNft,
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a network namespace (and bring its loopback up).
    AddNetns(String),
    /// Make a container runtime's namespace (`path`) reachable under the managed `name`:
    /// a bind mount at `/run/netns/<name>`. `DelNetns` later removes only that mount.
    AttachNetns {
        /// Managed name.
        name: String,
        /// The runtime's namespace path.
        path: String,
    },
    /// Move the instance end of a veth pair from namespace `netns` into namespace `to`,
    /// renamed `new_name` (a pooled port taken by a container). The host end, its bridge
    /// port and its filter stay; addresses and routes are added again after the move.
    MoveLink {
        /// Namespace it is in.
        netns: String,
        /// Its name there.
        name: String,
        /// Namespace it moves to.
        to: String,
        /// Its name there.
        new_name: String,
    },
    /// Delete a network namespace with everything in it.
    DelNetns(String),
    /// Bring a namespace's loopback up.
    LoUp(String),
    /// Create a bridge.
    AddBridge {
        /// Name.
        name: String,
        /// MTU.
        mtu: u32,
    },
    /// Create a VXLAN device (no learning: the forwarding entries are static).
    AddVxlan {
        /// Name.
        name: String,
        /// Segment id.
        vni: u32,
        /// Local tunnel address.
        local: IpAddr,
        /// UDP port.
        port: u16,
        /// MTU.
        mtu: u32,
    },
    /// Create a veth pair: `tap` here, `peer` in `netns` with the instance's MAC.
    AddVeth {
        /// Host-side name.
        tap: String,
        /// Namespace of the other end.
        netns: String,
        /// Name of the other end.
        peer: String,
        /// MAC of the other end.
        mac: String,
        /// MTU of both ends.
        mtu: u32,
    },
    /// Enslave a host interface to a bridge.
    SetMaster {
        /// Interface.
        name: String,
        /// Bridge.
        master: String,
    },
    /// Create a VLAN sub-interface of a host interface (VLAN provider networks).
    AddVlan {
        /// Name (`<parent>.<vid>`).
        name: String,
        /// The physical interface.
        parent: String,
        /// VLAN id.
        vid: u16,
    },
    /// Release a host interface from its bridge.
    SetNoMaster(String),
    /// Set a host interface's MTU.
    SetMtu {
        /// Interface.
        name: String,
        /// MTU.
        mtu: u32,
    },
    /// Bring a host interface up.
    SetUp(String),
    /// Delete a host interface (a veth pair goes as a whole).
    DelLink(String),
    /// Add a static forwarding entry.
    AddFdb(FdbEntry),
    /// Remove a static forwarding entry.
    DelFdb(FdbEntry),
    /// Set an instance interface's MAC, MTU and admin state.
    SetNsLink {
        /// Namespace.
        netns: String,
        /// Interface.
        name: String,
        /// MAC.
        mac: String,
        /// MTU.
        mtu: u32,
        /// Up or down.
        up: bool,
    },
    /// Add an address inside a namespace.
    AddAddr {
        /// Namespace.
        netns: String,
        /// Interface.
        dev: String,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// Remove an address inside a namespace.
    DelAddr {
        /// Namespace.
        netns: String,
        /// Interface.
        dev: String,
        /// Address with prefix length.
        addr: IpNet,
    },
    /// Add (or replace) a route inside a namespace.
    AddRoute {
        /// Namespace.
        netns: String,
        /// The route.
        route: Route,
    },
    /// Turn on IPv4 and IPv6 forwarding inside a namespace.
    Forwarding(String),
    /// Load (atomically replace) the agent's nftables table inside a namespace.
    LoadNft {
        /// Namespace.
        netns: String,
        /// The `nft -f` script.
        script: String,
    },
    /// Remove a route inside a namespace.
    DelRoute {
        /// Namespace.
        netns: String,
        /// The route.
        route: Route,
    },
    /// Add (or replace) a permanent neighbour entry inside a namespace.
    AddNeigh {
        /// Namespace.
        netns: String,
        /// The entry.
        neighbor: Neighbor,
    },
    /// Answer neighbour solicitations for an address on an interface (NDP proxy).
    AddNdpProxy {
        /// Namespace.
        netns: String,
        /// Interface.
        dev: String,
        /// The proxied address.
        ip: std::net::Ipv6Addr,
    },
    /// Stop answering for an address.
    DelNdpProxy {
        /// Namespace.
        netns: String,
        /// Interface.
        dev: String,
        /// The proxied address.
        ip: std::net::Ipv6Addr,
    },
    /// Remove a neighbour entry inside a namespace.
    DelNeigh {
        /// Namespace.
        netns: String,
        /// The entry.
        neighbor: Neighbor,
    },
    /// Add a source-based route (rule and its table's default route) inside a namespace.
    AddSrcRoute {
        /// Namespace.
        netns: String,
        /// The route.
        route: SrcRoute,
    },
    /// Remove a source-based route inside a namespace.
    DelSrcRoute {
        /// Namespace.
        netns: String,
        /// The route.
        route: SrcRoute,
    },
    /// Load (atomically replace, or delete when `script` deletes it) a host-level table.
    LoadHostNft {
        /// The `nft -f` script.
        script: String,
    },
}

impl Op {
    /// The tool and namespace that run this operation.
    pub fn target(&self) -> Target {
        match self {
            Op::AddFdb(_) | Op::DelFdb(_) => Target::Bridge,
            Op::AddNetns(_) | Op::DelNetns(_) => Target::Namespaces,
            Op::AttachNetns { .. } => Target::Mount,
            Op::Forwarding(netns) | Op::LoadNft { netns, .. } => Target::Exec(netns.clone()),
            Op::LoadHostNft { .. } => Target::HostNft,
            Op::AddNeigh { netns, .. }
            | Op::DelNeigh { netns, .. }
            | Op::AddNdpProxy { netns, .. }
            | Op::DelNdpProxy { netns, .. }
            | Op::AddSrcRoute { netns, .. }
            | Op::DelSrcRoute { netns, .. }
            | Op::LoUp(netns)
            | Op::MoveLink { netns, .. }
            | Op::SetNsLink { netns, .. }
            | Op::AddAddr { netns, .. }
            | Op::DelAddr { netns, .. }
            | Op::AddRoute { netns, .. }
            | Op::DelRoute { netns, .. } => Target::Netns(netns.clone()),
            _ => Target::Host,
        }
    }

    /// The operation as one line of `ip -batch` / `bridge -batch` input.
    pub fn command(&self) -> String {
        match self {
            Op::AddNetns(n) => format!("netns add {n}"),
            Op::AttachNetns { name, path } => format!("mount --bind {path} /run/netns/{name}"),
            Op::DelNetns(n) => format!("netns del {n}"),
            Op::MoveLink {
                name, to, new_name, ..
            } => format!("link set {name} netns {to} name {new_name}"),
            Op::LoUp(_) => "link set lo up".to_string(),
            Op::AddBridge { name, mtu } => format!("link add {name} mtu {mtu} type bridge"),
            Op::AddVxlan {
                name,
                vni,
                local,
                port,
                mtu,
            } => format!(
                "link add {name} mtu {mtu} type vxlan id {vni} local {local} dstport {port} nolearning noudpcsum"
            ),
            Op::AddVeth {
                tap,
                netns,
                peer,
                mac,
                mtu,
            } => format!(
                "link add {tap} mtu {mtu} type veth peer name {peer} address {mac} mtu {mtu} netns {netns}"
            ),
            Op::AddVlan { name, parent, vid } => {
                format!("link add link {parent} name {name} type vlan id {vid}")
            }
            Op::SetMaster { name, master } => format!("link set {name} master {master}"),
            Op::SetNoMaster(name) => format!("link set {name} nomaster"),
            Op::SetMtu { name, mtu } => format!("link set {name} mtu {mtu}"),
            Op::SetUp(name) => format!("link set {name} up"),
            Op::DelLink(name) => format!("link del {name}"),
            Op::AddFdb(e) if e.mac == FLOOD_MAC => {
                format!("fdb append {} dev {} dst {} self permanent", e.mac, e.dev, e.dst)
            }
            Op::AddFdb(e) => {
                format!("fdb replace {} dev {} dst {} self permanent", e.mac, e.dev, e.dst)
            }
            Op::DelFdb(e) => format!("fdb del {} dev {} dst {} self", e.mac, e.dev, e.dst),
            Op::SetNsLink {
                name,
                mac,
                mtu,
                up,
                ..
            } => format!(
                "link set {name} address {mac} mtu {mtu} {}",
                if *up { "up" } else { "down" }
            ),
            Op::AddAddr { dev, addr, .. } if addr.addr().is_ipv6() => {
                format!("addr replace {addr} dev {dev} nodad")
            }
            Op::AddAddr { dev, addr, .. } => format!("addr replace {addr} dev {dev}"),
            Op::DelAddr { dev, addr, .. } => format!("addr del {addr} dev {dev}"),
            Op::AddRoute { route, .. } => format!(
                "route replace {} via {} dev {}",
                route.dst, route.via, route.dev
            ),
            Op::Forwarding(_) => {
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv6.conf.all.proxy_ndp=1".to_string()
            }
            Op::LoadNft { script, .. } => format!("nft -f - <<EOF\n{script}EOF"),
            Op::DelRoute { route, .. } => {
                format!("route del {} via {} dev {}", route.dst, route.via, route.dev)
            }
            Op::AddNeigh { neighbor: n, .. } => format!(
                "neigh replace {} lladdr {} dev {} nud permanent",
                n.ip, n.mac, n.dev
            ),
            Op::DelNeigh { neighbor: n, .. } => format!("neigh del {} dev {}", n.ip, n.dev),
            Op::AddNdpProxy { dev, ip, .. } => format!("neigh replace proxy {ip} dev {dev}"),
            Op::DelNdpProxy { dev, ip, .. } => format!("neigh del proxy {ip} dev {dev}"),
            Op::AddSrcRoute { route: r, .. } => format!(
                "rule add from {} lookup {t} priority {}\nroute replace default via {} dev {} table {t}",
                r.from,
                SrcRoute::PRIORITY,
                r.via,
                r.dev,
                t = r.table()
            ),
            Op::DelSrcRoute { route: r, .. } => format!(
                "rule del from {} lookup {t} priority {}\nroute flush table {t}",
                r.from,
                SrcRoute::PRIORITY,
                t = r.table()
            ),
            Op::LoadHostNft { script } => format!("nft -f - <<EOF\n{script}EOF"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target() {
            Target::Host | Target::Namespaces => write!(f, "ip {}", self.command()),
            Target::Bridge => write!(f, "bridge {}", self.command()),
            Target::Netns(ns) => write!(f, "ip -n {ns} {}", self.command()),
            Target::Exec(ns) => write!(f, "ip netns exec {ns} {}", self.command()),
            Target::HostNft | Target::Mount => write!(f, "{}", self.command()),
        }
    }
}

/// The operations that turn `observed` into `desired`; empty when they already agree.
pub fn plan(desired: &HostState, observed: &HostState) -> Vec<Op> {
    let mut ops = Vec::new();
    // What is left of the observed state after the removals below.
    let mut obs = observed.clone();

    // Removals: ports, forwarding entries, tunnels, bridges, namespaces. A port whose
    // instance end moves to another namespace (a pooled port a container took) keeps its
    // veth pair: the instance end is moved after the namespaces exist.
    let mut moves = Vec::new();
    for (name, tap) in &observed.taps {
        let want = desired.taps.get(name);
        if let Some(want) = want.filter(|d| d.peer != tap.peer && d.peer.0 != tap.peer.0) {
            let (from, peer) = &tap.peer;
            let (to, new_name) = &want.peer;
            if observed
                .namespaces
                .get(from)
                .is_some_and(|ns| ns.links.contains_key(peer))
                && desired.namespaces.contains_key(to)
            {
                moves.push(Op::MoveLink {
                    netns: from.clone(),
                    name: peer.clone(),
                    to: to.clone(),
                    new_name: new_name.clone(),
                });
                if let Some(ns) = obs.namespaces.get_mut(from) {
                    forget_link(ns, peer);
                }
                if let Some(t) = obs.taps.get_mut(name) {
                    t.peer = want.peer.clone();
                }
                continue;
            }
        }
        if want.is_none_or(|d| d.peer != tap.peer) {
            ops.push(Op::DelLink(name.clone()));
            obs.taps.remove(name);
            let (netns, peer) = &tap.peer;
            if let Some(ns) = obs.namespaces.get_mut(netns) {
                forget_link(ns, peer);
            }
        }
    }
    let replaced_vxlans: Vec<String> = observed
        .vxlans
        .iter()
        .filter(|(name, v)| {
            desired
                .vxlans
                .get(*name)
                .is_none_or(|d| (d.vni, d.local, d.port) != (v.vni, v.local, v.port))
        })
        .map(|(name, _)| name.clone())
        .collect();
    for e in &observed.fdb {
        if !desired.fdb.contains(e) && !replaced_vxlans.contains(&e.dev) {
            ops.push(Op::DelFdb(e.clone()));
            obs.fdb.remove(e);
        }
    }
    for name in &replaced_vxlans {
        ops.push(Op::DelLink(name.clone()));
        obs.vxlans.remove(name);
        obs.fdb.retain(|e| e.dev != *name);
    }
    crate::provider::remove_uplinks(desired, observed, &mut ops);
    crate::trunk::remove_links(desired, observed, &mut ops);
    for name in observed.bridges.keys() {
        if !desired.bridges.contains_key(name) {
            ops.push(Op::DelLink(name.clone()));
            obs.bridges.remove(name);
        }
    }
    let moved_from = |name: &str| {
        moves
            .iter()
            .any(|m| matches!(m, Op::MoveLink { netns, .. } if netns == name))
    };
    for name in observed.namespaces.keys() {
        // A namespace an interface moves out of goes once it is empty (next reconcile).
        if !desired.namespaces.contains_key(name) && !moved_from(name) {
            ops.push(Op::DelNetns(name.clone()));
            obs.namespaces.remove(name);
        }
    }

    // Creations and fixes, outside in.
    for (name, ns) in &desired.namespaces {
        if !obs.namespaces.contains_key(name) {
            match &ns.external {
                // The runtime owns the namespace and its loopback.
                Some(path) => ops.push(Op::AttachNetns {
                    name: name.clone(),
                    path: path.clone(),
                }),
                None => {
                    ops.push(Op::AddNetns(name.clone()));
                    ops.push(Op::LoUp(name.clone()));
                }
            }
        }
    }
    ops.append(&mut moves);
    for (name, bridge) in &desired.bridges {
        match obs.bridges.get(name) {
            None => {
                ops.push(Op::AddBridge {
                    name: name.clone(),
                    mtu: bridge.mtu,
                });
                ops.push(Op::SetUp(name.clone()));
            }
            Some(have) if have.mtu != bridge.mtu => ops.push(Op::SetMtu {
                name: name.clone(),
                mtu: bridge.mtu,
            }),
            Some(_) => {}
        }
    }
    crate::provider::add_uplinks(desired, &obs, &mut ops);
    for (name, v) in &desired.vxlans {
        let create = Op::AddVxlan {
            name: name.clone(),
            vni: v.vni,
            local: v.local,
            port: v.port,
            mtu: v.mtu,
        };
        let have = obs.vxlans.get(name).map(|h| (h.mtu, h.master.as_ref()));
        bridge_port(&mut ops, name, create, v.mtu, v.master.as_ref(), have);
    }
    for e in &desired.fdb {
        if !obs.fdb.contains(e) {
            ops.push(Op::AddFdb(e.clone()));
        }
    }
    for (name, tap) in &desired.taps {
        let (netns, peer) = &tap.peer;
        let mac = desired
            .namespaces
            .get(netns)
            .and_then(|ns| ns.links.get(peer))
            .map(|l| l.mac.clone())
            .unwrap_or_default();
        let create = Op::AddVeth {
            tap: name.clone(),
            netns: netns.clone(),
            peer: peer.clone(),
            mac,
            mtu: tap.mtu,
        };
        let have = obs.taps.get(name).map(|h| (h.mtu, h.master.as_ref()));
        bridge_port(&mut ops, name, create, tap.mtu, tap.master.as_ref(), have);
    }
    crate::trunk::add_links(desired, observed, &mut ops);
    let empty = Namespace::default();
    for (netns, want) in &desired.namespaces {
        let have = obs.namespaces.get(netns).unwrap_or(&empty);
        for (name, link) in &want.links {
            if have.links.get(name) != Some(link) {
                ops.push(Op::SetNsLink {
                    netns: netns.clone(),
                    name: name.clone(),
                    mac: link.mac.clone(),
                    mtu: link.mtu,
                    up: link.up,
                });
            }
        }
        for route in &have.routes {
            if !want.routes.contains(route)
                && want.links.contains_key(&route.dev)
                && !want.dhcp_clients.contains(&route.dev)
            {
                ops.push(Op::DelRoute {
                    netns: netns.clone(),
                    route: route.clone(),
                });
            }
        }
        for (dev, addr) in &have.addrs {
            if !want.addrs.contains(&(dev.clone(), *addr))
                && want.links.contains_key(dev)
                && !want.dhcp_clients.contains(dev)
            {
                ops.push(Op::DelAddr {
                    netns: netns.clone(),
                    dev: dev.clone(),
                    addr: *addr,
                });
            }
        }
        for (dev, addr) in &want.addrs {
            if !have.addrs.contains(&(dev.clone(), *addr)) {
                ops.push(Op::AddAddr {
                    netns: netns.clone(),
                    dev: dev.clone(),
                    addr: *addr,
                });
            }
        }
        for route in &want.routes {
            if !have.routes.contains(route) {
                ops.push(Op::AddRoute {
                    netns: netns.clone(),
                    route: route.clone(),
                });
            }
        }
        if want.forwarding && !have.forwarding {
            ops.push(Op::Forwarding(netns.clone()));
        }
        if let Some(table) = &want.nft {
            if have.nft.as_ref() != Some(table) {
                ops.push(Op::LoadNft {
                    netns: netns.clone(),
                    script: table.script.clone(),
                });
            }
        }
        match (&want.meter, &have.meter) {
            (Some(table), have) if have.as_ref() != Some(table) => ops.push(Op::LoadNft {
                netns: netns.clone(),
                script: table.script.clone(),
            }),
            (None, Some(_)) => ops.push(Op::LoadNft {
                netns: netns.clone(),
                script: crate::meter::DROP_SCRIPT.to_string(),
            }),
            _ => {}
        }
        match (&want.helpers, &have.helpers) {
            (Some(table), have) if have.as_ref() != Some(table) => ops.push(Op::LoadNft {
                netns: netns.clone(),
                script: table.script.clone(),
            }),
            (None, Some(_)) => ops.push(Op::LoadNft {
                netns: netns.clone(),
                script: crate::conntrack_helpers::DROP_SCRIPT.to_string(),
            }),
            _ => {}
        }
        plan_dvr_namespace(&mut ops, netns, want, have);
        plan_ndp_proxies(&mut ops, netns, want, have);
    }
    match (&desired.arp_guard, &observed.arp_guard) {
        (Some(want), have) if have.as_ref() != Some(want) => ops.push(Op::LoadHostNft {
            script: want.script.clone(),
        }),
        (None, Some(_)) => ops.push(Op::LoadHostNft {
            script: crate::dvr::ARP_GUARD_DELETE.to_string(),
        }),
        _ => {}
    }
    ops
}

/// Proxied neighbours of a namespace (routers' NDP proxies), on interfaces it keeps.
fn plan_ndp_proxies(ops: &mut Vec<Op>, netns: &str, want: &Namespace, have: &Namespace) {
    for (dev, ip) in have.ndp_proxies.difference(&want.ndp_proxies) {
        if want.links.contains_key(dev) {
            ops.push(Op::DelNdpProxy {
                netns: netns.to_string(),
                dev: dev.clone(),
                ip: *ip,
            });
        }
    }
    for (dev, ip) in want.ndp_proxies.difference(&have.ndp_proxies) {
        ops.push(Op::AddNdpProxy {
            netns: netns.to_string(),
            dev: dev.clone(),
            ip: *ip,
        });
    }
}

/// Neighbour entries and source routes of a namespace (distributed routers).
fn plan_dvr_namespace(ops: &mut Vec<Op>, netns: &str, want: &Namespace, have: &Namespace) {
    for n in have.neighbors.difference(&want.neighbors) {
        if want.links.contains_key(&n.dev) {
            ops.push(Op::DelNeigh {
                netns: netns.to_string(),
                neighbor: n.clone(),
            });
        }
    }
    for r in have.src_routes.difference(&want.src_routes) {
        ops.push(Op::DelSrcRoute {
            netns: netns.to_string(),
            route: r.clone(),
        });
    }
    for n in want.neighbors.difference(&have.neighbors) {
        ops.push(Op::AddNeigh {
            netns: netns.to_string(),
            neighbor: n.clone(),
        });
    }
    for r in want.src_routes.difference(&have.src_routes) {
        ops.push(Op::AddSrcRoute {
            netns: netns.to_string(),
            route: r.clone(),
        });
    }
}

/// Creates (with `create`) or fixes a host interface that is a bridge port: MTU, master, up.
/// `have` is its observed `(mtu, master)`, `None` when it does not exist.
fn bridge_port(
    ops: &mut Vec<Op>,
    name: &str,
    create: Op,
    mtu: u32,
    master: Option<&String>,
    have: Option<(u32, Option<&String>)>,
) {
    match have {
        None => ops.push(create),
        Some((have_mtu, _)) if have_mtu != mtu => ops.push(Op::SetMtu {
            name: name.to_string(),
            mtu,
        }),
        Some(_) => {}
    }
    if let Some(master) = master {
        if have.is_none_or(|(_, m)| m != Some(master)) {
            ops.push(Op::SetMaster {
                name: name.to_string(),
                master: master.clone(),
            });
        }
    }
    if have.is_none() {
        ops.push(Op::SetUp(name.to_string()));
    }
}

/// Drops an interface and what hangs off it from an observed namespace.
fn forget_link(ns: &mut Namespace, name: &str) {
    ns.links.remove(name);
    ns.addrs.retain(|(dev, _)| dev != name);
    ns.routes.retain(|r| r.dev != name);
}
