//! The border-gateway extension (networking-l2gw's unmerged inter-cloud change, shapes from
//! its Newton spec): remote gateways (the far cloud's VTEP), remote gateway connections
//! (a locally connected network stretched to one remote gateway over a WAN tunnel key) and
//! remote MACs (hosts behind that remote gateway, pushed by an orchestrator).

use neutrino_store::Tx;
use neutrino_types::l2gw as spec;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::{drop_records, gateway_not_found, lock_existing, users, Doc, CONN, CONN_USE};
use crate::neutron::s;
use crate::{db, App};

const RCONN: &str = "l2gw-rconn";
const RGW_USE: &str = "l2gw-rgw-use";

fn rmac_scope(connection: &str) -> String {
    format!("l2gw-rmac:{connection}")
}

/// Normalises a new remote gateway's tunnel address.
pub(super) fn create_remote_gateway(body: &mut Doc) -> ApiResult<()> {
    let ip = spec::tunnel_ip(body.get("ipaddr").and_then(Value::as_str).unwrap_or(""))?;
    body.insert("ipaddr".into(), json!(ip));
    Ok(())
}

/// Checks a remote gateway update (name, tunnel address).
pub(super) fn update_remote_gateway(changes: &mut Doc) -> ApiResult<()> {
    if let Some(ip) = changes.get("ipaddr") {
        let ip = spec::tunnel_ip(ip.as_str().unwrap_or(""))?;
        changes.insert("ipaddr".into(), json!(ip));
    }
    Ok(())
}

impl App {
    /// Checks and claims a new remote gateway connection: the gateway, network and remote
    /// gateway exist and the network is connected to the gateway. Returns the network.
    pub(super) async fn create_remote_connection(
        &self,
        tx: &mut Tx,
        body: &mut Doc,
    ) -> ApiResult<String> {
        let doc = Value::Object(body.clone());
        let (id, gw, net, rgw) = (
            s(&doc, "id"),
            s(&doc, "gateway"),
            s(&doc, "network"),
            s(&doc, "remote_gateway"),
        );
        let seg_id = spec::wan_seg_id(doc.get("seg_id").unwrap_or(&Value::Null))?;
        let flood = spec::flood(doc.get("flood").unwrap_or(&json!("True")))?;
        if tx.get("l2_gateway", gw).await.map_err(db)?.is_none() {
            return Err(gateway_not_found(gw));
        }
        if tx.get("network", net).await.map_err(db)?.is_none() {
            return Err(ApiError::not_found("network", net));
        }
        lock_existing(tx, "l2_remote_gateway", rgw, || {
            ApiError::new(
                404,
                "L2RemoteGatewayNotFound",
                format!("L2 remote gateway {rgw} could not be found."),
            )
        })
        .await?;
        let local = tx
            .claim_owner(CONN, &format!("{gw}|{net}"))
            .await
            .map_err(db)?;
        let Some(local) = local else {
            return Err(ApiError::new(
                404,
                "L2GatewayConnectionNotFound",
                format!(
                    "Network {net} is not connected to l2 gateway {gw}: create the \
                     l2-gateway-connection first."
                ),
            ));
        };
        lock_existing(tx, "l2_gateway_connection", &local, || {
            ApiError::new(
                404,
                "L2GatewayConnectionNotFound",
                format!("The connection {local} not found on the l2 gateway"),
            )
        })
        .await?;
        if !tx
            .claim(RCONN, &format!("{gw}|{net}|{rgw}"), id)
            .await
            .map_err(db)?
        {
            return Err(ApiError::conflict(
                "L2RemoteGatewayConnectionExists",
                format!(
                    "Network {net} on l2 gateway {gw} is already connected to remote gateway \
                     {rgw}."
                ),
            ));
        }
        tx.claim(RGW_USE, &format!("{rgw}/{id}"), id)
            .await
            .map_err(db)?;
        tx.claim(CONN_USE, &format!("{local}/{id}"), id)
            .await
            .map_err(db)?;
        body.insert("seg_id".into(), json!(seg_id));
        body.insert("flood".into(), json!(flood));
        Ok(net.to_string())
    }

    /// Checks and claims a new remote MAC; returns its remote connection.
    pub(super) async fn create_remote_mac(&self, tx: &mut Tx, body: &mut Doc) -> ApiResult<String> {
        let doc = Value::Object(body.clone());
        let (id, conn) = (s(&doc, "id"), s(&doc, "rgw_connection"));
        let mac = spec::mac(s(&doc, "mac"))?;
        let ip = spec::mac_ip(s(&doc, "ipaddr"))?;
        lock_existing(tx, "l2_remote_gateway_connection", conn, || {
            ApiError::not_found("l2_remote_gateway_connection", conn)
        })
        .await?;
        if !tx.claim(&rmac_scope(conn), &mac, id).await.map_err(db)? {
            return Err(ApiError::conflict(
                "L2RemoteMacExists",
                format!("MAC {mac} is already known on remote gateway connection {conn}."),
            ));
        }
        body.insert("mac".into(), json!(mac));
        body.insert("ipaddr".into(), json!(ip));
        body.insert("uuid".into(), json!(id));
        Ok(conn.to_string())
    }

    /// Deletes the connections of a remote gateway that is being deleted (upstream's
    /// foreign key cascades), with their MACs.
    pub(super) async fn drop_remote_connections_of(&self, tx: &mut Tx, rgw: &str) -> ApiResult<()> {
        let ids = users(tx, RGW_USE, rgw).await?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(rec) = tx
                .get("l2_remote_gateway_connection", &id)
                .await
                .map_err(db)?
            {
                records.push(rec);
            }
        }
        drop_records(tx, &records).await
    }
}
