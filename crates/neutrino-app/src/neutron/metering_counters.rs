//! The traffic the agents count for metering labels (Neutrino extension): each host reports,
//! per label, the packets and bytes of each rule's counter in its router namespaces
//! (`PUT /neutrino/v1/metering-counters`); the latest report of each host is kept outside
//! the feed, in the counter table SFC chains use, under the key `metering_label:<id>`.
//! `GET /v2.0/metering/metering-labels/{id}/statistics` sums the reports of the last five
//! minutes. The kernel counters restart when a router's metering table is replaced (a rule
//! of its labels changed, or the router moved), so the sums are counts since then.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use neutrino_types::{ApiError, ApiResult};

use super::sfc::status::{epoch_ms, iso, STALE_AFTER_MS};
use super::Collection;
use crate::{db, App, Context};

/// The counter-table key of a label's reports.
pub(crate) fn key(label: &str) -> String {
    format!("metering_label:{label}")
}

/// One rule's counter as a host reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RuleCount {
    /// The metering label rule.
    pub id: String,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (IP headers included).
    pub bytes: u64,
}

/// One label in a host's report.
#[derive(Clone, Debug, Deserialize)]
struct LabelCount {
    id: String,
    #[serde(default)]
    rules: Vec<RuleCount>,
}

/// The body of `PUT /neutrino/v1/metering-counters`.
#[derive(Clone, Debug, Deserialize)]
struct Report {
    host: String,
    #[serde(default)]
    labels: Vec<LabelCount>,
}

/// Sums the hosts' reports of one label: `(rules by id, packets, bytes)`.
pub fn sum(reports: &[Vec<RuleCount>]) -> (BTreeMap<String, (u64, u64)>, u64, u64) {
    let mut rules: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut packets, mut bytes) = (0u64, 0u64);
    for report in reports {
        for r in report {
            let e = rules.entry(r.id.clone()).or_default();
            e.0 = e.0.saturating_add(r.packets);
            e.1 = e.1.saturating_add(r.bytes);
            packets = packets.saturating_add(r.packets);
            bytes = bytes.saturating_add(r.bytes);
        }
    }
    (rules, packets, bytes)
}

impl App {
    /// `PUT /neutrino/v1/metering-counters` (agents): records the report of every existing
    /// label in it; returns `{"labels": the number recorded}`.
    pub async fn report_metering_counters(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.report_metering_counters_at(ctx, body, epoch_ms())
            .await
    }

    /// [`App::report_metering_counters`] received at `at` (milliseconds since the epoch).
    pub async fn report_metering_counters_at(
        &self,
        ctx: &Context,
        body: Value,
        at: i64,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "report_metering_counters", &Default::default())?;
        let report: Report = serde_json::from_value(body)
            .map_err(|e| ApiError::bad_request(format!("Invalid metering counter report: {e}")))?;
        if report.host.is_empty() {
            return Err(ApiError::bad_request(
                "Invalid metering counter report: no host",
            ));
        }
        ctx.check_host(&report.host)?;
        let mut tx = self.write().await?;
        let mut recorded = 0;
        for label in &report.labels {
            if tx
                .get("metering_label", &label.id)
                .await
                .map_err(db)?
                .is_none()
            {
                continue;
            }
            let stored = serde_json::to_string(&label.rules).map_err(|_| ApiError::internal())?;
            tx.put_chain_counters(&key(&label.id), &report.host, at, &stored)
                .await
                .map_err(db)?;
            recorded += 1;
        }
        tx.commit().await.map_err(db)?;
        Ok(json!({ "labels": recorded }))
    }

    /// `GET /v2.0/metering/metering-labels/{id}/statistics`: the label's packets and bytes
    /// summed over the hosts' latest reports, with each rule's share.
    pub(crate) async fn label_statistics(
        &self,
        ctx: &Context,
        coll: &Collection,
        id: &str,
    ) -> ApiResult<Value> {
        // Visible and readable as the label itself.
        self.show(ctx, coll, id, &[]).await?;
        let mut tx = self.read().await?;
        let rows = tx
            .chain_counters(&key(id), epoch_ms() - STALE_AFTER_MS)
            .await
            .map_err(db)?;
        drop(tx);
        let mut newest: Option<i64> = None;
        let mut reports = Vec::with_capacity(rows.len());
        let mut hosts = Vec::with_capacity(rows.len());
        for (host, at, stored) in rows {
            match serde_json::from_str::<Vec<RuleCount>>(&stored) {
                Ok(rules) => {
                    newest = newest.max(Some(at));
                    hosts.push(host);
                    reports.push(rules);
                }
                Err(err) => {
                    tracing::warn!(label = id, %host, error = %err, "unreadable metering counters")
                }
            }
        }
        let (rules, packets, bytes) = sum(&reports);
        let rules: Vec<Value> = rules
            .into_iter()
            .map(|(rule, (p, b))| json!({"metering_label_rule_id": rule, "packets": p, "bytes": b}))
            .collect();
        Ok(json!({"statistics": {
            "metering_label_id": id,
            "packets": packets,
            "bytes": bytes,
            "rules": rules,
            "hosts": hosts,
            "updated_at": newest.map(iso),
        }}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_rules_over_hosts() {
        let r = |id: &str, packets, bytes| RuleCount {
            id: id.into(),
            packets,
            bytes,
        };
        let (rules, p, b) = sum(&[vec![r("a", 1, 100), r("b", 2, 200)], vec![r("a", 3, 300)]]);
        assert_eq!((p, b), (6, 600));
        assert_eq!(rules["a"], (4, 400));
        assert_eq!(rules["b"], (2, 200));
    }
}
