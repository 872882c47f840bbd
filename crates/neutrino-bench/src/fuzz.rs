//! `neutrino fuzz`: bad input for a running Neutron endpoint, deterministic by seed.
//!
//! Requests are generated from the attribute specifications of `neutrino-types` for every
//! collection (list, show, create, bulk create, update, delete, tags, actions), then mutated:
//! wrong JSON types per attribute, null, 1 MB strings, long arrays, 10,000-level nesting,
//! invalid UTF-8, non-JSON bodies, wrong Content-Type, unknown fields, bad ids, bad query
//! strings, bad headers, wrong methods; identity endpoints are hit lightly. Every answer is
//! classified; a 5xx, a transport error (reset, timeout) or a 4xx on a `/v2.0` path whose body
//! is not `{"NeutronError": {"type", "message", "detail"}}` is a finding, printed with the
//! request that reproduces it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neutrino_types::attrs::{Attr, Conv};
use neutrino_types::{bgp, l2gw, resources as r, sfc};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Method};
use serde_json::{json, Map, Value};

use crate::{api, auth, env_var, BenchError};

/// Arguments of `neutrino fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct FuzzArgs {
    /// Network API base URL (default: the catalog's network endpoint, see `neutrino bench`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Keystone token (default: log in with the OS_* variables of an openrc).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Number of requests to send.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub requests: usize,
    /// Seed of the generator: the same seed sends the same requests per client.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Concurrent clients.
    #[arg(long, value_name = "C", default_value_t = 4)]
    pub concurrency: usize,
    /// Timeout of each request, in seconds (a timeout is a finding).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One problem: the request that reproduces it and what came back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub method: String,
    pub path: String,
    pub body_prefix: String,
    pub outcome: String,
}

/// The result of a fuzz run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FuzzReport {
    pub requests: usize,
    pub seconds: f64,
    pub seed: u64,
    pub concurrency: usize,
    /// Answers by status code (`"transport"` for no answer).
    pub statuses: BTreeMap<String, usize>,
    /// Answers by class: `2xx`, `3xx`, `4xx`, `5xx`, `transport`.
    pub classes: BTreeMap<String, usize>,
    /// Every finding (5xx, transport errors, non-Neutron error bodies).
    pub findings_total: usize,
    /// The first findings, with their requests.
    pub findings: Vec<Finding>,
    /// The server answered `GET /v2.0/networks` with 200 after the run.
    pub alive_after: bool,
    #[serde(skip)]
    pub json: bool,
}

impl FuzzReport {
    /// No finding and the server still answers.
    pub fn passed(&self) -> bool {
        self.findings_total == 0 && self.alive_after
    }
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.json {
            let text = serde_json::to_string_pretty(self).map_err(|_| fmt::Error)?;
            return writeln!(f, "{text}");
        }
        writeln!(
            f,
            "requests: {} in {:.1} s ({:.0}/s), seed {}, concurrency {}",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds.max(1e-9),
            self.seed,
            self.concurrency
        )?;
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(f, "classes: {}", classes.join(", "))?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        writeln!(f, "statuses: {}", statuses.join(", "))?;
        writeln!(f, "alive after: {}", self.alive_after)?;
        writeln!(f, "findings: {}", self.findings_total)?;
        for x in &self.findings {
            writeln!(
                f,
                "  {} {} body={:?} -> {}",
                x.method, x.path, x.body_prefix, x.outcome
            )?;
        }
        Ok(())
    }
}

/// Findings kept with their requests (the count goes on).
const MAX_FINDINGS: usize = 50;
/// Ids remembered per collection.
const MAX_IDS: usize = 64;

/// A collection of the API: its URL, spec, actions and whether it has tags.
struct Target {
    path: &'static str,
    resource: &'static str,
    spec: &'static [Attr],
    actions: &'static [&'static str],
    taggable: bool,
}

const TARGETS: &[Target] = &[
    t("networks", "network", r::NETWORK, &[], true),
    t("subnets", "subnet", r::SUBNET, &[], true),
    t("ports", "port", r::PORT, &[], true),
    t(
        "security-groups",
        "security_group",
        r::SECURITY_GROUP,
        &[],
        true,
    ),
    t(
        "security-group-rules",
        "security_group_rule",
        r::SECURITY_GROUP_RULE,
        &[],
        false,
    ),
    t(
        "routers",
        "router",
        r::ROUTER,
        &[
            "add_router_interface",
            "remove_router_interface",
            "add_extraroutes",
            "remove_extraroutes",
        ],
        true,
    ),
    t("floatingips", "floatingip", r::FLOATINGIP, &[], true),
    t(
        "subnetpools",
        "subnetpool",
        r::SUBNETPOOL,
        &["add_prefixes", "remove_prefixes", "onboard_network_subnets"],
        true,
    ),
    t(
        "address-scopes",
        "address_scope",
        r::ADDRESS_SCOPE,
        &[],
        false,
    ),
    t(
        "default-security-group-rules",
        "default_security_group_rule",
        r::DEFAULT_SECURITY_GROUP_RULE,
        &[],
        false,
    ),
    t(
        "address-groups",
        "address_group",
        r::ADDRESS_GROUP,
        &["add_addresses", "remove_addresses"],
        false,
    ),
    t(
        "trunks",
        "trunk",
        r::TRUNK,
        &["add_subports", "remove_subports", "get_subports"],
        true,
    ),
    t("rbac-policies", "rbac_policy", r::RBAC_POLICY, &[], false),
    t(
        "sfc/flow_classifiers",
        "flow_classifier",
        sfc::FLOW_CLASSIFIER,
        &[],
        false,
    ),
    t("sfc/port_pairs", "port_pair", sfc::PORT_PAIR, &[], false),
    t(
        "sfc/port_pair_groups",
        "port_pair_group",
        sfc::PORT_PAIR_GROUP,
        &[],
        false,
    ),
    t("sfc/port_chains", "port_chain", sfc::PORT_CHAIN, &[], false),
    t(
        "sfc/service_graphs",
        "service_graph",
        sfc::SERVICE_GRAPH,
        &[],
        false,
    ),
    t("l2-gateways", "l2_gateway", l2gw::L2_GATEWAY, &[], false),
    t(
        "l2-gateway-connections",
        "l2_gateway_connection",
        l2gw::L2_GATEWAY_CONNECTION,
        &[],
        false,
    ),
    t(
        "l2-remote-gateways",
        "l2_remote_gateway",
        l2gw::L2_REMOTE_GATEWAY,
        &[],
        false,
    ),
    t(
        "l2-remote-gateway-connections",
        "l2_remote_gateway_connection",
        l2gw::L2_REMOTE_GATEWAY_CONNECTION,
        &[],
        false,
    ),
    t(
        "l2-remote-macs",
        "l2_remote_mac",
        l2gw::L2_REMOTE_MAC,
        &[],
        false,
    ),
    t(
        "bgp-speakers",
        "bgp_speaker",
        bgp::BGP_SPEAKER,
        &[
            "add_bgp_peer",
            "remove_bgp_peer",
            "add_gateway_network",
            "remove_gateway_network",
        ],
        false,
    ),
    t("bgp-peers", "bgp_peer", bgp::BGP_PEER, &[], false),
];

const fn t(
    path: &'static str,
    resource: &'static str,
    spec: &'static [Attr],
    actions: &'static [&'static str],
    taggable: bool,
) -> Target {
    Target {
        path,
        resource,
        spec,
        actions,
        taggable,
    }
}

/// splitmix64: small, fast, deterministic.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x853c_49e6_748f_ea9b)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

/// Ids the run created, per collection path.
#[derive(Default)]
struct Ids(Mutex<HashMap<&'static str, Vec<String>>>);

impl Ids {
    fn add(&self, path: &'static str, id: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ids = map.entry(path).or_default();
        if ids.len() >= MAX_IDS {
            ids.remove(0);
        }
        ids.push(id);
    }
    fn remove(&self, path: &'static str, id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ids) = map.get_mut(path) {
            ids.retain(|x| x != id);
        }
    }
    fn pick(&self, rng: &mut Rng, path: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ids = map.get(path)?;
        if ids.is_empty() {
            return None;
        }
        Some(ids[rng.below(ids.len())].clone())
    }
}

/// One generated request.
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<&'static str>,
    pub token: TokenMode,
    pub if_match: Option<Vec<u8>>,
    /// Collection whose create this is (to remember the new id).
    created: Option<&'static str>,
    deleted: Option<(&'static str, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenMode {
    Valid,
    Missing,
    Garbage,
    Binary,
}

/// Values of the wrong type (or absurd) for any attribute.
fn wrong_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(1e308),
        3 => json!(true),
        4 => json!("x"),
        5 => json!([]),
        6 => json!({}),
        7 => json!(u64::MAX),
        8 => json!(i64::MIN),
        9 => json!(["a", 1, null, {}]),
        10 => json!({"a": [1, {"b": null}]}),
        11 => json!("../../etc/passwd\u{0000}"),
        12 => json!("\u{202e}ünï\u{1F600}"),
        13 => json!(0.5),
        14 => Value::Array((0..rng.below(5000)).map(|i| json!(i)).collect()),
        _ => json!("not-a-uuid"),
    }
}

/// The collection an id-valued attribute points into.
fn id_target(name: &str) -> Option<&'static str> {
    Some(match name {
        "network_id" | "floating_network_id" => "networks",
        "subnet_id" => "subnets",
        "port_id" | "logical_source_port" | "logical_destination_port" | "ingress" | "egress" => {
            "ports"
        }
        "router_id" => "routers",
        "security_group_id" | "remote_group_id" => "security-groups",
        "subnetpool_id" => "subnetpools",
        "address_scope_id" => "address-scopes",
        "remote_address_group_id" => "address-groups",
        "object_id" => "networks",
        _ => return None,
    })
}

/// A plausible value for one attribute, from its converter and its name.
fn valid_value(rng: &mut Rng, ids: &Ids, a: &Attr) -> Option<Value> {
    let octet = |rng: &mut Rng| rng.below(250) + 1;
    let v = match a.name {
        "cidr" => json!(format!("10.{}.{}.0/24", octet(rng), octet(rng))),
        "ip_version" => json!(*rng.pick(&[4, 4, 6])),
        "prefixes" => json!([format!("10.{}.0.0/16", octet(rng))]),
        "remote_ip_prefix" => json!(format!("192.168.{}.0/24", octet(rng))),
        "gateway_ip" | "mac_address" | "floating_ip_address" | "fixed_ip_address" => return None,
        "ethertype" => json!(*rng.pick(&["IPv4", "IPv6"])),
        "protocol" => json!(*rng.pick(&["tcp", "udp", "icmp", "6", "132"])),
        "port_range_min" => json!(rng.below(1000) + 1),
        "port_range_max" => json!(rng.below(1000) + 1000),
        "fixed_ips" => match ids.pick(rng, "subnets") {
            Some(s) => json!([{ "subnet_id": s }]),
            None => json!([]),
        },
        "security_groups" => match ids.pick(rng, "security-groups") {
            Some(s) => json!([s]),
            None => json!([]),
        },
        "sub_ports" => match ids.pick(rng, "ports") {
            Some(p) => json!([{"port_id": p, "segmentation_type": "vlan",
                               "segmentation_id": rng.below(4000) + 1}]),
            None => json!([]),
        },
        "addresses" => json!([format!("172.16.{}.0/24", octet(rng))]),
        "local_as" | "remote_as" => json!(rng.below(65000) + 1),
        "peer_ip" => json!(format!("198.51.100.{}", octet(rng))),
        "auth_type" => json!(*rng.pick(&["none", "md5"])),
        "password" => json!("secret"),
        "object_type" => json!("network"),
        "action" => json!(*rng.pick(&["access_as_shared", "access_as_external"])),
        "target_tenant" => json!("*"),
        "port_pairs" => match ids.pick(rng, "sfc/port_pairs") {
            Some(p) => json!([p]),
            None => json!([]),
        },
        "port_pair_groups" => match ids.pick(rng, "sfc/port_pair_groups") {
            Some(p) => json!([p]),
            None => json!([]),
        },
        "flow_classifiers" => match ids.pick(rng, "sfc/flow_classifiers") {
            Some(p) => json!([p]),
            None => json!([]),
        },
        "provider:network_type" => json!(*rng.pick(&["vxlan", "vlan", "flat", "local"])),
        _ => match a.conv {
            Conv::Str(n) | Conv::NullableStr(n) => {
                json!(format!("fz{}", rng.below(1000))
                    .chars()
                    .take(n)
                    .collect::<String>())
            }
            Conv::Bool | Conv::NullableBool => json!(rng.chance(50)),
            Conv::Int(lo, hi) | Conv::NullableInt(lo, hi) => {
                let span = (hi.saturating_sub(lo)).clamp(0, 1 << 20) as usize;
                json!(lo.saturating_add(rng.below(span + 1) as i64))
            }
            Conv::Uuid | Conv::NullableUuid => match id_target(a.name) {
                Some(coll) => json!(ids.pick(rng, coll).unwrap_or_else(|| rng.uuid())),
                None => json!(rng.uuid()),
            },
            Conv::Enum(vals) | Conv::NullableEnum(vals) => json!(*rng.pick(vals)),
            Conv::StrList => json!([]),
            Conv::Dict => json!({}),
            Conv::Any => match id_target(a.name) {
                Some(coll) => json!(ids.pick(rng, coll).unwrap_or_else(|| rng.uuid())),
                None => return None,
            },
        },
    };
    Some(v)
}

/// A body from the spec: required attributes always, others sometimes.
fn valid_body(rng: &mut Rng, ids: &Ids, spec: &[Attr], update: bool) -> Map<String, Value> {
    let mut m = Map::new();
    for a in spec {
        let settable = if update { a.put } else { a.post };
        if !settable {
            continue;
        }
        if (a.required && !update) || rng.chance(35) {
            if let Some(v) = valid_value(rng, ids, a) {
                m.insert(a.name.to_string(), v);
            }
        }
    }
    m
}

/// `[[[...]]]` or `{"a":{"a":...}}`, `depth` levels, as text.
fn deep_json(depth: usize, object: bool) -> String {
    let mut s = String::with_capacity(depth * 6);
    for _ in 0..depth {
        s.push_str(if object { "{\"a\":" } else { "[" });
    }
    s.push('1');
    for _ in 0..depth {
        s.push(if object { '}' } else { ']' });
    }
    s
}

/// Replaces `MARK` (a JSON string value) with raw bytes in the serialised body.
const MARK: &str = "\u{1}fuzz-mark\u{1}";

/// Mutates a body (as JSON value plus raw-text tricks) and serialises it.
fn mutate_body(rng: &mut Rng, resource: &str, mut inner: Map<String, Value>) -> Vec<u8> {
    let wrap = |inner: Map<String, Value>| json!({ resource: inner });
    match rng.below(22) {
        0..=5 => {
            // Wrong type for one attribute (or for a random name).
            let keys: Vec<String> = inner.keys().cloned().collect();
            let key = if keys.is_empty() || rng.chance(20) {
                "name".to_string()
            } else {
                rng.pick(&keys).clone()
            };
            inner.insert(key, wrong_value(rng));
            serde_json::to_vec(&wrap(inner)).unwrap_or_default()
        }
        6 => {
            inner.insert(format!("unknown_{}", rng.below(100)), json!(1));
            serde_json::to_vec(&wrap(inner)).unwrap_or_default()
        }
        7 => {
            // Deep nesting as an attribute value or as the whole body.
            let depth = *rng.pick(&[129, 1000, 10_000]);
            let deep = deep_json(depth, rng.chance(50));
            if rng.chance(50) {
                inner.insert("name".into(), json!(MARK));
                let text = serde_json::to_string(&wrap(inner)).unwrap_or_default();
                text.replace(&serde_json::to_string(MARK).unwrap_or_default(), &deep)
                    .into_bytes()
            } else {
                deep.into_bytes()
            }
        }
        8 => {
            // Invalid UTF-8 inside a string.
            inner.insert("name".into(), json!(MARK));
            let text = serde_json::to_string(&wrap(inner)).unwrap_or_default();
            let needle = serde_json::to_string(MARK).unwrap_or_default();
            let mut out = Vec::new();
            let (a, b) = text.split_once(&needle).unwrap_or((&text, ""));
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\"\xff\xfe\xc3\x28\xed\xa0\x80\"");
            out.extend_from_slice(b.as_bytes());
            out
        }
        9 => {
            // A 1 MB string.
            inner.insert(
                (*rng.pick(&["name", "description", "cidr", "network_id"])).into(),
                json!("A".repeat(1 << 20)),
            );
            serde_json::to_vec(&wrap(inner)).unwrap_or_default()
        }
        10 => {
            // A long array.
            let n = *rng.pick(&[1000, 10_000]);
            let key = *rng.pick(&[
                "fixed_ips",
                "tags",
                "dns_nameservers",
                "allocation_pools",
                "security_groups",
                "host_routes",
                "prefixes",
                "sub_ports",
                "addresses",
                "routes",
                "port_pairs",
                "allowed_address_pairs",
            ]);
            let item = if rng.chance(50) {
                json!("10.0.0.1")
            } else {
                json!({"ip_address": "10.0.0.1", "subnet_id": "x"})
            };
            inner.insert(key.into(), Value::Array(vec![item; n]));
            serde_json::to_vec(&wrap(inner)).unwrap_or_default()
        }
        11 => b"not json at all".to_vec(),
        12 => Vec::new(),
        13 => {
            let mut v = serde_json::to_vec(&wrap(inner)).unwrap_or_default();
            let cut = rng.below(v.len().max(1));
            v.truncate(cut);
            v
        }
        14 => serde_json::to_vec(&json!([inner])).unwrap_or_default(),
        15 => serde_json::to_vec(&Value::Object(inner)).unwrap_or_default(),
        16 => serde_json::to_vec(&json!({ resource: null })).unwrap_or_default(),
        17 => serde_json::to_vec(&json!({ resource: "string" })).unwrap_or_default(),
        18 => serde_json::to_vec(&json!({ resource: inner.clone(), "extra": inner }))
            .unwrap_or_default(),
        19 => (*rng.pick(&[
            "null",
            "1",
            "\"s\"",
            "[]",
            "{}",
            "true",
            "{\"a\":1,\"a\":2}",
        ]))
        .as_bytes()
        .to_vec(),
        20 => {
            // Every attribute of the spec with a wrong value.
            for k in inner.clone().keys() {
                inner.insert(k.clone(), wrong_value(rng));
            }
            serde_json::to_vec(&wrap(inner)).unwrap_or_default()
        }
        _ => {
            let mut v = vec![0xff, 0xfe];
            v.extend((0..rng.below(64)).map(|_| rng.next() as u8));
            v
        }
    }
}

/// A garbage id: empty, not a UUID, traversal, percent-encoding errors, huge.
fn bad_id(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => String::new(),
        1 => "not-a-uuid".into(),
        2 => "%zz".into(),
        3 => "%ff%fe".into(),
        4 => "..".into(),
        5 => "A".repeat(5000),
        6 => "00000000-0000-0000-0000-000000000000".into(),
        7 => "%00".into(),
        8 => "x.json".into(),
        _ => rng.uuid(),
    }
}

/// A query string: valid filters from the spec, paging and sorting, and garbage.
fn query(rng: &mut Rng, ids: &Ids, target: &Target) -> String {
    let mut parts: Vec<String> = Vec::new();
    for _ in 0..rng.below(4) {
        let part = match rng.below(16) {
            0 | 1 => {
                let a = rng.pick(target.spec);
                let v = valid_value(rng, ids, a)
                    .map(|v| match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| "x".into());
                format!("{}={}", a.name, v.replace('/', "%2F"))
            }
            2 => format!("fields={}", rng.pick(target.spec).name),
            3 => format!("fields={}", *rng.pick(&["", "nope", "%zz", "id,name"])),
            4 => format!(
                "sort_key={}",
                *rng.pick(&["id", "name", "nope", "", "body", "tags", "created_at"])
            ),
            5 => format!("sort_dir={}", *rng.pick(&["asc", "desc", "up", "", "%ff"])),
            6 => format!(
                "limit={}",
                *rng.pick(&["-1", "0", "1", "99999999999999999999", "abc", "", "2.5"])
            ),
            7 => format!(
                "marker={}",
                ids.pick(rng, target.path).unwrap_or_else(|| bad_id(rng))
            ),
            8 => format!("page_reverse={}", *rng.pick(&["true", "false", "maybe"])),
            9 => format!("unknown_filter_{}=1", rng.below(10)),
            10 => "name=%zz&name=%ff%fe".into(),
            11 => "=&&==&%".into(),
            12 => format!("tags={}", *rng.pick(&["a", "a,b", "", "%2C%2C"])),
            13 => format!("not-tags-any={}", *rng.pick(&["a", "", "x,y"])),
            14 => format!("id={}&id={}", bad_id(rng), rng.uuid()),
            _ => format!(
                "{}={}",
                rng.pick(target.spec).name,
                "A".repeat(rng.below(9000))
            ),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A body for an action.
fn action_body(rng: &mut Rng, ids: &Ids, action: &str) -> Value {
    match action {
        "add_router_interface" | "remove_router_interface" => {
            if rng.chance(50) {
                json!({"subnet_id": ids.pick(rng, "subnets").unwrap_or_else(|| rng.uuid())})
            } else {
                json!({"port_id": ids.pick(rng, "ports").unwrap_or_else(|| rng.uuid())})
            }
        }
        "add_extraroutes" | "remove_extraroutes" => json!({"router": {"routes": [
            {"destination": "10.250.0.0/24", "nexthop": "10.0.0.5"}]}}),
        "add_prefixes" | "remove_prefixes" => {
            json!({"prefixes": [format!("10.{}.0.0/16", rng.below(250))]})
        }
        "onboard_network_subnets" => {
            json!({"network_id": ids.pick(rng, "networks").unwrap_or_else(|| rng.uuid())})
        }
        "add_addresses" | "remove_addresses" => {
            json!({"addresses": [format!("172.20.{}.0/24", rng.below(250))]})
        }
        "add_subports" | "remove_subports" => json!({"sub_ports": [{
            "port_id": ids.pick(rng, "ports").unwrap_or_else(|| rng.uuid()),
            "segmentation_type": "vlan", "segmentation_id": rng.below(4094) + 1}]}),
        "add_bgp_peer" | "remove_bgp_peer" => {
            json!({"bgp_peer_id": ids.pick(rng, "bgp-peers").unwrap_or_else(|| rng.uuid())})
        }
        "add_gateway_network" | "remove_gateway_network" => {
            json!({"network_id": ids.pick(rng, "networks").unwrap_or_else(|| rng.uuid())})
        }
        _ => json!({}),
    }
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Generates one request.
fn generate(rng: &mut Rng, ids: &Ids) -> Req {
    let mut req = Req {
        method: Method::GET,
        path: String::new(),
        body: None,
        content_type: Some("application/json"),
        token: TokenMode::Valid,
        if_match: None,
        created: None,
        deleted: None,
    };
    let target = rng.pick(TARGETS);
    let base = format!("/v2.0/{}", target.path);
    let known = |rng: &mut Rng| ids.pick(rng, target.path).unwrap_or_else(|| rng.uuid());
    let mutate = rng.chance(40);
    match rng.below(100) {
        0..=11 => {
            req.path = format!("{base}{}", query(rng, ids, target));
        }
        12..=19 => {
            let id = if rng.chance(80) {
                known(rng)
            } else {
                bad_id(rng)
            };
            req.path = format!("{base}/{id}{}", query(rng, ids, target));
        }
        20..=44 => {
            req.method = Method::POST;
            req.path = base;
            let inner = valid_body(rng, ids, target.spec, false);
            req.body = Some(if mutate {
                mutate_body(rng, target.resource, inner)
            } else {
                req.created = Some(target.path);
                to_vec(&json!({ target.resource: inner }))
            });
        }
        45..=48 => {
            // Bulk create.
            req.method = Method::POST;
            req.path = base;
            let plural = target.path.rsplit('/').next().unwrap_or(target.path);
            let plural = plural.replace('-', "_");
            let items: Vec<Value> = (0..rng.below(4) + 1)
                .map(|_| Value::Object(valid_body(rng, ids, target.spec, false)))
                .collect();
            let mut body = json!({ plural.as_str(): items });
            if mutate {
                body = match rng.below(4) {
                    0 => json!({ plural.as_str(): [] }),
                    1 => json!({ plural.as_str(): "x" }),
                    2 => json!({ plural.as_str(): [null, 1, "s"] }),
                    _ => json!({ plural.as_str(): items_of(&body), target.resource: {} }),
                };
            }
            req.body = Some(to_vec(&body));
        }
        49..=66 => {
            req.method = Method::PUT;
            let id = if rng.chance(85) {
                known(rng)
            } else {
                bad_id(rng)
            };
            req.path = format!("{base}/{id}");
            let inner = valid_body(rng, ids, target.spec, true);
            req.body = Some(if mutate {
                mutate_body(rng, target.resource, inner)
            } else {
                to_vec(&json!({ target.resource: inner }))
            });
            if rng.chance(15) {
                req.if_match = Some(
                    rng.pick(&[
                        &b"revision_number=1"[..],
                        b"revision_number=abc",
                        b"revision_number=-1",
                        b"revision_number=99999999999999999999",
                        b"garbage",
                        b"",
                        b"\xff\xfe",
                        b"revision_number=1, revision_number=2",
                    ])
                    .to_vec(),
                );
            }
        }
        67..=72 => {
            req.method = Method::DELETE;
            let id = if rng.chance(60) {
                known(rng)
            } else {
                bad_id(rng)
            };
            req.path = format!("{base}/{id}");
            req.deleted = Some((target.path, id));
            if rng.chance(10) {
                req.if_match = Some(b"revision_number=1".to_vec());
            }
        }
        73..=80 => {
            // Actions (and unknown ones).
            let id = if rng.chance(85) {
                known(rng)
            } else {
                bad_id(rng)
            };
            let action = if target.actions.is_empty() || rng.chance(15) {
                *rng.pick(&["add_router_interface", "nope", "tags", "get_subports"])
            } else {
                *rng.pick(target.actions)
            };
            req.method = if action == "get_subports" || rng.chance(10) {
                Method::GET
            } else {
                Method::PUT
            };
            req.path = format!("{base}/{id}/{action}");
            let body = action_body(rng, ids, action);
            req.body = Some(if mutate {
                let inner = body.as_object().cloned().unwrap_or_default();
                let mut v = mutate_body(rng, "x", inner);
                if rng.chance(50) {
                    v = to_vec(&wrong_value(rng));
                }
                v
            } else {
                to_vec(&body)
            });
        }
        81..=86 => {
            // Tags.
            let id = if rng.chance(85) {
                known(rng)
            } else {
                bad_id(rng)
            };
            let tag = *rng.pick(&["red", "", "%zz", "a b", "x,y", "%ff"]);
            let long_tag = "t".repeat(300);
            let tag = if rng.chance(10) {
                long_tag.as_str()
            } else {
                tag
            };
            let _ = target.taggable;
            match rng.below(5) {
                0 => req.path = format!("{base}/{id}/tags"),
                1 => {
                    req.method = Method::PUT;
                    req.path = format!("{base}/{id}/tags/{tag}");
                }
                2 => {
                    req.method = Method::DELETE;
                    req.path = format!("{base}/{id}/tags/{tag}");
                }
                3 => {
                    req.method = Method::DELETE;
                    req.path = format!("{base}/{id}/tags");
                }
                _ => {
                    req.method = Method::PUT;
                    req.path = format!("{base}/{id}/tags");
                    let body = if mutate {
                        json!({"tags": wrong_value(rng)})
                    } else {
                        json!({"tags": ["a", "b", tag]})
                    };
                    req.body = Some(to_vec(&body));
                }
            }
        }
        87..=89 => {
            // Wrong methods, odd paths.
            req.method = rng
                .pick(&[
                    Method::PATCH,
                    Method::OPTIONS,
                    Method::DELETE,
                    Method::PUT,
                    Method::POST,
                    Method::from_bytes(b"FROB").unwrap_or(Method::GET),
                ])
                .clone();
            req.path = (*rng.pick(&[
                "/v2.0",
                "/v2.0/",
                "/",
                "/v2.0/networks.json",
                "/v2.0/extensions",
                "/v2.0/extensions/nope",
                "/v2.0/sfc",
                "/v2.0/sfc/nope",
                "/v2.0/nope",
                "/v2.0//networks",
                "/v2.0/networks/../ports",
                "/v2.0/%zz",
                "/v2.0/networks/x/y/z/w",
                "/v3",
                "/v2.0/networks",
            ]))
            .to_string();
            if rng.chance(50) {
                req.body = Some(b"{}".to_vec());
            }
        }
        90..=94 => {
            // Other endpoints.
            let project = rng.uuid();
            let (m, p, b): (Method, String, Option<Value>) = match rng.below(10) {
                0 => (Method::GET, "/v2.0/quotas".into(), None),
                1 => (Method::GET, format!("/v2.0/quotas/{project}"), None),
                2 => (
                    Method::PUT,
                    format!("/v2.0/quotas/{project}"),
                    Some(json!({"quota": {"network": wrong_value(rng), "port": 10}})),
                ),
                3 => (Method::GET, format!("/v2.0/quotas/{project}/default"), None),
                4 => (Method::GET, "/v2.0/network-ip-availabilities".into(), None),
                5 => (
                    Method::GET,
                    format!(
                        "/v2.0/network-ip-availabilities/{}",
                        ids.pick(rng, "networks").unwrap_or_else(|| bad_id(rng))
                    ),
                    None,
                ),
                6 => (Method::GET, "/v2.0/floatingip-pools".into(), None),
                7 => (Method::GET, format!("/v2.0/agents{}", "?host=%ff"), None),
                8 => (
                    Method::GET,
                    format!("/v2.0/auto-allocated-topology/{}", bad_id(rng)),
                    None,
                ),
                _ => (
                    Method::PUT,
                    format!("/v2.0/agents/{}", bad_id(rng)),
                    Some(json!({"agent": {"admin_state_up": wrong_value(rng)}})),
                ),
            };
            req.method = m;
            req.path = p;
            req.body = b.map(|b| to_vec(&b));
        }
        _ => {
            // Identity, lightly.
            match rng.below(5) {
                0 => {
                    req.method = Method::POST;
                    req.path = "/v3/auth/tokens".into();
                    req.token = TokenMode::Missing;
                    let body = json!({"auth": {"identity": {"methods": ["password"],
                        "password": {"user": {"name": wrong_value(rng),
                            "domain": {"name": "Default"}, "password": wrong_value(rng)}}}}});
                    req.body = Some(if mutate {
                        mutate_body(rng, "auth", Map::new())
                    } else {
                        to_vec(&body)
                    });
                }
                1 => req.path = "/v3/auth/tokens".into(),
                2 => req.path = format!("/v3/users{}", query(rng, ids, target)),
                3 => req.path = format!("/v3/projects/{}", bad_id(rng)),
                _ => {
                    req.method = Method::POST;
                    req.path = "/v3/projects".into();
                    req.body = Some(mutate_body(rng, "project", Map::new()));
                }
            }
        }
    }
    // Header mutations.
    if rng.chance(4) {
        req.token = *rng.pick(&[TokenMode::Missing, TokenMode::Garbage, TokenMode::Binary]);
    }
    if req.body.is_some() && rng.chance(5) {
        req.content_type = *rng.pick(&[
            None,
            Some("text/plain"),
            Some("application/xml"),
            Some("multipart/form-data; boundary=x"),
            Some("application/json; charset=latin1"),
        ]);
    }
    req
}

fn items_of(v: &Value) -> Value {
    v.as_object()
        .and_then(|o| o.values().next().cloned())
        .unwrap_or(Value::Null)
}

/// Is this an error body Neutron clients can read?
fn is_neutron_error(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(e) = v.get("NeutronError") else {
        return false;
    };
    e.get("type").is_some_and(Value::is_string)
        && e.get("message").is_some_and(Value::is_string)
        && e.get("detail").is_some()
}

fn prefix(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(n)]).into_owned();
    if bytes.len() > n {
        format!("{text}... ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// Counts and findings of a run.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, usize>,
    classes: BTreeMap<String, usize>,
    findings_total: usize,
    findings: Vec<Finding>,
}

struct Shared {
    http: Client,
    url: String,
    token: String,
    ids: Ids,
    tally: Mutex<Tally>,
}

impl Shared {
    fn finding(&self, req: &Req, outcome: String) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        t.findings_total += 1;
        if t.findings.len() < MAX_FINDINGS {
            eprintln!(
                "neutrino-fuzz: finding: {} {} -> {}",
                req.method,
                prefix(req.path.as_bytes(), 200),
                outcome
            );
            t.findings.push(Finding {
                method: req.method.to_string(),
                path: prefix(req.path.as_bytes(), 300),
                body_prefix: prefix(req.body.as_deref().unwrap_or_default(), 300),
                outcome,
            });
        }
    }

    fn count(&self, status: String, class: &str) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        *t.statuses.entry(status).or_default() += 1;
        *t.classes.entry(class.to_string()).or_default() += 1;
    }

    async fn send(&self, req: Req) {
        let mut b = self
            .http
            .request(req.method.clone(), format!("{}{}", self.url, req.path));
        match req.token {
            TokenMode::Valid => b = b.header(api::AUTH_TOKEN_HEADER, self.token.as_str()),
            TokenMode::Missing => {}
            TokenMode::Garbage => b = b.header(api::AUTH_TOKEN_HEADER, "gAAAAAgarbage"),
            TokenMode::Binary => {
                if let Ok(v) = HeaderValue::from_bytes(b"\xff\xfe\x80token") {
                    b = b.header(api::AUTH_TOKEN_HEADER, v);
                }
            }
        }
        if let Some(ct) = req.content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        if let Some(m) = &req.if_match {
            if let Ok(v) = HeaderValue::from_bytes(m) {
                b = b.header("If-Match", v);
            }
        }
        if let Some(body) = &req.body {
            b = b.body(body.clone());
        }
        // A pooled connection the server closed a moment ago (after refusing an oversized
        // body, it closes without reading it) fails before anything is sent: retry once on
        // a fresh attempt; a second failure is a finding.
        let retry = b.try_clone();
        let res = match b.send().await {
            Ok(res) => Ok(res),
            Err(first) => match retry {
                Some(retry) => {
                    self.count("retried".into(), "retried");
                    retry
                        .send()
                        .await
                        .map_err(|e| format!("{first}; retry: {e}"))
                }
                None => Err(first.to_string()),
            },
        };
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                self.count("transport".into(), "transport");
                self.finding(&req, format!("transport error: {e}"));
                return;
            }
        };
        let status = res.status();
        let body = match res.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.count("transport".into(), "transport");
                self.finding(&req, format!("{status}, body not read: {e}"));
                return;
            }
        };
        let class = format!("{}xx", status.as_u16() / 100);
        self.count(status.as_u16().to_string(), &class);
        if status.is_server_error() {
            self.finding(&req, format!("{status}: {}", prefix(&body, 300)));
        } else if status.is_client_error()
            && req.path.starts_with("/v2.0")
            && req.method != Method::HEAD
            && !is_neutron_error(&body)
        {
            self.finding(
                &req,
                format!(
                    "{status} without a NeutronError body: {}",
                    prefix(&body, 300)
                ),
            );
        } else if status.is_success() {
            if let Some(path) = req.created {
                let id = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    v.as_object()?
                        .values()
                        .next()?
                        .get("id")?
                        .as_str()
                        .map(str::to_string)
                });
                if let Some(id) = id {
                    self.ids.add(path, id);
                }
            }
            if let Some((path, id)) = &req.deleted {
                self.ids.remove(path, id);
            }
        }
    }
}

/// Runs the fuzzer against the endpoint.
pub async fn run_fuzz(args: FuzzArgs) -> Result<FuzzReport, BenchError> {
    if args.concurrency == 0 || args.timeout == 0 {
        return Err(BenchError::InvalidArgs(
            "--concurrency and --timeout must be at least 1".into(),
        ));
    }
    let timeout = Duration::from_secs(args.timeout);
    let http = api::client_builder(timeout)?.build()?;
    let (url, token) =
        auth::resolve(&http, args.url.as_deref(), args.token.as_deref(), &env_var).await?;
    eprintln!("neutrino-fuzz: network endpoint {url}, seed {}", args.seed);
    let shared = Arc::new(Shared {
        http,
        url,
        token,
        ids: Ids::default(),
        tally: Mutex::default(),
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let shared = shared.clone();
        let n = args.requests / args.concurrency
            + usize::from(worker < args.requests % args.concurrency);
        let seed = args
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(worker as u64);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            for _ in 0..n {
                let req = generate(&mut rng, &shared.ids);
                shared.send(req).await;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| BenchError::Task(e.to_string()))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let alive_after = shared
        .http
        .get(format!("{}/v2.0/networks?limit=1", shared.url))
        .header(api::AUTH_TOKEN_HEADER, shared.token.as_str())
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 200);
    let t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
    Ok(FuzzReport {
        requests: args.requests,
        seconds,
        seed: args.seed,
        concurrency: args.concurrency,
        statuses: t.statuses.clone(),
        classes: t.classes.clone(),
        findings_total: t.findings_total,
        findings: t.findings.clone(),
        alive_after,
        json: args.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(r: &Req) -> String {
        format!(
            "{} {} {:?}",
            r.method,
            r.path,
            r.body.as_ref().map(|b| b.len())
        )
    }

    #[test]
    fn same_seed_same_requests() {
        let ids = Ids::default();
        let a: Vec<String> = {
            let mut rng = Rng::new(7);
            (0..500)
                .map(|_| describe(&generate(&mut rng, &ids)))
                .collect()
        };
        let b: Vec<String> = {
            let mut rng = Rng::new(7);
            (0..500)
                .map(|_| describe(&generate(&mut rng, &ids)))
                .collect()
        };
        let c: Vec<String> = {
            let mut rng = Rng::new(8);
            (0..500)
                .map(|_| describe(&generate(&mut rng, &ids)))
                .collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn covers_every_collection_and_method() {
        let ids = Ids::default();
        let mut rng = Rng::new(1);
        let reqs: Vec<Req> = (0..20_000).map(|_| generate(&mut rng, &ids)).collect();
        for t in TARGETS {
            let base = format!("/v2.0/{}", t.path);
            for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
                assert!(
                    reqs.iter()
                        .any(|r| r.method == m && r.path.starts_with(&base)),
                    "{m} {base}"
                );
            }
            for a in t.actions {
                assert!(reqs.iter().any(|r| r.path.ends_with(a)), "{a}");
            }
        }
        assert!(reqs.iter().any(|r| r.path.starts_with("/v3/")));
        assert!(reqs
            .iter()
            .any(|r| r.body.as_ref().is_some_and(|b| b.len() > 1 << 20)));
        assert!(reqs.iter().any(|r| r
            .body
            .as_ref()
            .is_some_and(|b| std::str::from_utf8(b).is_err())));
        assert!(reqs.iter().any(|r| r.token == TokenMode::Missing));
    }

    #[test]
    fn neutron_error_bodies_are_recognised() {
        assert!(is_neutron_error(
            br#"{"NeutronError": {"type": "T", "message": "m", "detail": ""}}"#
        ));
        assert!(!is_neutron_error(br#"{"error": "x"}"#));
        assert!(!is_neutron_error(b"Bad Request"));
        assert!(!is_neutron_error(br#"{"NeutronError": {"message": "m"}}"#));
    }
}
