//! L3 metering, wire-compatible with Neutron's metering service plugin:
//! `/v2.0/metering/metering-labels` and `/v2.0/metering/metering-label-rules` (extensions
//! `metering` and `metering_source_and_destination_fields`). Admin-only by default policy,
//! as upstream; neither kind has standard attributes or tags, and rules are never updated.
//!
//! A rule is a child of its label (`parent_id`, not the collection's parent key: the policy
//! target of a rule has no parent attributes, and the create policy must run); creating one locks the label's row, so a
//! label being deleted and a rule being added to it serialise, and the overlap check reads
//! the label's rules under that lock. Deleting a label deletes its rules (and the counters
//! the agents reported for it).
//!
//! `GET .../metering-labels/{id}/statistics` (Neutrino extension) answers the traffic the
//! agents counted ([`super::metering_counters`]).

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::metering::{self as spec, check_rule, overlap_error, overlaps};
use neutrino_types::{ApiError, ApiResult};
use serde_json::Value;

use super::kind::{FamilyKind, Kind};
use super::{lock_existing, s, Collection, Doc, View};
use crate::{db, App, Context};

/// `/v2.0/metering/metering-labels`.
pub(crate) static LABELS: Collection = Collection::family(
    "metering/metering-labels",
    &MeteringKind::new("metering_label", spec::METERING_LABEL),
)
.immutable();

/// `/v2.0/metering/metering-label-rules`.
pub(crate) static RULES: Collection = Collection::family(
    "metering/metering-label-rules",
    &MeteringKind::new("metering_label_rule", spec::METERING_LABEL_RULE),
)
.immutable();

/// Marks the metering kinds.
struct Metering;

/// A metering label or rule (`resource` tells them apart).
type MeteringKind = FamilyKind<Metering>;

/// The rules of `label`.
pub(crate) async fn label_rules(tx: &mut Tx, label: &str) -> ApiResult<Vec<Record>> {
    let sel = Selector {
        parent_ids: Some(vec![label.to_string()]),
        ..Default::default()
    };
    tx.list("metering_label_rule", &sel).await.map_err(db)
}

#[async_trait]
impl Kind for MeteringKind {
    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        if self.resource == "metering_label_rule" {
            check_rule(body)?;
        }
        Ok(())
    }

    async fn create(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        if self.resource == "metering_label" {
            return Ok(None);
        }
        let label = s(&Value::Object(body.clone()), "metering_label_id").to_string();
        lock_existing(tx, "metering_label", &label, || {
            ApiError::not_found("metering_label", &label)
        })
        .await?;
        let new = Value::Object(body.clone());
        for rule in label_rules(tx, &label).await? {
            if overlaps(&new, &rule.body) {
                return Err(overlap_error(&new));
            }
        }
        Ok(Some(label))
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        if self.resource == "metering_label" {
            tx.lock("metering_label", &rec.id).await.map_err(db)?;
            for rule in label_rules(tx, &rec.id).await? {
                tx.delete("metering_label_rule", &rule.id)
                    .await
                    .map_err(db)?;
            }
            tx.delete_chain_counters(&super::metering_counters::key(&rec.id))
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn get_action(
        &self,
        app: &App,
        ctx: &Context,
        id: &str,
        action: &str,
    ) -> ApiResult<Value> {
        if self.resource != "metering_label" || action != "statistics" {
            return Err(ApiError::no_such_url());
        }
        app.label_statistics(ctx, &LABELS, id).await
    }
}
