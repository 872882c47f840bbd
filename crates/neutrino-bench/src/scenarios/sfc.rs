//! The optional `sfc` scenario: creates of every networking-sfc resource kind while N port
//! chains (each with its own classifier, port pair and group) already exist, so that the
//! conflict checks' cost as chains accumulate shows up in the figures.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::{announce, create_batch, delete_batch, id_list, not_deleted, Created, Ctx};
use crate::{BenchError, ScenarioResult};

/// SFC quotas made unlimited for the scenario (put back afterwards).
const SFC_QUOTAS: [&str; 5] = [
    "flow_classifier",
    "port_pair",
    "port_pair_group",
    "port_chain",
    "service_graph",
];

/// The `i`-th classifier source: 172.16.0.0/12 address `i` as a /32 (distinct, disjoint).
pub(crate) fn classifier_source(i: usize) -> Option<String> {
    if i >= 1 << 20 {
        return None;
    }
    let addr = (172u32 << 24) + (16u32 << 16) + i as u32;
    let [a, b, c, d] = addr.to_be_bytes();
    Some(format!("{a}.{b}.{c}.{d}/32"))
}

/// Number of service-function ports (all on one device) whose ordered (ingress, egress)
/// combinations give at least `pairs` distinct port pairs.
pub(crate) fn sf_ports_for(pairs: usize) -> usize {
    (1..).find(|k| k * k >= pairs).unwrap_or(1)
}

/// Measured creates per kind: N/10, at least 2 and even (graphs link them two by two).
pub(crate) fn measured(n: usize) -> usize {
    let m = (n / 10).max(2);
    m + m % 2
}

impl Ctx {
    /// `sfc`: N chains prefilled (unmeasured), then sequential creates of M = N/10 flow
    /// classifiers, port pairs, port pair groups and port chains, and M/2 service graphs.
    pub(super) async fn sfc_group(
        &self,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
    ) -> Result<(), BenchError> {
        let label = "sfc";
        let n = self.ports;
        let m = measured(n);
        if classifier_source(n + m).is_none() {
            return Err(BenchError::InvalidArgs(format!(
                "sfc: {} classifiers do not fit in 172.16.0.0/12",
                n + m
            )));
        }
        let net_body = json!({"network": {"name": self.name("sfc-net", 0)}});
        let (network, project) = self
            .create_owned(label, "/v2.0/networks", "network", &net_body)
            .await?;
        created.networks.push(network.clone());
        self.raise_quotas(label, project.as_deref(), created).await;
        if let Some(project) = project.as_deref() {
            self.raise_sfc_quotas(project, created).await;
        }
        let subnet_body =
            json!({"subnet": {"network_id": network, "ip_version": 4, "cidr": "10.0.0.0/16"}});
        let (subnet, _) = self
            .create_owned(label, "/v2.0/subnets", "subnet", &subnet_body)
            .await?;
        created.subnets.push(subnet);

        // Service function ports on one device, and one logical source port.
        let k = sf_ports_for(n + m);
        let device = self.name("sfc-sf", 0);
        let first = created.ports.len();
        let (net, dev) = (network.clone(), device.clone());
        self.fixture(
            label,
            k + 1,
            "/v2.0/ports",
            "port",
            move |_| json!({"port": {"network_id": net, "device_id": dev}}),
            &mut created.ports,
        )
        .await?;
        let ports: Arc<Vec<String>> = Arc::new(created.ports[first..].to_vec());
        let source_port = ports[k].clone();

        eprintln!("neutrino-bench: {label}: prefilling {n} port chains");
        let fcs = self
            .sfc_fixture(
                label,
                0,
                n,
                "flow_classifier",
                classifier(source_port.clone()),
                created,
            )
            .await?;
        let pps = self
            .sfc_fixture(
                label,
                0,
                n,
                "port_pair",
                pair(Arc::clone(&ports), k),
                created,
            )
            .await?;
        let ppgs = self
            .sfc_fixture(
                label,
                0,
                n,
                "port_pair_group",
                group(pps.clone(), 0),
                created,
            )
            .await?;
        self.sfc_fixture(label, 0, n, "port_chain", chain(ppgs, fcs, 0), created)
            .await?;

        let name = |kind: &str| format!("sfc-{kind}-create ({n} chains)");
        let fcs = self
            .sfc_measure(
                &name("flow-classifier"),
                n,
                m,
                "flow_classifier",
                classifier(source_port),
                created,
                out,
            )
            .await?;
        let pps = self
            .sfc_measure(
                &name("port-pair"),
                n,
                m,
                "port_pair",
                pair(ports, k),
                created,
                out,
            )
            .await?;
        let ppgs = self
            .sfc_measure(
                &name("port-pair-group"),
                n,
                m,
                "port_pair_group",
                group(pps, n),
                created,
                out,
            )
            .await?;
        let chains = self
            .sfc_measure(
                &name("port-chain"),
                n,
                m,
                "port_chain",
                chain(ppgs, fcs, n),
                created,
                out,
            )
            .await?;
        let graph = move |i: usize| {
            let (src, dst) = (&chains[2 * (i - n)], &chains[2 * (i - n) + 1]);
            json!({"service_graph": {"port_chains": {src: [dst]}}})
        };
        self.sfc_measure(
            &name("service-graph"),
            n,
            m / 2,
            "service_graph",
            graph,
            created,
            out,
        )
        .await?;
        Ok(())
    }

    /// Creates `count` objects of an SFC kind (unmeasured, C at a time), bodies for indexes
    /// `from..from + count`; returns their ids in index order.
    async fn sfc_fixture(
        &self,
        label: &str,
        from: usize,
        count: usize,
        key: &'static str,
        body_for: impl Fn(usize) -> Value + Send + Sync + 'static,
        created: &mut Created,
    ) -> Result<Vec<String>, BenchError> {
        let mut ids = Vec::new();
        let result = self
            .fixture(
                label,
                count,
                sfc_path(key),
                key,
                move |i| body_for(from + i),
                &mut ids,
            )
            .await;
        created.sfc.push((sfc_path(key), ids.clone()));
        result.map(|()| ids)
    }

    /// Measures `count` sequential creates of an SFC kind (bodies for indexes `from..`).
    #[allow(clippy::too_many_arguments)]
    async fn sfc_measure(
        &self,
        name: &str,
        from: usize,
        count: usize,
        key: &'static str,
        body_for: impl Fn(usize) -> Value + Send + Sync + 'static,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
    ) -> Result<Vec<String>, BenchError> {
        announce(name);
        let batch = create_batch(&self.api, name, count, 1, sfc_path(key), key, move |i| {
            body_for(from + i)
        })
        .await;
        let ids: Vec<String> = batch.created_ids().collect();
        created.sfc.push((sfc_path(key), ids.clone()));
        out.push(batch.summarize(name));
        if let Some(first) = batch.first_error() {
            return Err(BenchError::Fixture {
                scenario: name.to_string(),
                message: format!(
                    "{} of {count} creations failed; first: {first}",
                    batch.error_count()
                ),
            });
        }
        batch.into_failure().map(|()| ids)
    }

    /// Best effort: unlimited SFC quotas for `project`, previous limits recorded for the
    /// cleanup.
    async fn raise_sfc_quotas(&self, project: &str, created: &mut Created) {
        let path = format!("/v2.0/quotas/{project}");
        let previous: Option<Map<String, Value>> =
            match self.api.send(Method::GET, &path, None).await {
                Ok(reply) if reply.is_success() => serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("quota").and_then(Value::as_object).cloned())
                    .map(|q| {
                        SFC_QUOTAS
                            .iter()
                            .filter_map(|k| Some((k.to_string(), q.get(*k)?.clone())))
                            .collect()
                    }),
                _ => None,
            };
        let unlimited: Map<String, Value> = SFC_QUOTAS
            .iter()
            .map(|k| (k.to_string(), json!(-1)))
            .collect();
        let body = json!({ "quota": unlimited });
        match self.api.send(Method::PUT, &path, Some(&body)).await {
            Ok(reply) if reply.is_success() => {
                created.sfc_quota_restore =
                    previous.map(|p| (project.to_string(), json!({ "quota": p })));
            }
            Ok(reply) => eprintln!(
                "neutrino-bench: sfc: warning: could not raise the SFC quotas ({}); continuing",
                reply.describe()
            ),
            Err(e) => eprintln!(
                "neutrino-bench: sfc: warning: could not raise the SFC quotas ({}); continuing",
                crate::error::chain(&e)
            ),
        }
    }

    /// Deletes the SFC objects (graphs first, classifiers last) and puts the SFC quotas back.
    pub(super) async fn cleanup_sfc(&self, created: &mut Created) {
        const ORDER: [&str; 5] = [
            "/v2.0/sfc/service_graphs",
            "/v2.0/sfc/port_chains",
            "/v2.0/sfc/port_pair_groups",
            "/v2.0/sfc/port_pairs",
            "/v2.0/sfc/flow_classifiers",
        ];
        let groups = std::mem::take(&mut created.sfc);
        for collection in ORDER {
            let ids: Vec<String> = groups
                .iter()
                .filter(|(c, _)| *c == collection)
                .flat_map(|(_, ids)| ids.iter().cloned())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let label = format!("cleanup of {collection}");
            let (batch, ids) =
                delete_batch(&self.api, &label, collection, ids, self.concurrency, true).await;
            let left = not_deleted(&batch, ids);
            if !left.is_empty() {
                eprintln!(
                    "neutrino-bench: warning: {} of {collection} could not be deleted: {}",
                    left.len(),
                    id_list(&left)
                );
            }
        }
        self.restore_quotas(created.sfc_quota_restore.take()).await;
    }
}

fn sfc_path(key: &str) -> &'static str {
    match key {
        "flow_classifier" => "/v2.0/sfc/flow_classifiers",
        "port_pair" => "/v2.0/sfc/port_pairs",
        "port_pair_group" => "/v2.0/sfc/port_pair_groups",
        "port_chain" => "/v2.0/sfc/port_chains",
        _ => "/v2.0/sfc/service_graphs",
    }
}

fn classifier(source_port: String) -> impl Fn(usize) -> Value + Send + Sync + 'static {
    move |i| {
        json!({"flow_classifier": {"protocol": "tcp", "destination_port_range_min": 80,
               "destination_port_range_max": 80,
               "source_ip_prefix": classifier_source(i).unwrap_or_default(),
               "logical_source_port": source_port}})
    }
}

fn pair(ports: Arc<Vec<String>>, k: usize) -> impl Fn(usize) -> Value + Send + Sync + 'static {
    move |i| {
        json!({"port_pair": {"ingress": ports[i / k], "egress": ports[i % k],
               "service_function_parameters": {"correlation": "mpls"}}})
    }
}

/// Group `i` holds pair `i` (pairs listed from index `base`).
fn group(pairs: Vec<String>, base: usize) -> impl Fn(usize) -> Value + Send + Sync + 'static {
    move |i| json!({"port_pair_group": {"port_pairs": [pairs[i - base]]}})
}

/// Chain `i` has group `i` and classifier `i` (both listed from index `base`).
fn chain(
    groups: Vec<String>,
    classifiers: Vec<String>,
    base: usize,
) -> impl Fn(usize) -> Value + Send + Sync + 'static {
    move |i| {
        json!({"port_chain": {"port_pair_groups": [groups[i - base]],
               "flow_classifiers": [classifiers[i - base]]}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_sources() {
        assert_eq!(classifier_source(0).unwrap(), "172.16.0.0/32");
        assert_eq!(classifier_source(257).unwrap(), "172.16.1.1/32");
        assert!(classifier_source(1 << 20).is_none());
        assert_eq!(sf_ports_for(1100), 34);
        assert_eq!(sf_ports_for(1), 1);
        assert_eq!(measured(1000), 100);
        assert_eq!(measured(15), 2);
        assert_eq!(measured(30), 4);
    }
}
