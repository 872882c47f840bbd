//! What the agent tells the server about chains after each steering reconcile: the health
//! of the port pairs plugged here and, per chain, the packets and bytes each hop sent to
//! each instance (read from the named counters of the steering table).

use std::collections::BTreeMap;

use neutrino_sfc::{Compiled, Counted, SfcModel};
use serde_json::{json, Value};

use crate::kernel::LinkInfo;

/// The `PUT /neutrino/v1/sfc-status` body. A pair is `DOWN` when the prober found it dead
/// (`verdicts`) or a port of it plugged here has no carrier, else `UP`.
pub fn report(
    host: &str,
    model: &SfcModel,
    compiled: &Compiled,
    counters: &BTreeMap<String, (u64, u64)>,
    links: &BTreeMap<String, LinkInfo>,
    verdicts: &BTreeMap<String, (bool, String)>,
) -> Value {
    let mut pairs = BTreeMap::new();
    for p in &model.functions {
        if let Some((false, why)) = verdicts.get(&p.id) {
            pairs.insert(
                p.id.clone(),
                json!({"id": p.id, "health": "DOWN", "detail": why}),
            );
            continue;
        }
        // The prober's verdict when it has one, else the carrier seen at the reconcile.
        let judged = verdicts.contains_key(&p.id);
        let dead: Vec<String> = [("ingress", &p.ingress), ("egress", &p.egress)]
            .into_iter()
            .filter_map(|(role, port)| {
                let tap = port.local_tap()?;
                let up = judged || links.get(tap).is_some_and(|l| l.carrier);
                (!up).then(|| format!("{role} port {} ({tap}) has no carrier", port.id))
            })
            .collect();
        let (health, detail) = if !dead.is_empty() {
            (
                "DOWN",
                format!("{}: the function's interface is down", dead.join("; ")),
            )
        } else if let Some(c) = &p.proxied {
            (
                "UP",
                format!(
                    "correlation {c}: delivered as plain packets, the agent keeps the chain \
                     state (SFC proxy)"
                ),
            )
        } else {
            ("UP", String::new())
        };
        pairs.insert(
            p.id.clone(),
            json!({"id": p.id, "health": health, "detail": detail}),
        );
    }
    let mut chains: BTreeMap<String, (Vec<Value>, u64, u64)> = BTreeMap::new();
    for (name, counted) in &compiled.counters {
        let Some((packets, bytes)) = counters.get(name).copied() else {
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
