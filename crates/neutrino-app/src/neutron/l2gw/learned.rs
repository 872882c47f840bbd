//! MACs learned behind a software gateway's interfaces (Neutrino's agents): the gateway host
//! reports, per connected network, the MACs its bridge learned on the gateway interfaces
//! (`PUT /neutrino/v1/l2gw-macs`); one `l2gw_learned_macs` record per (host, network), written
//! only when the set changes, and carried by the feed so the network's other hosts add static
//! FDB entries toward the gateway host instead of flooding.

use std::collections::BTreeSet;

use neutrino_store::Record;
use neutrino_types::l2gw as spec;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use crate::{db, App, Context};

/// The storage kind of the reports.
pub(crate) const KIND: &str = "l2gw_learned_macs";

fn record_id(host: &str, network: &str) -> String {
    format!("l2gw-macs:{host}:{network}")
}

impl App {
    /// `PUT /neutrino/v1/l2gw-macs` with `{"host", "networks": {"<network>": ["<mac>", ...]}}`
    /// (admins or the `service` role): replaces what `host` learned on each named network
    /// (an empty list clears it). Returns `{"updated": records written or deleted}`.
    pub async fn report_l2gw_macs(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.check_rule(ctx, "report_l2gw_macs", &Default::default())?;
        let host = body["host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ApiError::bad_request("'host' must be a non-empty string"))?;
        ctx.check_host(host)?;
        let networks = body["networks"]
            .as_object()
            .ok_or_else(|| ApiError::bad_request("'networks' must be an object"))?;
        let mut reports = Vec::with_capacity(networks.len());
        for (network, macs) in networks {
            let macs = macs
                .as_array()
                .ok_or_else(|| ApiError::bad_request("each network's MACs must be a list"))?
                .iter()
                .map(|m| spec::mac(m.as_str().unwrap_or_default()))
                .collect::<ApiResult<BTreeSet<String>>>()?;
            reports.push((network.clone(), macs));
        }
        let mut tx = self.write().await?;
        let mut updated = 0;
        for (network, macs) in reports {
            let id = record_id(host, &network);
            let old = tx.get(KIND, &id).await.map_err(db)?;
            if macs.is_empty() {
                if old.is_some() {
                    tx.delete(KIND, &id).await.map_err(db)?;
                    updated += 1;
                }
                continue;
            }
            let doc = json!({"id": id, "host": host, "network_id": network, "macs": macs});
            match old {
                Some(old) if old.body == doc => {}
                Some(_) => {
                    tx.update(KIND, &id, &doc).await.map_err(db)?;
                    updated += 1;
                }
                None => {
                    // A network deleted meanwhile has nothing to learn on.
                    if tx.get("network", &network).await.map_err(db)?.is_none() {
                        continue;
                    }
                    let rec = Record {
                        kind: KIND.to_string(),
                        id,
                        project_id: ctx.project_id.clone(),
                        parent_id: Some(network),
                        body: doc,
                    };
                    tx.insert(&rec).await.map_err(db)?;
                    updated += 1;
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(json!({"updated": updated}))
    }
}
