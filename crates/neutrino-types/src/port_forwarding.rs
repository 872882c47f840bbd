//! Floating IP port forwarding (`floating-ip-port-forwarding` with its `-description`,
//! `-port-ranges` and `-detail` variants, `expose-port-forwarding-in-fip`) as data: the
//! attribute specification and the pure checks of Neutron's port forwarding plugin.
//!
//! A forwarding maps a floating IP's external port (or range) of one protocol to a port (or
//! range) of an IPv4 address of an internal Neutron port. The two sides are stored both ways:
//! `external_port` / `internal_port` (a single port, else null) and `external_port_range` /
//! `internal_port_range` (`"first:last"`, a single port as `"p:p"`). The internal side is
//! one port or a range as long as the external one (N-N or 1-N). Within one floating IP and
//! protocol the external ranges must not overlap; within one internal port, address and
//! protocol the internal ranges must not overlap.

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::ApiError;

/// Protocols a forwarding may name: the ones with ports.
pub const PROTOCOLS: &[&str] = &["tcp", "udp", "sctp", "dccp", "udplite"];

/// Neutron's `DESCRIPTION_FIELD_SIZE`.
const DESCRIPTION_LEN: usize = 255;

/// `/v2.0/floatingips/{id}/port_forwardings`.
pub const PORT_FORWARDING: &[Attr] = &[
    ro("id"),
    rw("external_port", Conv::NullableInt(1, 65535), Fill::Absent),
    rw("internal_port", Conv::NullableInt(1, 65535), Fill::Absent),
    rw("external_port_range", Conv::Any, Fill::Absent),
    rw("internal_port_range", Conv::Any, Fill::Absent),
    rw("internal_ip_address", Conv::Any, Fill::Absent).required(),
    rw("protocol", Conv::Enum(PROTOCOLS), Fill::Absent).required(),
    rw("internal_port_id", Conv::Uuid, Fill::Absent).required(),
    rw("description", Conv::Str(DESCRIPTION_LEN), Fill::Str("")),
];

/// The attributes a floating IP lists of each of its forwardings (`port_forwardings`), and
/// with `floating-ip-port-forwarding-detail` also `id` and `internal_port_id`.
pub const SHOWN_IN_FIP: &[&str] = &[
    "id",
    "internal_port_id",
    "internal_ip_address",
    "internal_port",
    "external_port",
    "protocol",
];

/// A 400 about a port forwarding.
pub fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError::bad(
        "BadRequest",
        format!("Bad port_forwarding request: {message}."),
    )
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// First port.
    pub first: u16,
    /// Last port (`first` for a single port).
    pub last: u16,
}

impl Ports {
    /// How many ports.
    pub fn count(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Whether the two ranges share a port.
    pub fn overlaps(self, other: Ports) -> bool {
        self.first.max(other.first) <= self.last.min(other.last)
    }

    /// `"first:last"`.
    pub fn to_range(self) -> String {
        format!("{}:{}", self.first, self.last)
    }

    /// Parses `"first:last"` or `"p"` (ports 1 to 65535, first ≤ last).
    pub fn parse(attr: &str, value: &Value) -> Result<Ports, ApiError> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(bad(format!("{attr} {other} is not a port range"))),
        };
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| {
                    bad(format!(
                        "Invalid port value in {attr} {text:?}, the port value must be a value between 1 and 65535"
                    ))
                })
        };
        let (first, last) = match text.split_once(':') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(&text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(bad(format!(
                "{attr} {text:?}: the first port is above the last"
            )));
        }
        Ok(Ports { first, last })
    }
}

/// One side's ports as stored in a forwarding document.
pub fn side(doc: &Map<String, Value>, side: &str) -> Option<Ports> {
    doc.get(&format!("{side}_port_range"))
        .and_then(|v| Ports::parse(side, v).ok())
}

/// Brings a forwarding to its stored form after `changes` (a validated create body, or an
/// update's changes over the stored record): each side from its port or its range, never both
/// in one request, both forms stored; then the N-N or 1-N relation.
pub fn settle_ports(
    doc: &mut Map<String, Value>,
    changes: &Map<String, Value>,
) -> Result<(), ApiError> {
    for name in ["external", "internal"] {
        let single = format!("{name}_port");
        let range = format!("{name}_port_range");
        let ports = match (
            changes.get(&single).filter(|v| !v.is_null()),
            changes.get(&range).filter(|v| !v.is_null()),
        ) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "{single} and {range} cannot be given together"
                )))
            }
            (Some(p), None) => Ports::parse(&single, p)?,
            (None, Some(r)) => Ports::parse(&range, r)?,
            (None, None) => match side(doc, name) {
                Some(p) => p,
                None => {
                    return Err(bad(format!("{single} or {range} is required")));
                }
            },
        };
        doc.insert(range, Value::from(ports.to_range()));
        let one = (ports.count() == 1).then_some(ports.first);
        doc.insert(single, one.map_or(Value::Null, Value::from));
    }
    let (Some(ext), Some(int)) = (side(doc, "external"), side(doc, "internal")) else {
        return Err(bad("ports missing"));
    };
    if int.count() > 1 && int.count() != ext.count() {
        return Err(bad(
            "Invalid ranges of internal and/or external ports. The relation between internal and external ports must be N-N or 1-N",
        ));
    }
    Ok(())
}

/// The IPv4 address a forwarding names.
pub fn internal_address(doc: &Map<String, Value>) -> Result<Ipv4Addr, ApiError> {
    let text = doc
        .get("internal_ip_address")
        .and_then(Value::as_str)
        .unwrap_or_default();
    text.parse::<Ipv4Addr>().map_err(|_| {
        bad(format!(
            "internal_ip_address {text:?} is not an IPv4 address"
        ))
    })
}

/// Refuses `new` (id `id`) when it collides with another forwarding of its floating IP
/// (same protocol, external ranges overlap) or of its internal socket (same internal port,
/// address and protocol, internal ranges overlap). `others` are the forwardings of the
/// floating IP and those of the internal port.
pub fn check_collisions(
    id: &str,
    new: &Map<String, Value>,
    fip: &str,
    others: &[(String, String, Map<String, Value>)],
) -> Result<(), ApiError> {
    let text = |d: &Map<String, Value>, k: &str| {
        d.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let protocol = text(new, "protocol");
    for (other_id, other_fip, other) in others {
        if other_id == id || text(other, "protocol") != protocol {
            continue;
        }
        for (name, same_place) in [
            ("external", other_fip == fip),
            (
                "internal",
                text(other, "internal_port_id") == text(new, "internal_port_id")
                    && text(other, "internal_ip_address") == text(new, "internal_ip_address"),
            ),
        ] {
            let (Some(a), Some(b)) = (side(new, name), side(other, name)) else {
                continue;
            };
            if same_place && a.overlaps(b) {
                return Err(bad(format!(
                    "There is a port collision with the {name}_port_range. The following ranges collides: {} and {}",
                    b.to_range(),
                    a.to_range()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ports_are_stored_both_ways() {
        let body = obj(json!({"external_port": 2222, "internal_port": 22, "protocol": "tcp"}));
        let mut doc = body.clone();
        settle_ports(&mut doc, &body).unwrap();
        assert_eq!(doc["external_port_range"], "2222:2222");
        assert_eq!(doc["internal_port"], 22);
        // A range outside, one port inside (1-N); then the same length (N-N).
        let body = obj(json!({"external_port_range": "80:90", "internal_port": 8080}));
        let mut doc = body.clone();
        settle_ports(&mut doc, &body).unwrap();
        assert_eq!(doc["external_port"], Value::Null);
        assert_eq!(doc["internal_port_range"], "8080:8080");
        let changes = obj(json!({"internal_port_range": "8080:8090"}));
        settle_ports(&mut doc, &changes).unwrap();
        assert_eq!(doc["internal_port"], Value::Null);
        // An update of one side keeps the other.
        let changes = obj(json!({"internal_port": 3333}));
        let mut one =
            obj(json!({"external_port_range": "2222:2222", "internal_port_range": "22:22"}));
        settle_ports(&mut one, &changes).unwrap();
        assert_eq!(
            (one["internal_port"].clone(), one["external_port"].clone()),
            (json!(3333), json!(2222))
        );
    }

    #[test]
    fn bad_ports_are_refused() {
        for body in [
            json!({"external_port": 1, "external_port_range": "1:2", "internal_port": 1}),
            json!({"external_port_range": "80:90", "internal_port_range": "80:85"}),
            json!({"external_port_range": "90:80", "internal_port": 1}),
            json!({"external_port_range": "0:80", "internal_port": 1}),
            json!({"external_port_range": "1:70000", "internal_port": 1}),
            json!({"internal_port": 22}),
        ] {
            let body = obj(body);
            let mut doc = body.clone();
            let e = settle_ports(&mut doc, &body).unwrap_err();
            assert_eq!(e.status, 400, "{body:?}");
        }
    }

    #[test]
    fn collisions_outside_and_inside() {
        let pf = |fip: &str, ext: &str, port: &str, ip: &str, int: &str| {
            let mut d = obj(json!({"protocol": "tcp", "internal_port_id": port,
                                   "internal_ip_address": ip}));
            let changes = obj(json!({"external_port_range": ext, "internal_port_range": int}));
            settle_ports(&mut d, &changes).unwrap();
            (fip.to_string(), d)
        };
        let (f, a) = pf("f1", "2222", "p1", "10.0.0.5", "22");
        let others = vec![("a".to_string(), f, a)];
        // Same floating IP and external port, elsewhere inside: refused.
        let (_, b) = pf("f1", "2222", "p2", "10.0.0.6", "33");
        assert!(check_collisions("b", &b, "f1", &others).is_err());
        // Another floating IP: fine; the same socket inside: refused.
        assert!(check_collisions("b", &b, "f2", &others).is_ok());
        let (_, c) = pf("f1", "5555", "p1", "10.0.0.5", "22");
        assert!(check_collisions("c", &c, "f1", &others).is_err());
        // Another protocol, or the record itself: fine.
        let mut d = c.clone();
        d.insert("protocol".into(), json!("udp"));
        assert!(check_collisions("d", &d, "f1", &others).is_ok());
        assert!(check_collisions("a", &c, "f1", &others).is_ok());
    }
}
