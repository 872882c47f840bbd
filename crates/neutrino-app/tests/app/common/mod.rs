//! Helpers shared by the application-level tests: a fresh app on a temporary SQLite
//! database, pairs of servers sharing one database, callers, short forms of the API calls and
//! of the built-in Keystone's.
#![allow(dead_code)]

pub use neutrino_app::{App, Collection, Config, Context};
use neutrino_store::Store;
pub use neutrino_types::ApiError;
use serde_json::{json, Map, Value};

pub struct Env {
    pub app: App,
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub async fn env() -> Env {
    env_with(Config::default()).await
}

/// A fresh app with the given settings.
pub async fn env_with(config: Config) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    let app = App::new(store.clone(), config).await.unwrap();
    Env {
        app,
        store,
        _dir: dir,
    }
}

/// Two servers on one database, for what several servers decide at once.
pub struct ServerPair {
    pub one: App,
    pub two: App,
    /// A handle on the database they share.
    pub store: Store,
    /// The temporary SQLite database, kept as long as the pair.
    _env: Option<Env>,
}

/// The pairs of servers a test runs with: two handles on one app on a temporary SQLite
/// database, then two apps on the PostgreSQL database `NEUTRINO_TEST_PG_URL` names (left out,
/// with a note, when it is not set).
pub async fn server_pairs() -> Vec<ServerPair> {
    let t = env().await;
    let mut pairs = vec![ServerPair {
        one: t.app.clone(),
        two: t.app.clone(),
        store: t.store.clone(),
        _env: Some(t),
    }];
    if let Ok(pg) = std::env::var("NEUTRINO_TEST_PG_URL") {
        let s1 = Store::open(&pg).await.unwrap();
        let s2 = Store::open(&pg).await.unwrap();
        let a1 = App::new(s1.clone(), Config::default()).await.unwrap();
        let a2 = App::new(s2, Config::default()).await.unwrap();
        pairs.push(ServerPair {
            one: a1,
            two: a2,
            store: s1,
            _env: None,
        });
    } else {
        eprintln!("skip PostgreSQL: NEUTRINO_TEST_PG_URL is not set");
    }
    pairs
}

pub fn admin() -> Context {
    Context::new("admin", "admin-project", &["admin".into()])
}

pub fn tenant() -> Context {
    Context::new("alice", "project-a", &["member".into()])
}

pub fn other_tenant() -> Context {
    Context::new("bob", "project-b", &["member".into()])
}

/// The collection at `path` (networking-sfc ones also without their `sfc/` prefix).
pub fn coll(path: &str) -> &'static Collection {
    Collection::by_path(path)
        .or_else(|| Collection::by_path(&format!("sfc/{path}")))
        .or_else(|| Collection::child("qos/policies", path))
        .or_else(|| Collection::child("floatingips", path))
        .or_else(|| Collection::child("routers", path))
        .or_else(|| Collection::child("local_ips", path))
        .unwrap()
}

/// Query pairs as the app takes them.
pub fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The hosts of the agents in an `{"agents": [...]}` answer, in order.
pub fn agent_hosts(out: &Value) -> Vec<String> {
    out["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["host"].as_str().unwrap().to_string())
        .collect()
}

pub fn doc(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[track_caller]
pub fn assert_err(r: Result<impl std::fmt::Debug, ApiError>, status: u16, kind: &str) -> ApiError {
    let e = r.expect_err("expected an error");
    assert_eq!((e.status, e.kind.as_str()), (status, kind), "{e}");
    e
}

impl Env {
    pub async fn create(&self, ctx: &Context, path: &str, body: Value) -> Result<Value, ApiError> {
        let mut out = self.app.create(ctx, coll(path), vec![doc(body)]).await?;
        Ok(Value::Object(out.remove(0)))
    }

    pub async fn ok(&self, ctx: &Context, path: &str, body: Value) -> Value {
        self.create(ctx, path, body).await.unwrap()
    }

    pub async fn update(
        &self,
        ctx: &Context,
        path: &str,
        id: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        Ok(Value::Object(
            self.app
                .update(ctx, coll(path), id, doc(body), None)
                .await?,
        ))
    }

    pub async fn show(&self, ctx: &Context, path: &str, id: &str) -> Result<Value, ApiError> {
        Ok(Value::Object(
            self.app.show(ctx, coll(path), id, &[]).await?,
        ))
    }

    /// A router action.
    pub async fn action(
        &self,
        ctx: &Context,
        router: &str,
        action: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.act(ctx, "routers", router, action, body).await
    }

    /// `PUT /v2.0/{path}/{id}/{action}`.
    pub async fn act(
        &self,
        ctx: &Context,
        path: &str,
        id: &str,
        action: &str,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.app.action(ctx, coll(path), id, action, body).await
    }

    pub async fn delete(&self, ctx: &Context, path: &str, id: &str) -> Result<(), ApiError> {
        self.app.delete(ctx, coll(path), id, None).await
    }

    pub async fn ports(&self, filters: &[(&str, &str)]) -> Vec<Value> {
        self.list(&admin(), "ports", filters).await
    }

    /// `GET /v2.0/{path}?k=v...` as `ctx`.
    pub async fn list(&self, ctx: &Context, path: &str, filters: &[(&str, &str)]) -> Vec<Value> {
        self.app
            .list(ctx, coll(path), &query(filters))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(Value::Object)
            .collect()
    }

    /// A network with one subnet; returns (network id, subnet id).
    pub async fn net(&self, ctx: &Context, body: Value, cidr: &str) -> (String, String) {
        let net = self.ok(ctx, "networks", body).await;
        let sub = self
            .ok(
                ctx,
                "subnets",
                json!({"network_id": id(&net), "ip_version": 4, "cidr": cidr}),
            )
            .await;
        (id(&net), id(&sub))
    }

    /// A router of the tenant whose gateway has the fixed address 172.24.4.100 (so that
    /// tests can use other addresses of the external subnet without collisions).
    pub async fn gateway_router(&self, ext: &str) -> String {
        let r = self
            .ok(
                &admin(),
                "routers",
                json!({"project_id": "project-a", "external_gateway_info": {"network_id": ext,
                       "external_fixed_ips": [{"ip_address": "172.24.4.100"}]}}),
            )
            .await;
        id(&r)
    }

    /// A router with a gateway on `ext` (see [`Env::gateway_router`]) and an interface on the
    /// tenant's subnet `sub`; returns the router's id.
    pub async fn router_between(&self, ext: &str, sub: &str) -> String {
        let rid = self.gateway_router(ext).await;
        self.action(
            &tenant(),
            &rid,
            "add_router_interface",
            json!({"subnet_id": sub}),
        )
        .await
        .unwrap();
        rid
    }

    /// The first of `candidates` that no port holds. Addresses are allocated at random, so a
    /// literal address a test asks for (or expects to be nobody's) may have been taken by an
    /// earlier port, router gateway or floating IP; give more candidates than such
    /// allocations.
    pub async fn free_address(&self, candidates: &[&str]) -> String {
        let taken: Vec<String> = self
            .ports(&[])
            .await
            .iter()
            .flat_map(|p| p["fixed_ips"].as_array().cloned().unwrap_or_default())
            .filter_map(|ip| ip["ip_address"].as_str().map(str::to_string))
            .collect();
        candidates
            .iter()
            .find(|c| !taken.iter().any(|t| t == *c))
            .unwrap_or_else(|| panic!("all of {candidates:?} are taken"))
            .to_string()
    }

    /// The external network of the tests: 172.24.4.0/24, visible to everyone.
    pub async fn external(&self) -> (String, String) {
        self.net(
            &admin(),
            json!({"name": "public", "router:external": true}),
            "172.24.4.0/24",
        )
        .await
    }
}

pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    cidr.parse::<ipnet::IpNet>().unwrap().contains(&ip)
}

/// The public address the identity tests give the built-in Keystone (its links start so).
pub const IDENTITY_BASE: &str = "http://neutrino.test:9696";

/// Creates, as admin, an identity object of `kind` (`user`, `project`, `role`...) in
/// `collection` named `name` (with password `pw`, which only users keep); returns its id.
pub async fn make_identity(t: &Env, collection: &str, kind: &str, name: &str) -> String {
    let body = json!({kind: {"name": name, "password": "pw"}});
    let out = t
        .app
        .identity_create(&admin(), collection, &body, IDENTITY_BASE)
        .await
        .unwrap();
    out[kind]["id"].as_str().unwrap().to_string()
}

/// The id of the role named `name`.
pub async fn role_id(t: &Env, name: &str) -> String {
    let roles = t
        .app
        .identity_list(&admin(), "roles", &query(&[("name", name)]), IDENTITY_BASE)
        .await
        .unwrap();
    roles["roles"][0]["id"].as_str().unwrap().to_string()
}
