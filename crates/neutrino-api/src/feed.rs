//! `/neutrino/v1/...`: what host agents call (not part of the Neutron API): report in, fetch
//! the snapshot, follow the change feed (one page at a time, or as a stream of JSON lines
//! that stays open), report port status and SFC status (port pair health, chain counters),
//! acknowledge the revision they applied (the realisation barrier), and fetch the BGP
//! speakers bound to their host with their peers and advertised routes.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::Method;
use axum::response::Response;
use neutrino_app::agents::FeedPage;
use neutrino_app::{App, Context};
use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::network::parse_body;
use crate::reply::{json, neutron_error};
use crate::{agent_caller, status, ApiState, Request};

/// How long an idle watch waits before sending a bookmark line (keeps proxies and the
/// agent's dead-connection detection happy).
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);
/// Changes per page or stream line.
const PAGE: i64 = 1000;

pub(crate) async fn handle(state: &ApiState, req: &Request) -> Response {
    match route(state, req).await {
        Ok(r) => r,
        Err(e) => neutron_error(&e),
    }
}

fn since(req: &Request) -> ApiResult<i64> {
    let raw = req
        .query
        .iter()
        .find(|(k, _)| k == "since")
        .map(|(_, v)| v.as_str())
        .unwrap_or("0");
    raw.parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid revision {raw:?}")))
}

fn compacted(revision: i64) -> ApiError {
    ApiError::new(
        410,
        "RevisionCompacted",
        format!("Changes up to revision {revision} are no longer kept; fetch a snapshot."),
    )
}

async fn route(state: &ApiState, req: &Request) -> ApiResult<Response> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let ctx = agent_caller(state, req).await?;
    let app = &state.app;
    match (&req.method, &seg[..]) {
        (&Method::POST, ["neutrino", "v1", "agents"]) => {
            Ok(json(200, &app.report_agent(&ctx, parse_body(req)?).await?))
        }
        (&Method::PUT, ["neutrino", "v1", "port-status"]) => Ok(json(
            200,
            &app.report_port_status(&ctx, parse_body(req)?).await?,
        )),
        (&Method::PUT, ["neutrino", "v1", "trunk-status"]) => Ok(json(
            200,
            &app.report_trunk_status(&ctx, parse_body(req)?).await?,
        )),
        (&Method::PUT, ["neutrino", "v1", "l2gw-macs"]) => Ok(json(
            200,
            &app.report_l2gw_macs(&ctx, parse_body(req)?).await?,
        )),
        (&Method::PUT, ["neutrino", "v1", "sfc-status"]) => Ok(json(
            200,
            &app.report_sfc_status(&ctx, parse_body(req)?).await?,
        )),
        (&Method::PUT, ["neutrino", "v1", "metering-counters"]) => Ok(json(
            200,
            &app.report_metering_counters(&ctx, parse_body(req)?).await?,
        )),
        (&Method::PUT, ["neutrino", "v1", "containers-gone"]) => Ok(json(
            200,
            &app.report_containers_gone(&ctx, parse_body(req)?).await?,
        )),
        (&Method::PUT, ["neutrino", "v1", "applied"]) => Ok(json(
            200,
            &app.report_applied(&ctx, parse_body(req)?).await?,
        )),
        (&Method::GET, ["neutrino", "v1", "snapshot"]) => {
            // Serialised once per revision and shared by every agent asking at it.
            let snap = app.feed_snapshot_shared(&ctx).await?;
            Ok(Response::builder()
                .status(status(200))
                .header(CONTENT_TYPE, "application/json")
                .header(REVISION_HEADER, snap.revision)
                .body(Body::from(Bytes::from_owner(SharedBody(snap.body))))
                .unwrap_or_default())
        }
        (&Method::GET, ["neutrino", "v1", "changes"]) => {
            match app.feed_changes(&ctx, since(req)?, PAGE).await? {
                FeedPage::Changes(page) => Ok(json(200, &page)),
                FeedPage::Resync { compacted: c } => Err(compacted(c)),
            }
        }
        (&Method::GET, ["neutrino", "v1", "bgp-speakers"]) => {
            let host = req
                .query
                .iter()
                .find(|(k, _)| k == "host")
                .map(|(_, v)| v.as_str())
                .filter(|h| !h.is_empty())
                .ok_or_else(|| ApiError::bad_request("Invalid input for host"))?;
            Ok(json(200, &app.host_bgp_speakers(&ctx, host).await?))
        }
        (&Method::GET, ["neutrino", "v1", "watch"]) => match app.admit_watch() {
            Ok(()) => watch(app, ctx, since(req)?).await,
            Err(after) => Ok(come_back_later(after)),
        },
        _ => Err(ApiError::no_such_url()),
    }
}

/// A stream of JSON lines: `{"revision", "changes": [...]}` for every page of changes after
/// `since`, then one per new commit, and a bookmark (no changes) after every idle interval.
/// A reader that fell behind the compaction point gets 410 before the stream starts.
async fn watch(app: &App, ctx: Context, since: i64) -> ApiResult<Response> {
    // Subscribe before reading, so a commit right after the read still wakes us.
    let mut wake = app.feed_subscribe();
    wake.borrow_and_update();
    let first = match app.feed_changes(&ctx, since, PAGE).await? {
        FeedPage::Changes(page) => page,
        FeedPage::Resync { compacted: c } => return Err(compacted(c)),
    };
    let (lines, rx) = mpsc::channel::<Bytes>(4);
    let app = app.clone();
    tokio::spawn(async move {
        let mut page = first;
        let mut sent = since;
        loop {
            let revision = page["revision"].as_i64().unwrap_or(since);
            let has_changes = page["changes"].as_array().is_some_and(|c| !c.is_empty());
            // A revision without mirrored changes is sent too: the agent acknowledges it (a
            // client waiting for it at the barrier need not wait for a bookmark).
            if (has_changes || revision > sent) && lines.send(line(&page)).await.is_err() {
                return;
            }
            sent = revision;
            if page["more"] != true {
                match tokio::time::timeout(BOOKMARK_EVERY, wake.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        let bookmark = json!({"revision": revision, "changes": []});
                        if lines.send(line(&bookmark)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            wake.borrow_and_update();
            page = match app.feed_changes(&ctx, revision, PAGE).await {
                Ok(FeedPage::Changes(page)) => page,
                Ok(FeedPage::Resync { compacted: c }) => {
                    let _ = lines
                        .send(line(&json!({"resync": true, "compacted": c})))
                        .await;
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err.message, "watch stopped");
                    return;
                }
            };
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(Response::builder()
        .status(status(200))
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

/// The snapshot's feed revision, so that a client can start its watch without parsing the
/// body first.
const REVISION_HEADER: &str = "x-neutrino-revision";

/// The shared snapshot bytes as a response body, without copying them.
struct SharedBody(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// 503 with `Retry-After`: too many watches are starting at once (a start-up storm).
fn come_back_later(after: Duration) -> Response {
    let mut resp = neutron_error(&ApiError::new(
        503,
        "ServiceUnavailable",
        "Too many agents are starting their watch at once; retry after the time given.",
    ));
    if let Ok(value) = after.as_secs().to_string().parse() {
        resp.headers_mut().insert(RETRY_AFTER, value);
    }
    resp
}

fn line(v: &Value) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}
