//! What the agent tells the server about chains after each steering reconcile: the health
//! of the port pairs plugged here and, per chain, the packets and bytes each hop sent to
//! each instance (read from the named counters of the steering table).

use std::collections::BTreeMap;

use neutrino_sfc::{Compiled, Counted, Pair, SfcModel};
use serde_json::{json, Value};

use crate::kernel::LinkInfo;

/// The `PUT /neutrino/v1/sfc-status` body: every pair plugged here ([`pair_health`]) and
/// the counters of every chain steered here.
pub fn report(
    host: &str,
    model: &SfcModel,
    compiled: &Compiled,
    counters: &BTreeMap<String, (u64, u64)>,
    links: &BTreeMap<String, LinkInfo>,
    verdicts: &BTreeMap<String, (bool, String)>,
) -> Value {
    let pairs: Vec<Value> = model
        .functions
        .iter()
        .map(|p| pair_health(p, links, verdicts))
        .collect();
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
    json!({"host": host, "port_pairs": pairs, "chains": chains})
}

/// One pair's `{"id", "health", "detail"}`: `DOWN` when the prober found it dead
/// (`verdicts`) or, before the prober has a verdict, a port of it plugged here has no
/// carrier; else `UP`, the detail saying what the prober noted (no probe through yet) and
/// whether the agent serves its correlation. Whoever reports a pair (a reconcile, the
/// prober) reports it the same, so the stored health never flips between two wordings.
pub fn pair_health(
    p: &Pair,
    links: &BTreeMap<String, LinkInfo>,
    verdicts: &BTreeMap<String, (bool, String)>,
) -> Value {
    let verdict = verdicts.get(&p.id);
    if let Some((false, why)) = verdict {
        return json!({"id": p.id, "health": "DOWN", "detail": why});
    }
    let dead: Vec<String> = [("ingress", &p.ingress), ("egress", &p.egress)]
        .into_iter()
        .filter_map(|(role, port)| {
            let tap = port.local_tap()?;
            let up = verdict.is_some() || links.get(tap).is_some_and(|l| l.carrier);
            (!up).then(|| format!("{role} port {} ({tap}) has no carrier", port.id))
        })
        .collect();
    if !dead.is_empty() {
        let detail = format!("{}: the function's interface is down", dead.join("; "));
        return json!({"id": p.id, "health": "DOWN", "detail": detail});
    }
    let mut notes: Vec<String> = verdict
        .map(|(_, note)| note.clone())
        .filter(|note| !note.is_empty())
        .into_iter()
        .collect();
    if let Some(c) = &p.proxied {
        notes.push(format!(
            "correlation {c}: delivered as plain packets, the agent keeps the chain state \
             (SFC proxy)"
        ));
    }
    json!({"id": p.id, "health": "UP", "detail": notes.join("; ")})
}
