//! Network segment ranges (`network-segment-range`) and L3 conntrack helpers
//! (`l3-conntrack-helper`, `expose-l3-conntrack-helper`) as data: attribute specifications
//! and the pure checks of Neutron's two service plugins.
//!
//! A segment range names an inclusive span of segmentation ids of one network type (and
//! physical network, for VLAN) from which tenant networks take theirs; a conntrack helper
//! makes a router's connection tracking run a kernel helper (`ftp`, `tftp`, ...) on traffic
//! to one port of one protocol.

use serde_json::{Map, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::resources::NAME_LEN;
use crate::ApiError;

/// The network types a range may name (neutron-lib's `NETWORK_SEGMENT_RANGE_TYPES`).
pub const RANGE_TYPES: &[&str] = &["vlan", "vxlan", "gre", "geneve"];

/// Neutron's `PHYSICAL_NETWORK_MAX_LEN`.
const PHYSNET_LEN: usize = 64;

/// `/v2.0/network_segment_ranges`.
pub const NETWORK_SEGMENT_RANGE: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    ro("default"),
    rw("shared", Conv::Bool, Fill::Bool(true)).create_only(),
    rw("network_type", Conv::Enum(RANGE_TYPES), Fill::Absent)
        .required()
        .create_only(),
    rw(
        "physical_network",
        Conv::NullableStr(PHYSNET_LEN),
        Fill::Absent,
    )
    .create_only(),
    rw("minimum", Conv::Int(1, u32::MAX as i64), Fill::Absent)
        .required()
        .no_filter(),
    rw("maximum", Conv::Int(1, u32::MAX as i64), Fill::Absent)
        .required()
        .no_filter(),
    ro("used").no_filter().no_sort(),
    ro("available").no_filter().no_sort(),
];

/// The highest segmentation id of a network type (`None`: not a range type).
pub fn max_segment(network_type: &str) -> Option<u32> {
    match network_type {
        "vlan" => Some(4094),
        "vxlan" | "geneve" => Some((1 << 24) - 1),
        "gre" => Some(u32::MAX),
        _ => None,
    }
}

/// Checks a complete range document: `minimum <= maximum`, both within the type's bounds,
/// and a physical network for VLAN (neutron-lib's `verify_vlan_range` /
/// `verify_tunnel_range`).
pub fn check_range(doc: &Map<String, Value>) -> Result<(u32, u32), ApiError> {
    let network_type = doc
        .get("network_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let max = max_segment(network_type).unwrap_or(0);
    let lo = doc.get("minimum").and_then(Value::as_u64).unwrap_or(0);
    let hi = doc.get("maximum").and_then(Value::as_u64).unwrap_or(0);
    let within = |v: u64| (1..=u64::from(max)).contains(&v);
    if !within(lo) || !within(hi) {
        let what = if network_type == "vlan" {
            "VLAN"
        } else {
            "tunnel"
        };
        let bad = if within(lo) { hi } else { lo };
        return Err(ApiError::bad(
            "NetworkTunnelRangeError",
            format!(
                "Invalid network {what} range: '{lo}:{hi}' - {bad} is not a valid {network_type} id, valid ids are 1 to {max}."
            ),
        ));
    }
    if lo > hi {
        return Err(ApiError::bad(
            "NetworkTunnelRangeError",
            format!(
                "Invalid network range: '{lo}:{hi}' - End of range is less than start of range."
            ),
        ));
    }
    Ok((lo as u32, hi as u32))
}

/// Protocols a conntrack helper may name (neutron-lib's `IPTABLES_PROTOCOL_MAP`); the
/// allowed helpers narrow them to TCP and UDP.
pub const PROTOCOLS: &[&str] = &[
    "ah",
    "dccp",
    "egp",
    "esp",
    "gre",
    "hopopt",
    "icmp",
    "igmp",
    "ip",
    "ipip",
    "ipv6-encap",
    "ipv6-frag",
    "ipv6-icmp",
    "icmpv6",
    "ipv6-nonxt",
    "ipv6-opts",
    "ipv6-route",
    "ospf",
    "pgm",
    "rsvp",
    "sctp",
    "tcp",
    "udp",
    "udplite",
    "vrrp",
];

/// `/v2.0/routers/{router_id}/conntrack_helpers`.
pub const CONNTRACK_HELPER: &[Attr] = &[
    ro("id"),
    rw("protocol", Conv::Enum(PROTOCOLS), Fill::Absent).required(),
    rw("port", Conv::Int(1, 65535), Fill::Absent).required(),
    rw("helper", Conv::Str(64), Fill::Absent).required(),
];

/// The attributes a router lists of each of its helpers (`conntrack_helpers`).
pub const SHOWN_IN_ROUTER: &[&str] = &["protocol", "port", "helper"];

/// Upstream's default `allowed_conntrack_helpers`: `(helper, protocol)`.
pub const ALLOWED_HELPERS: &[(&str, &str)] = &[
    ("amanda", "tcp"),
    ("ftp", "tcp"),
    ("h323", "udp"),
    ("h323", "tcp"),
    ("irc", "tcp"),
    ("netbios-ns", "udp"),
    ("pptp", "tcp"),
    ("sane", "tcp"),
    ("sip", "udp"),
    ("sip", "tcp"),
    ("snmp", "udp"),
    ("tftp", "udp"),
];

/// Checks a helper and its protocol against the allowed helpers (400 otherwise).
pub fn check_helper(helper: &str, protocol: &str) -> Result<(), ApiError> {
    let protocols: Vec<&str> = ALLOWED_HELPERS
        .iter()
        .filter(|(h, _)| *h == helper)
        .map(|(_, p)| *p)
        .collect();
    if protocols.is_empty() {
        return Err(ApiError::bad(
            "ConntrackHelperNotAllowed",
            format!("Conntrack Helper {helper} is not allowed."),
        ));
    }
    if !protocols.contains(&protocol) {
        return Err(ApiError::bad(
            "InvalidProtocolForHelper",
            format!(
                "Conntrack Helper {helper} does not support: {protocol}. Supported protocols are: {}",
                protocols.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range(t: &str, lo: u64, hi: u64) -> Result<(u32, u32), ApiError> {
        let doc = json!({"network_type": t, "minimum": lo, "maximum": hi});
        check_range(doc.as_object().unwrap())
    }

    #[test]
    fn ranges_within_type_bounds() {
        assert_eq!(range("vlan", 1, 4094).unwrap(), (1, 4094));
        assert_eq!(range("vlan", 4095, 4095).unwrap_err().status, 400);
        assert_eq!(range("vxlan", 10, 9).unwrap_err().status, 400);
        assert!(range("vxlan", 1, (1 << 24) - 1).is_ok());
        assert!(range("geneve", 1, 1 << 24).is_err());
        assert!(range("gre", 1, u64::from(u32::MAX)).is_ok());
    }

    #[test]
    fn helpers_and_protocols() {
        assert!(check_helper("tftp", "udp").is_ok());
        assert!(check_helper("sip", "tcp").is_ok());
        assert_eq!(
            check_helper("tftp", "tcp").unwrap_err().kind,
            "InvalidProtocolForHelper"
        );
        assert_eq!(
            check_helper("foo", "tcp").unwrap_err().kind,
            "ConntrackHelperNotAllowed"
        );
    }
}
