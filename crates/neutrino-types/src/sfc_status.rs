//! SFC dataplane status as data (Neutrino extensions of networking-sfc): the report a host
//! agent sends (`PUT /neutrino/v1/sfc-status`), the health attributes of a port pair, and
//! the statistics of a port chain summed over the hosts' latest counter reports.
//!
//! Health lives in the port pair document (`neutrino:health`, `neutrino:health_detail`) so
//! the change feed carries it; counters change constantly and are kept outside the
//! documents, one latest report per (chain, host) ([`ChainCounters`] as stored JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::attrs::is_uuid;
use crate::error::{ApiError, ApiResult};

/// Port pair attribute: `UP`, `DOWN` or [`HEALTH_UNKNOWN`] (read-only).
pub const HEALTH: &str = "neutrino:health";
/// Port pair attribute: the reporting agent's free text about the health (read-only).
pub const HEALTH_DETAIL: &str = "neutrino:health_detail";
/// Health of a port pair no agent has reported on.
pub const HEALTH_UNKNOWN: &str = "UNKNOWN";
/// Health values an agent may report.
pub const HEALTHS: &[&str] = &["UP", "DOWN"];
/// Longest `detail` an agent may report, in characters.
pub const DETAIL_LEN: usize = 1024;
/// Hop directions, in the order statistics list them.
pub const DIRECTIONS: &[&str] = &["forward", "reverse", "tap"];

/// A validated agent report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// The reporting host (ports bound to it are the ones it may speak for).
    pub host: String,
    /// Health of port pairs, at most one entry per pair.
    pub port_pairs: Vec<PairHealth>,
    /// Counters of chains, at most one entry per chain.
    pub chains: Vec<(String, ChainCounters)>,
}

/// The health one agent sees for one port pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairHealth {
    /// Port pair id.
    pub id: String,
    /// `UP` or `DOWN`.
    pub health: String,
    /// Free text (empty when not given).
    pub detail: String,
}

/// A packet and byte count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Counters {
    fn add(&mut self, other: Counters) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// What identifies a hop counter: group, pair (`None`: the group as a whole, e.g. its
/// fail-open skip), direction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HopKey {
    /// The port pair group of the hop.
    pub port_pair_group_id: String,
    /// The instance, when the counter is one pair's.
    pub port_pair_id: Option<String>,
    /// `forward`, `reverse` or `tap`.
    pub direction: String,
}

/// One hop counter of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopCounters {
    /// Which hop.
    #[serde(flatten)]
    pub key: HopKey,
    /// Its counts.
    #[serde(flatten)]
    pub counters: Counters,
}

/// One host's counters of one chain (stored as JSON, the latest report per chain and host).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCounters {
    /// Hop counters, unique by key (a key reported twice is summed), sorted by key.
    pub hops: Vec<HopCounters>,
    /// Packets of the chain dropped (e.g. a fail-closed group with no usable pair).
    pub dropped: Counters,
}

/// One hop of a chain's statistics: the counts summed over hosts, and those hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HopTotal {
    /// Which hop.
    #[serde(flatten)]
    pub key: HopKey,
    /// Summed counts.
    #[serde(flatten)]
    pub counters: Counters,
    /// The hosts whose reports counted it, sorted.
    pub hosts: Vec<String>,
}

fn bad(reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid SFC status report: {reason}."))
}

fn object<'a>(what: &str, v: &'a Value) -> ApiResult<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be an object, not {v}")))
}

/// A list that may be absent or null (empty).
fn list<'a>(what: &str, v: Option<&'a Value>) -> ApiResult<&'a [Value]> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(bad(format!("{what} must be a list, not {other}"))),
    }
}

fn uuid(what: &str, v: Option<&Value>) -> ApiResult<String> {
    match v.and_then(Value::as_str) {
        Some(s) if is_uuid(s) => Ok(s.to_string()),
        _ => Err(bad(format!(
            "{what} must be a UUID, not {}",
            v.unwrap_or(&Value::Null)
        ))),
    }
}

fn count(what: &str, d: &Map<String, Value>, key: &str) -> ApiResult<u64> {
    match d.get(key) {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(format!(
                "{what} {key} must be a non-negative integer, not {v}"
            ))
        }),
    }
}

fn counters(what: &str, d: &Map<String, Value>) -> ApiResult<Counters> {
    Ok(Counters {
        packets: count(what, d, "packets")?,
        bytes: count(what, d, "bytes")?,
    })
}

/// Validates an agent's report: `{"host", "port_pairs"?: [{"id", "health", "detail"?}],
/// "chains"?: [{"id", "hops"?: [{"port_pair_group_id", "port_pair_id"?, "direction",
/// "packets"?, "bytes"?}], "dropped"?: {"packets"?, "bytes"?}}]}`. Absent counts are 0; an id
/// listed twice is an error; a hop listed twice in one chain is summed.
pub fn parse_report(body: &Value) -> ApiResult<StatusReport> {
    let d = object("the body", body)?;
    let host = match d.get("host").and_then(Value::as_str) {
        Some(h) if !h.is_empty() && h.len() <= 255 => h.to_string(),
        _ => {
            return Err(bad(
                "host must be a non-empty string of at most 255 characters",
            ))
        }
    };
    let mut port_pairs: Vec<PairHealth> = Vec::new();
    for item in list("port_pairs", d.get("port_pairs"))? {
        let p = object("a port_pairs item", item)?;
        let id = uuid("a port pair id", p.get("id"))?;
        let health = match p.get("health").and_then(Value::as_str) {
            Some(h) if HEALTHS.contains(&h) => h.to_string(),
            _ => {
                return Err(bad(format!(
                    "health of port pair {id} must be one of {HEALTHS:?}, not {}",
                    p.get("health").unwrap_or(&Value::Null)
                )))
            }
        };
        let detail = match p.get("detail") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.chars().count() <= DETAIL_LEN => s.clone(),
            Some(_) => {
                return Err(bad(format!(
                    "detail of port pair {id} must be a string of at most {DETAIL_LEN} characters"
                )))
            }
        };
        if port_pairs.iter().any(|p| p.id == id) {
            return Err(bad(format!("port pair {id} is listed twice")));
        }
        port_pairs.push(PairHealth { id, health, detail });
    }
    let mut chains: Vec<(String, ChainCounters)> = Vec::new();
    for item in list("chains", d.get("chains"))? {
        let c = object("a chains item", item)?;
        let id = uuid("a port chain id", c.get("id"))?;
        if chains.iter().any(|(other, _)| *other == id) {
            return Err(bad(format!("port chain {id} is listed twice")));
        }
        let mut hops: BTreeMap<HopKey, Counters> = BTreeMap::new();
        for hop in list("hops", c.get("hops"))? {
            let h = object("a hop", hop)?;
            let group = uuid("a hop's port_pair_group_id", h.get("port_pair_group_id"))?;
            let pair = match h.get("port_pair_id") {
                None | Some(Value::Null) => None,
                v => Some(uuid("a hop's port_pair_id", v)?),
            };
            let direction = match h.get("direction").and_then(Value::as_str) {
                Some(s) if DIRECTIONS.contains(&s) => s.to_string(),
                _ => {
                    return Err(bad(format!(
                        "a hop's direction must be one of {DIRECTIONS:?}, not {}",
                        h.get("direction").unwrap_or(&Value::Null)
                    )))
                }
            };
            let key = HopKey {
                port_pair_group_id: group,
                port_pair_id: pair,
                direction,
            };
            hops.entry(key).or_default().add(counters("a hop's", h)?);
        }
        let dropped = match c.get("dropped") {
            None | Some(Value::Null) => Counters::default(),
            Some(v) => counters("dropped", object("dropped", v)?)?,
        };
        let hops = hops
            .into_iter()
            .map(|(key, counters)| HopCounters { key, counters })
            .collect();
        chains.push((id, ChainCounters { hops, dropped }));
    }
    Ok(StatusReport {
        host,
        port_pairs,
        chains,
    })
}

fn direction_rank(direction: &str) -> usize {
    DIRECTIONS
        .iter()
        .position(|d| *d == direction)
        .unwrap_or(DIRECTIONS.len())
}

/// Sums the reports `(host, counters)` of one chain whose hops are `groups` (its
/// `port_pair_groups`, in order). Hops are ordered by the position of their group in the
/// chain (groups the chain no longer has last, by id), then direction (forward, reverse,
/// tap), then port pair id (the group-wide counter first).
pub fn sum_reports(
    groups: &[String],
    reports: &[(String, ChainCounters)],
) -> (Vec<HopTotal>, Counters) {
    let mut totals: BTreeMap<HopKey, (Counters, Vec<String>)> = BTreeMap::new();
    let mut dropped = Counters::default();
    for (host, report) in reports {
        dropped.add(report.dropped);
        for hop in &report.hops {
            let entry = totals.entry(hop.key.clone()).or_default();
            entry.0.add(hop.counters);
            if !entry.1.contains(host) {
                entry.1.push(host.clone());
            }
        }
    }
    let mut hops: Vec<HopTotal> = totals
        .into_iter()
        .map(|(key, (counters, mut hosts))| {
            hosts.sort();
            HopTotal {
                key,
                counters,
                hosts,
            }
        })
        .collect();
    let position = |group: &str| {
        groups
            .iter()
            .position(|g| g == group)
            .unwrap_or(groups.len())
    };
    hops.sort_by(|a, b| {
        let rank = |h: &HopTotal| {
            (
                position(&h.key.port_pair_group_id),
                h.key.port_pair_group_id.clone(),
                direction_rank(&h.key.direction),
                h.key.port_pair_id.clone(),
            )
        };
        rank(a).cmp(&rank(b))
    });
    (hops, dropped)
}

/// Fills the health attributes of a port pair document that has none (pairs created before
/// they existed): `UNKNOWN` and `""`.
pub fn fill_health(doc: &mut Map<String, Value>) {
    doc.entry(HEALTH)
        .or_insert_with(|| Value::String(HEALTH_UNKNOWN.into()));
    doc.entry(HEALTH_DETAIL)
        .or_insert_with(|| Value::String(String::new()));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const G1: &str = "11111111-1111-4111-8111-111111111111";
    const G2: &str = "22222222-2222-4222-8222-222222222222";
    const P1: &str = "33333333-3333-4333-8333-333333333333";
    const P2: &str = "44444444-4444-4444-8444-444444444444";
    const C: &str = "55555555-5555-4555-8555-555555555555";

    fn hop(g: &str, p: Option<&str>, dir: &str, packets: u64, bytes: u64) -> Value {
        json!({"port_pair_group_id": g, "port_pair_id": p, "direction": dir,
               "packets": packets, "bytes": bytes})
    }

    #[test]
    fn reports_parse_and_normalise() {
        let r = parse_report(&json!({"host": "h1"})).unwrap();
        assert_eq!((r.port_pairs.len(), r.chains.len()), (0, 0));
        let r = parse_report(&json!({"host": "h1",
            "port_pairs": [{"id": P1, "health": "DOWN"}],
            "chains": [{"id": C, "hops": [hop(G1, Some(P1), "forward", 1, 10),
                                          hop(G1, Some(P1), "forward", 2, 20),
                                          hop(G1, None, "reverse", 3, 30)]}]}))
        .unwrap();
        assert_eq!(
            r.port_pairs,
            vec![PairHealth {
                id: P1.into(),
                health: "DOWN".into(),
                detail: String::new()
            }]
        );
        let (id, c) = &r.chains[0];
        assert_eq!(id, C);
        assert_eq!(c.dropped, Counters::default());
        assert_eq!(c.hops.len(), 2);
        assert_eq!(
            c.hops[0].counters,
            Counters {
                packets: 3,
                bytes: 30
            }
        );
        // Stored JSON round-trips.
        let stored = serde_json::to_value(c).unwrap();
        assert_eq!(stored["hops"][0]["port_pair_id"], Value::Null);
        assert_eq!(stored["hops"][1]["port_pair_id"], P1);
        assert_eq!(serde_json::from_value::<ChainCounters>(stored).unwrap(), *c);
    }

    #[test]
    fn bad_reports() {
        for body in [
            json!([]),
            json!({}),
            json!({"host": ""}),
            json!({"host": "h", "port_pairs": {}}),
            json!({"host": "h", "port_pairs": [{"id": "x", "health": "UP"}]}),
            json!({"host": "h", "port_pairs": [{"id": P1, "health": "UNKNOWN"}]}),
            json!({"host": "h", "port_pairs": [{"id": P1, "health": "UP", "detail": 3}]}),
            json!({"host": "h", "port_pairs": [{"id": P1, "health": "UP"},
                                              {"id": P1, "health": "DOWN"}]}),
            json!({"host": "h", "chains": [{"id": C}, {"id": C}]}),
            json!({"host": "h", "chains": [{"id": C, "hops": [hop(G1, None, "sideways", 0, 0)]}]}),
            json!({"host": "h", "chains": [{"id": C, "hops": [{"port_pair_group_id": G1,
                "direction": "tap", "packets": -1}]}]}),
            json!({"host": "h", "chains": [{"id": C, "hops": [{"port_pair_group_id": G1,
                "direction": "tap", "bytes": 1.5}]}]}),
            json!({"host": "h", "chains": [{"id": C, "dropped": []}]}),
        ] {
            let e = parse_report(&body).unwrap_err();
            assert_eq!(
                (e.status, e.kind.as_str()),
                (400, "HTTPBadRequest"),
                "{body}"
            );
        }
        let long = "x".repeat(DETAIL_LEN + 1);
        assert!(parse_report(
            &json!({"host": "h", "port_pairs": [{"id": P1, "health": "UP", "detail": long}]})
        )
        .is_err());
    }

    #[test]
    fn sums_and_orders() {
        let parse = |hops: Vec<Value>, dropped: u64| {
            let r = parse_report(&json!({"host": "h", "chains": [{"id": C, "hops": hops,
                "dropped": {"packets": dropped, "bytes": dropped * 100}}]}))
            .unwrap();
            r.chains[0].1.clone()
        };
        let h1 = parse(
            vec![
                hop(G2, Some(P2), "forward", 5, 50),
                hop(G1, Some(P2), "forward", 1, 10),
                hop(G1, Some(P1), "tap", 1, 10),
                hop(G1, Some(P1), "forward", 1, 10),
                hop(G1, Some(P1), "reverse", 1, 10),
            ],
            1,
        );
        let h2 = parse(vec![hop(G1, Some(P1), "forward", 2, 20)], 2);
        let groups = vec![G2.to_string(), G1.to_string()];
        let (hops, dropped) = sum_reports(&groups, &[("h2".into(), h2), ("h1".into(), h1)]);
        assert_eq!(
            dropped,
            Counters {
                packets: 3,
                bytes: 300
            }
        );
        type Row<'a> = (&'a str, Option<&'a str>, &'a str, u64, Vec<String>);
        let got: Vec<Row<'_>> = hops
            .iter()
            .map(|h| {
                (
                    h.key.port_pair_group_id.as_str(),
                    h.key.port_pair_id.as_deref(),
                    h.key.direction.as_str(),
                    h.counters.packets,
                    h.hosts.clone(),
                )
            })
            .collect();
        let hosts = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (G2, Some(P2), "forward", 5, hosts(&["h1"])),
                (G1, Some(P1), "forward", 3, hosts(&["h1", "h2"])),
                (G1, Some(P2), "forward", 1, hosts(&["h1"])),
                (G1, Some(P1), "reverse", 1, hosts(&["h1"])),
                (G1, Some(P1), "tap", 1, hosts(&["h1"])),
            ]
        );
        let out = serde_json::to_value(&hops[1]).unwrap();
        assert_eq!(
            out,
            json!({"port_pair_group_id": G1, "port_pair_id": P1, "direction": "forward",
                   "packets": 3, "bytes": 30, "hosts": ["h1", "h2"]})
        );
    }

    #[test]
    fn health_defaults() {
        let mut doc = Map::new();
        fill_health(&mut doc);
        assert_eq!(
            Value::Object(doc.clone()),
            json!({HEALTH: "UNKNOWN", HEALTH_DETAIL: ""})
        );
        doc.insert(HEALTH.into(), json!("UP"));
        fill_health(&mut doc);
        assert_eq!(doc[HEALTH], "UP");
    }
}
