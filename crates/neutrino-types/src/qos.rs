//! Neutron QoS (`qos`, `qos-bw-limit-direction`, `qos-default`, `qos-rules-alias`,
//! `qos-rule-type-details`, `qos-bw-minimum-ingress`, `qos-pps-minimum`): the attribute
//! specifications of policies and their four rule types, the valid DSCP marks, and the pure
//! checks a new or changed rule must pass against the policy's other rules.

use serde_json::{json, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::resources::NAME_LEN;
use crate::ApiError;

/// neutron-lib's `MAX_INT` bound of rates (`2**31 - 1`).
pub const MAX_RATE: i64 = 2_147_483_647;

/// The DSCP marks Neutron accepts (`qos_consts.VALID_DSCP_MARKS`).
pub const VALID_DSCP_MARKS: &[i64] = &[
    0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 46, 48, 56,
];

const DIRECTIONS: &[&str] = &["ingress", "egress"];
const PPS_DIRECTIONS: &[&str] = &["any", "ingress", "egress"];

/// QoS policy: `/v2.0/qos/policies`.
pub const POLICY: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("shared", Conv::Bool, Fill::Bool(false)).no_sort(),
    rw("is_default", Conv::Bool, Fill::Bool(false)),
    ro("rules").no_filter().no_sort(),
    ro("tags").no_filter().no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// `/v2.0/qos/policies/{id}/bandwidth_limit_rules`.
pub const BANDWIDTH_LIMIT_RULE: &[Attr] = &[
    ro("id"),
    ro("qos_policy_id"),
    rw("max_kbps", Conv::Int(0, MAX_RATE), Fill::Absent).required(),
    rw("max_burst_kbps", Conv::Int(0, MAX_RATE), Fill::Absent),
    rw("direction", Conv::Enum(DIRECTIONS), Fill::Str("egress")),
];

/// `/v2.0/qos/policies/{id}/dscp_marking_rules`.
pub const DSCP_MARKING_RULE: &[Attr] = &[
    ro("id"),
    ro("qos_policy_id"),
    rw("dscp_mark", Conv::Int(0, 63), Fill::Absent).required(),
];

/// `/v2.0/qos/policies/{id}/minimum_bandwidth_rules`.
pub const MINIMUM_BANDWIDTH_RULE: &[Attr] = &[
    ro("id"),
    ro("qos_policy_id"),
    rw("min_kbps", Conv::Int(0, MAX_RATE), Fill::Absent).required(),
    rw("direction", Conv::Enum(DIRECTIONS), Fill::Str("egress")),
];

/// `/v2.0/qos/policies/{id}/minimum_packet_rate_rules`.
pub const MINIMUM_PACKET_RATE_RULE: &[Attr] = &[
    ro("id"),
    ro("qos_policy_id"),
    rw("min_kpps", Conv::Int(0, MAX_RATE), Fill::Absent).required(),
    rw("direction", Conv::Enum(PPS_DIRECTIONS), Fill::Str("egress")),
];

/// One rule type: its `type` name, resource key and the parameters the rule-type details
/// report.
#[derive(Clone, Copy, Debug)]
pub struct RuleType {
    /// `bandwidth_limit`, ...
    pub name: &'static str,
    /// `bandwidth_limit_rule`, ...
    pub resource: &'static str,
    /// Whether Neutrino's dataplane enforces it.
    pub enforced: bool,
}

/// The rule types, in the order upstream lists them.
pub const RULE_TYPES: &[RuleType] = &[
    RuleType {
        name: "bandwidth_limit",
        resource: "bandwidth_limit_rule",
        enforced: true,
    },
    RuleType {
        name: "dscp_marking",
        resource: "dscp_marking_rule",
        enforced: true,
    },
    RuleType {
        name: "minimum_bandwidth",
        resource: "minimum_bandwidth_rule",
        enforced: false,
    },
    RuleType {
        name: "minimum_packet_rate",
        resource: "minimum_packet_rate_rule",
        enforced: false,
    },
];

/// The rule type stored as `resource`.
pub fn rule_type_of(resource: &str) -> Option<&'static RuleType> {
    RULE_TYPES.iter().find(|t| t.resource == resource)
}

/// `GET /v2.0/qos/rule-types`: the types the dataplane enforces.
pub fn rule_types() -> Value {
    let items: Vec<Value> = RULE_TYPES
        .iter()
        .filter(|t| t.enforced)
        .map(|t| json!({"type": t.name}))
        .collect();
    json!({ "rule_types": items })
}

/// `GET /v2.0/qos/rule-types/{type}` (`qos-rule-type-details`), or `None` for a type the
/// dataplane does not enforce.
pub fn rule_type_details(name: &str) -> Option<Value> {
    let params: Vec<Value> = match name {
        "bandwidth_limit" => vec![
            json!({"parameter_name": "max_kbps", "parameter_type": "range",
                   "parameter_values": {"start": 0, "end": MAX_RATE}}),
            json!({"parameter_name": "max_burst_kbps", "parameter_type": "range",
                   "parameter_values": {"start": 0, "end": MAX_RATE}}),
            json!({"parameter_name": "direction", "parameter_type": "choices",
                   "parameter_values": DIRECTIONS}),
        ],
        "dscp_marking" => vec![
            json!({"parameter_name": "dscp_mark", "parameter_type": "choices",
                                      "parameter_values": VALID_DSCP_MARKS}),
        ],
        _ => return None,
    };
    Some(json!({"rule_type": {"type": name, "drivers": [
        {"name": "neutrino", "supported_parameters": params}]}}))
}

/// Checks a DSCP mark against [`VALID_DSCP_MARKS`].
pub fn check_dscp_mark(mark: i64) -> Result<(), ApiError> {
    if VALID_DSCP_MARKS.contains(&mark) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid input for dscp_mark. Reason: {mark} is not in valid_values {VALID_DSCP_MARKS:?}."
        )))
    }
}

/// The direction of a rule body (`None` for DSCP marking, which has none).
fn direction(resource: &str, rule: &Value) -> Option<String> {
    if resource == "dscp_marking_rule" {
        return None;
    }
    Some(
        rule.get("direction")
            .and_then(Value::as_str)
            .unwrap_or("egress")
            .to_string(),
    )
}

/// Whether two directions of one rule type overlap (`any` overlaps both, for packet rates).
fn overlaps(a: &Option<String>, b: &Option<String>) -> bool {
    match (a.as_deref(), b.as_deref()) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || x == "any" || y == "any",
        _ => false,
    }
}

/// Checks a new or changed rule of type `resource` (its complete body `rule`, id `rule_id`)
/// against the other rules of the same type in policy `policy` (`(id, body)` pairs): one rule
/// per type and direction (409, the database's duplicate entry upstream); a minimum packet
/// rate with direction `any` conflicts with a directional one (409 `QoSRulesConflict`).
pub fn check_rule_conflict(
    resource: &str,
    policy: &str,
    rule_id: &str,
    rule: &Value,
    siblings: &[(String, Value)],
) -> Result<(), ApiError> {
    let mine = direction(resource, rule);
    for (id, other) in siblings.iter().filter(|(id, _)| id != rule_id) {
        let theirs = direction(resource, other);
        if mine == theirs {
            let (class, fields, values) = match &mine {
                Some(d) => (
                    camel(resource),
                    "['qos_policy_id', 'direction']",
                    format!("['{policy}', '{d}']"),
                ),
                None => (
                    camel(resource),
                    "['qos_policy_id']",
                    format!("['{policy}']"),
                ),
            };
            return Err(ApiError::conflict(
                "NeutronDbObjectDuplicateEntry",
                format!(
                    "Failed to create a duplicate {class}: for attribute(s) {fields} with value(s) {values}"
                ),
            ));
        }
        if overlaps(&mine, &theirs) {
            let t = rule_type_of(resource).map_or(resource, |t| t.name);
            return Err(ApiError::conflict(
                "QoSRulesConflict",
                format!(
                    "Rule {t} conflicts with rule {id} which already exists in QoS Policy {policy}."
                ),
            ));
        }
    }
    Ok(())
}

/// The rule type whose parameters bound this one's (`max_kbps` against `min_kbps`).
pub fn counterpart(resource: &str) -> Option<&'static str> {
    match resource {
        "bandwidth_limit_rule" => Some("minimum_bandwidth_rule"),
        "minimum_bandwidth_rule" => Some("bandwidth_limit_rule"),
        _ => None,
    }
}

/// Checks a bandwidth limit against the policy's minimum bandwidth rules of its direction and
/// the other way round (`others`: the [`counterpart`] rules): a limit below a guarantee is a
/// 409 `QoSRuleParameterConflict`.
pub fn check_parameter_conflict(
    resource: &str,
    policy: &str,
    rule: &Value,
    others: &[(String, Value)],
) -> Result<(), ApiError> {
    let dir = |r: &Value| {
        r.get("direction")
            .and_then(Value::as_str)
            .unwrap_or("egress")
            .to_string()
    };
    let num = |r: &Value, k: &str| r.get(k).and_then(Value::as_i64);
    for (_, other) in others.iter().filter(|(_, o)| dir(o) == dir(rule)) {
        let (limit, value, existing, existing_type) = match resource {
            "bandwidth_limit_rule" => (
                true,
                num(rule, "max_kbps"),
                num(other, "min_kbps"),
                "minimum_bandwidth",
            ),
            _ => (
                false,
                num(rule, "min_kbps"),
                num(other, "max_kbps"),
                "bandwidth_limit",
            ),
        };
        let (Some(value), Some(existing)) = (value, existing) else {
            continue;
        };
        let conflict = if limit {
            value < existing
        } else {
            value > existing
        };
        if conflict {
            return Err(ApiError::conflict(
                "QoSRuleParameterConflict",
                format!(
                    "Unable to add the rule with value {value} to the policy {policy} as the existing rule of type {existing_type} restricts the bandwidth to {existing}."
                ),
            ));
        }
    }
    Ok(())
}

/// The object class name upstream reports (`QosBandwidthLimitRule`).
fn camel(resource: &str) -> String {
    let mut out = String::from("Qos");
    for part in resource.split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sib(id: &str, body: Value) -> (String, Value) {
        (id.to_string(), body)
    }

    #[test]
    fn dscp_marks_are_upstreams_set() {
        for m in [0, 8, 10, 26, 46, 56] {
            assert!(check_dscp_mark(m).is_ok(), "{m}");
        }
        for m in [1, 2, 7, 9, 42, 44, 50, 63] {
            let e = check_dscp_mark(m).unwrap_err();
            assert_eq!(e.status, 400, "{m}");
        }
    }

    #[test]
    fn one_bandwidth_limit_per_direction() {
        let existing = [sib("r1", json!({"max_kbps": 1, "direction": "egress"}))];
        let e = check_rule_conflict(
            "bandwidth_limit_rule",
            "p",
            "new",
            &json!({"max_kbps": 2, "direction": "egress"}),
            &existing,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.kind.as_str()),
            (409, "NeutronDbObjectDuplicateEntry")
        );
        assert!(e.message.contains("QosBandwidthLimitRule"));
        assert!(check_rule_conflict(
            "bandwidth_limit_rule",
            "p",
            "new",
            &json!({"max_kbps": 2, "direction": "ingress"}),
            &existing,
        )
        .is_ok());
        // A rule does not conflict with itself (updates).
        assert!(check_rule_conflict(
            "bandwidth_limit_rule",
            "p",
            "r1",
            &json!({"max_kbps": 5, "direction": "egress"}),
            &existing,
        )
        .is_ok());
    }

    #[test]
    fn one_dscp_rule_per_policy() {
        let existing = [sib("r1", json!({"dscp_mark": 8}))];
        let e = check_rule_conflict(
            "dscp_marking_rule",
            "p",
            "new",
            &json!({"dscp_mark": 10}),
            &existing,
        )
        .unwrap_err();
        assert_eq!(e.status, 409);
    }

    #[test]
    fn packet_rate_any_conflicts_with_directions() {
        let existing = [sib("r1", json!({"min_kpps": 1, "direction": "ingress"}))];
        let e = check_rule_conflict(
            "minimum_packet_rate_rule",
            "p",
            "new",
            &json!({"min_kpps": 1, "direction": "any"}),
            &existing,
        )
        .unwrap_err();
        assert_eq!((e.status, e.kind.as_str()), (409, "QoSRulesConflict"));
    }

    #[test]
    fn a_limit_below_a_guarantee_conflicts() {
        let min = [sib("m", json!({"min_kbps": 1000, "direction": "egress"}))];
        let e = check_parameter_conflict(
            "bandwidth_limit_rule",
            "p",
            &json!({"max_kbps": 500, "direction": "egress"}),
            &min,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.kind.as_str()),
            (409, "QoSRuleParameterConflict")
        );
        // Another direction, or a limit above the guarantee, is fine.
        for ok in [
            json!({"max_kbps": 500, "direction": "ingress"}),
            json!({"max_kbps": 1000, "direction": "egress"}),
        ] {
            assert!(check_parameter_conflict("bandwidth_limit_rule", "p", &ok, &min).is_ok());
        }
        let max = [sib("b", json!({"max_kbps": 1000, "direction": "egress"}))];
        assert!(check_parameter_conflict(
            "minimum_bandwidth_rule",
            "p",
            &json!({"min_kbps": 2000, "direction": "egress"}),
            &max,
        )
        .is_err());
    }

    #[test]
    fn rule_types_list_the_enforced_ones() {
        let v = rule_types();
        let names: Vec<&str> = v["rule_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["bandwidth_limit", "dscp_marking"]);
        assert!(rule_type_details("bandwidth_limit").is_some());
        assert!(rule_type_details("nope").is_none());
    }
}
