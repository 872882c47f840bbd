//! Routers: external gateways, interfaces (by subnet or port), extra routes.
//!
//! A router's ports are ordinary ports whose `device_id` is the router id: the gateway port
//! (`network:router_gateway`, project "" like upstream, so it is charged to nobody) on an
//! external network, and one interface port (`network:router_interface`) per attached
//! network. `external_gateway_info` is stored in the router document and rewritten whenever
//! the gateway port changes; `routes` are stored there too.

use std::net::IpAddr;

use ipnet::IpNet;
use neutrino_ipam as ipam;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::{is_uuid, to_bool};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::{GATEWAY_OWNER, INTERFACE_OWNERS, SNAT_OWNER};
use super::router_flavour::{
    bound_to_router_host, check_not_distributed_ha, interface_owner, Flavour,
};
use super::subnets::SubnetInfo;
use async_trait::async_trait;
use neutrino_types::resources as spec;

use super::kind::Kind;
use super::view::Need;
use super::{bump, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/routers`.
pub(super) static COLLECTION: Collection =
    Collection::new("routers", "router", spec::ROUTER, &Routers);

/// Routers: gateway, interfaces and extra routes as actions.
struct Routers;

#[async_trait]
impl Kind for Routers {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        view.load_zones(tx, "router", records).await?;
        let ids = records.iter().map(|r| r.id.clone()).collect();
        for helper in super::conntrack_helpers::of_routers(tx, ids).await? {
            let router = helper.parent_id.clone().unwrap_or_default();
            view.children.entry(router).or_default().push(helper);
        }
        Ok(())
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        doc.insert("availability_zones".into(), view.zones_of(&rec.id));
        doc.entry("flavor_id").or_insert(Value::Null);
        let ndp = doc.get("enable_ndp_proxy") == Some(&json!(true))
            && !doc.get("external_gateway_info").is_none_or(Value::is_null);
        doc.insert("enable_ndp_proxy".into(), json!(ndp));
        let helpers = view.children.get(&rec.id).map_or(&[][..], Vec::as_slice);
        doc.insert(
            "conntrack_helpers".into(),
            super::conntrack_helpers::shown_in_router(helpers),
        );
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        match body.get("external_gateway_info") {
            Some(gateway) => parse_gateway(gateway).map(drop),
            None => Ok(()),
        }
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_router(tx, ctx, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_router(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_router(tx, ctx, rec).await?;
        super::conntrack_helpers::drop_router_helpers(tx, &rec.id).await
    }

    fn actions(&self) -> &'static [&'static str] {
        &[
            "add_router_interface",
            "remove_router_interface",
            "add_extraroutes",
            "remove_extraroutes",
        ]
    }

    async fn action(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        app.router_action(tx, ctx, rec, action, body).await
    }
}

/// Default of the `router_route` quota: extra routes per router.
const DEFAULT_ROUTE_QUOTA: i64 = 30;

/// 400 `BadRequest` the way Neutron words it: "Bad router request: ...".
pub(super) fn bad_request(resource: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad("BadRequest", format!("Bad {resource} request: {msg}."))
}

fn bad_router(msg: impl std::fmt::Display) -> ApiError {
    bad_request("router", msg)
}

/// One extra route, destination canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    destination: IpNet,
    nexthop: IpAddr,
}

impl Route {
    fn to_json(&self) -> Value {
        json!({"destination": self.destination.to_string(), "nexthop": self.nexthop.to_string()})
    }
}

fn routes_json(routes: &[Route]) -> Value {
    Value::Array(routes.iter().map(Route::to_json).collect())
}

/// The routes list as Python prints it, for `InvalidRoutes` messages.
fn routes_repr(routes: &[Route]) -> String {
    let items: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "{{'destination': '{}', 'nexthop': '{}'}}",
                r.destination, r.nexthop
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn invalid_routes_input(reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid input for routes. Reason: {reason}."))
}

/// Validates a `routes` value (`type:hostroutes`): a list of `{destination, nexthop}` with a
/// network CIDR and an IP address. `null` means no routes. Duplicates are refused when
/// `strict`, merged otherwise.
fn parse_routes(v: &Value, strict: bool) -> ApiResult<Vec<Route>> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        other => {
            return Err(invalid_routes_input(format!(
                "Invalid data format for hostroute: '{other}'"
            )))
        }
    };
    let mut out: Vec<Route> = Vec::with_capacity(list.len());
    for item in list {
        let obj = item.as_object().ok_or_else(|| {
            invalid_routes_input(format!(
                "Invalid input. '{item}' must be a dictionary with keys: ['destination', 'nexthop']"
            ))
        })?;
        if obj.len() != 2 || !obj.contains_key("destination") || !obj.contains_key("nexthop") {
            let provided: Vec<String> = obj.keys().map(|k| format!("'{k}'")).collect();
            return Err(invalid_routes_input(format!(
                "Validation of dictionary's keys failed. Expected keys: {{'destination', 'nexthop'}} Provided keys: {{{}}}",
                provided.join(", ")
            )));
        }
        let dest_text = obj["destination"].as_str().unwrap_or_default();
        let destination = match dest_text.parse::<IpNet>() {
            Ok(net) if net.addr() == net.network() => net,
            _ => {
                return Err(invalid_routes_input(format!(
                    "'{}' is not a valid CIDR",
                    value_text(&obj["destination"])
                )))
            }
        };
        if destination.network().is_loopback() {
            return Err(invalid_routes_input(format!(
                "'{dest_text}' is not a routable CIDR"
            )));
        }
        let nexthop = obj["nexthop"]
            .as_str()
            .and_then(|t| ipam::parse_ip(t).ok())
            .ok_or_else(|| {
                invalid_routes_input(format!(
                    "'{}' is not a valid IP address",
                    value_text(&obj["nexthop"])
                ))
            })?;
        let route = Route {
            destination,
            nexthop,
        };
        if out.contains(&route) {
            if strict {
                return Err(invalid_routes_input(format!(
                    "Duplicate hostroute '{}'",
                    routes_repr(&[route])
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                )));
            }
            continue;
        }
        out.push(route);
    }
    Ok(out)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

/// Routes already stored in a router document.
fn stored_routes(body: &Value) -> Vec<Route> {
    parse_routes(body.get("routes").unwrap_or(&Value::Null), false).unwrap_or_default()
}

/// A validated `external_gateway_info` request.
#[derive(Debug)]
struct GatewayRequest {
    network: String,
    enable_snat: Option<bool>,
    fixed_ips: Option<Vec<Value>>,
}

fn invalid_gateway(reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid input for external_gateway_info. Reason: {reason}."
    ))
}

/// `type:dict_or_nodata` with `network_id` (required), `enable_snat`, `external_fixed_ips`.
/// No data (`null`, `{}`, any empty value) clears the gateway.
fn parse_gateway(v: &Value) -> ApiResult<Option<GatewayRequest>> {
    let empty = match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(t) => t.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    };
    if empty {
        return Ok(None);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| invalid_gateway(format!("'{v}' is not a dictionary")))?;
    let Some(network) = obj.get("network_id") else {
        let provided: Vec<String> = obj.keys().map(|k| format!("'{k}'")).collect();
        return Err(invalid_gateway(format!(
            "Validation of dictionary's keys failed. Expected keys: {{'network_id'}} Provided keys: {{{}}}",
            provided.join(", ")
        )));
    };
    let unexpected: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "network_id" | "enable_snat" | "external_fixed_ips"))
        .collect();
    if !unexpected.is_empty() {
        return Err(invalid_gateway(format!(
            "Unexpected keys supplied: {}",
            unexpected.join(", ")
        )));
    }
    let network = network
        .as_str()
        .filter(|t| is_uuid(t))
        .ok_or_else(|| invalid_gateway(format!("'{}' is not a valid UUID", value_text(network))))?
        .to_string();
    let enable_snat = match obj.get("enable_snat") {
        None => None,
        Some(b) => Some(to_bool(b).ok_or_else(|| {
            invalid_gateway(format!(
                "'{}' cannot be converted to boolean",
                value_text(b)
            ))
        })?),
    };
    let fixed_ips = match obj.get("external_fixed_ips") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(list)) => {
            let mut seen: Vec<&str> = Vec::new();
            for ip in list {
                let o = ip.as_object().ok_or_else(|| {
                    invalid_gateway(format!("Invalid data format for fixed IP: '{ip}'"))
                })?;
                if let Some(addr) = o.get("ip_address") {
                    let text = addr.as_str().unwrap_or_default();
                    if ipam::parse_ip(text).is_err() {
                        return Err(invalid_gateway(format!(
                            "'{}' is not a valid IP address",
                            value_text(addr)
                        )));
                    }
                    if seen.contains(&text) {
                        return Err(invalid_gateway(format!("Duplicate IP address '{text}'")));
                    }
                    seen.push(text);
                }
                if let Some(sn) = o.get("subnet_id") {
                    if !sn.as_str().is_some_and(is_uuid) {
                        return Err(invalid_gateway(format!(
                            "'{}' is not a valid UUID",
                            value_text(sn)
                        )));
                    }
                }
            }
            Some(list.clone())
        }
        Some(other) => {
            return Err(invalid_gateway(format!(
                "Invalid data format for fixed IP: '{other}'"
            )))
        }
    };
    Ok(Some(GatewayRequest {
        network,
        enable_snat,
        fixed_ips,
    }))
}

/// `external_gateway_info` as shown: the gateway port's addresses.
fn gateway_info(network: &str, enable_snat: bool, port: &Record) -> Value {
    let ips: Vec<Value> = port.body["fixed_ips"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|ip| {
                    json!({"subnet_id": s(ip, "subnet_id"), "ip_address": s(ip, "ip_address")})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"network_id": network, "enable_snat": enable_snat, "external_fixed_ips": ips})
}

fn fixed_ips(port: &Record) -> Vec<Value> {
    port.body["fixed_ips"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn port_subnet_ids(port: &Record) -> Vec<String> {
    fixed_ips(port)
        .iter()
        .map(|ip| s(ip, "subnet_id").to_string())
        .collect()
}

fn has_v6_address(port: &Record) -> bool {
    fixed_ips(port).iter().any(|ip| {
        s(ip, "ip_address")
            .parse::<IpAddr>()
            .is_ok_and(|a| a.is_ipv6())
    })
}

fn subnet_cidr(rec: &Record) -> Option<IpNet> {
    ipam::parse_cidr(s(&rec.body, "cidr")).ok()
}

/// An IPv6 subnet whose RAs come from an outside router cannot be attached.
fn check_address_mode(subnet: &Record) -> ApiResult<()> {
    let b = &subnet.body;
    if b["ip_version"].as_i64() == Some(6)
        && b["ipv6_ra_mode"].is_null()
        && !b["ipv6_address_mode"].is_null()
    {
        return Err(bad_router(format!(
            "IPv6 subnet {} configured to receive RAs from an external router cannot be added to Neutron Router",
            subnet.id
        )));
    }
    Ok(())
}

/// The body of `add_router_interface` / `remove_router_interface` answers.
fn interface_info(
    router: &str,
    project: &str,
    port: &str,
    network: &str,
    subnet: &str,
    subnets: &[String],
) -> Value {
    json!({
        "id": router,
        "tenant_id": project,
        "project_id": project,
        "subnet_id": subnet,
        "subnet_ids": subnets,
        "port_id": port,
        "network_id": network,
    })
}

impl App {
    /// Loads a network for use as an external network: 404 when the caller cannot see it;
    /// the flag says whether it is external (`router:external` or an `access_as_external`
    /// policy).
    pub(super) async fn external_network(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        id: &str,
    ) -> ApiResult<(Record, bool)> {
        let view = View::load(tx, "router").await?;
        let net = tx
            .get("network", id)
            .await
            .map_err(db)?
            .filter(|n| view.network_visible(ctx, n))
            .ok_or_else(|| ApiError::not_found("network", id))?;
        let external = view.is_external(&net);
        Ok((net, external))
    }

    /// Ports whose device is the router: interfaces and gateway.
    pub(super) async fn router_ports(&self, tx: &mut Tx, router: &str) -> ApiResult<Vec<Record>> {
        let all = tx.list("port", &Selector::default()).await.map_err(db)?;
        Ok(all
            .into_iter()
            .filter(|p| {
                s(&p.body, "device_id") == router
                    && (INTERFACE_OWNERS.contains(&s(&p.body, "device_owner"))
                        || s(&p.body, "device_owner") == GATEWAY_OWNER)
            })
            .collect())
    }

    /// The router's ports that live on its (SNAT) host: gateway, SNAT ports and interfaces,
    /// but not a distributed router's interfaces, which every host realises.
    pub(super) async fn hosted_router_ports(
        &self,
        tx: &mut Tx,
        router: &str,
    ) -> ApiResult<Vec<Record>> {
        let all = tx.list("port", &Selector::default()).await.map_err(db)?;
        Ok(all
            .into_iter()
            .filter(|p| {
                let owner = s(&p.body, "device_owner");
                s(&p.body, "device_id") == router
                    && (owner == GATEWAY_OWNER
                        || owner == SNAT_OWNER
                        || INTERFACE_OWNERS.contains(&owner))
                    && bound_to_router_host(owner)
            })
            .collect())
    }

    /// The host that runs a router (see `l3_scheduler`): none while no agent can.
    pub(crate) async fn router_host(&self, tx: &mut Tx, router: &str) -> ApiResult<String> {
        self.l3_host(tx, router).await
    }

    /// Binds the ports of routers that no host runs yet (after an agent registered).
    pub(crate) async fn schedule_unhosted_routers(&self) -> ApiResult<usize> {
        let mut tx = self.write().await?;
        let unbound: Vec<Record> = tx
            .list("port", &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .filter(|p| {
                let owner = s(&p.body, "device_owner");
                (owner == GATEWAY_OWNER || owner == SNAT_OWNER || INTERFACE_OWNERS.contains(&owner))
                    && bound_to_router_host(owner)
                    && s(&p.body, "binding:host_id").is_empty()
            })
            .collect();
        let mut bound = 0;
        for mut port in unbound {
            let router = s(&port.body, "device_id").to_string();
            let host = self.router_host(&mut tx, &router).await?;
            if host.is_empty() {
                break;
            }
            port.body["binding:host_id"] = json!(host);
            bump(&mut port.body);
            tx.update("port", &port.id, &port.body).await.map_err(db)?;
            bound += 1;
        }
        tx.commit().await.map_err(db)?;
        Ok(bound)
    }

    /// The router's interface ports.
    pub(super) async fn interface_ports(
        &self,
        tx: &mut Tx,
        router: &str,
    ) -> ApiResult<Vec<Record>> {
        Ok(self
            .router_ports(tx, router)
            .await?
            .into_iter()
            .filter(|p| INTERFACE_OWNERS.contains(&s(&p.body, "device_owner")))
            .collect())
    }

    /// A change of a router's flavour (`ha` or `distributed`, whose `update_router:<flavour>`
    /// rule the policy checked): `None` when `changes` keeps it. Like Neutron, only a router
    /// that is administratively down after the request may change flavour (`down_before`:
    /// before it too). On a change the flag is set and the interface ports take the owner the
    /// new flavour gives them, bound to `host(new)` (`None`: their binding stays).
    pub(super) async fn change_flavour(
        &self,
        tx: &mut Tx,
        rec: &mut Record,
        changes: &Doc,
        flavour: Flavour,
    ) -> ApiResult<Option<bool>> {
        let Some(wanted) = changes.get(flavour.attribute()).and_then(Value::as_bool) else {
            return Ok(None);
        };
        let current = rec.body[flavour.attribute()] == true;
        if wanted == current {
            return Ok(None);
        }
        let up_before = rec.body["admin_state_up"] != false;
        let up_after = changes
            .get("admin_state_up")
            .map_or(up_before, |v| v != &Value::Bool(false));
        if up_after || (flavour == Flavour::Distributed && up_before) {
            return Err(bad_request("router", flavour.active_refusal()));
        }
        rec.body[flavour.attribute()] = json!(wanted);
        let owner = interface_owner(&rec.body);
        let host = match flavour {
            // A distributed router's interfaces are bound wherever its ports are; a
            // centralized one's on its host.
            Flavour::Distributed if wanted => Some(String::new()),
            Flavour::Distributed => Some(self.router_host(tx, &rec.id).await?),
            Flavour::Ha => None,
        };
        for mut port in self.interface_ports(tx, &rec.id).await? {
            port.body["device_owner"] = json!(owner);
            if let Some(host) = host
                .as_deref()
                .filter(|h| s(&port.body, "binding:host_id") != *h)
            {
                port.body["binding:host_id"] = json!(host);
                port.body["binding:vif_type"] = json!("unbound");
                port.body["status"] = json!("DOWN");
            }
            bump(&mut port.body);
            tx.update("port", &port.id, &port.body).await.map_err(db)?;
        }
        Ok(Some(wanted))
    }

    /// The router's gateway port on `network`, if any.
    pub(super) async fn gateway_port(
        &self,
        tx: &mut Tx,
        router: &str,
        network: &str,
    ) -> ApiResult<Option<Record>> {
        Ok(self
            .network_ports_in_roles(tx, network, &[GATEWAY_OWNER])
            .await?
            .into_iter()
            .find(|p| s(&p.body, "device_id") == router))
    }

    /// Floating IPs whose traffic goes through the router.
    async fn router_floatingips(&self, tx: &mut Tx, router: &str) -> ApiResult<Vec<Record>> {
        let all = tx
            .list("floatingip", &Selector::default())
            .await
            .map_err(db)?;
        Ok(all
            .into_iter()
            .filter(|f| s(&f.body, "router_id") == router)
            .collect())
    }

    /// Locks the router row and reloads it, so concurrent changes to one router serialise.
    async fn lock_router(&self, tx: &mut Tx, rec: &mut Record) -> ApiResult<()> {
        super::relock(tx, rec).await
    }

    /// Refuses subnets the router is already on, and subnets overlapping the router's
    /// (its interfaces' subnets and every subnet of its gateway network).
    async fn check_router_subnets(
        &self,
        tx: &mut Tx,
        router: &str,
        new_subnets: &[Record],
    ) -> ApiResult<()> {
        let mut router_subnets: Vec<String> = Vec::new();
        for port in self.router_ports(tx, router).await? {
            let gateway = s(&port.body, "device_owner") == GATEWAY_OWNER;
            for sid in port_subnet_ids(&port) {
                if new_subnets.iter().any(|n| n.id == sid) {
                    return Err(bad_router(format!(
                        "Router already has a port on subnet {sid}"
                    )));
                }
                if gateway {
                    let net = port.parent_id.clone().unwrap_or_default();
                    for sn in self.network_subnets(tx, &net).await? {
                        router_subnets.push(sn.id);
                    }
                } else {
                    router_subnets.push(sid);
                }
            }
        }
        let mut seen: Vec<String> = Vec::new();
        for sid in router_subnets {
            if seen.contains(&sid) {
                continue;
            }
            seen.push(sid.clone());
            let Some(sub) = tx.get("subnet", &sid).await.map_err(db)? else {
                continue;
            };
            let Some(cidr) = subnet_cidr(&sub) else {
                continue;
            };
            for new in new_subnets {
                let Some(new_cidr) = subnet_cidr(new) else {
                    continue;
                };
                if ipam::overlaps(cidr, new_cidr) {
                    return Err(bad_router(format!(
                        "Cidr {} of subnet {} overlaps with cidr {} of subnet {}",
                        s(&new.body, "cidr"),
                        new.id,
                        s(&sub.body, "cidr"),
                        sub.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Subnet CIDRs and addresses of the given ports.
    async fn port_networks(
        &self,
        tx: &mut Tx,
        ports: &[Record],
    ) -> ApiResult<(Vec<IpNet>, Vec<IpAddr>)> {
        let mut cidrs = Vec::new();
        let mut ips = Vec::new();
        for port in ports {
            for ip in fixed_ips(port) {
                if let Some(sub) = tx.get("subnet", s(&ip, "subnet_id")).await.map_err(db)? {
                    cidrs.extend(subnet_cidr(&sub));
                }
                ips.extend(s(&ip, "ip_address").parse::<IpAddr>().ok());
            }
        }
        Ok((cidrs, ips))
    }

    /// Every nexthop must be on a subnet the router is connected to, and not be one of the
    /// router's own addresses.
    fn check_nexthops(routes: &[Route], cidrs: &[IpNet], ips: &[IpAddr]) -> ApiResult<()> {
        for route in routes {
            let reason = if !cidrs.iter().any(|c| c.contains(&route.nexthop)) {
                "the nexthop is not connected with router"
            } else if ips.contains(&route.nexthop) {
                "the nexthop is used by router"
            } else {
                continue;
            };
            return Err(ApiError::bad(
                "InvalidRoutes",
                format!(
                    "Invalid format for routes: {}, {reason}",
                    routes_repr(routes)
                ),
            ));
        }
        Ok(())
    }

    /// Validates a new route set against the router's current ports and the `router_route`
    /// quota of its project.
    async fn check_routes(&self, tx: &mut Tx, router: &Record, routes: &[Route]) -> ApiResult<()> {
        let ports = self.router_ports(tx, &router.id).await?;
        let (cidrs, ips) = self.port_networks(tx, &ports).await?;
        Self::check_nexthops(routes, &cidrs, &ips)?;
        let limit = tx
            .quotas(&router.project_id)
            .await
            .map_err(db)?
            .into_iter()
            .find(|(r, _)| r == "router_route")
            .map(|(_, l)| l)
            .unwrap_or(DEFAULT_ROUTE_QUOTA);
        if limit >= 0 && routes.len() as i64 > limit {
            return Err(ApiError::conflict(
                "OverQuota",
                "Quota exceeded for resources: ['router_route'].",
            ));
        }
        Ok(())
    }

    /// Applies an `external_gateway_info` request: creates, moves, re-addresses or removes
    /// the gateway port. Returns the new `external_gateway_info`.
    #[allow(clippy::too_many_arguments)]
    async fn apply_gateway(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        router: &str,
        current: &Value,
        routes: &[Route],
        requested: &Value,
        op: &str,
    ) -> ApiResult<Value> {
        let req = parse_gateway(requested)?;
        if let Some(r) = &req {
            let target = super::authz::project_target(&ctx.project_id);
            if r.enable_snat.is_some() {
                let rule = format!("{op}_router:external_gateway_info:enable_snat");
                self.check_rule(ctx, &rule, &target)?;
            }
            if r.fixed_ips.is_some() {
                let rule = format!("{op}_router:external_gateway_info:external_fixed_ips");
                self.check_rule(ctx, &rule, &target)?;
            }
        }
        let current_net = current
            .get("network_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let current_port = match &current_net {
            Some(net) => self.gateway_port(tx, router, net).await?,
            None => None,
        };
        let interfaces = self.interface_ports(tx, router).await?;
        let Some(req) = req else {
            if let Some(port) = current_port {
                self.check_gateway_unused(tx, router, current_net.as_deref().unwrap_or(""))
                    .await?;
                if !routes.is_empty() {
                    let (cidrs, ips) = self.port_networks(tx, &interfaces).await?;
                    Self::check_nexthops(routes, &cidrs, &ips)?;
                }
                self.remove_service_port(tx, &port).await?;
            }
            return Ok(Value::Null);
        };
        let (_, external) = self.external_network(tx, ctx, &req.network).await?;
        if !external {
            return Err(bad_router(format!(
                "Network {} is not an external network",
                req.network
            )));
        }
        let subnets = self.network_subnets(tx, &req.network).await?;
        let ext_ips = req.fixed_ips.clone().unwrap_or_default();
        for ip in &ext_ips {
            let addr = s(ip, "ip_address");
            if !addr.is_empty() && subnets.iter().any(|sn| s(&sn.body, "gateway_ip") == addr) {
                return Err(bad_router(format!(
                    "External IP {addr} is the same as the gateway IP"
                )));
            }
        }
        if !routes.is_empty() {
            let (mut cidrs, ips) = self.port_networks(tx, &interfaces).await?;
            cidrs.extend(subnets.iter().filter_map(subnet_cidr));
            Self::check_nexthops(routes, &cidrs, &ips)?;
        }
        let same_network = current_net.as_deref() == Some(req.network.as_str());
        let port = match current_port {
            Some(mut port) if same_network => {
                if gateway_ips_change(&port, &ext_ips) {
                    let mut changes = Doc::new();
                    changes.insert("fixed_ips".into(), json!(ext_ips));
                    self.update_port(tx, &mut port, changes).await?;
                    bump(&mut port.body);
                    tx.update("port", &port.id, &port.body).await.map_err(db)?;
                }
                port
            }
            old => {
                if let Some(old) = old {
                    self.check_gateway_unused(tx, router, current_net.as_deref().unwrap_or(""))
                        .await?;
                    self.remove_service_port(tx, &old).await?;
                }
                self.check_router_subnets(tx, router, &subnets).await?;
                let ips = (!ext_ips.is_empty()).then(|| json!(ext_ips));
                self.insert_service_port(tx, "", &req.network, ips, GATEWAY_OWNER, router)
                    .await?
            }
        };
        Ok(gateway_info(
            &req.network,
            req.enable_snat.unwrap_or(true),
            &port,
        ))
    }

    /// The gateway cannot go while floating IPs of its network are routed through it.
    async fn check_gateway_unused(
        &self,
        tx: &mut Tx,
        router: &str,
        network: &str,
    ) -> ApiResult<()> {
        if !self.router_ndp_proxies(tx, router).await?.is_empty() {
            return Err(neutrino_types::ndp_proxy::gateway_in_use(router));
        }
        let fips = self.router_floatingips(tx, router).await?;
        if fips
            .iter()
            .any(|f| s(&f.body, "floating_network_id") == network)
        {
            return Err(ApiError::conflict(
                "RouterExternalGatewayInUseByFloatingIp",
                format!("Gateway cannot be updated for router {router}, since a gateway to external network {network} is required by one or more floating IPs."),
            ));
        }
        Ok(())
    }

    pub(super) async fn create_router(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        if body.contains_key("routes") {
            return Err(ApiError::bad_request(
                "Attribute 'routes' not allowed in POST",
            ));
        }
        let flavour = self.router_flavour_on_create(tx, body).await?;
        self.create_distributed(ctx, body)?;
        if let Some((_, distributed)) = flavour {
            body.insert("distributed".into(), json!(distributed));
        }
        self.ha_on_create(tx, ctx, body, flavour.map(|(ha, _)| ha))
            .await?;
        check_not_distributed_ha(body)?;
        let id = body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let requested = body
            .get("external_gateway_info")
            .cloned()
            .unwrap_or(Value::Null);
        let gateway = self
            .apply_gateway(tx, ctx, &id, &Value::Null, &[], &requested, "create")
            .await?;
        body.insert("external_gateway_info".into(), gateway);
        self.ndp_on_create(tx, body).await?;
        body.insert("status".into(), json!("ACTIVE"));
        body.insert("routes".into(), json!([]));
        self.check_zone_hints(tx, "router", &json!(body)).await?;
        body.insert("availability_zones".into(), json!([]));
        if !body.contains_key("availability_zone_hints") {
            body.insert("availability_zone_hints".into(), json!([]));
        }
        Ok(None)
    }

    pub(super) async fn update_router(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        self.lock_router(tx, rec).await?;
        self.update_distributed(tx, rec, &changes).await?;
        self.ha_on_update(tx, rec, &changes).await?;
        check_not_distributed_ha(rec.body.as_object().unwrap_or(&Doc::new()))?;
        let mut routes = stored_routes(&rec.body);
        if let Some(v) = changes.get("routes") {
            let new = parse_routes(v, true)?;
            self.check_routes(tx, rec, &new).await?;
            routes = new;
            rec.body["routes"] = routes_json(&routes);
        }
        if let Some(v) = changes.get("external_gateway_info") {
            let current = rec.body["external_gateway_info"].clone();
            let gateway = self
                .apply_gateway(tx, ctx, &rec.id, &current, &routes, v, "update")
                .await?;
            rec.body["external_gateway_info"] = gateway;
        }
        self.ndp_on_update(tx, rec, &changes).await?;
        for (key, value) in changes {
            if matches!(
                key.as_str(),
                "routes" | "external_gateway_info" | "distributed" | "enable_ndp_proxy"
            ) {
                continue;
            }
            rec.body[key.as_str()] = value;
        }
        self.sync_snat_ports(tx, rec).await
    }

    pub(super) async fn delete_router(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        let mut rec = rec.clone();
        self.lock_router(tx, &mut rec).await?;
        tx.release_owned(super::flavors::ROUTER_FLAVOR_PREFIX, &rec.id)
            .await
            .map_err(db)?;
        let interfaces = self.interface_ports(tx, &rec.id).await?;
        if !interfaces.is_empty() {
            let ids: Vec<&str> = interfaces.iter().map(|p| p.id.as_str()).collect();
            return Err(ApiError::conflict(
                "RouterInUse",
                format!(
                    "Router {} has ports still attached: {}",
                    rec.id,
                    ids.join(", ")
                ),
            ));
        }
        if let Some(net) = rec.body["external_gateway_info"]
            .get("network_id")
            .and_then(Value::as_str)
        {
            let net = net.to_string();
            if let Some(port) = self.gateway_port(tx, &rec.id, &net).await? {
                self.check_gateway_unused(tx, &rec.id, &net).await?;
                self.remove_service_port(tx, &port).await?;
            }
        }
        self.router_hosting_deleted(tx, &rec).await
    }

    pub(super) async fn router_action(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        self.lock_router(tx, rec).await?;
        let out = match action {
            "add_router_interface" => {
                let (port, subnet) = interface_request(&body, false)?;
                match port {
                    Some(port) => self.add_interface_by_port(tx, ctx, rec, &port).await?,
                    None => {
                        let subnet = subnet.unwrap_or_default();
                        self.add_interface_by_subnet(tx, ctx, rec, &subnet).await?
                    }
                }
            }
            "remove_router_interface" => {
                let (port, subnet) = interface_request(&body, true)?;
                match port {
                    Some(port) => {
                        self.remove_interface_by_port(tx, rec, &port, subnet.as_deref())
                            .await?
                    }
                    None => {
                        let subnet = subnet.unwrap_or_default();
                        self.remove_interface_by_subnet(tx, ctx, rec, &subnet)
                            .await?
                    }
                }
            }
            "add_extraroutes" | "remove_extraroutes" => {
                let requested = body
                    .get("router")
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        ApiError::bad_request("Unable to find 'router' in request body")
                    })?
                    .get("routes")
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "Failed to parse request. Required attribute 'routes' not specified",
                        )
                    })?;
                let requested = parse_routes(requested, false)?;
                let mut routes = stored_routes(&rec.body);
                if action == "add_extraroutes" {
                    for r in requested {
                        if !routes.contains(&r) {
                            routes.push(r);
                        }
                    }
                } else {
                    routes.retain(|r| !requested.contains(r));
                }
                self.check_routes(tx, rec, &routes).await?;
                rec.body["routes"] = routes_json(&routes);
                Value::Null
            }
            _ => return Err(ApiError::no_such_url()),
        };
        self.sync_snat_ports(tx, rec).await?;
        bump(&mut rec.body);
        tx.update("router", &rec.id, &rec.body).await.map_err(db)?;
        if out.is_null() {
            // Admin-only attributes (`ha`) stay hidden from others, as in `show`.
            let mut doc = rec.body.as_object().cloned().unwrap_or_default();
            let helpers = super::conntrack_helpers::of_routers(tx, vec![rec.id.clone()]).await?;
            doc.insert(
                "conntrack_helpers".into(),
                super::conntrack_helpers::shown_in_router(&helpers),
            );
            let doc = self.strip_hidden(&COLLECTION, ctx, doc);
            return Ok(json!({ "router": doc }));
        }
        Ok(out)
    }

    /// Loads a subnet the caller can see (404 otherwise).
    async fn visible_subnet(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        id: &str,
    ) -> ApiResult<(Record, View)> {
        let coll = &super::subnets::COLLECTION;
        let found = tx.get("subnet", id).await.map_err(db)?;
        let view = View::check(tx, &super::subnets::COLLECTION, found.as_slice()).await?;
        match found {
            Some(sub) if self.visible(&view, ctx, coll, &sub) => Ok((sub, view)),
            _ => Err(ApiError::not_found("subnet", id)),
        }
    }

    async fn add_interface_by_subnet(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        router: &Record,
        subnet_id: &str,
    ) -> ApiResult<Value> {
        let (sub, view) = self.visible_subnet(tx, ctx, subnet_id).await?;
        let info = SubnetInfo::from_record(&sub).ok_or_else(ApiError::internal)?;
        let Some(gateway) = info.gateway else {
            return Err(bad_router(
                "Subnet for router interface must have a gateway IP",
            ));
        };
        let network = sub.parent_id.clone().unwrap_or_default();
        if !ctx.owns(&sub.project_id) {
            // Globally shared networks may not be attached by others (LP 1757482); networks
            // shared with the caller's project explicitly may (LP 1975603).
            let granted = view.rbac.get(&network).is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("action").and_then(Value::as_str) == Some("access_as_shared")
                        && p.get("target_tenant").and_then(Value::as_str)
                            == Some(ctx.project_id.as_str())
                })
            });
            if !granted {
                return Err(bad_router(format!(
                    "Cannot add interface to router because subnet {subnet_id} is not owned by project making the request"
                )));
            }
        }
        check_address_mode(&sub)?;
        self.check_router_subnets(tx, &router.id, std::slice::from_ref(&sub))
            .await?;
        let fixed_ip = json!({"subnet_id": sub.id, "ip_address": gateway.to_string()});
        if info.is_v6() {
            // Another IPv6 prefix of a network already attached joins the existing port.
            let existing = self
                .interface_ports(tx, &router.id)
                .await?
                .into_iter()
                .find(|p| p.parent_id.as_deref() == Some(network.as_str()) && has_v6_address(p));
            if let Some(mut port) = existing {
                let mut ips = fixed_ips(&port);
                ips.push(fixed_ip);
                let mut changes = Doc::new();
                changes.insert("fixed_ips".into(), json!(ips));
                self.update_port(tx, &mut port, changes).await?;
                bump(&mut port.body);
                tx.update("port", &port.id, &port.body).await.map_err(db)?;
                return Ok(interface_info(
                    &router.id,
                    &port.project_id,
                    &port.id,
                    &network,
                    &sub.id,
                    std::slice::from_ref(&sub.id),
                ));
            }
        }
        let port = self
            .insert_service_port(
                tx,
                &router.project_id,
                &network,
                Some(json!([fixed_ip])),
                interface_owner(&router.body),
                &router.id,
            )
            .await?;
        Ok(interface_info(
            &router.id,
            &port.project_id,
            &port.id,
            &network,
            &sub.id,
            std::slice::from_ref(&sub.id),
        ))
    }

    async fn add_interface_by_port(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        router: &Record,
        port_id: &str,
    ) -> ApiResult<Value> {
        let coll = &super::ports::COLLECTION;
        let found = tx.get("port", port_id).await.map_err(db)?;
        let view = View::check(tx, &super::ports::COLLECTION, found.as_slice()).await?;
        let mut port = match found {
            Some(p) if self.visible(&view, ctx, coll, &p) => p,
            _ => return Err(ApiError::not_found("port", port_id)),
        };
        let network = port.parent_id.clone().unwrap_or_default();
        let device = s(&port.body, "device_id");
        if !device.is_empty() {
            return Err(ApiError::conflict(
                "PortInUse",
                format!("Unable to complete operation on port {port_id} for network {network}. Port already has an attached device {device}."),
            ));
        }
        if fixed_ips(&port).is_empty() {
            return Err(bad_router("Router port must have at least one fixed IP"));
        }
        let mut subnets: Vec<Record> = Vec::new();
        for sid in port_subnet_ids(&port) {
            if subnets.iter().any(|sn| sn.id == sid) {
                continue;
            }
            if let Some(sub) = tx.get("subnet", &sid).await.map_err(db)? {
                check_address_mode(&sub)?;
                subnets.push(sub);
            }
        }
        if has_v6_address(&port) {
            for existing in self.router_ports(tx, &router.id).await? {
                if existing.id != port.id
                    && existing.parent_id == port.parent_id
                    && has_v6_address(&existing)
                {
                    return Err(bad_router(format!(
                        "Router already contains IPv6 port {} belonging to network id {network}. Only one IPv6 port from the same network subnet can be connected to a router",
                        existing.id
                    )));
                }
            }
        }
        self.check_router_subnets(tx, &router.id, &subnets).await?;
        if subnets
            .iter()
            .filter(|sn| sn.body["ip_version"].as_i64() == Some(4))
            .count()
            > 1
        {
            return Err(bad_router(
                "Cannot have multiple IPv4 subnets on router port",
            ));
        }
        if !ctx.is_admin() {
            for ip in fixed_ips(&port) {
                let Some(sub) = subnets.iter().find(|sn| sn.id == s(&ip, "subnet_id")) else {
                    continue;
                };
                let in_pools = SubnetInfo::from_record(sub).is_some_and(|info| {
                    s(&ip, "ip_address")
                        .parse::<IpAddr>()
                        .is_ok_and(|a| ipam::pool_contains(&info.pools, a))
                });
                if !in_pools && sub.project_id != ctx.project_id {
                    return Err(bad_router(format!(
                        "Cannot add interface to router because specified port {port_id} has an IP address out of the allocation pool of subnet {}, which is not owned by the project making the request",
                        sub.id
                    )));
                }
            }
        }
        port.body["device_id"] = json!(router.id);
        let owner = interface_owner(&router.body);
        port.body["device_owner"] = json!(owner);
        let host = if bound_to_router_host(owner) {
            self.router_host(tx, &router.id).await?
        } else {
            String::new()
        };
        if s(&port.body, "binding:host_id") != host {
            port.body["binding:host_id"] = json!(host);
            port.body["status"] = json!("DOWN");
            port.body["binding:vif_type"] = json!("unbound");
        }
        bump(&mut port.body);
        tx.update("port", &port.id, &port.body).await.map_err(db)?;
        let ids: Vec<String> = subnets.iter().map(|sn| sn.id.clone()).collect();
        Ok(interface_info(
            &router.id,
            &port.project_id,
            &port.id,
            &network,
            ids.last().map(String::as_str).unwrap_or_default(),
            &ids,
        ))
    }

    /// Refuses to detach a subnet that floating IPs or extra routes of the router still use:
    /// as the floating IPs' own subnet (`router-interface-fip`) or their fixed IPs' subnet.
    async fn check_interface_unused(
        &self,
        tx: &mut Tx,
        router: &Record,
        subnet: &Record,
    ) -> ApiResult<()> {
        self.check_ndp_interface_unused(tx, &router.id, &subnet.id)
            .await?;
        let Some(cidr) = subnet_cidr(subnet) else {
            return Ok(());
        };
        let fips = self.router_floatingips(tx, &router.id).await?;
        let network = subnet.parent_id.clone().unwrap_or_default();
        if fips.iter().any(|f| {
            s(&f.body, "floating_network_id") == network
                && s(&f.body, "floating_ip_address")
                    .parse::<IpAddr>()
                    .is_ok_and(|a| cidr.contains(&a))
        }) {
            return Err(ApiError::conflict(
                "RouterInterfaceInUseAsGatewayByFloatingIP",
                format!("Router interface for subnet {} on router {} cannot be deleted, as it is required by one or more floating IPs as a gateway.", subnet.id, router.id),
            ));
        }
        if !fips.is_empty() {
            let on_subnet: Vec<String> = self
                .network_ports(tx, &network)
                .await?
                .into_iter()
                .filter(|p| port_subnet_ids(p).contains(&subnet.id))
                .map(|p| p.id)
                .collect();
            for fip in &fips {
                let fixed = s(&fip.body, "fixed_ip_address").parse::<IpAddr>();
                if fixed.is_ok_and(|a| cidr.contains(&a))
                    && on_subnet.iter().any(|p| p == s(&fip.body, "port_id"))
                {
                    return Err(ApiError::conflict(
                        "RouterInterfaceInUseByFloatingIP",
                        format!("Router interface for subnet {} on router {} cannot be deleted, as it is required by one or more floating IPs.", subnet.id, router.id),
                    ));
                }
            }
        }
        if stored_routes(&router.body)
            .iter()
            .any(|r| cidr.contains(&r.nexthop))
        {
            return Err(ApiError::conflict(
                "RouterInterfaceInUseByRoute",
                format!("Router interface for subnet {} on router {} cannot be deleted, as it is required by one or more routes.", subnet.id, router.id),
            ));
        }
        Ok(())
    }

    async fn remove_interface_by_port(
        &self,
        tx: &mut Tx,
        router: &Record,
        port_id: &str,
        subnet_id: Option<&str>,
    ) -> ApiResult<Value> {
        let port = self
            .interface_ports(tx, &router.id)
            .await?
            .into_iter()
            .find(|p| p.id == port_id)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "RouterInterfaceNotFound",
                    format!(
                        "Router {} does not have an interface with id {port_id}",
                        router.id
                    ),
                )
            })?;
        let mut ids = port_subnet_ids(&port);
        ids.dedup();
        if let Some(sid) = subnet_id {
            if !ids.iter().any(|i| i == sid) {
                return Err(ApiError::bad(
                    "SubnetMismatchForPort",
                    format!("Subnet on port {port_id} does not match the requested subnet {sid}."),
                ));
            }
        }
        for sid in &ids {
            if let Some(sub) = tx.get("subnet", sid).await.map_err(db)? {
                self.check_interface_unused(tx, router, &sub).await?;
            }
        }
        self.remove_service_port(tx, &port).await?;
        let network = port.parent_id.clone().unwrap_or_default();
        Ok(interface_info(
            &router.id,
            &port.project_id,
            &port.id,
            &network,
            ids.first().map(String::as_str).unwrap_or_default(),
            &ids,
        ))
    }

    async fn remove_interface_by_subnet(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        router: &Record,
        subnet_id: &str,
    ) -> ApiResult<Value> {
        let (sub, _) = self.visible_subnet(tx, ctx, subnet_id).await?;
        let network = sub.parent_id.clone().unwrap_or_default();
        let ports: Vec<Record> = self
            .interface_ports(tx, &router.id)
            .await?
            .into_iter()
            .filter(|p| p.parent_id.as_deref() == Some(network.as_str()))
            .collect();
        if !ports.is_empty() {
            self.check_interface_unused(tx, router, &sub).await?;
        }
        for mut port in ports {
            let ids = port_subnet_ids(&port);
            if !ids.iter().any(|i| i == subnet_id) {
                continue;
            }
            if ids.len() > 1 {
                // A multi-prefix IPv6 port loses only this prefix.
                let keep: Vec<Value> = fixed_ips(&port)
                    .into_iter()
                    .filter(|ip| s(ip, "subnet_id") != subnet_id)
                    .collect();
                let mut changes = Doc::new();
                changes.insert("fixed_ips".into(), json!(keep));
                self.update_port(tx, &mut port, changes).await?;
                bump(&mut port.body);
                tx.update("port", &port.id, &port.body).await.map_err(db)?;
            } else {
                self.remove_service_port(tx, &port).await?;
            }
            return Ok(interface_info(
                &router.id,
                &port.project_id,
                &port.id,
                &network,
                subnet_id,
                &[subnet_id.to_string()],
            ));
        }
        Err(ApiError::new(
            404,
            "RouterInterfaceNotFoundForSubnet",
            format!(
                "Router {} has no interface on subnet {subnet_id}",
                router.id
            ),
        ))
    }
}

/// Whether requested gateway addresses differ from the port's (by subnet set, then by
/// address set), as upstream decides whether to re-address the gateway port.
fn gateway_ips_change(port: &Record, requested: &[Value]) -> bool {
    if requested.is_empty() {
        return false;
    }
    let current = fixed_ips(port);
    let set = |list: &[Value], key: &str| {
        let mut v: Vec<String> = list
            .iter()
            .map(|ip| s(ip, key).to_string())
            .filter(|t| !t.is_empty())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    set(&current, "subnet_id") != set(requested, "subnet_id")
        || set(&current, "ip_address") != set(requested, "ip_address")
}

/// `{"subnet_id": ...}` / `{"port_id": ...}` of the interface actions: (port, subnet).
fn interface_request(body: &Value, removal: bool) -> ApiResult<(Option<String>, Option<String>)> {
    let port = body.get("port_id");
    let subnet = body.get("subnet_id");
    if port.is_none() && subnet.is_none() {
        return Err(bad_router("Either subnet_id or port_id must be specified"));
    }
    let uuid = |v: Option<&Value>| -> ApiResult<Option<String>> {
        match v {
            None => Ok(None),
            Some(Value::String(t)) if is_uuid(t) => Ok(Some(t.clone())),
            Some(other) => Err(bad_router(format!(
                "'{}' is not a valid UUID",
                match other {
                    Value::Null => "None".to_string(),
                    o => value_text(o),
                }
            ))),
        }
    };
    let port = uuid(port)?;
    let subnet = uuid(subnet)?;
    if !removal && port.is_some() && subnet.is_some() {
        return Err(bad_router("Cannot specify both subnet-id and port-id"));
    }
    Ok((port, subnet))
}

impl App {
    /// The address-scope routing rules of a router (see `neutrino-l3`): what the host agent
    /// renders in the router's namespace. Computed from the stored state on every call.
    pub async fn router_rules(
        &self,
        ctx: &Context,
        router: &str,
    ) -> ApiResult<neutrino_l3::RouterRules> {
        let coll = &COLLECTION;
        self.show(ctx, coll, router, &[]).await?;
        let mut tx = self.read().await?;
        let model = self.router_model(&mut tx, router).await?;
        Ok(neutrino_l3::compute(&model))
    }

    async fn router_model(&self, tx: &mut Tx, router: &str) -> ApiResult<neutrino_l3::RouterModel> {
        let rec = tx
            .get("router", router)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("router", router))?;
        let mut model = neutrino_l3::RouterModel {
            enable_snat: rec.body["external_gateway_info"]["enable_snat"]
                .as_bool()
                .unwrap_or(true),
            ..Default::default()
        };
        for port in self.router_ports(tx, router).await? {
            let gateway = s(&port.body, "device_owner") == GATEWAY_OWNER;
            for ip in fixed_ips(&port) {
                let Some(subnet) = tx.get("subnet", s(&ip, "subnet_id")).await.map_err(db)? else {
                    continue;
                };
                let (Some(cidr), Ok(address)) =
                    (subnet_cidr(&subnet), s(&ip, "ip_address").parse::<IpAddr>())
                else {
                    continue;
                };
                let pool = s(&subnet.body, "subnetpool_id");
                let scope = if pool.is_empty() {
                    None
                } else {
                    tx.get("subnetpool", pool).await.map_err(db)?.and_then(|p| {
                        p.body
                            .get("address_scope_id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                };
                let attachment = neutrino_l3::Attachment {
                    subnet_id: subnet.id.clone(),
                    cidr,
                    address,
                    scope,
                };
                if gateway {
                    model.gateway.push(attachment);
                } else {
                    model.interfaces.push(attachment);
                }
            }
        }
        for fip in self.router_floatingips(tx, router).await? {
            let (Ok(floating_ip), Ok(fixed_ip)) = (
                s(&fip.body, "floating_ip_address").parse::<IpAddr>(),
                s(&fip.body, "fixed_ip_address").parse::<IpAddr>(),
            ) else {
                continue;
            };
            model.floating_ips.push(neutrino_l3::FloatingIp {
                id: fip.id.clone(),
                floating_ip,
                fixed_ip,
                on_gateway_network: rec.body["external_gateway_info"]["network_id"].as_str()
                    == Some(s(&fip.body, "floating_network_id")),
            });
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_validated_and_canonical() {
        let r = parse_routes(
            &json!([{"destination": "2001:DB8::/32", "nexthop": "10.0.0.5"}]),
            true,
        )
        .unwrap();
        assert_eq!(
            routes_json(&r),
            json!([{"destination": "2001:db8::/32", "nexthop": "10.0.0.5"}])
        );
        let e = parse_routes(
            &json!([{"destination": "10.0.0.1/24", "nexthop": "10.0.0.5"}]),
            true,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("is not a valid CIDR"));
        let dup = json!([
            {"destination": "10.0.0.0/24", "nexthop": "10.0.0.5"},
            {"destination": "10.0.0.0/24", "nexthop": "10.0.0.5"}
        ]);
        assert!(parse_routes(&dup, true).is_err());
        assert_eq!(parse_routes(&dup, false).unwrap().len(), 1);
        assert!(parse_routes(&json!([{"destination": "10.0.0.0/24"}]), true).is_err());
        assert!(parse_routes(&json!(null), true).unwrap().is_empty());
    }

    #[test]
    fn gateway_requests() {
        assert!(parse_gateway(&json!(null)).unwrap().is_none());
        assert!(parse_gateway(&json!({})).unwrap().is_none());
        let e = parse_gateway(&json!({"enable_snat": true})).unwrap_err();
        assert_eq!(e.status, 400);
        let e = parse_gateway(&json!({"network_id": "x"})).unwrap_err();
        assert!(e.message.contains("not a valid UUID"));
        let id = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
        let e = parse_gateway(&json!({"network_id": id, "bogus": 1})).unwrap_err();
        assert!(e.message.contains("Unexpected keys supplied: bogus"));
        let g = parse_gateway(&json!({"network_id": id, "enable_snat": "false"}))
            .unwrap()
            .unwrap();
        assert_eq!(g.enable_snat, Some(false));
    }

    #[test]
    fn interface_bodies() {
        let id = "0b3b8a1c-1d2e-4f50-9a0b-0c1d2e3f4a5b";
        assert!(interface_request(&json!({}), false).is_err());
        assert!(interface_request(&json!({"port_id": id, "subnet_id": id}), false).is_err());
        assert!(interface_request(&json!({"port_id": id, "subnet_id": id}), true).is_ok());
        let e = interface_request(&json!({"subnet_id": "nope"}), false).unwrap_err();
        assert_eq!(e.kind, "BadRequest");
        assert_eq!(e.message, "Bad router request: 'nope' is not a valid UUID.");
    }
}
