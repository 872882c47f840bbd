//! The server's Prometheus metrics (`GET /metrics`, text exposition format): requests by
//! collection, method and status with latency histograms, store commits (transactions per
//! commit and commit time), the change feed's revision and watchers, and agents alive.
//! Served on the API listener to callers the `get_metrics` rule admits (admins), or without
//! authentication on a separate `--metrics-listen` address meant for a scraper.

use std::sync::Arc;
use std::time::Duration;

use neutrino_app::{App, Collection, CommitObserver};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    collection: String,
    method: String,
    status: u16,
}

/// Labels of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    collection: String,
    method: String,
}

/// Labels of the agent gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    state: &'static str,
}

/// Every metric of the server; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    commit_transactions: Histogram,
    commit_seconds: Histogram,
    feed_revision: Gauge,
    feed_watchers: Gauge,
    agents: Family<AgentLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("neutrino");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests answered, by collection, method and status",
            requests.clone(),
        );
        // 0.1 ms to about 13 s.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "api_request_duration_seconds",
            "Time to the response head, by collection and method",
            latency.clone(),
        );
        let commit_transactions = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        registry.register(
            "store_commit_transactions",
            "Write transactions per database commit (SQLite groups concurrent ones)",
            commit_transactions.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        registry.register(
            "store_commit_duration_seconds",
            "Time of one database commit",
            commit_seconds.clone(),
        );
        let feed_revision = Gauge::default();
        registry.register(
            "feed_revision",
            "Newest revision of the change feed",
            feed_revision.clone(),
        );
        let feed_watchers = Gauge::default();
        registry.register(
            "feed_watchers",
            "Open watches of the change feed (agents following it)",
            feed_watchers.clone(),
        );
        let agents = Family::<AgentLabels, Gauge>::default();
        registry.register(
            "agents",
            "Host agents by state (alive: a heartbeat within the agent down time)",
            agents.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                commit_transactions,
                commit_seconds,
                feed_revision,
                feed_watchers,
                agents,
            }),
        }
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, segments: &[String], method: &str, status: u16, took: Duration) {
        let collection = collection_label(segments);
        let method = method.to_string();
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                collection: collection.clone(),
                method: method.clone(),
                status,
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&RouteLabels { collection, method })
            .observe(took.as_secs_f64());
    }

    /// What a store commit reports into.
    pub fn commit_observer(&self) -> Arc<dyn CommitObserver> {
        Arc::new(self.clone())
    }

    /// The text exposition, with the gauges read from `app` now.
    pub async fn render(&self, app: &App) -> String {
        let inner = &self.inner;
        inner.feed_revision.set(*app.feed_subscribe().borrow());
        inner.feed_watchers.set(app.feed_watchers() as i64);
        match app.agent_liveness().await {
            Ok((alive, dead)) => {
                inner
                    .agents
                    .get_or_create(&AgentLabels { state: "alive" })
                    .set(alive as i64);
                inner
                    .agents
                    .get_or_create(&AgentLabels { state: "dead" })
                    .set(dead as i64);
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot read the agents"),
        }
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &inner.registry);
        out
    }
}

impl CommitObserver for Metrics {
    fn committed(&self, transactions: usize, took: Duration) {
        self.inner.commit_transactions.observe(transactions as f64);
        self.inner.commit_seconds.observe(took.as_secs_f64());
    }
}

/// The `collection` label of a request: a collection's path (`ports`, `sfc/port_chains`),
/// with the `/tags` and action sub-resources counted under it, or the API area for the
/// rest; never anything from the URL that is unbounded (ids, names).
fn collection_label(segments: &[String]) -> String {
    let seg = |i: usize| segments.get(i).map(String::as_str);
    match seg(0) {
        None => "versions".to_string(),
        Some("v3") => "identity".to_string(),
        Some("neutrino") => match seg(2) {
            Some(s @ ("agents" | "snapshot" | "changes" | "watch" | "ports")) => {
                format!("neutrino/{s}")
            }
            _ => "neutrino".to_string(),
        },
        Some("metrics") => "metrics".to_string(),
        Some("v2.0") => {
            let two = match (seg(1), seg(2)) {
                (Some(a), Some(b)) => Some(format!("{a}/{b}")),
                _ => None,
            };
            if let Some(path) = two.filter(|p| Collection::by_path(p).is_some()) {
                return path;
            }
            match seg(1) {
                Some(one) if Collection::by_path(one).is_some() => one.to_string(),
                Some(
                    one @ ("extensions"
                    | "quotas"
                    | "agents"
                    | "network-ip-availabilities"
                    | "auto-allocated-topology"
                    | "floatingip_pools"
                    | "availability_zones"),
                ) => one.to_string(),
                None => "versions".to_string(),
                Some(_) => "other".to_string(),
            }
        }
        Some(_) => "other".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(path: &str) -> String {
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        collection_label(&segments)
    }

    #[test]
    fn labels_name_collections_never_ids() {
        assert_eq!(label("/v2.0/ports"), "ports");
        assert_eq!(label("/v2.0/ports/3f0e/tags/x"), "ports");
        assert_eq!(label("/v2.0/routers/r1/add_router_interface"), "routers");
        assert_eq!(label("/v2.0/sfc/port_chains/c1"), "sfc/port_chains");
        assert_eq!(label("/v2.0/quotas/p1"), "quotas");
        assert_eq!(label("/v2.0/no-such-thing/x"), "other");
        assert_eq!(label("/v3/auth/tokens"), "identity");
        assert_eq!(label("/neutrino/v1/watch"), "neutrino/watch");
        assert_eq!(label("/"), "versions");
        assert_eq!(label("/v2.0"), "versions");
    }

    #[test]
    fn requests_and_commits_are_counted() {
        let m = Metrics::new();
        let segs = vec!["v2.0".to_string(), "networks".to_string()];
        m.request(&segs, "GET", 200, Duration::from_millis(3));
        m.request(&segs, "GET", 200, Duration::from_millis(5));
        m.committed(3, Duration::from_micros(400));
        let mut out = String::new();
        encode(&mut out, &m.inner.registry).unwrap();
        assert!(
            out.contains(
                r#"neutrino_api_requests_total{collection="networks",method="GET",status="200"} 2"#
            ),
            "{out}"
        );
        assert!(
            out.contains("neutrino_store_commit_transactions_sum 3.0"),
            "{out}"
        );
        assert!(
            out.contains("neutrino_store_commit_duration_seconds_count 1"),
            "{out}"
        );
    }
}
