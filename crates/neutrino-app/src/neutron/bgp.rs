//! BGP dynamic routing, wire-compatible with neutron-dynamic-routing: `/v2.0/bgp-speakers`
//! (with the actions `add_bgp_peer`, `remove_bgp_peer`, `add_gateway_network`,
//! `remove_gateway_network` and `get_advertised_routes`), `/v2.0/bgp-peers`, and the
//! scheduling of speakers to BGP dynamic routing agents (`bgp_dragent_scheduler`:
//! `/v2.0/agents/{id}/bgp-drinstances`, `/v2.0/bgp-speakers/{id}/bgp-dragents`). Admin-only
//! by default policy, as upstream.
//!
//! A speaker's bound peers and networks are lists in its own document (`peers`,
//! `networks`). An add locks the peer's (network's) row before the speaker's, and deleting a
//! peer (network) locks its own row before it removes itself from the speakers, so a delete
//! and a new binding serialise; deletes cascade silently, as upstream's foreign keys.
//!
//! The agent hosting a speaker is the claim `bgp-dragent` keyed by the agent's id (an agent
//! hosts at most one speaker, upstream's primary key), owned by the speaker: deleting the
//! speaker releases it with `release_owned("bgp", id)`. A new speaker goes to one alive,
//! enabled BGP agent that hosts nothing ([`pick_dragent`], upstream's chance scheduler).
//!
//! What a speaker advertises is computed on every call by
//! [`neutrino_types::bgp::advertised_routes`] from the stored documents.

use async_trait::async_trait;
use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::is_uuid;
use neutrino_types::bgp as spec;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::kind::{apply_changes, FamilyKind, Kind};
use super::{lock_existing, relock, s, Collection, Doc, View};
use crate::agents::{epoch_secs, pick_host, BGP_AGENT_TYPE, BGP_DRAGENT_SCOPE};
use crate::{db, App, Context};

/// The claim scope of speaker-to-agent bindings (key: agent id, owner: speaker id).
const DRAGENT: &str = BGP_DRAGENT_SCOPE;

/// `/v2.0/bgp-speakers`.
pub(crate) static SPEAKERS: Collection = Collection::family(
    "bgp-speakers",
    &BgpKind::new("bgp_speaker", spec::BGP_SPEAKER),
);

/// `/v2.0/bgp-peers`.
pub(crate) static PEERS: Collection =
    Collection::family("bgp-peers", &BgpKind::new("bgp_peer", spec::BGP_PEER));

/// Marks the neutron-dynamic-routing kinds.
struct Bgp;

/// A BGP speaker or peer (`resource` tells them apart).
type BgpKind = FamilyKind<Bgp>;

/// One BGP agent as the scheduler sees it.
#[derive(Clone, Debug)]
pub(crate) struct DrAgent {
    pub id: String,
    pub alive: bool,
    pub admin_state_up: bool,
    /// Hosts a speaker already (an agent hosts at most one).
    pub hosting: bool,
}

/// The agent a new speaker goes to: one of the alive, enabled agents hosting nothing,
/// chosen by a hash of the speaker id (upstream's chance scheduler; as every agent hosts at
/// most one speaker, it is also the least loaded). `None` when there is none.
pub(crate) fn pick_dragent(agents: &[DrAgent], speaker: &str) -> Option<String> {
    let mut free: Vec<String> = agents
        .iter()
        .filter(|a| a.alive && a.admin_state_up && !a.hosting)
        .map(|a| a.id.clone())
        .collect();
    free.sort();
    pick_host(&free, speaker)
}

/// 400 `BadRequest` of the speaker actions' bodies.
fn bad_body(msg: String) -> ApiError {
    ApiError::bad("BadRequest", format!("Bad bgp-speaker request: {msg}."))
}

/// The id named by `key` in an action body (400 when absent, null or not a UUID).
fn id_in(body: &Value, key: &str) -> ApiResult<String> {
    match body.get(key) {
        None | Some(Value::Null) => Err(bad_body(format!("{key} must be specified"))),
        Some(Value::String(id)) if is_uuid(id) => Ok(id.clone()),
        Some(Value::String(other)) => Err(bad_body(format!("'{other}' is not a valid UUID"))),
        Some(other) => Err(bad_body(format!("'{other}' is not a valid UUID"))),
    }
}

fn ids(doc: &Value, key: &str) -> Vec<String> {
    doc[key]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Stores `bound` as the speaker's `key` list (`peers`, `networks`).
async fn store_bound(
    tx: &mut Tx,
    rec: &mut Record,
    key: &str,
    bound: Vec<String>,
) -> ApiResult<()> {
    rec.body[key] = json!(bound);
    tx.update("bgp_speaker", &rec.id, &rec.body)
        .await
        .map_err(db)?;
    Ok(())
}

/// Takes `id` out of the (freshly locked) speaker's `key` list; `missing` is the error
/// when the speaker does not name it.
async fn unbind_one(
    tx: &mut Tx,
    rec: &mut Record,
    key: &str,
    id: &str,
    missing: impl FnOnce() -> ApiError,
) -> ApiResult<()> {
    relock(tx, rec).await?;
    let mut bound = ids(&rec.body, key);
    if !bound.iter().any(|b| b == id) {
        return Err(missing());
    }
    bound.retain(|b| b != id);
    store_bound(tx, rec, key, bound).await
}

#[async_trait]
impl Kind for BgpKind {
    fn render(&self, _view: &View, _ctx: &Context, _rec: &Record, doc: &mut Doc) {
        if self.resource == "bgp_peer" {
            doc.remove("password");
            return;
        }
        for key in ["peers", "networks"] {
            if !doc.get(key).is_some_and(Value::is_array) {
                doc.insert(key.into(), json!([]));
            }
        }
    }

    fn check_request(&self, body: &Doc) -> ApiResult<()> {
        match self.resource {
            "bgp_speaker" => spec::check_speaker(body),
            _ => spec::check_peer(body),
        }
    }

    async fn create(
        &self,
        _app: &App,
        _tx: &mut Tx,
        _ctx: &Context,
        body: &mut Doc,
    ) -> ApiResult<Option<String>> {
        if self.resource == "bgp_speaker" {
            body.insert("peers".into(), json!([]));
            body.insert("networks".into(), json!([]));
            return Ok(None);
        }
        let empty = body
            .get("password")
            .is_none_or(|p| p.as_str().is_none_or(str::is_empty));
        if body.get("auth_type").and_then(Value::as_str) == Some("md5") && empty {
            return Err(ApiError::bad(
                "InvalidBgpPeerMd5Authentication",
                "A password must be supplied when using auth_type md5.",
            ));
        }
        Ok(None)
    }

    async fn after_create(
        &self,
        app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
    ) -> ApiResult<()> {
        if self.resource != "bgp_speaker" {
            return Ok(());
        }
        app.schedule_speaker(tx, &rec.id).await.map(drop)
    }

    async fn update(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        changes: Doc,
    ) -> ApiResult<()> {
        relock(tx, rec).await?;
        let password = changes.get("password").is_some_and(|p| !p.is_null());
        if self.resource == "bgp_peer" && password && s(&rec.body, "auth_type") == "none" {
            return Err(ApiError::new(
                404,
                "BgpPeerNotAuthenticated",
                format!("BGP peer {} not authenticated.", rec.id),
            ));
        }
        apply_changes(rec, changes);
        Ok(())
    }

    async fn delete(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &Record,
        _view: &View,
    ) -> ApiResult<()> {
        let mut rec = rec.clone();
        relock(tx, &mut rec).await?;
        match self.resource {
            "bgp_speaker" => tx.release_owned("bgp", &rec.id).await.map_err(db),
            _ => unbind(tx, "peers", &rec.id).await,
        }
    }

    fn actions(&self) -> &'static [&'static str] {
        match self.resource {
            "bgp_speaker" => &[
                "add_bgp_peer",
                "remove_bgp_peer",
                "add_gateway_network",
                "remove_gateway_network",
            ],
            _ => &[],
        }
    }

    async fn action(
        &self,
        _app: &App,
        tx: &mut Tx,
        _ctx: &Context,
        rec: &mut Record,
        action: &str,
        body: Value,
    ) -> ApiResult<Value> {
        let speaker = rec.id.clone();
        match action {
            "add_bgp_peer" => {
                let peer_id = id_in(&body, "bgp_peer_id")?;
                let peer = lock_existing(tx, "bgp_peer", &peer_id, || {
                    ApiError::not_found("bgp_peer", &peer_id)
                })
                .await?;
                relock(tx, rec).await?;
                let mut bound = ids(&rec.body, "peers");
                let peer_ip = s(&peer.body, "peer_ip");
                for other in &bound {
                    let same_ip = tx
                        .get("bgp_peer", other)
                        .await
                        .map_err(db)?
                        .is_some_and(|p| s(&p.body, "peer_ip") == peer_ip);
                    if same_ip || *other == peer_id {
                        return Err(ApiError::conflict(
                            "DuplicateBgpPeerIpException",
                            format!(
                                "BGP Speaker {speaker} is already configured to peer with a BGP \
                                 Peer at {peer_ip}, it cannot peer with BGP Peer {peer_id}."
                            ),
                        ));
                    }
                }
                bound.push(peer_id.clone());
                store_bound(tx, rec, "peers", bound).await?;
                Ok(json!({ "bgp_peer_id": peer_id }))
            }
            "remove_bgp_peer" => {
                let peer_id = id_in(&body, "bgp_peer_id")?;
                unbind_one(tx, rec, "peers", &peer_id, || {
                    ApiError::new(
                        404,
                        "BgpSpeakerPeerNotAssociated",
                        format!("BGP peer {peer_id} is not associated with BGP speaker {speaker}."),
                    )
                })
                .await?;
                // Upstream's plugin returns nothing here (unlike the other three).
                Ok(Value::Null)
            }
            "add_gateway_network" => {
                let net = id_in(&body, "network_id")?;
                lock_existing(tx, "network", &net, || ApiError::not_found("network", &net)).await?;
                relock(tx, rec).await?;
                let mut bound = ids(&rec.body, "networks");
                if bound.contains(&net) {
                    return Err(ApiError::conflict(
                        "BgpSpeakerNetworkBindingError",
                        format!("Network {net} is already bound to BgpSpeaker {speaker}."),
                    ));
                }
                bound.push(net.clone());
                store_bound(tx, rec, "networks", bound).await?;
                Ok(json!({ "network_id": net }))
            }
            "remove_gateway_network" => {
                let net = id_in(&body, "network_id")?;
                unbind_one(tx, rec, "networks", &net, || {
                    ApiError::new(
                        404,
                        "BgpSpeakerNetworkNotAssociated",
                        format!("Network {net} is not associated with BGP speaker {speaker}."),
                    )
                })
                .await?;
                Ok(json!({ "network_id": net }))
            }
            _ => Err(ApiError::no_such_url()),
        }
    }

    async fn get_action(
        &self,
        app: &App,
        ctx: &Context,
        id: &str,
        action: &str,
    ) -> ApiResult<Value> {
        if self.resource != "bgp_speaker" || action != "get_advertised_routes" {
            return Err(ApiError::no_such_url());
        }
        let speaker = app.show(ctx, &SPEAKERS, id, &[]).await?;
        app.check_rule(ctx, "get_advertised_routes", &speaker)?;
        let routes = app.advertised_routes(&Value::Object(speaker)).await?;
        Ok(json!({ "advertised_routes": routes }))
    }
}

/// The stored documents of a kind.
async fn bodies(tx: &mut Tx, kind: &str) -> ApiResult<Vec<Value>> {
    Ok(tx
        .list(kind, &Selector::default())
        .await
        .map_err(db)?
        .into_iter()
        .map(|r| r.body)
        .collect())
}

/// The speakers some agent hosts (owners of `bgp-dragent` claims; repeated when several).
async fn hosted_speakers(tx: &mut Tx) -> ApiResult<Vec<String>> {
    let all = [(String::new(), "\u{10ffff}".to_string())];
    Ok(tx
        .claims_in_ranges(DRAGENT, &all)
        .await
        .map_err(db)?
        .into_iter()
        .map(|(_, owner)| owner)
        .collect())
}

/// Removes `id` from the `key` list (`peers`, `networks`) of every speaker naming it.
async fn unbind(tx: &mut Tx, key: &str, id: &str) -> ApiResult<()> {
    let speakers = tx
        .list("bgp_speaker", &Selector::default())
        .await
        .map_err(db)?;
    for mut sp in speakers {
        let mut bound = ids(&sp.body, key);
        if !bound.iter().any(|b| b == id) {
            continue;
        }
        bound.retain(|b| b != id);
        store_bound(tx, &mut sp, key, bound).await?;
    }
    Ok(())
}

impl App {
    /// Unbinds a network that is being deleted from every speaker (upstream's cascade).
    pub(super) async fn drop_bgp_of_network(&self, tx: &mut Tx, network: &str) -> ApiResult<()> {
        tx.lock("network", network).await.map_err(db)?;
        unbind(tx, "networks", network).await
    }

    /// The routes a rendered speaker advertises, from the stored topology.
    async fn advertised_routes(&self, speaker: &Value) -> ApiResult<Vec<Value>> {
        let mut tx = self.read().await?;
        let subnets = bodies(&mut tx, "subnet").await?;
        let subnetpools = bodies(&mut tx, "subnetpool").await?;
        let routers = bodies(&mut tx, "router").await?;
        let ports = bodies(&mut tx, "port").await?;
        let floatingips = bodies(&mut tx, "floatingip").await?;
        let topo = spec::Topology {
            subnets: &subnets,
            subnetpools: &subnetpools,
            routers: &routers,
            ports: &ports,
            floatingips: &floatingips,
        };
        Ok(spec::advertised_routes(speaker, &topo)
            .iter()
            .map(spec::Route::to_json)
            .collect())
    }

    /// The BGP agents with their liveness and whether they host a speaker.
    async fn dragents(&self, tx: &mut Tx) -> ApiResult<Vec<(Record, DrAgent)>> {
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let now = epoch_secs();
        let agents = tx.list("agent", &Selector::default()).await.map_err(db)?;
        let mut out = Vec::new();
        for a in agents {
            if a.body["agent_type"] != BGP_AGENT_TYPE {
                continue;
            }
            let host = s(&a.body, "host");
            let alive = beats
                .iter()
                .any(|(h, at)| h == host && self.alive_at(*at, now));
            let hosting = tx.claim_owner(DRAGENT, &a.id).await.map_err(db)?.is_some();
            let d = DrAgent {
                id: a.id.clone(),
                alive,
                admin_state_up: a.body["admin_state_up"] != false,
                hosting,
            };
            out.push((a, d));
        }
        Ok(out)
    }

    /// Binds a speaker to a free BGP agent, if there is one; returns the agent's id.
    pub(super) async fn schedule_speaker(
        &self,
        tx: &mut Tx,
        speaker: &str,
    ) -> ApiResult<Option<String>> {
        let mut agents: Vec<DrAgent> = self
            .dragents(tx)
            .await?
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        // A concurrent create may take the agent first: then the next free one.
        while let Some(agent) = pick_dragent(&agents, speaker) {
            if tx.claim(DRAGENT, &agent, speaker).await.map_err(db)? {
                return Ok(Some(agent));
            }
            agents
                .iter_mut()
                .filter(|a| a.id == agent)
                .for_each(|a| a.hosting = true);
        }
        Ok(None)
    }

    /// Schedules every speaker no agent hosts (after a BGP agent registered, and after each
    /// pass of [`App::reschedule_bgp_speakers`]).
    pub(crate) async fn schedule_bgp_speakers(&self) -> ApiResult<usize> {
        let mut tx = self.write().await?;
        let speakers = tx
            .list("bgp_speaker", &Selector::default())
            .await
            .map_err(db)?;
        if speakers.is_empty() {
            return Ok(0);
        }
        let hosted = hosted_speakers(&mut tx).await?;
        let mut n = 0;
        for sp in speakers {
            if hosted.contains(&sp.id) {
                continue;
            }
            tx.lock("bgp_speaker", &sp.id).await.map_err(db)?;
            // Another server may have scheduled it meanwhile.
            if hosted_speakers(&mut tx).await?.contains(&sp.id) {
                continue;
            }
            if self.schedule_speaker(&mut tx, &sp.id).await?.is_some() {
                n += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    /// One pass of BGP agent failover (upstream's periodic `remove_bgp_speaker_from_down_
    /// dragents` and `schedule_all_unscheduled_bgp_speakers`): a speaker hosted by an enabled
    /// agent whose heartbeat is older than the agent down time leaves it, and goes to a live,
    /// enabled BGP agent hosting nothing unless another agent still hosts it; with none, it
    /// waits unscheduled until one comes. Then unhosted speakers are scheduled. Returns how
    /// many speakers left a dead agent or were scheduled. Safe to run on several servers.
    pub async fn reschedule_bgp_speakers(&self) -> ApiResult<usize> {
        let (down, free) = {
            let mut tx = self.read().await?;
            let (mut down, mut free) = (Vec::new(), false);
            for (_, agent) in self.dragents(&mut tx).await? {
                free |= agent.alive && agent.admin_state_up && !agent.hosting;
                if agent.alive || !agent.admin_state_up || !agent.hosting {
                    continue;
                }
                if let Some(sp) = tx.claim_owner(DRAGENT, &agent.id).await.map_err(db)? {
                    down.push((agent.id, sp));
                }
            }
            (down, free)
        };
        let mut n = 0;
        for (agent, speaker) in down {
            match self.move_off_dead_dragent(&agent, &speaker).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%speaker, error = %e.message, "BGP speaker rescheduling failed")
                }
            }
        }
        // No write transaction on every pass where no agent could take a speaker.
        if free {
            n += self.schedule_bgp_speakers().await?;
        }
        Ok(n)
    }

    /// Unbinds `speaker` from the dead `agent` and schedules it anew, under the speaker's row
    /// lock; false when another server did it already.
    async fn move_off_dead_dragent(&self, agent: &str, speaker: &str) -> ApiResult<bool> {
        let mut tx = self.write().await?;
        tx.lock("bgp_speaker", speaker).await.map_err(db)?;
        if tx.claim_owner(DRAGENT, agent).await.map_err(db)?.as_deref() != Some(speaker) {
            return Ok(false);
        }
        tx.release(DRAGENT, agent).await.map_err(db)?;
        // Upstream's scheduler gives a speaker one agent: none when another still hosts it.
        let to = if hosted_speakers(&mut tx).await?.iter().any(|s| s == speaker) {
            None
        } else {
            self.schedule_speaker(&mut tx, speaker).await?
        };
        tx.commit().await.map_err(db)?;
        match to {
            Some(to) => {
                tracing::info!(%speaker, from = %agent, %to, "BGP speaker moves off a dead agent")
            }
            None => {
                tracing::warn!(%speaker, from = %agent, "BGP speaker leaves a dead agent; no eligible agent found")
            }
        }
        Ok(true)
    }

    /// An agent by id (404 `AgentNotFound`), and whether it is a BGP agent that is enabled.
    async fn bgp_agent(&self, tx: &mut Tx, agent: &str) -> ApiResult<(Record, bool)> {
        let rec = tx
            .get("agent", agent)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("agent", agent))?;
        let ok = rec.body["agent_type"] == BGP_AGENT_TYPE;
        Ok((rec, ok))
    }

    /// `POST /v2.0/agents/{id}/bgp-drinstances` with `{"bgp_speaker_id": ...}`.
    pub async fn add_speaker_to_dragent(
        &self,
        ctx: &Context,
        agent: &str,
        body: Value,
    ) -> ApiResult<Value> {
        self.check_rule(ctx, "add_bgp_speaker_to_dragent", &Default::default())?;
        let speaker = body
            .get("bgp_speaker_id")
            .and_then(Value::as_str)
            .filter(|id| is_uuid(id))
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Invalid input for bgp_speaker_id: a BGP speaker's UUID is required",
                )
            })?;
        let mut tx = self.write().await?;
        let (rec, is_bgp) = self.bgp_agent(&mut tx, agent).await?;
        if !is_bgp || rec.body["admin_state_up"] == false {
            return Err(dragent_invalid(agent));
        }
        tx.lock("bgp_speaker", &speaker).await.map_err(db)?;
        if tx.get("bgp_speaker", &speaker).await.map_err(db)?.is_none() {
            return Err(ApiError::not_found("bgp_speaker", &speaker));
        }
        if !tx.claim(DRAGENT, agent, &speaker).await.map_err(db)? {
            return Err(ApiError::conflict(
                "DrAgentAssociationError",
                format!("BgpDrAgent {agent} is already associated to a BGP speaker."),
            ));
        }
        tx.commit().await.map_err(db)?;
        Ok(Value::Null)
    }

    /// `DELETE /v2.0/agents/{id}/bgp-drinstances/{speaker}`.
    pub async fn remove_speaker_from_dragent(
        &self,
        ctx: &Context,
        agent: &str,
        speaker: &str,
    ) -> ApiResult<()> {
        self.check_rule(ctx, "remove_bgp_speaker_from_dragent", &Default::default())?;
        let mut tx = self.write().await?;
        let (_, is_bgp) = self.bgp_agent(&mut tx, agent).await?;
        if !is_bgp {
            return Err(dragent_invalid(agent));
        }
        if tx.claim_owner(DRAGENT, agent).await.map_err(db)?.as_deref() != Some(speaker) {
            return Err(ApiError::new(
                404,
                "DrAgentNotHostingBgpSpeaker",
                format!("BGP speaker {speaker} is not hosted by the BgpDrAgent {agent}."),
            ));
        }
        tx.release(DRAGENT, agent).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// `GET /v2.0/agents/{id}/bgp-drinstances`: the speakers the agent hosts.
    pub async fn dragent_speakers(&self, ctx: &Context, agent: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "list_bgp_speaker_on_dragent", &Default::default())?;
        let hosted = {
            let mut tx = self.read().await?;
            self.bgp_agent(&mut tx, agent).await?;
            tx.claim_owner(DRAGENT, agent).await.map_err(db)?
        };
        let Some(speaker) = hosted else {
            return Ok(json!({"bgp_speakers": []}));
        };
        let pairs = [("id".to_string(), speaker)];
        let page = self.list(ctx, &SPEAKERS, &pairs).await?;
        let items: Vec<Value> = page.items.into_iter().map(Value::Object).collect();
        Ok(json!({ "bgp_speakers": items }))
    }

    /// `GET /neutrino/v1/bgp-speakers?host=H` (agents): what the BGP agent of host `H` needs
    /// to speak for the speakers bound to it: `{"bgp_speakers": [{"id", "local_as",
    /// "ip_version", "peers": [{"id", "peer_ip", "remote_as", "auth_type", "password"}],
    /// "advertised_routes": [...]}]}` (the peers' passwords included: the agent configures
    /// them; the caller is an admin or the service). Empty when the host has no enabled BGP
    /// agent entry or it hosts nothing. A binding is a claim, not a resource, so the agent
    /// asks again periodically besides after every change of the feed.
    pub async fn host_bgp_speakers(&self, ctx: &Context, host: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "get_feed", &Default::default())?;
        ctx.check_host(host)?;
        let mut out = Vec::new();
        let speakers = {
            let mut tx = self.read().await?;
            let agent = tx
                .claim_owner(&format!("agent:{BGP_AGENT_TYPE}"), host)
                .await
                .map_err(db)?;
            let mut speakers = Vec::new();
            if let Some(agent) = agent {
                let enabled = tx
                    .get("agent", &agent)
                    .await
                    .map_err(db)?
                    .is_some_and(|a| a.body["admin_state_up"] != false);
                let hosted = tx.claim_owner(DRAGENT, &agent).await.map_err(db)?;
                if let (true, Some(sp)) = (enabled, hosted) {
                    if let Some(rec) = tx.get("bgp_speaker", &sp).await.map_err(db)? {
                        let mut peers = Vec::new();
                        for peer in ids(&rec.body, "peers") {
                            if let Some(p) = tx.get("bgp_peer", &peer).await.map_err(db)? {
                                peers.push(json!({
                                    "id": p.id,
                                    "peer_ip": p.body["peer_ip"],
                                    "remote_as": p.body["remote_as"],
                                    "auth_type": p.body["auth_type"],
                                    "password": p.body["password"],
                                }));
                            }
                        }
                        speakers.push((rec.body, peers));
                    }
                }
            }
            speakers
        };
        for (body, peers) in speakers {
            let routes = self.advertised_routes(&body).await?;
            out.push(json!({
                "id": body["id"],
                "name": body["name"],
                "local_as": body["local_as"],
                "ip_version": body["ip_version"],
                "peers": peers,
                "advertised_routes": routes,
            }));
        }
        Ok(json!({ "bgp_speakers": out }))
    }

    /// `GET /v2.0/bgp-speakers/{id}/bgp-dragents`: the agents hosting the speaker, alive or
    /// not (`[]` for an unknown speaker, as upstream).
    pub async fn speaker_dragents(&self, ctx: &Context, speaker: &str) -> ApiResult<Value> {
        self.check_rule(ctx, "list_dragent_hosting_bgp_speaker", &Default::default())?;
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let mut tx = self.read().await?;
        let mut out = Vec::new();
        for (rec, _) in self.dragents(&mut tx).await? {
            if tx
                .claim_owner(DRAGENT, &rec.id)
                .await
                .map_err(db)?
                .as_deref()
                != Some(speaker)
            {
                continue;
            }
            let host = s(&rec.body, "host");
            let beat = beats.iter().find(|(h, _)| h == host).map(|(_, at)| *at);
            out.push(self.render_agent(rec.body, beat));
        }
        Ok(json!({ "agents": out }))
    }
}

fn dragent_invalid(agent: &str) -> ApiError {
    ApiError::new(
        404,
        "DrAgentInvalid",
        format!("BgpDrAgent {agent} is invalid or has been disabled."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, alive: bool, up: bool, hosting: bool) -> DrAgent {
        DrAgent {
            id: id.into(),
            alive,
            admin_state_up: up,
            hosting,
        }
    }

    #[test]
    fn only_free_alive_enabled_agents_are_picked() {
        let agents = [
            agent("a", false, true, false),
            agent("b", true, false, false),
            agent("c", true, true, true),
            agent("d", true, true, false),
        ];
        for speaker in ["s1", "s2", "s3"] {
            assert_eq!(pick_dragent(&agents, speaker).as_deref(), Some("d"));
        }
        assert_eq!(pick_dragent(&agents[..3], "s1"), None);
        assert_eq!(pick_dragent(&[], "s1"), None);
    }

    #[test]
    fn speakers_spread_over_free_agents() {
        let agents: Vec<DrAgent> = (0..4)
            .map(|i| agent(&format!("agent{i}"), true, true, false))
            .collect();
        let picked: std::collections::BTreeSet<String> = (0..40)
            .filter_map(|i| pick_dragent(&agents, &format!("speaker-{i}")))
            .collect();
        assert!(picked.len() > 1, "{picked:?}");
        // Stable: the same speaker gets the same agent.
        assert_eq!(pick_dragent(&agents, "x"), pick_dragent(&agents, "x"));
    }
}
