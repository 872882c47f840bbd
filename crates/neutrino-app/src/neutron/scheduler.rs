//! Placement: which host runs what. A network's DHCP server goes to an alive DHCP agent that
//! reaches the network, chosen by a hash of the network id; routers are scheduled across L3
//! agents (`l3_agent_scheduler`) and fail over.
//!
//! Which host runs a router is the `l3-agent` claim (see [`super::l3_ha`]); the router's
//! ports are bound there. `GET /v2.0/routers/{id}/l3-agents` shows the agents hosting a
//! router (with `ha_state` for HA routers), `/v2.0/agents/{id}/l3-routers` lists, adds and
//! removes routers by hand (admins only, as upstream's policy).
//!
//! [`App::reschedule_routers`] runs periodically on every server: an HA router whose active
//! host's agent stopped heart-beating moves to its standby (ports rebound in one transaction,
//! so the change feed tells both agents), and gets a new standby; a legacy router moves only
//! with `allow_automatic_l3agent_failover`. Each move locks the router row and re-reads the
//! claims first, so with several servers on one database exactly one performs it.

use std::collections::BTreeMap;

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::ports::rebind;
use super::router_flavour::is_ha;
use super::scopes::{HOST_SCOPE, STANDBY_SCOPE};
use super::{bump, s};
use crate::agents::{is_role_entry, pick_host, AGENT_TYPE};

/// The role entry of a Neutrino agent that clients know as the router host.
const L3_AGENT_TYPE: &str = "L3 agent";
use crate::{db, App, Context};

/// Where a router should run given the alive L3 hosts: `(active, standby)`.
///
/// An alive active host stays; so does a dead one unless `move_dead`. A dead (or missing)
/// active host is replaced by the alive standby, else by an alive host chosen by a hash of
/// the router id; without any alive host nothing moves. An HA router's standby is an alive
/// host other than the active one: the current standby if it qualifies, else one chosen by
/// the hash; legacy routers have none.
pub(crate) fn plan_hosts(
    router: &str,
    ha: bool,
    move_dead: bool,
    active: Option<&str>,
    standby: Option<&str>,
    alive: &[String],
) -> (Option<String>, Option<String>) {
    let is_alive = |h: &&str| alive.iter().any(|a| a == h);
    let new_active = match active {
        Some(a) if is_alive(&a) || !move_dead => Some(a.to_string()),
        _ => standby
            .filter(is_alive)
            .map(str::to_string)
            .or_else(|| pick_host(alive, router))
            .or(active.map(str::to_string)),
    };
    if !ha {
        return (new_active, None);
    }
    let others: Vec<String> = alive
        .iter()
        .filter(|h| Some(h.as_str()) != new_active.as_deref())
        .cloned()
        .collect();
    let new_standby = standby
        .filter(|h| others.iter().any(|o| o == h))
        .map(str::to_string)
        .or_else(|| pick_host(&others, router));
    (new_active, new_standby)
}

/// Every `(key, owner)` of a claim scope whose keys are ids.
async fn claims(tx: &mut Tx, scope: &str) -> ApiResult<BTreeMap<String, String>> {
    let all = [(String::new(), "\u{10ffff}".to_string())];
    Ok(tx
        .claims_in_ranges(scope, &all)
        .await
        .map_err(db)?
        .into_iter()
        .collect())
}

fn invalid_agent(id: &str) -> ApiError {
    ApiError::new(
        404,
        "InvalidL3Agent",
        format!("Agent {id} is not a L3 Agent or has been disabled"),
    )
}

impl App {
    /// Moves `router`'s ports to `host` and records it as the router's host.
    pub(super) async fn set_router_host(
        &self,
        tx: &mut Tx,
        router: &str,
        host: &str,
    ) -> ApiResult<()> {
        tx.release(HOST_SCOPE, router).await.map_err(db)?;
        if !host.is_empty() {
            tx.claim(HOST_SCOPE, router, host).await.map_err(db)?;
        }
        for mut port in self.hosted_router_ports(tx, router).await? {
            if s(&port.body, "binding:host_id") != host {
                rebind(&mut port.body, host);
                bump(&mut port.body);
                tx.update("port", &port.id, &port.body).await.map_err(db)?;
            }
        }
        Ok(())
    }

    /// The host a router runs on: its recorded host, else where its ports are bound (routers
    /// from before hosts were recorded), else an alive L3 agent chosen by a hash of the
    /// router id (recorded), else none (ports stay unbound until an agent registers).
    pub(super) async fn l3_host(&self, tx: &mut Tx, router: &str) -> ApiResult<String> {
        if let Some(host) = tx.claim_owner(HOST_SCOPE, router).await.map_err(db)? {
            return Ok(host);
        }
        let bound = self
            .router_ports(tx, router)
            .await?
            .into_iter()
            .map(|p| s(&p.body, "binding:host_id").to_string())
            .find(|h| !h.is_empty());
        let host = match bound {
            Some(h) => h,
            None => {
                let hosts = self.agent_hosts(tx, "l3").await?;
                let rec = tx.get("router", router).await.map_err(db)?;
                let hosts = self
                    .hosts_in_hinted_zones(tx, hosts, rec.as_ref().map(|r| &r.body))
                    .await?;
                // A gateway on a flat/VLAN network needs a host that maps its physical network.
                let gateway = rec.and_then(|r| {
                    r.body["external_gateway_info"]["network_id"]
                        .as_str()
                        .map(str::to_string)
                });
                let hosts = self.hosts_reaching(tx, hosts, gateway.as_slice()).await?;
                pick_host(&hosts, router).unwrap_or_default()
            }
        };
        if !host.is_empty() {
            tx.claim(HOST_SCOPE, router, &host).await.map_err(db)?;
        }
        Ok(host)
    }

    /// The hosts running a router: `(host, ha_state)`, the active one first.
    async fn hosting(&self, tx: &mut Tx, router: &Record) -> ApiResult<Vec<(String, Value)>> {
        let active = match tx.claim_owner(HOST_SCOPE, &router.id).await.map_err(db)? {
            Some(h) => Some(h),
            None => self
                .router_ports(tx, &router.id)
                .await?
                .into_iter()
                .map(|p| s(&p.body, "binding:host_id").to_string())
                .find(|h| !h.is_empty()),
        };
        if !is_ha(&router.body) {
            return Ok(active.into_iter().map(|h| (h, Value::Null)).collect());
        }
        let standby = tx
            .claim_owner(STANDBY_SCOPE, &router.id)
            .await
            .map_err(db)?
            .filter(|h| !h.is_empty());
        Ok(active
            .map(|h| (h, json!("active")))
            .into_iter()
            .chain(standby.map(|h| (h, json!("standby"))))
            .collect())
    }

    /// One pass of failover: moves routers off dead agents and gives HA routers a standby.
    /// Returns how many routers changed. Safe to run on several servers at once.
    pub async fn reschedule_routers(&self) -> ApiResult<usize> {
        let (alive, actives, standbys) = {
            let mut tx = self.read().await?;
            let alive = self.agent_hosts(&mut tx, "l3").await?;
            let actives = claims(&mut tx, HOST_SCOPE).await?;
            let standbys = claims(&mut tx, STANDBY_SCOPE).await?;
            (alive, actives, standbys)
        };
        if alive.is_empty() {
            return Ok(0);
        }
        let mut todo: Vec<(&String, bool)> = Vec::new();
        for (router, standby) in &standbys {
            let active = actives.get(router).map(String::as_str);
            let standby = Some(standby.as_str()).filter(|h| !h.is_empty());
            let planned = plan_hosts(router, true, true, active, standby, &alive);
            if planned.0.as_deref() != active || planned.1.as_deref() != standby {
                todo.push((router, true));
            }
        }
        if self.config().allow_automatic_l3agent_failover {
            for (router, host) in &actives {
                if !standbys.contains_key(router) && !alive.contains(host) {
                    todo.push((router, false));
                }
            }
        }
        let mut changed = 0;
        for (router, ha) in todo {
            match self.reschedule_router(router, ha, &alive).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(%router, error = %e.message, "rescheduling failed"),
            }
        }
        Ok(changed)
    }

    /// Re-plans one router under its row lock; false when another server did it already.
    async fn reschedule_router(&self, router: &str, ha: bool, alive: &[String]) -> ApiResult<bool> {
        let mut tx = self.write().await?;
        let Some(mut rec) = tx.get("router", router).await.map_err(db)? else {
            // A leftover of a deleted router.
            tx.release(HOST_SCOPE, router).await.map_err(db)?;
            tx.release(STANDBY_SCOPE, router).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(false);
        };
        super::relock(&mut tx, &mut rec).await?;
        if is_ha(&rec.body) != ha {
            return Ok(false);
        }
        let active = tx.claim_owner(HOST_SCOPE, router).await.map_err(db)?;
        let standby = tx
            .claim_owner(STANDBY_SCOPE, router)
            .await
            .map_err(db)?
            .filter(|h| !h.is_empty());
        let (new_active, new_standby) = plan_hosts(
            router,
            ha,
            true,
            active.as_deref(),
            standby.as_deref(),
            alive,
        );
        let moved = new_active != active;
        if !moved && (!ha || new_standby.as_deref() == standby.as_deref()) {
            return Ok(false);
        }
        let host = new_active.clone().unwrap_or_default();
        if moved {
            tracing::info!(%router, from = ?active, to = %host, "router moves to another agent");
            self.set_router_host(&mut tx, router, &host).await?;
        }
        if ha {
            self.set_standby(&mut tx, &rec, new_active.as_deref(), new_standby.as_deref())
                .await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    /// The agent record behind `id`, with its host, for the scheduling calls.
    async fn l3_agent(&self, tx: &mut Tx, id: &str) -> ApiResult<(Record, String)> {
        let rec = tx
            .get("agent", id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let host = s(&rec.body, "host").to_string();
        Ok((rec, host))
    }

    async fn existing_router(&self, tx: &mut Tx, id: &str) -> ApiResult<Record> {
        tx.get("router", id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("router", id))
    }

    /// `GET /v2.0/routers/{id}/l3-agents`.
    pub async fn l3_agents_hosting_router(&self, ctx: &Context, router: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_l3-agents", &Default::default())?;
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let mut tx = self.read().await?;
        let rec = self.existing_router(&mut tx, router).await?;
        let hosting = self.hosting(&mut tx, &rec).await?;
        let agents = tx.list("agent", &Default::default()).await.map_err(db)?;
        let mut out = Vec::new();
        for (host, state) in hosting {
            // The host's "L3 agent" entry, or its own agent where it has none.
            let on_host = || agents.iter().filter(|a| s(&a.body, "host") == host);
            let l3_entry = on_host().any(|a| a.body["agent_type"] == L3_AGENT_TYPE);
            for agent in on_host() {
                let wanted = if l3_entry {
                    agent.body["agent_type"] == L3_AGENT_TYPE
                } else {
                    !is_role_entry(&agent.body)
                };
                if !wanted || agent.body["configurations"]["l3"] == false {
                    continue;
                }
                let beat = beats.iter().find(|(h, _)| *h == host).map(|(_, at)| *at);
                let mut doc = self.render_agent(agent.body.clone(), beat);
                doc["ha_state"] = state.clone();
                out.push(doc);
            }
        }
        Ok(json!({"agents": out}))
    }

    /// `GET /v2.0/agents/{id}/l3-routers`.
    pub async fn l3_agent_routers(&self, ctx: &Context, agent: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_l3-routers", &Default::default())?;
        let ids: Vec<String> = {
            let mut tx = self.read().await?;
            let (_, host) = self.l3_agent(&mut tx, agent).await?;
            let mut ids: Vec<String> = Vec::new();
            for scope in [HOST_SCOPE, STANDBY_SCOPE] {
                ids.extend(
                    claims(&mut tx, scope)
                        .await?
                        .into_iter()
                        .filter(|(_, h)| *h == host)
                        .map(|(r, _)| r),
                );
            }
            ids
        };
        if ids.is_empty() {
            return Ok(json!({"routers": []}));
        }
        let pairs: Vec<(String, String)> = ids.into_iter().map(|i| ("id".to_string(), i)).collect();
        let page = self.list(ctx, &super::routers::COLLECTION, &pairs).await?;
        let routers: Vec<Value> = page.items.into_iter().map(Value::Object).collect();
        Ok(json!({ "routers": routers }))
    }

    /// `POST /v2.0/agents/{id}/l3-routers` with `{"router_id": ...}`: the agent hosts the
    /// router. A legacy router hosted elsewhere is refused (409); for an HA router the agent
    /// becomes the active host if there is none, else the standby.
    pub async fn add_router_to_l3_agent(
        &self,
        ctx: &Context,
        agent: &str,
        body: Value,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "create_l3-router", &Default::default())?;
        let router = body
            .get("router_id")
            .and_then(Value::as_str)
            .filter(|r| neutrino_types::attrs::is_uuid(r))
            .ok_or_else(|| ApiError::bad_request("Invalid input for router_id"))?
            .to_string();
        let mut tx = self.write().await?;
        let (agent_rec, host) = self.l3_agent(&mut tx, agent).await?;
        if agent_rec.body["admin_state_up"] == false
            || agent_rec.body["configurations"]["l3"] == false
            || (is_role_entry(&agent_rec.body) && agent_rec.body["agent_type"] != L3_AGENT_TYPE)
        {
            return Err(invalid_agent(agent));
        }
        let mut rec = self.existing_router(&mut tx, &router).await?;
        super::relock(&mut tx, &mut rec).await?;
        let hosting = self.hosting(&mut tx, &rec).await?;
        if hosting.iter().any(|(h, _)| *h == host) {
            return Ok(Value::Null);
        }
        let active = hosting.first().map(|(h, _)| h.clone());
        match (is_ha(&rec.body), active) {
            (false, Some(other)) => {
                let other_id = tx
                    .list("agent", &Default::default())
                    .await
                    .map_err(db)?
                    .into_iter()
                    .filter(|a| s(&a.body, "host") == other)
                    .max_by_key(|a| a.body["agent_type"] == L3_AGENT_TYPE)
                    .map(|a| a.id)
                    .unwrap_or(other);
                return Err(ApiError::conflict(
                    "RouterHostedByL3Agent",
                    format!(
                        "The router {router} has been already hosted by the L3 Agent {other_id}."
                    ),
                ));
            }
            (false, None) => self.set_router_host(&mut tx, &router, &host).await?,
            (true, None) => {
                self.set_router_host(&mut tx, &router, &host).await?;
                self.set_standby(&mut tx, &rec, Some(&host), None).await?;
            }
            (true, Some(active)) => {
                self.set_standby(&mut tx, &rec, Some(&active), Some(&host))
                    .await?
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(Value::Null)
    }

    /// `DELETE /v2.0/agents/{id}/l3-routers/{router}`: the agent stops hosting the router.
    /// An HA router's standby takes over when the active host is removed; a router without
    /// hosts stays unscheduled until an agent registers (HA routers: until the next
    /// rescheduling pass) or it is added by hand.
    pub async fn remove_router_from_l3_agent(
        &self,
        ctx: &Context,
        agent: &str,
        router: &str,
    ) -> ApiResult<()> {
        self.check_rule(ctx, "delete_l3-router", &Default::default())?;
        let mut tx = self.write().await?;
        let (_, host) = self.l3_agent(&mut tx, agent).await?;
        let mut rec = self.existing_router(&mut tx, router).await?;
        super::relock(&mut tx, &mut rec).await?;
        let hosting = self.hosting(&mut tx, &rec).await?;
        if !hosting.iter().any(|(h, _)| *h == host) {
            return Ok(());
        }
        let rest: Vec<String> = hosting
            .into_iter()
            .map(|(h, _)| h)
            .filter(|h| *h != host)
            .collect();
        let active = rest.first().cloned();
        self.set_router_host(&mut tx, router, active.as_deref().unwrap_or_default())
            .await?;
        if is_ha(&rec.body) {
            self.set_standby(&mut tx, &rec, active.as_deref(), None)
                .await?;
        }
        tx.commit().await.map_err(db)
    }
}

impl App {
    /// The host that serves DHCP for a network and its agent's id; `None` without alive agents.
    pub(super) async fn dhcp_host(
        &self,
        tx: &mut Tx,
        network: &str,
    ) -> ApiResult<Option<(String, String)>> {
        let hosts = self.agent_hosts(tx, "dhcp").await?;
        let net = tx.get("network", network).await.map_err(db)?;
        let hosts = self
            .hosts_in_hinted_zones(tx, hosts, net.as_ref().map(|n| &n.body))
            .await?;
        let hosts = self
            .hosts_reaching(tx, hosts, &[network.to_string()])
            .await?;
        let Some(host) = pick_host(&hosts, network) else {
            return Ok(None);
        };
        let agent = tx
            .claim_owner(&format!("agent:{AGENT_TYPE}"), &host)
            .await
            .map_err(db)?
            .unwrap_or_default();
        Ok(Some((host, agent)))
    }

    /// Gives every network that needs one its DHCP port (after an agent registered).
    pub(crate) async fn schedule_dhcp(&self) -> ApiResult<()> {
        let mut tx = self.write().await?;
        let networks = tx.list("network", &Selector::default()).await.map_err(db)?;
        for net in networks {
            self.sync_dhcp_port(&mut tx, &net.id).await?;
        }
        tx.commit().await.map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::plan_hosts;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|h| h.to_string()).collect()
    }

    fn plan(
        ha: bool,
        move_dead: bool,
        active: Option<&str>,
        standby: Option<&str>,
        alive: &[&str],
    ) -> (Option<String>, Option<String>) {
        plan_hosts("r", ha, move_dead, active, standby, &hosts(alive))
    }

    #[test]
    fn alive_hosts_stay() {
        let p = plan(true, true, Some("a"), Some("b"), &["a", "b", "c"]);
        assert_eq!(p, (Some("a".into()), Some("b".into())));
        assert_eq!(
            plan(false, true, Some("a"), None, &["a", "b"]),
            (Some("a".into()), None)
        );
    }

    #[test]
    fn dead_active_goes_to_the_standby_and_a_new_standby_is_picked() {
        let p = plan(true, true, Some("a"), Some("b"), &["b", "c"]);
        assert_eq!(p, (Some("b".into()), Some("c".into())));
        // Only the standby is left: it runs alone.
        assert_eq!(
            plan(true, true, Some("a"), Some("b"), &["b"]),
            (Some("b".into()), None)
        );
        // Both gone: any alive host.
        assert_eq!(
            plan(true, true, Some("a"), Some("b"), &["c"]),
            (Some("c".into()), None)
        );
        // Nobody alive: nothing moves.
        assert_eq!(
            plan(true, true, Some("a"), Some("b"), &[]),
            (Some("a".into()), None)
        );
    }

    #[test]
    fn new_and_legacy_routers() {
        let (active, standby) = plan(true, true, None, None, &["a", "b", "c"]);
        let (active, standby) = (active.unwrap(), standby.unwrap());
        assert_ne!(active, standby);
        // Stable: planning again changes nothing.
        let again = plan(true, true, Some(&active), Some(&standby), &["a", "b", "c"]);
        assert_eq!(again, (Some(active), Some(standby)));
        // A legacy router on a dead host stays unless moving is allowed; it never gets a
        // standby.
        assert_eq!(
            plan(false, false, Some("a"), None, &["b"]),
            (Some("a".into()), None)
        );
        assert_eq!(
            plan(false, true, Some("a"), None, &["b"]),
            (Some("b".into()), None)
        );
    }
}
