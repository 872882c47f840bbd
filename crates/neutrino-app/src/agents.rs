//! Host agents and what they consume: registration and heartbeats (`GET /v2.0/agents` shows
//! them, `alive` from the last heartbeat), the desired-state snapshot and the change feed they
//! follow, and the port status they report back (DOWN → ACTIVE once plugged).
//!
//! Every call here is admin-only: agents log in with the cloud's admin (or a service) account.

use std::sync::Arc;

use neutrino_store::{ChangePage, Record, Selector};
use neutrino_types::attrs::{self, Op};
use neutrino_types::query;
use neutrino_types::resources::AGENT;
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use crate::{db, new_id, now, App, Context};

/// `agent_type` of `neutrino agent`.
pub const AGENT_TYPE: &str = "Neutrino agent";
/// The Neutron agents one `neutrino agent` also appears as, an entry per role it plays, so
/// that clients and schedulers looking for an "L3 agent" or a "DHCP agent" find one
/// (`openstack network agent list --agent-type l3`): `(agent_type, topic, the
/// configurations key that turns the role off)`. Each entry has its own id and
/// `admin_state_up` (an L3 entry switched off takes its host out of router scheduling);
/// liveness is the host's.
///
/// The BGP dynamic routing agent entry is opt-in (see [`OPT_IN_ROLES`]): only hosts whose
/// agent reports `"bgp": true` (`neutrino agent --bgp`) have one.
pub const ROLE_AGENTS: &[(&str, &str, &str)] = &[
    ("L3 agent", "l3_agent", "l3"),
    ("DHCP agent", "dhcp_agent", "dhcp"),
    (BGP_AGENT_TYPE, "bgp_dragent", "bgp"),
];
/// The configurations keys of [`ROLE_AGENTS`] a host must turn on (the others are on unless
/// turned off).
pub const OPT_IN_ROLES: &[&str] = &["bgp"];
/// `agent_type` of the role entry that hosts BGP speakers (neutron-dynamic-routing's
/// `neutron-bgp-dragent`).
pub const BGP_AGENT_TYPE: &str = "BGP dynamic routing agent";

/// Whether an agent record is one of the role entries of [`ROLE_AGENTS`].
pub(crate) fn is_role_entry(body: &Value) -> bool {
    ROLE_AGENTS.iter().any(|(t, ..)| body["agent_type"] == *t)
}

/// The `configurations` of a role entry: what Neutron's agent of that type reports that
/// clients read (an L3 agent's `agent_mode`: a Neutrino host runs distributed routers and
/// central SNAT both).
fn role_configurations(agent_type: &str) -> Value {
    match agent_type {
        "L3 agent" => json!({"agent_mode": "dvr_snat"}),
        BGP_AGENT_TYPE => json!({"bgp_speakers": 0, "bgp_peers": 0, "advertise_routes": 0}),
        _ => json!({"dhcp_driver": "dnsmasq"}),
    }
}
/// The claim scope binding a BGP speaker (owner) to the agent hosting it (key).
pub(crate) const BGP_DRAGENT_SCOPE: &str = "bgp-dragent";
/// Default seconds without a heartbeat after which an agent is dead (Neutron's default).
pub const AGENT_DOWN_SECS: i64 = 75;
/// Resource kinds a host agent mirrors: the snapshot holds them and the feed carries them.
pub const FEED_KINDS: &[&str] = &[
    "agent",
    "network",
    "subnet",
    "subnetpool",
    "address_scope",
    "port",
    "security_group",
    "security_group_rule",
    // Rules may name an address group: the firewall needs its addresses.
    "address_group",
    "router",
    "floatingip",
    // Port forwardings: routers DNAT their floating IPs' ports.
    "port_forwarding",
    // NDP proxies: routers answer for internal IPv6 addresses on their gateway.
    "ndp_proxy",
    // Conntrack helpers: routers assign them to their ports' connections.
    "conntrack_helper",
    // Local IPs: a port associated with one answers for its address on its host.
    "local_ip",
    "local_ip_port_association",
    // Service function chaining, for the dataplane that will render chains.
    "flow_classifier",
    "port_pair",
    "port_pair_group",
    "port_chain",
    "service_graph",
    // L2 gateways: a gateway host bridges connected networks to its interfaces.
    "l2_gateway",
    "l2_gateway_connection",
    // MACs learned behind software gateways' interfaces (static FDB entries elsewhere).
    "l2gw_learned_macs",
    // Trunks: the agent of a parent's host wires the subports and reports the status.
    "trunk",
    // Border gateways: the gateway host tunnels connected networks to remote gateways.
    "l2_remote_gateway",
    "l2_remote_gateway_connection",
    "l2_remote_mac",
    // Security-group logs: the firewall logs the covered ports' traffic.
    "log",
    // L3 metering: routers count their labels' traffic.
    "metering_label",
    "metering_label_rule",
    // QoS: the policies and the rules the dataplane enforces on ports.
    "policy",
    "bandwidth_limit_rule",
    "dscp_marking_rule",
];

/// A new agent record (agents belong to no project).
fn agent_record(id: String, body: Value) -> Record {
    Record {
        kind: "agent".into(),
        id,
        project_id: String::new(),
        parent_id: None,
        body,
    }
}

/// Port statuses an agent may report.
const PORT_STATUSES: &[&str] = &["ACTIVE", "DOWN", "BUILD", "ERROR"];

/// One of `hosts` for the resource `key`, by a hash of the key: spreads resources, needs no
/// counting, and stays put while the set of hosts does.
pub(crate) fn pick_host(hosts: &[String], key: &str) -> Option<String> {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let n = u64::try_from(hosts.len()).ok().filter(|n| *n > 0)?;
    hosts.get(usize::try_from(hash % n).ok()?).cloned()
}

/// Whether an agent with `configurations` can carry `network` (the Linux bridge mechanism
/// driver's check): overlay networks anywhere, flat and VLAN networks only where the agent's
/// `interface_mappings` name their physical network.
pub(crate) fn host_maps_network(configurations: &Value, network: &Value) -> bool {
    match network["provider:network_type"].as_str() {
        Some("flat" | "vlan") => network["provider:physical_network"]
            .as_str()
            .is_some_and(|p| configurations["interface_mappings"][p].is_string()),
        _ => true,
    }
}

/// The host an agent call's body reports for (`"host"`, a non-empty string of at most 255
/// characters); a host credential's caller may only report for its own host (403).
pub(crate) fn reporting_host<'a>(ctx: &Context, body: &'a Value) -> ApiResult<&'a str> {
    let host = body
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .ok_or_else(|| ApiError::bad_request("Invalid input for host"))?;
    ctx.check_host(host)?;
    Ok(host)
}

/// The list an agent report carries under `key` (400 when it is not a list).
pub(crate) fn report_list<'a>(body: &'a Value, key: &str) -> ApiResult<&'a Vec<Value>> {
    body.get(key).and_then(Value::as_array).ok_or_else(|| {
        ApiError::bad_request(format!("Invalid input for {key}: a list is required"))
    })
}

/// Creates the role entries a Neutrino agent's configuration asks for and drops those it
/// turns off (`"l3": false`); entries an admin deleted come back with the next report, as
/// Neutron's agents register again.
/// Returns whether a BGP agent entry was created.
async fn sync_role_entries(
    tx: &mut neutrino_store::Tx,
    host: &str,
    main: &Value,
    zone_changed: bool,
) -> ApiResult<bool> {
    let mut bgp_new = false;
    for &(agent_type, topic, key) in ROLE_AGENTS {
        let scope = format!("agent:{agent_type}");
        let existing = tx.claim_owner(&scope, host).await.map_err(db)?;
        let wanted = if OPT_IN_ROLES.contains(&key) {
            main["configurations"][key] == true
        } else {
            main["configurations"][key] != false
        };
        let binary = if agent_type == BGP_AGENT_TYPE {
            json!("neutron-bgp-dragent")
        } else {
            main["binary"].clone()
        };
        match (existing, wanted) {
            (None, true) => {
                let id = new_id();
                tx.claim(&scope, host, &id).await.map_err(db)?;
                let body = json!({
                    "id": id, "agent_type": agent_type, "binary": binary, "host": host,
                    "topic": topic, "admin_state_up": true, "description": null,
                    "configurations": role_configurations(agent_type),
                    "availability_zone": main["availability_zone"], "resources_synced": null,
                    "created_at": now(), "started_at": main["started_at"],
                });
                let rec = agent_record(id, body);
                tx.insert(&rec).await.map_err(db)?;
                bgp_new |= agent_type == BGP_AGENT_TYPE;
            }
            (Some(id), true) if zone_changed => {
                // The host moved to another zone: so do its roles.
                if let Some(mut entry) = tx.get("agent", &id).await.map_err(db)? {
                    if entry.body["availability_zone"] != main["availability_zone"] {
                        entry.body["availability_zone"] = main["availability_zone"].clone();
                        tx.update("agent", &id, &entry.body).await.map_err(db)?;
                    }
                }
            }
            (Some(id), false) => {
                tx.release(&scope, host).await.map_err(db)?;
                tx.release(BGP_DRAGENT_SCOPE, &id).await.map_err(db)?;
                tx.delete("agent", &id).await.map_err(db)?;
            }
            _ => {}
        }
    }
    Ok(bgp_new)
}

/// The `configurations` of a BGP agent entry given what its host's agent reports
/// (`configurations.bgp_dragent`): upstream's dragent counts (`bgp_speakers`, `bgp_peers`,
/// `advertise_routes`) and the Neutrino extension `neutrino:peer_states` (peer id → the BGP
/// session state); anything else, or of the wrong type, is dropped.
fn bgp_dragent_configurations(status: &Value) -> Value {
    let mut conf = role_configurations(BGP_AGENT_TYPE);
    for key in ["bgp_speakers", "bgp_peers", "advertise_routes"] {
        if let Some(n) = status[key].as_u64() {
            conf[key] = json!(n);
        }
    }
    let states: Map<String, Value> = status["neutrino:peer_states"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(id, state)| id.len() <= 64 && state.as_str().is_some_and(|s| s.len() <= 32))
        .take(1024)
        .map(|(id, state)| (id.clone(), state.clone()))
        .collect();
    conf["neutrino:peer_states"] = Value::Object(states);
    conf
}

/// Records the BGP status an agent reports in its host's BGP agent entry (a write only when
/// it changed).
async fn update_bgp_status(
    tx: &mut neutrino_store::Tx,
    host: &str,
    status: &Value,
) -> ApiResult<()> {
    let scope = format!("agent:{BGP_AGENT_TYPE}");
    let Some(id) = tx.claim_owner(&scope, host).await.map_err(db)? else {
        return Ok(());
    };
    let Some(mut rec) = tx.get("agent", &id).await.map_err(db)? else {
        return Ok(());
    };
    let conf = bgp_dragent_configurations(status);
    if rec.body["configurations"] != conf {
        rec.body["configurations"] = conf;
        tx.update("agent", &rec.id, &rec.body).await.map_err(db)?;
    }
    Ok(())
}

/// A change page with the documents as JSON, or a sign that the reader must resync.
#[derive(Clone)]
pub enum FeedPage {
    /// The changes after the reader's revision.
    Changes(Value),
    /// The reader's revision is compacted away (or from another database): snapshot again.
    Resync {
        /// The oldest revision the feed can still continue from.
        compacted: i64,
    },
}

pub(crate) fn epoch_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A mirrored document as agents get it: port pairs always carry their health attributes
/// (`UNKNOWN` for those created before the attributes existed).
fn feed_body(kind: &str, mut body: Value) -> Value {
    if kind == "port_pair" {
        if let Value::Object(doc) = &mut body {
            neutrino_types::sfc_status::fill_health(doc);
        }
    }
    body
}

fn page_json(page: ChangePage) -> Value {
    let changes: Vec<Value> = page
        .changes
        .into_iter()
        .map(|c| {
            let body = c.record.map(|r| feed_body(&c.kind, r.body));
            json!({"revision": c.revision, "kind": c.kind, "id": c.id, "body": body})
        })
        .collect();
    json!({"revision": page.revision, "more": page.more, "changes": changes})
}

impl App {
    /// An agent reports in: registers it (or refreshes its configuration) and records a
    /// heartbeat. Only a changed registration is a write the feed carries.
    pub async fn report_agent(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.check_rule(ctx, "report_agent", &Map::new())?;
        let doc = body
            .get("agent")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("Resource body required: agent"))?;
        let text = |key: &str| -> ApiResult<String> {
            match doc.get(key) {
                Some(Value::String(v)) if !v.is_empty() && v.len() <= 255 => Ok(v.clone()),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid input for {key}: a non-empty string is required"
                ))),
            }
        };
        let host = text("host")?;
        ctx.check_host(&host)?;
        let agent_type = doc
            .get("agent_type")
            .and_then(Value::as_str)
            .unwrap_or(AGENT_TYPE)
            .to_string();
        let binary = doc
            .get("binary")
            .and_then(Value::as_str)
            .unwrap_or("neutrino-agent")
            .to_string();
        let mut configurations = match doc.get("configurations") {
            None => json!({}),
            Some(Value::Object(c)) => Value::Object(c.clone()),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Invalid input for configurations: a dictionary is required",
                ))
            }
        };
        let started_at = doc
            .get("started_at")
            .and_then(Value::as_str)
            .map(str::to_string);
        let zone = match doc.get("availability_zone") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(z)) if !z.is_empty() && z.len() <= 255 => json!(z),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Invalid input for availability_zone: a non-empty string of at most 255 characters is required",
                ))
            }
        };
        // What a Neutrino agent says about its BGP speakers belongs to its BGP agent entry,
        // not to its own record (which changes only when the agent's setup does).
        let bgp_status = configurations
            .as_object_mut()
            .and_then(|c| c.remove("bgp_dragent"))
            .filter(|_| agent_type == AGENT_TYPE);
        let mut tx = self.write().await?;
        let scope = format!("agent:{agent_type}");
        let existing = match tx.claim_owner(&scope, &host).await.map_err(db)? {
            Some(id) => tx.get("agent", &id).await.map_err(db)?,
            None => None,
        };
        let mut fresh = false;
        let mut zone_changed = false;
        let rec = match existing {
            Some(mut rec) => {
                let same = rec.body["configurations"] == configurations
                    && rec.body["availability_zone"] == zone
                    && rec.body["binary"] == json!(binary)
                    && started_at
                        .as_ref()
                        .is_none_or(|s| rec.body["started_at"] == json!(s));
                if !same {
                    zone_changed = rec.body["availability_zone"] != zone;
                    rec.body["configurations"] = configurations;
                    rec.body["availability_zone"] = zone;
                    rec.body["binary"] = json!(binary);
                    if let Some(s) = &started_at {
                        rec.body["started_at"] = json!(s);
                    }
                    tx.update("agent", &rec.id, &rec.body).await.map_err(db)?;
                }
                rec
            }
            None => {
                fresh = true;
                let id = new_id();
                tx.claim(&scope, &host, &id).await.map_err(db)?;
                let t = now();
                let body = json!({
                    "id": id, "agent_type": agent_type, "binary": binary, "host": host,
                    "topic": "N/A", "admin_state_up": true, "description": null,
                    "configurations": configurations, "availability_zone": zone,
                    "resources_synced": null, "created_at": t,
                    "started_at": started_at.unwrap_or(t),
                });
                let rec = agent_record(id, body);
                tx.insert(&rec).await.map_err(db)?;
                rec
            }
        };
        let mut bgp_entry_new = false;
        if agent_type == AGENT_TYPE {
            bgp_entry_new = sync_role_entries(&mut tx, &host, &rec.body, zone_changed).await?;
            if let Some(status) = &bgp_status {
                update_bgp_status(&mut tx, &host, status).await?;
            }
        }
        tx.commit().await.map_err(db)?;
        let at = epoch_secs();
        self.inner.store.heartbeat(&host, at).await.map_err(db)?;
        if fresh {
            self.schedule_for_new_agents(&host).await?;
        } else if bgp_entry_new {
            let n = self.schedule_bgp_speakers().await?;
            if n > 0 {
                tracing::info!(%host, speakers = n, "scheduled BGP speakers");
            }
        }
        Ok(json!({"agent": self.render_agent(rec.body, Some(at))}))
    }

    /// Schedules routers, DHCP and BGP speakers after new agents registered. When a site's
    /// hosts register together, one pass serves every agent committed before it started:
    /// a registration returns once a pass that saw it has run, without a pass of its own.
    async fn schedule_for_new_agents(&self, host: &str) -> ApiResult<()> {
        use std::sync::atomic::Ordering;
        let ticket = self.inner.schedule_wanted.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.inner.schedule_done.lock().await;
        if *done >= ticket {
            return Ok(());
        }
        let covers = self.inner.schedule_wanted.load(Ordering::SeqCst);
        let bound = self.schedule_unhosted_routers().await?;
        if bound > 0 {
            tracing::info!(%host, ports = bound, "scheduled routers on new agents");
        }
        self.schedule_dhcp().await?;
        self.reschedule_routers().await?;
        let n = self.schedule_bgp_speakers().await?;
        if n > 0 {
            tracing::info!(%host, speakers = n, "scheduled BGP speakers");
        }
        *done = covers;
        Ok(())
    }

    /// Whether an agent whose last heartbeat was at `beat` is alive at `now`.
    pub(crate) fn alive_at(&self, beat: i64, now: i64) -> bool {
        now - beat <= self.config().agent_down_secs
    }

    pub(crate) fn render_agent(&self, mut body: Value, heartbeat: Option<i64>) -> Value {
        let at = heartbeat.unwrap_or(0);
        body["heartbeat_timestamp"] = json!(timestamp(at));
        body["alive"] = json!(self.alive_at(at, epoch_secs()));
        body
    }

    async fn agents_rendered(&self) -> ApiResult<Vec<Map<String, Value>>> {
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let mut tx = self.read().await?;
        let records = tx.list("agent", &Selector::default()).await.map_err(db)?;
        Ok(records
            .into_iter()
            .map(|r| {
                let host = r.body["host"].as_str().unwrap_or_default().to_string();
                let beat = beats.iter().find(|(h, _)| *h == host).map(|(_, at)| *at);
                match self.render_agent(r.body, beat) {
                    Value::Object(doc) => doc,
                    _ => Map::new(),
                }
            })
            .collect())
    }

    /// Hosts that can run a service (`l3`, `dhcp`): alive, enabled agents whose
    /// configuration does not turn the service off, sorted.
    pub(crate) async fn agent_hosts(
        &self,
        tx: &mut neutrino_store::Tx,
        service: &str,
    ) -> ApiResult<Vec<String>> {
        let beats = self.inner.store.heartbeats().await.map_err(db)?;
        let now = epoch_secs();
        let agents = tx.list("agent", &Selector::default()).await.map_err(db)?;
        // A role entry of this service switched off takes its host out.
        let role = ROLE_AGENTS.iter().find(|(.., key)| *key == service);
        let switched_off = |host: &str| {
            agents.iter().any(|a| {
                role.is_some_and(|(t, ..)| a.body["agent_type"] == *t)
                    && a.body["host"] == host
                    && a.body["admin_state_up"] == false
            })
        };
        let mut hosts: Vec<String> = agents
            .iter()
            .filter(|a| {
                !is_role_entry(&a.body)
                    && a.body["admin_state_up"] != false
                    && a.body["configurations"][service] != false
            })
            .filter_map(|a| a.body["host"].as_str().map(str::to_string))
            .filter(|h| !switched_off(h))
            .filter(|h| {
                beats
                    .iter()
                    .any(|(bh, at)| bh == h && self.alive_at(*at, now))
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        Ok(hosts)
    }

    /// The `configurations` of the agent on `host` (`null` when none is registered).
    async fn agent_configurations(
        &self,
        tx: &mut neutrino_store::Tx,
        host: &str,
    ) -> ApiResult<Value> {
        let scope = format!("agent:{AGENT_TYPE}");
        let Some(id) = tx.claim_owner(&scope, host).await.map_err(db)? else {
            return Ok(Value::Null);
        };
        Ok(tx
            .get("agent", &id)
            .await
            .map_err(db)?
            .map(|r| r.body["configurations"].clone())
            .unwrap_or(Value::Null))
    }

    /// Those of `hosts` whose agent can carry every one of `networks` (flat and VLAN
    /// networks need the physical network in the agent's mappings); all of them when none
    /// can, so the ports are bound and visibly fail rather than wait forever.
    pub(crate) async fn hosts_reaching(
        &self,
        tx: &mut neutrino_store::Tx,
        hosts: Vec<String>,
        networks: &[String],
    ) -> ApiResult<Vec<String>> {
        let mut provider = Vec::new();
        for id in networks {
            if let Some(net) = tx.get("network", id).await.map_err(db)? {
                if !host_maps_network(&Value::Null, &net.body) {
                    provider.push(net.body);
                }
            }
        }
        if provider.is_empty() {
            return Ok(hosts);
        }
        let mut able = Vec::new();
        for host in &hosts {
            let conf = self.agent_configurations(tx, host).await?;
            if provider.iter().all(|n| host_maps_network(&conf, n)) {
                able.push(host.clone());
            }
        }
        Ok(if able.is_empty() { hosts } else { able })
    }

    /// `GET /v2.0/agents`: the agents `get_agent` lets the caller see (by default admins see
    /// all, others an empty list, as in Neutron).
    pub async fn list_agents(
        &self,
        ctx: &Context,
        pairs: &[(String, String)],
    ) -> ApiResult<crate::ListResult> {
        let mut q = query::parse(pairs, AGENT, &[])?;
        // Agent types match without regard to case, as upstream's (MySQL) listing does:
        // clients ask for "DHCP Agent" and find "DHCP agent".
        let types: Option<Vec<String>> = q.filter("agent_type").map(|vals| {
            vals.iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .collect()
        });
        q.filters.retain(|(k, _)| k != "agent_type");
        let type_matches = |d: &Map<String, Value>| {
            types.as_ref().is_none_or(|t| {
                let own = d
                    .get("agent_type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                t.contains(&own.to_lowercase())
            })
        };
        let items = self
            .agents_rendered()
            .await?
            .into_iter()
            .filter(|d| type_matches(d) && query::matches(d, &q) && self.may_see_agent(ctx, d))
            .collect();
        let page = query::page(items, &q, "agent")?;
        let fields: Vec<String> = q.fields.clone();
        Ok(crate::ListResult {
            items: page
                .items
                .into_iter()
                .map(|d| query::project(d, &fields))
                .collect(),
            next: page.next,
            previous: page.previous,
        })
    }

    /// `GET /v2.0/agents/{id}`.
    pub async fn show_agent(&self, ctx: &Context, id: &str) -> ApiResult<Value> {
        self.visible_agent(ctx, id)
            .await
            .map(|d| json!({"agent": d}))
    }

    /// Whether `get_agent` lets the caller see a rendered agent.
    fn may_see_agent(&self, ctx: &Context, agent: &Map<String, Value>) -> bool {
        self.permits(ctx, "get_agent", agent)
    }

    /// The rendered agent `id`, when the caller may see it (404 otherwise, as for a missing
    /// one).
    async fn visible_agent(&self, ctx: &Context, id: &str) -> ApiResult<Map<String, Value>> {
        self.agents_rendered()
            .await?
            .into_iter()
            .find(|d| d.get("id").and_then(Value::as_str) == Some(id))
            .filter(|d| self.may_see_agent(ctx, d))
            .ok_or_else(|| ApiError::not_found("agent", id))
    }

    /// Refuses a write to agent `id` unless `rule` allows it (404 when the caller cannot
    /// even see it, as Neutron answers).
    async fn check_agent_write(&self, ctx: &Context, id: &str, rule: &str) -> ApiResult<()> {
        let agent = self.visible_agent(ctx, id).await?;
        self.check_rule(ctx, rule, &agent)
    }

    /// `PUT /v2.0/agents/{id}`: `admin_state_up` and `description`.
    pub async fn update_agent(&self, ctx: &Context, id: &str, body: Value) -> ApiResult<Value> {
        self.check_agent_write(ctx, id, "update_agent").await?;
        let doc = body
            .get("agent")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("Resource body required: agent"))?;
        let changes = attrs::validate(AGENT, doc, Op::Update)?;
        let mut tx = self.write().await?;
        let mut rec = tx
            .get("agent", id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        for (k, v) in changes {
            rec.body[k.as_str()] = v;
        }
        tx.update("agent", id, &rec.body).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.show_agent(ctx, id).await
    }

    /// `DELETE /v2.0/agents/{id}`: forgets an agent (it registers again if it reports).
    pub async fn delete_agent(&self, ctx: &Context, id: &str) -> ApiResult<()> {
        self.check_agent_write(ctx, id, "delete_agent").await?;
        let mut tx = self.write().await?;
        let rec = tx
            .get("agent", id)
            .await
            .map_err(db)?
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        let agent_type = rec.body["agent_type"].as_str().unwrap_or(AGENT_TYPE);
        let host = rec.body["host"].as_str().unwrap_or_default();
        tx.release(&format!("agent:{agent_type}"), host)
            .await
            .map_err(db)?;
        // A deleted BGP agent hosts no speaker any more.
        tx.release(BGP_DRAGENT_SCOPE, id).await.map_err(db)?;
        tx.delete("agent", id).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// Every resource a host agent mirrors, and the revision to follow the feed from.
    pub async fn feed_snapshot(&self, ctx: &Context) -> ApiResult<Value> {
        self.check_rule(ctx, "get_feed", &Map::new())?;
        let snap = self.inner.store.snapshot(FEED_KINDS).await.map_err(db)?;
        let resources: Map<String, Value> = snap
            .records
            .into_iter()
            .map(|(kind, recs)| {
                let docs: Vec<Value> = recs.into_iter().map(|r| feed_body(&kind, r.body)).collect();
                (kind, Value::from(docs))
            })
            .collect();
        Ok(json!({"revision": snap.revision, "resources": resources}))
    }

    /// The snapshot serialised, shared by every agent asking at the same revision (built
    /// once per revision; see [`crate::admission`]).
    pub async fn feed_snapshot_shared(
        &self,
        ctx: &Context,
    ) -> ApiResult<crate::admission::SharedSnapshot> {
        self.check_rule(ctx, "get_feed", &Map::new())?;
        let newest = *self.feed_subscribe().borrow();
        self.inner
            .snapshot_cache
            .get_or_build(newest, || async {
                let doc = self.feed_snapshot(ctx).await?;
                let revision = doc["revision"].as_i64().unwrap_or_default();
                let body = serde_json::to_vec(&doc)
                    .map_err(|e| ApiError::unavailable(format!("snapshot: {e}")))?;
                Ok(crate::admission::SharedSnapshot {
                    revision,
                    body: Arc::new(body),
                })
            })
            .await
    }

    /// Whether a new watch of the change feed may start now; `Err(after)`: not before
    /// `after` (a start-up storm is being let in at the configured pace).
    pub fn admit_watch(&self) -> Result<(), std::time::Duration> {
        self.inner.watch_admission.admit()
    }

    /// Up to `limit` changes after `since` of the mirrored kinds.
    pub async fn feed_changes(&self, ctx: &Context, since: i64, limit: i64) -> ApiResult<FeedPage> {
        self.check_rule(ctx, "get_feed", &Map::new())?;
        let limit = limit.clamp(1, 10_000);
        // Watchers woken by one commit all ask for the same page: one reads it, the others
        // get it from the cache.
        let newest = *self.feed_subscribe().borrow();
        self.inner
            .feed_pages
            .get_or_read(since, limit, newest, || {
                self.read_feed_changes(since, limit)
            })
            .await
    }

    async fn read_feed_changes(&self, since: i64, limit: i64) -> ApiResult<FeedPage> {
        let page = self
            .inner
            .store
            .changes_since(since, FEED_KINDS, limit)
            .await
            .map_err(db)?;
        Ok(match page {
            Ok(page) => FeedPage::Changes(page_json(page)),
            Err(c) => FeedPage::Resync {
                compacted: c.compacted,
            },
        })
    }

    /// Wakes whenever a newer revision is committed (by this server or, on PostgreSQL,
    /// another one).
    pub fn feed_subscribe(&self) -> watch::Receiver<i64> {
        self.inner.store.feed().subscribe()
    }

    /// How many watches of the change feed are open now.
    pub fn feed_watchers(&self) -> usize {
        self.inner.store.feed().watchers()
    }

    /// How many agents are alive and how many dead, now.
    pub async fn agent_liveness(&self) -> ApiResult<(usize, usize)> {
        let mut agents = self.agents_rendered().await?;
        // One per host: the role entries share their host's liveness.
        agents.retain(|a| !ROLE_AGENTS.iter().any(|(t, ..)| a["agent_type"] == *t));
        let alive = agents.iter().filter(|a| a["alive"] == json!(true)).count();
        Ok((alive, agents.len() - alive))
    }

    /// Drops old feed entries, keeping the newest `keep`.
    pub async fn compact_feed(&self, keep: i64) -> ApiResult<i64> {
        self.inner.store.compact_feed(keep).await.map_err(db)
    }

    /// An agent reports the state of ports bound to its host:
    /// `{"host": H, "revision"?: R, "ports": [{"id", "status", "vif_type"?}]}`. Reports for
    /// ports bound elsewhere (a stale agent after a move) or gone are skipped; returns how
    /// many changed. With the barrier on, an ACTIVE report makes the port wait until every
    /// host that must know it has applied revision R (see [`crate::barrier`]).
    pub async fn report_port_status(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.check_rule(ctx, "report_port_status", &Map::new())?;
        let host = reporting_host(ctx, &body)?;
        let reports = report_list(&body, "ports")?;
        let mut wanted = Vec::with_capacity(reports.len());
        for r in reports {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
            let status = r.get("status").and_then(Value::as_str).unwrap_or_default();
            if !attrs::is_uuid(id) || !PORT_STATUSES.contains(&status) {
                return Err(ApiError::bad_request(format!(
                    "Invalid port status report: {r}"
                )));
            }
            let vif = r
                .get("vif_type")
                .and_then(Value::as_str)
                .unwrap_or("bridge")
                .to_string();
            wanted.push((id.to_string(), status.to_string(), vif));
        }
        // The revision the agent's report was computed from (the barrier's: every host
        // that must know a port applies it before the port is ACTIVE); an agent that does
        // not say gets the current one, which is at least as new.
        let revision = match body.get("revision") {
            None | Some(Value::Null) => self.inner.store.current_revision().await.map_err(db)?,
            Some(v) => v.as_i64().filter(|r| *r >= 0).ok_or_else(|| {
                ApiError::bad_request("Invalid input for revision: a non-negative integer")
            })?,
        };
        let barrier = self.config().active_barrier;
        let mut tx = self.write().await?;
        let waiting: std::collections::BTreeMap<String, String> = if barrier {
            tx.port_barriers()
                .await
                .map_err(db)?
                .into_iter()
                .map(|(p, h, _)| (p, h))
                .collect()
        } else {
            Default::default()
        };
        let mut changed = 0;
        let mut to_wait = 0;
        // The reporting agent's configuration, read once when a provider port needs it.
        let mut agent_conf: Option<Value> = None;
        // Whether that agent can carry a network, by network id.
        let mut bindable: std::collections::BTreeMap<String, bool> = Default::default();
        for chunk in wanted.chunks(500) {
            let sel = Selector {
                ids: Some(chunk.iter().map(|w| w.0.clone()).collect()),
                ..Default::default()
            };
            for mut rec in tx.list("port", &sel).await.map_err(db)? {
                let Some((_, mut status, mut vif)) = chunk.iter().find(|w| w.0 == rec.id).cloned()
                else {
                    continue;
                };
                // A distributed router interface is bound to no host: it is up once any
                // host that realises it has it plugged (upstream: any ACTIVE binding).
                let distributed = rec.body["device_owner"]
                    == "network:router_interface_distributed"
                    && rec.body["binding:host_id"] == "";
                // A bare-metal server's port is bound to its server, where no agent runs:
                // it is up once a host that carries its provider network filters it.
                let baremetal = rec.body["binding:vnic_type"] == "baremetal"
                    && rec.body["binding:host_id"] != ""
                    && rec.body["binding:host_id"].as_str() != Some(host);
                // A container nested in a VM is up once its VM's host filters it.
                let nested_parent = (rec.body["device_owner"] == "compute:container-nested")
                    .then(|| rec.body["binding:profile"]["neutrino:nested_parent"].as_str())
                    .flatten();
                // Both are filtered on a device they share (an uplink, the VM's tap).
                let shared_device = baremetal || nested_parent.is_some();
                if let Some(parent) = nested_parent {
                    let on_host = tx
                        .get("port", parent)
                        .await
                        .map_err(db)?
                        .is_some_and(|p| p.body["binding:host_id"] == host);
                    if !(on_host && status == "ACTIVE") {
                        continue;
                    }
                } else if baremetal {
                    let net_id = rec.body["network_id"].as_str().unwrap_or_default();
                    if agent_conf.is_none() {
                        agent_conf = Some(self.agent_configurations(&mut tx, host).await?);
                    }
                    let conf = agent_conf.as_ref().unwrap_or(&Value::Null);
                    let net = tx.get("network", net_id).await.map_err(db)?;
                    let carries = net.is_some_and(|n| {
                        n.body["provider:physical_network"]
                            .as_str()
                            .is_some_and(|p| !p.is_empty())
                            && host_maps_network(conf, &n.body)
                    });
                    if !(carries && status == "ACTIVE") {
                        continue;
                    }
                } else if rec.body["binding:host_id"].as_str() != Some(host)
                    && !(distributed && status == "ACTIVE")
                {
                    continue;
                }
                if vif == "bridge" {
                    let net_id = rec.body["network_id"].as_str().unwrap_or_default();
                    let ok = match bindable.get(net_id) {
                        Some(ok) => *ok,
                        None => {
                            let net = tx.get("network", net_id).await.map_err(db)?;
                            if agent_conf.is_none() {
                                agent_conf = Some(self.agent_configurations(&mut tx, host).await?);
                            }
                            let conf = agent_conf.as_ref().unwrap_or(&Value::Null);
                            let ok = net.is_some_and(|n| host_maps_network(conf, &n.body));
                            bindable.insert(net_id.to_string(), ok);
                            ok
                        }
                    };
                    if !ok {
                        (status, vif) = ("ERROR".to_string(), "binding_failed".to_string());
                    }
                }
                // Plugged here: ACTIVE once the other hosts caught up (the barrier), unless
                // it already is. Any other report ends a wait.
                if barrier
                    && !distributed
                    && !shared_device
                    && status == "ACTIVE"
                    && rec.body["status"] != "ACTIVE"
                {
                    if waiting.get(&rec.id).map(String::as_str) != Some(host) {
                        tx.put_port_barrier(&rec.id, host, revision)
                            .await
                            .map_err(db)?;
                    }
                    to_wait += 1;
                    status = rec.body["status"].as_str().unwrap_or("DOWN").to_string();
                } else if waiting.contains_key(&rec.id) {
                    tx.delete_port_barrier(&rec.id).await.map_err(db)?;
                }
                if rec.body["status"] == json!(status) && rec.body["binding:vif_type"] == json!(vif)
                {
                    continue;
                }
                rec.body["status"] = json!(status);
                rec.body["binding:vif_type"] = json!(vif);
                rec.body["binding:vif_details"] = if vif == "unbound" {
                    json!({})
                } else {
                    json!({"port_filter": true, "connectivity": "l2"})
                };
                crate::neutron::bump(&mut rec.body);
                tx.update("port", &rec.id, &rec.body).await.map_err(db)?;
                changed += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        let activated = if to_wait > 0 {
            self.barrier_sweep().await?
        } else {
            0
        };
        Ok(json!({"updated": changed, "waiting": to_wait, "activated": activated}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_networks_bind_only_where_mapped() {
        let conf = json!({"interface_mappings": {"physnet1": "eth1"}});
        let net =
            |t: &str, p: &str| json!({"provider:network_type": t, "provider:physical_network": p});
        assert!(host_maps_network(&conf, &net("flat", "physnet1")));
        assert!(host_maps_network(&conf, &net("vlan", "physnet1")));
        assert!(!host_maps_network(&conf, &net("vlan", "physnet2")));
        assert!(!host_maps_network(&json!({}), &net("flat", "physnet1")));
        assert!(!host_maps_network(&Value::Null, &net("flat", "physnet1")));
        assert!(host_maps_network(
            &Value::Null,
            &json!({"provider:network_type": "vxlan"})
        ));
    }
}
