//! BGP dynamic routing (neutron-dynamic-routing) as data: the attribute specifications of BGP
//! speakers and peers, their value checks with upstream's messages, and the computation of
//! what a speaker advertises ([`advertised_routes`]), a pure function of the documents the
//! server stores. The server uses it for `get_advertised_routes` and for what it sends the
//! BGP agents (`GET /neutrino/v1/bgp-speakers`), so the two always agree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{json, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::error::{ApiError, ApiResult};
use crate::resources::NAME_LEN;

/// The AS number range with `bgp_4byte_asn` (advertised), 1..=4294967295.
pub const MAX_ASN: i64 = 4_294_967_295;

/// `/v2.0/bgp-speakers`. `local_as` and `ip_version` default to null and are then refused
/// ([`check_speaker`]), as upstream's "effectively required" attributes.
pub const BGP_SPEAKER: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("local_as", Conv::Int(1, MAX_ASN), Fill::Null).create_only(),
    rw("ip_version", Conv::Any, Fill::Null).create_only(),
    ro("peers").no_filter().no_sort(),
    ro("networks").no_filter().no_sort(),
    rw(
        "advertise_floating_ip_host_routes",
        Conv::Bool,
        Fill::Bool(true),
    ),
    rw("advertise_tenant_networks", Conv::Bool, Fill::Bool(true)),
];

/// `/v2.0/bgp-peers`. The password is stored but never shown.
pub const BGP_PEER: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("peer_ip", Conv::Any, Fill::Absent)
        .required()
        .create_only(),
    rw("remote_as", Conv::Int(1, MAX_ASN), Fill::Null).create_only(),
    rw("auth_type", Conv::Enum(&["none", "md5"]), Fill::Absent)
        .required()
        .create_only(),
    rw("password", Conv::NullableStr(NAME_LEN), Fill::Null)
        .no_filter()
        .no_sort(),
];

fn invalid(attr: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
}

/// The checks of a validated speaker create body that the spec cannot state: `local_as`
/// given, `ip_version` the JSON integer 4 or 6 (upstream has no converter: `"4"` fails).
pub fn check_speaker(body: &serde_json::Map<String, Value>) -> ApiResult<()> {
    if body.get("local_as").is_some_and(Value::is_null) {
        return Err(invalid("local_as", "'None' is not an integer"));
    }
    match body.get("ip_version") {
        None => Ok(()),
        Some(v) if v.as_i64() == Some(4) || v.as_i64() == Some(6) => Ok(()),
        Some(Value::Null) => Err(invalid("ip_version", "None is not in valid_values")),
        Some(Value::String(s)) => Err(invalid("ip_version", format!("{s} is not in valid_values"))),
        Some(other) => Err(invalid(
            "ip_version",
            format!("{other} is not in valid_values"),
        )),
    }
}

/// The checks of a validated peer create body: `remote_as` given, `peer_ip` an IPv4 or IPv6
/// address (no prefix length, no blanks).
pub fn check_peer(body: &serde_json::Map<String, Value>) -> ApiResult<()> {
    if body.get("remote_as").is_some_and(Value::is_null) {
        return Err(invalid("remote_as", "'None' is not an integer"));
    }
    if let Some(ip) = body.get("peer_ip") {
        let ok = ip.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok());
        if !ok {
            let shown = match ip {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Err(invalid(
                "peer_ip",
                format!("'{shown}' is not a valid IP address"),
            ));
        }
    }
    Ok(())
}

/// One advertised route: a prefix and the address traffic for it goes to (`null` when
/// upstream could not decide one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `10.10.0.0/24`, `203.0.113.5/32`.
    pub destination: String,
    /// The next hop's address.
    pub next_hop: Option<String>,
}

impl Route {
    /// The wire form: `{"destination", "next_hop"}`.
    pub fn to_json(&self) -> Value {
        json!({"destination": self.destination, "next_hop": self.next_hop})
    }
}

/// What the advertisement is computed from: documents as the API shows them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Topology<'a> {
    /// Subnets (`network_id`, `cidr`, `ip_version`, `subnetpool_id`).
    pub subnets: &'a [Value],
    /// Subnet pools (`address_scope_id`).
    pub subnetpools: &'a [Value],
    /// Routers (`admin_state_up`, `distributed`, `external_gateway_info`).
    pub routers: &'a [Value],
    /// Ports (`device_owner`, `device_id`, `network_id`, `fixed_ips`, `binding:host_id`).
    pub ports: &'a [Value],
    /// Floating IPs (`floating_network_id`, `floating_ip_address`, `router_id`, `port_id`).
    pub floatingips: &'a [Value],
}

const GATEWAY_OWNER: &str = "network:router_gateway";
const SNAT_OWNER: &str = "network:router_centralized_snat";
const FIP_GATEWAY_OWNER: &str = "network:floatingip_agent_gateway";

fn text<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn version_of(ip: &str) -> Option<i64> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(4),
        IpAddr::V6(_) => Some(6),
    }
}

fn host_prefix(ip: &str) -> String {
    match version_of(ip) {
        Some(6) => format!("{ip}/128"),
        _ => format!("{ip}/32"),
    }
}

/// `(subnet id, address)` of a document's `fixed_ips`.
fn fixed_ips(doc: &Value, key: &str) -> Vec<(String, String)> {
    doc.get(key)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|ip| {
                    (
                        text(ip, "subnet_id").to_string(),
                        text(ip, "ip_address").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Index<'a> {
    subnets: BTreeMap<&'a str, &'a Value>,
    /// Subnet pool id → address scope id (pools without a scope are absent).
    pool_scope: BTreeMap<&'a str, &'a str>,
    routers: BTreeMap<&'a str, &'a Value>,
    ports: BTreeMap<&'a str, &'a Value>,
    /// `(network, host)` → the FIP agent gateway ports bound there, in listing order.
    fip_gateways: BTreeMap<(&'a str, &'a str), Vec<&'a Value>>,
}

impl<'a> Index<'a> {
    fn new(t: &Topology<'a>) -> Index<'a> {
        Index {
            subnets: t.subnets.iter().map(|s| (text(s, "id"), s)).collect(),
            pool_scope: t
                .subnetpools
                .iter()
                .filter(|p| !text(p, "address_scope_id").is_empty())
                .map(|p| (text(p, "id"), text(p, "address_scope_id")))
                .collect(),
            routers: t.routers.iter().map(|r| (text(r, "id"), r)).collect(),
            ports: t.ports.iter().map(|p| (text(p, "id"), p)).collect(),
            fip_gateways: t
                .ports
                .iter()
                .filter(|p| text(p, "device_owner") == FIP_GATEWAY_OWNER)
                .fold(BTreeMap::new(), |mut m, p| {
                    let key = (text(p, "network_id"), text(p, "binding:host_id"));
                    m.entry(key).or_insert_with(Vec::new).push(p);
                    m
                }),
        }
    }

    /// The address scope of a subnet (through its pool), if any.
    fn scope_of(&self, subnet: &str) -> Option<&'a str> {
        let sub = self.subnets.get(subnet)?;
        self.pool_scope.get(text(sub, "subnetpool_id")).copied()
    }

    /// The router's gateway address of `version` on `network`, if its gateway is there.
    fn gateway_ip(&self, router: &Value, network: &str, version: i64) -> Option<String> {
        let gw = router.get("external_gateway_info")?;
        if text(gw, "network_id") != network {
            return None;
        }
        fixed_ips(gw, "external_fixed_ips")
            .into_iter()
            .map(|(_, ip)| ip)
            .find(|ip| version_of(ip) == Some(version))
    }

    /// The first IPv4 address of a FIP agent gateway port on `network` bound to `host`,
    /// with its subnet's address scope.
    fn fip_gateway(&self, network: &str, host: &str) -> Vec<(String, Option<&'a str>)> {
        if host.is_empty() {
            return Vec::new();
        }
        self.fip_gateways
            .get(&(network, host))
            .into_iter()
            .flatten()
            .filter_map(|p| {
                fixed_ips(p, "fixed_ips")
                    .into_iter()
                    .find(|(_, ip)| version_of(ip) == Some(4))
                    .map(|(sub, ip)| (ip, self.scope_of(&sub)))
            })
            .collect()
    }
}

fn up(doc: &Value) -> bool {
    doc.get("admin_state_up") != Some(&Value::Bool(false))
}

fn distributed(router: &Value) -> bool {
    router.get("distributed") == Some(&Value::Bool(true))
}

/// What `speaker` advertises, in upstream's order:
///
/// 1. with `advertise_floating_ip_host_routes`: every floating IP on a bound network
///    associated with an enabled, non-distributed router, as a host route via the router's
///    gateway address on that network;
/// 2. with `advertise_tenant_networks`: the subnets behind each enabled router whose gateway
///    is on a bound network, of the speaker's IP version, allocated from a pool whose address
///    scope is the scope of one of the bound network's subnets of that version, via the
///    router's gateway address of that version (distributed routers too: their central
///    gateway);
/// 3. with `advertise_floating_ip_host_routes`, IPv4 speakers: floating IPs of distributed
///    routers via the FIP agent gateway port on their instance's host (its subnet must be
///    address-scoped);
/// 4. IPv4 speakers: the fixed IPv4 addresses of instances (`compute:*` ports) on
///    address-scoped subnets, via a FIP agent gateway port on the same host whose subnet is
///    in the same scope.
pub fn advertised_routes(speaker: &Value, topo: &Topology<'_>) -> Vec<Route> {
    let version = speaker
        .get("ip_version")
        .and_then(Value::as_i64)
        .unwrap_or(4);
    let bound: BTreeSet<&str> = speaker
        .get("networks")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let flag = |k: &str| speaker.get(k) != Some(&Value::Bool(false));
    let idx = Index::new(topo);
    let mut out: Vec<Route> = Vec::new();
    let mut seen: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut push = |r: Route, out: &mut Vec<Route>| {
        if seen.insert((r.destination.clone(), r.next_hop.clone())) {
            out.push(r);
        }
    };

    // 1. Central floating IPs (IPv4 host routes).
    if flag("advertise_floating_ip_host_routes") {
        for fip in topo.floatingips {
            let net = text(fip, "floating_network_id");
            let Some(router) = idx.routers.get(text(fip, "router_id")) else {
                continue;
            };
            if !bound.contains(net) || !up(router) || distributed(router) {
                continue;
            }
            let addr = text(fip, "floating_ip_address");
            if version_of(addr) != Some(4) {
                continue;
            }
            if let Some(hop) = idx.gateway_ip(router, net, 4) {
                push(
                    Route {
                        destination: host_prefix(addr),
                        next_hop: Some(hop),
                    },
                    &mut out,
                );
            }
        }
    }

    // 2. Tenant networks in the bound networks' address scopes.
    let scopes: BTreeSet<&str> = topo
        .subnets
        .iter()
        .filter(|s| bound.contains(text(s, "network_id")))
        .filter(|s| s.get("ip_version").and_then(Value::as_i64) == Some(version))
        .filter_map(|s| idx.pool_scope.get(text(s, "subnetpool_id")).copied())
        .collect();
    if flag("advertise_tenant_networks") && !scopes.is_empty() {
        for router in topo.routers {
            if !up(router) {
                continue;
            }
            let gw_net = router
                .get("external_gateway_info")
                .map(|g| text(g, "network_id"))
                .unwrap_or_default();
            if !bound.contains(gw_net) {
                continue;
            }
            let Some(hop) = idx.gateway_ip(router, gw_net, version) else {
                continue;
            };
            let rid = text(router, "id");
            for port in topo.ports {
                let owner = text(port, "device_owner");
                if text(port, "device_id") != rid
                    || !owner.starts_with("network:")
                    || owner == GATEWAY_OWNER
                    || owner == SNAT_OWNER
                    || owner == FIP_GATEWAY_OWNER
                    || owner == "network:floatingip"
                    || owner == "network:dhcp"
                {
                    continue;
                }
                for (sub_id, _) in fixed_ips(port, "fixed_ips") {
                    let Some(sub) = idx.subnets.get(sub_id.as_str()) else {
                        continue;
                    };
                    let in_scope = idx.scope_of(&sub_id).is_some_and(|s| scopes.contains(s));
                    if bound.contains(text(sub, "network_id"))
                        || sub.get("ip_version").and_then(Value::as_i64) != Some(version)
                        || !in_scope
                    {
                        continue;
                    }
                    push(
                        Route {
                            destination: text(sub, "cidr").to_string(),
                            next_hop: Some(hop.clone()),
                        },
                        &mut out,
                    );
                }
            }
        }
    }

    if version != 4 {
        return out;
    }

    // 3. Floating IPs of distributed routers, via the FIP agent gateway of their host.
    if flag("advertise_floating_ip_host_routes") {
        for fip in topo.floatingips {
            let net = text(fip, "floating_network_id");
            let Some(router) = idx.routers.get(text(fip, "router_id")) else {
                continue;
            };
            if !bound.contains(net) || !up(router) || !distributed(router) {
                continue;
            }
            let host = idx
                .ports
                .get(text(fip, "port_id"))
                .map(|p| text(p, "binding:host_id"))
                .unwrap_or_default();
            let gws: Vec<String> = idx
                .fip_gateway(net, host)
                .into_iter()
                .filter(|(_, scope)| scope.is_some())
                .map(|(ip, _)| ip)
                .collect();
            if let [hop] = gws.as_slice() {
                push(
                    Route {
                        destination: host_prefix(text(fip, "floating_ip_address")),
                        next_hop: Some(hop.clone()),
                    },
                    &mut out,
                );
            }
        }
    }

    // 4. Instances' fixed addresses in a scope, via a FIP agent gateway in the same scope.
    for port in topo.ports {
        if !text(port, "device_owner").starts_with("compute:") {
            continue;
        }
        let host = text(port, "binding:host_id");
        for (sub_id, ip) in fixed_ips(port, "fixed_ips") {
            let Some(scope) = idx.scope_of(&sub_id) else {
                continue;
            };
            if version_of(&ip) != Some(4) {
                continue;
            }
            for net in &bound {
                let hop = idx
                    .fip_gateway(net, host)
                    .into_iter()
                    .find(|(_, s)| *s == Some(scope));
                if let Some((hop, _)) = hop {
                    push(
                        Route {
                            destination: host_prefix(&ip),
                            next_hop: Some(hop),
                        },
                        &mut out,
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: &str = "ext";

    fn speaker(version: i64, fips: bool, tenants: bool) -> Value {
        json!({"ip_version": version, "networks": [EXT],
               "advertise_floating_ip_host_routes": fips, "advertise_tenant_networks": tenants})
    }

    fn subnet(id: &str, net: &str, cidr: &str, pool: Option<&str>) -> Value {
        let v = if cidr.contains(':') { 6 } else { 4 };
        json!({"id": id, "network_id": net, "cidr": cidr, "ip_version": v,
               "subnetpool_id": pool})
    }

    fn router(id: &str, gw: &[&str], distributed: bool) -> Value {
        let ips: Vec<Value> = gw.iter().map(|ip| json!({"ip_address": ip})).collect();
        json!({"id": id, "admin_state_up": true, "distributed": distributed,
               "external_gateway_info": {"network_id": EXT, "external_fixed_ips": ips}})
    }

    fn iface(router: &str, subnet: &str, owner: &str) -> Value {
        json!({"id": format!("p-{subnet}"), "device_id": router, "device_owner": owner,
               "network_id": "tn", "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.0.0.1"}]})
    }

    struct World {
        subnets: Vec<Value>,
        pools: Vec<Value>,
        routers: Vec<Value>,
        ports: Vec<Value>,
        fips: Vec<Value>,
    }

    impl World {
        fn new() -> World {
            World {
                subnets: vec![
                    subnet("ext4", EXT, "8.0.0.0/24", Some("pool-ext")),
                    subnet("ext6", EXT, "2001:db8::/64", Some("pool-ext6")),
                    subnet("t1", "tn", "10.10.0.0/24", Some("pool-s1")),
                    subnet("t2", "tn2", "11.10.0.0/24", Some("pool-s2")),
                    subnet("t3", "tn3", "12.10.0.0/24", None),
                    subnet("t6", "tn6", "2001:db8:1::/64", Some("pool-t6")),
                ],
                pools: vec![
                    json!({"id": "pool-ext", "address_scope_id": "s1"}),
                    json!({"id": "pool-s1", "address_scope_id": "s1"}),
                    json!({"id": "pool-s2", "address_scope_id": "s2"}),
                    json!({"id": "pool-ext6", "address_scope_id": "s6"}),
                    json!({"id": "pool-t6", "address_scope_id": "s6"}),
                ],
                routers: vec![router("r1", &["8.0.0.3", "2001:db8::3"], false)],
                ports: vec![
                    iface("r1", "t1", "network:router_interface"),
                    iface("r1", "t2", "network:router_interface"),
                    iface("r1", "t3", "network:router_interface"),
                    iface("r1", "t6", "network:router_interface"),
                    json!({"id": "gw", "device_id": "r1", "device_owner": GATEWAY_OWNER,
                           "network_id": EXT, "fixed_ips": [{"subnet_id": "ext4", "ip_address": "8.0.0.3"}]}),
                ],
                fips: vec![
                    json!({"floating_network_id": EXT, "floating_ip_address": "8.0.0.50",
                                  "router_id": "r1", "port_id": "vm"}),
                ],
            }
        }

        fn routes(&self, speaker: &Value) -> Vec<(String, Option<String>)> {
            let topo = Topology {
                subnets: &self.subnets,
                subnetpools: &self.pools,
                routers: &self.routers,
                ports: &self.ports,
                floatingips: &self.fips,
            };
            advertised_routes(speaker, &topo)
                .into_iter()
                .map(|r| (r.destination, r.next_hop))
                .collect()
        }
    }

    fn r(d: &str, h: &str) -> (String, Option<String>) {
        (d.to_string(), Some(h.to_string()))
    }

    #[test]
    fn fips_then_tenant_subnets_in_the_external_scope_only() {
        let w = World::new();
        assert_eq!(
            w.routes(&speaker(4, true, true)),
            vec![r("8.0.0.50/32", "8.0.0.3"), r("10.10.0.0/24", "8.0.0.3")]
        );
        assert_eq!(
            w.routes(&speaker(4, false, true)),
            vec![r("10.10.0.0/24", "8.0.0.3")]
        );
        assert_eq!(
            w.routes(&speaker(4, true, false)),
            vec![r("8.0.0.50/32", "8.0.0.3")]
        );
        assert!(w.routes(&speaker(4, false, false)).is_empty());
    }

    #[test]
    fn ipv6_speaker_uses_the_v6_scope_and_gateway() {
        let w = World::new();
        assert_eq!(
            w.routes(&speaker(6, false, true)),
            vec![r("2001:db8:1::/64", "2001:db8::3")]
        );
    }

    #[test]
    fn unbound_disabled_or_unscoped_give_nothing() {
        let mut w = World::new();
        let mut sp = speaker(4, true, true);
        sp["networks"] = json!([]);
        assert!(w.routes(&sp).is_empty());
        // An external subnet without a scope: no tenant routes, floating IPs still.
        w.pools[0]["address_scope_id"] = Value::Null;
        assert_eq!(
            w.routes(&speaker(4, true, true)),
            vec![r("8.0.0.50/32", "8.0.0.3")]
        );
        let mut w = World::new();
        w.routers[0]["admin_state_up"] = json!(false);
        assert!(w.routes(&speaker(4, true, true)).is_empty());
        // No gateway on the bound network.
        let mut w = World::new();
        w.routers[0]["external_gateway_info"] = Value::Null;
        assert!(w.routes(&speaker(4, true, true)).is_empty());
    }

    #[test]
    fn removing_interface_or_fip_withdraws() {
        let mut w = World::new();
        w.ports.retain(|p| p["id"] != "p-t1");
        w.fips[0]["router_id"] = Value::Null;
        assert!(w.routes(&speaker(4, true, true)).is_empty());
    }

    #[test]
    fn distributed_routers() {
        let mut w = World::new();
        w.routers[0]["distributed"] = json!(true);
        // Tenant subnets still via the central gateway; the FIP needs a FIP agent gateway.
        assert_eq!(
            w.routes(&speaker(4, true, true)),
            vec![r("10.10.0.0/24", "8.0.0.3")]
        );
        w.ports.push(json!({"id": "vm", "device_owner": "compute:nova", "binding:host_id": "h1",
                            "network_id": "tn", "fixed_ips": [{"subnet_id": "t1", "ip_address": "10.10.0.7"}]}));
        w.ports.push(json!({"id": "fg", "device_owner": FIP_GATEWAY_OWNER, "binding:host_id": "h1",
                            "network_id": EXT, "fixed_ips": [{"subnet_id": "ext4", "ip_address": "8.0.0.9"}]}));
        assert_eq!(
            w.routes(&speaker(4, true, true)),
            vec![
                r("10.10.0.0/24", "8.0.0.3"),
                r("8.0.0.50/32", "8.0.0.9"),
                r("10.10.0.7/32", "8.0.0.9")
            ]
        );
        // Fixed-IP host routes are not gated by the flags.
        assert_eq!(
            w.routes(&speaker(4, false, false)),
            vec![r("10.10.0.7/32", "8.0.0.9")]
        );
    }

    #[test]
    fn speaker_and_peer_checks() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert!(check_speaker(&obj(json!({"local_as": 1, "ip_version": 4}))).is_ok());
        let e = check_speaker(&obj(json!({"local_as": 1, "ip_version": "4"}))).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid input for ip_version. Reason: 4 is not in valid_values."
        );
        assert!(check_speaker(&obj(json!({"local_as": null, "ip_version": 4}))).is_err());
        assert!(check_peer(&obj(json!({"peer_ip": "192.0.2.1", "remote_as": 5}))).is_ok());
        assert!(check_peer(&obj(json!({"peer_ip": "2001:db8::1", "remote_as": 5}))).is_ok());
        for bad in [
            json!("192.0.2.0/24"),
            json!(" 192.0.2.1"),
            json!(4),
            json!("x"),
        ] {
            assert!(check_peer(&obj(json!({"peer_ip": bad, "remote_as": 5}))).is_err());
        }
    }
}
