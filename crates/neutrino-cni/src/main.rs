//! `neutrino-cni`: the CNI plugin binary. Reads `CNI_*` variables and the request
//! configuration, talks to the Neutrino server (Keystone v3 password login, cached between
//! calls by `token_cache`, then the Neutron API), prints the result or a CNI error object. The protocol rules live in
//! `protocol.rs`; this file does the I/O.

use neutrino_cni::protocol::{self, code, CniError, Command, CredentialSource, Env, NetConf};
use neutrino_cni::token_cache;
use neutrino_keystone::{network_endpoint, password_login, Credentials};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod nested_cmd;

fn main() {
    let get = |name: &str| std::env::var(name).ok();
    let mut stdin = String::new();
    let (version, outcome) = match std::io::stdin().read_to_string(&mut stdin) {
        Err(e) => (
            protocol::SUPPORTED_VERSIONS[1].to_string(),
            Err(CniError::new(
                code::IO_FAILURE,
                "cannot read stdin",
                e.to_string(),
            )),
        ),
        Ok(_) => run(&get, &stdin),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(value)) => {
            let _ = writeln!(out, "{value}");
        }
        Ok(None) => {}
        Err(err) => {
            let _ = writeln!(out, "{}", err.to_json(&version));
            let _ = out.flush();
            std::process::exit(1);
        }
    }
}

/// Runs one call; returns the version to tag errors with and the output.
fn run(
    get: &dyn Fn(&str) -> Option<String>,
    stdin: &str,
) -> (String, Result<Option<Value>, CniError>) {
    let fallback = protocol::SUPPORTED_VERSIONS[1].to_string();
    let command = match get("CNI_COMMAND") {
        Some(c) => match Command::parse(&c) {
            Ok(c) => c,
            Err(e) => return (fallback, Err(e)),
        },
        None => {
            return (
                fallback,
                Err(CniError::new(
                    code::INVALID_ENV,
                    "required environment variables missing",
                    "CNI_COMMAND",
                )),
            )
        }
    };
    if command == Command::Version {
        return match protocol::request_version(stdin) {
            Ok(v) => (fallback, Ok(Some(protocol::version_answer(v.as_deref())))),
            Err(e) => (fallback, Err(e)),
        };
    }
    // Errors answer in the requested version when it is one we speak.
    let version = match protocol::request_version(stdin) {
        Ok(Some(v)) if protocol::SUPPORTED_VERSIONS.contains(&v.as_str()) => v,
        _ => fallback,
    };
    let result = (|| {
        let conf = NetConf::parse(stdin, command)?;
        let env = Env::read(command, get)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                CniError::new(code::IO_FAILURE, "cannot start the runtime", e.to_string())
            })?;
        rt.block_on(async {
            let mut api = Api::login(&conf).await?;
            if let Some(nc) = neutrino_cni::nested::NestedConf::parse(stdin)? {
                match command {
                    Command::Add => {
                        return nested_cmd::add(&mut api, &conf, &nc, &env).await.map(Some)
                    }
                    Command::Del => return nested_cmd::del(&mut api, &env).await.map(|_| None),
                    Command::Check => return nested_cmd::check(&mut api, &env).await.map(|_| None),
                    Command::Gc => return nested_cmd::gc(&mut api, &conf, &nc).await.map(|_| None),
                    _ => {}
                }
            }
            match command {
                Command::Add => add(&mut api, &conf, &env).await.map(Some),
                Command::Del => del(&mut api, &env).await.map(|_| None),
                Command::Check => check(&mut api, &env).await.map(|_| None),
                Command::Gc => gc(&mut api, &conf).await.map(|_| None),
                Command::Status => api.get("/v2.0/networks?limit=1").await.map(|_| None),
                Command::Version => unreachable!("answered above"),
            }
        })
    })();
    let result = match (command, result) {
        // STATUS: anything that stops an ADD now is "not available".
        (Command::Status, Err(e)) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "plugin not available",
            format!("{}: {}", e.msg, e.details),
        )),
        (_, r) => r,
    };
    (version, result)
}

/// Transport failures are transient: the runtime should retry.
fn transport(e: reqwest::Error) -> CniError {
    CniError::new(
        code::TRY_AGAIN_LATER,
        "server unreachable, try again later",
        neutrino_keystone::error_chain(&e),
    )
}

/// Reads credentials from the configured source.
fn credentials(conf: &NetConf) -> Result<Credentials, CniError> {
    let vars: Vec<(String, String)> = match &conf.credentials {
        CredentialSource::Openrc(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CniError::new(
                    code::CREDENTIALS,
                    "cannot read the openrc file",
                    format!("{path}: {e}"),
                )
            })?;
            neutrino_keystone::parse_openrc(&text)
        }
        CredentialSource::CloudsYaml { path, cloud } => clouds_yaml(path, cloud)?,
    };
    Credentials::from_env(&|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .map_err(|e| CniError::new(code::CREDENTIALS, "incomplete credentials", e.to_string()))
}

/// The `OS_*` equivalents of one cloud of a clouds.yaml file.
fn clouds_yaml(path: &str, cloud: &str) -> Result<Vec<(String, String)>, CniError> {
    let fail = |d: String| CniError::new(code::CREDENTIALS, "cannot use the clouds.yaml file", d);
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("{path}: {e}")))?;
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&text).map_err(|e| fail(format!("{path}: {e}")))?;
    let entry = &docs
        .first()
        .ok_or_else(|| fail(format!("{path} is empty")))?["clouds"][cloud];
    if entry.is_badvalue() {
        return Err(fail(format!("{path} has no cloud {cloud:?}")));
    }
    let auth = &entry["auth"];
    let mut vars = Vec::new();
    for (key, var) in [
        ("auth_url", "OS_AUTH_URL"),
        ("username", "OS_USERNAME"),
        ("password", "OS_PASSWORD"),
        ("project_name", "OS_PROJECT_NAME"),
        ("user_domain_name", "OS_USER_DOMAIN_NAME"),
        ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
    ] {
        if let Some(v) = auth[key].as_str() {
            vars.push((var.to_string(), v.to_string()));
        }
    }
    if let Some(v) = entry["region_name"].as_str() {
        vars.push(("OS_REGION_NAME".into(), v.into()));
    }
    // TLS as openstacksdk reads it: `cacert`, and `verify: false` or `insecure: true`.
    if let Some(v) = entry["cacert"].as_str() {
        vars.push(("OS_CACERT".into(), v.into()));
    }
    if entry["verify"].as_bool() == Some(false) || entry["insecure"].as_bool() == Some(true) {
        vars.push(("OS_INSECURE".into(), "true".into()));
    }
    Ok(vars)
}

/// An authenticated Neutron client.
struct Api {
    http: Client,
    token: String,
    endpoint: String,
    creds: Credentials,
    /// Where logins are cached (`None`: not cached).
    cache: Option<PathBuf>,
    /// The token came from the cache (so a 401 means: log in again).
    cached: bool,
}

impl Api {
    /// A client with a cached login when one is still good, else after a password login
    /// (then cached).
    async fn login(conf: &NetConf) -> Result<Self, CniError> {
        let creds = credentials(conf)?;
        let builder = Client::builder().timeout(Duration::from_secs(conf.request_timeout_secs));
        let http = creds
            .tls(builder)
            .map_err(|e| CniError::new(code::CREDENTIALS, "unusable OS_CACERT", e.to_string()))?
            .build()
            .map_err(|e| {
                CniError::new(
                    code::IO_FAILURE,
                    "cannot build the HTTP client",
                    e.to_string(),
                )
            })?;
        let cache =
            Some(PathBuf::from(&conf.token_cache_dir)).filter(|d| !d.as_os_str().is_empty());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut api = Api {
            http,
            token: String::new(),
            endpoint: String::new(),
            creds,
            cache,
            cached: false,
        };
        match api
            .cache
            .as_deref()
            .and_then(|d| token_cache::load(d, &api.creds, now))
        {
            Some(hit) => {
                api.token = hit.token;
                api.endpoint = hit.endpoint;
                api.cached = true;
            }
            None => api.fresh_login().await?,
        }
        Ok(api)
    }

    /// A password (or application credential) login, stored in the cache.
    async fn fresh_login(&mut self) -> Result<(), CniError> {
        let (token, body) = password_login(&self.http, &self.creds)
            .await
            .map_err(|e| match e {
                neutrino_keystone::KeystoneError::Http(e) => transport(e),
                other => CniError::new(code::SERVER_REFUSED, "login failed", other.to_string()),
            })?;
        let endpoint = network_endpoint(&body, self.creds.region.as_deref()).map_err(|e| {
            CniError::new(code::SERVER_REFUSED, "no network endpoint", e.to_string())
        })?;
        self.token = token;
        self.endpoint = endpoint.trim_end_matches('/').to_string();
        self.cached = false;
        if let Some(dir) = &self.cache {
            let entry = token_cache::Cached {
                token: self.token.clone(),
                endpoint: self.endpoint.clone(),
            };
            token_cache::store(dir, &self.creds, &entry, &body);
        }
        Ok(())
    }

    /// One request; `Ok(None)` for 404.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, CniError> {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(neutrino_keystone::AUTH_TOKEN_HEADER, &self.token);
        let body_again = body.clone();
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED && self.cached {
            // The cached token was revoked or the server forgot it: log in, try once more.
            if let Some(dir) = &self.cache {
                token_cache::forget(dir, &self.creds);
            }
            self.fresh_login().await?;
            return Box::pin(self.call(method, path, body_again)).await;
        }
        let text = resp.text().await.map_err(transport)?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                "server error, try again later",
                format!("{method} {path}: HTTP {status}: {text}"),
            ));
        }
        if !status.is_success() {
            return Err(CniError::new(
                code::SERVER_REFUSED,
                "the server refused the request",
                format!("{method} {path}: HTTP {status}: {text}"),
            ));
        }
        if text.trim().is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CniError::new(
                code::SERVER_REFUSED,
                "bad answer from the server",
                e.to_string(),
            )
        })
    }

    async fn get(&mut self, path: &str) -> Result<Value, CniError> {
        self.call(Method::GET, path, None).await?.ok_or_else(|| {
            CniError::new(
                code::SERVER_REFUSED,
                "not found",
                format!("GET {path}: HTTP 404"),
            )
        })
    }

    /// Resolves a network or security-group name or id.
    async fn resolve(
        &mut self,
        collection: &str,
        key: &str,
        wanted: &str,
    ) -> Result<String, CniError> {
        let by_id = self
            .call(
                Method::GET,
                &format!("/v2.0/{collection}/{}", enc(wanted)),
                None,
            )
            .await?;
        if let Some(id) = by_id.as_ref().and_then(|v| v[key]["id"].as_str()) {
            return Ok(id.to_string());
        }
        let list = self
            .get(&format!("/v2.0/{collection}?name={}", enc(wanted)))
            .await?;
        let items = list[format!("{key}s")]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match items.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            [] => Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "invalid network config",
                format!("no {key} named or with id {wanted:?}"),
            )),
            _ => Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "invalid network config",
                format!("several {collection} are named {wanted:?}: give an id"),
            )),
        }
    }

    async fn ports_of(&mut self, container_id: &str) -> Result<Vec<Value>, CniError> {
        let list = self
            .get(&format!(
                "/v2.0/ports?device_id={}&device_owner={}",
                enc(container_id),
                enc(protocol::DEVICE_OWNER)
            ))
            .await?;
        Ok(list["ports"].as_array().cloned().unwrap_or_default())
    }

    async fn delete_port(&mut self, id: &str) -> Result<(), CniError> {
        self.call(Method::DELETE, &format!("/v2.0/ports/{id}"), None)
            .await
            .map(|_| ())
    }
}

/// Percent-encodes a query or path value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// ADD's checks of the runtime's namespace: it exists and has no `CNI_IFNAME` yet.
fn check_add_target(env: &Env) -> Result<(), CniError> {
    if !std::path::Path::new(&env.netns).exists() {
        return Err(CniError::new(
            code::INVALID_ENV,
            "invalid CNI_NETNS",
            format!("{} does not exist", env.netns),
        ));
    }
    if interface_json(&env.netns, &env.ifname).is_some() {
        return Err(CniError::new(
            code::INVALID_ENV,
            "interface exists",
            format!("{} already exists in {}", env.ifname, env.netns),
        ));
    }
    Ok(())
}

async fn add(api: &mut Api, conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    check_add_target(env)?;
    let network_id = api.resolve("networks", "network", &conf.network).await?;
    let groups = match &conf.security_groups {
        None => None,
        Some(names) => {
            let mut ids = Vec::new();
            for n in names {
                ids.push(api.resolve("security-groups", "security_group", n).await?);
            }
            Some(ids)
        }
    };
    let host = conf.host.clone().unwrap_or_else(hostname);
    // A previous ADD of this attachment that the runtime never DELeted: start afresh.
    for old in api.ports_of(&env.container_id).await? {
        if protocol::is_attachment_port(&old, &env.container_id, &env.ifname) {
            api.delete_port(old["id"].as_str().unwrap_or_default())
                .await?;
        }
    }
    // A parked port of a matching pool when there is one (404: none, create one).
    let taken = if conf.use_port_pools {
        let body = protocol::take_body(env, &network_id, &host, groups.as_deref());
        api.call(Method::POST, "/v2.0/neutrino/port-pools/take", Some(body))
            .await?
    } else {
        None
    };
    let port = match taken {
        Some(port) => port,
        None => {
            let body = protocol::port_body(env, &network_id, &host, groups.as_deref());
            api.get_or_post(body).await?
        }
    };
    let port_id = port["port"]["id"].as_str().unwrap_or_default().to_string();
    match finish_add(api, conf, env, &port_id).await {
        Ok(result) => Ok(result),
        Err(e) => {
            // Leave nothing behind; the original error is what the runtime needs to see.
            let _ = api.delete_port(&port_id).await;
            Err(e)
        }
    }
}

impl Api {
    async fn get_or_post(&mut self, body: Value) -> Result<Value, CniError> {
        self.call(Method::POST, "/v2.0/ports", Some(body))
            .await?
            .ok_or_else(|| {
                CniError::new(
                    code::SERVER_REFUSED,
                    "not found",
                    "POST /v2.0/ports: HTTP 404",
                )
            })
    }
}

async fn finish_add(
    api: &mut Api,
    conf: &NetConf,
    env: &Env,
    port_id: &str,
) -> Result<Value, CniError> {
    let port = wait_active(api, conf, port_id).await?;
    let mut subnets = Vec::new();
    for fixed in port["fixed_ips"].as_array().cloned().unwrap_or_default() {
        let id = fixed["subnet_id"].as_str().unwrap_or_default();
        subnets.push(api.get(&format!("/v2.0/subnets/{id}")).await?["subnet"].clone());
    }
    Ok(protocol::add_result(
        &conf.cni_version,
        env,
        &port,
        &subnets,
    ))
}

/// Polls the port until it is `ACTIVE` (wired and filtered by its host's agent), at most
/// `activeTimeout`; the port as last read. Every 10 ms for the first half second (an agent
/// wires a port in tens of milliseconds), then every 100 ms.
async fn wait_active(api: &mut Api, conf: &NetConf, port_id: &str) -> Result<Value, CniError> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(conf.active_timeout_secs);
    loop {
        let port = api.get(&format!("/v2.0/ports/{port_id}")).await?["port"].clone();
        if port["status"] == "ACTIVE" {
            return Ok(port);
        }
        if Instant::now() >= deadline {
            return Err(CniError::new(
                code::PORT_NOT_ACTIVE,
                "port not active",
                format!(
                    "port {port_id} is {} after {} s: is the agent of host {} running?",
                    port["status"], conf.active_timeout_secs, port["binding:host_id"]
                ),
            ));
        }
        let pause = if started.elapsed() < Duration::from_millis(500) {
            10
        } else {
            100
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

async fn del(api: &mut Api, env: &Env) -> Result<(), CniError> {
    for port in api.ports_of(&env.container_id).await? {
        if protocol::is_attachment_port(&port, &env.container_id, &env.ifname) {
            api.delete_port(port["id"].as_str().unwrap_or_default())
                .await?;
        }
    }
    Ok(())
}

/// `ip -j addr show dev <ifname>` inside the netns at `path`.
fn interface_json(netns: &str, ifname: &str) -> Option<Value> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["ip", "-j", "addr", "show", "dev", ifname])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    (v.as_array().is_some_and(|a| !a.is_empty())).then_some(v)
}

async fn check(api: &mut Api, env: &Env) -> Result<(), CniError> {
    let ports: Vec<Value> = api
        .ports_of(&env.container_id)
        .await?
        .into_iter()
        .filter(|p| protocol::is_attachment_port(p, &env.container_id, &env.ifname))
        .collect();
    let [port] = ports.as_slice() else {
        return Err(CniError::new(
            code::CHECK_FAILED,
            "check failed",
            format!("{} ports for this attachment, expected 1", ports.len()),
        ));
    };
    let observed = interface_json(&env.netns, &env.ifname).unwrap_or_else(|| json!([]));
    let problems = protocol::check_interface(&observed, port);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::CHECK_FAILED,
            "check failed",
            problems.join("; "),
        ))
    }
}

async fn gc(api: &mut Api, conf: &NetConf) -> Result<(), CniError> {
    let host = conf.host.clone().unwrap_or_else(hostname);
    // Only this CNI network's ports: the valid attachments are those of this network.
    let network_id = api.resolve("networks", "network", &conf.network).await?;
    let list = api
        .get(&format!(
            "/v2.0/ports?device_owner={}&binding:host_id={}&network_id={}",
            enc(protocol::DEVICE_OWNER),
            enc(&host),
            enc(&network_id)
        ))
        .await?;
    let ports = list["ports"].as_array().cloned().unwrap_or_default();
    let mut failures = Vec::new();
    for id in protocol::gc_victims(&ports, &conf.valid_attachments) {
        if let Err(e) = api.delete_port(&id).await {
            failures.push(format!("{id}: {}", e.details));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "some ports could not be deleted",
            failures.join("; "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_yaml_tls_settings_become_os_variables() {
        let dir = std::env::temp_dir().join(format!("neutrino-cni-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clouds.yaml");
        std::fs::write(
            &path,
            "clouds:\n  a:\n    auth: {auth_url: 'https://h:9696/v3', username: u}\n    cacert: /etc/ca.pem\n  b:\n    auth: {auth_url: 'https://h:9696/v3'}\n    verify: false\n  c:\n    auth: {auth_url: 'https://h:9696/v3'}\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let get = |vars: &[(String, String)], k: &str| {
            vars.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        let a = clouds_yaml(path, "a").unwrap();
        assert_eq!(get(&a, "OS_CACERT").as_deref(), Some("/etc/ca.pem"));
        assert_eq!(get(&a, "OS_INSECURE"), None);
        let b = clouds_yaml(path, "b").unwrap();
        assert_eq!(get(&b, "OS_INSECURE").as_deref(), Some("true"));
        let c = clouds_yaml(path, "c").unwrap();
        assert_eq!(get(&c, "OS_CACERT"), None);
        assert_eq!(get(&c, "OS_INSECURE"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
