//! Port pairs (one service function instance: ingress and egress port of one device) and
//! port pair groups (one hop: interchangeable pairs, optionally a passive tap).

use neutrino_store::{Record, Tx};
use neutrino_types::sfc::{ppg_parameters, sf_parameters, uuid_list};
use neutrino_types::sfc_status;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::{allocate, claim_port, text, visible, Doc};
use super::{GROUP_ID, PP_GROUP, PP_PORTS};
use crate::{db, App, Context};

fn correlation(pp: &Record) -> Value {
    pp.body["service_function_parameters"]["correlation"].clone()
}

impl App {
    pub(super) async fn create_port_pair(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<()> {
        let params = sf_parameters(
            body.get("service_function_parameters")
                .unwrap_or(&Value::Null),
        )?;
        body.insert("service_function_parameters".into(), params);
        let doc = Value::Object(body.clone());
        let (id, ingress, egress) = (
            text(&doc, "id"),
            text(&doc, "ingress"),
            text(&doc, "egress"),
        );
        let combination = format!("{ingress}|{egress}");
        if !tx.claim(PP_PORTS, &combination, &id).await.map_err(db)? {
            let other = tx
                .claim_owner(PP_PORTS, &combination)
                .await
                .map_err(db)?
                .unwrap_or_default();
            return Err(ApiError::bad(
                "PortPairIngressEgressInUse",
                format!(
                    "Port Pair with ingress port {ingress} and egress port {egress} is already \
                     used by another Port Pair {other}."
                ),
            ));
        }
        let mut devices = Vec::new();
        for port in [&ingress, &egress] {
            let rec = self.usable_port(tx, ctx, port).await?.ok_or_else(|| {
                ApiError::new(
                    404,
                    "PortPairPortNotFound",
                    format!("Port Pair port {port} not found."),
                )
            })?;
            devices.push(text(&rec.body, "device_id"));
        }
        if devices[0].is_empty() {
            return Err(ApiError::bad(
                "PortPairIngressNoHost",
                format!("Port Pair ingress port {ingress} does not belong to a host."),
            ));
        }
        if devices[1].is_empty() {
            return Err(ApiError::bad(
                "PortPairEgressNoHost",
                format!("Port Pair egress port {egress} does not belong to a host."),
            ));
        }
        if devices[0] != devices[1] {
            return Err(ApiError::bad(
                "PortPairIngressEgressDifferentHost",
                format!(
                    "Port Pair ingress port {ingress} and egress port {egress} not in the same \
                     host."
                ),
            ));
        }
        claim_port(tx, &ingress, &id).await?;
        claim_port(tx, &egress, &id).await?;
        // No agent has reported on it yet.
        sfc_status::fill_health(body);
        Ok(())
    }

    pub(super) async fn create_port_pair_group(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<()> {
        let pps = uuid_list("port_pairs", body.get("port_pairs").unwrap_or(&Value::Null))?;
        let params = ppg_parameters(
            body.get("port_pair_group_parameters")
                .unwrap_or(&Value::Null),
        )?;
        let tap = body.get("tap_enabled") == Some(&Value::Bool(true));
        let id = text(&Value::Object(body.clone()), "id");
        self.set_group_members(tx, ctx, &id, &pps, tap).await?;
        let group_id = allocate(tx, GROUP_ID, i64::from(i32::MAX), &id)
            .await?
            .ok_or_else(|| ApiError::conflict("OverQuota", "No group id is left."))?;
        body.insert("port_pairs".into(), json!(pps));
        body.insert("port_pair_group_parameters".into(), params);
        body.insert("tap_enabled".into(), json!(tap));
        body.insert("group_id".into(), json!(group_id));
        Ok(())
    }

    pub(super) async fn update_port_pair_group(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        rec: &Record,
        changes: &mut Doc,
    ) -> ApiResult<()> {
        let Some(list) = changes.get("port_pairs") else {
            return Ok(());
        };
        let pps = uuid_list("port_pairs", list)?;
        let tap = rec.body["tap_enabled"] == true;
        tx.release_owned(PP_GROUP, &rec.id).await.map_err(db)?;
        self.set_group_members(tx, ctx, &rec.id, &pps, tap).await?;
        changes.insert("port_pairs".into(), json!(pps));
        Ok(())
    }

    /// Checks and claims the members of group `group`: visible pairs of one correlation, in
    /// no other group, at most one in a tap group.
    async fn set_group_members(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        group: &str,
        pps: &[String],
        tap: bool,
    ) -> ApiResult<()> {
        let pairs = visible(tx, ctx, "port_pair", pps).await?;
        let first = pairs.first().map(correlation);
        for pp in &pairs {
            if Some(correlation(pp)) != first {
                return Err(ApiError::bad(
                    "InconsistentCorrelations",
                    "Port Pair Group attempted creation included Port Pairs with inconsistent \
                     correlation types.",
                ));
            }
            if !tx.claim(PP_GROUP, &pp.id, group).await.map_err(db)? {
                return Err(ApiError::conflict(
                    "PortPairInUse",
                    format!("Port Pair {} in use.", pp.id),
                ));
            }
        }
        if tap && pairs.len() > 1 {
            return Err(ApiError::bad(
                "MultiplePortPairsInTapPPGNotSupported",
                "Multiple port pairs in Tap port-pair-group is not allowed.",
            ));
        }
        Ok(())
    }
}
