//! NDP proxies, wire-compatible with Neutron's NDP proxy plugin: `/v2.0/ndp_proxies`
//! (`l3-ndp-proxy`) and a router's `enable_ndp_proxy` (`l3-ext-ndp-proxy`). Specification and
//! errors: `neutrino_types::ndp_proxy`.
//!
//! A router may enable NDP proxying only with a gateway on an external network that has an
//! IPv6 subnet and an IPv6 address scope (409 `RouterGatewayNotValid`); without a gateway it
//! shows `false`. A proxy names a router with proxying enabled (409), a port on a network
//! the router is attached to (409 `PortUnreachableRouter`) and one of the port's IPv6
//! addresses on a subnet of the router (chosen when not given; 400 `InvalidAddress`), in the
//! external network's IPv6 address scope (409 `AddressScopeConflict`). Its record is a
//! child of the router; the claims `ndp:<router>` (key: the address) keep one proxy per
//! address and router, `ndp-port:<port>` list a port's proxies, which go with the port. A
//! router keeps its gateway and the interfaces its proxies use while they exist (409).
//!
//! The agent of the router's host answers for each address on the gateway interface
//! (`ip -6 neigh add proxy`, `proxy_ndp` on); the address is routed without NAT.

use std::net::Ipv6Addr;

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::ndp_proxy::{self as spec, invalid_address, not_enabled, unreachable};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::kind::{apply_changes, Kind};
use super::{s, Collection, Doc, View};
use crate::{db, App, Context};

/// The storage kind.
const KIND: &str = "ndp_proxy";

/// `/v2.0/ndp_proxies`.
pub(super) static COLLECTION: Collection =
    Collection::new("ndp_proxies", KIND, spec::NDP_PROXY, &NdpProxies)
        .untagged()
        .parent("router_id");

/// NDP proxies.
struct NdpProxies;

/// The IPv6 addresses of a port, with their subnets.
fn v6_addresses(port: &Value) -> Vec<(Ipv6Addr, String)> {
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| {
            let address = s(ip, "ip_address").parse::<Ipv6Addr>().ok()?;
            Some((address, s(ip, "subnet_id").to_string()))
        })
        .collect()
}

/// A scope id as the errors name it (`None` for no scope).
fn scope_name(scope: &Value) -> String {
    scope.as_str().unwrap_or("None").to_string()
}

impl App {
    /// The proxies of `router`.
    pub(super) async fn router_ndp_proxies(
        &self,
        tx: &mut Tx,
        router: &str,
    ) -> ApiResult<Vec<Record>> {
        let sel = Selector {
            parent_ids: Some(vec![router.to_string()]),
            ..Default::default()
        };
        tx.list(KIND, &sel).await.map_err(db)
    }

    /// Whether external network `network` can carry NDP proxies: an IPv6 subnet and an IPv6
    /// address scope.
    async fn ndp_capable_network(&self, tx: &mut Tx, network: &str) -> ApiResult<bool> {
        let Some(net) = tx.get("network", network).await.map_err(db)? else {
            return Ok(false);
        };
        if net.body["ipv6_address_scope"].is_null() {
            return Ok(false);
        }
        let subnets = self.network_subnets(tx, network).await?;
        Ok(subnets.iter().any(|sn| sn.body["ip_version"] == 6))
    }

    /// Whether the gateway of a router (as `gateway`, its `external_gateway_info`) can carry
    /// NDP proxies: on a capable network, with an IPv6 address.
    async fn ndp_capable_gateway(
        &self,
        tx: &mut Tx,
        router: &str,
        gateway: &Value,
    ) -> ApiResult<bool> {
        let Some(network) = gateway.get("network_id").and_then(Value::as_str) else {
            return Ok(false);
        };
        let has_v6 = gateway["external_fixed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|ip| s(ip, "ip_address").parse::<Ipv6Addr>().is_ok());
        let port_v6 = match self.gateway_port(tx, router, network).await? {
            Some(port) => !v6_addresses(&port.body).is_empty(),
            None => false,
        };
        Ok((has_v6 || port_v6) && self.ndp_capable_network(tx, network).await?)
    }

    /// `enable_ndp_proxy` of a new router (its gateway already applied in `body`).
    pub(super) async fn ndp_on_create(&self, tx: &mut Tx, body: &mut Doc) -> ApiResult<()> {
        let router = s(&json!(body), "id").to_string();
        let wanted = body.get("enable_ndp_proxy").and_then(Value::as_bool);
        let gateway = body
            .get("external_gateway_info")
            .cloned()
            .unwrap_or(Value::Null);
        let network = gateway.get("network_id").and_then(Value::as_str);
        let enabled = match (wanted, network) {
            (Some(true), None) => {
                return Err(spec::gateway_not_valid(
                    &router,
                    "The request body not contain external gateway information",
                ))
            }
            (Some(true), Some(network)) => {
                if !self.ndp_capable_network(tx, network).await? {
                    return Err(spec::gateway_not_valid(
                        &router,
                        &format!("The external network {network} don't support IPv6 ndp proxy, the network has no IPv6 subnets or has no IPv6 address scope"),
                    ));
                }
                true
            }
            _ => false,
        };
        body.insert("enable_ndp_proxy".into(), json!(enabled));
        Ok(())
    }

    /// `enable_ndp_proxy` on a router update (after its gateway change): turning it on needs
    /// a capable gateway; a gateway that is no longer capable turns it off.
    pub(super) async fn ndp_on_update(
        &self,
        tx: &mut Tx,
        rec: &mut Record,
        changes: &Doc,
    ) -> ApiResult<()> {
        let gateway = rec.body["external_gateway_info"].clone();
        let capable = self.ndp_capable_gateway(tx, &rec.id, &gateway).await?;
        let enabled = match changes.get("enable_ndp_proxy").and_then(Value::as_bool) {
            Some(true) if !capable => {
                return Err(spec::gateway_not_valid(
                    &rec.id,
                    "The router has no external gateway or the external gateway port has no IPv6 address or IPv6 address scope",
                ))
            }
            Some(on) => on,
            None => rec.body["enable_ndp_proxy"] == true && capable,
        };
        if !enabled && !self.router_ndp_proxies(tx, &rec.id).await?.is_empty() {
            return Err(spec::gateway_in_use(&rec.id));
        }
        rec.body["enable_ndp_proxy"] = json!(enabled);
        Ok(())
    }

    /// Refuses to remove the interface on `subnet` while a proxy of `router` uses it.
    pub(super) async fn check_ndp_interface_unused(
        &self,
        tx: &mut Tx,
        router: &str,
        subnet: &str,
    ) -> ApiResult<()> {
        for proxy in self.router_ndp_proxies(tx, router).await? {
            let port = s(&proxy.body, "port_id").to_string();
            let Some(port) = tx.get("port", &port).await.map_err(db)? else {
                continue;
            };
            let address = s(&proxy.body, "ip_address").parse::<Ipv6Addr>().ok();
            let on_subnet = v6_addresses(&port.body)
                .iter()
                .any(|(a, sn)| Some(*a) == address && sn == subnet);
            if on_subnet {
                return Err(spec::interface_in_use(router, subnet));
            }
        }
        Ok(())
    }

    /// Deletes the proxies of a port that is going away. Meant for `delete_port`.
    pub(super) async fn drop_port_ndp_proxies(&self, tx: &mut Tx, port: &str) -> ApiResult<()> {
        super::drop_indexed(tx, &format!("ndp-port:{port}"), KIND, "ndp").await
    }
}

#[async_trait]
impl Kind for NdpProxies {
    fn not_found(&self, _parent: Option<&str>, id: &str) -> Option<ApiError> {
        Some(ApiError::new(
            404,
            "NDPProxyNotFound",
            format!("Ndp proxy {id} could not be found."),
        ))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = json!(body);
        let (id, router_id, port_id) = (s(&doc, "id"), s(&doc, "router_id"), s(&doc, "port_id"));
        let ports = &super::ports::COLLECTION;
        let found = tx.get("port", port_id).await.map_err(db)?;
        let view = View::check(tx, ports, found.as_slice()).await?;
        let port = match found {
            Some(p) if app.visible(&view, ctx, ports, &p) => p,
            _ => return Err(ApiError::not_found("port", port_id)),
        };
        tx.lock("router", router_id).await.map_err(db)?;
        let router = tx
            .get("router", router_id)
            .await
            .map_err(db)?
            .filter(|r| ctx.is_admin() || r.project_id == ctx.project_id)
            .ok_or_else(|| ApiError::not_found("router", router_id))?;
        let network = port.parent_id.clone().unwrap_or_default();
        let router_ports: Vec<Record> = app
            .network_ports(tx, &network)
            .await?
            .into_iter()
            .filter(|p| s(&p.body, "device_id") == router_id)
            .collect();
        if router_ports.is_empty() {
            return Err(unreachable(port_id, router_id));
        }
        let gateway = router.body["external_gateway_info"].clone();
        let enabled = router.body["enable_ndp_proxy"] == true && !gateway.is_null();
        if !enabled {
            return Err(not_enabled(router_id));
        }
        let addresses = v6_addresses(&port.body);
        if addresses.is_empty() {
            return Err(ApiError::bad(
                "BadRequest",
                format!("Bad ndp_proxy request: Requested port {port_id} must allocate one IPv6 address at least."),
            ));
        }
        let router_subnets: Vec<String> = router_ports
            .iter()
            .flat_map(|p| v6_addresses(&p.body).into_iter().map(|(_, sn)| sn))
            .collect();
        let address = match body.get("ip_address").and_then(Value::as_str) {
            None => addresses
                .iter()
                .find(|(_, sn)| router_subnets.contains(sn))
                .map(|(a, _)| *a)
                .ok_or_else(|| unreachable(port_id, router_id))?,
            Some(text) => {
                let wanted = text
                    .parse::<Ipv6Addr>()
                    .map_err(|_| invalid_address(text, "It is not an IPv6 address"))?;
                let Some((_, subnet)) = addresses.iter().find(|(a, _)| *a == wanted) else {
                    return Err(invalid_address(
                        text,
                        &format!("This address not belong to the port {port_id}"),
                    ));
                };
                if !router_subnets.contains(subnet) {
                    return Err(invalid_address(
                        text,
                        &format!("This address cannot reach the router {router_id}"),
                    ));
                }
                wanted
            }
        };
        let ext_net = s(&gateway, "network_id");
        let external = match tx.get("network", ext_net).await.map_err(db)? {
            Some(n) => n.body["ipv6_address_scope"].clone(),
            None => Value::Null,
        };
        let internal = match tx.get("network", &network).await.map_err(db)? {
            Some(n) => n.body["ipv6_address_scope"].clone(),
            None => Value::Null,
        };
        if external != internal {
            return Err(spec::scope_conflict(
                &scope_name(&external),
                &scope_name(&internal),
            ));
        }
        if !tx
            .claim(&format!("ndp:{router_id}"), &address.to_string(), id)
            .await
            .map_err(db)?
        {
            return Err(ApiError::conflict(
                "NDPProxyInUse",
                format!("Router {router_id} already has an ndp proxy for {address}."),
            ));
        }
        tx.claim(&format!("ndp-port:{port_id}"), id, id)
            .await
            .map_err(db)?;
        body.insert("ip_address".into(), json!(address.to_string()));
        Ok(Some(router_id.to_string()))
    }

    async fn update(
        &self,
        _app: &App,
        _tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        apply_changes(rec, changes);
        Ok(())
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        tx.release_owned("ndp", &rec.id).await.map_err(db)
    }
}
