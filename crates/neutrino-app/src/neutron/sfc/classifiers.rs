//! Flow classifiers: the n-tuple (plus logical ports) a chain steers. A new classifier may
//! not fully overlap one the caller can see; candidates come from the source-prefix index.

use neutrino_store::Tx;
use neutrino_types::sfc::{normalize_classifier, Match};
use neutrino_types::{ApiError, ApiResult};
use serde_json::Value;

use super::{by_id, claim_port, fc_index, sees, Doc};
use crate::{db, App, Context};

impl App {
    pub(super) async fn create_classifier(
        &self,
        tx: &mut Tx,
        ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<()> {
        normalize_classifier(body)?;
        let id = super::text(&Value::Object(body.clone()), "id");
        let m = Match::of(&Value::Object(body.clone()));
        let ports: Vec<String> = [&m.logical_source, &m.logical_destination]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for port in &ports {
            if self.usable_port(tx, ctx, port).await?.is_none() {
                return Err(ApiError::new(
                    404,
                    "FlowClassifierPortNotFound",
                    format!("Flow Classifier Neutron Port {port} not found."),
                ));
            }
        }
        let scope = fc_index(&m.ethertype);
        let candidates: Vec<String> = tx
            .claims_in_ranges(&scope, &m.index_ranges())
            .await
            .map_err(db)?
            .into_iter()
            .map(|(_, owner)| owner)
            .collect();
        let found = by_id(tx, "flow_classifier", &candidates).await?;
        for other in candidates.iter().filter_map(|c| found.get(c)) {
            if sees(ctx, other) && m.full_overlap(&Match::of(&other.body)) {
                return Err(ApiError::bad(
                    "FlowClassifierInConflict",
                    format!(
                        "Flow Classifier conflicts with another Flow Classifier {}.",
                        other.id
                    ),
                ));
            }
        }
        tx.claim(&scope, &m.index_key(&id), &id).await.map_err(db)?;
        for port in &ports {
            claim_port(tx, port, &id).await?;
        }
        Ok(())
    }
}
