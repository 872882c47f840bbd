//! A host credential over HTTP, with tokens required: the agent of host H gets its token
//! from `POST /v3/auth/tokens` (`application_credential`), its agent calls work for H and
//! are 403 for another host, every user call (network API, identity, metrics) is 403 with the
//! area's error body, and deleting the credential revokes the token (401). An admin's token
//! keeps working for the agent calls (agents with an admin openrc).

use axum::body::{to_bytes, Body};
use neutrino_api::{router, AuthMode, Metrics};
use neutrino_app::{App, Config};
use neutrino_store::Store;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Server {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let app = App::new(store, Config::default()).await.unwrap();
        app.bootstrap(Some("secret")).await.unwrap();
        Server {
            router: router(app, AuthMode::Tokens, Metrics::new()),
            _dir: dir,
        }
    }

    /// One call: status, the `x-subject-token` header, the JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("x-auth-token", t).header("x-subject-token", t);
        }
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let res = self
            .router
            .clone()
            .oneshot(req.body(Body::from(bytes)).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let subject = res
            .headers()
            .get("x-subject-token")
            .map(|v| v.to_str().unwrap().to_string());
        if path.starts_with("/neutrino/v1/watch") {
            // A stream that stays open: the status is the answer.
            return (status, subject, Value::Null);
        }
        let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (
            status,
            subject,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    async fn login(&self, identity: Value) -> (u16, Option<String>) {
        let (status, token, _) = self
            .call("POST", "/v3/auth/tokens", None, Some(identity))
            .await;
        (status, token)
    }

    async fn admin_token(&self) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": "admin",
                "domain": {"name": "Default"}, "password": "secret"}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }});
        self.login(body).await.1.expect("admin logs in")
    }

    /// A new credential of `host` (as the admin): (id, the agent's token).
    async fn agent(&self, admin: &str, host: &str) -> (String, String) {
        let (status, _, doc) = self
            .call(
                "POST",
                "/v2.0/neutrino/host-credentials",
                Some(admin),
                Some(json!({"host_credential": {"host": host}})),
            )
            .await;
        assert_eq!(status, 201, "{doc}");
        let c = &doc["host_credential"];
        let body = json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": c["id"], "secret": c["secret"]}}}});
        let (status, token) = self.login(body).await;
        assert_eq!(status, 201);
        (c["id"].as_str().unwrap().to_string(), token.unwrap())
    }
}

#[tokio::test]
async fn a_host_credential_serves_its_hosts_agent_calls_only() {
    let s = Server::start().await;
    let admin = s.admin_token().await;
    let (cred, agent) = s.agent(&admin, "h1").await;
    // A network and a port of another host, made by the admin.
    let (status, _, net) = s
        .call(
            "POST",
            "/v2.0/networks",
            Some(&admin),
            Some(json!({"network": {"name": "n"}})),
        )
        .await;
    assert_eq!(status, 201, "{net}");
    let net = net["network"]["id"].as_str().unwrap().to_string();
    let (status, _, port) = s
        .call(
            "POST",
            "/v2.0/ports",
            Some(&admin),
            Some(json!({"port": {"network_id": net, "binding:host_id": "h2"}})),
        )
        .await;
    assert_eq!(status, 201, "{port}");
    let port = port["port"]["id"].as_str().unwrap().to_string();

    // Its own host's agent calls.
    let own: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "POST",
            "/neutrino/v1/agents",
            Some(json!({"agent": {"host": "h1"}})),
        ),
        ("GET", "/neutrino/v1/snapshot", None),
        ("GET", "/neutrino/v1/changes?since=0", None),
        ("GET", "/neutrino/v1/watch?since=0", None),
        (
            "PUT",
            "/neutrino/v1/port-status",
            Some(json!({"host": "h1", "ports": []})),
        ),
        (
            "PUT",
            "/neutrino/v1/applied",
            Some(json!({"host": "h1", "revision": 1})),
        ),
        (
            "PUT",
            "/neutrino/v1/sfc-status",
            Some(json!({"host": "h1", "port_pairs": []})),
        ),
        (
            "PUT",
            "/neutrino/v1/l2gw-macs",
            Some(json!({"host": "h1", "networks": {}})),
        ),
        (
            "PUT",
            "/neutrino/v1/metering-counters",
            Some(json!({"host": "h1", "labels": []})),
        ),
        ("GET", "/neutrino/v1/bgp-speakers?host=h1", None),
        ("GET", "/v2.0/neutrino/revisions/0?timeout=0", None),
    ];
    for (method, path, body) in own {
        let (status, _, doc) = s.call(method, path, Some(&agent), body.clone()).await;
        assert_eq!(status, 200, "{method} {path}: {doc}");
        // An admin's token (an agent with the admin openrc) still works too.
        let (status, _, doc) = s.call(method, path, Some(&admin), body).await;
        assert_eq!(status, 200, "admin: {method} {path}: {doc}");
    }
    // Another host's: 403 with a Neutron error body.
    let other: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "POST",
            "/neutrino/v1/agents",
            Some(json!({"agent": {"host": "h2"}})),
        ),
        (
            "PUT",
            "/neutrino/v1/port-status",
            Some(json!({"host": "h2", "ports": [{"id": port, "status": "ACTIVE"}]})),
        ),
        (
            "PUT",
            "/neutrino/v1/applied",
            Some(json!({"host": "h2", "revision": 1})),
        ),
        (
            "PUT",
            "/neutrino/v1/sfc-status",
            Some(json!({"host": "h2", "port_pairs": []})),
        ),
        (
            "PUT",
            "/neutrino/v1/l2gw-macs",
            Some(json!({"host": "h2", "networks": {}})),
        ),
        (
            "PUT",
            "/neutrino/v1/metering-counters",
            Some(json!({"host": "h2", "labels": []})),
        ),
        ("GET", "/neutrino/v1/bgp-speakers?host=h2", None),
    ];
    for (method, path, body) in other {
        let (status, _, doc) = s.call(method, path, Some(&agent), body).await;
        assert_eq!(status, 403, "{method} {path}: {doc}");
        assert_eq!(doc["NeutronError"]["type"], "PolicyNotAuthorized", "{doc}");
    }
    let (_, _, shown) = s
        .call("GET", &format!("/v2.0/ports/{port}"), Some(&admin), None)
        .await;
    assert_eq!(shown["port"]["status"], "DOWN", "{shown}");

    // Every user call: 403, with the area's error body.
    let user: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v2.0/networks".into(), None),
        ("GET", format!("/v2.0/networks/{net}"), None),
        ("GET", "/v2.0/ports".into(), None),
        ("GET", format!("/v2.0/ports/{port}"), None),
        ("GET", "/v2.0/ports?binding:host_id=h2".into(), None),
        (
            "PUT",
            format!("/v2.0/ports/{port}"),
            Some(json!({"port": {"name": "x"}})),
        ),
        ("DELETE", format!("/v2.0/ports/{port}"), None),
        (
            "POST",
            "/v2.0/networks".into(),
            Some(json!({"network": {"name": "x"}})),
        ),
        ("GET", "/v2.0/agents".into(), None),
        ("GET", "/v2.0/security-groups".into(), None),
        ("GET", "/v2.0/quotas".into(), None),
        ("GET", "/v2.0/neutrino/topology".into(), None),
        ("GET", "/v2.0/neutrino/host-credentials".into(), None),
        (
            "POST",
            "/v2.0/neutrino/host-credentials".into(),
            Some(json!({"host_credential": {"host": "h2"}})),
        ),
        (
            "DELETE",
            format!("/v2.0/neutrino/host-credentials/{cred}"),
            None,
        ),
        ("GET", "/metrics".into(), None),
    ];
    for (method, path, body) in user {
        let (status, _, doc) = s.call(method, &path, Some(&agent), body).await;
        assert_eq!(status, 403, "{method} {path}: {doc}");
        assert_eq!(
            doc["NeutronError"]["type"], "PolicyNotAuthorized",
            "{path}: {doc}"
        );
    }
    let identity: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/v3/users", None),
        ("GET", "/v3/projects", None),
        ("GET", "/v3/auth/tokens", None),
        ("GET", "/v3/auth/projects", None),
        ("GET", "/v3/role_assignments", None),
        (
            "POST",
            "/v3/projects",
            Some(json!({"project": {"name": "p"}})),
        ),
        ("DELETE", "/v3/auth/tokens", None),
    ];
    for (method, path, body) in identity {
        let (status, _, doc) = s.call(method, path, Some(&agent), body).await;
        assert_eq!(status, 403, "{method} {path}: {doc}");
        assert_eq!(doc["error"]["code"], 403, "{path}: {doc}");
        assert_eq!(doc["error"]["title"], "Forbidden", "{path}: {doc}");
    }
    // The port is as it was, and the admin can still do all of it.
    let (status, _, _) = s.call("GET", "/v3/users", Some(&admin), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = s
        .call("GET", &format!("/v2.0/ports/{port}"), Some(&admin), None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn deleting_a_host_credential_revokes_its_token() {
    let s = Server::start().await;
    let admin = s.admin_token().await;
    let (cred, agent) = s.agent(&admin, "h1").await;
    let (_, other) = s.agent(&admin, "h2").await;
    let (status, _, doc) = s
        .call(
            "GET",
            "/v2.0/neutrino/host-credentials?host=h1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["host_credentials"][0]["id"], cred.as_str(), "{doc}");
    assert!(!doc.to_string().contains("secret"), "{doc}");
    let (status, _, _) = s
        .call("GET", "/neutrino/v1/snapshot", Some(&agent), None)
        .await;
    assert_eq!(status, 200);
    let path = format!("/v2.0/neutrino/host-credentials/{cred}");
    let (status, _, doc) = s.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 204, "{doc}");
    let (status, _, doc) = s
        .call("GET", "/neutrino/v1/snapshot", Some(&agent), None)
        .await;
    assert_eq!(status, 401, "{doc}");
    let (status, _, _) = s
        .call("GET", "/neutrino/v1/snapshot", Some(&other), None)
        .await;
    assert_eq!(status, 200, "another host's credential is untouched");
    let (status, _, doc) = s.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 404, "{doc}");
    assert_eq!(
        doc["NeutronError"]["type"], "HostCredentialNotFound",
        "{doc}"
    );
    let (status, _, _) = s.call("PATCH", &path, Some(&admin), None).await;
    assert_eq!(status, 405);
}
