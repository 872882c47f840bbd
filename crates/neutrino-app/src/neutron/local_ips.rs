//! Local IPs, wire-compatible with Neutron's Local IP plugin (`local_ip`): `/v2.0/local_ips`
//! and their `/port_associations`. Specification and errors: `neutrino_types::local_ip`.
//!
//! A Local IP holds its address on a port: the `local_port_id` given (one of its addresses,
//! 400 unless it is clear which), or a port the server creates on `network_id` (an IPv4
//! subnet needed; device owner `network:local_ip`, deleted with the Local IP). While a Local
//! IP names it, that port cannot be deleted (409 `ServicePortInUse`, claim `lip-port:<port>`).
//!
//! A port association, named in URLs by its `fixed_port_id` (stored as
//! `<local ip>:<port>`), makes that port serve the address on its host; one per Local IP
//! and port (409). A Local IP with associations cannot be deleted (409 `LocalIPInUse`); a
//! port that goes away takes its associations with it (claims `lip-assoc:<port>`). The agent
//! of the associated port's host translates the address for the port's network there.

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::local_ip::{self as spec, pick_address};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::authz::{parent_owner, Extras};
use super::kind::Kind;
use super::view::{narrow, Need};
use super::{s, Collection, Doc, View};
use crate::{db, App, Context};

/// The storage kind of Local IPs.
pub(super) const KIND: &str = "local_ip";

/// The storage kind of port associations.
pub(super) const ASSOCIATION: &str = "local_ip_port_association";

/// `/v2.0/local_ips`.
pub(super) static LOCAL_IPS: Collection =
    Collection::new("local_ips", KIND, spec::LOCAL_IP, &LocalIps).untagged();

/// `/v2.0/local_ips/{local_ip_id}/port_associations`.
pub(super) static PORT_ASSOCIATIONS: Collection = Collection::new(
    "port_associations",
    ASSOCIATION,
    spec::PORT_ASSOCIATION,
    &PortAssociations,
)
.untagged()
.unrevised()
.immutable()
.nested("local_ips", "local_ip_id")
.keyed("port_association");

/// Local IPs.
struct LocalIps;

/// Port associations of Local IPs.
struct PortAssociations;

/// The claim scope listing the Local IPs whose address a port holds.
fn holder_scope(port: &str) -> String {
    format!("lip-port:{port}")
}

/// The claim scope listing a port's associations.
fn association_scope(port: &str) -> String {
    format!("lip-assoc:{port}")
}

/// The addresses of a port.
fn addresses(port: &Value) -> Vec<String> {
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ip| s(ip, "ip_address").to_string())
        .collect()
}

/// An optional address attribute of a request, checked to be an IP address (400).
fn requested_address(body: &Doc, key: &str) -> ApiResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.parse::<std::net::IpAddr>().is_ok() => {
            Ok(Some(text.clone()))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid input for {key}. Reason: '{}' is not a valid IP address.",
            other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string)
        ))),
    }
}

/// Neutron's `BadRequest` about resource `resource`.
fn bad(resource: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad("BadRequest", format!("Bad {resource} request: {msg}."))
}

impl App {
    /// Creates the port holding a new Local IP's address on `network` (404 when the caller
    /// does not see it, 400 without an IPv4 subnet); returns it.
    async fn local_ip_port(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &Doc,
        network: &str,
    ) -> ApiResult<Record> {
        let nets = &super::networks::COLLECTION;
        let found = tx.get("network", network).await.map_err(db)?;
        let view = View::check(tx, nets, found.as_slice()).await?;
        if !found.is_some_and(|n| self.visible(&view, ctx, nets, &n)) {
            return Err(ApiError::not_found("network", network));
        }
        let subnet = self
            .network_subnets(tx, network)
            .await?
            .into_iter()
            .find(|sn| sn.body["ip_version"] == 4)
            .ok_or_else(|| {
                bad(
                    "local_ip",
                    format!("Network {network} does not contain any IPv4 subnet"),
                )
            })?;
        let mut fixed = json!({"subnet_id": subnet.id});
        if let Some(address) = requested_address(body, "local_ip_address")? {
            fixed = json!({"ip_address": address});
        }
        let doc = json!(body);
        self.insert_service_port(
            tx,
            s(&doc, "project_id"),
            network,
            Some(json!([fixed])),
            spec::LOCAL_IP_OWNER,
            s(&doc, "id"),
        )
        .await
    }

    /// Refuses to delete a port that holds a Local IP's address (409). Meant for
    /// `delete_port`.
    pub(super) async fn check_port_holds_no_local_ip(
        &self,
        tx: &mut Tx,
        port: &str,
    ) -> ApiResult<()> {
        let holders = tx
            .claimed_keys(&holder_scope(port), "", None, 1)
            .await
            .map_err(db)?;
        if holders.is_empty() {
            return Ok(());
        }
        Err(ApiError::conflict(
            "ServicePortInUse",
            format!("Port {port} cannot be deleted directly via the port API: still referenced by Local IPs."),
        ))
    }

    /// Deletes the associations of a port that is going away. Meant for `delete_port`.
    pub(super) async fn drop_port_local_ip_associations(
        &self,
        tx: &mut Tx,
        port: &str,
    ) -> ApiResult<()> {
        super::drop_indexed(tx, &association_scope(port), ASSOCIATION, "lip-assoc:").await
    }
}

#[async_trait]
impl Kind for LocalIps {
    fn not_found(&self, _parent: Option<&str>, id: &str) -> Option<ApiError> {
        Some(spec::not_found(id))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let id = s(&json!(body), "id").to_string();
        let requested = requested_address(body, "local_ip_address")?;
        let local_port = body.get("local_port_id").and_then(Value::as_str);
        let network = body.get("network_id").and_then(Value::as_str);
        let (port, address) = match (local_port, network) {
            (Some(port_id), _) => {
                let port = app
                    .visible_port(tx, ctx, port_id)
                    .await?
                    .ok_or_else(|| bad("local_ip", format!("Port {port_id} not found")))?;
                let address = pick_address(port_id, &addresses(&port.body), requested.as_deref())?;
                (port, address)
            }
            (None, Some(network)) => {
                let network = network.to_string();
                let port = app.local_ip_port(tx, ctx, body, &network).await?;
                let address = addresses(&port.body).into_iter().next().unwrap_or_default();
                (port, address)
            }
            (None, None) => return Err(spec::port_or_network_required()),
        };
        tx.claim(&holder_scope(&port.id), &id, &id)
            .await
            .map_err(db)?;
        body.insert("local_port_id".into(), json!(port.id));
        body.insert("network_id".into(), json!(s(&port.body, "network_id")));
        body.insert("local_ip_address".into(), json!(address));
        Ok(None)
    }

    async fn delete(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        let sel = Selector {
            parent_ids: Some(vec![rec.id.clone()]),
            ..Default::default()
        };
        if !tx.list(ASSOCIATION, &sel).await.map_err(db)?.is_empty() {
            return Err(spec::in_use(&rec.id));
        }
        tx.release_owned("lip-port:", &rec.id).await.map_err(db)?;
        let port = s(&rec.body, "local_port_id");
        if let Some(port) = tx.get("port", port).await.map_err(db)? {
            if s(&port.body, "device_owner") == spec::LOCAL_IP_OWNER {
                app.remove_service_port(tx, &port).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Kind for PortAssociations {
    async fn load_view(
        &self,
        tx: &mut Tx,
        records: &[Record],
        view: &mut View,
        need: Need,
    ) -> ApiResult<()> {
        if need == Need::Check {
            view.load_parents(tx, KIND, records).await?;
        }
        let ports: Vec<String> = records
            .iter()
            .map(|r| s(&r.body, "fixed_port_id").to_string())
            .collect();
        let sel = Selector {
            ids: narrow(ports),
            ..Default::default()
        };
        let hosts: std::collections::HashMap<String, String> = tx
            .list("port", &sel)
            .await
            .map_err(db)?
            .into_iter()
            .map(|p| (p.id.clone(), s(&p.body, "binding:host_id").to_string()))
            .collect();
        for rec in records {
            let host = hosts
                .get(s(&rec.body, "fixed_port_id"))
                .cloned()
                .unwrap_or_default();
            let mut doc = Doc::new();
            doc.insert("host".into(), json!(host));
            view.computed.insert(rec.id.clone(), doc);
        }
        Ok(())
    }

    fn visible_to_others(&self, view: &View, ctx: &Context, rec: &Record) -> bool {
        view.parent_of(rec).is_some_and(|l| ctx.owns(&l.project_id))
    }

    fn policy_extras(&self, view: &View, _ctx: &Context, rec: &Record) -> Extras {
        parent_owner(view, rec)
    }

    fn render(&self, view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        for k in ["id", "tenant_id"] {
            doc.remove(k);
        }
        if let Some(extra) = view.computed.get(&rec.id) {
            doc.extend(extra.clone());
        }
    }

    fn stored_id(&self, parent: Option<&str>, id: &str) -> String {
        format!("{}:{id}", parent.unwrap_or_default())
    }

    fn new_record_id(&self, body: &Doc) -> Option<String> {
        let doc = json!(body);
        Some(format!(
            "{}:{}",
            s(&doc, "local_ip_id"),
            s(&doc, "fixed_port_id")
        ))
    }

    fn not_found(&self, parent: Option<&str>, id: &str) -> Option<ApiError> {
        Some(spec::association_not_found(parent.unwrap_or_default(), id))
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        let doc = json!(body);
        let (id, local_ip, port_id) = (
            s(&doc, "id").to_string(),
            s(&doc, "local_ip_id").to_string(),
            s(&doc, "fixed_port_id").to_string(),
        );
        if local_ip.is_empty() {
            return Err(ApiError::no_such_url());
        }
        tx.lock(KIND, &local_ip).await.map_err(db)?;
        let lip = tx
            .get(KIND, &local_ip)
            .await
            .map_err(db)?
            .ok_or_else(|| spec::not_found(&local_ip))?;
        let port = app.visible_port(tx, ctx, &port_id).await?.ok_or_else(|| {
            bad(
                "local_ip_port_association",
                format!("Port {port_id} not found"),
            )
        })?;
        let requested = requested_address(body, "fixed_ip")?;
        let fixed_ip = pick_address(&port_id, &addresses(&port.body), requested.as_deref())?;
        if tx.get(ASSOCIATION, &id).await.map_err(db)?.is_some() {
            return Err(ApiError::conflict(
                "Conflict",
                format!("Local IP {local_ip} association to port {port_id} already exists."),
            ));
        }
        tx.claim(&association_scope(&port_id), &id, &id)
            .await
            .map_err(db)?;
        body.insert("fixed_ip".into(), json!(fixed_ip));
        body.insert(
            "local_ip_address".into(),
            lip.body["local_ip_address"].clone(),
        );
        Ok(Some(local_ip))
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        tx.release_owned("lip-assoc:", &rec.id).await.map_err(db)
    }
}
