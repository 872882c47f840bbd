//! The agent's side of the server API: Keystone password login (the `OS_*` variables of an
//! openrc, via `neutrino-keystone`), agent reports, the snapshot, the change feed (a JSON-lines watch stream), and
//! port status reports. A token is renewed before it expires (after three quarters of its
//! lifetime), so requests never wait for a refusal; one that is refused anyway (revoked) is
//! renewed and the request sent again. HTTPS is verified with `OS_CACERT` (see
//! `neutrino_keystone::Credentials::tls`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use neutrino_keystone::{network_endpoint, password_login, Credentials};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::AgentError;

/// What a watch stream yields.
pub enum WatchEvent {
    /// A page of changes (possibly empty: a bookmark).
    Page(Value),
    /// The agent's revision is no longer available: fetch a snapshot.
    Resync,
}

/// A logged-in connection to the server.
pub struct ServerClient {
    http: Client,
    creds: Credentials,
    /// Network endpoint base (`http://host:port`), from `--server` or the catalog.
    server: Mutex<Option<String>>,
    /// The current token and when to renew it.
    token: Mutex<Option<(String, Instant)>>,
}

/// How long after it was issued a token should be renewed: three quarters of its lifetime
/// (`issued_at` to `expires_at` of the token body), `None` when the body does not say.
pub fn renewal_delay(doc: &Value) -> Option<Duration> {
    let time = |key: &str| {
        let text = doc.pointer(&format!("/token/{key}"))?.as_str()?;
        chrono::DateTime::parse_from_rfc3339(text).ok()
    };
    let lifetime = (time("expires_at")? - time("issued_at")?).to_std().ok()?;
    Some(lifetime.mul_f64(0.75))
}

/// `Err(Busy)` for a 503 or 429 answer that says when to come back (`Retry-After` in
/// seconds).
fn busy(resp: &reqwest::Response) -> Result<(), AgentError> {
    if !matches!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        return Ok(());
    }
    match retry_after(resp.headers().get(reqwest::header::RETRY_AFTER)) {
        Some(after) => Err(AgentError::Busy { after }),
        None => Ok(()),
    }
}

/// A `Retry-After` of delay-seconds (the form the server sends), at most ten minutes.
pub fn retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(600)))
}

/// `text` for a URL's query: unreserved characters as they are, others percent-encoded.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `pause` stretched by a random factor in `[low, high)`: agents that failed together do
/// not come back together.
pub fn jittered(pause: Duration, low: f64, high: f64) -> Duration {
    pause.mul_f64(low + rand::random::<f64>() * (high - low))
}

impl ServerClient {
    /// A client; nothing is contacted until the first call. HTTPS servers are verified with
    /// the CAs of `OS_CACERT` (the system roots without it); an unreadable `OS_CACERT` is an
    /// error here, before any request.
    pub fn new(creds: Credentials, server: Option<String>) -> Result<ServerClient, AgentError> {
        let builder = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Duration::from_secs(15));
        Ok(ServerClient {
            http: creds.tls(builder)?.build()?,
            creds,
            server: Mutex::new(server.map(|s| s.trim_end_matches('/').to_string())),
            token: Mutex::new(None),
        })
    }

    async fn login(&self) -> Result<(String, String), AgentError> {
        let started = Instant::now();
        let (token, doc) = password_login(&self.http, &self.creds).await?;
        // Without a stated lifetime, renew hourly (and on refusal).
        let renew_at = started + renewal_delay(&doc).unwrap_or(Duration::from_secs(3600));
        let mut server = self.server.lock().await;
        if server.is_none() {
            let endpoint = network_endpoint(&doc, self.creds.region.as_deref())?;
            *server = Some(endpoint.trim_end_matches('/').to_string());
        }
        *self.token.lock().await = Some((token.clone(), renew_at));
        Ok((token, server.clone().unwrap_or_default()))
    }

    async fn credentials(&self) -> Result<(String, String), AgentError> {
        let token = self.token.lock().await.clone();
        let server = self.server.lock().await.clone();
        match (token, server) {
            (Some((t, renew_at)), Some(s)) if Instant::now() < renew_at => Ok((t, s)),
            (Some(_), Some(_)) => {
                tracing::debug!("renewing the token before it expires");
                self.login().await
            }
            _ => self.login().await,
        }
    }

    /// Sends a request, logging in again once if the token is refused.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, AgentError> {
        for attempt in 0..2 {
            let (token, server) = if attempt == 0 {
                self.credentials().await?
            } else {
                self.login().await?
            };
            let mut req = self
                .http
                .request(method.clone(), format!("{server}{path}"))
                .header(neutrino_keystone::AUTH_TOKEN_HEADER, token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AgentError> {
        let resp = self.send(method, path, body).await?;
        busy(&resp)?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(AgentError::Server {
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// Registers the agent / heartbeats.
    pub async fn report(&self, agent: &Value) -> Result<Value, AgentError> {
        self.call(
            Method::POST,
            "/neutrino/v1/agents",
            Some(&json!({"agent": agent})),
        )
        .await
    }

    /// Everything the agent mirrors, with the revision to follow from.
    pub async fn snapshot(&self) -> Result<Value, AgentError> {
        self.call(Method::GET, "/neutrino/v1/snapshot", None).await
    }

    /// Reports port status: `[{"id", "status", "vif_type"}]`, as of the state at feed
    /// revision `revision`.
    pub async fn port_status(
        &self,
        host: &str,
        revision: i64,
        ports: &[Value],
    ) -> Result<Value, AgentError> {
        let body = json!({"host": host, "revision": revision, "ports": ports});
        self.call(Method::PUT, "/neutrino/v1/port-status", Some(&body))
            .await
    }

    /// Acknowledges that this host has realised everything up to feed revision `revision`.
    pub async fn applied(&self, host: &str, revision: i64) -> Result<Value, AgentError> {
        let body = json!({"host": host, "revision": revision});
        self.call(Method::PUT, "/neutrino/v1/applied", Some(&body))
            .await
    }

    /// Waits up to `timeout` until each of `hosts` that is alive has acknowledged
    /// `revision`; whether they all have.
    pub async fn wait_applied(
        &self,
        revision: i64,
        hosts: &std::collections::BTreeSet<String>,
        timeout: Duration,
    ) -> Result<bool, AgentError> {
        let mut path = format!(
            "/v2.0/neutrino/revisions/{revision}?timeout={:.3}",
            timeout.as_secs_f64()
        );
        for host in hosts {
            path.push_str("&host=");
            path.push_str(&query_escape(host));
        }
        let doc = self.call(Method::GET, &path, None).await?;
        Ok(doc["revision"]["realised"].as_bool() == Some(true))
    }

    /// Reports the health of this host's functions and its chain counters.
    pub async fn sfc_status(&self, doc: &Value) -> Result<Value, AgentError> {
        self.call(Method::PUT, "/neutrino/v1/sfc-status", Some(doc))
            .await
    }

    /// Reports the traffic this host's routers counted for metering label rules.
    pub async fn metering_counters(&self, doc: &Value) -> Result<Value, AgentError> {
        self.call(Method::PUT, "/neutrino/v1/metering-counters", Some(doc))
            .await
    }

    /// The BGP speakers bound to `host`'s BGP agent, with their peers (and passwords) and
    /// the routes they advertise.
    pub async fn bgp_speakers(&self, host: &str) -> Result<Value, AgentError> {
        let host: String = host
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.call(
            Method::GET,
            &format!("/neutrino/v1/bgp-speakers?host={host}"),
            None,
        )
        .await
    }

    /// Reports the MACs this software gateway learned behind its interfaces.
    pub async fn l2gw_macs(&self, doc: &Value) -> Result<Value, AgentError> {
        self.call(Method::PUT, "/neutrino/v1/l2gw-macs", Some(doc))
            .await
    }

    /// Opens the watch stream from `since`; `on_event` gets every line until the stream ends
    /// (server gone, network error, idle beyond `idle`) or asks to stop by returning false.
    pub async fn watch(
        &self,
        since: i64,
        idle: Duration,
        mut on_event: impl FnMut(WatchEvent) -> bool,
    ) -> Result<(), AgentError> {
        let resp = self
            .send(
                Method::GET,
                &format!("/neutrino/v1/watch?since={since}"),
                None,
            )
            .await?;
        busy(&resp)?;
        match resp.status() {
            StatusCode::GONE => {
                on_event(WatchEvent::Resync);
                return Ok(());
            }
            s if !s.is_success() => {
                return Err(AgentError::Server {
                    status: s.as_u16(),
                    body: resp.text().await.unwrap_or_default(),
                })
            }
            _ => {}
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => return Err(AgentError::Stalled),
                Ok(None) => return Ok(()),
                Ok(Some(chunk)) => chunk?,
            };
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(doc) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let event = if doc["resync"] == true {
                    WatchEvent::Resync
                } else {
                    WatchEvent::Page(doc)
                };
                if !on_event(event) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let v = |s: &str| reqwest::header::HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(Some(&v("3"))), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(Some(&v("86400"))),
            Some(Duration::from_secs(600))
        );
        assert_eq!(retry_after(Some(&v("soon"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_varies() {
        let base = Duration::from_secs(2);
        let pauses: Vec<Duration> = (0..200).map(|_| jittered(base, 1.0, 1.5)).collect();
        assert!(pauses
            .iter()
            .all(|p| *p >= base && *p < Duration::from_secs(3)));
        assert!(pauses.iter().any(|p| *p != pauses[0]));
    }

    #[test]
    fn tokens_are_renewed_after_three_quarters_of_their_lifetime() {
        let doc = json!({"token": {
            "issued_at": "2026-12-06T03:00:00.000000Z",
            "expires_at": "2026-12-06T04:00:00.000000Z",
        }});
        assert_eq!(renewal_delay(&doc), Some(Duration::from_secs(2700)));
        let short = json!({"token": {
            "issued_at": "2026-12-06T03:00:00Z",
            "expires_at": "2026-12-06T03:00:04Z",
        }});
        assert_eq!(renewal_delay(&short), Some(Duration::from_secs(3)));
        assert_eq!(renewal_delay(&json!({"token": {}})), None);
    }
}
