//! Upgrade safety: today's server against what earlier releases left behind.
//!
//! - `schema_fixtures_are_served_and_written`: every `tests/fixtures/schema-v*.sql` (an
//!   SQLite database made by the schema of that release, as `sqlite3 .dump` text) is loaded
//!   into a fresh file and opened with today's store (its migrations run); the networks,
//!   subnets, ports, routers, floating IPs and security groups in it are listed and shown
//!   with every attribute a resource created today has, and can be written.
//! - `recorded_agent_exchanges_still_work`: every `tests/fixtures/agent-protocol-v*.json`
//!   (the requests an agent of that protocol version makes in a short session, with the
//!   answers' status codes, headers and JSON key paths) is replayed against a fresh server:
//!   a server that still accepts that version must answer each request with the recorded
//!   status and at least the recorded keys; one that no longer does must refuse it. That the
//!   recording is what the agent sends (methods, paths, body keys, header) is checked on the
//!   agent's side: `the_recorded_agent_session_is_what_the_client_sends` in
//!   `crates/neutrino-agent/src/client.rs`.
//!
//! Re-recording (once per release, so the files of earlier releases stay as they are):
//!
//! ```text
//! NEUTRINO_RECORD_FIXTURES=1 cargo test -p neutrino-api --test upgrades -- --ignored record
//! ```
//!
//! runs [`script`] (a session mirroring `crates/neutrino-agent/src/client.rs`: register,
//! snapshot, watch, changes page, port status, applied revision, revision wait, heartbeat,
//! after a few resources created through the Neutron API) against a fresh server and writes
//! `tests/fixtures/agent-protocol-v<protocol version>.json` and, with the `sqlite3` command
//! line tool, `tests/fixtures/schema-v<crate version>.sql` (the database it left). When the
//! agent client's requests change, change [`script`] to match before recording.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use futures_util::StreamExt;
use neutrino_api::{router, AuthMode, Metrics};
use neutrino_app::{App, Config};
use neutrino_store::Store;
use neutrino_types::agent_protocol::{self, AGENT_PROTOCOL_VERSION};
use serde_json::{json, Value};
use tower::ServiceExt;

/// The project the fixtures' resources belong to (the no-auth caller, an admin).
const PROJECT: &str = "5a3e1c0d2b9f4e7a8c6d1f2e3a4b5c6d";

/// Response headers whose presence is recorded.
const RECORDED_HEADERS: &[&str] = &[
    agent_protocol::HEADER,
    "x-neutrino-revision",
    "content-type",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The fixture files named `<prefix>*.<ext>`, sorted.
fn fixture_files(prefix: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(&format!(".{ext}"))
        })
        .collect();
    files.sort();
    files
}

/// A server (the HTTP router over an app) on the SQLite database at `path`.
async fn serve(path: &Path) -> (axum::Router, Store) {
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("store opens");
    let app = App::new(store.clone(), Config::default())
        .await
        .expect("app starts");
    (router(app, AuthMode::NoAuth, Metrics::new()), store)
}

/// One answer: status, the recorded headers it carries, the JSON body (for a watch, its
/// first line).
struct Answer {
    status: u16,
    headers: Vec<String>,
    body: Value,
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Option<&Value>,
    agent_version: Option<&str>,
) -> Answer {
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-project-id", PROJECT)
        .header("content-type", "application/json");
    if let Some(version) = agent_version {
        req = req.header(agent_protocol::HEADER, version);
    }
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let res = router
        .clone()
        .oneshot(req.body(Body::from(bytes)).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = RECORDED_HEADERS
        .iter()
        .filter(|h| res.headers().contains_key(**h))
        .map(|h| h.to_string())
        .collect();
    let text = if path.contains("/neutrino/v1/watch") && status == 200 {
        // The watch stays open: its first line is the answer.
        let mut stream = res.into_body().into_data_stream();
        let mut buf = Vec::new();
        while !buf.contains(&b'\n') {
            let chunk = tokio::time::timeout(Duration::from_secs(15), stream.next())
                .await
                .expect("a watch line within the bookmark interval")
                .expect("the watch stays open")
                .unwrap();
            buf.extend_from_slice(&chunk);
        }
        let end = buf.iter().position(|b| *b == b'\n').unwrap();
        buf.truncate(end);
        buf
    } else {
        to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    };
    let body = serde_json::from_slice(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// Every key path of `doc`: `/a/b` for object keys, `[]` for array elements; keys that are
/// UUIDs (maps keyed by resource ids) become `{id}`.
fn key_paths(doc: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let key = if uuid::Uuid::parse_str(k).is_ok() {
                        "{id}"
                    } else {
                        k.as_str()
                    };
                    let path = format!("{prefix}/{key}");
                    out.insert(path.clone());
                    walk(child, &path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{prefix}/[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(doc, "", &mut out);
    out
}

/// `text` with every `{name}` of `vars` replaced by its value.
fn fill_path(text: &str, vars: &BTreeMap<String, Value>) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        let value = value
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        out = out.replace(&format!("{{{name}}}"), &value);
    }
    out
}

/// `body` with every string that is exactly `{name}` replaced by the value of `name`.
fn fill_body(body: &Value, vars: &BTreeMap<String, Value>) -> Value {
    match body {
        Value::String(s) => s
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .and_then(|name| vars.get(name))
            .cloned()
            .unwrap_or_else(|| body.clone()),
        Value::Array(items) => Value::Array(items.iter().map(|i| fill_body(i, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_body(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Sends one exchange of a script or fixture (placeholders filled from `vars`), then
/// captures what it names from the answer into `vars`.
async fn send(
    router: &axum::Router,
    exchange: &Value,
    vars: &mut BTreeMap<String, Value>,
) -> Answer {
    let path = fill_path(exchange["path"].as_str().unwrap(), vars);
    let body = exchange.get("body").map(|b| fill_body(b, vars));
    let version = exchange["request_headers"][agent_protocol::HEADER].as_str();
    let answer = call(
        router,
        exchange["method"].as_str().unwrap(),
        &path,
        body.as_ref(),
        version,
    )
    .await;
    if let Some(capture) = exchange["capture"].as_object() {
        for (name, pointer) in capture {
            if let Some(v) = answer.body.pointer(pointer.as_str().unwrap()) {
                vars.insert(name.clone(), v.clone());
            }
        }
    }
    answer
}

/// A step of the recording session: `agent` steps are what the agent sends (with its
/// protocol header), the others set the scene through the Neutron API.
fn step(name: &str, agent: bool, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut doc = json!({"name": name, "method": method, "path": path});
    if let Some(body) = body {
        doc["body"] = body;
    }
    if agent {
        doc["request_headers"] =
            json!({agent_protocol::HEADER: AGENT_PROTOCOL_VERSION.to_string()});
    }
    doc
}

fn capturing(mut step: Value, capture: Value) -> Value {
    step["capture"] = capture;
    step
}

/// The recorded session: a few resources, then what an agent on `fixture-host` sends
/// (as `crates/neutrino-agent/src/client.rs` does).
fn script() -> Vec<Value> {
    let agent_doc = json!({"agent": {
        "host": "fixture-host",
        "agent_type": "Neutrino agent",
        "binary": "neutrino-agent",
        "started_at": "2026-12-07T13:00:00Z",
        "availability_zone": "nova",
        "configurations": {
            "tunnel_ip": "192.0.2.10",
            "tunnel_types": ["vxlan"],
            "vxlan_port": 4789,
            "netns_prefix": "",
            "interface_mappings": {},
        },
    }});
    let port = |name: &str, device: &str| {
        json!({"port": {
            "name": name, "network_id": "{network}", "device_id": device,
            "device_owner": "compute:nova", "binding:host_id": "fixture-host",
            "security_groups": ["{sg}"],
        }})
    };
    vec![
        capturing(
            step(
                "create network",
                false,
                "POST",
                "/v2.0/networks",
                Some(json!({"network": {"name": "fixture-net"}})),
            ),
            json!({"network": "/network/id"}),
        ),
        capturing(
            step(
                "create IPv4 subnet",
                false,
                "POST",
                "/v2.0/subnets",
                Some(
                    json!({"subnet": {"name": "fixture-v4", "network_id": "{network}",
                    "ip_version": 4, "cidr": "10.20.0.0/24"}}),
                ),
            ),
            json!({"subnet4": "/subnet/id"}),
        ),
        step(
            "create IPv6 subnet",
            false,
            "POST",
            "/v2.0/subnets",
            Some(
                json!({"subnet": {"name": "fixture-v6", "network_id": "{network}",
                "ip_version": 6, "cidr": "2001:db8:20::/64",
                "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}}),
            ),
        ),
        capturing(
            step(
                "create external network",
                false,
                "POST",
                "/v2.0/networks",
                Some(json!({"network": {"name": "fixture-ext", "router:external": true}})),
            ),
            json!({"external": "/network/id"}),
        ),
        step(
            "create external subnet",
            false,
            "POST",
            "/v2.0/subnets",
            Some(
                json!({"subnet": {"name": "fixture-ext-v4", "network_id": "{external}",
                "ip_version": 4, "cidr": "203.0.113.0/24"}}),
            ),
        ),
        capturing(
            step(
                "create security group",
                false,
                "POST",
                "/v2.0/security-groups",
                Some(json!({"security_group": {"name": "fixture-sg"}})),
            ),
            json!({"sg": "/security_group/id"}),
        ),
        step(
            "create security group rule",
            false,
            "POST",
            "/v2.0/security-group-rules",
            Some(json!({"security_group_rule": {"security_group_id": "{sg}",
                "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                "port_range_min": 22, "port_range_max": 22,
                "remote_ip_prefix": "0.0.0.0/0"}})),
        ),
        capturing(
            step(
                "create port 1",
                false,
                "POST",
                "/v2.0/ports",
                Some(port("fixture-port-1", "vm-1")),
            ),
            json!({"port1": "/port/id"}),
        ),
        capturing(
            step(
                "create port 2",
                false,
                "POST",
                "/v2.0/ports",
                Some(port("fixture-port-2", "vm-2")),
            ),
            json!({"port2": "/port/id"}),
        ),
        capturing(
            step(
                "create router",
                false,
                "POST",
                "/v2.0/routers",
                Some(json!({"router": {"name": "fixture-router",
                    "external_gateway_info": {"network_id": "{external}"}}})),
            ),
            json!({"router": "/router/id"}),
        ),
        step(
            "add router interface",
            false,
            "PUT",
            "/v2.0/routers/{router}/add_router_interface",
            Some(json!({"subnet_id": "{subnet4}"})),
        ),
        step(
            "create floating IP",
            false,
            "POST",
            "/v2.0/floatingips",
            Some(json!({"floatingip": {"floating_network_id": "{external}",
                "port_id": "{port1}"}})),
        ),
        step(
            "agent: register",
            true,
            "POST",
            "/neutrino/v1/agents",
            Some(agent_doc.clone()),
        ),
        capturing(
            step(
                "agent: snapshot",
                true,
                "GET",
                "/neutrino/v1/snapshot",
                None,
            ),
            json!({"revision": "/revision"}),
        ),
        step(
            "agent: watch (first line)",
            true,
            "GET",
            "/neutrino/v1/watch?since=0",
            None,
        ),
        step(
            "agent: changes page",
            true,
            "GET",
            "/neutrino/v1/changes?since=0",
            None,
        ),
        step(
            "agent: port status",
            true,
            "PUT",
            "/neutrino/v1/port-status",
            Some(
                json!({"host": "fixture-host", "revision": "{revision}", "ports": [
                    {"id": "{port1}", "status": "ACTIVE", "vif_type": "bridge"},
                    {"id": "{port2}", "status": "DOWN", "vif_type": "bridge"},
                ]}),
            ),
        ),
        step(
            "agent: applied revision",
            true,
            "PUT",
            "/neutrino/v1/applied",
            Some(json!({"host": "fixture-host", "revision": "{revision}"})),
        ),
        step(
            "agent: revision wait",
            true,
            "GET",
            "/v2.0/neutrino/revisions/{revision}?timeout=0",
            None,
        ),
        step(
            "agent: heartbeat",
            true,
            "POST",
            "/neutrino/v1/agents",
            Some(agent_doc),
        ),
    ]
}

/// Records the fixtures of this release (see the module documentation); skipped unless
/// `NEUTRINO_RECORD_FIXTURES=1`.
#[tokio::test]
#[ignore = "writes the fixtures: NEUTRINO_RECORD_FIXTURES=1 ... -- --ignored record"]
async fn record_fixtures() {
    if std::env::var("NEUTRINO_RECORD_FIXTURES").as_deref() != Ok("1") {
        eprintln!("NEUTRINO_RECORD_FIXTURES=1 is not set: nothing recorded");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fixture.db");
    let (router, store) = serve(&db).await;
    let mut vars = BTreeMap::new();
    let mut exchanges = Vec::new();
    for mut exchange in script() {
        let answer = send(&router, &exchange, &mut vars).await;
        assert!(
            (200..300).contains(&answer.status),
            "{}: {} {}",
            exchange["name"],
            answer.status,
            answer.body
        );
        exchange["status"] = json!(answer.status);
        exchange["response_headers"] = json!(answer.headers);
        exchange["keys"] = json!(key_paths(&answer.body));
        exchanges.push(exchange);
    }
    let fixture = json!({
        "comment": "Recorded by crates/neutrino-api/tests/upgrades.rs (record_fixtures): \
                    the requests of an agent session and the answers' status codes, headers \
                    and key paths. Do not edit; record a new file for a new protocol version.",
        "protocol": AGENT_PROTOCOL_VERSION,
        "exchanges": exchanges,
    });
    let out = fixtures().join(format!("agent-protocol-v{AGENT_PROTOCOL_VERSION}.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&fixture).unwrap() + "\n").unwrap();
    drop(router);
    store.close().await;
    let dump = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(".dump")
        .output()
        .expect("the sqlite3 command line tool");
    assert!(dump.status.success(), "{dump:?}");
    let out = fixtures().join(format!("schema-v{}.sql", env!("CARGO_PKG_VERSION")));
    std::fs::write(&out, dump.stdout).unwrap();
}

/// See the module documentation.
#[tokio::test]
async fn recorded_agent_exchanges_still_work() {
    let files = fixture_files("agent-protocol-v", "json");
    assert!(!files.is_empty(), "no recorded agent exchanges");
    for file in files {
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let protocol = fixture["protocol"].as_u64().unwrap() as u32;
        let accepted = agent_protocol::server_accepts(AGENT_PROTOCOL_VERSION, protocol);
        let dir = tempfile::tempdir().unwrap();
        let (router, _store) = serve(&dir.path().join("t.db")).await;
        let mut vars = BTreeMap::new();
        for exchange in fixture["exchanges"].as_array().unwrap() {
            let what = format!("{}: {}", file.display(), exchange["name"]);
            let answer = send(&router, exchange, &mut vars).await;
            let agent = exchange["request_headers"][agent_protocol::HEADER].is_string();
            if agent && !accepted {
                assert_eq!(answer.status, 400, "{what}: {}", answer.body);
                assert_eq!(
                    answer.body["NeutronError"]["type"],
                    agent_protocol::REFUSED_TYPE,
                    "{what}"
                );
                continue;
            }
            assert_eq!(
                Some(u64::from(answer.status)),
                exchange["status"].as_u64(),
                "{what}: {}",
                answer.body
            );
            for header in exchange["response_headers"].as_array().unwrap() {
                let header = header.as_str().unwrap().to_string();
                assert!(answer.headers.contains(&header), "{what}: no {header}");
            }
            let have = key_paths(&answer.body);
            let missing: Vec<&str> = exchange["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .filter(|k| !have.contains(*k))
                .collect();
            assert!(missing.is_empty(), "{what}: keys gone: {missing:?}");
        }
    }
}

/// Each kind checked in the schema fixtures: its URL, list envelope and singular envelope.
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("network", "networks", "networks", "network"),
    ("subnet", "subnets", "subnets", "subnet"),
    ("port", "ports", "ports", "port"),
    ("router", "routers", "routers", "router"),
    ("floatingip", "floatingips", "floatingips", "floatingip"),
    (
        "security_group",
        "security-groups",
        "security_groups",
        "security_group",
    ),
];

/// Resources of each kind created today on `router`, for their shapes.
async fn fresh_resources(router: &axum::Router, external: &str) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let post = |path: &'static str, body: Value| {
        let router = router.clone();
        async move {
            let a = call(&router, "POST", path, Some(&body), None).await;
            assert_eq!(a.status, 201, "{path}: {}", a.body);
            a.body
        }
    };
    let net = post("/v2.0/networks", json!({"network": {"name": "fresh"}})).await;
    let net_id = net["network"]["id"].as_str().unwrap().to_string();
    out.insert("network", net["network"].clone());
    let subnet = post(
        "/v2.0/subnets",
        json!({"subnet": {"network_id": net_id, "ip_version": 4, "cidr": "10.99.0.0/24"}}),
    )
    .await;
    out.insert("subnet", subnet["subnet"].clone());
    let port = post("/v2.0/ports", json!({"port": {"network_id": net_id}})).await;
    out.insert("port", port["port"].clone());
    let router_doc = post("/v2.0/routers", json!({"router": {"name": "fresh"}})).await;
    out.insert("router", router_doc["router"].clone());
    let fip = post(
        "/v2.0/floatingips",
        json!({"floatingip": {"floating_network_id": external}}),
    )
    .await;
    out.insert("floatingip", fip["floatingip"].clone());
    let sg = post(
        "/v2.0/security-groups",
        json!({"security_group": {"name": "fresh"}}),
    )
    .await;
    out.insert("security_group", sg["security_group"].clone());
    out
}

/// See the module documentation.
#[tokio::test]
async fn schema_fixtures_are_served_and_written() {
    let files = fixture_files("schema-v", "sql");
    assert!(!files.is_empty(), "no schema fixtures");
    for file in files {
        let what = file.display().to_string();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fixture.db");
        // What the fixture holds, read before today's code touches it.
        let (rows, fixture_revision) = {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(&std::fs::read_to_string(&file).unwrap())
                .unwrap();
            let mut stmt = conn
                .prepare("SELECT kind, id, body FROM resources ORDER BY seq")
                .unwrap();
            let rows: Vec<(String, String, Value)> = stmt
                .query_map([], |r| {
                    let body: String = r.get(2)?;
                    Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&body).unwrap()))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let revision: i64 = conn
                .query_row("SELECT MAX(revision) FROM changes", [], |r| r.get(0))
                .unwrap();
            (rows, revision)
        };
        let (router, _store) = serve(&db).await;
        let external = call(
            &router,
            "GET",
            "/v2.0/networks?router:external=true",
            None,
            None,
        )
        .await
        .body["networks"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no external network"))
            .to_string();
        let fresh = fresh_resources(&router, &external).await;
        for (kind, collection, plural, singular) in KINDS {
            let stored: Vec<&(String, String, Value)> =
                rows.iter().filter(|(k, _, _)| k == kind).collect();
            assert!(!stored.is_empty(), "{what}: no {kind} in the fixture");
            let listed = call(&router, "GET", &format!("/v2.0/{collection}"), None, None).await;
            assert_eq!(listed.status, 200, "{what}: {}", listed.body);
            let want_keys: BTreeSet<&String> = fresh[kind].as_object().unwrap().keys().collect();
            for (_, id, body) in stored {
                let doc = listed.body[*plural]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|d| d["id"] == id.as_str())
                    .unwrap_or_else(|| panic!("{what}: {kind} {id} not listed"));
                for attr in [
                    "name",
                    "cidr",
                    "mac_address",
                    "fixed_ips",
                    "floating_ip_address",
                ] {
                    if let Some(value) = body.get(attr) {
                        assert_eq!(&doc[attr], value, "{what}: {kind} {id} {attr}");
                    }
                }
                // Ports the server makes itself (router interfaces and gateways, floating
                // IPs) are compared with today's API-made port only where they already match
                // it today: a router gateway port carries no `qos_policy_id`.
                let made_by_server = body["device_owner"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("network:"));
                let keys: BTreeSet<&String> = doc.as_object().unwrap().keys().collect();
                let missing: Vec<_> = want_keys
                    .difference(&keys)
                    .filter(|k| !(made_by_server && k.as_str() == "qos_policy_id"))
                    .collect();
                assert!(missing.is_empty(), "{what}: {kind} {id} lacks {missing:?}");
                let shown = call(
                    &router,
                    "GET",
                    &format!("/v2.0/{collection}/{id}"),
                    None,
                    None,
                )
                .await;
                assert_eq!(shown.status, 200, "{what}: {}", shown.body);
                // The same resource as listed (not the same document: a router gateway
                // port's `dns_assignment` is filled in lists only, today).
                let shown = &shown.body[*singular];
                assert_eq!(&shown["id"], &doc["id"], "{what}: {kind} {id}");
                let shown_keys: BTreeSet<&String> = shown.as_object().unwrap().keys().collect();
                assert_eq!(shown_keys, keys, "{what}: {kind} {id}");
            }
        }
        // Writes: a port on a fixture network gets an address none of its ports has; a
        // network is renamed; an instance port is deleted.
        let instance_ports: Vec<&Value> = rows
            .iter()
            .filter(|(k, _, b)| {
                k == "port"
                    && b["device_owner"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("compute:")
            })
            .map(|(_, _, b)| b)
            .collect();
        let victim = instance_ports.first().expect("an instance port");
        let network = victim["network_id"].as_str().unwrap();
        let taken: BTreeSet<String> = rows
            .iter()
            .filter(|(k, _, b)| k == "port" && b["network_id"] == network)
            .flat_map(|(_, _, b)| b["fixed_ips"].as_array().cloned().unwrap_or_default())
            .map(|ip| ip["ip_address"].as_str().unwrap().to_string())
            .collect();
        let created = call(
            &router,
            "POST",
            "/v2.0/ports",
            Some(&json!({"port": {"network_id": network, "name": "after-upgrade"}})),
            None,
        )
        .await;
        assert_eq!(created.status, 201, "{what}: {}", created.body);
        for ip in created.body["port"]["fixed_ips"].as_array().unwrap() {
            let ip = ip["ip_address"].as_str().unwrap();
            assert!(!taken.contains(ip), "{what}: {ip} handed out twice");
        }
        let renamed = call(
            &router,
            "PUT",
            &format!("/v2.0/networks/{network}"),
            Some(&json!({"network": {"name": "renamed"}})),
            None,
        )
        .await;
        assert_eq!(renamed.status, 200, "{what}: {}", renamed.body);
        assert_eq!(renamed.body["network"]["name"], "renamed");
        let victim_id = victim["id"].as_str().unwrap();
        let path = format!("/v2.0/ports/{victim_id}");
        assert_eq!(call(&router, "DELETE", &path, None, None).await.status, 204);
        assert_eq!(call(&router, "GET", &path, None, None).await.status, 404);
        // The feed goes on from the fixture's revisions.
        let snap = call(&router, "GET", "/neutrino/v1/snapshot", None, None).await;
        let revision = snap.body["revision"].as_i64().unwrap();
        assert!(revision > fixture_revision, "{what}: {revision}");
    }
}

/// The key paths the replay compares, on a small document.
#[test]
fn key_paths_name_every_key_and_fold_ids() {
    let doc = json!({"a": {"b": [{"c": 1}, {"d": 2}]},
        "m": {"5a3e1c0d-2b9f-4e7a-8c6d-1f2e3a4b5c6d": {"x": 1}}});
    let paths: Vec<String> = key_paths(&doc).into_iter().collect();
    assert_eq!(
        paths,
        [
            "/a",
            "/a/b",
            "/a/b/[]/c",
            "/a/b/[]/d",
            "/m",
            "/m/{id}",
            "/m/{id}/x"
        ]
    );
}
