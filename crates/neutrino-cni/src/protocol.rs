//! The CNI protocol without I/O: the command and `CNI_*` variables, the request
//! configuration read from stdin, version negotiation, error objects with the spec's codes,
//! the Neutron port body an ADD creates, the CNI result built from the port and its subnets,
//! and the GC selection. Everything here is a plain function over data.

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Spec versions this plugin speaks, in ascending order.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "1.1.0"];
/// `device_owner` of the ports this plugin creates.
pub const DEVICE_OWNER: &str = "compute:container";
/// `binding:profile` key carrying the runtime's network namespace path.
pub const PROFILE_NETNS: &str = "neutrino:netns";
/// `binding:profile` key carrying the interface name inside the container.
pub const PROFILE_IFNAME: &str = "neutrino:ifname";

/// Error codes of the spec (and ours, from 100).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid required environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Plugin not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
    /// The server refused a request (Neutron or Keystone error answer).
    pub const SERVER_REFUSED: u32 = 100;
    /// The port did not become ACTIVE in time.
    pub const PORT_NOT_ACTIVE: u32 = 101;
    /// CHECK found the container interface missing or different.
    pub const CHECK_FAILED: u32 = 102;
    /// The credentials file could not be read or lacks a variable.
    pub const CREDENTIALS: u32 = 103;
}

/// A CNI error object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("CNI error {code}: {msg}: {details}")]
pub struct CniError {
    /// Spec code (below 100) or ours (100+).
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation.
    pub details: String,
}

impl CniError {
    /// A new error.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The JSON object printed on stdout, tagged with `version`.
    pub fn to_json(&self, version: &str) -> Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach.
    Del,
    /// Verify.
    Check,
    /// Drop stale attachments (1.1.0).
    Gc,
    /// Readiness (1.1.0).
    Status,
    /// Supported versions.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "invalid CNI_COMMAND",
                    format!("CNI_COMMAND={other:?} is not ADD, DEL, CHECK, GC, STATUS or VERSION"),
                ))
            }
        })
    }
}

/// The `CNI_*` variables of one attachment call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty on DEL).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
}

/// Checks a container id: non-empty, first character alphanumeric, then alphanumerics, `_`,
/// `.`, `-`.
fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks an interface name the way libcni does.
fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl Env {
    /// Reads and validates the variables `command` needs through `get`.
    pub fn read(command: Command, get: &dyn Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let mut env = Env::default();
        if !matches!(command, Command::Add | Command::Del | Command::Check) {
            return Ok(env);
        }
        let mut missing = Vec::new();
        let mut fetch = |name: &'static str, required: bool| {
            let v = get(name).unwrap_or_default();
            if required && v.is_empty() {
                missing.push(name);
            }
            v
        };
        env.container_id = fetch("CNI_CONTAINERID", true);
        env.netns = fetch("CNI_NETNS", command != Command::Del);
        env.ifname = fetch("CNI_IFNAME", true);
        let args = fetch("CNI_ARGS", false);
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                "required environment variables missing",
                missing.join(", "),
            ));
        }
        if !valid_id(&env.container_id) {
            return Err(CniError::new(
                code::INVALID_ENV,
                "invalid CNI_CONTAINERID",
                format!(
                    "{:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
                    env.container_id
                ),
            ));
        }
        if !valid_ifname(&env.ifname) {
            return Err(CniError::new(
                code::INVALID_ENV,
                "invalid CNI_IFNAME",
                format!(
                    "{:?}: at most 15 bytes, not . or .., no /, : or whitespace",
                    env.ifname
                ),
            ));
        }
        env.args = args
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect();
        Ok(env)
    }
}

/// A version string `major.minor.patch`, compared numerically.
pub fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// Checks the request's `cniVersion`: malformed → code 6, not supported → code 1.
pub fn check_version(version: &str) -> Result<(), CniError> {
    if parse_version(version).is_none() {
        return Err(CniError::new(
            code::DECODING_FAILURE,
            "invalid cniVersion",
            format!("{version:?} is not a version number"),
        ));
    }
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            format!(
                "config version {version} is not supported; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The VERSION answer. It is given whatever the request's version: the runtime decides.
pub fn version_answer(requested: Option<&str>) -> Value {
    let version = requested
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1]);
    json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS})
}

/// Where the plugin's credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialSource {
    /// An openrc file (`OS_*` variables).
    Openrc(String),
    /// A clouds.yaml file and the cloud's name in it.
    CloudsYaml {
        /// File path.
        path: String,
        /// Cloud name.
        cloud: String,
    },
}

/// The request configuration (stdin), the keys this plugin reads.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name` (the CNI network name).
    pub name: String,
    /// `network`: Neutrino network name or id.
    pub network: String,
    /// `securityGroups`: names or ids (absent: the server's default group).
    pub security_groups: Option<Vec<String>>,
    /// `openrc` or `cloudsYaml` + `cloud`.
    pub credentials: CredentialSource,
    /// `host`: binding host (default: the machine's hostname).
    pub host: Option<String>,
    /// `activeTimeout`: seconds to wait for the port to become ACTIVE (default 60).
    pub active_timeout_secs: u64,
    /// `requestTimeout`: seconds per HTTP request (default 10).
    pub request_timeout_secs: u64,
    /// GC: the attachments still valid, `(containerID, ifname)`, from either key spelling.
    pub valid_attachments: BTreeSet<(String, String)>,
    /// `tokenCacheDir`: where logins are cached between calls (default
    /// `/run/neutrino-cni`; `""`: no cache).
    pub token_cache_dir: String,
    /// `usePortPools`: ADD first takes a parked port of a matching port pool (default true).
    pub use_port_pools: bool,
}

/// Minimal request: `cniVersion` only (VERSION, and the version check before anything else).
pub fn request_version(stdin: &str) -> Result<Option<String>, CniError> {
    if stdin.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(stdin).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            "failed to decode the configuration",
            e.to_string(),
        )
    })?;
    if !v.is_object() {
        return Err(CniError::new(
            code::DECODING_FAILURE,
            "failed to decode the configuration",
            "the configuration is not a JSON object",
        ));
    }
    match v.get("cniVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::new(
            code::DECODING_FAILURE,
            "invalid cniVersion",
            format!("cniVersion must be a string, not {other}"),
        )),
    }
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_NETWORK_CONFIG, "invalid network config", msg)
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!(
            "{key} must be a non-empty string, not {other}"
        ))),
    }
}

fn opt_secs(obj: &Map<String, Value>, key: &str, default: u64) -> Result<u64, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(n),
            _ => Err(invalid(format!(
                "{key} must be a positive integer (seconds), not {v}"
            ))),
        },
    }
}

impl NetConf {
    /// Parses the request configuration for `command`. Unknown keys are ignored (the runtime
    /// passes through `capabilities`, `runtimeConfig`, `args`, `prevResult`, ...).
    pub fn parse(stdin: &str, command: Command) -> Result<Self, CniError> {
        let version = request_version(stdin)?.ok_or_else(|| {
            CniError::new(
                code::DECODING_FAILURE,
                "missing cniVersion",
                "the configuration has no cniVersion",
            )
        })?;
        check_version(&version)?;
        if matches!(command, Command::Gc | Command::Status)
            && parse_version(&version) < parse_version("1.1.0")
        {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                "incompatible CNI version",
                format!("{command:?} needs cniVersion 1.1.0 or later, the config says {version}"),
            ));
        }
        let v: Value = serde_json::from_str(stdin).expect("checked by request_version");
        let obj = v.as_object().expect("checked by request_version");
        let network = opt_str(obj, "network")?.ok_or_else(|| {
            invalid("the key \"network\" (a Neutrino network name or id) is required")
        })?;
        let security_groups = match obj.get("securityGroups") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .ok_or_else(|| {
                                invalid(format!("securityGroups: {i} is not a name or id"))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => {
                return Err(invalid(format!(
                    "securityGroups must be a list of names or ids, not {other}"
                )))
            }
        };
        let credentials = match (
            opt_str(obj, "openrc")?,
            opt_str(obj, "cloudsYaml")?,
            opt_str(obj, "cloud")?,
        ) {
            (Some(path), None, _) => CredentialSource::Openrc(path),
            (None, Some(path), Some(cloud)) => CredentialSource::CloudsYaml { path, cloud },
            (None, Some(_), None) => return Err(invalid("cloudsYaml needs the key \"cloud\"")),
            (Some(_), Some(_), _) => {
                return Err(CniError::new(
                    code::UNSUPPORTED_FIELD,
                    "unsupported field",
                    "openrc and cloudsYaml are exclusive: give one",
                ))
            }
            (None, None, _) => return Err(invalid(
                "credentials are required: \"openrc\" (a file path) or \"cloudsYaml\" + \"cloud\"",
            )),
        };
        let mut valid_attachments = BTreeSet::new();
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            if let Some(Value::Array(items)) = obj.get(key) {
                for item in items {
                    let id = item["containerID"].as_str().unwrap_or_default();
                    let ifname = item["ifname"].as_str().unwrap_or_default();
                    valid_attachments.insert((id.to_string(), ifname.to_string()));
                }
            }
        }
        Ok(NetConf {
            cni_version: version,
            name: obj
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            network,
            security_groups,
            credentials,
            host: opt_str(obj, "host")?,
            active_timeout_secs: opt_secs(obj, "activeTimeout", 60)?,
            request_timeout_secs: opt_secs(obj, "requestTimeout", 10)?,
            valid_attachments,
            token_cache_dir: match obj.get("tokenCacheDir") {
                None | Some(Value::Null) => crate::token_cache::DEFAULT_DIR.to_string(),
                Some(Value::String(dir)) => dir.clone(),
                Some(other) => {
                    return Err(invalid(format!(
                        "tokenCacheDir must be a string, not {other}"
                    )))
                }
            },
            use_port_pools: match obj.get("usePortPools") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("\"usePortPools\" must be true or false")),
            },
        })
    }
}

/// Name of the port of an attachment: `cni-<first 12 of the container id>-<ifname>`.
pub fn port_name(container_id: &str, ifname: &str) -> String {
    let short: String = container_id.chars().take(12).collect();
    format!("cni-{short}-{ifname}")
}

/// The body of `POST /v2.0/ports` for an ADD.
pub fn port_body(
    env: &Env,
    network_id: &str,
    host: &str,
    security_groups: Option<&[String]>,
) -> Value {
    let mut port = json!({
        "network_id": network_id,
        "name": port_name(&env.container_id, &env.ifname),
        "device_id": env.container_id,
        "device_owner": DEVICE_OWNER,
        "binding:host_id": host,
        "binding:profile": {PROFILE_NETNS: env.netns, PROFILE_IFNAME: env.ifname},
    });
    if let Some(groups) = security_groups {
        port["security_groups"] = json!(groups);
    }
    json!({ "port": port })
}

/// The body of `POST /v2.0/neutrino/port-pools/take` for an ADD: what [`port_body`] would
/// create, asked of the pool of (host, network, security groups).
pub fn take_body(
    env: &Env,
    network_id: &str,
    host: &str,
    security_groups: Option<&[String]>,
) -> Value {
    let mut body = port_body(env, network_id, host, security_groups);
    if let Some(port) = body["port"].as_object_mut() {
        port.remove("device_owner");
    }
    body
}

/// Whether `port` is this attachment's port (same container id and interface name).
pub fn is_attachment_port(port: &Value, container_id: &str, ifname: &str) -> bool {
    port["device_id"] == container_id
        && port["device_owner"] == DEVICE_OWNER
        && port["binding:profile"][PROFILE_IFNAME]
            .as_str()
            .unwrap_or(ifname)
            == ifname
}

/// Host-side end of the port's veth pair, as the agent names it (`tap` + 11 characters).
pub fn host_veth(port_id: &str) -> String {
    format!("tap{}", port_id.chars().take(11).collect::<String>())
}

/// The ADD result: host veth and container interface, one `ips` entry per fixed IP (with its
/// subnet's prefix length and gateway), and the routes a VM would get (each subnet's host
/// routes and a default route via the gateway of the first subnet per IP version that has
/// one).
pub fn add_result(version: &str, env: &Env, port: &Value, subnets: &[Value]) -> Value {
    let port_id = port["id"].as_str().unwrap_or_default();
    let mac = port["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    let mut default_done = BTreeSet::new();
    for fixed in port["fixed_ips"].as_array().into_iter().flatten() {
        let Some(subnet) = subnets.iter().find(|s| s["id"] == fixed["subnet_id"]) else {
            continue;
        };
        let ip = fixed["ip_address"].as_str().unwrap_or_default();
        let prefix = subnet["cidr"]
            .as_str()
            .and_then(|c| c.split_once('/'))
            .map(|(_, p)| p)
            .unwrap_or(if ip.contains(':') { "128" } else { "32" });
        let mut entry = json!({"address": format!("{ip}/{prefix}"), "interface": 1});
        if let Some(gw) = subnet["gateway_ip"].as_str() {
            entry["gateway"] = json!(gw);
            let v6 = gw.contains(':');
            if default_done.insert(v6) {
                let dst = if v6 { "::/0" } else { "0.0.0.0/0" };
                routes.push(json!({"dst": dst, "gw": gw}));
            }
        }
        for r in subnet["host_routes"].as_array().into_iter().flatten() {
            routes.push(json!({"dst": r["destination"], "gw": r["nexthop"]}));
        }
        ips.push(entry);
    }
    let mtu = port["mtu"].as_u64();
    let mut host_if = json!({"name": host_veth(port_id), "mac": ""});
    let mut ctr_if = json!({"name": env.ifname, "mac": mac, "sandbox": env.netns});
    if let (Some(mtu), true) = (mtu, version == "1.1.0") {
        host_if["mtu"] = json!(mtu);
        ctr_if["mtu"] = json!(mtu);
    }
    host_if.as_object_mut().expect("object").remove("mac");
    json!({
        "cniVersion": version,
        "interfaces": [host_if, ctr_if],
        "ips": ips,
        "routes": routes,
        "dns": {},
    })
}

/// GC: the container ports (of this host, already filtered by the caller) whose attachment
/// is not in `valid`; returns their ids.
pub fn gc_victims(ports: &[Value], valid: &BTreeSet<(String, String)>) -> Vec<String> {
    ports
        .iter()
        .filter(|p| p["device_owner"] == DEVICE_OWNER)
        .filter(|p| {
            let id = p["device_id"].as_str().unwrap_or_default().to_string();
            let ifname = p["binding:profile"][PROFILE_IFNAME]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !valid.contains(&(id, ifname))
        })
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect()
}

/// What CHECK compares: the container interface seen in the netns (`ip -j addr show dev`
/// output) against the port's MAC and addresses. Returns the differences.
pub fn check_interface(observed: &Value, port: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let link = observed.as_array().and_then(|a| a.first());
    let Some(link) = link else {
        return vec!["the interface is missing".into()];
    };
    let want_mac = port["mac_address"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mac = link["address"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if mac != want_mac {
        problems.push(format!("MAC is {mac}, the port has {want_mac}"));
    }
    let have: BTreeSet<&str> = link["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["local"].as_str())
        .collect();
    for fixed in port["fixed_ips"].as_array().into_iter().flatten() {
        let ip = fixed["ip_address"].as_str().unwrap_or_default();
        if !have.contains(ip) {
            problems.push(format!("address {ip} is missing"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"net1","type":"neutrino-cni",
        "network":"private","openrc":"/etc/neutrino/openrc","capabilities":{"ips":true},
        "prevResult":{"ips":[]}}"#;

    #[test]
    fn commands_parse_and_unknown_is_invalid_env() {
        assert_eq!(Command::parse("ADD").unwrap(), Command::Add);
        assert_eq!(Command::parse("GC").unwrap(), Command::Gc);
        assert_eq!(Command::parse("add").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn version_checks() {
        assert!(check_version("1.0.0").is_ok());
        assert!(check_version("1.1.0").is_ok());
        assert_eq!(check_version("0.4.0").unwrap_err().code, 1);
        assert_eq!(check_version("9.9.9").unwrap_err().code, 1);
        assert_eq!(check_version("one").unwrap_err().code, 6);
        assert_eq!(check_version("1.0").unwrap_err().code, 6);
    }

    #[test]
    fn version_answer_lists_supported_versions() {
        let a = version_answer(Some("1.0.0"));
        assert_eq!(a["cniVersion"], "1.0.0");
        assert_eq!(a["supportedVersions"], json!(["1.0.0", "1.1.0"]));
        assert_eq!(version_answer(Some("0.3.1"))["cniVersion"], "1.1.0");
        assert_eq!(version_answer(None)["cniVersion"], "1.1.0");
    }

    #[test]
    fn malformed_stdin_is_a_decoding_failure() {
        assert_eq!(
            NetConf::parse("{not json", Command::Add).unwrap_err().code,
            6
        );
        assert_eq!(NetConf::parse("[1]", Command::Add).unwrap_err().code, 6);
        assert_eq!(NetConf::parse("{}", Command::Add).unwrap_err().code, 6);
        assert_eq!(
            NetConf::parse(r#"{"cniVersion":7}"#, Command::Add)
                .unwrap_err()
                .code,
            6
        );
    }

    #[test]
    fn config_parses_and_ignores_unknown_keys() {
        let c = NetConf::parse(CONF, Command::Add).unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.network, "private");
        assert_eq!(
            c.credentials,
            CredentialSource::Openrc("/etc/neutrino/openrc".into())
        );
        assert_eq!(c.active_timeout_secs, 60);
        assert_eq!(c.security_groups, None);
        assert!(c.use_port_pools);
        let off = CONF.replacen('{', r#"{"usePortPools": false,"#, 1);
        assert!(!NetConf::parse(&off, Command::Add).unwrap().use_port_pools);
        let bad = CONF.replacen('{', r#"{"usePortPools": "no","#, 1);
        assert_eq!(NetConf::parse(&bad, Command::Add).unwrap_err().code, 7);
    }

    #[test]
    fn config_errors_have_the_spec_codes() {
        let no_net = r#"{"cniVersion":"1.0.0","openrc":"/x"}"#;
        assert_eq!(NetConf::parse(no_net, Command::Add).unwrap_err().code, 7);
        let no_creds = r#"{"cniVersion":"1.0.0","network":"n"}"#;
        assert_eq!(NetConf::parse(no_creds, Command::Add).unwrap_err().code, 7);
        let both =
            r#"{"cniVersion":"1.0.0","network":"n","openrc":"/x","cloudsYaml":"/y","cloud":"c"}"#;
        assert_eq!(NetConf::parse(both, Command::Add).unwrap_err().code, 2);
        let old = r#"{"cniVersion":"0.4.0","network":"n","openrc":"/x"}"#;
        assert_eq!(NetConf::parse(old, Command::Add).unwrap_err().code, 1);
        let gc_old = r#"{"cniVersion":"1.0.0","network":"n","openrc":"/x"}"#;
        assert_eq!(NetConf::parse(gc_old, Command::Gc).unwrap_err().code, 1);
        let bad_sg = r#"{"cniVersion":"1.0.0","network":"n","openrc":"/x","securityGroups":"web"}"#;
        assert_eq!(NetConf::parse(bad_sg, Command::Add).unwrap_err().code, 7);
        let bad_timeout = r#"{"cniVersion":"1.0.0","network":"n","openrc":"/x","activeTimeout":0}"#;
        assert_eq!(
            NetConf::parse(bad_timeout, Command::Add).unwrap_err().code,
            7
        );
    }

    #[test]
    fn gc_reads_both_attachment_keys() {
        let conf = r#"{"cniVersion":"1.1.0","network":"n","openrc":"/x",
            "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],
            "cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}]}"#;
        let c = NetConf::parse(conf, Command::Gc).unwrap();
        assert_eq!(c.valid_attachments.len(), 2);
        let ports = vec![
            json!({"id":"p1","device_id":"a","device_owner":DEVICE_OWNER,"binding:profile":{PROFILE_IFNAME:"eth0"}}),
            json!({"id":"p2","device_id":"a","device_owner":DEVICE_OWNER,"binding:profile":{PROFILE_IFNAME:"eth1"}}),
            json!({"id":"p3","device_id":"b","device_owner":DEVICE_OWNER,"binding:profile":{PROFILE_IFNAME:"eth1"}}),
            json!({"id":"p4","device_id":"z","device_owner":"compute:nova"}),
        ];
        assert_eq!(
            gc_victims(&ports, &c.valid_attachments),
            vec!["p2".to_string()]
        );
    }

    #[test]
    fn env_is_validated_per_command() {
        let ok = env_of(&[
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        ]);
        let env = Env::read(Command::Add, &ok).unwrap();
        assert_eq!(env.container_id, "abc123");
        assert_eq!(env.args.len(), 2);
        // VERSION, STATUS and GC need no attachment variables.
        assert!(Env::read(Command::Version, &env_of(&[])).is_ok());
        assert!(Env::read(Command::Gc, &env_of(&[])).is_ok());
        let err = Env::read(Command::Add, &env_of(&[("CNI_IFNAME", "eth0")])).unwrap_err();
        assert_eq!(err.code, 4);
        assert!(err.details.contains("CNI_CONTAINERID") && err.details.contains("CNI_NETNS"));
        // DEL may come without a netns.
        let del = env_of(&[("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0")]);
        assert!(Env::read(Command::Del, &del).is_ok());
        let bad_if = env_of(&[
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "a/b"),
        ]);
        assert_eq!(Env::read(Command::Add, &bad_if).unwrap_err().code, 4);
        let bad_id = env_of(&[
            ("CNI_CONTAINERID", "-abc"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(Env::read(Command::Add, &bad_id).unwrap_err().code, 4);
    }

    #[test]
    fn port_body_and_result() {
        let env = Env {
            container_id: "0123456789abcdef".into(),
            netns: "/run/netns/c1".into(),
            ifname: "eth0".into(),
            args: vec![],
        };
        let body = port_body(&env, "net-1", "h1", Some(&["sg".to_string()]));
        assert_eq!(body["port"]["name"], "cni-0123456789ab-eth0");
        assert_eq!(body["port"]["device_owner"], "compute:container");
        assert_eq!(
            body["port"]["binding:profile"]["neutrino:netns"],
            "/run/netns/c1"
        );
        assert_eq!(body["port"]["security_groups"], json!(["sg"]));
        let port = json!({"id":"5f0e4e0c-aaaa-bbbb-cccc-000000000000","mac_address":"FA:16:3E:00:00:01",
            "fixed_ips":[{"subnet_id":"s4","ip_address":"10.0.0.5"},{"subnet_id":"s6","ip_address":"fd00::5"}],
            "device_id": env.container_id, "device_owner": DEVICE_OWNER,
            "binding:profile": {PROFILE_IFNAME: "eth0"}});
        assert!(is_attachment_port(&port, "0123456789abcdef", "eth0"));
        assert!(!is_attachment_port(&port, "0123456789abcdef", "eth1"));
        let subnets = vec![
            json!({"id":"s4","cidr":"10.0.0.0/24","gateway_ip":"10.0.0.1","host_routes":[{"destination":"10.9.0.0/16","nexthop":"10.0.0.9"}]}),
            json!({"id":"s6","cidr":"fd00::/64","gateway_ip":null,"host_routes":[]}),
        ];
        let r = add_result("1.0.0", &env, &port, &subnets);
        assert_eq!(r["cniVersion"], "1.0.0");
        assert_eq!(r["interfaces"][0]["name"], "tap5f0e4e0c-aa");
        assert_eq!(r["interfaces"][1]["mac"], "fa:16:3e:00:00:01");
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/c1");
        assert_eq!(
            r["ips"],
            json!([
                {"address":"10.0.0.5/24","gateway":"10.0.0.1","interface":1},
                {"address":"fd00::5/64","interface":1}
            ])
        );
        assert_eq!(
            r["routes"],
            json!([{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"10.9.0.0/16","gw":"10.0.0.9"}])
        );
    }

    #[test]
    fn check_compares_mac_and_addresses() {
        let port =
            json!({"mac_address":"fa:16:3e:00:00:01","fixed_ips":[{"ip_address":"10.0.0.5"}]});
        let good = json!([{"address":"fa:16:3e:00:00:01","addr_info":[{"local":"10.0.0.5"}]}]);
        assert!(check_interface(&good, &port).is_empty());
        let bad = json!([{"address":"fa:16:3e:00:00:02","addr_info":[]}]);
        assert_eq!(check_interface(&bad, &port).len(), 2);
        assert_eq!(check_interface(&json!([]), &port).len(), 1);
    }

    #[test]
    fn errors_render_as_spec_objects() {
        let e = CniError::new(11, "try again later", "connection refused");
        assert_eq!(
            e.to_json("1.0.0"),
            json!({"cniVersion":"1.0.0","code":11,"msg":"try again later","details":"connection refused"})
        );
    }
}
