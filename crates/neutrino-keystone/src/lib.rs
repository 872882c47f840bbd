//! The Keystone v3 subset every Neutrino client needs: password credentials read from the
//! `OS_*` variables of an openrc file (or an application credential: a Neutrino host
//! credential, `OS_APPLICATION_CREDENTIAL_ID`/`_SECRET`), login (`POST /v3/auth/tokens`), token
//! validation, and the lookup of the public `network` endpoint in the token's catalog.
//! Used by `neutrino agent`, `neutrino bench` and the CNI plugin. Its HTTP clients verify
//! HTTPS servers as the openstack CLI does: against the CA bundle named by `OS_CACERT` when
//! set (instead of the system roots), not at all with `OS_INSECURE=true` (unsafe).

use reqwest::{Client, ClientBuilder};
use serde_json::{json, Value};

/// Header carrying a token on requests.
pub const AUTH_TOKEN_HEADER: &str = "x-auth-token";
/// Header carrying the issued token in Keystone's answer.
pub const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";

/// Password credentials of an openrc file.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// `OS_AUTH_URL`.
    pub auth_url: String,
    /// `OS_USERNAME`.
    pub username: String,
    /// `OS_PASSWORD`.
    pub password: String,
    /// `OS_PROJECT_NAME` (or `OS_TENANT_NAME`).
    pub project_name: String,
    /// `OS_USER_DOMAIN_NAME` (default `Default`).
    pub user_domain_name: String,
    /// `OS_PROJECT_DOMAIN_NAME` (default `Default`).
    pub project_domain_name: String,
    /// `OS_REGION_NAME`, used to choose among several network endpoints.
    pub region: Option<String>,
    /// `OS_CACERT`: a PEM bundle of the CAs that may sign the server's certificate.
    pub cacert: Option<String>,
    /// `OS_INSECURE=true`: no verification of the server's certificate at all (unsafe:
    /// anyone on the path can impersonate the server and read the credentials).
    pub insecure: bool,
    /// `OS_APPLICATION_CREDENTIAL_ID` and `OS_APPLICATION_CREDENTIAL_SECRET`: log in with
    /// Keystone's `application_credential` method instead of the password (a Neutrino host
    /// credential: the agent of one host). Then no user, password or project is needed.
    pub application_credential: Option<ApplicationCredential>,
}

/// An application credential (Keystone's `v3applicationcredential` auth type).
#[derive(Clone, PartialEq)]
pub struct ApplicationCredential {
    /// `OS_APPLICATION_CREDENTIAL_ID`.
    pub id: String,
    /// `OS_APPLICATION_CREDENTIAL_SECRET`.
    pub secret: String,
}

impl std::fmt::Debug for ApplicationCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationCredential")
            .field("id", &self.id)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// Reads `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`
    /// (or the legacy `OS_TENANT_NAME`), `OS_USER_DOMAIN_NAME` and
    /// `OS_PROJECT_DOMAIN_NAME` (both default to `Default`),
    /// `OS_REGION_NAME`, `OS_CACERT` and `OS_INSECURE` (`true` in any case: on) through `env`.
    /// With `OS_APPLICATION_CREDENTIAL_ID` (and then `OS_APPLICATION_CREDENTIAL_SECRET`) set,
    /// only `OS_AUTH_URL` of the password variables is required.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, KeystoneError> {
        let required = |name: &'static str| env(name).ok_or(KeystoneError::MissingEnv(name));
        if let Some(id) = env("OS_APPLICATION_CREDENTIAL_ID").filter(|v| !v.is_empty()) {
            return Ok(Credentials {
                auth_url: required("OS_AUTH_URL")?,
                username: String::new(),
                password: String::new(),
                project_name: String::new(),
                user_domain_name: "Default".into(),
                project_domain_name: "Default".into(),
                region: env("OS_REGION_NAME"),
                cacert: env("OS_CACERT").filter(|v| !v.is_empty()),
                insecure: env("OS_INSECURE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
                application_credential: Some(ApplicationCredential {
                    id,
                    secret: required("OS_APPLICATION_CREDENTIAL_SECRET")?,
                }),
            });
        }
        Ok(Credentials {
            auth_url: required("OS_AUTH_URL")?,
            username: required("OS_USERNAME")?,
            password: required("OS_PASSWORD")?,
            project_name: match env("OS_PROJECT_NAME").or_else(|| env("OS_TENANT_NAME")) {
                Some(name) => name,
                None => return Err(KeystoneError::MissingEnv("OS_PROJECT_NAME")),
            },
            user_domain_name: env("OS_USER_DOMAIN_NAME").unwrap_or_else(|| "Default".into()),
            project_domain_name: env("OS_PROJECT_DOMAIN_NAME").unwrap_or_else(|| "Default".into()),
            region: env("OS_REGION_NAME"),
            cacert: env("OS_CACERT").filter(|v| !v.is_empty()),
            insecure: env("OS_INSECURE").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            application_credential: None,
        })
    }

    /// The body of `POST /v3/auth/tokens` for these credentials: the application
    /// credential when there is one, else the password scoped to the project.
    pub fn auth_body(&self) -> Value {
        match &self.application_credential {
            Some(ac) => json!({
                "auth": {
                    "identity": {
                        "methods": ["application_credential"],
                        "application_credential": {"id": ac.id, "secret": ac.secret},
                    }
                }
            }),
            None => self.password_auth_body(),
        }
    }

    /// Applies the TLS settings to a client builder: with `OS_CACERT`, only its CAs are
    /// trusted (as the openstack CLI does); with `OS_INSECURE`, nothing is verified;
    /// otherwise the system's roots.
    pub fn tls(&self, builder: ClientBuilder) -> Result<ClientBuilder, KeystoneError> {
        tls_settings(builder, self.cacert.as_deref(), self.insecure)
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

/// TLS settings of a client builder, as the openstack CLI's: with a CA bundle (`OS_CACERT`)
/// only its CAs are trusted, with `insecure` (`OS_INSECURE=true`) nothing is verified,
/// otherwise the system's roots. An unusable bundle is an error here, before any request.
pub fn tls_settings(
    builder: ClientBuilder,
    cacert: Option<&str>,
    insecure: bool,
) -> Result<ClientBuilder, KeystoneError> {
    let mut builder = builder.use_rustls_tls();
    if let Some(path) = cacert {
        for cert in load_cacert(path)? {
            builder = builder.add_root_certificate(cert);
        }
        builder = builder.tls_built_in_root_certs(false);
    }
    Ok(builder.danger_accept_invalid_certs(insecure))
}

/// An error with its causes, `a: b: c`: reqwest's own message alone hides why a request
/// failed (refused connection, unknown certificate issuer, name mismatch).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// The CA certificates of a PEM bundle (`OS_CACERT`); at least one.
pub fn load_cacert(path: &str) -> Result<Vec<reqwest::Certificate>, KeystoneError> {
    let failed = |reason: String| KeystoneError::CaCert {
        path: path.to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The identity API base: `OS_AUTH_URL` without trailing slashes, with `/v3`
/// appended unless its last path segment already is a version (`v3`, `v2.0`).
pub fn identity_base(auth_url: &str) -> Result<String, KeystoneError> {
    let url = auth_url.trim();
    let Some((_, rest)) = url.split_once("://") else {
        return Err(KeystoneError::InvalidUrl {
            url: auth_url.to_string(),
            reason: "OS_AUTH_URL must be an http:// or https:// URL".into(),
        });
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) || rest.is_empty() {
        return Err(KeystoneError::InvalidUrl {
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
pub fn network_endpoint(token_body: &Value, region: Option<&str>) -> Result<String, KeystoneError> {
    let catalog = token_body
        .get("token")
        .and_then(|t| t.get("catalog"))
        .and_then(Value::as_array)
        .ok_or_else(|| KeystoneError::NoNetworkEndpoint(" (the token has no catalog)".into()))?;
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
        .ok_or_else(|| KeystoneError::NoNetworkEndpoint(String::new()))
}

fn auth_failure(what: &str, status: reqwest::StatusCode, body: &str) -> KeystoneError {
    let body: String = body.trim().chars().take(1000).collect();
    KeystoneError::Refused(format!("{what}: HTTP {status}: {body}"))
}

/// `POST {identity}/auth/tokens` with the password method (or the application credential,
/// see [`Credentials::auth_body`]); returns the token
/// (`X-Subject-Token`) and the token body (with the catalog).
pub async fn password_login(
    http: &Client,
    creds: &Credentials,
) -> Result<(String, Value), KeystoneError> {
    let url = format!("{}/auth/tokens", identity_base(&creds.auth_url)?);
    let response = http.post(&url).json(&creds.auth_body()).send().await?;
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
        KeystoneError::Refused(format!(
            "POST {url}: no X-Subject-Token header in the response"
        ))
    })?;
    Ok((token, serde_json::from_str(&text)?))
}

/// `GET {identity}/auth/tokens` validating `token` against itself, to obtain
/// its catalog when only `--token` was given.
pub async fn token_body(
    http: &Client,
    auth_url: &str,
    token: &str,
) -> Result<Value, KeystoneError> {
    let url = format!("{}/auth/tokens", identity_base(auth_url)?);
    let mut value = reqwest::header::HeaderValue::from_str(token).map_err(|_| {
        KeystoneError::Refused("the token contains characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    let response = http
        .get(&url)
        .header(
            reqwest::header::HeaderName::from_static(AUTH_TOKEN_HEADER),
            value.clone(),
        )
        .header(
            reqwest::header::HeaderName::from_static(SUBJECT_TOKEN_HEADER),
            value,
        )
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        return Err(auth_failure(&format!("GET {url}"), status, &text));
    }
    Ok(serde_json::from_str(&text)?)
}

/// What can go wrong talking to Keystone.
#[derive(Debug, thiserror::Error)]
pub enum KeystoneError {
    /// A required `OS_*` variable is not set.
    #[error("environment variable {0} is not set (source an openrc file)")]
    MissingEnv(&'static str),
    /// The `OS_CACERT` file cannot be used.
    #[error("OS_CACERT {path}: {reason}")]
    CaCert {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `OS_AUTH_URL` is unusable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending URL.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Keystone refused the credentials or answered something unexpected.
    #[error("authentication failed: {0}")]
    Refused(String),
    /// The token carries no `public` endpoint of type `network`.
    #[error("no public endpoint of type \"network\" in the Keystone service catalog{0}")]
    NoNetworkEndpoint(String),
    /// Keystone could not be reached or its answer not read.
    #[error("identity request failed: {}", error_chain(.0))]
    Http(#[from] reqwest::Error),
    /// The answer was not JSON.
    #[error("invalid JSON from identity: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses an openrc file: `export NAME=value` or `NAME=value` lines, values optionally in
/// single or double quotes; comments and other lines are ignored.
pub fn parse_openrc(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.push((k.to_string(), v.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrc_lines() {
        let text = "# c\nexport OS_AUTH_URL=http://x:5000/v3\nexport OS_PASSWORD='p w'\nOS_USERNAME=\"u\"\nunset X\n";
        let vars = parse_openrc(text);
        assert_eq!(
            vars,
            vec![
                ("OS_AUTH_URL".into(), "http://x:5000/v3".into()),
                ("OS_PASSWORD".into(), "p w".into()),
                ("OS_USERNAME".into(), "u".into()),
            ]
        );
    }

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
    }

    #[test]
    fn catalog_without_network_service_is_an_error() {
        let body = json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://x"}]},
            {"type": "network", "endpoints": [{"interface": "internal", "url": "http://y"}]}
        ]}});
        assert!(matches!(
            network_endpoint(&body, None),
            Err(KeystoneError::NoNetworkEndpoint(_))
        ));
        assert!(matches!(
            network_endpoint(&json!({"token": {}}), None),
            Err(KeystoneError::NoNetworkEndpoint(_))
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

        assert_eq!(creds.cacert, None);
        assert!(!creds.insecure);

        let missing = |k: &str| if k == "OS_PASSWORD" { None } else { env(k) };
        assert!(matches!(
            Credentials::from_env(&missing),
            Err(KeystoneError::MissingEnv("OS_PASSWORD"))
        ));
    }

    #[test]
    fn cacert_and_insecure_come_from_openrc_variables() {
        let env = |k: &str| match k {
            "OS_AUTH_URL" => Some("https://127.0.0.1:9696/v3".to_string()),
            "OS_USERNAME" | "OS_PASSWORD" | "OS_PROJECT_NAME" => Some("admin".into()),
            "OS_CACERT" => Some("/etc/neutrino/ca.pem".into()),
            "OS_INSECURE" => Some("True".into()),
            _ => None,
        };
        let creds = Credentials::from_env(&env).unwrap();
        assert_eq!(creds.cacert.as_deref(), Some("/etc/neutrino/ca.pem"));
        assert!(creds.insecure);
        let off = |k: &str| match k {
            "OS_INSECURE" => Some("false".to_string()),
            "OS_CACERT" => Some(String::new()),
            other => env(other),
        };
        let creds = Credentials::from_env(&off).unwrap();
        assert!(!creds.insecure);
        assert_eq!(creds.cacert, None);
    }

    #[test]
    fn an_unusable_cacert_is_named() {
        let err = load_cacert("/nonexistent/ca.pem").unwrap_err();
        assert!(
            matches!(&err, KeystoneError::CaCert { path, .. } if path == "/nonexistent/ca.pem"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("neutrino-keystone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = load_cacert(empty.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        // The error reaches the caller before any request.
        let creds = Credentials {
            auth_url: "https://127.0.0.1:9696/v3".into(),
            username: "u".into(),
            password: "p".into(),
            project_name: "p".into(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            region: None,
            cacert: Some("/nonexistent/ca.pem".into()),
            insecure: false,
            application_credential: None,
        };
        assert!(creds.tls(Client::builder()).is_err());
    }

    /// A host credential's openrc (`OS_AUTH_TYPE=v3applicationcredential`): no user,
    /// password or project needed; the login body names the application credential and no
    /// scope; the secret is not in the debug output; an id without a secret is an error.
    #[test]
    fn application_credentials_from_openrc_variables() {
        let vars = [
            ("OS_AUTH_URL", "https://ctl:9696/v3"),
            ("OS_AUTH_TYPE", "v3applicationcredential"),
            ("OS_APPLICATION_CREDENTIAL_ID", "c1"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "s3cret"),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let creds = Credentials::from_env(&env).unwrap();
        assert_eq!(
            creds.auth_body(),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                   "application_credential": {"id": "c1", "secret": "s3cret"}}}})
        );
        assert!(!format!("{creds:?}").contains("s3cret"));
        let env = |k: &str| {
            vars.iter()
                .filter(|(n, _)| *n != "OS_APPLICATION_CREDENTIAL_SECRET")
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        assert!(matches!(
            Credentials::from_env(&env),
            Err(KeystoneError::MissingEnv(
                "OS_APPLICATION_CREDENTIAL_SECRET"
            ))
        ));
        // Password credentials keep their body.
        let password = Credentials {
            application_credential: None,
            username: "u".into(),
            ..creds
        };
        assert_eq!(password.auth_body(), password.password_auth_body());
    }
}
