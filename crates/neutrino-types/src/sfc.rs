//! Service function chaining (networking-sfc) as data: the attribute specifications of flow
//! classifiers, port pairs, port pair groups, port chains and service graphs, the
//! normalisation of their parameter dictionaries, the classifier overlap predicates, the
//! service-graph loop test and the sortable prefix keys that index classifiers in claims.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::attrs::{is_uuid, ro, rw, Attr, Conv, Fill};
use crate::error::{ApiError, ApiResult};
use crate::resources::NAME_LEN;

/// Flow classifier: `/v2.0/sfc/flow_classifiers` (the resource code normalises the match).
pub const FLOW_CLASSIFIER: &[Attr] = &[
    ro("id"),
    rw("name", Conv::NullableStr(NAME_LEN), Fill::Str("")),
    rw("description", Conv::NullableStr(NAME_LEN), Fill::Str("")),
    rw("ethertype", Conv::Any, Fill::Null).create_only(),
    rw("protocol", Conv::Any, Fill::Null).create_only(),
    rw("source_port_range_min", Conv::Any, Fill::Null).create_only(),
    rw("source_port_range_max", Conv::Any, Fill::Null).create_only(),
    rw("destination_port_range_min", Conv::Any, Fill::Null).create_only(),
    rw("destination_port_range_max", Conv::Any, Fill::Null).create_only(),
    rw("source_ip_prefix", Conv::Any, Fill::Null).create_only(),
    rw("destination_ip_prefix", Conv::Any, Fill::Null).create_only(),
    rw("logical_source_port", Conv::NullableUuid, Fill::Null).create_only(),
    rw("logical_destination_port", Conv::NullableUuid, Fill::Null).create_only(),
    rw("l7_parameters", Conv::Any, Fill::Null)
        .create_only()
        .no_filter()
        .no_sort(),
];

/// Port pair: `/v2.0/sfc/port_pairs`.
pub const PORT_PAIR: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("ingress", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("egress", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("service_function_parameters", Conv::Any, Fill::Null)
        .create_only()
        .no_filter()
        .no_sort(),
    // Neutrino extension: what the host agents report (`crate::sfc_status`); read-only.
    ro(crate::sfc_status::HEALTH),
    ro(crate::sfc_status::HEALTH_DETAIL),
];

/// Port pair group: `/v2.0/sfc/port_pair_groups` (with `tap_enabled` of `networking-sfc-tap`).
pub const PORT_PAIR_GROUP: &[Attr] = &[
    ro("id"),
    ro("group_id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("port_pairs", Conv::Any, Fill::Null)
        .no_filter()
        .no_sort(),
    rw("port_pair_group_parameters", Conv::Any, Fill::Null)
        .create_only()
        .no_filter()
        .no_sort(),
    rw("tap_enabled", Conv::Bool, Fill::Bool(false)).create_only(),
];

/// Port chain: `/v2.0/sfc/port_chains`.
pub const PORT_CHAIN: &[Attr] = &[
    ro("id"),
    rw("chain_id", Conv::Int(0, MAX_CHAIN_ID), Fill::Absent).create_only(),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("port_pair_groups", Conv::Any, Fill::Absent)
        .required()
        .no_filter()
        .no_sort(),
    rw("flow_classifiers", Conv::Any, Fill::Null)
        .no_filter()
        .no_sort(),
    rw("chain_parameters", Conv::Any, Fill::Null)
        .create_only()
        .no_filter()
        .no_sort(),
];

/// Service graph: `/v2.0/sfc/service_graphs`.
pub const SERVICE_GRAPH: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("port_chains", Conv::Any, Fill::Absent)
        .required()
        .create_only()
        .no_filter()
        .no_sort(),
];

/// Largest `chain_id` a request may give; allocation stays below it.
pub const MAX_CHAIN_ID: i64 = 65535;

/// Hash fields `lb_fields` may name.
pub const LB_FIELDS: &[&str] = &[
    "eth_src", "eth_dst", "ip_src", "ip_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
];

/// Neutrino's key of `port_pair_group_parameters`: skip the hop when no pair is up.
pub const FAIL_OPEN: &str = "fail_open";

/// Keys of `ingress_n_tuple` / `egress_n_tuple`.
pub const N_TUPLE_KEYS: &[&str] = &[
    "source_ip_prefix",
    "destination_ip_prefix",
    "source_port_range_min",
    "source_port_range_max",
    "destination_port_range_min",
    "destination_port_range_max",
];

fn invalid(attr: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
}

/// Python-like rendering of a value inside an error message.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Falsy in Python's sense: null, `{}`, `[]`, `""`, `0`, `false` mean "use the default".
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn dict<'a>(attr: &str, v: &'a mut Value) -> ApiResult<&'a mut Map<String, Value>> {
    let text = shown(v);
    v.as_object_mut()
        .ok_or_else(|| invalid(attr, format!("'{text}' is not a dictionary")))
}

fn unexpected_keys(attr: &str, d: &Map<String, Value>, allowed: &[&str]) -> ApiResult<()> {
    let extra: Vec<&str> = d
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(invalid(
            attr,
            format!("Unexpected keys supplied: {}", extra.join(", ")),
        ))
    }
}

fn to_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `service_function_parameters`: null or empty means `{"correlation": null, "weight": 1}`;
/// `correlation` ∈ {null, mpls, nsh}, `weight` an integer ≥ 0. Missing keys get their
/// defaults (upstream stores a partial dict as given and then fails on it later).
pub fn sf_parameters(v: &Value) -> ApiResult<Value> {
    const ATTR: &str = "service_function_parameters";
    if falsy(v) {
        return Ok(json!({"correlation": null, "weight": 1}));
    }
    let mut v = v.clone();
    let d = dict(ATTR, &mut v)?;
    unexpected_keys(ATTR, d, &["correlation", "weight"])?;
    let correlation = d.get("correlation").cloned().unwrap_or(Value::Null);
    if !matches!(&correlation, Value::Null) && !matches!(correlation.as_str(), Some("mpls" | "nsh"))
    {
        return Err(invalid(
            ATTR,
            format!("'{}' is not in [None, 'mpls', 'nsh']", shown(&correlation)),
        ));
    }
    let weight = match d.get("weight") {
        None => 1,
        Some(w) => {
            let n = to_int(w).ok_or_else(|| {
                ApiError::invalid_input(format!("'{}' is not an integer", shown(w)))
            })?;
            if n < 0 {
                return Err(invalid(ATTR, format!("'{n}' should be non-negative")));
            }
            n
        }
    };
    Ok(json!({"correlation": correlation, "weight": weight}))
}

/// `chain_parameters`: `correlation` ∈ {mpls, nsh} (default mpls), `symmetric` boolean
/// (default false); null or empty means both defaults.
pub fn chain_parameters(v: &Value) -> ApiResult<Value> {
    const ATTR: &str = "chain_parameters";
    if falsy(v) {
        return Ok(json!({"correlation": "mpls", "symmetric": false}));
    }
    let mut v = v.clone();
    let d = dict(ATTR, &mut v)?;
    unexpected_keys(ATTR, d, &["correlation", "symmetric"])?;
    let correlation = d.get("correlation").cloned().unwrap_or(json!("mpls"));
    if !matches!(correlation.as_str(), Some("mpls" | "nsh")) {
        return Err(invalid(
            ATTR,
            format!("'{}' is not in ['mpls', 'nsh']", shown(&correlation)),
        ));
    }
    let symmetric = match d.get("symmetric") {
        None => false,
        Some(s) => crate::attrs::to_bool(s).ok_or_else(|| {
            ApiError::invalid_input(format!("'{}' cannot be converted to boolean", shown(s)))
        })?,
    };
    Ok(json!({"correlation": correlation, "symmetric": symmetric}))
}

fn n_tuple_error(reason: String) -> ApiError {
    let supported: Vec<String> = N_TUPLE_KEYS
        .iter()
        .map(|k| format!("'{k}': None"))
        .collect();
    ApiError::bad(
        "PPGParametersInvalidNTupleMappingParameter",
        format!(
            "Invalid Port Pair Group N-Tuple Mapping parameters: {reason}. Supported PPG \
             classifier N-Tuple Mapping parameters are {{{}}}.",
            supported.join(", ")
        ),
    )
}

/// `port_pair_group_parameters`: `lb_fields` (a list of [`LB_FIELDS`], default `[]`) and
/// `ppg_n_tuple_mapping` (`ingress_n_tuple` / `egress_n_tuple` dicts of [`N_TUPLE_KEYS`],
/// default both empty; a given mapping is kept as given, values are not interpreted).
///
/// Neutrino extension: `fail_open` (a JSON boolean), kept only when given, so the default
/// dictionary stays upstream's: when true, a group whose pairs are all down is skipped
/// instead of dropping the chain's traffic.
pub fn ppg_parameters(v: &Value) -> ApiResult<Value> {
    const ATTR: &str = "port_pair_group_parameters";
    if falsy(v) {
        return Ok(json!({"lb_fields": [],
                         "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}}));
    }
    let mut v = v.clone();
    let d = dict(ATTR, &mut v)?;
    let mapping = match d.get("ppg_n_tuple_mapping") {
        None => json!({"ingress_n_tuple": {}, "egress_n_tuple": {}}),
        Some(Value::Null) => json!({}),
        Some(Value::Object(m)) => {
            for (direction, tuple) in m {
                if !matches!(direction.as_str(), "ingress_n_tuple" | "egress_n_tuple") {
                    return Err(n_tuple_error(format!("Unknow key {direction}.")));
                }
                let tuple = match tuple {
                    Value::Null => continue,
                    Value::Object(t) => t,
                    other => {
                        return Err(n_tuple_error(format!(
                            "'{}' is not a dictionary",
                            shown(other)
                        )))
                    }
                };
                if let Some(k) = tuple.keys().find(|k| !N_TUPLE_KEYS.contains(&k.as_str())) {
                    return Err(n_tuple_error(format!("Unknow key {k}.")));
                }
            }
            let fixed: Map<String, Value> = m
                .iter()
                .map(|(k, t)| (k.clone(), if t.is_null() { json!({}) } else { t.clone() }))
                .collect();
            Value::Object(fixed)
        }
        Some(other) => {
            return Err(n_tuple_error(format!(
                "'{}' is not a dictionary",
                shown(other)
            )))
        }
    };
    unexpected_keys(ATTR, d, &["lb_fields", "ppg_n_tuple_mapping", FAIL_OPEN])?;
    let fail_open = match d.get(FAIL_OPEN) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(invalid(
                ATTR,
                format!("'{}' is not a boolean for {FAIL_OPEN}", shown(other)),
            ))
        }
    };
    let lb_fields = d.get("lb_fields").cloned().unwrap_or(json!([]));
    let Some(list) = lb_fields.as_array() else {
        return Err(invalid(
            ATTR,
            format!("'{}' is not a list", shown(&lb_fields)),
        ));
    };
    let illegal: Vec<String> = list
        .iter()
        .filter(|f| !f.as_str().is_some_and(|f| LB_FIELDS.contains(&f)))
        .map(shown)
        .collect();
    if !illegal.is_empty() {
        return Err(invalid(
            ATTR,
            format!("Illegal values in a list: {}", illegal.join(", ")),
        ));
    }
    let mut out = json!({"lb_fields": lb_fields, "ppg_n_tuple_mapping": mapping});
    if let Some(fail_open) = fail_open {
        out[FAIL_OPEN] = Value::Bool(fail_open);
    }
    Ok(out)
}

/// A list of resource ids (`port_pairs`, `port_pair_groups`, `flow_classifiers`): null is
/// empty, a single string a one-item list; items must be UUIDs and unique.
pub fn uuid_list(attr: &str, v: &Value) -> ApiResult<Vec<String>> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::String(s) => vec![Value::String(s.clone())],
        Value::Array(a) => a.clone(),
        other => return Err(invalid(attr, format!("'{}' is not a list", shown(other)))),
    };
    let mut seen = BTreeSet::new();
    let dups: Vec<String> = items
        .iter()
        .map(shown)
        .filter(|s| !seen.insert(s.clone()))
        .collect();
    if !dups.is_empty() {
        return Err(invalid(
            attr,
            format!("Duplicate items in the list: '{}'", dups.join(", ")),
        ));
    }
    items
        .iter()
        .map(|i| match i.as_str() {
            Some(s) if is_uuid(s) => Ok(s.to_string()),
            _ => Err(invalid(attr, format!("'{}' is not a valid UUID", shown(i)))),
        })
        .collect()
}

/// A service graph's `port_chains`: source chain id → destination chain ids.
pub fn graph_edges(v: &Value) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let bad = |what: &str, id: &str| {
        ApiError::bad(
            "InvalidUUID",
            format!(
                "An invalid UUID was specified: UUID of {what} Port-Chain is invalid: {id}.. \
                 Make sure only valid UUIDs are provided."
            ),
        )
    };
    let map = match v {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(m) => m,
        other => {
            return Err(invalid(
                "port_chains",
                format!("'{}' is not a dictionary", shown(other)),
            ))
        }
    };
    let mut out = BTreeMap::new();
    for (src, dsts) in map {
        if !is_uuid(src) {
            return Err(bad("source", src));
        }
        let list = match dsts {
            Value::Array(a) => a,
            other => return Err(bad("destination", &shown(other))),
        };
        let mut ids = Vec::with_capacity(list.len());
        for d in list {
            match d.as_str() {
                Some(d) if is_uuid(d) => ids.push(d.to_string()),
                _ => return Err(bad("destination", &shown(d))),
            }
        }
        out.insert(src.clone(), ids);
    }
    Ok(out)
}

/// Whether the graph `src → dsts` has a cycle (a chain pointing at itself included).
pub fn has_loop(edges: &BTreeMap<String, Vec<String>>) -> bool {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit<'a>(
        n: &'a str,
        edges: &'a BTreeMap<String, Vec<String>>,
        state: &mut BTreeMap<&'a str, u8>,
    ) -> bool {
        match state.get(n) {
            Some(1) => return true,
            Some(2) => return false,
            _ => {}
        }
        state.insert(n, 1);
        for d in edges.get(n).into_iter().flatten() {
            if visit(d, edges, state) {
                return true;
            }
        }
        state.insert(n, 2);
        false
    }
    let mut state = BTreeMap::new();
    edges.keys().any(|n| visit(n, edges, &mut state))
}

fn port_value(v: &Value) -> ApiResult<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match to_int(v).filter(|_| !v.is_boolean()) {
        Some(n) if (0..=65535).contains(&n) => Ok(json!(n)),
        _ => Err(ApiError::bad(
            "FlowClassifierInvalidPortValue",
            format!("Flow Classifier has invalid port value {}.", shown(v)),
        )),
    }
}

fn prefix(attr: &str, v: &Value) -> ApiResult<Option<IpNet>> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        other => {
            return Err(invalid(
                attr,
                format!("'{}' is not a valid IP subnet", shown(other)),
            ))
        }
    };
    let net: IpNet = s
        .parse()
        .map_err(|_| invalid(attr, format!("'{s}' is not a valid IP subnet")))?;
    if matches!(net, IpNet::V4(_)) && net.to_string() != *s {
        return Err(invalid(
            attr,
            format!(
                "'{s}' isn't a recognized IP subnet cidr, '{}' is recommended",
                net.trunc()
            ),
        ));
    }
    Ok(Some(net))
}

/// Normalises a flow classifier create body in place, in upstream's order: name and
/// description (null → ""), ethertype, protocol, port bounds, prefixes, l7 parameters, then
/// the cross-field rules (ranges, protocol with ports, prefix family).
pub fn normalize_classifier(body: &mut Map<String, Value>) -> ApiResult<()> {
    for key in ["name", "description"] {
        if body.get(key).is_some_and(Value::is_null) {
            body.insert(key.into(), json!(""));
        }
    }
    let ethertype = match body.get("ethertype").unwrap_or(&Value::Null) {
        Value::Null => "IPv4",
        Value::String(s) if s.eq_ignore_ascii_case("ipv4") => "IPv4",
        Value::String(s) if s.eq_ignore_ascii_case("ipv6") => "IPv6",
        other => {
            return Err(ApiError::bad(
                "FlowClassifierInvalidEthertype",
                format!(
                    "Flow Classifier does not support ethertype {}. Supported ethertype values \
                     are ['IPv4', 'IPv6'].",
                    shown(other)
                ),
            ))
        }
    };
    body.insert("ethertype".into(), json!(ethertype));
    let protocol = match body.get("protocol").unwrap_or(&Value::Null) {
        Value::Null => Value::Null,
        Value::String(s) if matches!(s.to_ascii_lowercase().as_str(), "tcp" | "udp" | "icmp") => {
            json!(s.to_ascii_lowercase())
        }
        other => {
            return Err(ApiError::bad(
                "FlowClassifierInvalidProtocol",
                format!(
                    "Flow Classifier does not support protocol {}. Supported protocol values \
                     are ['tcp', 'udp', 'icmp'].",
                    shown(other)
                ),
            ))
        }
    };
    body.insert("protocol".into(), protocol.clone());
    let mut ports = [Value::Null, Value::Null, Value::Null, Value::Null];
    for (slot, key) in ports.iter_mut().zip(PORT_KEYS) {
        *slot = port_value(body.get(key).unwrap_or(&Value::Null))?;
        body.insert(key.into(), slot.clone());
    }
    let mut nets = [None, None];
    for (slot, key) in nets
        .iter_mut()
        .zip(["source_ip_prefix", "destination_ip_prefix"])
    {
        *slot = prefix(key, body.get(key).unwrap_or(&Value::Null))?;
        body.entry(key).or_insert(Value::Null);
    }
    let l7 = body.get("l7_parameters").cloned().unwrap_or(Value::Null);
    let unknown = match &l7 {
        Value::Null => None,
        Value::Object(m) => m.keys().next().cloned(),
        Value::Array(a) => a.first().map(shown),
        Value::String(s) => s.chars().next().map(String::from),
        _ => None,
    };
    if let Some(k) = unknown {
        return Err(ApiError::bad(
            "FlowClassifierInvalidL7Parameter",
            format!(
                "Invalid Flow Classifier parameters: Unknown key {k}.. Supported flow \
                 classifier parameters are {{}}."
            ),
        ));
    }
    if !l7.is_null() && !l7.is_object() {
        return Err(invalid(
            "l7_parameters",
            format!("'{}' is not a dictionary", shown(&l7)),
        ));
    }
    body.insert("l7_parameters".into(), json!({}));
    for pair in ports.chunks(2) {
        let (min, max) = (pair[0].as_i64(), pair[1].as_i64());
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(ApiError::bad(
                    "FlowClassifierInvalidPortRange",
                    format!(
                        "Invalid IP protocol port range. min_port_range={a} must be lesser or \
                         equal to max_port_range={b}."
                    ),
                ));
            }
        }
        if (min.is_some() || max.is_some()) && !matches!(protocol.as_str(), Some("tcp" | "udp")) {
            return Err(ApiError::bad(
                "FlowClassifierProtocolRequiredWithPorts",
                "IP protocol must be TCP or UDP, if port range is given.",
            ));
        }
    }
    for (net, key) in nets
        .iter()
        .zip(["source_ip_prefix", "destination_ip_prefix"])
    {
        let family_ok = match net {
            None => true,
            Some(IpNet::V4(_)) => ethertype == "IPv4",
            Some(IpNet::V6(_)) => ethertype == "IPv6",
        };
        if !family_ok {
            return Err(ApiError::bad(
                "FlowClassifierIpPrefixFormatConflictWithEthertype",
                format!(
                    "IP prefix {} format conflicts with ethertype {ethertype}.",
                    shown(&body[key])
                ),
            ));
        }
    }
    Ok(())
}

const PORT_KEYS: [&str; 4] = [
    "source_port_range_min",
    "source_port_range_max",
    "destination_port_range_min",
    "destination_port_range_max",
];

/// What a flow classifier matches, read from its stored (normalised) document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// `tcp`, `udp`, `icmp`, or any.
    pub protocol: Option<String>,
    /// Source prefix, or any.
    pub source: Option<IpNet>,
    /// Destination prefix, or any.
    pub destination: Option<IpNet>,
    /// Source port bounds (open when absent).
    pub source_ports: (Option<i64>, Option<i64>),
    /// Destination port bounds (open when absent).
    pub destination_ports: (Option<i64>, Option<i64>),
    /// Logical source port.
    pub logical_source: Option<String>,
    /// Logical destination port.
    pub logical_destination: Option<String>,
}

impl Match {
    /// Reads a stored flow classifier.
    pub fn of(doc: &Value) -> Match {
        let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
        let n = |k: &str| doc.get(k).and_then(Value::as_i64);
        let net = |k: &str| {
            doc.get(k)
                .and_then(Value::as_str)
                .and_then(|p| p.parse().ok())
        };
        Match {
            ethertype: s("ethertype").unwrap_or_else(|| "IPv4".into()),
            protocol: s("protocol"),
            source: net("source_ip_prefix"),
            destination: net("destination_ip_prefix"),
            source_ports: (n("source_port_range_min"), n("source_port_range_max")),
            destination_ports: (
                n("destination_port_range_min"),
                n("destination_port_range_max"),
            ),
            logical_source: s("logical_source_port"),
            logical_destination: s("logical_destination_port"),
        }
    }

    /// Upstream's basic conflict: the n-tuples can match one packet (logical ports ignored).
    pub fn basic_overlap(&self, other: &Match) -> bool {
        fn either<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        fn nets(a: &Option<IpNet>, b: &Option<IpNet>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => {
                    let (a, b) = (a.trunc(), b.trunc());
                    a.contains(&b.network()) || b.contains(&a.network())
                }
                _ => true,
            }
        }
        fn ports(a: (Option<i64>, Option<i64>), b: (Option<i64>, Option<i64>)) -> bool {
            let first = match (a.0, b.1) {
                (Some(min), Some(max)) => min <= max,
                _ => true,
            };
            let second = match (a.1, b.0) {
                (Some(max), Some(min)) => min <= max,
                _ => true,
            };
            first && second
        }
        self.ethertype == other.ethertype
            && either(&self.protocol, &other.protocol)
            && nets(&self.source, &other.source)
            && nets(&self.destination, &other.destination)
            && ports(self.source_ports, other.source_ports)
            && ports(self.destination_ports, other.destination_ports)
    }

    /// Upstream's full conflict: basic overlap and compatible logical ports.
    pub fn full_overlap(&self, other: &Match) -> bool {
        let lp = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
        self.basic_overlap(other)
            && lp(&self.logical_source, &other.logical_source)
            && lp(&self.logical_destination, &other.logical_destination)
    }

    /// The claim key indexing this classifier (with id `id`) by source prefix: sortable
    /// network address and length (`*` for any), then the id.
    pub fn index_key(&self, id: &str) -> String {
        format!("{}/{id}", prefix_key(self.source.as_ref()))
    }

    /// Key ranges `[from, below)` holding every indexed classifier whose source prefix may
    /// intersect this one's: any-source keys, the prefixes containing it (one exact key per
    /// length) and the prefixes inside it (one contiguous range).
    pub fn index_ranges(&self) -> Vec<(String, String)> {
        let Some(net) = self.source.map(|n| n.trunc()) else {
            return vec![(String::new(), "~".into())];
        };
        let mut out = vec![("*/".to_string(), "*0".to_string())];
        for len in 0..=net.prefix_len() {
            let key = prefix_key(Some(&truncate(&net, len)));
            out.push((format!("{key}/"), format!("{key}0")));
        }
        out.push((hex(&net.network()), format!("{}/~", hex(&net.broadcast()))));
        out
    }
}

fn truncate(net: &IpNet, len: u8) -> IpNet {
    IpNet::new(net.network(), len)
        .map(|n| n.trunc())
        .unwrap_or(*net)
}

fn hex(addr: &std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{:08x}", u32::from(*a)),
        std::net::IpAddr::V6(a) => format!("{:032x}", u128::from(*a)),
    }
}

fn prefix_key(net: Option<&IpNet>) -> String {
    match net.map(IpNet::trunc) {
        None => "*".into(),
        Some(n @ IpNet::V4(_)) => format!("{}/{:02}", hex(&n.network()), n.prefix_len()),
        Some(n @ IpNet::V6(_)) => format!("{}/{:03}", hex(&n.network()), n.prefix_len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(v: Value) -> Match {
        let mut body = v.as_object().unwrap().clone();
        normalize_classifier(&mut body).unwrap();
        Match::of(&Value::Object(body))
    }

    fn err(v: Value) -> String {
        let mut body = v.as_object().unwrap().clone();
        normalize_classifier(&mut body).unwrap_err().kind
    }

    #[test]
    fn classifier_normalisation() {
        let mut body = json!({"protocol": "TCP", "ethertype": "ipv4", "name": null,
                              "destination_port_range_min": "80",
                              "source_ip_prefix": "10.1.0.5/32"})
        .as_object()
        .unwrap()
        .clone();
        normalize_classifier(&mut body).unwrap();
        assert_eq!(body["protocol"], "tcp");
        assert_eq!(body["ethertype"], "IPv4");
        assert_eq!(body["name"], "");
        assert_eq!(body["destination_port_range_min"], 80);
        assert_eq!(body["source_ip_prefix"], "10.1.0.5/32");
        assert_eq!(body["l7_parameters"], json!({}));
        assert_eq!(
            err(json!({"protocol": "6"})),
            "FlowClassifierInvalidProtocol"
        );
        assert_eq!(
            err(json!({"ethertype": "arp"})),
            "FlowClassifierInvalidEthertype"
        );
        assert_eq!(
            err(json!({"protocol": "tcp", "source_port_range_min": 70000})),
            "FlowClassifierInvalidPortValue"
        );
        assert_eq!(
            err(
                json!({"protocol": "tcp", "source_port_range_min": 90, "source_port_range_max": 80})
            ),
            "FlowClassifierInvalidPortRange"
        );
        assert_eq!(
            err(json!({"protocol": "icmp", "destination_port_range_min": 80})),
            "FlowClassifierProtocolRequiredWithPorts"
        );
        assert_eq!(
            err(json!({"source_ip_prefix": "2001:db8::/64"})),
            "FlowClassifierIpPrefixFormatConflictWithEthertype"
        );
        assert_eq!(
            err(json!({"source_ip_prefix": "10.1/16"})),
            "HTTPBadRequest"
        );
        assert_eq!(
            err(json!({"source_ip_prefix": "10.1.0.0"})),
            "HTTPBadRequest"
        );
        assert_eq!(
            err(json!({"l7_parameters": {"url": "x"}})),
            "FlowClassifierInvalidL7Parameter"
        );
    }

    #[test]
    fn overlap_predicates() {
        let a = fc(json!({"protocol": "tcp", "source_ip_prefix": "10.0.0.0/8",
                          "destination_port_range_min": 80, "destination_port_range_max": 90,
                          "logical_source_port": "a"}));
        let b = fc(json!({"source_ip_prefix": "10.1.2.3/32", "logical_source_port": "b"}));
        assert!(a.basic_overlap(&b));
        assert!(!a.full_overlap(&b));
        let c = fc(json!({"protocol": "tcp", "destination_port_range_min": 91}));
        assert!(!a.basic_overlap(&c));
        let d = fc(json!({"protocol": "udp"}));
        assert!(!a.basic_overlap(&d));
        let e = fc(json!({"ethertype": "IPv6"}));
        assert!(!b.basic_overlap(&e));
        let f = fc(json!({"source_ip_prefix": "11.0.0.0/8"}));
        assert!(!a.basic_overlap(&f));
    }

    #[test]
    fn index_ranges_cover_every_intersecting_prefix() {
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3/32",
            "11.0.0.0/8",
            "0.0.0.0/0",
        ];
        let keyed: Vec<(String, &str)> = nets
            .iter()
            .map(|n| (fc(json!({"source_ip_prefix": n})).index_key("id"), *n))
            .chain(std::iter::once((fc(json!({})).index_key("id"), "any")))
            .collect();
        let probe = fc(json!({"source_ip_prefix": "10.1.0.0/16"}));
        let hit: BTreeSet<&str> = keyed
            .iter()
            .filter(|(k, _)| {
                probe
                    .index_ranges()
                    .iter()
                    .any(|(lo, hi)| k.as_str() >= lo.as_str() && k.as_str() < hi.as_str())
            })
            .map(|(_, n)| *n)
            .collect();
        let want: BTreeSet<&str> = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "any",
        ]
        .into_iter()
        .collect();
        assert_eq!(hit, want);
    }

    #[test]
    fn parameters() {
        assert_eq!(
            sf_parameters(&json!({"correlation": "mpls"})).unwrap(),
            json!({"correlation": "mpls", "weight": 1})
        );
        assert_eq!(sf_parameters(&json!({"weight": "3"})).unwrap()["weight"], 3);
        assert!(sf_parameters(&json!({"weight": -1})).is_err());
        assert!(sf_parameters(&json!({"correlation": "vxlan"})).is_err());
        assert!(sf_parameters(&json!({"foo": 1})).is_err());
        assert_eq!(
            chain_parameters(&json!({"symmetric": "true"})).unwrap(),
            json!({"correlation": "mpls", "symmetric": true})
        );
        assert!(chain_parameters(&json!({"correlation": null})).is_err());
        assert_eq!(
            ppg_parameters(&json!({"lb_fields": ["ip_src", "ip_dst"]})).unwrap(),
            json!({"lb_fields": ["ip_src", "ip_dst"],
                   "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}})
        );
        assert_eq!(
            ppg_parameters(&json!({"ppg_n_tuple_mapping": {"ingress_n_tuple": {"foo": 1}}}))
                .unwrap_err()
                .kind,
            "PPGParametersInvalidNTupleMappingParameter"
        );
        assert!(ppg_parameters(&json!({"lb_fields": ["vlan"]})).is_err());
        // Neutrino's fail_open: kept only when given, a JSON boolean.
        assert!(ppg_parameters(&json!({})).unwrap().get(FAIL_OPEN).is_none());
        assert_eq!(
            ppg_parameters(&json!({"fail_open": true})).unwrap(),
            json!({"lb_fields": [], "fail_open": true,
                   "ppg_n_tuple_mapping": {"ingress_n_tuple": {}, "egress_n_tuple": {}}})
        );
        assert_eq!(
            ppg_parameters(&json!({"fail_open": false})).unwrap()[FAIL_OPEN],
            false
        );
        for v in [json!("true"), json!(1), json!(null), json!({})] {
            let e = ppg_parameters(&json!({ "fail_open": v })).unwrap_err();
            assert_eq!((e.status, e.kind.as_str()), (400, "HTTPBadRequest"));
            assert!(e.message.contains("fail_open"), "{}", e.message);
        }
    }

    #[test]
    fn lists_and_graphs() {
        let a = "5f0c8bde-2c89-4e34-a1a8-0c6f4e0a7b11";
        let b = "6f0c8bde-2c89-4e34-a1a8-0c6f4e0a7b11";
        assert_eq!(uuid_list("x", &json!(a)).unwrap(), vec![a]);
        assert!(uuid_list("x", &json!([a, a])).is_err());
        assert!(uuid_list("x", &json!(["nope"])).is_err());
        let edges = graph_edges(&json!({a: [b]})).unwrap();
        assert!(!has_loop(&edges));
        let edges = graph_edges(&json!({a: [b], b: [a]})).unwrap();
        assert!(has_loop(&edges));
        assert!(has_loop(&graph_edges(&json!({a: [a]})).unwrap()));
        assert_eq!(
            graph_edges(&json!({"x": [a]})).unwrap_err().kind,
            "InvalidUUID"
        );
    }
}
