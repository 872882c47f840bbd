//! The scenarios, their fixtures and the bounded request loops.

mod extra;
mod sfc;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api::{Api, Reply};
use crate::{BenchError, Scenario, ScenarioResult};

pub(crate) use extra::{POOL_CAPACITY, ROUTER_SUBNETS_MAX};

/// Run parameters shared by all scenarios.
pub(crate) struct Ctx {
    pub api: Api,
    /// N of the brief: ports per create scenario / ports listed.
    pub ports: usize,
    /// C: concurrent clients for the concurrent scenarios and for fixtures.
    pub concurrency: usize,
    /// Repetitions of the list scenarios.
    pub list_repeats: usize,
    /// Prefix of every object name, unique per run.
    pub name_prefix: String,
    /// Subnets allocated from the pool before `pool-subnet-create` measures.
    pub pool_prefill: usize,
    /// Per-request timeout (`--timeout`): sizes the prefill bulk requests.
    pub timeout: Duration,
}

/// Objects created during a scenario group, deleted at the end of it.
#[derive(Default)]
struct Created {
    networks: Vec<String>,
    subnets: Vec<String>,
    ports: Vec<String>,
    routers: Vec<String>,
    subnetpools: Vec<String>,
    /// `(router id, subnet id)` interfaces that may still be attached.
    interfaces: Vec<(String, String)>,
    /// Project and `PUT /v2.0/quotas/{project}` body putting back the quotas
    /// the benchmark raised.
    quota_restore: Option<(String, Value)>,
    /// SFC objects by collection path (`sfc` scenario).
    sfc: Vec<(&'static str, Vec<String>)>,
    /// Like `quota_restore`, for the SFC quotas.
    sfc_quota_restore: Option<(String, Value)>,
}

/// Outcome of one operation.
struct Sample {
    latency: Duration,
    /// `Ok(created id)` or `Err(message)`.
    outcome: Result<Option<String>, String>,
}

impl Sample {
    fn ok(latency: Duration, id: Option<String>) -> Self {
        Sample {
            latency,
            outcome: Ok(id),
        }
    }

    fn failed(latency: Duration, message: String) -> Self {
        Sample {
            latency,
            outcome: Err(message),
        }
    }
}

/// Prints the first error of a scenario to stderr, once.
struct FirstError {
    label: String,
    printed: AtomicBool,
}

impl FirstError {
    fn new(label: &str) -> Arc<Self> {
        Arc::new(FirstError {
            label: label.to_string(),
            printed: AtomicBool::new(false),
        })
    }

    fn note(&self, message: &str) {
        if !self.printed.swap(true, Ordering::Relaxed) {
            eprintln!("neutrino-bench: {}: first error: {message}", self.label);
        }
    }
}

/// Samples of a bounded loop, in operation-index order.
struct Batch {
    samples: Vec<Sample>,
    seconds: f64,
    /// A worker that panicked; reported after the created ids are recorded.
    failure: Option<BenchError>,
}

impl Batch {
    fn summarize(&self, name: &str) -> ScenarioResult {
        let latencies: Vec<Duration> = self
            .samples
            .iter()
            .filter(|s| s.outcome.is_ok())
            .map(|s| s.latency)
            .collect();
        let errors = (self.samples.len() - latencies.len()) as u64;
        ScenarioResult::from_latencies(name, &latencies, errors, self.seconds)
    }

    /// Ids returned by the successful create operations.
    fn created_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.samples
            .iter()
            .filter_map(|s| s.outcome.as_ref().ok().cloned().flatten())
    }

    fn first_error(&self) -> Option<&str> {
        self.samples
            .iter()
            .find_map(|s| s.outcome.as_ref().err().map(String::as_str))
    }

    fn error_count(&self) -> usize {
        self.samples.iter().filter(|s| s.outcome.is_err()).count()
    }

    fn into_failure(self) -> Result<(), BenchError> {
        self.failure.map_or(Ok(()), Err)
    }
}

/// Runs operations `0..n` with `concurrency` tokio tasks; each task pulls the
/// next index from a shared atomic counter until `n` is reached, so the loop
/// always terminates after exactly `n` operations. `concurrency == 1` is a
/// plain sequential loop.
async fn run_ops<F, Fut>(n: usize, concurrency: usize, op: F) -> Batch
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Sample> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let workers = concurrency.clamp(1, n.max(1));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let op = Arc::clone(&op);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    done.push((i, op(i).await));
                }
                done
            })
        })
        .collect();
    let mut indexed = Vec::with_capacity(n);
    let mut failure = None;
    for handle in handles {
        match handle.await {
            Ok(done) => indexed.extend(done),
            Err(e) => {
                failure.get_or_insert(BenchError::Task(e.to_string()));
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    indexed.sort_by_key(|(i, _)| *i);
    Batch {
        samples: indexed.into_iter().map(|(_, s)| s).collect(),
        seconds,
        failure,
    }
}

/// POST `path` with `body`; success requires a 2xx answer carrying
/// `{key: {"id": ..}}`.
async fn create_one(api: &Api, errors: &FirstError, path: &str, key: &str, body: Value) -> Sample {
    match api.send(Method::POST, path, Some(&body)).await {
        Ok(reply) if reply.is_success() => match reply.created_id(key) {
            Some(id) => Sample::ok(reply.latency, Some(id)),
            None => {
                let message = format!(
                    "POST {path}: no {key}.id in the response: {}",
                    reply.describe()
                );
                errors.note(&message);
                Sample::failed(reply.latency, message)
            }
        },
        Ok(reply) => fail_reply(errors, "POST", path, &reply),
        Err(e) => fail_transport(errors, "POST", path, &e),
    }
}

/// DELETE `path`; with `missing_ok` a 404 counts as success (cleanup).
async fn delete_one(api: &Api, errors: &FirstError, path: &str, missing_ok: bool) -> Sample {
    match api.send(Method::DELETE, path, None).await {
        Ok(reply)
            if reply.is_success() || (missing_ok && reply.status == StatusCode::NOT_FOUND) =>
        {
            Sample::ok(reply.latency, None)
        }
        Ok(reply) => fail_reply(errors, "DELETE", path, &reply),
        Err(e) => fail_transport(errors, "DELETE", path, &e),
    }
}

fn fail_reply(errors: &FirstError, method: &str, path: &str, reply: &Reply) -> Sample {
    let message = format!("{method} {path}: {}", reply.describe());
    errors.note(&message);
    Sample::failed(reply.latency, message)
}

fn fail_transport(errors: &FirstError, method: &str, path: &str, error: &reqwest::Error) -> Sample {
    let message = format!("{method} {path}: {}", crate::error::chain(error));
    errors.note(&message);
    Sample::failed(Duration::ZERO, message)
}

/// A create loop: `n` POSTs to `path` with concurrency `c`, bodies from
/// `body_for(index)`.
async fn create_batch(
    api: &Api,
    label: &str,
    n: usize,
    c: usize,
    path: &'static str,
    key: &'static str,
    body_for: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Batch {
    let api = api.clone();
    let errors = FirstError::new(label);
    run_ops(n, c, move |i| {
        let api = api.clone();
        let errors = Arc::clone(&errors);
        let body = body_for(i);
        async move { create_one(&api, &errors, path, key, body).await }
    })
    .await
}

/// A delete loop over `ids` (DELETE `{collection}/{id}`).
async fn delete_batch(
    api: &Api,
    label: &str,
    collection: &'static str,
    ids: Vec<String>,
    c: usize,
    missing_ok: bool,
) -> (Batch, Vec<String>) {
    let api = api.clone();
    let errors = FirstError::new(label);
    let ids = Arc::new(ids);
    let op_ids = Arc::clone(&ids);
    let batch = run_ops(ids.len(), c, move |i| {
        let api = api.clone();
        let errors = Arc::clone(&errors);
        let path = format!("{collection}/{}", op_ids[i]);
        async move { delete_one(&api, &errors, &path, missing_ok).await }
    })
    .await;
    let ids = Arc::try_unwrap(ids).unwrap_or_else(|shared| (*shared).clone());
    (batch, ids)
}

/// Ids of `ids` whose delete failed (they are still to be cleaned up).
fn not_deleted(batch: &Batch, ids: Vec<String>) -> Vec<String> {
    ids.into_iter()
        .zip(&batch.samples)
        .filter(|(_, s)| s.outcome.is_err())
        .map(|(id, _)| id)
        .collect()
}

/// The `i`-th /28 of 10.0.0.0/8: 10.0.0.0/28, 10.0.0.16/28, ...
pub(crate) fn slash28_cidr(i: usize) -> Option<String> {
    if i >= 1 << 20 {
        return None;
    }
    let addr = (10u32 << 24) + (i as u32) * 16;
    let [a, b, c, d] = addr.to_be_bytes();
    Some(format!("{a}.{b}.{c}.{d}/28"))
}

/// A 10.0.0.0/prefix CIDR big enough for `ports` addresses plus headroom
/// (gateway, DHCP ports...): /20 unless more room is needed.
pub(crate) fn port_subnet_cidr(ports: usize) -> Option<String> {
    let needed = ports as u64 + 64;
    (8..=20u32)
        .rev()
        .find(|prefix| (1u64 << (32 - prefix)) - 2 >= needed)
        .map(|prefix| format!("10.0.0.0/{prefix}"))
}

/// Checks a port-list answer: every port we created is listed and the total
/// (ours plus any others, e.g. DHCP ports) is the same on every repetition.
fn check_list(
    body: &[u8],
    ours: &HashSet<String>,
    baseline: &OnceLock<usize>,
) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let ports = v
        .get("ports")
        .and_then(Value::as_array)
        .ok_or("the response has no \"ports\" array")?;
    let listed: HashSet<&str> = ports
        .iter()
        .filter_map(|p| p.get("id").and_then(Value::as_str))
        .collect();
    let ours_listed = ours
        .iter()
        .filter(|id| listed.contains(id.as_str()))
        .count();
    if ours_listed != ours.len() {
        return Err(format!(
            "only {ours_listed} of the {} ports created by the benchmark are listed",
            ours.len()
        ));
    }
    let expected = *baseline.get_or_init(|| ports.len());
    if ports.len() != expected {
        return Err(format!(
            "{} ports listed, but {expected} on the first repetition",
            ports.len()
        ));
    }
    Ok(())
}

/// `a, b, c` — at most 20 ids, then `and N more` (a failed cleanup of the
/// pool scenario may leave thousands).
fn id_list(ids: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = ids
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        text.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    text
}

fn announce(name: &str) {
    eprintln!("neutrino-bench: running {name}");
}

impl Ctx {
    /// Runs the selected scenarios in their canonical order. Every scenario
    /// group deletes what it created before the next one starts, also when it
    /// fails.
    pub async fn run_all(&self, selected: &[Scenario]) -> Result<Vec<ScenarioResult>, BenchError> {
        let has = |s: Scenario| selected.contains(&s);
        let mut out = Vec::new();

        let (create, delete) = (has(Scenario::NetworkCreate), has(Scenario::NetworkDelete));
        if create || delete {
            let mut created = Created::default();
            let result = self
                .network_group(&mut created, &mut out, create, delete)
                .await;
            self.cleanup(&mut created).await;
            result?;
        }

        let (create, delete) = (has(Scenario::SubnetCreate), has(Scenario::SubnetDelete));
        if create || delete {
            let mut created = Created::default();
            let result = self
                .subnet_group(&mut created, &mut out, create, delete)
                .await;
            self.cleanup(&mut created).await;
            result?;
        }

        let port_scenarios = [
            Scenario::PortCreateSeq,
            Scenario::PortCreateConcurrent,
            Scenario::PortList,
            Scenario::PortListFields,
            Scenario::PortDelete,
        ];
        if port_scenarios.iter().any(|s| has(*s)) {
            let mut created = Created::default();
            let result = self.port_group(&mut created, &mut out, &has).await;
            self.cleanup(&mut created).await;
            result?;
        }

        // Optional scenarios (not in the default set).
        if has(Scenario::PoolSubnetCreate) {
            let mut created = Created::default();
            let result = self.pool_group(&mut created, &mut out).await;
            self.cleanup(&mut created).await;
            result?;
        }
        if has(Scenario::RouterInterface) {
            let mut created = Created::default();
            let result = self.router_group(&mut created, &mut out).await;
            self.cleanup(&mut created).await;
            result?;
        }
        if has(Scenario::Sfc) {
            let mut created = Created::default();
            let result = self.sfc_group(&mut created, &mut out).await;
            self.cleanup(&mut created).await;
            result?;
        }
        Ok(out)
    }

    fn name(&self, kind: &str, i: usize) -> String {
        format!("{}-{kind}-{i}", self.name_prefix)
    }

    /// Creates `n` objects (unmeasured, concurrently) that a scenario needs;
    /// any failure aborts the scenario group.
    async fn fixture(
        &self,
        label: &str,
        n: usize,
        path: &'static str,
        key: &'static str,
        body_for: impl Fn(usize) -> Value + Send + Sync + 'static,
        into: &mut Vec<String>,
    ) -> Result<(), BenchError> {
        let batch = create_batch(&self.api, label, n, self.concurrency, path, key, body_for).await;
        into.extend(batch.created_ids());
        if let Some(first) = batch.first_error() {
            return Err(BenchError::Fixture {
                scenario: label.to_string(),
                message: format!(
                    "{} of {n} {key} creations failed; first: {first}",
                    batch.error_count()
                ),
            });
        }
        batch.into_failure()
    }

    async fn fixture_network(
        &self,
        label: &str,
        created: &mut Created,
    ) -> Result<String, BenchError> {
        let name = self.name(&format!("{label}-net"), 0);
        self.fixture(
            label,
            1,
            "/v2.0/networks",
            "network",
            move |_| json!({"network": {"name": name}}),
            &mut created.networks,
        )
        .await?;
        Ok(created.networks.last().cloned().unwrap_or_default())
    }

    async fn fixture_ports(
        &self,
        label: &str,
        network_id: &str,
        n: usize,
        created: &mut Created,
    ) -> Result<(), BenchError> {
        let network_id = network_id.to_string();
        self.fixture(
            label,
            n,
            "/v2.0/ports",
            "port",
            move |_| json!({"port": {"network_id": network_id}}),
            &mut created.ports,
        )
        .await
    }

    /// `network-create` / `network-delete`: N/4 networks, sequentially.
    async fn network_group(
        &self,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
        create: bool,
        delete: bool,
    ) -> Result<(), BenchError> {
        let n = (self.ports / 4).max(1);
        let prefix = self.name_prefix.clone();
        let body_for =
            move |i: usize| json!({"network": {"name": format!("{prefix}-network-{i}")}});
        if create {
            announce("network-create");
            let batch = create_batch(
                &self.api,
                "network-create",
                n,
                1,
                "/v2.0/networks",
                "network",
                body_for,
            )
            .await;
            created.networks.extend(batch.created_ids());
            out.push(batch.summarize("network-create"));
            batch.into_failure()?;
        } else {
            self.fixture(
                "network-delete",
                n,
                "/v2.0/networks",
                "network",
                body_for,
                &mut created.networks,
            )
            .await?;
        }
        if delete {
            announce("network-delete");
            let ids = std::mem::take(&mut created.networks);
            let (batch, ids) =
                delete_batch(&self.api, "network-delete", "/v2.0/networks", ids, 1, false).await;
            created.networks = not_deleted(&batch, ids);
            out.push(batch.summarize("network-delete"));
            batch.into_failure()?;
        }
        Ok(())
    }

    /// `subnet-create` / `subnet-delete`: N/10 /28 subnets on one network,
    /// sequentially.
    async fn subnet_group(
        &self,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
        create: bool,
        delete: bool,
    ) -> Result<(), BenchError> {
        let n = (self.ports / 10).max(1);
        if slash28_cidr(n - 1).is_none() {
            return Err(BenchError::InvalidArgs(format!(
                "{n} subnets do not fit as /28s in 10.0.0.0/8"
            )));
        }
        let label = if create {
            "subnet-create"
        } else {
            "subnet-delete"
        };
        let network_id = self.fixture_network(label, created).await?;
        let prefix = self.name_prefix.clone();
        let body_for = move |i: usize| {
            json!({"subnet": {
                "network_id": network_id,
                "ip_version": 4,
                "cidr": slash28_cidr(i).unwrap_or_default(),
                "name": format!("{prefix}-subnet-{i}"),
            }})
        };
        if create {
            announce("subnet-create");
            let batch = create_batch(
                &self.api,
                "subnet-create",
                n,
                1,
                "/v2.0/subnets",
                "subnet",
                body_for,
            )
            .await;
            created.subnets.extend(batch.created_ids());
            out.push(batch.summarize("subnet-create"));
            batch.into_failure()?;
        } else {
            self.fixture(
                "subnet-delete",
                n,
                "/v2.0/subnets",
                "subnet",
                body_for,
                &mut created.subnets,
            )
            .await?;
        }
        if delete {
            announce("subnet-delete");
            let ids = std::mem::take(&mut created.subnets);
            let (batch, ids) =
                delete_batch(&self.api, "subnet-delete", "/v2.0/subnets", ids, 1, false).await;
            created.subnets = not_deleted(&batch, ids);
            out.push(batch.summarize("subnet-delete"));
            batch.into_failure()?;
        }
        Ok(())
    }

    /// The port scenarios, sharing one network with a subnet big enough for
    /// all the ports they may create.
    async fn port_group(
        &self,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
        has: &dyn Fn(Scenario) -> bool,
    ) -> Result<(), BenchError> {
        let n = self.ports;
        let creators = [Scenario::PortCreateSeq, Scenario::PortCreateConcurrent]
            .iter()
            .filter(|s| has(**s))
            .count();
        let cidr = port_subnet_cidr(n * creators.max(1)).ok_or_else(|| {
            BenchError::InvalidArgs(format!("{n} ports do not fit in 10.0.0.0/8"))
        })?;
        let label = "port-scenarios";
        let network_id = self.fixture_network(label, created).await?;
        let subnet_name = self.name("port-subnet", 0);
        let net = network_id.clone();
        self.fixture(
            label,
            1,
            "/v2.0/subnets",
            "subnet",
            move |_| {
                json!({"subnet": {
                    "network_id": net,
                    "ip_version": 4,
                    "cidr": cidr,
                    "name": subnet_name,
                }})
            },
            &mut created.subnets,
        )
        .await?;

        for (scenario, name, c) in [
            (Scenario::PortCreateSeq, "port-create-seq", 1),
            (
                Scenario::PortCreateConcurrent,
                "port-create-concurrent",
                self.concurrency,
            ),
        ] {
            if !has(scenario) {
                continue;
            }
            announce(name);
            let net = network_id.clone();
            let batch = create_batch(
                &self.api,
                name,
                n,
                c,
                "/v2.0/ports",
                "port",
                move |_| json!({"port": {"network_id": net}}),
            )
            .await;
            created.ports.extend(batch.created_ids());
            out.push(batch.summarize(name));
            batch.into_failure()?;
        }

        let lists = [
            (Scenario::PortList, "port-list", ""),
            (
                Scenario::PortListFields,
                "port-list-fields",
                "&fields=id&fields=mac_address&fields=fixed_ips",
            ),
        ];
        if lists.iter().any(|(s, _, _)| has(*s)) {
            let missing = n.saturating_sub(created.ports.len());
            if missing > 0 {
                self.fixture_ports("port-list", &network_id, missing, created)
                    .await?;
            }
            for (scenario, name, extra) in lists {
                if has(scenario) {
                    announce(name);
                    let path = format!("/v2.0/ports?network_id={network_id}{extra}");
                    out.push(self.list_scenario(name, path, &created.ports).await?);
                }
            }
        }

        if has(Scenario::PortDelete) {
            if created.ports.is_empty() {
                self.fixture_ports("port-delete", &network_id, n, created)
                    .await?;
            }
            announce("port-delete");
            let ids = std::mem::take(&mut created.ports);
            let (batch, ids) = delete_batch(
                &self.api,
                "port-delete",
                "/v2.0/ports",
                ids,
                self.concurrency,
                false,
            )
            .await;
            created.ports = not_deleted(&batch, ids);
            out.push(batch.summarize("port-delete"));
            batch.into_failure()?;
        }
        Ok(())
    }

    /// GET `path` `list_repeats` times, sequentially, checking every answer.
    async fn list_scenario(
        &self,
        name: &str,
        path: String,
        ours: &[String],
    ) -> Result<ScenarioResult, BenchError> {
        let ours: Arc<HashSet<String>> = Arc::new(ours.iter().cloned().collect());
        let baseline = Arc::new(OnceLock::new());
        let errors = FirstError::new(name);
        let api = self.api.clone();
        let path = Arc::new(path);
        let op_ours = Arc::clone(&ours);
        let op_baseline = Arc::clone(&baseline);
        let batch = run_ops(self.list_repeats, 1, move |_| {
            let (api, errors, path) = (api.clone(), Arc::clone(&errors), Arc::clone(&path));
            let (ours, baseline) = (Arc::clone(&op_ours), Arc::clone(&op_baseline));
            async move {
                match api.send(Method::GET, &path, None).await {
                    Ok(reply) if reply.is_success() => {
                        match check_list(&reply.body, &ours, &baseline) {
                            Ok(()) => Sample::ok(reply.latency, None),
                            Err(problem) => {
                                let message = format!("GET {path}: {problem}");
                                errors.note(&message);
                                Sample::failed(reply.latency, message)
                            }
                        }
                    }
                    Ok(reply) => fail_reply(&errors, "GET", &path, &reply),
                    Err(e) => fail_transport(&errors, "GET", &path, &e),
                }
            }
        })
        .await;
        if let Some(total) = baseline.get() {
            eprintln!(
                "neutrino-bench: {name}: {total} ports listed ({} created by the benchmark, {} others)",
                ours.len(),
                total.saturating_sub(ours.len())
            );
        }
        let result = batch.summarize(name);
        batch.into_failure()?;
        Ok(result)
    }

    /// Deletes everything in `created` (router interfaces, ports, routers,
    /// subnets, networks, then subnet pools) with bounded concurrency; a 404
    /// counts as already deleted; then puts back the quotas the benchmark
    /// raised. Failures are reported on stderr only.
    async fn cleanup(&self, created: &mut Created) {
        self.cleanup_sfc(created).await;
        self.remove_interfaces(std::mem::take(&mut created.interfaces))
            .await;
        self.collect_pool_subnets(created).await;
        let groups = [
            ("port", "/v2.0/ports", std::mem::take(&mut created.ports)),
            (
                "router",
                "/v2.0/routers",
                std::mem::take(&mut created.routers),
            ),
            (
                "subnet",
                "/v2.0/subnets",
                std::mem::take(&mut created.subnets),
            ),
            (
                "network",
                "/v2.0/networks",
                std::mem::take(&mut created.networks),
            ),
            (
                "subnet pool",
                "/v2.0/subnetpools",
                std::mem::take(&mut created.subnetpools),
            ),
        ];
        for (kind, collection, ids) in groups {
            if ids.is_empty() {
                continue;
            }
            let label = format!("cleanup of {kind}s");
            let (batch, ids) =
                delete_batch(&self.api, &label, collection, ids, self.concurrency, true).await;
            let left = not_deleted(&batch, ids);
            if !left.is_empty() {
                eprintln!(
                    "neutrino-bench: warning: {} {kind}(s) could not be deleted: {}",
                    left.len(),
                    id_list(&left)
                );
            }
            if let Some(e) = batch.failure {
                eprintln!("neutrino-bench: warning: {label}: {e}");
            }
        }
        self.restore_quotas(created.quota_restore.take()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash28_cidrs_are_distinct_and_aligned() {
        assert_eq!(slash28_cidr(0).unwrap(), "10.0.0.0/28");
        assert_eq!(slash28_cidr(1).unwrap(), "10.0.0.16/28");
        assert_eq!(slash28_cidr(16).unwrap(), "10.0.1.0/28");
        assert_eq!(slash28_cidr((1 << 20) - 1).unwrap(), "10.255.255.240/28");
        assert!(slash28_cidr(1 << 20).is_none());
        let all: HashSet<String> = (0..1000).filter_map(slash28_cidr).collect();
        assert_eq!(all.len(), 1000);
    }

    #[test]
    fn id_lists_are_capped() {
        let ids: Vec<String> = (0..3).map(|i| i.to_string()).collect();
        assert_eq!(id_list(&ids), "0, 1, 2");
        let ids: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let text = id_list(&ids);
        assert!(text.starts_with("0, 1, "));
        assert!(text.ends_with("19 and 5 more"));
    }

    #[test]
    fn port_subnet_grows_only_when_needed() {
        assert_eq!(port_subnet_cidr(1000).unwrap(), "10.0.0.0/20");
        assert_eq!(port_subnet_cidr(2000).unwrap(), "10.0.0.0/20");
        assert_eq!(port_subnet_cidr(4030).unwrap(), "10.0.0.0/20");
        assert_eq!(port_subnet_cidr(4100).unwrap(), "10.0.0.0/19");
        assert_eq!(port_subnet_cidr(100_000).unwrap(), "10.0.0.0/15");
        assert!(port_subnet_cidr(1 << 24).is_none());
    }

    #[test]
    fn list_check_counts_ours_and_others_consistently() {
        let ours: HashSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let baseline = OnceLock::new();
        let body = br#"{"ports": [{"id": "a"}, {"id": "dhcp"}, {"id": "b"}]}"#;
        assert!(check_list(body, &ours, &baseline).is_ok());
        assert_eq!(baseline.get(), Some(&3));
        assert!(check_list(body, &ours, &baseline).is_ok());
        let fewer = br#"{"ports": [{"id": "a"}, {"id": "b"}]}"#;
        assert!(check_list(fewer, &ours, &baseline).is_err());
        let missing = br#"{"ports": [{"id": "a"}, {"id": "x"}, {"id": "y"}]}"#;
        assert!(check_list(missing, &ours, &baseline).is_err());
        assert!(check_list(b"{}", &ours, &baseline).is_err());
    }

    #[tokio::test]
    async fn run_ops_is_bounded_and_ordered() {
        let batch = run_ops(37, 8, |i| async move {
            if i % 10 == 3 {
                Sample::failed(Duration::ZERO, format!("op {i}"))
            } else {
                Sample::ok(Duration::from_millis(1), Some(i.to_string()))
            }
        })
        .await;
        assert_eq!(batch.samples.len(), 37);
        assert_eq!(batch.error_count(), 4);
        assert_eq!(batch.first_error(), Some("op 3"));
        let ids: Vec<String> = batch.created_ids().collect();
        assert_eq!(ids.len(), 33);
        assert_eq!(ids[0], "0");
        let r = batch.summarize("t");
        assert_eq!((r.ops, r.errors), (33, 4));

        let empty = run_ops(0, 8, |_| async { Sample::ok(Duration::ZERO, None) }).await;
        assert!(empty.samples.is_empty());
    }
}
