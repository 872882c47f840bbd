//! Keystone v3 login from `OS_*` variables and service-catalog lookup.

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Client;
use serde_json::{json, Value};

use crate::api::{normalize_network_url, AUTH_TOKEN_HEADER};
use crate::BenchError;

const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";

/// Password credentials of an openrc file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Credentials {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// `OS_REGION_NAME`, used to choose among several network endpoints.
    pub region: Option<String>,
}

impl Credentials {
    /// Reads `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`
    /// (or the legacy `OS_TENANT_NAME`), `OS_USER_DOMAIN_NAME` and
    /// `OS_PROJECT_DOMAIN_NAME` (both default to `Default`) and
    /// `OS_REGION_NAME` through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, BenchError> {
        let required = |name: &'static str| env(name).ok_or(BenchError::MissingEnv(name));
        Ok(Credentials {
            auth_url: required("OS_AUTH_URL")?,
            username: required("OS_USERNAME")?,
            password: required("OS_PASSWORD")?,
            project_name: match env("OS_PROJECT_NAME").or_else(|| env("OS_TENANT_NAME")) {
                Some(name) => name,
                None => return Err(BenchError::MissingEnv("OS_PROJECT_NAME")),
            },
            user_domain_name: env("OS_USER_DOMAIN_NAME").unwrap_or_else(|| "Default".into()),
            project_domain_name: env("OS_PROJECT_DOMAIN_NAME").unwrap_or_else(|| "Default".into()),
            region: env("OS_REGION_NAME"),
        })
    }

    /// Keystone v3 password authentication body, scoped to the project by
    /// name and domain name.
    pub fn password_auth_body(&self) -> Value {
        json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "domain": {"name": self.user_domain_name},
                            "password": self.password,
                        }
                    }
                },
                "scope": {
                    "project": {
                        "name": self.project_name,
                        "domain": {"name": self.project_domain_name},
                    }
                }
            }
        })
    }
}

/// The identity API base: `OS_AUTH_URL` without trailing slashes, with `/v3`
/// appended unless its last path segment already is a version (`v3`, `v2.0`).
pub(crate) fn identity_base(auth_url: &str) -> Result<String, BenchError> {
    let url = auth_url.trim();
    let Some((_, rest)) = url.split_once("://") else {
        return Err(BenchError::InvalidUrl {
            url: auth_url.to_string(),
            reason: "OS_AUTH_URL must be an http:// or https:// URL".into(),
        });
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) || rest.is_empty() {
        return Err(BenchError::InvalidUrl {
            url: auth_url.to_string(),
            reason: "OS_AUTH_URL must be an http:// or https:// URL".into(),
        });
    }
    let trimmed = url.trim_end_matches('/');
    let path = trimmed
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, path)| path);
    let last = path.rsplit('/').next().unwrap_or("");
    if is_version_segment(last) {
        Ok(trimmed.to_string())
    } else {
        Ok(format!("{trimmed}/v3"))
    }
}

/// `v3`, `v2.0`, `v3.14`...
fn is_version_segment(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// Finds the `public` endpoint of the catalog entry of type `network` in a
/// Keystone v3 token body (`{"token": {"catalog": [...]}}`).
///
/// With `region`, an endpoint of that region (`region_id` or `region`) is
/// preferred; otherwise, or when none matches, the first public one is used.
pub(crate) fn network_endpoint(
    token_body: &Value,
    region: Option<&str>,
) -> Result<String, BenchError> {
    let catalog = token_body
        .get("token")
        .and_then(|t| t.get("catalog"))
        .and_then(Value::as_array)
        .ok_or_else(|| BenchError::NoNetworkEndpoint(" (the token has no catalog)".into()))?;
    let public: Vec<&Value> = catalog
        .iter()
        .filter(|service| service.get("type").and_then(Value::as_str) == Some("network"))
        .filter_map(|service| service.get("endpoints").and_then(Value::as_array))
        .flatten()
        .filter(|ep| ep.get("interface").and_then(Value::as_str) == Some("public"))
        .filter(|ep| ep.get("url").and_then(Value::as_str).is_some())
        .collect();
    let in_region = region.and_then(|wanted| {
        public.iter().copied().find(|ep| {
            ["region_id", "region"]
                .iter()
                .any(|k| ep.get(*k).and_then(Value::as_str) == Some(wanted))
        })
    });
    in_region
        .or_else(|| public.first().copied())
        .and_then(|ep| ep.get("url").and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| BenchError::NoNetworkEndpoint(String::new()))
}

fn auth_failure(what: &str, status: reqwest::StatusCode, body: &str) -> BenchError {
    let body: String = body.trim().chars().take(1000).collect();
    BenchError::Auth(format!("{what}: HTTP {status}: {body}"))
}

/// `POST {identity}/auth/tokens` with the password method; returns the token
/// (`X-Subject-Token`) and the token body (with the catalog).
pub(crate) async fn password_login(
    http: &Client,
    creds: &Credentials,
) -> Result<(String, Value), BenchError> {
    let url = format!("{}/auth/tokens", identity_base(&creds.auth_url)?);
    let response = http
        .post(&url)
        .json(&creds.password_auth_body())
        .send()
        .await?;
    let status = response.status();
    let token = response
        .headers()
        .get(SUBJECT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await?;
    if !status.is_success() {
        return Err(auth_failure(&format!("POST {url}"), status, &text));
    }
    let token = token.ok_or_else(|| {
        BenchError::Auth(format!(
            "POST {url}: no X-Subject-Token header in the response"
        ))
    })?;
    Ok((token, serde_json::from_str(&text)?))
}

/// `GET {identity}/auth/tokens` validating `token` against itself, to obtain
/// its catalog when only `--token` was given.
pub(crate) async fn token_body(
    http: &Client,
    auth_url: &str,
    token: &str,
) -> Result<Value, BenchError> {
    let url = format!("{}/auth/tokens", identity_base(auth_url)?);
    let mut value = HeaderValue::from_str(token).map_err(|_| {
        BenchError::InvalidArgs("the token contains characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    let response = http
        .get(&url)
        .header(HeaderName::from_static(AUTH_TOKEN_HEADER), value.clone())
        .header(HeaderName::from_static(SUBJECT_TOKEN_HEADER), value)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        return Err(auth_failure(&format!("GET {url}"), status, &text));
    }
    Ok(serde_json::from_str(&text)?)
}

/// Determines the network endpoint base URL and the token to use.
///
/// * `--url` and `--token`: used as given, nothing else is contacted.
/// * `--token` only: the token is validated at `OS_AUTH_URL` to read its
///   catalog.
/// * otherwise: password login with the `OS_*` variables; `--url`, when
///   given, overrides the catalog endpoint.
pub(crate) async fn resolve(
    http: &Client,
    url: Option<&str>,
    token: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String), BenchError> {
    match (url, token) {
        (Some(url), Some(token)) => Ok((normalize_network_url(url)?, token.to_string())),
        (None, Some(token)) => {
            let auth_url = env("OS_AUTH_URL").ok_or(BenchError::MissingEnv("OS_AUTH_URL"))?;
            let body = token_body(http, &auth_url, token).await?;
            let region = env("OS_REGION_NAME");
            let endpoint = network_endpoint(&body, region.as_deref())?;
            Ok((normalize_network_url(&endpoint)?, token.to_string()))
        }
        (url, None) => {
            let creds = Credentials::from_env(env)?;
            let (token, body) = password_login(http, &creds).await?;
            let endpoint = match url {
                Some(url) => url.to_string(),
                None => network_endpoint(&body, creds.region.as_deref())?,
            };
            Ok((normalize_network_url(&endpoint)?, token))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_TOKEN_BODY: &str = r#"{
      "token": {
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "u1", "name": "demo"},
        "project": {"domain": {"id": "default", "name": "Default"}, "id": "p1", "name": "demo"},
        "expires_at": "2030-01-01T00:00:00.000000Z",
        "catalog": [
          {
            "type": "identity", "name": "keystone", "id": "s1",
            "endpoints": [
              {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
               "url": "http://127.0.0.1/identity", "id": "e1"}
            ]
          },
          {
            "type": "network", "name": "neutron", "id": "s2",
            "endpoints": [
              {"interface": "internal", "region": "RegionOne", "region_id": "RegionOne",
               "url": "http://10.0.0.5:9696", "id": "e2"},
              {"interface": "admin", "region": "RegionOne", "region_id": "RegionOne",
               "url": "http://10.0.0.6:9696", "id": "e3"},
              {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
               "url": "http://127.0.0.1:9696/", "id": "e4"},
              {"interface": "public", "region": "RegionTwo", "region_id": "RegionTwo",
               "url": "http://127.0.0.2:9696", "id": "e5"}
            ]
          },
          {
            "type": "compute", "name": "nova", "id": "s3",
            "endpoints": [
              {"interface": "public", "region": "RegionOne", "region_id": "RegionOne",
               "url": "http://127.0.0.1/compute/v2.1", "id": "e6"}
            ]
          }
        ]
      }
    }"#;

    #[test]
    fn finds_public_network_endpoint_in_catalog() {
        let body: Value = serde_json::from_str(SAMPLE_TOKEN_BODY).unwrap();
        assert_eq!(
            network_endpoint(&body, None).unwrap(),
            "http://127.0.0.1:9696/"
        );
        assert_eq!(
            network_endpoint(&body, Some("RegionTwo")).unwrap(),
            "http://127.0.0.2:9696"
        );
        // Unknown region: fall back to the first public endpoint.
        assert_eq!(
            network_endpoint(&body, Some("Nowhere")).unwrap(),
            "http://127.0.0.1:9696/"
        );
        assert_eq!(
            normalize_network_url(&network_endpoint(&body, None).unwrap()).unwrap(),
            "http://127.0.0.1:9696"
        );
    }

    #[test]
    fn catalog_without_network_service_is_an_error() {
        let body = json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://x"}]},
            {"type": "network", "endpoints": [{"interface": "internal", "url": "http://y"}]}
        ]}});
        assert!(matches!(
            network_endpoint(&body, None),
            Err(BenchError::NoNetworkEndpoint(_))
        ));
        assert!(matches!(
            network_endpoint(&json!({"token": {}}), None),
            Err(BenchError::NoNetworkEndpoint(_))
        ));
    }

    #[test]
    fn identity_base_appends_v3_only_without_version() {
        let b = |s: &str| identity_base(s).unwrap();
        assert_eq!(b("http://127.0.0.1:5000"), "http://127.0.0.1:5000/v3");
        assert_eq!(b("http://127.0.0.1:5000/"), "http://127.0.0.1:5000/v3");
        assert_eq!(b("http://127.0.0.1:5000/v3"), "http://127.0.0.1:5000/v3");
        assert_eq!(b("http://127.0.0.1:5000/v3/"), "http://127.0.0.1:5000/v3");
        assert_eq!(
            b("http://127.0.0.1/identity"),
            "http://127.0.0.1/identity/v3"
        );
        assert_eq!(
            b("http://127.0.0.1/identity/v3"),
            "http://127.0.0.1/identity/v3"
        );
        assert_eq!(
            b("http://127.0.0.1:5000/v2.0"),
            "http://127.0.0.1:5000/v2.0"
        );
        assert_eq!(b("http://v3"), "http://v3/v3");
        assert!(identity_base("127.0.0.1:5000").is_err());
        assert!(identity_base("ftp://x").is_err());
    }

    #[test]
    fn credentials_from_openrc_variables() {
        let vars = [
            ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
            ("OS_USERNAME", "admin"),
            ("OS_PASSWORD", "secret"),
            ("OS_PROJECT_NAME", "admin"),
            ("OS_USER_DOMAIN_NAME", "Users"),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        let creds = Credentials::from_env(&env).unwrap();
        assert_eq!(creds.project_domain_name, "Default");
        assert_eq!(creds.user_domain_name, "Users");
        let body = creds.password_auth_body();
        assert_eq!(body["auth"]["identity"]["methods"], json!(["password"]));
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["name"],
            "admin"
        );
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["domain"]["name"],
            "Users"
        );
        assert_eq!(body["auth"]["scope"]["project"]["name"], "admin");
        assert_eq!(
            body["auth"]["scope"]["project"]["domain"]["name"],
            "Default"
        );

        let missing = |k: &str| if k == "OS_PASSWORD" { None } else { env(k) };
        assert!(matches!(
            Credentials::from_env(&missing),
            Err(BenchError::MissingEnv("OS_PASSWORD"))
        ));
    }
}
