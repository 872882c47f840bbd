//! The topology view (Neutrino extension, `GET /v2.0/neutrino/topology`): in one document,
//! everything the topology page draws that the caller may see — networks, subnets, routers,
//! ports, floating IPs, trunks, the SFC resources with their pairs' health and chains'
//! counters, and L2 gateway connections. Each part is the collection's ordinary list with the
//! caller's policy, so the page never shows more than the API would. A digest of the
//! document (its entity tag) lets the page wait for the next change it would see.

use std::time::Duration;

use neutrino_types::ApiResult;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::neutron::Collection;
use crate::{App, Context};

/// The parts of the document: its key and the collection (by resource name) listed for it.
const PARTS: &[(&str, &str)] = &[
    ("networks", "network"),
    ("subnets", "subnet"),
    ("ports", "port"),
    ("routers", "router"),
    ("floatingips", "floatingip"),
    ("trunks", "trunk"),
    ("flow_classifiers", "flow_classifier"),
    ("port_pairs", "port_pair"),
    ("port_pair_groups", "port_pair_group"),
    ("port_chains", "port_chain"),
    ("l2_gateway_connections", "l2_gateway_connection"),
];

/// After a commit wakes a waiting caller, how long to let a burst of commits settle before
/// the view is computed again.
const SETTLE: Duration = Duration::from_millis(150);

/// The longest a caller may wait for a change, in seconds.
pub const MAX_WAIT_SECS: f64 = 60.0;

/// One caller's view and its entity tag.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `{"topology": {...}}`.
    pub document: Value,
    /// A strong entity tag of the document (quoted, as in an `ETag` header).
    pub etag: String,
}

impl App {
    /// The caller's topology: each part the caller may not list is left empty.
    pub async fn topology(&self, ctx: &Context) -> ApiResult<Topology> {
        self.check_rule(ctx, "get_topology", &Default::default())?;
        let mut parts = Map::new();
        for (key, resource) in PARTS {
            let coll = Collection::of(resource)?;
            let items = match self.list(ctx, coll, &[]).await {
                Ok(list) => list.items.into_iter().map(Value::Object).collect(),
                // A part the policy does not let the caller list (the L2 gateway connections
                // are admin-only upstream) is simply empty.
                Err(err) if err.status == 403 || err.status == 404 => Vec::new(),
                Err(err) => return Err(err),
            };
            parts.insert(key.to_string(), Value::Array(items));
        }
        let chain_ids: Vec<String> = parts["port_chains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_string))
            .collect();
        let mut statistics = Vec::with_capacity(chain_ids.len());
        for id in chain_ids {
            if let Ok(stats) = self.port_chain_statistics(ctx, &id).await {
                statistics.push(stats["statistics"].clone());
            }
        }
        parts.insert("port_chain_statistics".into(), Value::Array(statistics));
        let document = serde_json::json!({ "topology": parts });
        let etag = entity_tag(&document);
        Ok(Topology { document, etag })
    }

    /// The caller's topology once it differs from the one tagged `seen`, or `None` when it
    /// did not change within `wait`. Each commit to the store wakes the wait; the view is
    /// computed again (after [`SETTLE`]) and compared, so changes the caller can't see don't
    /// end it. Counters are not commits: they are compared when the wait runs out.
    pub async fn topology_change(
        &self,
        ctx: &Context,
        seen: &str,
        wait: Duration,
    ) -> ApiResult<Option<Topology>> {
        let mut wake = self.feed_subscribe();
        wake.borrow_and_update();
        let deadline = Instant::now() + wait;
        loop {
            let now = self.topology(ctx).await?;
            if now.etag != seen {
                return Ok(Some(now));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, wake.changed()).await {
                Ok(Ok(())) => {
                    tokio::time::sleep_until((Instant::now() + SETTLE).min(deadline)).await;
                    wake.borrow_and_update();
                }
                // The feed is gone (shutting down): nothing more will change.
                Ok(Err(_)) => return Ok(None),
                // Time is up: one last comparison (counters may have moved).
                Err(_) => {
                    let now = self.topology(ctx).await?;
                    return Ok((now.etag != seen).then_some(now));
                }
            }
        }
    }
}

/// The quoted SHA-256 (first 16 bytes, hex) of the document's JSON text.
fn entity_tag(document: &Value) -> String {
    let digest = Sha256::digest(document.to_string().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_follows_the_content() {
        let a = serde_json::json!({"topology": {"networks": [{"id": "a"}]}});
        let b = serde_json::json!({"topology": {"networks": [{"id": "b"}]}});
        assert_eq!(entity_tag(&a), entity_tag(&a.clone()));
        assert_ne!(entity_tag(&a), entity_tag(&b));
        assert!(entity_tag(&a).starts_with('"') && entity_tag(&a).ends_with('"'));
        assert_eq!(entity_tag(&a).len(), 34);
    }
}
