//! Layer-2 gateways, wire-compatible with networking-l2gw: `/v2.0/l2-gateways` and
//! `/v2.0/l2-gateway-connections`, plus Neutrino's border-gateway extension
//! ([`remote`]: remote gateways, remote gateway connections, remote MACs). Admin-only by
//! default policy; a caller the policy refuses cannot even list (403, as upstream's
//! hard-coded admin check).
//!
//! The rules between these resources are claims (every scope starts with `l2gw`, so one
//! `release_owned("l2gw", id)` drops what a record holds):
//!
//! | scope | key | owner | rule |
//! |---|---|---|---|
//! | `l2gw-conn` | `<gateway>\|<network>` | connection | one connection per gateway and network |
//! | `l2gw-use` | `<gateway>/<connection>` | connection | a connected gateway cannot be deleted |
//! | `l2gw-conn-use` | `<connection>/<remote connection>` | remote connection | a connection a remote connection needs cannot be deleted |
//! | `l2gw-rconn` | `<gateway>\|<network>\|<remote gateway>` | remote connection | one per triple |
//! | `l2gw-rgw-use` | `<remote gateway>/<remote connection>` | remote connection | cascade on remote gateway delete |
//! | `l2gw-rmac:<remote connection>` | MAC | remote MAC | a MAC once per remote connection |
//!
//! [`learned`] keeps what software gateways (Neutrino's agents) learned behind their
//! interfaces.
//!
//! A connection locks its gateway's row, a remote connection its connection's, a remote MAC
//! its remote connection's, and each delete locks its own row first, so a delete and a new
//! user of the same record serialise on PostgreSQL too.

mod learned;
mod remote;

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::l2gw as spec;
use neutrino_types::query::ListQuery;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::authz::project_target;
use super::kind::{apply_changes, FamilyKind, Kind};
use super::{lock_existing, relock, s, Collection, Doc, View};
use crate::{db, new_id, App, Context};

const CONN: &str = "l2gw-conn";
const GW_USE: &str = "l2gw-use";
const CONN_USE: &str = "l2gw-conn-use";

/// `/v2.0/l2-gateways`.
pub(crate) static GATEWAYS: Collection = Collection::family(
    "l2-gateways",
    &L2gwKind::new("l2_gateway", spec::L2_GATEWAY),
);
/// `/v2.0/l2-gateway-connections`.
pub(crate) static CONNECTIONS: Collection = Collection::family(
    "l2-gateway-connections",
    &L2gwKind::new("l2_gateway_connection", spec::L2_GATEWAY_CONNECTION),
)
.immutable();
/// `/v2.0/l2-remote-gateways` (Neutrino extension).
pub(crate) static REMOTE_GATEWAYS: Collection = Collection::family(
    "l2-remote-gateways",
    &L2gwKind::new("l2_remote_gateway", spec::L2_REMOTE_GATEWAY),
);
/// `/v2.0/l2-remote-gateway-connections` (Neutrino extension).
pub(crate) static REMOTE_CONNECTIONS: Collection = Collection::family(
    "l2-remote-gateway-connections",
    &L2gwKind::new(
        "l2_remote_gateway_connection",
        spec::L2_REMOTE_GATEWAY_CONNECTION,
    ),
)
.immutable();
/// `/v2.0/l2-remote-macs` (Neutrino extension).
pub(crate) static REMOTE_MACS: Collection = Collection::family(
    "l2-remote-macs",
    &L2gwKind::new("l2_remote_mac", spec::L2_REMOTE_MAC),
)
.immutable();

/// Marks the l2gw kinds.
struct L2gw;

/// One l2gw resource kind; the rules between them are claims (see above).
type L2gwKind = FamilyKind<L2gw>;

#[async_trait]
impl Kind for L2gwKind {
    fn render(&self, _view: &View, _ctx: &Context, rec: &Record, doc: &mut Doc) {
        if self.resource == "l2_remote_mac" {
            doc.insert("uuid".into(), json!(rec.id));
        }
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        if self.resource == "l2_gateway" {
            if let Some(devices) = body.get("devices") {
                spec::devices(devices)?;
            }
        }
        Ok(())
    }

    async fn before_list(&self, app: &App, ctx: &Context, _q: &ListQuery) -> ApiResult<()> {
        // networking-l2gw's plugin refuses the whole listing to non-admins.
        let rule = format!("get_{}", self.resource);
        if app.permits(ctx, &rule, &project_target(&ctx.project_id)) {
            Ok(())
        } else {
            Err(admin_required("GET"))
        }
    }

    async fn create(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        match self.resource {
            "l2_gateway" => {
                app.create_l2_gateway(body)?;
                Ok(None)
            }
            "l2_gateway_connection" => app.create_l2gw_connection(tx, body).await.map(Some),
            "l2_remote_gateway" => {
                remote::create_remote_gateway(body)?;
                Ok(None)
            }
            "l2_remote_gateway_connection" => {
                app.create_remote_connection(tx, body).await.map(Some)
            }
            _ => app.create_remote_mac(tx, body).await.map(Some),
        }
    }

    async fn update(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        mut changes: Doc,
    ) -> ApiResult<()> {
        relock(tx, rec).await?;
        match self.resource {
            "l2_gateway" => app.update_l2_gateway(rec, &mut changes)?,
            _ => remote::update_remote_gateway(&mut changes)?,
        }
        apply_changes(rec, changes);
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
        let mut rec = rec.clone();
        relock(tx, &mut rec).await?;
        let id = rec.id.as_str();
        let in_use = match self.resource {
            "l2_gateway" => first_user(tx, GW_USE, id).await?.map(|_| {
                ApiError::conflict(
                    "L2GatewayInUse",
                    format!(
                        "L2 Gateway '{id}' still has active mappings with one or more neutron \
                         networks."
                    ),
                )
            }),
            "l2_gateway_connection" => first_user(tx, CONN_USE, id).await?.map(|user| {
                ApiError::conflict(
                    "L2GatewayConnectionInUse",
                    format!(
                        "L2 gateway connection {id} is used by remote gateway connection {user}."
                    ),
                )
            }),
            "l2_remote_gateway" => {
                app.drop_remote_connections_of(tx, id).await?;
                None
            }
            "l2_remote_gateway_connection" => {
                drop_macs(tx, &[id.to_string()]).await?;
                None
            }
            _ => None,
        };
        if let Some(err) = in_use {
            return Err(err);
        }
        tx.release_owned("l2gw", id).await.map_err(db)?;
        Ok(())
    }
}

/// 403 `AdminRequired`, networking-l2gw's answer to a non-admin.
fn admin_required(action: &str) -> ApiError {
    ApiError::new(
        403,
        "AdminRequired",
        format!(
            "User does not have admin privileges: Cannot {action} resource for non admin tenant."
        ),
    )
}

/// The first key of `scope` under `<id>/`: the id of a record using `id`, if any.
async fn first_user(tx: &mut Tx, scope: &str, id: &str) -> ApiResult<Option<String>> {
    let keys = tx
        .claimed_keys(scope, &format!("{id}/"), Some(&format!("{id}0")), 1)
        .await
        .map_err(db)?;
    Ok(keys
        .first()
        .map(|k| k.rsplit('/').next().unwrap_or_default().to_string()))
}

/// Every user of `id` in `scope` (keys `<id>/<user>`).
async fn users(tx: &mut Tx, scope: &str, id: &str) -> ApiResult<Vec<String>> {
    let keys = tx
        .claimed_keys(scope, &format!("{id}/"), Some(&format!("{id}0")), i64::MAX)
        .await
        .map_err(db)?;
    Ok(keys
        .into_iter()
        .map(|k| k.rsplit('/').next().unwrap_or_default().to_string())
        .collect())
}

/// Records of `kind` whose parent is one of `parents`.
async fn children(tx: &mut Tx, kind: &str, parents: &[String]) -> ApiResult<Vec<Record>> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let sel = Selector {
        parent_ids: Some(parents.to_vec()),
        ..Default::default()
    };
    tx.list(kind, &sel).await.map_err(db)
}

/// Deletes the remote MACs of the given remote connections, with their claims.
async fn drop_macs(tx: &mut Tx, connections: &[String]) -> ApiResult<()> {
    for mac in children(tx, "l2_remote_mac", connections).await? {
        tx.release_owned("l2gw", &mac.id).await.map_err(db)?;
        tx.delete("l2_remote_mac", &mac.id).await.map_err(db)?;
    }
    Ok(())
}

/// Deletes records with their claims (and, for remote connections, their MACs).
async fn drop_records(tx: &mut Tx, records: &[Record]) -> ApiResult<()> {
    let remote: Vec<String> = records
        .iter()
        .filter(|r| r.kind == "l2_remote_gateway_connection")
        .map(|r| r.id.clone())
        .collect();
    drop_macs(tx, &remote).await?;
    for rec in records {
        tx.release_owned("l2gw", &rec.id).await.map_err(db)?;
        tx.delete(&rec.kind, &rec.id).await.map_err(db)?;
    }
    Ok(())
}

fn gateway_not_found(id: &str) -> ApiError {
    ApiError::not_found("l2_gateway", id)
}

impl App {
    /// Normalises a new gateway's devices and gives each its server id.
    fn create_l2_gateway(&self, body: &mut Doc) -> ApiResult<()> {
        let devices = spec::devices(body.get("devices").unwrap_or(&Value::Null))?;
        let devices: Vec<Value> = devices
            .into_iter()
            .map(|mut d| {
                d["id"] = json!(new_id());
                d
            })
            .collect();
        body.insert("devices".into(), Value::Array(devices));
        Ok(())
    }

    /// A gateway update: `name`, and/or `devices` whose every entry names a device of this
    /// gateway (404 `L2GatewayDeviceNotFound`) and replaces its interfaces, keeping the
    /// gateway's VLAN style (interfaces with VLANs, or none).
    fn update_l2_gateway(&self, rec: &Record, changes: &mut Doc) -> ApiResult<()> {
        if changes.get("name").is_some_and(Value::is_null) {
            changes.insert("name".into(), json!(""));
        }
        let Some(given) = changes.get("devices") else {
            return Ok(());
        };
        let given = spec::devices(given)?;
        let mut devices: Vec<Value> = rec.body["devices"].as_array().cloned().unwrap_or_default();
        let had_vlans = spec::has_vlans(&devices);
        for new in given {
            let name = s(&new, "device_name");
            let Some(old) = devices.iter_mut().find(|d| s(d, "device_name") == name) else {
                return Err(ApiError::new(
                    404,
                    "L2GatewayDeviceNotFound",
                    format!("L2 Gateway Device {name} could not be found."),
                ));
            };
            let vlans = spec::has_vlans(std::slice::from_ref(&new));
            if vlans && !had_vlans {
                return Err(ApiError::conflict(
                    "L2GatewaySegmentationIDExists",
                    format!(
                        "The segmentation id is already specified in gateway interface '{}'.",
                        spec::interface_names(&new).join(", ")
                    ),
                ));
            }
            if !vlans && had_vlans {
                return Err(ApiError::new(
                    404,
                    "L2gatewaySegmentationIDNotFound",
                    format!("The segmentation id not found on gateway '{}'", rec.id),
                ));
            }
            old["interfaces"] = new["interfaces"].clone();
        }
        changes.insert("devices".into(), Value::Array(devices));
        Ok(())
    }

    /// Checks and claims a new connection; returns its network (the record's parent).
    async fn create_l2gw_connection(&self, tx: &mut Tx, body: &mut Doc) -> ApiResult<String> {
        let doc = Value::Object(body.clone());
        let (id, gw_id, net_id) = (
            s(&doc, "id"),
            s(&doc, "l2_gateway_id"),
            s(&doc, "network_id"),
        );
        let gateway = lock_existing(tx, "l2_gateway", gw_id, || gateway_not_found(gw_id)).await?;
        let devices = gateway.body["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let vlan = spec::connection_vlan(s(&doc, "segmentation_id"), spec::has_vlans(&devices))?;
        let network = tx
            .get("network", net_id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("network", net_id))?;
        if s(&network.body, "provider:network_type") != "vxlan" {
            return Err(ApiError::new(
                404,
                "VxlanSegmentationIDNotFound",
                format!("vxlan segmentation id not found for the network '{net_id}'"),
            ));
        }
        if !tx
            .claim(CONN, &format!("{gw_id}|{net_id}"), id)
            .await
            .map_err(db)?
        {
            return Err(ApiError::conflict(
                "L2GatewayConnectionExists",
                format!(
                    "The specified mapping '{{'network_id': '{net_id}', 'l2_gateway_id': \
                     '{gw_id}'}}' exists on network gateway '{gw_id}'."
                ),
            ));
        }
        tx.claim(GW_USE, &format!("{gw_id}/{id}"), id)
            .await
            .map_err(db)?;
        // Upstream shows a stored 0 ("the interfaces' own VLANs") as "".
        let shown = if vlan == 0 { json!("") } else { json!(vlan) };
        body.insert("segmentation_id".into(), shown);
        Ok(net_id.to_string())
    }

    /// Deletes the l2gw records of a network that is being deleted (upstream's foreign keys
    /// cascade): its connections, remote connections and their MACs.
    pub(super) async fn drop_l2gw_of_network(&self, tx: &mut Tx, network: &str) -> ApiResult<()> {
        let net = [network.to_string()];
        let remote = children(tx, "l2_remote_gateway_connection", &net).await?;
        drop_records(tx, &remote).await?;
        let local = children(tx, "l2_gateway_connection", &net).await?;
        drop_records(tx, &local).await?;
        let learned = children(tx, learned::KIND, &net).await?;
        drop_records(tx, &learned).await
    }
}
