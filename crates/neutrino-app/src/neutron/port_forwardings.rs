//! Floating IP port forwarding, wire-compatible with Neutron's port forwarding plugin:
//! `/v2.0/floatingips/{floatingip_id}/port_forwardings`, each record a child of its floating
//! IP (`floatingip_id`, not shown). Specification and the pure checks:
//! `neutrino_types::port_forwarding`.
//!
//! Only a floating IP that is not associated with a port takes forwardings (409 otherwise),
//! and only to an internal port that has no floating IP of its own (409). The forwarding's
//! address must be an IPv4 address of that port, on a subnet a router connects to the
//! floating IP's network; the first forwarding sets the floating IP's `router_id`, the last
//! one deleted clears it, and every forwarding of a floating IP goes through that router
//! (400 otherwise). A new or changed forwarding locks its floating IP and its internal port,
//! so two concurrent ones never take one external port or one internal socket. A floating
//! IP with forwardings can neither be deleted nor associated with a port (409); an internal
//! port deleted, or losing the address, takes its forwardings with it.
//!
//! The index claims `pf:port:<port>` (key and owner: the forwarding) list a port's
//! forwardings without a scan.

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::port_forwarding::{self as spec, bad, check_collisions, settle_ports};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::authz::{parent_owner, Extras};
use super::kind::Kind;
use super::view::Need;
use super::{bump, s, Collection, Doc, View};
use crate::{db, App, Context};

/// The storage kind.
pub(super) const KIND: &str = "port_forwarding";

/// `/v2.0/floatingips/{floatingip_id}/port_forwardings`.
pub(super) static COLLECTION: Collection = Collection::new(
    "port_forwardings",
    KIND,
    spec::PORT_FORWARDING,
    &PortForwardings,
)
.untagged()
.unrevised()
.nested("floatingips", "floatingip_id");

/// Port forwardings of floating IPs.
struct PortForwardings;

/// The index claims of a port's forwardings.
fn port_scope(port: &str) -> String {
    format!("pf:port:{port}")
}

/// Neutron's `FipInUseByPortForwarding`.
pub(super) fn fip_in_use(fip: &str) -> ApiError {
    ApiError::conflict(
        "FipInUseByPortForwarding",
        format!("Floating IP {fip} in use by Port Forwarding resources."),
    )
}

/// The forwardings of the floating IPs `fips`.
pub(super) async fn of_floatingips(tx: &mut Tx, fips: Vec<String>) -> ApiResult<Vec<Record>> {
    let sel = Selector {
        parent_ids: Some(fips),
        ..Default::default()
    };
    tx.list(KIND, &sel).await.map_err(db)
}

/// The forwardings to the internal port `port` (from their index claims).
async fn of_port(tx: &mut Tx, port: &str) -> ApiResult<Vec<Record>> {
    super::indexed_records(tx, &port_scope(port), KIND).await
}

/// A floating IP's `port_forwardings`: the attributes upstream lists of each.
pub(super) fn shown_in_fip(forwardings: &[Record]) -> Value {
    super::listed_attributes(forwardings, spec::SHOWN_IN_FIP)
}

impl App {
    /// Checks where a forwarding leads: the internal port (visible to the caller, 404), one
    /// of its IPv4 addresses (400), no floating IP of its own (409), and a router between
    /// that address's subnet and the floating IP's network that is the floating IP's router
    /// if it has one (400). Locks the port; returns the router.
    async fn forwarding_target(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        fip: &Record,
        doc: &Doc,
    ) -> ApiResult<String> {
        let port_id = doc
            .get("internal_port_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let coll = &super::ports::COLLECTION;
        let found = tx.get("port", &port_id).await.map_err(db)?;
        let view = View::check(tx, coll, found.as_slice()).await?;
        let port = match found {
            Some(p) if self.visible(&view, ctx, coll, &p) => p,
            _ => return Err(ApiError::not_found("port", &port_id)),
        };
        tx.lock("port", &port.id).await.map_err(db)?;
        let address = spec::internal_address(doc)?;
        let v4: Vec<&Value> = port.body["fixed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|ip| s(ip, "ip_address").parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        if v4.is_empty() {
            return Err(bad(format!(
                "Requested internal port {port_id} must allocate an IPv4 address at least"
            )));
        }
        let Some(fixed) = v4
            .iter()
            .find(|ip| s(ip, "ip_address").parse().ok() == Some(address))
        else {
            let list: Vec<&str> = v4.iter().map(|ip| s(ip, "ip_address")).collect();
            return Err(bad(format!(
                "Requested internal IP address {address} is not suitable for internal neutron port {port_id}, as its fixed_ips are {list:?}"
            )));
        };
        if let Some(other) = self.port_floatingips(tx, &port_id).await?.first() {
            return Err(ApiError::conflict(
                "PortHasBindingFloatingIP",
                format!(
                    "Cannot create port forwarding to floating IP {} ({}) with port {port_id} using fixed IP {address}, as that port already has a binding floating IP.",
                    s(&other.body, "floating_ip_address"),
                    other.id
                ),
            ));
        }
        let external = s(&fip.body, "floating_network_id").to_string();
        let router = self
            .router_for_floatingip(tx, &port, s(fixed, "subnet_id"), &external)
            .await
            .map_err(|e| {
                if e.status == 404 {
                    bad(format!(
                        "External network {external} is not reachable from subnet {}. Cannot set Port forwarding for port {port_id} with Floating IP {}",
                        s(fixed, "subnet_id"),
                        fip.id
                    ))
                } else {
                    e
                }
            })?;
        let current = s(&fip.body, "router_id");
        if !current.is_empty() && current != router {
            return Err(bad(format!(
                "The Floating IP {} had been set on router {current}, the internal Neutron port {port_id} can not reach it",
                fip.id
            )));
        }
        Ok(router)
    }

    /// The floating IP of a forwarding, locked; 404 when it is gone.
    async fn locked_fip(&self, tx: &mut Tx, fip: &str) -> ApiResult<Record> {
        tx.lock("floatingip", fip).await.map_err(db)?;
        tx.get("floatingip", fip)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("floatingip", fip))
    }

    /// Checks a complete forwarding `doc` (id `id`) of floating IP `fip` against the other
    /// forwardings of that floating IP and of its internal port.
    async fn check_forwarding_collisions(
        &self,
        tx: &mut Tx,
        id: &str,
        fip: &str,
        doc: &Doc,
    ) -> ApiResult<()> {
        let port = doc
            .get("internal_port_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut others = of_floatingips(tx, vec![fip.to_string()]).await?;
        others.extend(of_port(tx, port).await?);
        let others: Vec<(String, String, Doc)> = others
            .into_iter()
            .filter_map(|r| {
                let parent = r.parent_id.clone().unwrap_or_default();
                r.body.as_object().cloned().map(|d| (r.id, parent, d))
            })
            .collect();
        check_collisions(id, doc, fip, &others)
    }

    /// Sets (or clears, `None`) the router of a floating IP that forwardings use.
    async fn set_fip_router(
        &self,
        tx: &mut Tx,
        fip: &mut Record,
        router: Option<&str>,
    ) -> ApiResult<()> {
        let want = router.map_or(Value::Null, |r| json!(r));
        if fip.body["router_id"] == want {
            return Ok(());
        }
        fip.body["router_id"] = want;
        bump(&mut fip.body);
        tx.update("floatingip", &fip.id, &fip.body)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Deletes forwarding `rec`; its floating IP loses its router when it was the last.
    async fn remove_forwarding(&self, tx: &mut Tx, rec: &Record) -> ApiResult<()> {
        let fip_id = rec.parent_id.clone().unwrap_or_default();
        tx.release_owned("pf:", &rec.id).await.map_err(db)?;
        if let Ok(mut fip) = self.locked_fip(tx, &fip_id).await {
            let left = of_floatingips(tx, vec![fip_id.clone()])
                .await?
                .into_iter()
                .any(|r| r.id != rec.id);
            if !left {
                self.set_fip_router(tx, &mut fip, None).await?;
            }
        }
        Ok(())
    }

    /// Deletes the forwardings to `port` whose address is not in `kept` (all of them when
    /// the port goes away). Meant for `delete_port` and `update_port`.
    pub(super) async fn drop_port_forwardings(
        &self,
        tx: &mut Tx,
        port: &str,
        kept: &[Value],
    ) -> ApiResult<()> {
        for rec in of_port(tx, port).await? {
            let address = s(&rec.body, "internal_ip_address");
            if kept.iter().any(|ip| s(ip, "ip_address") == address) {
                continue;
            }
            self.remove_forwarding(tx, &rec).await?;
            tx.delete(KIND, &rec.id).await.map_err(db)?;
        }
        Ok(())
    }

    /// Whether floating IP `fip` has forwardings.
    pub(super) async fn has_forwardings(&self, tx: &mut Tx, fip: &str) -> ApiResult<bool> {
        Ok(!of_floatingips(tx, vec![fip.to_string()]).await?.is_empty())
    }
}

#[async_trait]
impl Kind for PortForwardings {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need == Need::Check {
            view.load_parents(tx, "floatingip", records).await?;
        }
        Ok(())
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        view.parent_of(rec).is_some_and(|f| ctx.owns(&f.project_id))
    }

    fn policy_extras(&self, view: &View, _ctx: &Context, rec: &Record) -> Extras {
        parent_owner(view, rec)
    }

    fn render(&self, _view: &View, _ctx: &Context, _rec: &Record, doc: &mut Doc) {
        for k in ["project_id", "tenant_id", "floatingip_id"] {
            doc.remove(k);
        }
    }

    fn not_found(&self, _parent: Option<&str>, id: &str) -> Option<ApiError> {
        Some(ApiError::new(
            404,
            "PortForwardingNotFound",
            format!("Port Forwarding {id} could not be found."),
        ))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let fip_id = s(&json!(body), "floatingip_id").to_string();
        if fip_id.is_empty() {
            return Err(ApiError::no_such_url());
        }
        let changes = body.clone();
        settle_ports(body, &changes)?;
        let mut fip = app.locked_fip(tx, &fip_id).await?;
        let associated = s(&fip.body, "port_id");
        if !associated.is_empty() {
            return Err(ApiError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} ({fip_id}) with port {} using fixed IP {}, as that fixed IP already has a floating IP on external network {}.",
                    s(&fip.body, "floating_ip_address"),
                    s(&json!(body), "internal_port_id"),
                    s(&json!(body), "internal_ip_address"),
                    s(&fip.body, "floating_network_id"),
                ),
            ));
        }
        let router = app.forwarding_target(tx, ctx, &fip, body).await?;
        let id = s(&json!(body), "id").to_string();
        app.check_forwarding_collisions(tx, &id, &fip_id, body)
            .await?;
        app.set_fip_router(tx, &mut fip, Some(&router)).await?;
        let port = s(&json!(body), "internal_port_id").to_string();
        tx.claim(&port_scope(&port), &id, &id).await.map_err(db)?;
        Ok(Some(fip_id))
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        let fip_id = rec.parent_id.clone().unwrap_or_default();
        let mut fip = app.locked_fip(tx, &fip_id).await?;
        let mut doc = rec.body.as_object().cloned().unwrap_or_default();
        for (k, v) in &changes {
            if !k.ends_with("_port") && !k.ends_with("_port_range") {
                doc.insert(k.clone(), v.clone());
            }
        }
        settle_ports(&mut doc, &changes)?;
        let old_port = s(&rec.body, "internal_port_id").to_string();
        let new_port = doc
            .get("internal_port_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let target_changed = new_port != old_port
            || doc.get("internal_ip_address") != rec.body.get("internal_ip_address");
        if target_changed {
            let router = app.forwarding_target(tx, ctx, &fip, &doc).await?;
            let others = of_floatingips(tx, vec![fip_id.clone()])
                .await?
                .into_iter()
                .any(|r| r.id != rec.id);
            if others && s(&fip.body, "router_id") != router {
                return Err(bad(format!(
                    "The Floating IP {fip_id} had been set on router {}, the internal Neutron port {new_port} can not reach it",
                    s(&fip.body, "router_id")
                )));
            }
            app.set_fip_router(tx, &mut fip, Some(&router)).await?;
        }
        app.check_forwarding_collisions(tx, &rec.id, &fip_id, &doc)
            .await?;
        if new_port != old_port {
            tx.release_owned("pf:", &rec.id).await.map_err(db)?;
            tx.claim(&port_scope(&new_port), &rec.id, &rec.id)
                .await
                .map_err(db)?;
        }
        rec.body = Value::Object(doc);
        Ok(())
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        app.remove_forwarding(tx, rec).await
    }
}
