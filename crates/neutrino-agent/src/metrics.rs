//! The agent's Prometheus metrics (`neutrino agent --metrics-listen`): reconciles and their
//! duration, operations applied by kind, errors, the feed revision the agent holds and the
//! one it acknowledged as applied (their difference is its lag), its ports by status, and,
//! for service function chains steered here, each pair's health and each hop's counters, and
//! for metering labels, the packets and bytes each rule counted in this host's routers.
//! The agent publishes a snapshot after every reconcile; a scrape encodes the registry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::Value;

/// What one reconcile leaves behind, as the agent counts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Reconciles so far.
    pub reconciles: u64,
    /// Operations applied so far, by kind (`kernel`, `firewall`, `dhcp`, `ra`, `sfc`, `bgp`).
    pub ops: Vec<(&'static str, u64)>,
    /// Refused commands so far.
    pub errors: u64,
    /// Connections cut because a rule that allowed them went away.
    pub connections_cut: u64,
    /// The feed revision of the state the agent holds.
    pub revision: i64,
    /// The revision it last acknowledged as applied (-1: none).
    pub applied_revision: i64,
    /// Ports bound here by status.
    pub ports: Vec<(String, i64)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabel {
    port_pair: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HopLabels {
    port_chain: String,
    port_pair_group: String,
    port_pair: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MeterLabels {
    metering_label: String,
    metering_label_rule: String,
}

/// The agent's metrics; cheap to clone.
#[derive(Clone)]
pub struct AgentMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: Counter,
    reconcile_seconds: Histogram,
    ops: Family<KindLabel, Counter>,
    errors: Counter,
    connections_cut: Counter,
    revision: Gauge,
    applied_revision: Gauge,
    lag: Gauge,
    ports: Family<StatusLabel, Gauge>,
    pair_up: Family<PairLabel, Gauge>,
    hop_packets: Family<HopLabels, Gauge>,
    hop_bytes: Family<HopLabels, Gauge>,
    meter_packets: Family<MeterLabels, Gauge>,
    meter_bytes: Family<MeterLabels, Gauge>,
    /// The last snapshot published: counters move by the difference.
    last: Mutex<Snapshot>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

impl AgentMetrics {
    /// Every metric at zero.
    pub fn new() -> AgentMetrics {
        let mut r = Registry::with_prefix("neutrino_agent");
        let reconciles = Counter::default();
        r.register("reconciles", "Reconciles run", reconciles.clone());
        // 1 ms to about 65 s.
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        r.register(
            "reconcile_duration_seconds",
            "Time of one reconcile: observe, plan, apply, report",
            reconcile_seconds.clone(),
        );
        let ops = Family::<KindLabel, Counter>::default();
        r.register("operations", "Operations applied, by kind", ops.clone());
        let errors = Counter::default();
        r.register("errors", "Commands the kernel refused", errors.clone());
        let connections_cut = Counter::default();
        r.register(
            "connections_cut",
            "Connections cut because a security group rule that allowed them went away",
            connections_cut.clone(),
        );
        let revision = Gauge::default();
        r.register(
            "revision",
            "Feed revision of the state the agent holds",
            revision.clone(),
        );
        let applied_revision = Gauge::default();
        r.register(
            "applied_revision",
            "Feed revision the agent last acknowledged as applied",
            applied_revision.clone(),
        );
        let lag = Gauge::default();
        r.register(
            "revision_lag",
            "Revisions held but not yet acknowledged as applied",
            lag.clone(),
        );
        let ports = Family::<StatusLabel, Gauge>::default();
        r.register(
            "ports",
            "Ports bound to this host, by status",
            ports.clone(),
        );
        let pair_up = Family::<PairLabel, Gauge>::default();
        r.register(
            "sfc_port_pair_up",
            "Service function port pairs plugged here: 1 healthy, 0 taken out of service",
            pair_up.clone(),
        );
        let hop_packets = Family::<HopLabels, Gauge>::default();
        r.register(
            "sfc_hop_packets",
            "Packets each hop of a chain steered here sent to each instance",
            hop_packets.clone(),
        );
        let hop_bytes = Family::<HopLabels, Gauge>::default();
        r.register("sfc_hop_bytes", "Bytes of the same", hop_bytes.clone());
        let meter_packets = Family::<MeterLabels, Gauge>::default();
        r.register(
            "metering_packets",
            "Packets each metering label rule counted in the routers of this host",
            meter_packets.clone(),
        );
        let meter_bytes = Family::<MeterLabels, Gauge>::default();
        r.register(
            "metering_bytes",
            "Bytes of the same (IP headers included)",
            meter_bytes.clone(),
        );
        AgentMetrics {
            inner: Arc::new(Inner {
                registry: r,
                reconciles,
                reconcile_seconds,
                ops,
                errors,
                connections_cut,
                revision,
                applied_revision,
                lag,
                ports,
                pair_up,
                hop_packets,
                hop_bytes,
                meter_packets,
                meter_bytes,
                last: Mutex::new(Snapshot::default()),
            }),
        }
    }

    /// Records one reconcile's duration.
    pub(crate) fn reconciled_in(&self, took: Duration) {
        self.inner.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Takes the agent's counters after a reconcile.
    pub(crate) fn publish(&self, now: Snapshot) {
        let inner = &self.inner;
        let mut last = inner.last.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .reconciles
            .inc_by(now.reconciles.saturating_sub(last.reconciles));
        inner.errors.inc_by(now.errors.saturating_sub(last.errors));
        inner
            .connections_cut
            .inc_by(now.connections_cut.saturating_sub(last.connections_cut));
        for (kind, total) in &now.ops {
            let before = last
                .ops
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n);
            inner
                .ops
                .get_or_create(&KindLabel {
                    kind: kind.to_string(),
                })
                .inc_by(total.saturating_sub(before));
        }
        inner.revision.set(now.revision);
        inner.applied_revision.set(now.applied_revision);
        inner
            .lag
            .set((now.revision - now.applied_revision.max(0)).max(0));
        inner.ports.clear();
        for (status, n) in &now.ports {
            inner
                .ports
                .get_or_create(&StatusLabel {
                    status: status.clone(),
                })
                .set(*n);
        }
        *last = now;
    }

    /// Takes the latest steering report (`sfc_report::report`): pair health, hop counters.
    pub(crate) fn publish_sfc(&self, report: &Value) {
        let inner = &self.inner;
        inner.pair_up.clear();
        for pair in report["port_pairs"].as_array().into_iter().flatten() {
            let Some(id) = pair["id"].as_str() else {
                continue;
            };
            let up = i64::from(pair["health"] != "DOWN");
            inner
                .pair_up
                .get_or_create(&PairLabel {
                    port_pair: id.to_string(),
                })
                .set(up);
        }
        inner.hop_packets.clear();
        inner.hop_bytes.clear();
        for chain in report["chains"].as_array().into_iter().flatten() {
            for hop in chain["hops"].as_array().into_iter().flatten() {
                let text = |k: &str| hop[k].as_str().unwrap_or_default().to_string();
                let labels = HopLabels {
                    port_chain: chain["id"].as_str().unwrap_or_default().to_string(),
                    port_pair_group: text("port_pair_group_id"),
                    port_pair: text("port_pair_id"),
                    direction: text("direction"),
                };
                let number =
                    |k: &str| i64::try_from(hop[k].as_u64().unwrap_or(0)).unwrap_or(i64::MAX);
                inner
                    .hop_packets
                    .get_or_create(&labels)
                    .set(number("packets"));
                inner.hop_bytes.get_or_create(&labels).set(number("bytes"));
            }
        }
    }

    /// Takes the latest metering report (`meter_report::report`): per label, each rule's
    /// packets and bytes.
    pub(crate) fn publish_meter(&self, report: &Value) {
        let inner = &self.inner;
        inner.meter_packets.clear();
        inner.meter_bytes.clear();
        for label in report["labels"].as_array().into_iter().flatten() {
            for rule in label["rules"].as_array().into_iter().flatten() {
                let labels = MeterLabels {
                    metering_label: label["id"].as_str().unwrap_or_default().to_string(),
                    metering_label_rule: rule["id"].as_str().unwrap_or_default().to_string(),
                };
                let number =
                    |k: &str| i64::try_from(rule[k].as_u64().unwrap_or(0)).unwrap_or(i64::MAX);
                inner
                    .meter_packets
                    .get_or_create(&labels)
                    .set(number("packets"));
                inner
                    .meter_bytes
                    .get_or_create(&labels)
                    .set(number("bytes"));
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_move_by_what_the_agent_did_since_the_last_snapshot() {
        let m = AgentMetrics::new();
        let snap = |reconciles, kernel, revision, applied| Snapshot {
            reconciles,
            ops: vec![("kernel", kernel), ("firewall", 2)],
            errors: 0,
            connections_cut: 0,
            revision,
            applied_revision: applied,
            ports: vec![("ACTIVE".into(), 3), ("DOWN".into(), 1)],
        };
        m.publish(snap(1, 10, 5, 5));
        m.publish(snap(3, 14, 9, 7));
        m.reconciled_in(Duration::from_millis(12));
        let text = m.render();
        for line in [
            "neutrino_agent_reconciles_total 3",
            r#"neutrino_agent_operations_total{kind="kernel"} 14"#,
            r#"neutrino_agent_operations_total{kind="firewall"} 2"#,
            "neutrino_agent_revision 9",
            "neutrino_agent_applied_revision 7",
            "neutrino_agent_revision_lag 2",
            r#"neutrino_agent_ports{status="ACTIVE"} 3"#,
            "neutrino_agent_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn chains_show_pair_health_and_hop_counters() {
        let m = AgentMetrics::new();
        m.publish_sfc(&json!({
            "port_pairs": [{"id": "pp1", "health": "UP"}, {"id": "pp2", "health": "DOWN"}],
            "chains": [{"id": "c1", "hops": [{"port_pair_group_id": "g1", "port_pair_id": "pp1",
                        "direction": "forward", "packets": 7, "bytes": 700}]}],
        }));
        let text = m.render();
        assert!(
            text.contains(r#"neutrino_agent_sfc_port_pair_up{port_pair="pp2"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"port_chain="c1""#) && text.contains("} 700"),
            "{text}"
        );
    }

    #[test]
    fn metering_rules_show_their_counters() {
        let m = AgentMetrics::new();
        m.publish_meter(&json!({"labels": [{"id": "l1", "rules": [
            {"id": "r1", "packets": 3, "bytes": 252}]}]}));
        let text = m.render();
        assert!(
            text.contains(
                r#"neutrino_agent_metering_bytes{metering_label="l1",metering_label_rule="r1"} 252"#
            ),
            "{text}"
        );
    }
}
