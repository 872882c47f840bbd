//! What the agent tells the server about metering: per label, the packets and bytes of each
//! rule's named counter in the metering tables of this host's router namespaces (a rule
//! counted in several routers, a shared label's, is summed).

use std::collections::BTreeMap;

use neutrino_dataplane::meter::Counted;
use serde_json::{json, Value};

/// The `PUT /neutrino/v1/metering-counters` body: `{"host", "labels": [{"id", "rules":
/// [{"id", "packets", "bytes"}]}]}`, from what each namespace's counters count (`meters`)
/// and their values as read (`read`, by namespace then counter name).
pub fn report(
    host: &str,
    meters: &BTreeMap<String, BTreeMap<String, Counted>>,
    read: &BTreeMap<String, BTreeMap<String, (u64, u64)>>,
) -> Value {
    let mut labels: BTreeMap<&str, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
    for (netns, counters) in meters {
        let values = read.get(netns);
        for (name, counted) in counters {
            let (p, b) = values.and_then(|v| v.get(name)).copied().unwrap_or((0, 0));
            let e = labels
                .entry(&counted.label)
                .or_default()
                .entry(&counted.rule)
                .or_default();
            e.0 = e.0.saturating_add(p);
            e.1 = e.1.saturating_add(b);
        }
    }
    let labels: Vec<Value> = labels
        .into_iter()
        .map(|(id, rules)| {
            let rules: Vec<Value> = rules
                .into_iter()
                .map(|(rule, (p, b))| json!({"id": rule, "packets": p, "bytes": b}))
                .collect();
            json!({"id": id, "rules": rules})
        })
        .collect();
    json!({"host": host, "labels": labels})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_rule_is_summed_over_routers() {
        let counted = |l: &str, r: &str| Counted {
            label: l.into(),
            rule: r.into(),
        };
        let meters = BTreeMap::from([
            (
                "qrouter-a".to_string(),
                BTreeMap::from([("ra".to_string(), counted("l1", "ra"))]),
            ),
            (
                "qrouter-b".to_string(),
                BTreeMap::from([
                    ("ra".to_string(), counted("l1", "ra")),
                    ("rb".to_string(), counted("l2", "rb")),
                ]),
            ),
        ]);
        let read = BTreeMap::from([
            (
                "qrouter-a".to_string(),
                BTreeMap::from([("ra".to_string(), (1, 100))]),
            ),
            (
                "qrouter-b".to_string(),
                BTreeMap::from([("ra".to_string(), (2, 200))]),
            ),
        ]);
        assert_eq!(
            report("h", &meters, &read),
            json!({"host": "h", "labels": [
                {"id": "l1", "rules": [{"id": "ra", "packets": 3, "bytes": 300}]},
                {"id": "l2", "rules": [{"id": "rb", "packets": 0, "bytes": 0}]}]})
        );
    }
}
