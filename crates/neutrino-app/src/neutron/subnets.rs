//! Subnets: CIDR, gateway, allocation pools, DNS servers, host routes and IPv6 modes, with
//! Neutron's validation; deleting a subnet whose addresses are still in use is refused.

use std::net::IpAddr;

use ipnet::IpNet;
use neutrino_ipam::{self as ipam, AllocationPool, IpamError};
use neutrino_store::{Record, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use async_trait::async_trait;
use neutrino_types::query::ListQuery;
use neutrino_types::resources as spec;

use super::authz::{network_parent, Extras};
use super::kind::{Kind, ListFilter};
use super::owners::INTERFACE_OWNERS;
use super::scopes::{ip_scope, network_cidr_scope, prefix_key};
use super::view::{narrow, parent_ids, Need};
use super::{bump, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/subnets`.
pub(super) static COLLECTION: Collection =
    Collection::new("subnets", "subnet", spec::SUBNET, &Subnets)
        .parent("network_id")
        .filters(&["shared", "router:external"]);

/// Subnets: children of networks, visible where their network is shared.
struct Subnets;

#[async_trait]
impl Kind for Subnets {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need == Need::Check {
            view.load_rbac(tx, narrow(parent_ids(records))).await?;
            view.load_networks(tx, narrow(parent_ids(records))).await?;
        }
        Ok(())
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        let net = rec.parent_id.as_deref().and_then(|n| view.networks.get(n));
        net.is_some_and(|net| {
            net.project_id == ctx.project_id
                || view.granted(&net.id, "access_as_shared", &ctx.project_id)
        })
    }

    fn policy_extras(&self, view: &View, ctx: &Context, rec: &Record) -> Extras {
        network_parent(view, ctx, rec)
    }

    fn foreign_project(&self, _action: &str, project: &str) -> ApiError {
        ApiError::bad_request(format!(
            "Tenant {project} not allowed to create subnet on this network"
        ))
    }

    fn list_filter(&self, q: &mut ListQuery) -> Option<ListFilter> {
        // Subnets have no visible `shared` or `router:external`, but filter on their network's.
        let mut flag = |name: &str| {
            q.take_filter(name).map(|v| {
                v.iter()
                    .any(|x| neutrino_types::attrs::to_bool(x) == Some(true))
            })
        };
        let shared = flag("shared");
        let external = flag("router:external");
        if shared.is_none() && external.is_none() {
            return None;
        }
        Some(Box::new(move |view, ctx, rec| {
            let net = rec.parent_id.as_deref().unwrap_or_default();
            let shared_ok = shared
                .is_none_or(|want| view.granted(net, "access_as_shared", &ctx.project_id) == want);
            let external_ok = external.is_none_or(|want| {
                view.networks
                    .get(net)
                    .is_some_and(|n| n.body["router:external"] == true)
                    == want
            });
            shared_ok && external_ok
        }))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_subnet(tx, ctx, body).await
    }

    async fn after_create(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        app.sync_dhcp_port(tx, rec.parent_id.as_deref().unwrap_or_default())
            .await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_subnet(tx, ctx, rec, changes).await
    }

    async fn after_update(&self, app: &App, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        app.sync_dhcp_port(tx, rec.parent_id.as_deref().unwrap_or_default())
            .await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_subnet(tx, ctx, rec).await
    }

    async fn after_delete(&self, app: &App, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        app.sync_dhcp_port(tx, rec.parent_id.as_deref().unwrap_or_default())
            .await
    }
}

const MAX_DNS: usize = 5;
const MAX_HOST_ROUTES: usize = 20;

/// The parts of a subnet IP allocation needs.
#[derive(Clone, Debug)]
pub(crate) struct SubnetInfo {
    pub id: String,
    pub cidr: IpNet,
    pub pools: Vec<AllocationPool>,
    pub gateway: Option<IpAddr>,
    pub ra_mode: Option<String>,
    pub addr_mode: Option<String>,
    /// Device owners this subnet is reserved for (empty = any port).
    pub service_types: Vec<String>,
}

impl SubnetInfo {
    pub fn from_record(rec: &Record) -> Option<SubnetInfo> {
        let b = &rec.body;
        let cidr = ipam::parse_cidr(s(b, "cidr")).ok()?;
        let pools = b
            .get("allocation_pools")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some(AllocationPool {
                            start: s(p, "start").parse().ok()?,
                            end: s(p, "end").parse().ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mode = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
        Some(SubnetInfo {
            id: rec.id.clone(),
            cidr,
            pools,
            gateway: b
                .get("gateway_ip")
                .and_then(Value::as_str)
                .and_then(|g| g.parse().ok()),
            ra_mode: mode("ipv6_ra_mode"),
            service_types: b
                .get("service_types")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            addr_mode: mode("ipv6_address_mode"),
        })
    }

    pub fn is_v6(&self) -> bool {
        matches!(self.cidr, IpNet::V6(_))
    }

    /// SLAAC or DHCPv6-stateless: addresses are derived from the MAC, not allocated.
    pub fn is_auto_address(&self) -> bool {
        self.is_v6()
            && (matches!(
                self.addr_mode.as_deref(),
                Some("slaac") | Some("dhcpv6-stateless")
            ) || matches!(
                self.ra_mode.as_deref(),
                Some("slaac") | Some("dhcpv6-stateless")
            ))
    }
}

pub(crate) fn ipam_error(e: IpamError) -> ApiError {
    match e {
        IpamError::OverlappingAllocationPools { .. } => {
            ApiError::conflict("OverlappingAllocationPools", e.to_string())
        }
        IpamError::GatewayConflictWithAllocationPools { .. } => {
            ApiError::conflict("GatewayConflictWithAllocationPools", e.to_string())
        }
        IpamError::OutOfBoundsAllocationPool { .. } => {
            ApiError::bad("OutOfBoundsAllocationPool", e.to_string())
        }
        other => ApiError::invalid_input(other),
    }
}

fn parse_pools(v: &Value) -> ApiResult<Vec<AllocationPool>> {
    let list = v.as_array().ok_or_else(|| {
        ApiError::bad_request(
            "Invalid input for allocation_pools. Reason: Invalid data format for IP pool.",
        )
    })?;
    list.iter()
        .map(|p| {
            let obj = p.as_object().filter(|o| o.len() == 2 && o.contains_key("start") && o.contains_key("end"));
            let obj = obj.ok_or_else(|| {
                ApiError::bad_request(format!("Invalid input for allocation_pools. Reason: Invalid data format for IP pool: '{p}'."))
            })?;
            let ip = |k: &str| {
                obj.get(k)
                    .and_then(Value::as_str)
                    .and_then(|x| ipam::parse_ip(x).ok())
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid input for allocation_pools. Reason: '{p}' is not a valid IP address.")))
            };
            Ok(AllocationPool { start: ip("start")?, end: ip("end")? })
        })
        .collect()
}

fn pools_json(pools: &[AllocationPool]) -> Value {
    json!(pools
        .iter()
        .map(|p| json!({"start": p.start.to_string(), "end": p.end.to_string()}))
        .collect::<Vec<_>>())
}

fn check_version(ip: IpAddr, cidr: IpNet) -> bool {
    ip.is_ipv6() == matches!(cidr, IpNet::V6(_))
}

fn parse_gateway(v: &Value, cidr: IpNet) -> ApiResult<Option<IpAddr>> {
    match v {
        Value::Null => Ok(None),
        Value::String(g) => {
            let ip = ipam::parse_ip(g).map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for gateway_ip. Reason: '{g}' is not a valid IP address."
                ))
            })?;
            if !check_version(ip, cidr) {
                return Err(ApiError::invalid_input(
                    "Gateway IP version inconsistent with allocation pool version",
                ));
            }
            if ipam::is_network_or_broadcast(cidr, ip)
                || (cidr.contains(&ip)
                    && cidr.network() == ip
                    && ip.is_ipv6()
                    && cidr.prefix_len() < 127)
            {
                return Err(ApiError::invalid_input("Gateway is not valid on subnet"));
            }
            Ok(Some(ip))
        }
        _ => Err(ApiError::bad_request(
            "Invalid input for gateway_ip. Reason: not a valid IP address.",
        )),
    }
}

fn validate_dns(v: &Value, cidr: IpNet) -> ApiResult<Value> {
    let list = v.as_array().ok_or_else(|| {
        ApiError::bad_request("Invalid input for dns_nameservers. Reason: not a list.")
    })?;
    if list.len() > MAX_DNS {
        return Err(ApiError::bad(
            "DNSNameServersExhausted",
            format!("Unable to complete operation for subnet. The number of DNS nameservers exceeds the limit {MAX_DNS}."),
        ));
    }
    let mut seen = Vec::new();
    for d in list {
        let text = d.as_str().unwrap_or_default();
        let ip = ipam::parse_ip(text).map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid input for dns_nameservers. Reason: '{d}' is not a valid nameserver."
            ))
        })?;
        if !check_version(ip, cidr) {
            return Err(ApiError::invalid_input(format!(
                "Invalid input for dns_nameservers: {text} has the wrong IP version"
            )));
        }
        if seen.contains(&ip) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for dns_nameservers. Reason: Duplicate nameserver '{text}'."
            )));
        }
        seen.push(ip);
    }
    Ok(v.clone())
}

fn validate_routes(v: &Value, cidr: IpNet) -> ApiResult<Value> {
    let list = v.as_array().ok_or_else(|| {
        ApiError::bad_request("Invalid input for host_routes. Reason: not a list.")
    })?;
    if list.len() > MAX_HOST_ROUTES {
        return Err(ApiError::bad(
            "HostRoutesExhausted",
            format!("Unable to complete operation for subnet. The number of host routes exceeds the limit {MAX_HOST_ROUTES}."),
        ));
    }
    let mut out = Vec::new();
    for r in list {
        let obj = r.as_object().filter(|o| o.len() == 2);
        let bad = || {
            ApiError::bad_request(format!(
                "Invalid input for host_routes. Reason: Invalid data format for hostroute: '{r}'."
            ))
        };
        let obj = obj.ok_or_else(bad)?;
        let dest = obj
            .get("destination")
            .and_then(Value::as_str)
            .and_then(|d| ipam::parse_cidr(d).ok())
            .ok_or_else(bad)?;
        let hop = obj
            .get("nexthop")
            .and_then(Value::as_str)
            .and_then(|d| ipam::parse_ip(d).ok())
            .ok_or_else(bad)?;
        if !check_version(hop, cidr) || matches!(dest, IpNet::V6(_)) != matches!(cidr, IpNet::V6(_))
        {
            return Err(ApiError::invalid_input(
                "host_routes must have the subnet's IP version",
            ));
        }
        let route = json!({"destination": dest.to_string(), "nexthop": hop.to_string()});
        if out.contains(&route) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for host_routes. Reason: Duplicate hostroute '{r}'."
            )));
        }
        out.push(route);
    }
    Ok(json!(out))
}

impl App {
    /// Whether `cidr` overlaps a subnet of the network (whose subnets never overlap each
    /// other, so only the nearest prefix below it can contain it).
    async fn network_overlap(&self, tx: &mut Tx, scope: &str, cidr: IpNet) -> ApiResult<bool> {
        let from = ipam::ip_key(cidr.network());
        let below = format!("{}0", ipam::ip_key(cidr.broadcast()));
        if !tx
            .claimed_keys(scope, &from, Some(&below), 1)
            .await
            .map_err(db)?
            .is_empty()
        {
            return Ok(true);
        }
        let before = tx.claimed_key_before(scope, &from).await.map_err(db)?;
        let contains = before
            .and_then(|k| {
                let (addr, len) = k.split_once('/')?;
                let addr = ipam::ip_from_key(addr, cidr.network().is_ipv6()).ok()?;
                IpNet::new(addr, len.parse().ok()?).ok()
            })
            .is_some_and(|p| p.contains(&cidr.network()));
        Ok(contains)
    }

    /// The pool ("" for none) of the network's existing subnets of one version, if any.
    pub(super) async fn network_pool(
        &self,
        tx: &mut Tx,
        network: &str,
        version: i64,
    ) -> ApiResult<Option<String>> {
        let scope = network_cidr_scope(network, version);
        let Some(key) = tx
            .claimed_keys(&scope, "", None, 1)
            .await
            .map_err(db)?
            .pop()
        else {
            return Ok(None);
        };
        let owner = tx
            .claim_owner(&scope, &key)
            .await
            .map_err(db)?
            .unwrap_or_default();
        Ok(Some(
            owner
                .split_once('|')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default(),
        ))
    }

    pub(super) async fn create_subnet(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let network_id = s(&json!(body), "network_id").to_string();
        let view = View::load(tx, "subnet").await?;
        let network = tx.get("network", &network_id).await.map_err(db)?;
        let Some(mut network) = network.filter(|n| view.network_visible(ctx, n)) else {
            return Err(ApiError::not_found("network", &network_id));
        };
        if !ctx.owns(&network.project_id) {
            return Err(ApiError::forbidden("create_subnet"));
        }
        let id = s(&json!(body), "id").to_string();
        let project = s(&json!(body), "project_id").to_string();
        let use_default = body
            .remove("use_default_subnetpool")
            .and_then(|v| v.as_bool())
            == Some(true);
        let pool_id = body
            .get("subnetpool_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        if use_default && pool_id.is_some() {
            return Err(ApiError::bad_request(
                "subnetpool_id and use_default_subnetpool cannot both be specified",
            ));
        }
        let requested: Option<IpNet> = match body.get("cidr") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(ipam::parse_cidr(c).map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid input for cidr. Reason: '{c}' is not a valid IP subnet."
                ))
            })?),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid input for cidr. Reason: '{other}' is not a valid IP subnet."
                )))
            }
        };
        let prefixlen = body.remove("prefixlen").and_then(|v| v.as_i64());
        if requested.is_some() && prefixlen.is_some() {
            return Err(ApiError::bad_request(
                "cidr and prefixlen must not be supplied together",
            ));
        }
        let asked_version = body.get("ip_version").and_then(Value::as_i64);
        if let Some(v) = asked_version.filter(|v| *v != 4 && *v != 6) {
            return Err(ApiError::bad_request(format!(
                "Invalid input for ip_version. Reason: '{v}' is not in [4, 6]."
            )));
        }
        let cidr_version = requested.map(|c| if matches!(c, IpNet::V6(_)) { 6 } else { 4 });
        if let (Some(a), Some(c)) = (asked_version, cidr_version) {
            if a != c {
                return Err(ApiError::invalid_input(
                    "Cidr and ip_version are not compatible",
                ));
            }
        }
        let pool = if let Some(pid) = &pool_id {
            let pview = View::load(tx, "subnetpool").await?;
            let found = tx.get("subnetpool", pid).await.map_err(db)?;
            Some(
                found
                    .filter(|p| {
                        ctx.owns(&p.project_id)
                            || pview.granted(&p.id, "access_as_shared", &ctx.project_id)
                    })
                    .ok_or_else(|| ApiError::not_found("subnetpool", pid))?,
            )
        } else if use_default {
            let v = cidr_version.or(asked_version).ok_or_else(|| {
                ApiError::bad_request(
                    "ip_version must be specified in the absence of cidr and subnetpool_id",
                )
            })?;
            Some(self.default_pool(tx, ctx, v as u8).await?.ok_or_else(|| {
                ApiError::bad_request(format!("No default subnetpool found for IPv{v}"))
            })?)
        } else {
            None
        };
        let pool_version = pool
            .as_ref()
            .and_then(|p| p.body.get("ip_version").and_then(Value::as_i64));
        let version = pool_version
            .or(cidr_version)
            .or(asked_version)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Failed to parse request. Required attribute 'ip_version' not specified",
                )
            })?;
        if let Some(pv) = pool_version {
            if let Some(v) = cidr_version.or(asked_version).filter(|v| *v != pv) {
                return Err(ApiError::bad_request(format!(
                    "Cannot allocate IPv{v} subnet from IPv{pv} subnet pool"
                )));
            }
        }
        if pool.is_none() && requested.is_none() {
            return Err(ApiError::bad_request(
                "a subnetpool must be specified in the absence of a cidr",
            ));
        }
        if pool.is_some()
            && requested.is_none()
            && body.get("allocation_pools").is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::bad_request(
                "allocation_pools allowed only for specific subnet requests.",
            ));
        }
        if let Some(c) = requested.filter(|c| c.prefix_len() == 0) {
            return Err(ApiError::invalid_input(format!(
                "0 is not allowed as CIDR prefix length ({c})"
            )));
        }
        let mine = pool.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        if let Some(other_pool) = self.network_pool(tx, &network_id, version).await? {
            if other_pool != mine {
                return Err(ApiError::bad(
                    "NetworkSubnetPoolAffinityError",
                    "Subnets hosted on the same network must be allocated from the same subnet pool.",
                ));
            }
        }
        let mtu = network
            .body
            .get("mtu")
            .and_then(Value::as_u64)
            .unwrap_or(1500) as u32;
        super::networks::check_mtu_fits(mtu, version == 6, &network_id)?;
        let cidr = match &pool {
            Some(p) => {
                self.allocate_from_pool(tx, p, &project, &id, requested, prefixlen)
                    .await?
            }
            None => requested.ok_or_else(ApiError::internal)?,
        };
        let cidr_scope = network_cidr_scope(&network_id, version);
        if self.network_overlap(tx, &cidr_scope, cidr).await? {
            return Err(ApiError::invalid_input(format!(
                "Requested subnet with cidr: {cidr} for network: {network_id} overlaps with another subnet"
            )));
        }
        tx.claim(&cidr_scope, &prefix_key(cidr), &format!("{id}|{mine}"))
            .await
            .map_err(db)?;
        let gateway = match body.get("gateway_ip") {
            Some(v) => parse_gateway(v, cidr)?,
            None => ipam::default_gateway(cidr),
        };
        let pools = match body.get("allocation_pools") {
            Some(v) if !v.is_null() => {
                let pools = parse_pools(v)?;
                ipam::validate_pools(cidr, &pools, gateway).map_err(ipam_error)?;
                pools
            }
            _ => ipam::default_pools(cidr, gateway),
        };
        let ra = body
            .get("ipv6_ra_mode")
            .and_then(Value::as_str)
            .map(str::to_string);
        let am = body
            .get("ipv6_address_mode")
            .and_then(Value::as_str)
            .map(str::to_string);
        if version == 4 && (ra.is_some() || am.is_some()) {
            return Err(ApiError::invalid_input("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False or ip_version is 4"));
        }
        if let (Some(r), Some(a)) = (&ra, &am) {
            if r != a {
                return Err(ApiError::invalid_input(format!(
                    "ipv6_ra_mode set to '{r}' with ipv6_address_mode set to '{a}' is not valid. If both attributes are set, they must be the same value"
                )));
            }
        }
        let enable_dhcp = body
            .get("enable_dhcp")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !enable_dhcp && (ra.is_some() || am.is_some()) {
            return Err(ApiError::invalid_input(
                "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False",
            ));
        }
        let auto = matches!(
            am.as_deref().or(ra.as_deref()),
            Some("slaac") | Some("dhcpv6-stateless")
        );
        if auto && cidr.prefix_len() != 64 {
            return Err(ApiError::invalid_input(
                "Invalid CIDR for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64",
            ));
        }
        let dns = validate_dns(body.get("dns_nameservers").unwrap_or(&json!([])), cidr)?;
        let routes = validate_routes(body.get("host_routes").unwrap_or(&json!([])), cidr)?;
        body.insert("cidr".into(), json!(cidr.to_string()));
        body.insert("ip_version".into(), json!(version));
        body.insert("gateway_ip".into(), json!(gateway.map(|g| g.to_string())));
        body.insert("allocation_pools".into(), pools_json(&pools));
        body.insert("dns_nameservers".into(), dns);
        body.insert("host_routes".into(), routes);
        body.insert(
            "subnetpool_id".into(),
            json!(pool.as_ref().map(|p| p.id.clone())),
        );
        if let Some(scope) = pool
            .as_ref()
            .and_then(|p| p.body.get("address_scope_id"))
            .filter(|v| !v.is_null())
        {
            network.body[if version == 6 {
                "ipv6_address_scope"
            } else {
                "ipv4_address_scope"
            }] = scope.clone();
        }
        // The network's `subnets` is rendered from the subnet rows; its revision moves.
        if let Some(o) = network.body.as_object_mut() {
            o.remove("subnets");
        }
        bump(&mut network.body);
        tx.update("network", &network_id, &network.body)
            .await
            .map_err(db)?;
        Ok(Some(network_id))
    }

    pub(super) async fn update_subnet(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        let info = SubnetInfo::from_record(rec).ok_or_else(ApiError::internal)?;
        let mut gateway = info.gateway;
        if let Some(g) = changes.get("gateway_ip") {
            gateway = parse_gateway(g, info.cidr)?;
        }
        let pools = match changes.get("allocation_pools") {
            Some(v) => parse_pools(v)?,
            None => info.pools.clone(),
        };
        if changes.contains_key("gateway_ip") || changes.contains_key("allocation_pools") {
            ipam::validate_pools(info.cidr, &pools, gateway).map_err(ipam_error)?;
        }
        if let Some(current) = info.gateway.filter(|g| Some(*g) != gateway) {
            // A router interface holding the gateway address pins it.
            let key = ipam::ip_key(current);
            if let Some(port) = tx.claim_owner(&ip_scope(&rec.id), &key).await.map_err(db)? {
                let owner = tx.get("port", &port).await.map_err(db)?;
                let is_router = owner
                    .as_ref()
                    .is_some_and(|p| INTERFACE_OWNERS.contains(&s(&p.body, "device_owner")));
                if is_router {
                    return Err(ApiError::conflict(
                        "GatewayIpInUse",
                        format!("Current gateway ip {current} already in use by port {port}. Unable to update."),
                    ));
                }
            }
        }
        for (key, value) in changes {
            let value = match key.as_str() {
                "gateway_ip" => json!(gateway.map(|g| g.to_string())),
                "allocation_pools" => pools_json(&pools),
                "dns_nameservers" => validate_dns(&value, info.cidr)?,
                "host_routes" => validate_routes(&value, info.cidr)?,
                _ => value,
            };
            rec.body[key.as_str()] = value;
        }
        Ok(())
    }

    pub(super) async fn delete_subnet(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        let info = SubnetInfo::from_record(rec).ok_or_else(ApiError::internal)?;
        let network_id = rec.parent_id.clone().unwrap_or_default();
        if tx
            .count_claims(&format!("ip:{}", rec.id))
            .await
            .map_err(db)?
            > 0
        {
            // Addresses derived from the MAC (SLAAC) go away with the subnet; others block it.
            let sel = neutrino_store::Selector {
                parent_ids: Some(vec![network_id.clone()]),
                ..Default::default()
            };
            for mut port in tx.list("port", &sel).await.map_err(db)? {
                let uses = port.body["fixed_ips"]
                    .as_array()
                    .is_some_and(|ips| ips.iter().any(|ip| s(ip, "subnet_id") == rec.id));
                if !uses {
                    continue;
                }
                if !info.is_auto_address()
                    && !s(&port.body, "device_owner").starts_with("network:dhcp")
                {
                    return Err(ApiError::conflict(
                        "SubnetInUse",
                        format!("Unable to complete operation on subnet {}: One or more ports have an IP allocation from this subnet.", rec.id),
                    ));
                }
                if let Some(ips) = port.body["fixed_ips"].as_array_mut() {
                    ips.retain(|ip| s(ip, "subnet_id") != rec.id);
                }
                bump(&mut port.body);
                tx.update("port", &port.id, &port.body).await.map_err(db)?;
            }
            let scope = format!("ip:{}", rec.id);
            for key in tx
                .claimed_keys(&scope, "", None, i64::MAX)
                .await
                .map_err(db)?
            {
                tx.release(&scope, &key).await.map_err(db)?;
            }
        }
        let version = if info.is_v6() { 6 } else { 4 };
        tx.release(
            &network_cidr_scope(&network_id, version),
            &prefix_key(info.cidr),
        )
        .await
        .map_err(db)?;
        if let Some(mut network) = tx.get("network", &network_id).await.map_err(db)? {
            if let Some(o) = network.body.as_object_mut() {
                o.remove("subnets");
            }
            bump(&mut network.body);
            tx.update("network", &network_id, &network.body)
                .await
                .map_err(db)?;
        }
        if !s(&rec.body, "subnetpool_id").is_empty() {
            self.release_pool_prefix(tx, rec).await?;
            // The network's address scope may change with this subnet gone.
            tx.delete("subnet", &rec.id).await.map_err(db)?;
            self.refresh_network_scopes(tx, &network_id).await?;
        }
        Ok(())
    }
}
