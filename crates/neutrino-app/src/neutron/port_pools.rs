//! Port pools (Neutrino extension, Kuryr's port pools): per (host, network, set of security
//! groups) a number of ports created in advance, wired and filtered by the host's agent in
//! its parking namespace, which the CNI plugin's ADD takes instead of creating a port.
//!
//! - `port_pool` records (admins only, not mirrored to agents): `host`, `network_id`,
//!   `security_groups` (a set; absent: the project's default group), `size`, `project_id`
//!   (the owner of its ports); shown with the computed `ready` (parked and ACTIVE),
//!   `building` (parked, not yet ACTIVE) and `in_use` (taken and not yet deleted) counts.
//! - Parked ports: `device_owner` `compute:container-pool`, `device_id` the pool id,
//!   `binding:host_id` the pool's host, `binding:profile` `{"neutrino:pool": id}`.
//! - [`App::refill_port_pools`] (a background task of the server, every second) tops every
//!   pool up to its size: one transaction per pool, which first locks the pool's row, so
//!   servers sharing a PostgreSQL database never fill one pool twice; a pool shrunk by an
//!   update loses its surplus ports the same way.
//! - [`App::take_pooled_port`] (`POST /v2.0/neutrino/port-pools/take`) in one transaction
//!   locks the matching pool's row, picks one parked port (ACTIVE ones first) and makes it
//!   the container's: `device_id`, `device_owner` `compute:container`, `name`,
//!   `binding:profile` `{neutrino:netns, neutrino:ifname, neutrino:pool}` and status DOWN
//!   until the agent moved its interface. The row lock serialises takes, so no port is
//!   handed out twice.

use std::collections::BTreeSet;

use neutrino_store::{Record, Selector, Tx};
use neutrino_types::attrs::{self, Op};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Map, Value};

use super::owners::{CONTAINER_OWNER, POOL_OWNER};
use super::view::Need;
use super::{bump, lock_existing, s, View};
use crate::{db, new_id, now, App, Context};

/// The store kind.
const KIND: &str = "port_pool";
/// The largest pool.
pub const MAX_POOL_SIZE: i64 = 256;
/// Most ports one refill transaction creates.
const BATCH: i64 = 32;
/// Longest host name accepted (Neutron's `binding:host_id` limit).
const MAX_HOST: usize = 255;

fn require_admin(ctx: &Context, action: &str) -> ApiResult<()> {
    if ctx.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(action))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "PortPoolNotFound",
        format!("Port pool {id} could not be found."),
    )
}

fn pool_body<'a>(body: &'a Value, key: &str) -> ApiResult<&'a Map<String, Value>> {
    body.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request(format!("Resource body required: {key}")))
}

fn size_of(v: Option<&Value>) -> ApiResult<i64> {
    v.and_then(Value::as_i64)
        .filter(|n| (0..=MAX_POOL_SIZE).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for size: an integer from 0 to {MAX_POOL_SIZE} is required"
            ))
        })
}

fn id_list(v: Option<&Value>, what: &str) -> ApiResult<Option<BTreeSet<String>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .filter(|s| attrs::is_uuid(s))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "Invalid input for {what}: a list of UUIDs is required"
                        ))
                    })
            })
            .collect::<ApiResult<BTreeSet<String>>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid input for {what}: a list of UUIDs is required"
        ))),
    }
}

fn host_of(v: Option<&Value>) -> ApiResult<String> {
    v.and_then(Value::as_str)
        .filter(|h| !h.is_empty() && h.len() <= MAX_HOST && !h.chars().any(char::is_control))
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid input for host: a non-empty string of at most {MAX_HOST} characters is required"
            ))
        })
}

fn groups_of(pool: &Value) -> BTreeSet<String> {
    pool["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// A pool's parked ports (ready or still being wired).
async fn parked(tx: &mut Tx, pool: &Record) -> ApiResult<Vec<Record>> {
    let sel = Selector {
        parent_ids: Some(vec![s(&pool.body, "network_id").to_string()]),
        roles: Some(vec![POOL_OWNER.to_string()]),
        ..Default::default()
    };
    Ok(tx
        .list("port", &sel)
        .await
        .map_err(db)?
        .into_iter()
        .filter(|p| s(&p.body, "device_id") == pool.id)
        .collect())
}

/// The ports containers took from the pool and still hold.
async fn taken(tx: &mut Tx, pool: &Record) -> ApiResult<usize> {
    let sel = Selector {
        parent_ids: Some(vec![s(&pool.body, "network_id").to_string()]),
        roles: Some(vec![CONTAINER_OWNER.to_string()]),
        ..Default::default()
    };
    Ok(tx
        .list("port", &sel)
        .await
        .map_err(db)?
        .iter()
        .filter(|p| p.body["binding:profile"]["neutrino:pool"] == json!(pool.id))
        .count())
}

impl App {
    async fn render_pool(&self, tx: &mut Tx, pool: &Record) -> ApiResult<Value> {
        let ports = parked(tx, pool).await?;
        let ready = ports
            .iter()
            .filter(|p| s(&p.body, "status") == "ACTIVE")
            .count();
        let mut doc = pool.body.clone();
        doc["ready"] = json!(ready);
        doc["building"] = json!(ports.len() - ready);
        doc["in_use"] = json!(taken(tx, pool).await?);
        Ok(doc)
    }

    /// `POST /v2.0/neutrino/port-pools` with `{"port_pool": {"host", "network_id",
    /// "security_groups"?, "size", "project_id"?}}` (admins). The pool fills in the
    /// background.
    pub async fn create_port_pool(&self, ctx: &Context, body: &Value) -> ApiResult<Value> {
        require_admin(ctx, "create_port_pool")?;
        let input = pool_body(body, "port_pool")?;
        if let Some(k) = input.keys().find(|k| {
            !matches!(
                k.as_str(),
                "host" | "network_id" | "security_groups" | "size" | "project_id" | "tenant_id"
            )
        }) {
            return Err(ApiError::bad_request(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let host = host_of(input.get("host"))?;
        let network = input
            .get("network_id")
            .and_then(Value::as_str)
            .filter(|n| attrs::is_uuid(n))
            .ok_or_else(|| {
                ApiError::bad_request("Invalid input for network_id: a UUID is required")
            })?
            .to_string();
        let size = size_of(input.get("size"))?;
        let groups = id_list(input.get("security_groups"), "security_groups")?;
        let project = match input.get("project_id").or_else(|| input.get("tenant_id")) {
            None | Some(Value::Null) => ctx.project_id.clone(),
            Some(Value::String(p)) if !p.is_empty() && p.len() <= 255 => p.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Invalid input for project_id: a non-empty string is required",
                ))
            }
        };
        let mut tx = self.write().await?;
        if tx.get("network", &network).await.map_err(db)?.is_none() {
            return Err(ApiError::not_found("network", &network));
        }
        let groups = match groups {
            Some(g) => {
                for id in &g {
                    if tx.get("security_group", id).await.map_err(db)?.is_none() {
                        return Err(ApiError::not_found("security_group", id));
                    }
                }
                g
            }
            None => BTreeSet::from([self.ensure_default_group(&mut tx, &project).await?]),
        };
        // One pool per (host, network, groups): a take must know which to use.
        let same = tx
            .list(KIND, &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .any(|p| {
                s(&p.body, "host") == host
                    && s(&p.body, "network_id") == network
                    && groups_of(&p.body) == groups
            });
        if same {
            return Err(ApiError::conflict(
                "PortPoolExists",
                format!(
                    "A port pool for host {host}, network {network} and these security groups exists."
                ),
            ));
        }
        let id = new_id();
        let doc = json!({
            "id": id, "host": host, "network_id": network, "security_groups": groups,
            "size": size, "project_id": project, "tenant_id": project, "created_at": now(),
        });
        let rec = Record {
            kind: KIND.to_string(),
            id: id.clone(),
            project_id: project,
            parent_id: Some(network),
            body: doc,
        };
        tx.insert(&rec).await.map_err(db)?;
        let out = self.render_pool(&mut tx, &rec).await?;
        tx.commit().await.map_err(db)?;
        tracing::info!(pool = %id, size, "port pool created");
        Ok(json!({ "port_pool": out }))
    }

    /// `GET /v2.0/neutrino/port-pools[?host=H&network_id=N]` (admins; others see none).
    pub async fn list_port_pools(
        &self,
        ctx: &Context,
        query: &[(String, String)],
    ) -> ApiResult<Value> {
        if !ctx.is_admin() {
            return Ok(json!({ "port_pools": [] }));
        }
        let mut tx = self.read().await?;
        let mut items = Vec::new();
        for rec in tx.list(KIND, &Selector::default()).await.map_err(db)? {
            let matches = query.iter().all(|(k, v)| match k.as_str() {
                "host" | "network_id" | "project_id" | "id" => s(&rec.body, k) == v,
                _ => true,
            });
            if matches {
                items.push(self.render_pool(&mut tx, &rec).await?);
            }
        }
        Ok(json!({ "port_pools": items }))
    }

    async fn visible_pool(&self, tx: &mut Tx, ctx: &Context, id: &str) -> ApiResult<Record> {
        if !ctx.is_admin() {
            return Err(not_found(id));
        }
        lock_existing(tx, KIND, id, || not_found(id)).await
    }

    /// `GET /v2.0/neutrino/port-pools/{id}` (admins; 404 for others).
    pub async fn show_port_pool(&self, ctx: &Context, id: &str) -> ApiResult<Value> {
        if !ctx.is_admin() {
            return Err(not_found(id));
        }
        let mut tx = self.read().await?;
        let rec = tx
            .get(KIND, id)
            .await
            .map_err(db)?
            .ok_or_else(|| not_found(id))?;
        Ok(json!({ "port_pool": self.render_pool(&mut tx, &rec).await? }))
    }

    /// `PUT /v2.0/neutrino/port-pools/{id}` with `{"port_pool": {"size"}}` (admins).
    pub async fn update_port_pool(
        &self,
        ctx: &Context,
        id: &str,
        body: &Value,
    ) -> ApiResult<Value> {
        let input = pool_body(body, "port_pool")?;
        if let Some(k) = input.keys().find(|k| k.as_str() != "size") {
            return Err(ApiError::bad_request(format!(
                "Cannot update read-only attribute {k}"
            )));
        }
        let size = size_of(input.get("size"))?;
        let mut tx = self.write().await?;
        let mut rec = self.visible_pool(&mut tx, ctx, id).await?;
        rec.body["size"] = json!(size);
        tx.update(KIND, id, &rec.body).await.map_err(db)?;
        let out = self.render_pool(&mut tx, &rec).await?;
        tx.commit().await.map_err(db)?;
        Ok(json!({ "port_pool": out }))
    }

    /// `DELETE /v2.0/neutrino/port-pools/{id}` (admins): the pool and its parked ports;
    /// ports containers took stay theirs.
    pub async fn delete_port_pool(&self, ctx: &Context, id: &str) -> ApiResult<()> {
        let mut tx = self.write().await?;
        let rec = self.visible_pool(&mut tx, ctx, id).await?;
        for port in parked(&mut tx, &rec).await? {
            self.remove_as_service(&mut tx, &port).await?;
        }
        tx.delete(KIND, id).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn remove_as_service(&self, tx: &mut Tx, port: &Record) -> ApiResult<()> {
        let coll = &super::ports::COLLECTION;
        let view = View::of(tx, coll, std::slice::from_ref(port), Need::Check).await?;
        self.remove(tx, &service(), coll, port, &view).await
    }

    /// `POST /v2.0/neutrino/port-pools/take` with `{"port": {"binding:host_id",
    /// "network_id", "security_groups"?, "device_id", "name"?, "binding:profile"}}`
    /// (admins): a parked port of the matching pool becomes the container's, in one
    /// transaction. 404 `PortPoolEmpty` when no pool matches or it has no parked port (the
    /// caller creates a port instead).
    pub async fn take_pooled_port(&self, ctx: &Context, body: &Value) -> ApiResult<Value> {
        require_admin(ctx, "take_pooled_port")?;
        let input = pool_body(body, "port")?;
        if let Some(k) = input.keys().find(|k| {
            !matches!(
                k.as_str(),
                "binding:host_id"
                    | "network_id"
                    | "security_groups"
                    | "device_id"
                    | "name"
                    | "binding:profile"
            )
        }) {
            return Err(ApiError::bad_request(format!(
                "Unrecognized attribute(s) '{k}'"
            )));
        }
        let host = host_of(input.get("binding:host_id"))?;
        let network = input
            .get("network_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("Invalid input for network_id"))?
            .to_string();
        let device = input
            .get("device_id")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty() && d.len() <= 255)
            .ok_or_else(|| ApiError::bad_request("Invalid input for device_id"))?
            .to_string();
        let name = match input.get("name") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(n)) if n.len() <= 255 => n.clone(),
            Some(_) => return Err(ApiError::bad_request("Invalid input for name")),
        };
        let mut profile = match input.get("binding:profile") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "Invalid input for binding:profile: an object is required",
                ))
            }
        };
        let groups = id_list(input.get("security_groups"), "security_groups")?;
        let empty = || {
            ApiError::new(
                404,
                "PortPoolEmpty",
                format!("No parked port for host {host} on network {network}."),
            )
        };
        let mut tx = self.write().await?;
        let groups = match groups {
            Some(g) => g,
            None => match tx
                .claim_owner("default-sg", &ctx.project_id)
                .await
                .map_err(db)?
            {
                Some(g) => BTreeSet::from([g]),
                None => return Err(empty()),
            },
        };
        let pool = tx
            .list(KIND, &Selector::default())
            .await
            .map_err(db)?
            .into_iter()
            .find(|p| {
                s(&p.body, "host") == host
                    && s(&p.body, "network_id") == network
                    && groups_of(&p.body) == groups
            })
            .ok_or_else(empty)?;
        // Takes (and refills) of one pool queue on its row.
        let pool = lock_existing(&mut tx, KIND, &pool.id, empty).await?;
        let mut ports = parked(&mut tx, &pool).await?;
        ports.sort_by_key(|p| {
            (
                s(&p.body, "status") != "ACTIVE",
                s(&p.body, "created_at").to_string(),
            )
        });
        let mut port = ports.into_iter().next().ok_or_else(empty)?;
        profile.insert("neutrino:pool".into(), json!(pool.id));
        let doc = &mut port.body;
        doc["device_id"] = json!(device);
        doc["device_owner"] = json!(CONTAINER_OWNER);
        doc["name"] = json!(name);
        doc["binding:profile"] = Value::Object(profile);
        // Down until the agent moved the interface into the container.
        doc["status"] = json!("DOWN");
        bump(doc);
        tx.update("port", &port.id, &port.body).await.map_err(db)?;
        let coll = &super::ports::COLLECTION;
        let view = View::of(&mut tx, coll, std::slice::from_ref(&port), Need::Render).await?;
        let out = self.render(&view, ctx, coll, &port);
        tx.commit().await.map_err(db)?;
        tracing::info!(pool = %pool.id, port = %port.id, %device, "pooled port taken");
        Ok(json!({ "port": out }))
    }

    /// Tops every pool up to its size (and trims a shrunk one); returns how many ports it
    /// created. Run by every server every second; safe concurrently (the pool row lock).
    pub async fn refill_port_pools(&self) -> ApiResult<usize> {
        // Only pools whose count is off take the write lock.
        let mut pools = Vec::new();
        {
            let mut tx = self.read().await?;
            for pool in tx.list(KIND, &Selector::default()).await.map_err(db)? {
                let have = parked(&mut tx, &pool).await?.len();
                let size = pool.body["size"].as_u64().unwrap_or(0);
                if u64::try_from(have).ok() != Some(size) {
                    pools.push(pool);
                }
            }
        }
        let mut created = 0;
        for pool in pools {
            match self.refill_pool(&pool.id).await {
                Ok(n) => created += n,
                Err(e) => {
                    tracing::warn!(pool = %pool.id, error = %e.message, "port pool refill failed")
                }
            }
        }
        Ok(created)
    }

    /// One transaction: locks the pool, counts its parked ports, creates (at most
    /// [`BATCH`]) or deletes the difference.
    async fn refill_pool(&self, id: &str) -> ApiResult<usize> {
        let mut tx = self.write().await?;
        let Ok(pool) = lock_existing(&mut tx, KIND, id, || not_found(id)).await else {
            return Ok(0);
        };
        let ports = parked(&mut tx, &pool).await?;
        let size = pool.body["size"].as_i64().unwrap_or(0);
        let have = i64::try_from(ports.len()).unwrap_or(i64::MAX);
        if have == size {
            return Ok(0);
        }
        if have > size {
            let mut surplus = ports;
            // Not-yet-ready ports go first.
            surplus.sort_by_key(|p| {
                (
                    s(&p.body, "status") == "ACTIVE",
                    s(&p.body, "created_at").to_string(),
                )
            });
            for port in surplus
                .iter()
                .take(usize::try_from(have - size).unwrap_or(0))
            {
                self.remove_as_service(&mut tx, port).await?;
            }
            tx.commit().await.map_err(db)?;
            return Ok(0);
        }
        let want = (size - have).min(BATCH);
        let coll = &super::ports::COLLECTION;
        let ctx = service();
        let project = pool.project_id.clone();
        let short: String = pool.id.chars().take(8).collect();
        for _ in 0..want {
            let request = json!({
                "network_id": pool.body["network_id"],
                "device_id": pool.id,
                "device_owner": POOL_OWNER,
                "name": format!("pool-{short}"),
                "binding:host_id": pool.body["host"],
                "binding:profile": {"neutrino:pool": pool.id},
                "security_groups": pool.body["security_groups"],
            });
            let body = attrs::validate(
                coll.spec,
                request.as_object().expect("object literal"),
                Op::Create,
            )?;
            self.insert_new(&mut tx, &ctx, coll, body, project.clone())
                .await?;
        }
        tx.commit().await.map_err(db)?;
        let n = usize::try_from(want).unwrap_or(0);
        tracing::info!(pool = %pool.id, created = n, "port pool refilled");
        Ok(n)
    }
}

impl App {
    /// An agent reports container ports of its host whose runtime namespace is gone (the
    /// runtime removed the container and its DEL never reached the server):
    /// `{"host": H, "ports": [id, ...]}`. Each that is still a container port bound to H
    /// (`device_owner` `compute:container`, a `neutrino:netns` in its profile) is deleted,
    /// in one transaction; any other id is skipped. `{"deleted": N}`.
    pub async fn report_containers_gone(&self, ctx: &Context, body: Value) -> ApiResult<Value> {
        self.check_rule(ctx, "report_containers_gone", &Map::new())?;
        let host = crate::agents::reporting_host(ctx, &body)?;
        let ids: Vec<String> = crate::agents::report_list(&body, "ports")?
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|id| attrs::is_uuid(id))
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid port id: {v}")))
            })
            .collect::<ApiResult<_>>()?;
        if ids.len() > 1000 {
            return Err(ApiError::bad_request("At most 1000 ports per report"));
        }
        let mut tx = self.write().await?;
        let sel = Selector {
            ids: Some(ids),
            ..Default::default()
        };
        let mut deleted = 0;
        for port in tx.list("port", &sel).await.map_err(db)? {
            let container = port.body["device_owner"] == CONTAINER_OWNER
                && port.body["binding:host_id"] == host
                && port.body["binding:profile"]["neutrino:netns"].is_string();
            if container {
                self.remove_as_service(&mut tx, &port).await?;
                deleted += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        if deleted > 0 {
            tracing::info!(%host, deleted, "deleted the ports of removed containers");
        }
        Ok(json!({"deleted": deleted}))
    }
}

/// The server acting on its own (refills, trims): an admin of no project.
fn service() -> Context {
    Context::new("neutrino-port-pools", "", &["admin".to_string()])
}
