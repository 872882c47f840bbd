//! The realisation barrier: "ACTIVE is a promise".
//!
//! Host agents acknowledge the feed revision they have fully applied to their kernel
//! (`PUT /neutrino/v1/applied`, after every successful reconcile); the server keeps the
//! latest acknowledgement per host in `applied_revisions` (not a resource, not in the feed).
//! A port its own host reports plugged does not turn ACTIVE at once: it waits in
//! `port_barriers` with the revision of that report until every host that must know about it
//! has applied that revision, i.e. its own host and every *alive* host with a port on its
//! network or with a port in a security group that names one of its groups as remote group
//! ([`hosts_to_wait_for`], [`lagging`]). A host whose agent is dead (no heartbeat for
//! `--agent-down-time`) or that has no agent does not hold a port back (as Neutron ignores a
//! dead agent), its own host excepted.
//!
//! The same acknowledgements answer "is revision R realised everywhere?" for any change:
//! `GET /v2.0/neutrino/revisions/{R}?timeout=SECS` waits until every alive agent has applied
//! R ([`App::revision_status`]). Write responses carry the revision in `X-Neutrino-Revision`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use neutrino_store::Selector;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Map, Value};

use crate::agents::{epoch_secs, AGENT_TYPE};
use crate::{db, App, Context};

/// Longest wait `GET /v2.0/neutrino/revisions/{R}` accepts, in seconds.
pub const MAX_WAIT_SECS: f64 = 300.0;

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn host_of(port: &Value) -> Option<&str> {
    port["binding:host_id"].as_str().filter(|h| !h.is_empty())
}

/// Every host that must have applied a port's revision before the port is ACTIVE: its own
/// host, the hosts of the ports on its network (`network_ports`: they forward to it), and
/// the hosts of the ports in a group with a rule whose remote group is one of the port's
/// groups (`rules`, `ports`: they admit it in their remote-group sets). Pure.
pub fn hosts_to_wait_for<'a>(
    port: &Value,
    network_ports: impl IntoIterator<Item = &'a Value>,
    rules: impl IntoIterator<Item = &'a Value>,
    ports: impl IntoIterator<Item = &'a Value>,
) -> BTreeSet<String> {
    let mut hosts: BTreeSet<String> = host_of(port).into_iter().map(str::to_string).collect();
    hosts.extend(
        network_ports
            .into_iter()
            .filter_map(host_of)
            .map(str::to_string),
    );
    let referring = referring_groups(port, rules);
    if referring.is_empty() {
        return hosts;
    }
    hosts.extend(
        ports
            .into_iter()
            .filter(|p| strings(&p["security_groups"]).any(|g| referring.contains(g)))
            .filter_map(host_of)
            .map(str::to_string),
    );
    hosts
}

/// The groups with a rule whose remote group is one of `port`'s groups: their members'
/// hosts hold the port's addresses in a remote-group set. Pure.
pub fn referring_groups<'a>(
    port: &Value,
    rules: impl IntoIterator<Item = &'a Value>,
) -> BTreeSet<&'a str> {
    let groups: BTreeSet<&str> = strings(&port["security_groups"]).collect();
    if groups.is_empty() {
        return BTreeSet::new();
    }
    rules
        .into_iter()
        .filter(|r| {
            r["remote_group_id"]
                .as_str()
                .is_some_and(|g| groups.contains(g))
        })
        .filter_map(|r| r["security_group_id"].as_str())
        .collect()
}

/// Those of `hosts` that still have to apply `revision`: `own` (the port's host) always
/// counts, the others only while their agent is alive. Pure.
pub fn lagging(
    hosts: &BTreeSet<String>,
    own: Option<&str>,
    revision: i64,
    applied: &BTreeMap<String, i64>,
    alive: &BTreeSet<String>,
) -> Vec<String> {
    hosts
        .iter()
        .filter(|h| Some(h.as_str()) == own || alive.contains(*h))
        .filter(|h| applied.get(*h).is_none_or(|a| *a < revision))
        .cloned()
        .collect()
}

/// What the barrier knows of the hosts at one moment.
struct Hosts {
    /// Hosts with a registered agent that heart-beat within the agent down time.
    alive: BTreeSet<String>,
    /// The revision each host last acknowledged.
    applied: BTreeMap<String, i64>,
}

impl App {
    async fn barrier_hosts(&self) -> ApiResult<Hosts> {
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let now = epoch_secs();
        let mut tx = self.read().await?;
        let registered: BTreeSet<String> = tx
            .list("agent", &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .filter(|a| a.body["agent_type"] == AGENT_TYPE)
            .filter_map(|a| a.body["host"].as_str().map(str::to_string))
            .collect();
        let alive = beats
            .into_iter()
            .filter(|(h, at)| registered.contains(h) && self.alive_at(*at, now))
            .map(|(h, _)| h)
            .collect();
        let applied = tx
            .applied_revisions()
            .await
            .map_err(db)?
            .into_iter()
            .collect();
        Ok(Hosts { alive, applied })
    }

    /// `PUT /neutrino/v1/applied`: `{"host": H, "revision": R}`, the agent on H has realised
    /// everything up to feed revision R. Records it and lets the ports that waited for it
    /// turn ACTIVE.
    pub async fn report_applied(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.check_rule(ctx, "report_applied_revision", &Map::new())?;
        let host = crate::agents::reporting_host(ctx, &body)?;
        let revision = body
            .get("revision")
            .and_then(Value::as_i64)
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                ApiError::bad_request("Invalid input for revision: a non-negative integer")
            })?;
        let mut tx = self.write().await?;
        tx.set_applied(host, revision, epoch_secs())
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let activated = self.barrier_sweep().await?;
        Ok(json!({"host": host, "revision": revision, "activated": activated}))
    }

    /// Turns ACTIVE every waiting port whose hosts have all applied its revision, and
    /// forgets the waits of ports that went away, moved or were reported otherwise. Runs
    /// after every acknowledgement and status report, and periodically (agents die).
    /// Returns how many ports turned ACTIVE.
    pub async fn barrier_sweep(&self) -> ApiResult<usize> {
        let mut tx = self.read().await?;
        let waiting = tx.port_barriers().await.map_err(db)?;
        if waiting.is_empty() {
            return Ok(0);
        }
        drop(tx);
        let hosts = self.barrier_hosts().await?;
        let mut tx = self.read().await?;
        // Read once per sweep, only when a waiting port has security groups: the rules, and
        // the members of each group that names one of its groups as remote group (found
        // through the groups' `sgport:` claims).
        let mut rules: Option<Vec<Value>> = None;
        let mut members: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut by_network: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut passed = Vec::new();
        let mut stale = Vec::new();
        for (port_id, host, revision) in waiting {
            let port = match tx.get("port", &port_id).await.map_err(db)? {
                Some(p) if host_of(&p.body) == Some(host.as_str()) => p.body,
                _ => {
                    stale.push((port_id, revision));
                    continue;
                }
            };
            // Cheap answers first: the port's own host has not applied the revision yet (it
            // waits whoever else must know), or every live host has (it passes).
            let behind = |h: &String| hosts.applied.get(h).is_none_or(|a| *a < revision);
            if behind(&host) {
                continue;
            }
            if !hosts.alive.iter().any(behind) {
                passed.push((port_id, revision));
                continue;
            }
            let net = port["network_id"].as_str().unwrap_or_default().to_string();
            if !by_network.contains_key(&net) {
                let sel = Selector {
                    parent_ids: Some(vec![net.clone()]),
                    ..Default::default()
                };
                let ports = tx.list("port", &sel).await.map_err(db)?;
                by_network.insert(net.clone(), ports.into_iter().map(|r| r.body).collect());
            }
            if rules.is_none() && strings(&port["security_groups"]).next().is_some() {
                let all = Selector::default();
                let list = tx.list("security_group_rule", &all).await.map_err(db)?;
                rules = Some(list.into_iter().map(|r| r.body).collect());
            }
            let rules = rules.as_deref().unwrap_or_default();
            let referring = referring_groups(&port, rules);
            for group in &referring {
                if !members.contains_key(*group) {
                    let scope = format!("sgport:{group}");
                    let ids = tx
                        .claimed_keys(&scope, "", None, i64::MAX)
                        .await
                        .map_err(db)?;
                    let mut docs = Vec::with_capacity(ids.len());
                    for chunk in ids.chunks(500) {
                        let sel = Selector {
                            ids: Some(chunk.to_vec()),
                            ..Default::default()
                        };
                        let list = tx.list("port", &sel).await.map_err(db)?;
                        docs.extend(list.into_iter().map(|r| r.body));
                    }
                    members.insert(group.to_string(), docs);
                }
            }
            let peers = referring.iter().flat_map(|g| members[*g].iter());
            let must = hosts_to_wait_for(&port, &by_network[&net], rules, peers);
            let behind = lagging(&must, Some(&host), revision, &hosts.applied, &hosts.alive);
            if behind.is_empty() {
                passed.push((port_id, revision));
            } else {
                tracing::debug!(port = %port_id, revision, lagging = ?behind, "port waits at the barrier");
            }
        }
        drop(tx);
        if passed.is_empty() && stale.is_empty() {
            return Ok(0);
        }
        // One write: re-read each wait (another server may have resolved it), then turn the
        // port ACTIVE where it still waits for the same revision on the same host.
        let mut tx = self.write().await?;
        let current: BTreeMap<String, (String, i64)> = tx
            .port_barriers()
            .await
            .map_err(db)?
            .into_iter()
            .map(|(p, h, r)| (p, (h, r)))
            .collect();
        let mut activated = 0;
        for (port_id, revision) in stale {
            if current.get(&port_id).is_some_and(|(_, r)| *r == revision) {
                tx.delete_port_barrier(&port_id).await.map_err(db)?;
            }
        }
        for (port_id, revision) in passed {
            let Some((host, r)) = current.get(&port_id) else {
                continue;
            };
            if *r != revision {
                continue;
            }
            tx.delete_port_barrier(&port_id).await.map_err(db)?;
            tx.lock("port", &port_id).await.map_err(db)?;
            let Some(mut rec) = tx.get("port", &port_id).await.map_err(db)? else {
                continue;
            };
            if host_of(&rec.body) != Some(host.as_str()) || rec.body["status"] == "ACTIVE" {
                continue;
            }
            rec.body["status"] = json!("ACTIVE");
            crate::neutron::bump(&mut rec.body);
            tx.update("port", &port_id, &rec.body).await.map_err(db)?;
            activated += 1;
        }
        tx.commit().await.map_err(db)?;
        if activated > 0 {
            tracing::debug!(ports = activated, "ports passed the barrier");
        }
        Ok(activated)
    }

    /// `GET /v2.0/neutrino/revisions/{revision}?timeout=SECS`: whether every alive agent has
    /// applied `revision`, waiting up to `timeout` seconds (0: answer at once) for it.
    /// `{"revision": {"revision", "current", "realised", "hosts": [{"host", "applied",
    /// "alive"}], "lagging": [host...]}}`; the host names only for callers that
    /// `get_revision:hosts` allows (admins by default), the others see counts.
    pub async fn revision_status(
        &self,
        ctx: &Context,
        revision: i64,
        timeout: Duration,
    ) -> ApiResult<Value> {
        self.revision_status_of(ctx, revision, timeout, None).await
    }

    /// [`App::revision_status`] for the named hosts only (`?host=H&host=…`), when given: an
    /// agent switching a chain waits for the hosts of that chain's functions and ports, not
    /// for every host of the cloud.
    pub async fn revision_status_of(
        &self,
        ctx: &Context,
        revision: i64,
        timeout: Duration,
        only: Option<&BTreeSet<String>>,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "get_revision", &Map::new())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.inner.store.current_revision().await.map_err(db)?;
            let hosts = self.barrier_hosts().await?;
            let behind: Vec<String> = hosts
                .alive
                .iter()
                .filter(|h| only.is_none_or(|only| only.contains(*h)))
                .filter(|h| hosts.applied.get(*h).is_none_or(|a| *a < revision))
                .cloned()
                .collect();
            let now = tokio::time::Instant::now();
            let realised = behind.is_empty() && revision <= current;
            if realised || now >= deadline {
                let mut doc = json!({
                    "revision": revision,
                    "current": current,
                    "realised": realised,
                    "alive_hosts": hosts.alive.len(),
                    "lagging_hosts": behind.len(),
                });
                if self.permits(ctx, "get_revision:hosts", &Map::new()) {
                    let list: Vec<Value> = hosts
                        .applied
                        .keys()
                        .chain(hosts.alive.iter())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .map(|h| {
                            json!({"host": h, "applied": hosts.applied.get(h),
                                   "alive": hosts.alive.contains(h)})
                        })
                        .collect();
                    doc["hosts"] = Value::from(list);
                    doc["lagging"] = json!(behind);
                }
                return Ok(json!({ "revision": doc }));
            }
            // Acknowledgements are not in the feed: poll, briefly.
            let pause = Duration::from_millis(20).min(deadline - now);
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(id: &str, host: &str, net: &str, groups: &[&str]) -> Value {
        json!({"id": id, "binding:host_id": host, "network_id": net, "security_groups": groups})
    }

    fn rule(group: &str, remote: Option<&str>) -> Value {
        json!({"security_group_id": group, "remote_group_id": remote})
    }

    fn set(hosts: &[&str]) -> BTreeSet<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn a_port_waits_for_its_host_and_the_hosts_on_its_network() {
        let p = port("p", "h1", "n1", &[]);
        let net = [
            port("p", "h1", "n1", &[]),
            port("q", "h2", "n1", &[]),
            port("r", "", "n1", &[]),
        ];
        let others = [port("s", "h3", "n2", &[])];
        let got = hosts_to_wait_for(&p, &net, &[], net.iter().chain(&others));
        assert_eq!(got, set(&["h1", "h2"]));
    }

    #[test]
    fn hosts_whose_groups_name_the_ports_group_as_remote_group_are_waited_for() {
        let p = port("p", "h1", "n1", &["web"]);
        let net = [p.clone()];
        let rules = [
            rule("db", Some("web")),
            rule("web", None),
            rule("other", Some("x")),
        ];
        let ports = [
            p.clone(),
            port("d", "h3", "n2", &["db"]),
            port("o", "h4", "n3", &["other"]),
            port("x", "h5", "n4", &["web"]),
        ];
        let got = hosts_to_wait_for(&p, &net, &rules, &ports);
        assert_eq!(got, set(&["h1", "h3"]));
        // The default group names itself: every host with a port in it.
        let rules = [rule("web", Some("web"))];
        let got = hosts_to_wait_for(&p, &net, &rules, &ports);
        assert_eq!(got, set(&["h1", "h5"]));
    }

    #[test]
    fn dead_hosts_do_not_hold_a_port_back_but_its_own_host_does() {
        let hosts = set(&["h1", "h2", "h3"]);
        let applied: BTreeMap<String, i64> = [("h1".to_string(), 10), ("h2".to_string(), 9)]
            .into_iter()
            .collect();
        let alive = set(&["h1", "h2", "h3"]);
        // h2 is behind, h3 has never acknowledged anything.
        assert_eq!(
            lagging(&hosts, Some("h1"), 10, &applied, &alive),
            ["h2", "h3"]
        );
        assert_eq!(lagging(&hosts, Some("h1"), 9, &applied, &alive), ["h3"]);
        // h3 dead: excluded; h2 dead too: the port passes.
        let alive = set(&["h1", "h2"]);
        assert_eq!(
            lagging(&hosts, Some("h1"), 9, &applied, &alive),
            Vec::<String>::new()
        );
        let alive = set(&["h1"]);
        assert!(lagging(&hosts, Some("h1"), 10, &applied, &alive).is_empty());
        // Its own host counts even when it looks dead.
        let alive = set(&[]);
        assert_eq!(lagging(&hosts, Some("h1"), 11, &applied, &alive), ["h1"]);
        assert!(lagging(&hosts, Some("h1"), 10, &applied, &alive).is_empty());
    }
}
