//! Floating IPs: allocation on external networks, association with a port behind a router.
//!
//! The address is held by a service port (`network:floatingip`, project "" like upstream,
//! `device_id` = the floating IP id) on the external network. An association is also a store
//! claim (`fip:<external network>` scope, key `<port>/<fixed ip>`, owner = floating IP id), so
//! two floating IPs of one external network can never map the same fixed IP, even when two
//! servers associate concurrently.

use std::collections::HashSet;
use std::net::IpAddr;

use neutrino_ipam as ipam;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::query;
use neutrino_types::resources as spec;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::{DHCP_OWNER, FLOATINGIP_OWNER, GATEWAY_OWNER, INTERFACE_OWNERS};
use super::routers::bad_request;
use super::scopes::ip_scope;
use super::subnets::SubnetInfo;
use async_trait::async_trait;

use super::authz::project_target;
use super::kind::Kind;
use super::view::Need;
use super::{bump, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/floatingips`.
pub(super) static COLLECTION: Collection =
    Collection::new("floatingips", "floatingip", spec::FLOATINGIP, &FloatingIps);

/// Floating IPs, rendered with the details of their port.
struct FloatingIps;

#[async_trait]
impl Kind for FloatingIps {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        _need: Need,
    ) -> ApiResult<()> {
        view.load_port_details(tx, records).await?;
        let ids = records.iter().map(|r| r.id.clone()).collect();
        for pf in super::port_forwardings::of_floatingips(tx, ids).await? {
            let fip = pf.parent_id.clone().unwrap_or_default();
            view.children.entry(fip).or_default().push(pf);
        }
        Ok(())
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        let port = doc
            .get("port_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let details = view.port_details.get(port).cloned().unwrap_or(Value::Null);
        doc.insert("port_details".into(), details);
        let forwardings = view.children.get(&rec.id).map_or(&[][..], Vec::as_slice);
        doc.insert(
            "port_forwardings".into(),
            super::port_forwardings::shown_in_fip(forwardings),
        );
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        app.create_floatingip(tx, ctx, body).await
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        app.update_floatingip(tx, ctx, rec, changes).await
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.delete_floatingip(tx, ctx, rec).await
    }
}

fn bad_fip(msg: impl std::fmt::Display) -> ApiError {
    bad_request("floatingip", msg)
}

fn claim_scope(network: &str) -> String {
    format!("fip:{network}")
}

fn claim_key(port: &str, ip: &str) -> String {
    format!("{port}/{ip}")
}

/// The claims that index a port's floating IPs (key and owner: the floating IP). Under
/// `fip:` like the association claim, so releasing a floating IP's claims releases both.
fn port_fips_scope(port: &str) -> String {
    format!("fip:port:{port}")
}

/// What a floating IP is associated with: port, fixed IP, router (all JSON, null when free).
struct Association {
    port_id: Value,
    fixed_ip_address: Value,
    router_id: Value,
}

impl Association {
    fn none() -> Association {
        Association {
            port_id: Value::Null,
            fixed_ip_address: Value::Null,
            router_id: Value::Null,
        }
    }

    fn store(self, body: &mut Value) {
        if let Some(doc) = body.as_object_mut() {
            self.store_doc(doc);
        }
    }

    fn store_doc(self, doc: &mut Doc) {
        doc.insert("port_id".into(), self.port_id);
        doc.insert("fixed_ip_address".into(), self.fixed_ip_address);
        doc.insert("router_id".into(), self.router_id);
    }
}

/// What a create or update asks to associate (JSON values, null when not asked).
struct AssocRequest {
    port: Value,
    fixed_ip: Value,
    router: Value,
}

/// The floating IP being associated.
struct Fip<'a> {
    id: &'a str,
    project: &'a str,
    network: &'a str,
    address: &'a str,
}

/// The attributes of an associated port that `port_details` shows (`fip-port-details`).
const PORT_DETAILS: &[&str] = &[
    "name",
    "network_id",
    "mac_address",
    "admin_state_up",
    "status",
    "device_id",
    "device_owner",
];

/// Ports per query when loading `port_details` (bounds the statement's parameter count).
const PORTS_PER_QUERY: usize = 500;

impl View {
    /// Loads the `port_details` of the ports `fips` are associated with: one query per
    /// [`PORTS_PER_QUERY`] distinct ports, whatever the number of floating IPs.
    pub(super) async fn load_port_details(
        &mut self,
        tx: &mut Tx,
        fips: &[Record],
    ) -> ApiResult<()> {
        let mut ports: Vec<String> = fips
            .iter()
            .map(|f| s(&f.body, "port_id"))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        ports.sort();
        ports.dedup();
        for chunk in ports.chunks(PORTS_PER_QUERY) {
            let sel = Selector {
                ids: Some(chunk.to_vec()),
                ..Default::default()
            };
            for port in tx.list("port", &sel).await.map_err(db)? {
                let details: Doc = PORT_DETAILS
                    .iter()
                    .map(|k| {
                        (
                            k.to_string(),
                            port.body.get(*k).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                self.port_details.insert(port.id, Value::Object(details));
            }
        }
        Ok(())
    }
}

impl App {
    pub(super) async fn create_floatingip(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = Value::Object(body.clone());
        let id = s(&doc, "id").to_string();
        let project = s(&doc, "project_id").to_string();
        let network = s(&doc, "floating_network_id").to_string();
        let (_, external) = self.external_network(tx, ctx, &network).await?;
        if !external {
            return Err(bad_fip(format!(
                "Network {network} is not a valid external network"
            )));
        }
        let subnets: Vec<SubnetInfo> = self
            .network_subnets(tx, &network)
            .await?
            .iter()
            .filter_map(SubnetInfo::from_record)
            .collect();
        let v4: Vec<&SubnetInfo> = subnets.iter().filter(|sn| !sn.is_v6()).collect();
        if v4.is_empty() {
            return Err(bad_fip(format!(
                "Network {network} does not contain any IPv4 subnet"
            )));
        }
        let address = match body.get("floating_ip_address") {
            None | Some(Value::Null) => None,
            Some(v) => {
                if !ctx.is_admin() && !ctx.has("manager") {
                    return Err(ApiError::forbidden("create_floatingip:floating_ip_address"));
                }
                let ip = v.as_str().and_then(|t| ipam::parse_ip(t).ok()).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid input for floating_ip_address. Reason: '{}' is not a valid IP address.",
                        v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
                    ))
                })?;
                Some(ip)
            }
        };
        let subnet = body
            .remove("subnet_id")
            .and_then(|v| v.as_str().map(str::to_string));
        let mut fixed = Doc::new();
        if let Some(sn) = &subnet {
            fixed.insert("subnet_id".into(), json!(sn));
        }
        if let Some(ip) = address {
            fixed.insert("ip_address".into(), json!(ip.to_string()));
        }
        if fixed.is_empty() {
            fixed.insert(
                "subnet_id".into(),
                json!(self.pick_v4_subnet(tx, &v4).await?),
            );
        }
        let port = self
            .insert_service_port(
                tx,
                "",
                &network,
                Some(json!([fixed])),
                FLOATINGIP_OWNER,
                &id,
            )
            .await?;
        let floating_ip = port.body["fixed_ips"]
            .as_array()
            .and_then(|ips| {
                ips.iter()
                    .map(|ip| s(ip, "ip_address"))
                    .find(|a| a.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()))
            })
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad(
                    "ExternalIpAddressExhausted",
                    format!("Unable to find any IP address on external network {network}."),
                )
            })?;
        body.insert("floating_ip_address".into(), json!(floating_ip));
        let fip = Fip {
            id: &id,
            project: &project,
            network: &network,
            address: &floating_ip,
        };
        let req = AssocRequest {
            port: doc.get("port_id").cloned().unwrap_or(Value::Null),
            fixed_ip: doc.get("fixed_ip_address").cloned().unwrap_or(Value::Null),
            router: doc.get("router_id").cloned().unwrap_or(Value::Null),
        };
        let assoc = self.associate(tx, ctx, &fip, &req).await?;
        assoc.store_doc(body);
        body.insert("status".into(), json!("DOWN"));
        Ok(Some(network))
    }

    /// The IPv4 subnet an automatic floating IP comes from: the first one with room left in
    /// its pools (by count; a stale count only means a later, clean exhaustion error).
    async fn pick_v4_subnet(&self, tx: &mut Tx, v4: &[&SubnetInfo]) -> ApiResult<String> {
        for sn in v4 {
            let size = ipam::pools_size(&sn.pools);
            let used = tx
                .count_claims(&format!("ip:{}", sn.id))
                .await
                .map_err(db)?;
            if size > used.max(0) as u128 {
                return Ok(sn.id.clone());
            }
        }
        Ok(v4.first().map(|sn| sn.id.clone()).unwrap_or_default())
    }

    pub(super) async fn update_floatingip(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        // An empty update clears the association (upstream's historic meaning); a `router_id`
        // alone moves the current association to that router.
        let mut reassociate = changes.is_empty()
            || changes.contains_key("port_id")
            || changes.contains_key("fixed_ip_address");
        if reassociate && self.has_forwardings(tx, &rec.id).await? {
            // Forwardings keep the floating IP on their router: no port may take it, and
            // a disassociation has nothing to undo.
            if changes.get("port_id").is_some_and(|p| !p.is_null()) {
                return Err(super::port_forwardings::fip_in_use(&rec.id));
            }
            reassociate = false;
        }
        if reassociate || changes.contains_key("router_id") {
            let from = if reassociate {
                &changes
            } else {
                rec.body.as_object().unwrap_or(&changes)
            };
            let req = AssocRequest {
                port: from.get("port_id").cloned().unwrap_or(Value::Null),
                fixed_ip: from.get("fixed_ip_address").cloned().unwrap_or(Value::Null),
                router: changes.get("router_id").cloned().unwrap_or(Value::Null),
            };
            tx.release_owned("fip:", &rec.id).await.map_err(db)?;
            let body = rec.body.clone();
            let fip = Fip {
                id: &rec.id,
                project: &rec.project_id,
                network: s(&body, "floating_network_id"),
                address: s(&body, "floating_ip_address"),
            };
            let assoc = self.associate(tx, ctx, &fip, &req).await?;
            assoc.store(&mut rec.body);
        }
        if let Some(d) = changes.get("description") {
            rec.body["description"] = d.clone();
        }
        Ok(())
    }

    pub(super) async fn delete_floatingip(
        &self,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        if self.has_forwardings(tx, &rec.id).await? {
            return Err(super::port_forwardings::fip_in_use(&rec.id));
        }
        let network = rec.parent_id.clone().unwrap_or_default();
        if let Some(port) = self.floatingip_port(tx, rec, &network).await? {
            self.remove_service_port(tx, &port).await?;
        }
        tx.release_owned("fip:", &rec.id).await.map_err(db)?;
        Ok(())
    }

    /// Works out (and claims) a floating IP's association: the port, which of its IPv4
    /// addresses, and the router hosting the NAT: the one named by the request, else the one
    /// that connects that address's subnet to the external network.
    async fn associate(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        fip: &Fip<'_>,
        req: &AssocRequest,
    ) -> ApiResult<Association> {
        let (port_req, fixed_req) = (&req.port, &req.fixed_ip);
        let port_id = match port_req {
            Value::String(p) => p.clone(),
            _ => {
                if !fixed_req.is_null() {
                    return Err(bad_fip(
                        "fixed_ip_address cannot be specified without a port_id",
                    ));
                }
                if !req.router.is_null() {
                    return Err(bad_fip("router_id cannot be specified without a port_id"));
                }
                return Ok(Association::none());
            }
        };
        let port_coll = &super::ports::COLLECTION;
        let found = tx.get("port", &port_id).await.map_err(db)?;
        let view = View::check(tx, &super::ports::COLLECTION, found.as_slice()).await?;
        let port = match found {
            Some(p) if self.visible(&view, ctx, port_coll, &p) => p,
            _ => return Err(ApiError::not_found("port", &port_id)),
        };
        if port.project_id != fip.project && !ctx.is_admin() {
            return Err(bad_fip(format!(
                "Cannot process floating IP association with Port {port_id}, since that port is owned by a different project"
            )));
        }
        if s(&port.body, "device_owner") == DHCP_OWNER {
            return Err(bad_fip(format!(
                "Port {port_id} is unable to be assigned a floating IP"
            )));
        }
        let ips = port.body["fixed_ips"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (ip, subnet) = match fixed_req {
            Value::Null => {
                let v4: Vec<&Value> = ips
                    .iter()
                    .filter(|ip| {
                        s(ip, "ip_address")
                            .parse::<IpAddr>()
                            .is_ok_and(|a| a.is_ipv4())
                    })
                    .collect();
                match v4.as_slice() {
                    [] => {
                        return Err(bad_fip(format!(
                            "Cannot add floating IP to port {port_id} that has no fixed IPv4 addresses"
                        )))
                    }
                    [one] => (
                        s(one, "ip_address").to_string(),
                        s(one, "subnet_id").to_string(),
                    ),
                    _ => {
                        return Err(bad_fip(format!(
                            "Port {port_id} has multiple fixed IPv4 addresses.  Must provide a specific IPv4 address when assigning a floating IP"
                        )))
                    }
                }
            }
            other => {
                let text = other.as_str().unwrap_or_default();
                let addr = ipam::parse_ip(text).map_err(|_| {
                    ApiError::bad_request(format!(
                        "Invalid input for fixed_ip_address. Reason: '{}' is not a valid IP address.",
                        other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string())
                    ))
                })?;
                if addr.is_ipv6() {
                    return Err(bad_fip(format!(
                        "Cannot process floating IP association with {text}, since that is not an IPv4 address"
                    )));
                }
                let entry = ips
                    .iter()
                    .find(|ip| s(ip, "ip_address").parse::<IpAddr>().ok() == Some(addr))
                    .ok_or_else(|| {
                        bad_fip(format!("Port {port_id} does not have fixed ip {text}"))
                    })?;
                (addr.to_string(), s(entry, "subnet_id").to_string())
            }
        };
        let router = match req.router.as_str() {
            Some(router) => self.hosting_router(tx, ctx, router, fip.network).await?,
            None => {
                // The interface or gateway the choice rests on cannot go before this commits
                // (interface and gateway removal lock the router too).
                let router = self
                    .router_for_floatingip(tx, &port, &subnet, fip.network)
                    .await?;
                tx.lock("router", &router).await.map_err(db)?;
                self.router_for_floatingip(tx, &port, &subnet, fip.network)
                    .await?
            }
        };
        let scope = claim_scope(fip.network);
        let key = claim_key(&port_id, &ip);
        if !tx.claim(&scope, &key, fip.id).await.map_err(db)?
            && tx.claim_owner(&scope, &key).await.map_err(db)?.as_deref() != Some(fip.id)
        {
            return Err(ApiError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} ({}) with port {port_id} using fixed IP {ip}, as that fixed IP already has a floating IP on external network {}.",
                    fip.address, fip.id, fip.network
                ),
            ));
        }
        tx.claim(&port_fips_scope(&port_id), fip.id, fip.id)
            .await
            .map_err(db)?;
        Ok(Association {
            port_id: json!(port_id),
            fixed_ip_address: json!(ip),
            router_id: json!(router),
        })
    }

    /// The port holding a floating IP's address: the owner of the address's claim in one of
    /// the external network's subnets (no scan of the network's ports).
    async fn floatingip_port(
        &self,
        tx: &mut Tx,
        rec: &Record,
        network: &str,
    ) -> ApiResult<Option<Record>> {
        let Ok(address) = s(&rec.body, "floating_ip_address").parse::<IpAddr>() else {
            return Ok(None);
        };
        for subnet in self.network_subnets(tx, network).await? {
            let owner = tx
                .claim_owner(&ip_scope(&subnet.id), &ipam::ip_key(address))
                .await
                .map_err(db)?;
            let Some(port_id) = owner else { continue };
            let port = tx.get("port", &port_id).await.map_err(db)?;
            if let Some(port) = port.filter(|p| {
                s(&p.body, "device_id") == rec.id && s(&p.body, "device_owner") == FLOATINGIP_OWNER
            }) {
                return Ok(Some(port));
            }
        }
        Ok(None)
    }

    /// The floating IPs associated with a port (from their index claims).
    pub(super) async fn port_floatingips(
        &self,
        tx: &mut Tx,
        port_id: &str,
    ) -> ApiResult<Vec<Record>> {
        super::indexed_records(tx, &port_fips_scope(port_id), "floatingip").await
    }

    /// Routers with a port on `network`: its gateway, or an interface (`router-interface-fip`:
    /// floating IPs of a network a router is attached to by an interface go through it too).
    async fn routers_on(&self, tx: &mut Tx, network: &str) -> ApiResult<HashSet<String>> {
        let owners: Vec<&str> = INTERFACE_OWNERS
            .iter()
            .copied()
            .chain([GATEWAY_OWNER])
            .collect();
        Ok(self
            .network_ports_in_roles(tx, network, &owners)
            .await?
            .iter()
            .map(|p| s(&p.body, "device_id").to_string())
            .collect())
    }

    /// The router a request names to host a floating IP (`floating-ip-router-writable`):
    /// visible to the caller (404) and attached to the floating IP's network (409). Whether
    /// it routes to the fixed IP is not checked: that is what naming the router is for.
    async fn hosting_router(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        router: &str,
        external: &str,
    ) -> ApiResult<String> {
        let found = tx.get("router", router).await.map_err(db)?;
        let Some(rec) = found.filter(|r| ctx.is_admin() || r.project_id == ctx.project_id) else {
            return Err(ApiError::not_found("router", router));
        };
        tx.lock("router", &rec.id).await.map_err(db)?;
        if !self.routers_on(tx, external).await?.contains(&rec.id) {
            return Err(ApiError::conflict(
                "FloatingIPRouterNotOnNetwork",
                format!("Router {router} has no gateway or interface on external network {external}, so it cannot host a floating IP of that network."),
            ));
        }
        Ok(rec.id)
    }

    /// A router with an interface on `subnet` and a gateway or interface on `external`; the
    /// one whose interface holds the subnet's gateway address wins.
    pub(super) async fn router_for_floatingip(
        &self,
        tx: &mut Tx,
        port: &Record,
        subnet: &str,
        external: &str,
    ) -> ApiResult<String> {
        let on_external = self.routers_on(tx, external).await?;
        let network = port.parent_id.clone().unwrap_or_default();
        let gateway_ip = tx
            .get("subnet", subnet)
            .await
            .map_err(db)?
            .map(|sn| s(&sn.body, "gateway_ip").to_string())
            .unwrap_or_default();
        let mut first: Option<String> = None;
        for p in self
            .network_ports_in_roles(tx, &network, INTERFACE_OWNERS)
            .await?
        {
            let Some(ip) = p.body["fixed_ips"].as_array().and_then(|ips| {
                ips.iter()
                    .find(|ip| s(ip, "subnet_id") == subnet)
                    .map(|ip| s(ip, "ip_address").to_string())
            }) else {
                continue;
            };
            let router_id = s(&p.body, "device_id").to_string();
            if !on_external.contains(&router_id) {
                continue;
            }
            if !gateway_ip.is_empty() && ip == gateway_ip {
                return Ok(router_id);
            }
            first.get_or_insert(router_id);
        }
        first.ok_or_else(|| {
            ApiError::new(
                404,
                "ExternalGatewayForFloatingIPNotFound",
                format!(
                    "External network {external} is not reachable from subnet {subnet}.  Therefore, cannot associate Port {} with a Floating IP.",
                    port.id
                ),
            )
        })
    }

    /// `GET /v2.0/floatingip-pools` (`floatingip-pools`): one pool per IPv4 subnet of the
    /// external networks the caller can see, with the caller's project (as upstream). Filters,
    /// sorting and `fields` as for any collection.
    pub async fn floatingip_pools(
        &self,
        ctx: &Context,
        pairs: &[(String, String)],
    ) -> ApiResult<Vec<Doc>> {
        self.check_rule(ctx, "get_floatingip_pool", &project_target(&ctx.project_id))?;
        let q = query::parse(pairs, spec::FLOATINGIP_POOL, &[])?;
        let mut tx = self.read().await?;
        let view = View::load(&mut tx, "network").await?;
        let external: Vec<String> = tx
            .list("network", &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .filter(|n| view.is_external(n) && view.network_visible(ctx, n))
            .map(|n| n.id)
            .collect();
        let sel = Selector {
            parent_ids: Some(external),
            ..Default::default()
        };
        let subnets = tx.list("subnet", &sel).await.map_err(db)?;
        drop(tx);
        let pools: Vec<Doc> = subnets
            .iter()
            .filter(|sn| sn.body["ip_version"].as_i64() == Some(4))
            .filter_map(|sn| {
                let pool = json!({
                    "subnet_id": sn.id, "subnet_name": s(&sn.body, "name"),
                    "network_id": sn.parent_id, "project_id": ctx.project_id,
                    "cidr": s(&sn.body, "cidr"),
                });
                pool.as_object().cloned().filter(|d| query::matches(d, &q))
            })
            .collect();
        let fields = q.fields.clone();
        Ok(query::page(pools, &q, "floatingip_pool")?
            .items
            .into_iter()
            .map(|d| query::project(d, &fields))
            .collect())
    }

    /// Disassociates every floating IP from a port that is going away. Meant for
    /// `delete_port` (before the port record is deleted).
    pub(super) async fn disassociate_port_fips(&self, tx: &mut Tx, port_id: &str) -> ApiResult<()> {
        for mut fip in self.port_floatingips(tx, port_id).await? {
            tx.release_owned("fip:", &fip.id).await.map_err(db)?;
            Association::none().store(&mut fip.body);
            bump(&mut fip.body);
            tx.update("floatingip", &fip.id, &fip.body)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// Refuses a port `fixed_ips` update that drops the address a floating IP maps to
    /// (upstream `prevent_internal_ip_change_for_fip`). Meant for `update_port`.
    pub(super) async fn check_fip_fixed_ips_kept(
        &self,
        tx: &mut Tx,
        port_id: &str,
        new_fixed_ips: &[Value],
    ) -> ApiResult<()> {
        for fip in self.port_floatingips(tx, port_id).await? {
            let fixed = s(&fip.body, "fixed_ip_address");
            if fixed.is_empty() || new_fixed_ips.iter().any(|ip| s(ip, "ip_address") == fixed) {
                continue;
            }
            return Err(bad_request(
                "port",
                format!("Cannot update the fixed_ips of the port {port_id}, because its original fixed_ip has been associated to a floating ip"),
            ));
        }
        Ok(())
    }
}
