//! What the agent tells the server about chains after each steering reconcile: the health
//! of the port pairs plugged here and, per chain, the packets and bytes each hop sent to
//! each instance (read from the counters of the steering table).

use std::collections::BTreeMap;

use neutrino_sfc::{Compiled, Counted, SfcModel, Table};
use serde_json::{json, Value};

/// The `PUT /neutrino/v1/sfc-status` body.
pub fn report(host: &str, model: &SfcModel, compiled: &Compiled, have: &Table) -> Value {
    let mut pairs = BTreeMap::new();
    for chain in &model.chains {
        for p in chain.groups.iter().flat_map(|g| &g.pairs) {
            let local = p.ingress.local_tap().is_some() || p.egress.local_tap().is_some();
            if !local {
                continue;
            }
            // Only what this host can see for itself: a pair the server marked DOWN is
            // not reported DOWN again from that mark.
            let detail = p.proxied.as_ref().map_or(String::new(), |c| {
                format!(
                    "correlation {c}: delivered as plain packets, the agent keeps the chain \
                     state (SFC proxy)"
                )
            });
            let health = "UP";
            pairs.insert(
                p.id.clone(),
                json!({"id": p.id, "health": health, "detail": detail}),
            );
        }
    }
    let mut chains: BTreeMap<String, (Vec<Value>, u64, u64)> = BTreeMap::new();
    for (name, counted) in &compiled.counters {
        let Some((packets, bytes)) = have
            .chains
            .get(name)
            .and_then(|c| c.rules.iter().find_map(|r| r.counter))
        else {
            continue;
        };
        match counted {
            Counted::Hop {
                chain,
                group,
                pair,
                direction,
            } => chains.entry(chain.clone()).or_default().0.push(json!({
                "port_pair_group_id": group,
                "port_pair_id": pair,
                "direction": direction.name(),
                "packets": packets,
                "bytes": bytes,
            })),
            Counted::Dropped { chain } => {
                let e = chains.entry(chain.clone()).or_default();
                e.1 += packets;
                e.2 += bytes;
            }
        }
    }
    let chains: Vec<Value> = chains
        .into_iter()
        .map(|(id, (hops, packets, bytes))| {
            json!({"id": id, "hops": hops, "dropped": {"packets": packets, "bytes": bytes}})
        })
        .collect();
    json!({"host": host, "port_pairs": pairs.into_values().collect::<Vec<_>>(), "chains": chains})
}
