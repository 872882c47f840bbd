//! Layer-2 gateways (networking-l2gw) as data: the attribute specifications of gateways,
//! gateway connections and Neutrino's border-gateway extension (remote gateways, remote
//! gateway connections, remote MACs), the validation of a gateway's device list with
//! networking-l2gw's messages and error types, and the VLAN, VNI and MAC value checks.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::error::{ApiError, ApiResult};
use crate::resources::NAME_LEN;

/// L2 gateway: `/v2.0/l2-gateways` (devices are checked by [`devices`]).
pub const L2_GATEWAY: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("devices", Conv::Any, Fill::Absent)
        .required()
        .no_filter()
        .no_sort(),
];

/// L2 gateway connection: `/v2.0/l2-gateway-connections`; create, show, list and delete.
/// Upstream validates every attribute as a string.
pub const L2_GATEWAY_CONNECTION: &[Attr] = &[
    ro("id"),
    rw("l2_gateway_id", Conv::Str(NAME_LEN), Fill::Str("")).create_only(),
    rw("network_id", Conv::Str(NAME_LEN), Fill::Absent)
        .required()
        .create_only(),
    rw("segmentation_id", Conv::Str(NAME_LEN), Fill::Str("")).create_only(),
];

/// Remote (border) gateway: `/v2.0/l2-remote-gateways` (Neutrino extension).
pub const L2_REMOTE_GATEWAY: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("ipaddr", Conv::Str(NAME_LEN), Fill::Absent).required(),
];

/// Remote gateway connection: `/v2.0/l2-remote-gateway-connections` (Neutrino extension).
pub const L2_REMOTE_GATEWAY_CONNECTION: &[Attr] = &[
    ro("id"),
    rw("gateway", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("network", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("remote_gateway", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("seg_id", Conv::Any, Fill::Str("")).create_only(),
    rw("flood", Conv::Any, Fill::Str("True")).create_only(),
];

/// Remote MAC: `/v2.0/l2-remote-macs` (Neutrino extension); its key is `uuid`.
pub const L2_REMOTE_MAC: &[Attr] = &[
    ro("id"),
    ro("uuid"),
    rw("mac", Conv::Str(NAME_LEN), Fill::Absent)
        .required()
        .create_only(),
    rw("ipaddr", Conv::Str(NAME_LEN), Fill::Str("")).create_only(),
    rw("rgw_connection", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
];

/// The highest VLAN id a gateway interface or connection may name (upstream: `< 4095`).
pub const MAX_VLAN: i64 = 4094;
/// The highest VXLAN network identifier.
pub const MAX_VNI: i64 = (1 << 24) - 1;

fn bad_devices(reason: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid input for devices. Reason: {reason}."))
}

/// Python's `int()` of a JSON value: integers, integral floats, digit strings.
fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Checks one VLAN id as networking-l2gw's `is_valid_vlan_id` does: an integer (or digit
/// string) in 0..=4094, else 400 `InvalidInput`.
pub fn vlan_id(v: &Value) -> ApiResult<i64> {
    let n = int_of(v)
        .ok_or_else(|| ApiError::invalid_input("Segmentation id must be a valid integer"))?;
    if !(0..=MAX_VLAN).contains(&n) {
        return Err(ApiError::invalid_input("Segmentation id is out of range"));
    }
    Ok(n)
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Validates a gateway's `devices` as networking-l2gw's `validate_gwdevice_list` does and
/// returns them normalised: `[{"device_name", "interfaces": [{"name", "segmentation_id":
/// ["100", ...]}]}]`, interfaces of one name merged, VLANs as decimal strings (`[]` when the
/// interface has none). Failures are 400 (`HTTPBadRequest`, or `InvalidInput` for a VLAN).
pub fn devices(v: &Value) -> ApiResult<Vec<Value>> {
    let list = match v {
        Value::Array(list) if !list.is_empty() => list,
        other if !truthy(other) => {
            return Err(bad_devices(
                "Cannot create a gateway with an empty device list",
            ))
        }
        _ => {
            return Err(bad_devices(
                "validate_gwdevice_list: provided data are not iterable",
            ))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for device in list {
        let device = device
            .as_object()
            .ok_or_else(|| bad_devices("validate_gwdevice_list: provided data are not iterable"))?;
        let name = match device.get("device_name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(v) if truthy(v) => {
                return Err(bad_devices("device_name must be a string"));
            }
            _ => {
                return Err(bad_devices(
                    "Cannot create a gateway with an empty device_name",
                ))
            }
        };
        let interfaces = match device.get("interfaces") {
            Some(v) if !truthy(v) => None,
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => return Err(bad_devices("interfaces format is not a type list of dicts")),
        }
        .ok_or_else(|| bad_devices("Cannot create a gateway with an empty interfaces"))?;
        let mut merged: Vec<(String, Option<Vec<String>>)> = Vec::new();
        for iface in interfaces {
            let iface = iface
                .as_object()
                .ok_or_else(|| bad_devices("interfaces format is not a type dict"))?;
            let iname = match iface.get("name") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(v) if truthy(v) => return Err(bad_devices("interface name must be a string")),
                _ => {
                    return Err(bad_devices(
                        "Cannot create a gateway with an empty interface name",
                    ))
                }
            };
            let vlans = match iface.get("segmentation_id") {
                None => None,
                Some(v) if !truthy(v) => {
                    return Err(bad_devices("segmentation_id_list should not be empty"))
                }
                Some(Value::Array(ids)) => Some(
                    ids.iter()
                        .map(|id| vlan_id(id).map(|n| n.to_string()))
                        .collect::<ApiResult<Vec<_>>>()?,
                ),
                Some(_) => return Err(bad_devices("segmentation_id type should be of list type")),
            };
            match merged.iter_mut().find(|(n, _)| *n == iname) {
                Some((_, have)) => {
                    if let Some(new) = vlans {
                        let list = have.get_or_insert_with(Vec::new);
                        for vlan in new {
                            if !list.contains(&vlan) {
                                list.push(vlan);
                            }
                        }
                    }
                }
                None => {
                    let mut vlans = vlans;
                    if let Some(list) = vlans.as_mut() {
                        let mut seen = Vec::with_capacity(list.len());
                        list.retain(|v| {
                            let new = !seen.contains(v);
                            seen.push(v.clone());
                            new
                        });
                    }
                    merged.push((iname, vlans));
                }
            }
        }
        let with = merged.iter().filter(|(_, v)| v.is_some()).count();
        if with != 0 && with != merged.len() {
            return Err(segmentation_required());
        }
        out.push(json!({
            "device_name": name,
            "interfaces": merged
                .into_iter()
                .map(|(n, v)| json!({"name": n, "segmentation_id": v.unwrap_or_default()}))
                .collect::<Vec<_>>(),
        }));
    }
    Ok(out)
}

/// 409 `L2GatewaySegmentationRequired`: some interfaces of a device name VLANs, others not.
pub fn segmentation_required() -> ApiError {
    ApiError::conflict(
        "L2GatewaySegmentationRequired",
        "L2 gateway segmentation id must be consistent for all the interfaces",
    )
}

/// Whether any interface of normalised devices names VLANs.
pub fn has_vlans(devices: &[Value]) -> bool {
    devices.iter().any(|d| {
        d["interfaces"].as_array().is_some_and(|ifs| {
            ifs.iter().any(|i| {
                i["segmentation_id"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty())
            })
        })
    })
}

/// A connection's `segmentation_id`, checked against the gateway's interfaces: required
/// when no interface names VLANs, refused when one does (400 `InvalidInput`). Returns the
/// VLAN, 0 meaning "the interfaces' own".
pub fn connection_vlan(given: &str, gateway_has_vlans: bool) -> ApiResult<i64> {
    if !given.is_empty() {
        if gateway_has_vlans {
            return Err(ApiError::invalid_input(
                "default segmentation_id should not be provided when segmentation_id is \
                 assigned during l2gateway creation",
            ));
        }
        return vlan_id(&Value::String(given.to_string()));
    }
    if !gateway_has_vlans {
        return Err(ApiError::invalid_input(
            "Segmentation id must be specified in create l2gateway connections",
        ));
    }
    Ok(0)
}

/// The WAN tunnel key of a remote gateway connection: "" (the network's own VNI) or a VNI
/// in 1..=16777215, as a decimal string.
pub fn wan_seg_id(v: &Value) -> ApiResult<String> {
    if !truthy(v) {
        return Ok(String::new());
    }
    match int_of(v) {
        Some(n) if (1..=MAX_VNI).contains(&n) => Ok(n.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "Invalid input for seg_id. Reason: '{}' is not a VXLAN network identifier \
             (1 through {MAX_VNI}).",
            v.as_str().map_or_else(|| v.to_string(), str::to_string)
        ))),
    }
}

/// The `flood` flag of a remote gateway connection, stored as upstream's "True"/"False".
pub fn flood(v: &Value) -> ApiResult<String> {
    match crate::attrs::to_bool(v) {
        Some(b) => Ok(if b { "True" } else { "False" }.to_string()),
        None => Err(ApiError::bad_request(format!(
            "Invalid input for flood. Reason: '{}' cannot be converted to boolean.",
            v.as_str().map_or_else(|| v.to_string(), str::to_string)
        ))),
    }
}

/// A remote gateway's tunnel endpoint: an IPv4 address (the hardware VTEP locators are
/// `vxlan_over_ipv4`).
pub fn tunnel_ip(s: &str) -> ApiResult<String> {
    s.parse::<Ipv4Addr>().map(|a| a.to_string()).map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input for ipaddr. Reason: '{s}' is not a valid IPv4 address."
        ))
    })
}

/// A remote MAC's optional IP address ("" when absent).
pub fn mac_ip(s: &str) -> ApiResult<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    s.parse::<std::net::IpAddr>()
        .map(|a| a.to_string())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid input for ipaddr. Reason: '{s}' is not a valid IP address."
            ))
        })
}

/// A unicast MAC address in `00:11:22:33:44:55` form (`-` separators accepted), lower case.
pub fn mac(s: &str) -> ApiResult<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    let first = parts
        .first()
        .and_then(|p| u8::from_str_radix(p, 16).ok())
        .unwrap_or(1);
    if !ok || first & 1 == 1 {
        return Err(ApiError::bad_request(format!(
            "Invalid input for mac. Reason: '{s}' is not a valid unicast MAC address."
        )));
    }
    Ok(parts.join(":").to_ascii_lowercase())
}

/// The interfaces of `device` in normalised form, by name.
pub fn interface_names(device: &Value) -> Vec<String> {
    device["interfaces"]
        .as_array()
        .map(|ifs| {
            ifs.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_normalised_and_merged() {
        let out = devices(&json!([{"device_name": "sw1", "interfaces": [
            {"name": "eth1", "segmentation_id": ["100", 101]},
            {"name": "eth1", "segmentation_id": [" 100", 102]},
            {"name": "eth2", "segmentation_id": [0]}]}]))
        .unwrap();
        assert_eq!(
            out,
            vec![json!({"device_name": "sw1", "interfaces": [
                {"name": "eth1", "segmentation_id": ["100", "101", "102"]},
                {"name": "eth2", "segmentation_id": ["0"]}]})]
        );
        assert!(has_vlans(&out));
        let plain =
            devices(&json!([{"device_name": "sw1", "interfaces": [{"name": "e"}]}])).unwrap();
        assert_eq!(plain[0]["interfaces"][0]["segmentation_id"], json!([]));
        assert!(!has_vlans(&plain));
    }

    #[test]
    fn device_refusals() {
        let cases = [
            (json!([]), 400, "HTTPBadRequest", "empty device list"),
            (json!(null), 400, "HTTPBadRequest", "empty device list"),
            (json!("x"), 400, "HTTPBadRequest", "not iterable"),
            (
                json!([{"device_name": "", "interfaces": [{"name": "e"}]}]),
                400,
                "HTTPBadRequest",
                "empty device_name",
            ),
            (
                json!([{"device_name": "d"}]),
                400,
                "HTTPBadRequest",
                "empty interfaces",
            ),
            (
                json!([{"device_name": "d", "interfaces": "e"}]),
                400,
                "HTTPBadRequest",
                "list of dicts",
            ),
            (
                json!([{"device_name": "d", "interfaces": ["e"]}]),
                400,
                "HTTPBadRequest",
                "type dict",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": ""}]}]),
                400,
                "HTTPBadRequest",
                "empty interface name",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": []}]}]),
                400,
                "HTTPBadRequest",
                "should not be empty",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": "100"}]}]),
                400,
                "HTTPBadRequest",
                "list type",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": [4095]}]}]),
                400,
                "InvalidInput",
                "out of range",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": [-1]}]}]),
                400,
                "InvalidInput",
                "out of range",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": ["x"]}]}]),
                400,
                "InvalidInput",
                "valid integer",
            ),
            (
                json!([{"device_name": "d", "interfaces": [{"name": "e", "segmentation_id": [5]}, {"name": "f"}]}]),
                409,
                "L2GatewaySegmentationRequired",
                "consistent",
            ),
        ];
        for (input, status, kind, text) in cases {
            let e = devices(&input).unwrap_err();
            assert_eq!((e.status, e.kind.as_str()), (status, kind), "{input}: {e}");
            assert!(e.message.contains(text), "{input}: {e}");
        }
    }

    #[test]
    fn connection_vlan_rules() {
        assert_eq!(connection_vlan("100", false).unwrap(), 100);
        assert_eq!(connection_vlan("", true).unwrap(), 0);
        for (given, vlans) in [
            ("", false),
            ("100", true),
            ("4095", false),
            ("-1", false),
            ("x", false),
        ] {
            let e = connection_vlan(given, vlans).unwrap_err();
            assert_eq!(
                (e.status, e.kind.as_str()),
                (400, "InvalidInput"),
                "{given}"
            );
        }
    }

    #[test]
    fn values() {
        assert_eq!(mac("00:AA:bb:cc:dd:ee").unwrap(), "00:aa:bb:cc:dd:ee");
        assert_eq!(mac("00-aa-bb-cc-dd-ee").unwrap(), "00:aa:bb:cc:dd:ee");
        for bad in [
            "",
            "00:11:22:33:44",
            "01:00:00:00:00:00",
            "zz:11:22:33:44:55",
        ] {
            assert!(mac(bad).is_err(), "{bad}");
        }
        assert_eq!(wan_seg_id(&json!("456")).unwrap(), "456");
        assert_eq!(wan_seg_id(&json!("")).unwrap(), "");
        assert!(wan_seg_id(&json!("16777216")).is_err());
        assert!(wan_seg_id(&json!("abc")).is_err());
        assert_eq!(flood(&json!("false")).unwrap(), "False");
        assert_eq!(flood(&json!(true)).unwrap(), "True");
        assert!(flood(&json!("maybe")).is_err());
        assert_eq!(tunnel_ip("198.18.0.1").unwrap(), "198.18.0.1");
        assert!(tunnel_ip("2001:db8::1").is_err());
        assert_eq!(mac_ip("").unwrap(), "");
        assert!(mac_ip("10.0.0.300").is_err());
    }
}
