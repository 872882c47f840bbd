//! Thin timed HTTP layer over `reqwest` for the Neutron v2.0 API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use crate::BenchError;

/// Header carrying the Keystone token on every request.
pub(crate) use neutrino_keystone::AUTH_TOKEN_HEADER;

/// Most characters of a response body quoted in error messages.
const MAX_BODY_IN_MESSAGE: usize = 1000;

/// A `reqwest` client builder with the settings shared by every client of the
/// tool: per-request timeout, no proxies (only ever talk to the given
/// endpoint), no Nagle delay, HTTPS verified with `OS_CACERT` (`OS_INSECURE=true`: not at
/// all), as the openstack CLI.
pub(crate) fn client_builder(timeout: Duration) -> Result<reqwest::ClientBuilder, BenchError> {
    let builder = Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ok(neutrino_keystone::tls_settings(
        builder,
        env("OS_CACERT").as_deref(),
        env("OS_INSECURE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    )?)
}

/// Validates a network endpoint base URL and normalises it: surrounding
/// whitespace and trailing slashes are removed, as is a trailing `/v2.0`
/// (the tool appends `/v2.0/...` itself).
pub(crate) fn normalize_network_url(raw: &str) -> Result<String, BenchError> {
    let url = raw.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(BenchError::InvalidUrl {
            url: raw.to_string(),
            reason: "expected an http:// or https:// URL".into(),
        });
    }
    let mut base = url.trim_end_matches('/');
    if let Some(stripped) = base.strip_suffix("/v2.0") {
        base = stripped.trim_end_matches('/');
    }
    if base.contains(['?', '#']) {
        return Err(BenchError::InvalidUrl {
            url: raw.to_string(),
            reason: "a base URL must not have a query or fragment".into(),
        });
    }
    let authority = base.split_once("://").map_or("", |(_, rest)| rest);
    if authority.is_empty() || authority.starts_with('/') {
        return Err(BenchError::InvalidUrl {
            url: raw.to_string(),
            reason: "missing host".into(),
        });
    }
    Ok(base.to_string())
}

/// A fully read response and the time it took (send to last body byte).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub latency: Duration,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// `HTTP 409 Conflict: {body...}` for error messages.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut quoted: String = text.chars().take(MAX_BODY_IN_MESSAGE).collect();
        if quoted.len() < text.len() {
            quoted.push_str("...");
        }
        format!("HTTP {}: {}", self.status, quoted)
    }

    /// `body[key]["id"]` of a create response such as `{"port": {"id": ..}}`.
    pub fn created_id(&self, key: &str) -> Option<String> {
        self.created_field(key, "id")
    }

    /// `body[key][field]` (a string) of a create response, e.g. the
    /// `project_id` of `{"router": {"id": .., "project_id": ..}}`.
    pub fn created_field(&self, key: &str, field: &str) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v.get(key)?.get(field)?.as_str().map(str::to_string)
    }
}

/// Client for one Neutron endpoint, cheap to clone (shares the connection
/// pool).
#[derive(Clone)]
pub(crate) struct Api {
    http: Client,
    base: Arc<str>,
}

impl Api {
    /// `base` must already be normalised (see [`normalize_network_url`]).
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, BenchError> {
        let mut token_value = HeaderValue::from_str(token).map_err(|_| {
            BenchError::InvalidArgs("the token contains characters not allowed in a header".into())
        })?;
        token_value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(AUTH_TOKEN_HEADER), token_value);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = client_builder(timeout)?.default_headers(headers).build()?;
        Ok(Api {
            http,
            base: Arc::from(base),
        })
    }

    /// Sends `method base+path` (with an optional JSON body, serialised before
    /// the clock starts) and reads the whole response body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(body);
        }
        let request = request.build()?;
        let start = Instant::now();
        let response = self.http.execute(request).await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let latency = start.elapsed();
        Ok(Reply {
            status,
            body: bytes.to_vec(),
            latency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_network_urls() {
        let n = |s: &str| normalize_network_url(s).unwrap();
        assert_eq!(n("http://127.0.0.1:9696"), "http://127.0.0.1:9696");
        assert_eq!(n(" http://127.0.0.1:9696/ "), "http://127.0.0.1:9696");
        assert_eq!(n("http://127.0.0.1:9696/v2.0/"), "http://127.0.0.1:9696");
        assert_eq!(n("http://host/networking"), "http://host/networking");
        assert!(normalize_network_url("127.0.0.1:9696").is_err());
        assert!(normalize_network_url("http://").is_err());
        assert!(normalize_network_url("http://h/?x=1").is_err());
    }

    #[test]
    fn reply_helpers() {
        let reply = Reply {
            status: StatusCode::CREATED,
            body: br#"{"port": {"id": "abc", "name": ""}}"#.to_vec(),
            latency: Duration::ZERO,
        };
        assert!(reply.is_success());
        assert_eq!(reply.created_id("port").as_deref(), Some("abc"));
        assert_eq!(reply.created_id("network"), None);
        assert_eq!(reply.created_field("port", "name").as_deref(), Some(""));
        assert_eq!(reply.created_field("port", "project_id"), None);
        let reply = Reply {
            status: StatusCode::CONFLICT,
            body: b"{\"NeutronError\": {}}".to_vec(),
            latency: Duration::ZERO,
        };
        assert_eq!(
            reply.describe(),
            "HTTP 409 Conflict: {\"NeutronError\": {}}"
        );
    }
}
