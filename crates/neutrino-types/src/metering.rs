//! L3 metering (neutron-lib's `metering` and `metering_source_and_destination_fields`) as
//! data: the attribute specifications of metering labels and their rules, the checks of a
//! rule that the spec cannot state ([`check_rule`]), with upstream's messages, and the
//! overlap test among the rules of one label ([`overlaps`]).
//!
//! A rule matches either the deprecated `remote_ip_prefix` (the far side of the router:
//! the source of ingress traffic, the destination of egress traffic) or any of
//! `source_ip_prefix` / `destination_ip_prefix`; never both forms.

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::error::{ApiError, ApiResult};
use crate::resources::NAME_LEN;

/// `/v2.0/metering/metering-labels`.
pub const METERING_LABEL: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(1024), Fill::Str("")),
    rw("shared", Conv::Bool, Fill::Bool(false)),
];

/// `/v2.0/metering/metering-label-rules`.
pub const METERING_LABEL_RULE: &[Attr] = &[
    ro("id"),
    rw("metering_label_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw(
        "direction",
        Conv::Enum(&["ingress", "egress"]),
        Fill::Str("ingress"),
    )
    .create_only(),
    rw("excluded", Conv::Bool, Fill::Bool(false)).create_only(),
    rw("remote_ip_prefix", Conv::Any, Fill::Null).create_only(),
    rw("source_ip_prefix", Conv::Any, Fill::Null).create_only(),
    rw("destination_ip_prefix", Conv::Any, Fill::Null).create_only(),
];

/// The three prefix attributes of a rule.
pub const PREFIXES: [&str; 3] = [
    "remote_ip_prefix",
    "source_ip_prefix",
    "destination_ip_prefix",
];

fn invalid(attr: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
}

/// neutron-lib's `validate_subnet_or_none`: null, or a CIDR with an explicit prefix length
/// (an IPv4 one written canonically).
pub fn prefix(attr: &str, v: &Value) -> ApiResult<Option<IpNet>> {
    let s = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s,
        other => return Err(invalid(attr, format!("'{other}' is not a valid IP subnet"))),
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

/// The prefixes of a rule document, as upstream's plugin checks them: each a valid subnet,
/// `remote_ip_prefix` never with the other two, and at least one of the three given.
pub fn check_rule(body: &Map<String, Value>) -> ApiResult<()> {
    let mut given = [false; 3];
    for (i, attr) in PREFIXES.iter().enumerate() {
        given[i] = prefix(attr, body.get(*attr).unwrap_or(&Value::Null))?.is_some();
    }
    if given[0] && (given[1] || given[2]) {
        return Err(ApiError::bad(
            "Invalid",
            "Cannot use 'remote-ip-prefix' in conjunction with 'source-ip-prefix' or \
             'destination-ip-prefix'.",
        ));
    }
    if !given.iter().any(|g| *g) {
        return Err(ApiError::bad(
            "Invalid",
            "You must define at least one of the following parameters 'remote_ip_prefix', \
             or 'source_ip_prefix' or 'destination_ip_prefix'.",
        ));
    }
    Ok(())
}

/// A stored rule's prefix `attr` (absent when null or unreadable).
pub fn stored_prefix(rule: &Value, attr: &str) -> Option<IpNet> {
    rule.get(attr)
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn intersect(a: Option<IpNet>, b: Option<IpNet>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.contains(&b.network()) || b.contains(&a.network()),
        // An absent side matches everything.
        _ => true,
    }
}

/// Whether the new rule `new` overlaps the stored rule `old` of the same label: the same
/// `direction` and `excluded`, and either both name `remote_ip_prefix` and those overlap
/// (upstream's `MeteringLabelRuleOverlaps`), or both use source/destination and both the
/// sources and the destinations overlap (an absent side is any address).
pub fn overlaps(new: &Value, old: &Value) -> bool {
    if new.get("direction") != old.get("direction") || new.get("excluded") != old.get("excluded") {
        return false;
    }
    let remote = |r: &Value| stored_prefix(r, "remote_ip_prefix");
    match (remote(new), remote(old)) {
        (Some(a), Some(b)) => intersect(Some(a), Some(b)),
        (None, None) => {
            let side = |r: &Value, k| stored_prefix(r, k);
            intersect(side(new, "source_ip_prefix"), side(old, "source_ip_prefix"))
                && intersect(
                    side(new, "destination_ip_prefix"),
                    side(old, "destination_ip_prefix"),
                )
        }
        _ => false,
    }
}

/// 409 `MeteringLabelRuleOverlaps` for the new rule `new`.
pub fn overlap_error(new: &Value) -> ApiError {
    let shown = PREFIXES
        .iter()
        .filter_map(|k| new.get(*k).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    ApiError::conflict(
        "MeteringLabelRuleOverlaps",
        format!("Metering label rule with remote_ip_prefix {shown} overlaps another."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn prefixes_are_checked_as_upstream() {
        assert!(check_rule(&body(json!({"remote_ip_prefix": "10.0.0.0/24"}))).is_ok());
        assert!(check_rule(&body(json!({"source_ip_prefix": "10.0.0.0/24"}))).is_ok());
        let both = json!({"remote_ip_prefix": "10.0.0.0/24", "destination_ip_prefix": "::/0"});
        assert_eq!(check_rule(&body(both)).unwrap_err().kind, "Invalid");
        assert_eq!(check_rule(&body(json!({}))).unwrap_err().status, 400);
        let bad = json!({"remote_ip_prefix": "10.0.0.1"});
        assert_eq!(check_rule(&body(bad)).unwrap_err().status, 400);
        let bad = json!({"source_ip_prefix": "nope"});
        assert_eq!(check_rule(&body(bad)).unwrap_err().status, 400);
        assert!(check_rule(&body(json!({"source_ip_prefix": 5}))).is_err());
    }

    #[test]
    fn overlap_needs_same_direction_and_excluded() {
        let r = |d: &str, x: bool, p: &str| json!({"direction": d, "excluded": x, "remote_ip_prefix": p});
        assert!(overlaps(
            &r("ingress", false, "10.0.0.0/24"),
            &r("ingress", false, "10.0.0.0/16")
        ));
        assert!(!overlaps(
            &r("egress", false, "10.0.0.0/24"),
            &r("ingress", false, "10.0.0.0/16")
        ));
        assert!(!overlaps(
            &r("ingress", true, "10.0.0.0/24"),
            &r("ingress", false, "10.0.0.0/16")
        ));
        assert!(!overlaps(
            &r("ingress", false, "10.1.0.0/24"),
            &r("ingress", false, "10.0.0.0/16")
        ));
    }

    #[test]
    fn source_destination_overlap_needs_both_sides() {
        let r = |s: Option<&str>, d: Option<&str>| {
            json!({"direction": "ingress", "excluded": false,
                   "remote_ip_prefix": null, "source_ip_prefix": s, "destination_ip_prefix": d})
        };
        assert!(overlaps(
            &r(Some("10.0.0.0/24"), None),
            &r(Some("10.0.0.0/8"), Some("192.0.2.0/24"))
        ));
        assert!(!overlaps(
            &r(Some("10.0.0.0/24"), Some("198.51.100.0/24")),
            &r(Some("10.0.0.0/8"), Some("192.0.2.0/24"))
        ));
        let remote = json!({"direction": "ingress", "excluded": false,
                            "remote_ip_prefix": "10.0.0.0/24"});
        assert!(!overlaps(&remote, &r(Some("10.0.0.0/24"), None)));
    }
}
