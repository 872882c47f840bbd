//! The HTTP layer: Neutron v2.0 (`/`, `/v2.0/...`) and the Keystone v3 subset (`/v3/...`)
//! on one listener. Handlers only translate HTTP to calls on [`neutrino_app::App`] and back:
//! URL routing, JSON envelopes, pagination links, status codes and error bodies
//! (`{"NeutronError": ...}` for the network API, `{"error": ...}` for identity).

mod feed;
mod identity;
mod metrics;
mod network;
mod reply;
mod topology_page;

pub use metrics::Metrics;

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use neutrino_app::{App, Context};
use neutrino_types::{agent_protocol, ApiError};
use tracing::Instrument;

/// The response header of a successful write naming the feed revision that holds it.
pub const REVISION_HEADER: &str = "x-neutrino-revision";

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How the HTTP layer authenticates callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// Tokens from the built-in identity service are required.
    Tokens,
    /// Development only: every caller is the admin of the project named by `X-Project-Id`.
    NoAuth,
}

#[derive(Clone)]
struct ApiState {
    app: App,
    auth: AuthMode,
    metrics: Metrics,
}

/// Builds the router serving both APIs (and `GET /metrics` for admins).
pub fn router(app: App, auth: AuthMode, metrics: Metrics) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ApiState { app, auth, metrics })
}

/// A router serving only `GET /metrics`, without authentication: for a separate listener
/// that only a scraper reaches (`--metrics-listen`).
pub fn metrics_router(app: App, metrics: Metrics) -> Router {
    Router::new().fallback(move |method: Method, uri: Uri| {
        let (app, metrics) = (app.clone(), metrics.clone());
        async move {
            if method == Method::GET && uri.path() == "/metrics" {
                metrics_response(metrics.render(&app).await)
            } else {
                reply::neutron_error(&ApiError::no_such_url())
            }
        }
    })
}

fn metrics_response(text: String) -> Response {
    let mut response = Response::new(axum::body::Body::from(text));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// One parsed request.
pub(crate) struct Request {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `scheme://host[:port]` as the client reached us.
    pub base: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9696");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// The response header naming the request, as Neutron's (oslo.middleware) request id.
pub const REQUEST_ID_HEADER: &str = "x-openstack-request-id";

/// A request id of the form `req-<uuid>`, the only form Neutron accepts from callers.
fn is_request_id(text: &str) -> bool {
    text.strip_prefix("req-")
        .is_some_and(|u| u.len() == 36 && uuid::Uuid::parse_str(u).is_ok())
}

/// Every request gets its own id, `req-<uuid>`, in the `x-openstack-request-id` response
/// header and in every log line written while it is served. A caller's own
/// `X-OpenStack-Request-ID` of that form is logged beside it as `global_id`, as Neutron keeps
/// it for correlation across services (its local id stays its own).
async fn dispatch(
    state: State<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let global_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_request_id(v));
    let span = tracing::info_span!("request", id = %request_id, global_id = tracing::field::Empty);
    if let Some(global) = global_id {
        span.record("global_id", global);
    }
    let mut response = serve(state, method, uri, headers, body)
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn serve(
    State(state): State<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let path = uri.path().to_string();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            // A body over the limit (or one that could not be read) gets the API's own error
            // body, not axum's plain text.
            let err = ApiError::new(
                rejection.status().as_u16(),
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "RequestEntityTooLarge"
                } else {
                    "HTTPBadRequest"
                },
                format!(
                    "Request body rejected ({}); at most {MAX_BODY_BYTES} bytes are accepted.",
                    rejection.body_text()
                ),
            );
            let response = if path.starts_with("/v3") {
                reply::keystone_error(&err)
            } else {
                reply::neutron_error(&err)
            };
            log_request(&method, &path, response.status(), started);
            return response;
        }
    };
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if let Some(last) = segments.last_mut() {
        if let Some(stripped) = last.strip_suffix(".json") {
            *last = stripped.to_string();
        }
    }
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let req = Request {
        method: method.clone(),
        base: base_url(&headers),
        segments,
        query,
        headers,
        body,
    };
    // The agent protocol: its routes, and any request that names a version (the agent's
    // revision waits under `/v2.0`), are checked and answered with this server's version.
    let is_agent = req.segments.first().is_some_and(|s| s == "neutrino")
        || req.headers.contains_key(agent_protocol::HEADER);
    let refused = is_agent.then(|| refusal(&req)).flatten();
    let mut response = match (refused, req.segments.first().map(String::as_str)) {
        (Some(refused), _) => refused,
        (None, Some("v3")) => identity::handle(&state, &req).await,
        (None, Some("neutrino")) => feed::handle(&state, &req).await,
        (None, Some("topology")) => topology_page::serve(&req),
        (None, Some("metrics")) if req.segments.len() == 1 && req.method == Method::GET => {
            serve_metrics(&state, &req).await
        }
        _ => network::handle(&state, &req, path.ends_with('/')).await,
    };
    if is_agent {
        response.headers_mut().insert(
            agent_protocol::HEADER,
            HeaderValue::from(agent_protocol::AGENT_PROTOCOL_VERSION),
        );
    }
    state.metrics.request(
        &req.segments,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    // A successful write to the network API says which feed revision contains it (at least):
    // `GET /v2.0/neutrino/revisions/{revision}` waits until every host has applied it.
    if response.status().is_success()
        && matches!(
            method,
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH
        )
        && req.segments.first().is_some_and(|s| s == "v2.0")
    {
        let revision = *state.app.feed_subscribe().borrow();
        if let Ok(value) = axum::http::HeaderValue::from_str(&revision.to_string()) {
            response.headers_mut().insert(REVISION_HEADER, value);
        }
    }
    log_request(&method, &path, response.status(), started);
    response
}

/// Checks the agent protocol version a request names (none: an agent from before the
/// header, version 1): the refusal to send back when this server does not serve it.
fn refusal(req: &Request) -> Option<Response> {
    let err = agent_protocol::check_agent(
        agent_protocol::AGENT_PROTOCOL_VERSION,
        req.header(agent_protocol::HEADER),
    )
    .err()?;
    tracing::warn!(error = %err.message, "agent refused: protocol version");
    Some(reply::neutron_error(&err))
}

/// The access log: one line per request at INFO (WARN for server errors), with method, path,
/// status and the time to the response head in milliseconds. Streamed bodies (the agents'
/// watch) are logged when their head is sent.
fn log_request(method: &Method, path: &str, status: StatusCode, started: Instant) {
    // Tenths of a millisecond.
    let duration_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    let status = status.as_u16();
    if status >= 500 {
        tracing::warn!(%method, %path, status, duration_ms, "request failed");
    } else {
        tracing::info!(%method, %path, status, duration_ms, "request");
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Resolves the caller from `X-Auth-Token` (or the no-auth development mode).
/// `GET /metrics` on the API listener: for callers the `get_metrics` rule admits.
async fn serve_metrics(state: &ApiState, req: &Request) -> Response {
    let allowed = match caller(state, req).await {
        Ok(ctx) => state
            .app
            .check_rule(&ctx, "get_metrics", &Default::default()),
        Err(err) => Err(err),
    };
    match allowed {
        Ok(()) => metrics_response(state.metrics.render(&state.app).await),
        Err(err) => reply::neutron_error(&err),
    }
}

/// The caller of a user call: every call but the agents'. A host agent's credential is
/// refused here (403), whatever the policy says, so no user call can serve it.
pub(crate) async fn caller(state: &ApiState, req: &Request) -> Result<Context, ApiError> {
    let ctx = agent_caller(state, req).await?;
    match &ctx.agent_host {
        Some(host) => {
            tracing::warn!(%host, path = ?req.segments, "host agent credential refused for a user call");
            Err(agent_refused(host))
        }
        None => Ok(ctx),
    }
}

/// The 403 of a host agent's credential used outside the agent calls.
pub(crate) fn agent_refused(host: &str) -> ApiError {
    ApiError::new(
        403,
        "PolicyNotAuthorized",
        format!("The credential of the agent of host {host} only serves that agent's calls."),
    )
}

/// The caller of an agent call (`/neutrino/v1/...`, the revision waits): a user, or the
/// agent of one host (the app refuses it any other host).
pub(crate) async fn agent_caller(state: &ApiState, req: &Request) -> Result<Context, ApiError> {
    match state.auth {
        AuthMode::NoAuth => {
            let project = req.header("x-project-id").unwrap_or("admin").to_string();
            Ok(Context::new("admin", &project, &["admin".to_string()]))
        }
        AuthMode::Tokens => {
            let token = req
                .header("x-auth-token")
                .ok_or_else(ApiError::unauthorized)?;
            state.app.authenticate(token).await
        }
    }
}

pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use tower::ServiceExt;

    /// An app on a fresh SQLite database, which lives as long as the directory.
    async fn test_app() -> (App, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = neutrino_store::Store::open(&url).await.unwrap();
        let app = App::new(store, neutrino_app::Config::default())
            .await
            .unwrap();
        (app, dir)
    }

    async fn send(method: &str, path: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let (app, _dir) = test_app().await;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = router(app, AuthMode::NoAuth, Metrics::new())
            .oneshot(req)
            .await
            .unwrap();
        let status = res.status();
        let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// A write answers with the revision that holds it; the revision wait answers for it.
    #[tokio::test]
    async fn writes_name_their_revision_and_the_wait_answers_for_it() {
        let (app, _dir) = test_app().await;
        let router = router(app, AuthMode::NoAuth, Metrics::new());
        let call = |method: &str, path: &str, body: &str| {
            axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let res = router
            .clone()
            .oneshot(call(
                "POST",
                "/v2.0/networks",
                r#"{"network": {"name": "n"}}"#,
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let revision: i64 = res.headers()[REVISION_HEADER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(revision > 0);
        // Reads carry no revision.
        let res = router
            .clone()
            .oneshot(call("GET", "/v2.0/networks", ""))
            .await
            .unwrap();
        assert!(!res.headers().contains_key(REVISION_HEADER));
        // No agents: realised at once; a revision not yet written is not.
        for (rev, realised) in [(revision, true), (revision + 1, false)] {
            let path = format!("/v2.0/neutrino/revisions/{rev}?timeout=0.05");
            let res = router
                .clone()
                .oneshot(call("GET", &path, ""))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(doc["revision"]["realised"], realised, "{doc}");
            assert_eq!(doc["revision"]["lagging"], serde_json::json!([]), "{doc}");
        }
        for bad in [
            "/v2.0/neutrino/revisions/x",
            "/v2.0/neutrino/revisions/1?timeout=301",
        ] {
            let res = router.clone().oneshot(call("GET", bad, "")).await.unwrap();
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    /// The agent protocol over HTTP: no header is version 1, this server's version and the
    /// one before are served, others refused with a Neutron error naming both versions; every
    /// answer to an agent names the server's version, other clients see no such header.
    #[tokio::test]
    async fn agents_of_other_protocol_versions_are_refused() {
        use agent_protocol::{AGENT_PROTOCOL_VERSION as OURS, HEADER};
        let (app, _dir) = test_app().await;
        let router = router(app, AuthMode::NoAuth, Metrics::new());
        let call = |path: &str, version: Option<String>| {
            let mut req = axum::http::Request::builder().method("GET").uri(path);
            if let Some(v) = version {
                req = req.header(HEADER, v);
            }
            let req = req.body(Body::empty()).unwrap();
            let router = router.clone();
            async move {
                let res = router.oneshot(req).await.unwrap();
                let status = res.status();
                let server = res
                    .headers()
                    .get(HEADER)
                    .map(|v| v.to_str().unwrap().to_string());
                let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
                let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                (status, server, doc)
            }
        };
        let ours = Some(OURS.to_string());
        let mut served = vec![None, Some(OURS.to_string())];
        if OURS > 1 {
            served.push(Some((OURS - 1).to_string()));
        }
        for version in served {
            let (status, server, doc) = call("/neutrino/v1/snapshot", version.clone()).await;
            assert_eq!(status, StatusCode::OK, "{version:?}: {doc}");
            assert_eq!(server, ours, "{version:?}");
            assert!(doc["resources"].is_object(), "{doc}");
        }
        let refused = [
            (OURS + 1).to_string(),
            (OURS + 2).to_string(),
            OURS.saturating_sub(2).to_string(),
            "one".to_string(),
        ];
        for version in refused {
            let (status, server, doc) = call("/neutrino/v1/snapshot", Some(version.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{version}: {doc}");
            assert_eq!(server, ours, "{version}");
            let err = &doc["NeutronError"];
            assert_eq!(err["type"], agent_protocol::REFUSED_TYPE, "{doc}");
            assert_eq!(err["detail"], "", "{doc}");
            let message = err["message"].as_str().unwrap();
            assert!(message.contains(&version), "{message}");
            assert!(message.contains(&format!("version {OURS}")), "{message}");
        }
        // The agent's revision waits under /v2.0 are checked when they name a version.
        let (status, server, _) = call("/v2.0/neutrino/revisions/0", ours.clone()).await;
        assert_eq!((status, server), (StatusCode::OK, ours.clone()));
        let (status, _, _) = call("/v2.0/neutrino/revisions/0", Some((OURS + 1).to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Other clients: no version asked, none named.
        let (status, server, _) = call("/v2.0/networks", None).await;
        assert_eq!((status, server), (StatusCode::OK, None));
    }

    /// Fuzz finding: a body over the limit was answered with axum's plain-text 413.
    #[tokio::test]
    async fn oversized_bodies_get_the_apis_error_body() {
        let big = vec![b'A'; MAX_BODY_BYTES + 10];
        let (status, body) = send("POST", "/v2.0/networks", big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body["NeutronError"]["type"], "RequestEntityTooLarge",
            "{body}"
        );
        assert!(body["NeutronError"]["message"].is_string(), "{body}");
        let (status, body) = send("POST", "/v3/auth/tokens", big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], 413, "{body}");
    }

    /// QoS through HTTP: nested rule collections under a policy, their aliases, rule types,
    /// and Neutron error bodies for what the routes refuse.
    #[tokio::test]
    async fn qos_rules_nest_under_their_policy() {
        let (app, _dir) = test_app().await;
        let router = router(app, AuthMode::NoAuth, Metrics::new());
        let call = |method: &str, path: &str, body: &str| {
            let req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let router = router.clone();
            async move {
                let res = router.oneshot(req).await.unwrap();
                let status = res.status();
                let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
                let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                (status, doc)
            }
        };
        let (status, doc) =
            call("POST", "/v2.0/qos/policies", r#"{"policy": {"name": "p"}}"#).await;
        assert_eq!(status, StatusCode::CREATED, "{doc}");
        let policy = doc["policy"]["id"].as_str().unwrap().to_string();
        let rules = format!("/v2.0/qos/policies/{policy}/bandwidth_limit_rules");
        let body = r#"{"bandwidth_limit_rule": {"max_kbps": 1000, "direction": "ingress"}}"#;
        let (status, doc) = call("POST", &rules, body).await;
        assert_eq!(status, StatusCode::CREATED, "{doc}");
        let rule = doc["bandwidth_limit_rule"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, doc) = call("POST", &rules, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{doc}");
        assert!(doc["NeutronError"]["message"].is_string(), "{doc}");
        let (status, doc) = call("GET", &rules, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            doc["bandwidth_limit_rules"][0]["id"],
            rule.as_str(),
            "{doc}"
        );
        let member = format!("{rules}/{rule}");
        let (status, doc) = call(
            "PUT",
            &member,
            r#"{"bandwidth_limit_rule": {"max_kbps": 5}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert_eq!(doc["bandwidth_limit_rule"]["max_kbps"], 5);
        let alias = format!("/v2.0/qos/alias_bandwidth_limit_rules/{rule}");
        let (status, doc) = call("GET", &alias, "").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert_eq!(doc["alias_bandwidth_limit_rule"]["max_kbps"], 5, "{doc}");
        for (method, path) in [
            ("GET", "/v2.0/qos/alias_bandwidth_limit_rules".to_string()),
            ("GET", format!("/v2.0/qos/policies/{policy}/no_such_rules")),
            ("GET", format!("/v2.0/bandwidth_limit_rules/{rule}")),
            ("GET", format!("{member}/extra")),
        ] {
            let (status, doc) = call(method, &path, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(doc["NeutronError"]["type"].is_string(), "{path}: {doc}");
        }
        let (status, doc) = call("GET", "/v2.0/qos/rule-types", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["rule_types"][0]["type"], "bandwidth_limit");
        let (status, _) = call("GET", "/v2.0/qos/rule-types/dscp_marking", "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call("DELETE", &member, "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, doc) = call("GET", &member, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(doc["NeutronError"]["type"], "QosRuleNotFound", "{doc}");
        // The tag extension names QoS policies by their bare collection (`/v2.0/policies`).
        let tag = format!("/v2.0/policies/{policy}/tags/red");
        let (status, doc) = call("PUT", &tag, "").await;
        assert!(status.is_success(), "{status} {doc}");
        let (status, doc) = call("GET", &format!("/v2.0/qos/policies/{policy}"), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["policy"]["tags"], serde_json::json!(["red"]), "{doc}");
        let (status, _) = call("GET", &format!("/v2.0/policies/{policy}"), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "only the tags live there");
        let (status, _) = call("DELETE", &format!("/v2.0/qos/policies/{policy}"), "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
}
