//! SFC dataplane status (Neutrino extensions): host agents report the health of the port
//! pairs they host and the counters of the chains they steer (`PUT /neutrino/v1/sfc-status`);
//! clients read the health in the port pair and the summed counters at
//! `GET /v2.0/sfc/port_chains/{id}/statistics`.
//!
//! Health is part of the port pair document, written only when it changes, so the change
//! feed carries a change to every agent at once and the several reports a second an agent
//! sends cost no write. Counters change constantly: they stay out of the documents and the
//! feed, one latest report per (chain, host) in `sfc_chain_counters`.

use neutrino_store::Tx;
use neutrino_types::sfc_status::{self, ChainCounters, StatusReport, HEALTH, HEALTH_DETAIL};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::{by_id, sees, text};
use crate::neutron::relock;
use crate::{db, App, Context};

/// Counter reports older than this are ignored (the host stopped reporting, or the chain
/// left it).
pub const STALE_AFTER_MS: i64 = 5 * 60 * 1000;

/// Milliseconds since the epoch.
pub(crate) fn epoch_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl App {
    /// `PUT /neutrino/v1/sfc-status` (admin only): see the module documentation. Returns
    /// `{"updated": port pairs whose health changed, "chains": counter reports recorded}`.
    pub async fn report_sfc_status(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.report_sfc_status_at(ctx, body, epoch_ms()).await
    }

    /// [`App::report_sfc_status`] received at `at` (milliseconds since the epoch).
    pub async fn report_sfc_status_at(
        &self,
        ctx: &Context,
        body: Value,
        at: i64,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "update_sfc_status", &Default::default())?;
        let report = sfc_status::parse_report(&body)?;
        ctx.check_host(&report.host)?;
        let mut tx = self.write().await?;
        let updated = self.apply_health(&mut tx, &report).await?;
        let chains = record_counters(&mut tx, &report, at).await?;
        tx.commit().await.map_err(db)?;
        Ok(json!({"updated": updated, "chains": chains}))
    }

    /// Writes the reported health of the pairs one of whose ports is bound to the reporting
    /// host, where it differs from the stored one; the number of pairs written.
    async fn apply_health(&self, tx: &mut Tx, report: &StatusReport) -> ApiResult<usize> {
        if report.port_pairs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = report.port_pairs.iter().map(|p| p.id.clone()).collect();
        let pairs = by_id(tx, "port_pair", &ids).await?;
        let port_ids: Vec<String> = pairs
            .values()
            .flat_map(|pp| [text(&pp.body, "ingress"), text(&pp.body, "egress")])
            .collect();
        let ports = by_id(tx, "port", &port_ids).await?;
        let bound_here = |port: &str| {
            ports
                .get(port)
                .is_some_and(|p| p.body["binding:host_id"].as_str() == Some(&report.host))
        };
        let same = |body: &Value, want: &sfc_status::PairHealth| {
            body[HEALTH].as_str().unwrap_or(sfc_status::HEALTH_UNKNOWN) == want.health
                && body[HEALTH_DETAIL].as_str().unwrap_or_default() == want.detail
        };
        let mut updated = 0;
        for want in &report.port_pairs {
            let Some(pp) = pairs.get(&want.id) else {
                continue;
            };
            if same(&pp.body, want)
                || !(bound_here(&text(&pp.body, "ingress"))
                    || bound_here(&text(&pp.body, "egress")))
            {
                continue;
            }
            // Lock and reread, so a concurrent rename is not overwritten (PostgreSQL).
            let mut pp = pp.clone();
            match relock(tx, &mut pp).await {
                Ok(()) => {}
                Err(e) if e.status == 404 => continue,
                Err(e) => return Err(e),
            }
            if same(&pp.body, want) {
                continue;
            }
            pp.body[HEALTH] = json!(want.health);
            pp.body[HEALTH_DETAIL] = json!(want.detail);
            tx.update("port_pair", &pp.id, &pp.body).await.map_err(db)?;
            updated += 1;
        }
        Ok(updated)
    }

    /// `GET /v2.0/sfc/port_chains/{id}/statistics`: the chain's counters summed over the
    /// hosts' latest reports of the last [`STALE_AFTER_MS`].
    pub async fn port_chain_statistics(&self, ctx: &Context, id: &str) -> ApiResult<Value> {
        let mut tx = self.read().await?;
        let chain = tx
            .get("port_chain", id)
            .await
            .map_err(db)?
            .filter(|c| sees(ctx, c))
            .ok_or_else(|| ApiError::not_found("port_chain", id))?;
        let rows = tx
            .chain_counters(id, epoch_ms() - STALE_AFTER_MS)
            .await
            .map_err(db)?;
        drop(tx);
        let mut newest: Option<i64> = None;
        let mut reports = Vec::with_capacity(rows.len());
        for (host, at, stored) in rows {
            match serde_json::from_str::<ChainCounters>(&stored) {
                Ok(counters) => {
                    newest = newest.max(Some(at));
                    reports.push((host, counters));
                }
                Err(err) => {
                    tracing::warn!(chain = id, %host, error = %err, "unreadable SFC counters")
                }
            }
        }
        let groups = super::ids(&chain.body, "port_pair_groups");
        let (hops, dropped) = sfc_status::sum_reports(&groups, &reports);
        Ok(json!({"statistics": {
            "port_chain_id": id,
            "hops": hops,
            "dropped": dropped,
            "updated_at": newest.map(iso),
        }}))
    }
}

/// Records the counter reports of existing chains; the number recorded.
async fn record_counters(tx: &mut Tx, report: &StatusReport, at: i64) -> ApiResult<usize> {
    if report.chains.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = report.chains.iter().map(|(id, _)| id.clone()).collect();
    let known = by_id(tx, "port_chain", &ids).await?;
    let mut recorded = 0;
    for (id, counters) in &report.chains {
        if !known.contains_key(id) {
            continue;
        }
        let stored = serde_json::to_string(counters).map_err(|_| ApiError::internal())?;
        tx.put_chain_counters(id, &report.host, at, &stored)
            .await
            .map_err(db)?;
        recorded += 1;
    }
    Ok(recorded)
}
