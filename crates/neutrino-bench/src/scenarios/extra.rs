//! The optional scenarios, run only when named in `--scenarios`:
//! `pool-subnet-create` (subnet allocation from a subnet pool that already
//! has many allocations) and `router-interface` (attaching and detaching
//! many subnets to one router).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{
    announce, create_batch, fail_reply, fail_transport, id_list, run_ops, Batch, Created, Ctx,
    FirstError, Sample,
};
use crate::api::Api;
use crate::{BenchError, ScenarioResult};

/// The only prefix of the benchmark subnet pool.
const POOL_PREFIX: &str = "10.128.0.0/9";
/// Prefix length of every subnet allocated from the pool.
const POOL_SUBNET_PREFIXLEN: u32 = 28;
/// Number of /28s in the pool's /9: what prefill plus measured creates may
/// allocate at most.
pub(crate) const POOL_CAPACITY: usize = 1 << (POOL_SUBNET_PREFIXLEN - 9);
/// Most subnets per bulk request of the pool prefill.
const PREFILL_BULK: usize = 500;
/// Subnets in the first bulk request of the prefill, before the server's
/// rate is known.
const FIRST_BULK: usize = 50;
/// Interval between progress lines of the prefill.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Number of /28s in 10.200.0.0/16: most subnets `router-interface` can use.
pub(crate) const ROUTER_SUBNETS_MAX: usize = 1 << (28 - 16);
/// The quotas raised (to unlimited) for the optional scenarios.
const RAISED_QUOTAS: [&str; 3] = ["subnet", "network", "port"];

/// The `i`-th /28 of 10.200.0.0/16 (10.200.0.0/28, 10.200.0.16/28, ...,
/// 10.200.255.240/28): distinct, non-overlapping subnets that can all be
/// attached to one router.
pub(crate) fn router_subnet_cidr(i: usize) -> Option<String> {
    if i >= ROUTER_SUBNETS_MAX {
        return None;
    }
    let addr = (10u32 << 24) + (200u32 << 16) + (i as u32) * 16;
    let [a, b, c, d] = addr.to_be_bytes();
    Some(format!("{a}.{b}.{c}.{d}/28"))
}

/// The attributes of a /28 allocated from `pool_id` on `network_id` (without
/// the `{"subnet": ..}` wrapper, as items of a bulk request).
fn pool_subnet(network_id: &str, pool_id: &str, name: &str) -> Value {
    json!({
        "network_id": network_id,
        "ip_version": 4,
        "subnetpool_id": pool_id,
        "prefixlen": POOL_SUBNET_PREFIXLEN,
        "name": name,
    })
}

/// Size of the next prefill bulk request, so that it should take about
/// `target` at the rate of the previous one (`items` subnets in `elapsed`):
/// allocation from a pool may get slower as the pool fills, and a request
/// must finish well within the per-request timeout. Between 1 and
/// [`PREFILL_BULK`].
fn next_bulk_size(items: usize, elapsed: Duration, target: Duration) -> usize {
    if items == 0 || elapsed.is_zero() {
        return PREFILL_BULK;
    }
    let per_item = elapsed.as_secs_f64() / items as f64;
    let fitting = (target.as_secs_f64() / per_item).floor();
    (fitting.min(PREFILL_BULK as f64) as usize).max(1)
}

/// The ids of a bulk create answer such as `{"subnets": [{"id": ..}, ..]}`.
fn bulk_created_ids(body: &[u8], plural: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get(plural)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("id").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// From a `GET /v2.0/quotas/{project}` answer, the `PUT` body that puts back
/// the limits the benchmark is about to make unlimited; `None` when they all
/// are unlimited already (nothing to raise, nothing to restore).
fn quota_restore_body(current: &Value) -> Option<Value> {
    let quota = current.get("quota")?;
    let previous: Map<String, Value> = RAISED_QUOTAS
        .iter()
        .filter_map(|name| {
            let limit = quota.get(*name)?.as_i64()?;
            (limit >= 0).then(|| (name.to_string(), json!(limit)))
        })
        .collect();
    (!previous.is_empty()).then(|| json!({ "quota": previous }))
}

/// PUT `path` with `body`; with `missing_ok` a 404 counts as success.
async fn put_one(
    api: &Api,
    errors: &FirstError,
    path: &str,
    body: &Value,
    missing_ok: bool,
) -> Sample {
    match api.send(Method::PUT, path, Some(body)).await {
        Ok(reply)
            if reply.is_success() || (missing_ok && reply.status == StatusCode::NOT_FOUND) =>
        {
            Sample::ok(reply.latency, None)
        }
        Ok(reply) => fail_reply(errors, "PUT", path, &reply),
        Err(e) => fail_transport(errors, "PUT", path, &e),
    }
}

/// `PUT /v2.0/routers/{router}/{action}` with `{"subnet_id": ..}` for every
/// `(router, subnet)` pair, by `c` clients.
async fn interface_batch(
    api: &Api,
    label: &str,
    action: &'static str,
    pairs: Arc<Vec<(String, String)>>,
    c: usize,
    missing_ok: bool,
) -> Batch {
    let api = api.clone();
    let errors = FirstError::new(label);
    let n = pairs.len();
    run_ops(n, c, move |i| {
        let api = api.clone();
        let errors = Arc::clone(&errors);
        let (router, subnet) = &pairs[i];
        let path = format!("/v2.0/routers/{router}/{action}");
        let body = json!({ "subnet_id": subnet });
        async move { put_one(&api, &errors, &path, &body, missing_ok).await }
    })
    .await
}

/// The items of `items` whose operation in `batch` succeeded (empty when a
/// worker failed: the samples may then not line up with the items).
fn succeeded<'a, T>(batch: &Batch, items: &'a [T]) -> Vec<&'a T> {
    if batch.failure.is_some() {
        return Vec::new();
    }
    items
        .iter()
        .zip(&batch.samples)
        .filter(|(_, s)| s.outcome.is_ok())
        .map(|(item, _)| item)
        .collect()
}

impl Ctx {
    /// `pool-subnet-create`: a subnet pool (10.128.0.0/9, /28s) and one
    /// network; `pool_prefill` subnets allocated from it in bulk, unmeasured;
    /// then N/4 more, sequentially, measured.
    pub(super) async fn pool_group(
        &self,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
    ) -> Result<(), BenchError> {
        let label = "pool-subnet-create";
        let prefill = self.pool_prefill;
        let measured = (self.ports / 4).max(1);
        let pool_body = json!({"subnetpool": {
            "name": self.name("subnetpool", 0),
            "prefixes": [POOL_PREFIX],
            "default_prefixlen": POOL_SUBNET_PREFIXLEN,
            "min_prefixlen": 8,
            "max_prefixlen": 30,
        }});
        let (pool_id, project) = self
            .create_owned(label, "/v2.0/subnetpools", "subnetpool", &pool_body)
            .await?;
        created.subnetpools.push(pool_id.clone());
        self.raise_quotas(label, project.as_deref(), created).await;
        let network_id = self.fixture_network(label, created).await?;
        self.prefill_pool(label, &network_id, &pool_id, prefill, created)
            .await?;

        let name = format!("pool-subnet-create (prefill {prefill})");
        announce(&name);
        let prefix = self.name_prefix.clone();
        let batch = create_batch(
            &self.api,
            label,
            measured,
            1,
            "/v2.0/subnets",
            "subnet",
            move |i| {
                let name = format!("{prefix}-pool-subnet-{i}");
                json!({ "subnet": pool_subnet(&network_id, &pool_id, &name) })
            },
        )
        .await;
        created.subnets.extend(batch.created_ids());
        out.push(batch.summarize(&name));
        batch.into_failure()
    }

    /// Allocates `n` /28s from the pool on `network_id`: bulk requests of up
    /// to [`PREFILL_BULK`] subnets, sequentially, the first of
    /// [`FIRST_BULK`], the next ones sized to take about a quarter of the
    /// request timeout (see [`next_bulk_size`]); after the
    /// first failed bulk request, the remaining subnets are created one by
    /// one (with concurrency C). Any failure of those aborts the scenario.
    async fn prefill_pool(
        &self,
        label: &str,
        network_id: &str,
        pool_id: &str,
        n: usize,
        created: &mut Created,
    ) -> Result<(), BenchError> {
        if n == 0 {
            return Ok(());
        }
        eprintln!(
            "neutrino-bench: {label}: prefilling the pool with {n} subnets \
             (bulk requests of up to {PREFILL_BULK})"
        );
        let start = Instant::now();
        let mut last_progress = start;
        let target = self.timeout / 4;
        let mut bulk_size = FIRST_BULK;
        let mut done = 0;
        while done < n {
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                eprintln!(
                    "neutrino-bench: {label}: prefilled {done} of {n} subnets ({:.0} s, \
                     bulk requests of {bulk_size})",
                    start.elapsed().as_secs_f64()
                );
            }
            let chunk = bulk_size.min(n - done);
            let items: Vec<Value> = (done..done + chunk)
                .map(|i| pool_subnet(network_id, pool_id, &self.name("pool-prefill", i)))
                .collect();
            let body = json!({ "subnets": items });
            let problem = match self
                .api
                .send(Method::POST, "/v2.0/subnets", Some(&body))
                .await
            {
                Ok(reply) if reply.is_success() => {
                    let ids = bulk_created_ids(&reply.body, "subnets");
                    let got = ids.len();
                    created.subnets.extend(ids);
                    if got >= chunk {
                        done += chunk;
                        bulk_size = next_bulk_size(chunk, reply.latency, target);
                        continue;
                    }
                    done += got;
                    format!(
                        "{got} subnet ids in the answer to a bulk request of {chunk}: {}",
                        reply.describe()
                    )
                }
                Ok(reply) => reply.describe(),
                Err(e) => format!(
                    "{} (the server may still create these subnets: the cleanup \
                     deletes every subnet of the pool)",
                    crate::error::chain(&e)
                ),
            };
            eprintln!(
                "neutrino-bench: {label}: a bulk request of {chunk} subnets failed, creating \
                 the remaining {} prefill subnets one by one: POST /v2.0/subnets: {problem}",
                n - done
            );
            break;
        }
        if done < n {
            let (network_id, pool_id) = (network_id.to_string(), pool_id.to_string());
            let prefix = self.name_prefix.clone();
            let offset = done;
            self.fixture(
                label,
                n - done,
                "/v2.0/subnets",
                "subnet",
                move |i| {
                    let name = format!("{prefix}-pool-prefill-{}", offset + i);
                    json!({ "subnet": pool_subnet(&network_id, &pool_id, &name) })
                },
                &mut created.subnets,
            )
            .await?;
        }
        eprintln!(
            "neutrino-bench: {label}: prefilled {n} subnets in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// `router-interface`: one router and N/4 networks with one /28 of
    /// 10.200.0.0/16 each (created with concurrency C, unmeasured); then
    /// sequential `add_router_interface` for every subnet
    /// (`router-interface-add`) and `remove_router_interface` for every
    /// attached one (`router-interface-remove`).
    pub(super) async fn router_group(
        &self,
        created: &mut Created,
        out: &mut Vec<ScenarioResult>,
    ) -> Result<(), BenchError> {
        let label = "router-interface";
        let m = (self.ports / 4).max(1);
        if router_subnet_cidr(m - 1).is_none() {
            return Err(BenchError::InvalidArgs(format!(
                "{m} subnets do not fit as /28s in 10.200.0.0/16"
            )));
        }
        let router_body = json!({"router": {"name": self.name("router", 0)}});
        let (router_id, project) = self
            .create_owned(label, "/v2.0/routers", "router", &router_body)
            .await?;
        created.routers.push(router_id.clone());
        self.raise_quotas(label, project.as_deref(), created).await;

        let prefix = self.name_prefix.clone();
        let first = created.networks.len();
        self.fixture(
            label,
            m,
            "/v2.0/networks",
            "network",
            move |i| json!({"network": {"name": format!("{prefix}-router-net-{i}")}}),
            &mut created.networks,
        )
        .await?;
        // All m creations succeeded (or the fixture failed): ids in index order.
        let networks: Arc<Vec<String>> = Arc::new(created.networks[first..].to_vec());
        let prefix = self.name_prefix.clone();
        let first = created.subnets.len();
        self.fixture(
            label,
            m,
            "/v2.0/subnets",
            "subnet",
            move |i| {
                json!({"subnet": {
                    "network_id": networks[i],
                    "ip_version": 4,
                    "cidr": router_subnet_cidr(i).unwrap_or_default(),
                    "name": format!("{prefix}-router-subnet-{i}"),
                }})
            },
            &mut created.subnets,
        )
        .await?;
        let pairs: Vec<(String, String)> = created.subnets[first..]
            .iter()
            .map(|subnet| (router_id.clone(), subnet.clone()))
            .collect();
        // From here until its removal is confirmed, any subnet may be
        // attached: the cleanup detaches them all (404 = not attached).
        created.interfaces = pairs.clone();

        announce("router-interface-add");
        let pairs = Arc::new(pairs);
        let add = interface_batch(
            &self.api,
            "router-interface-add",
            "add_router_interface",
            Arc::clone(&pairs),
            1,
            false,
        )
        .await;
        out.push(add.summarize("router-interface-add"));
        let attached: Vec<(String, String)> =
            succeeded(&add, &pairs).into_iter().cloned().collect();
        add.into_failure()?;

        announce("router-interface-remove");
        let attached = Arc::new(attached);
        let remove = interface_batch(
            &self.api,
            "router-interface-remove",
            "remove_router_interface",
            Arc::clone(&attached),
            1,
            false,
        )
        .await;
        out.push(remove.summarize("router-interface-remove"));
        let removed: HashSet<&(String, String)> =
            succeeded(&remove, &attached).into_iter().collect();
        created.interfaces.retain(|pair| !removed.contains(pair));
        remove.into_failure()
    }

    /// POSTs one object a scenario needs (unmeasured) and returns its id and
    /// its `project_id` (or `tenant_id`), when the server returns one.
    pub(super) async fn create_owned(
        &self,
        label: &str,
        path: &str,
        key: &str,
        body: &Value,
    ) -> Result<(String, Option<String>), BenchError> {
        let fixture_error = |message: String| BenchError::Fixture {
            scenario: label.to_string(),
            message: format!("POST {path}: {message}"),
        };
        let reply = self
            .api
            .send(Method::POST, path, Some(body))
            .await
            .map_err(|e| fixture_error(crate::error::chain(&e)))?;
        if !reply.is_success() {
            return Err(fixture_error(reply.describe()));
        }
        let id = reply.created_id(key).ok_or_else(|| {
            fixture_error(format!("no {key}.id in the response: {}", reply.describe()))
        })?;
        let project = reply
            .created_field(key, "project_id")
            .or_else(|| reply.created_field(key, "tenant_id"))
            .filter(|p| !p.is_empty());
        Ok((id, project))
    }

    /// Best effort: makes the network, subnet and port quotas of `project`
    /// unlimited (upstream defaults: 100 networks, 100 subnets, 500 ports)
    /// and records their previous values in `created` so that the cleanup
    /// puts them back. A refusal (e.g. not an admin) is reported on stderr
    /// and the scenario continues with the current quotas.
    pub(super) async fn raise_quotas(
        &self,
        label: &str,
        project: Option<&str>,
        created: &mut Created,
    ) {
        let Some(project) = project else {
            eprintln!(
                "neutrino-bench: {label}: warning: no project_id in the create answer; \
                 quotas not raised"
            );
            return;
        };
        let path = format!("/v2.0/quotas/{project}");
        let current = match self.api.send(Method::GET, &path, None).await {
            Ok(reply) if reply.is_success() => serde_json::from_slice::<Value>(&reply.body).ok(),
            _ => None,
        };
        let restore = match &current {
            Some(current) => match quota_restore_body(current) {
                Some(body) => Some(body),
                None => {
                    eprintln!(
                        "neutrino-bench: {label}: network, subnet and port quotas of project \
                         {project} are already unlimited"
                    );
                    return;
                }
            },
            None => None,
        };
        let body = json!({"quota": {"subnet": -1, "network": -1, "port": -1}});
        let problem = match self.api.send(Method::PUT, &path, Some(&body)).await {
            Ok(reply) if reply.is_success() => {
                let afterwards = if restore.is_some() {
                    "put back after the scenario"
                } else {
                    "previous values unknown: left unlimited"
                };
                eprintln!(
                    "neutrino-bench: {label}: network, subnet and port quotas of project \
                     {project} set to unlimited ({afterwards})"
                );
                created.quota_restore = restore.map(|body| (project.to_string(), body));
                return;
            }
            Ok(reply) => reply.describe(),
            Err(e) => crate::error::chain(&e),
        };
        eprintln!(
            "neutrino-bench: {label}: warning: could not raise the quotas of project \
             {project} (PUT {path}: {problem}); continuing with the current quotas"
        );
    }

    /// Puts back the quotas recorded by [`Ctx::raise_quotas`].
    pub(super) async fn restore_quotas(&self, restore: Option<(String, Value)>) {
        let Some((project, body)) = restore else {
            return;
        };
        let path = format!("/v2.0/quotas/{project}");
        let problem = match self.api.send(Method::PUT, &path, Some(&body)).await {
            Ok(reply) if reply.is_success() => {
                eprintln!(
                    "neutrino-bench: quotas of project {project} put back: {}",
                    body["quota"]
                );
                return;
            }
            Ok(reply) => reply.describe(),
            Err(e) => crate::error::chain(&e),
        };
        eprintln!(
            "neutrino-bench: warning: could not put back the quotas of project {project} \
             ({}): PUT {path}: {problem}",
            body["quota"]
        );
    }

    /// Detaches `(router, subnet)` interfaces (cleanup: 404 = not attached).
    pub(super) async fn remove_interfaces(&self, pairs: Vec<(String, String)>) {
        if pairs.is_empty() {
            return;
        }
        let label = "cleanup of router interfaces";
        let pairs = Arc::new(pairs);
        let batch = interface_batch(
            &self.api,
            label,
            "remove_router_interface",
            Arc::clone(&pairs),
            self.concurrency,
            true,
        )
        .await;
        if let Some(e) = &batch.failure {
            eprintln!("neutrino-bench: warning: {label}: {e}");
        } else if batch.error_count() > 0 {
            let left: Vec<String> = pairs
                .iter()
                .zip(&batch.samples)
                .filter(|(_, s)| s.outcome.is_err())
                .map(|((_, subnet), _)| subnet.clone())
                .collect();
            eprintln!(
                "neutrino-bench: warning: {} router interface(s) could not be removed \
                 (subnets {})",
                left.len(),
                id_list(&left)
            );
        }
    }

    /// Adds to `created.subnets` the subnets allocated from our pools that
    /// are not recorded there (e.g. created by a bulk request whose answer
    /// was lost), so that the pools can be deleted.
    pub(super) async fn collect_pool_subnets(&self, created: &mut Created) {
        for pool in &created.subnetpools {
            let path = format!("/v2.0/subnets?subnetpool_id={pool}&fields=id");
            match self.api.send(Method::GET, &path, None).await {
                Ok(reply) if reply.is_success() => {
                    let known: HashSet<&String> = created.subnets.iter().collect();
                    let unknown: Vec<String> = bulk_created_ids(&reply.body, "subnets")
                        .into_iter()
                        .filter(|id| !known.contains(id))
                        .collect();
                    created.subnets.extend(unknown);
                }
                Ok(reply) => eprintln!(
                    "neutrino-bench: warning: cleanup: GET {path}: {}",
                    reply.describe()
                ),
                Err(e) => eprintln!(
                    "neutrino-bench: warning: cleanup: GET {path}: {}",
                    crate::error::chain(&e)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn router_cidrs_are_distinct_aligned_slash28s_of_10_200() {
        assert_eq!(router_subnet_cidr(0).unwrap(), "10.200.0.0/28");
        assert_eq!(router_subnet_cidr(1).unwrap(), "10.200.0.16/28");
        assert_eq!(router_subnet_cidr(15).unwrap(), "10.200.0.240/28");
        assert_eq!(router_subnet_cidr(16).unwrap(), "10.200.1.0/28");
        assert_eq!(router_subnet_cidr(249).unwrap(), "10.200.15.144/28");
        assert_eq!(
            router_subnet_cidr(ROUTER_SUBNETS_MAX - 1).unwrap(),
            "10.200.255.240/28"
        );
        assert!(router_subnet_cidr(ROUTER_SUBNETS_MAX).is_none());
        let all: HashSet<String> = (0..ROUTER_SUBNETS_MAX)
            .filter_map(router_subnet_cidr)
            .collect();
        assert_eq!(all.len(), 4096);
        assert!(all.iter().all(|c| c.starts_with("10.200.")));
    }

    #[test]
    fn pool_sizes() {
        // A /9 holds 2^19 /28s.
        assert_eq!(POOL_CAPACITY, 524_288);
        assert_eq!(ROUTER_SUBNETS_MAX, 4096);
        let body = pool_subnet("n1", "p1", "x");
        assert_eq!(body["prefixlen"], 28);
        assert_eq!(body["ip_version"], 4);
        assert_eq!(body["subnetpool_id"], "p1");
        assert_eq!(body["network_id"], "n1");
        assert!(body.get("cidr").is_none());
    }

    #[test]
    fn bulk_size_follows_the_allocation_rate() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Fast server: capped at PREFILL_BULK.
        assert_eq!(next_bulk_size(500, ms(500), s(15)), PREFILL_BULK);
        // 500 subnets in 30 s: 60 ms each, 250 fit in 15 s.
        assert_eq!(next_bulk_size(500, s(30), s(15)), 250);
        // 150 ms each: 100 fit in 15 s.
        assert_eq!(next_bulk_size(100, s(15), s(15)), 100);
        // Slower than the target for a single subnet: still 1.
        assert_eq!(next_bulk_size(1, s(40), s(15)), 1);
        assert_eq!(next_bulk_size(0, s(1), s(15)), PREFILL_BULK);
        assert_eq!(next_bulk_size(10, Duration::ZERO, s(15)), PREFILL_BULK);
    }

    #[test]
    fn parses_bulk_answers() {
        let body = br#"{"subnets": [{"id": "a"}, {"id": "b"}, {"name": "no id"}]}"#;
        assert_eq!(bulk_created_ids(body, "subnets"), vec!["a", "b"]);
        assert!(bulk_created_ids(body, "ports").is_empty());
        assert!(bulk_created_ids(b"not json", "subnets").is_empty());
        assert!(bulk_created_ids(br#"{"subnet": {"id": "a"}}"#, "subnets").is_empty());
    }

    #[test]
    fn quota_restore_keeps_only_finite_raised_limits() {
        let current = json!({"quota": {
            "network": 100, "subnet": -1, "port": 500, "router": 10, "floatingip": 50
        }});
        assert_eq!(
            quota_restore_body(&current),
            Some(json!({"quota": {"network": 100, "port": 500}}))
        );
        let unlimited = json!({"quota": {"network": -1, "subnet": -1, "port": -1}});
        assert_eq!(quota_restore_body(&unlimited), None);
        assert_eq!(quota_restore_body(&json!({})), None);
    }

    #[test]
    fn succeeded_items_follow_the_samples() {
        let items = ["a", "b", "c"];
        let mut batch = Batch {
            samples: vec![
                Sample::ok(Duration::ZERO, None),
                Sample::failed(Duration::ZERO, "x".into()),
                Sample::ok(Duration::ZERO, None),
            ],
            seconds: 0.0,
            failure: None,
        };
        assert_eq!(succeeded(&batch, &items), vec![&"a", &"c"]);
        batch.failure = Some(BenchError::Task("panic".into()));
        assert!(succeeded(&batch, &items).is_empty());
    }
}
