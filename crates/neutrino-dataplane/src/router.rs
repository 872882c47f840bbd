//! Routers: what a router's namespace holds beyond its plugged interfaces. Forwarding on;
//! the router's extra routes; its floating IPs as /32 addresses on the interface whose subnet
//! holds them (the gateway, or an interface on an external network: `router-interface-fip`;
//! one from a subnet of the gateway network the gateway has no address on: the gateway);
//! and one nftables table with the address-scope rules the server's model implies
//! (`neutrino_l3::compute`): blocked pairs dropped, SNAT toward the external network where
//! scopes differ, floating IPs DNATed and SNATed toward their interface, port forwardings
//! DNATed (a port or range of a floating IP to a port or range of an internal address), and
//! nothing from outside reaching a NATed subnet except through a floating IP; and the NDP
//! proxies of the router on its gateway (it answers for those internal IPv6 addresses).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use neutrino_l3::{
    compute, Attachment, Between, FloatingIp, Outbound, PortForwarding, RouterModel, RouterRules,
};
use serde_json::Value;

use crate::cluster::{text, Cluster};
use crate::state::{Namespace, NftTable, Route};

/// Name of the agent's table in a router namespace.
pub const TABLE: &str = "neutrino_router";

/// One plugged router port: its document, interface name, and whether it is the gateway.
pub struct RouterPort<'a> {
    /// The port document.
    pub port: &'a Value,
    /// Interface name in the router namespace.
    pub ifname: String,
    /// The gateway port (external network).
    pub gateway: bool,
}

fn scope_of(cluster: &Cluster, subnet: &Value) -> Option<String> {
    let pool = cluster.get("subnetpool", text(subnet, "subnetpool_id"))?;
    pool["address_scope_id"].as_str().map(str::to_string)
}

/// Adds a router's own state to its namespace (its ports are already plugged there).
pub fn add_router(
    cluster: &Cluster,
    router_id: &str,
    ports: &[RouterPort<'_>],
    ns: &mut Namespace,
) {
    ns.forwarding = true;
    let mut model = RouterModel {
        enable_snat: true,
        ..RouterModel::default()
    };
    if let Some(router) = cluster.get("router", router_id) {
        model.enable_snat = router["external_gateway_info"]["enable_snat"]
            .as_bool()
            .unwrap_or(true);
    }
    // Interface of every attached subnet, and each subnet's CIDR.
    let mut iface_of: BTreeMap<String, String> = BTreeMap::new();
    let mut cidr_of: BTreeMap<String, IpNet> = BTreeMap::new();
    let mut gateway_if: Option<String> = None;
    let mut gateway_net: Option<&str> = None;
    for rp in ports {
        if rp.gateway {
            gateway_if = Some(rp.ifname.clone());
            gateway_net = Some(text(rp.port, "network_id"));
        }
        for fixed in rp.port["fixed_ips"].as_array().into_iter().flatten() {
            let Some(subnet) = cluster.get("subnet", text(fixed, "subnet_id")) else {
                continue;
            };
            let (Ok(cidr), Ok(address)) = (
                text(subnet, "cidr").parse::<IpNet>(),
                text(fixed, "ip_address").parse::<IpAddr>(),
            ) else {
                continue;
            };
            let id = text(subnet, "id").to_string();
            iface_of.insert(id.clone(), rp.ifname.clone());
            cidr_of.insert(id.clone(), cidr);
            let attachment = Attachment {
                subnet_id: id,
                cidr,
                address,
                scope: scope_of(cluster, subnet),
            };
            if rp.gateway {
                model.gateway.push(attachment);
            } else {
                model.interfaces.push(attachment);
            }
        }
    }
    for fip in cluster.all("floatingip") {
        if text(fip, "router_id") != router_id {
            continue;
        }
        let (Ok(floating_ip), Ok(fixed_ip)) = (
            text(fip, "floating_ip_address").parse::<IpAddr>(),
            text(fip, "fixed_ip_address").parse::<IpAddr>(),
        ) else {
            continue;
        };
        model.floating_ips.push(FloatingIp {
            id: text(fip, "id").to_string(),
            floating_ip,
            fixed_ip,
            on_gateway_network: gateway_net == Some(text(fip, "floating_network_id")),
        });
    }
    model.port_forwardings = port_forwardings(cluster, router_id, gateway_net);
    let rules = compute(&model);
    let held = rules
        .floating
        .iter()
        .map(|f| (&f.via, f.floating_ip))
        .chain(
            rules
                .forwarded
                .iter()
                .map(|f| (&f.via, f.forwarding.floating_ip)),
        );
    for (via, address) in held {
        if let Some(dev) = via.as_ref().and_then(|via| iface_of.get(via)) {
            ns.addrs.insert((dev.clone(), IpNet::from(address)));
        }
    }
    // Extra routes go out of the interface whose subnet holds the next hop.
    if let Some(router) = cluster.get("router", router_id) {
        for r in router["routes"].as_array().into_iter().flatten() {
            let (Ok(dst), Ok(via)) = (
                text(r, "destination").parse::<IpNet>(),
                text(r, "nexthop").parse::<IpAddr>(),
            ) else {
                continue;
            };
            let dev = cidr_of
                .iter()
                .find(|(_, c)| c.contains(&via))
                .and_then(|(id, _)| iface_of.get(id));
            if let Some(dev) = dev {
                ns.routes.insert(Route {
                    dst: dst.trunc(),
                    via,
                    dev: dev.clone(),
                });
            }
        }
    }
    // NDP proxies: the gateway answers for internal IPv6 addresses (routed, never NATed).
    let proxying = cluster
        .get("router", router_id)
        .is_some_and(|r| r["enable_ndp_proxy"] == true);
    if let (true, Some(qg)) = (proxying, gateway_if.as_ref()) {
        for proxy in cluster.all("ndp_proxy") {
            if text(proxy, "router_id") != router_id {
                continue;
            }
            if let Ok(ip) = text(proxy, "ip_address").parse() {
                ns.ndp_proxies.insert((qg.clone(), ip));
            }
        }
    }
    let body = render_rules(&rules, gateway_if.as_deref(), &iface_of, &cidr_of);
    ns.nft = Some(table(&body));
}

/// The port forwardings of the floating IPs that forward through `router_id`.
fn port_forwardings(
    cluster: &Cluster,
    router_id: &str,
    gateway_net: Option<&str>,
) -> Vec<PortForwarding> {
    let ports = |v: &Value| -> Option<(u16, u16)> {
        let (a, b) = v.as_str()?.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let mut out = Vec::new();
    for pf in cluster.all("port_forwarding") {
        let Some(fip) = cluster.get("floatingip", text(pf, "floatingip_id")) else {
            continue;
        };
        if text(fip, "router_id") != router_id {
            continue;
        }
        let (Ok(floating_ip), Ok(internal_ip), Some(external), Some(internal)) = (
            text(fip, "floating_ip_address").parse::<IpAddr>(),
            text(pf, "internal_ip_address").parse::<IpAddr>(),
            ports(&pf["external_port_range"]),
            ports(&pf["internal_port_range"]),
        ) else {
            continue;
        };
        out.push(PortForwarding {
            id: text(pf, "id").to_string(),
            floating_ip,
            on_gateway_network: gateway_net == Some(text(fip, "floating_network_id")),
            protocol: text(pf, "protocol").to_string(),
            external,
            internal_ip,
            internal,
        });
    }
    out
}

/// The DNAT rule of a port forwarding (IPv4; `None` for a protocol nft has no ports for).
fn forwarding_rule(pf: &PortForwarding) -> Option<String> {
    if !["tcp", "udp", "sctp", "dccp", "udplite"].contains(&pf.protocol.as_str()) {
        return None;
    }
    let (IpAddr::V4(public), IpAddr::V4(inside)) = (pf.floating_ip, pf.internal_ip) else {
        return None;
    };
    let proto = &pf.protocol;
    let span = |(a, b): (u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    let to = if pf.internal.0 == pf.internal.1 {
        format!("{inside}:{}", pf.internal.0)
    } else if pf.internal.0 == pf.external.0 {
        // The same ports inside: the destination port stays.
        inside.to_string()
    } else {
        // N-N: each external port to its counterpart.
        let pairs: Vec<String> = (pf.external.0..=pf.external.1)
            .zip(pf.internal.0..=pf.internal.1)
            .map(|(e, i)| format!("{e} : {i}"))
            .collect();
        format!("{inside} : {proto} dport map {{ {} }}", pairs.join(", "))
    };
    Some(format!(
        "    ip daddr {public} {proto} dport {} dnat ip to {to}",
        span(pf.external)
    ))
}

fn family(net: &IpNet) -> &'static str {
    if net.addr().is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

/// The chains of a router's table (without the table wrapper), from its rules, its gateway
/// interface, and the interface and CIDR of each attached subnet.
pub fn render_rules(
    rules: &RouterRules,
    gateway_if: Option<&str>,
    iface_of: &BTreeMap<String, String>,
    cidr_of: &BTreeMap<String, IpNet>,
) -> String {
    // A floating IP's own traffic passes whatever the scopes say (before any drop).
    let mut fip_forward = String::new();
    let mut forward = String::new();
    let mut pre = String::new();
    // Floating IP SNAT comes before the subnet-wide SNAT.
    let mut fip_post = String::new();
    let mut snat_post = String::new();
    for r in &rules.internal {
        if r.between == Between::Block {
            if let (Some(a), Some(b)) = (cidr_of.get(&r.from), cidr_of.get(&r.to)) {
                let f = family(a);
                let _ = writeln!(forward, "    {f} saddr {a} {f} daddr {b} drop");
            }
        }
    }
    if let Some(qg) = gateway_if {
        for r in &rules.external {
            let Some(cidr) = cidr_of.get(&r.from) else {
                continue;
            };
            let f = family(cidr);
            match &r.outbound {
                Outbound::Route => {}
                Outbound::Snat { to } => {
                    let _ = writeln!(
                        snat_post,
                        "    oifname \"{qg}\" {f} saddr {cidr} snat ip to {to}"
                    );
                    let _ = writeln!(
                        forward,
                        "    iifname \"{qg}\" {f} daddr {cidr} ct status dnat accept"
                    );
                    let _ = writeln!(forward, "    iifname \"{qg}\" {f} daddr {cidr} drop");
                }
                Outbound::Block => {
                    let _ = writeln!(forward, "    oifname \"{qg}\" {f} saddr {cidr} drop");
                    let _ = writeln!(
                        forward,
                        "    iifname \"{qg}\" {f} daddr {cidr} ct status dnat accept"
                    );
                    let _ = writeln!(forward, "    iifname \"{qg}\" {f} daddr {cidr} drop");
                }
            }
        }
    }
    for fip in &rules.floating {
        let Some(dev) = fip.via.as_ref().and_then(|via| iface_of.get(via)) else {
            continue;
        };
        if !fip.floating_ip.is_ipv4() || !fip.fixed_ip.is_ipv4() {
            continue;
        }
        let (public, fixed) = (fip.floating_ip, fip.fixed_ip);
        let _ = writeln!(
            fip_forward,
            "    iifname \"{dev}\" ip daddr {fixed} ct status dnat accept"
        );
        let _ = writeln!(fip_forward, "    oifname \"{dev}\" ip saddr {fixed} accept");
        let _ = writeln!(pre, "    ip daddr {public} dnat ip to {fixed}");
        let _ = writeln!(
            fip_post,
            "    oifname \"{dev}\" ip saddr {fixed} snat ip to {public}"
        );
        for reach in &fip.reaches {
            if let Some(cidr) = cidr_of.get(reach) {
                let _ = writeln!(
                    fip_post,
                    "    ip saddr {fixed} ip daddr {cidr} snat ip to {public}"
                );
            }
        }
    }
    for f in &rules.forwarded {
        if f.via.as_ref().and_then(|via| iface_of.get(via)).is_none() {
            continue;
        }
        if let Some(rule) = forwarding_rule(&f.forwarding) {
            pre.push_str(&rule);
            pre.push('\n');
        }
    }
    let mut out = String::new();
    out.push_str(
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
    );
    out.push_str("    ct state established,related accept\n");
    out.push_str(&fip_forward);
    out.push_str(&forward);
    out.push_str(
        "  }\n  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    out.push_str(&pre);
    out.push_str("  }\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    out.push_str(&fip_post);
    out.push_str(&snat_post);
    out.push_str("  }\n");
    out
}

/// FNV-1a, hex: a stable digest of a table's rules.
pub(crate) fn digest(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The whole table: replaced atomically in one `nft -f` transaction.
fn table(body: &str) -> NftTable {
    let digest = digest(body);
    let script = format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  comment \"{digest}\"\n{body}}}\n"
    );
    NftTable { digest, script }
}
