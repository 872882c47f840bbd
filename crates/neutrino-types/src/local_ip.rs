//! Local IP (`local_ip`) as data: the attribute specifications of `/v2.0/local_ips` and of
//! their `port_associations`, and the errors of Neutron's Local IP plugin.
//!
//! A Local IP is a virtual address that instances reach on their own host: each port
//! associated with it (`fixed_port_id`, one of its addresses as `fixed_ip`) serves the
//! address to the other ports of its network on the host it is bound to. The address itself
//! is held by the Local IP's `local_port_id`: a port given at creation, or one the server
//! creates on `network_id` (device owner `network:local_ip`).

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::flavors::LONG_DESCRIPTION_LEN;
use crate::resources::NAME_LEN;
use crate::ApiError;

/// Upstream's `ip_mode` values: translate the address to the associated port's, or pass it
/// through untranslated.
pub const IP_MODES: &[&str] = &["translate", "passthrough"];

/// The device owner of a port the server creates for a Local IP.
pub const LOCAL_IP_OWNER: &str = "network:local_ip";

/// `/v2.0/local_ips`.
pub const LOCAL_IP: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw(
        "description",
        Conv::Str(LONG_DESCRIPTION_LEN),
        Fill::Str(""),
    ),
    rw("local_port_id", Conv::Uuid, Fill::Absent).create_only(),
    rw("network_id", Conv::Uuid, Fill::Absent).create_only(),
    rw("local_ip_address", Conv::Any, Fill::Absent).create_only(),
    rw("ip_mode", Conv::Enum(IP_MODES), Fill::Str("translate")).create_only(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// `/v2.0/local_ips/{local_ip_id}/port_associations`, whose members are named by their
/// `fixed_port_id`.
pub const PORT_ASSOCIATION: &[Attr] = &[
    ro("local_ip_id"),
    ro("local_ip_address"),
    rw("fixed_port_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("fixed_ip", Conv::Any, Fill::Null).create_only(),
    ro("host"),
];

/// `LocalIPNoIP` (400).
pub fn no_ip(port: &str) -> ApiError {
    ApiError::bad(
        "LocalIPNoIP",
        format!("Specified Port {port} has no fixed IPs configured."),
    )
}

/// `LocalIPRequestedIPNotFound` (400).
pub fn requested_ip_not_found(port: &str, ip: &str) -> ApiError {
    ApiError::bad(
        "LocalIPRequestedIPNotFound",
        format!("Specified Port {port} does not have requested IP address: {ip}."),
    )
}

/// `LocalIPNoRequestedIP` (400).
pub fn no_requested_ip(port: &str) -> ApiError {
    ApiError::bad(
        "LocalIPNoRequestedIP",
        format!("Specified Port {port} has several IPs, should specify exact IP address to use for Local IP."),
    )
}

/// `LocalIPPortOrNetworkRequired` (400).
pub fn port_or_network_required() -> ApiError {
    ApiError::bad(
        "LocalIPPortOrNetworkRequired",
        "Either Port ID or Network ID must be specified for Local IP create.",
    )
}

/// `LocalIPInUse` (409).
pub fn in_use(id: &str) -> ApiError {
    ApiError::conflict(
        "LocalIPInUse",
        format!("Local IP {id} is still associated with one or more ports."),
    )
}

/// `LocalIPNotFound` (404).
pub fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "LocalIPNotFound",
        format!("Local IP {id} could not be found."),
    )
}

/// `LocalIPAssociationNotFound` (404).
pub fn association_not_found(local_ip: &str, port: &str) -> ApiError {
    ApiError::new(
        404,
        "LocalIPAssociationNotFound",
        format!("Local IP {local_ip} association with port {port} could not be found."),
    )
}

/// Picks the address of a port that a Local IP or an association uses: `requested` when
/// it is one of `addresses` (400 otherwise), else the only one (400 with none or several).
pub fn pick_address(
    port: &str,
    addresses: &[String],
    requested: Option<&str>,
) -> Result<String, ApiError> {
    match (requested, addresses) {
        (_, []) => Err(no_ip(port)),
        (Some(ip), _) => addresses
            .iter()
            .find(|a| a.as_str() == ip)
            .cloned()
            .ok_or_else(|| requested_ip_not_found(port, ip)),
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(no_requested_ip(port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_address_follows_upstream() {
        let one = vec!["10.0.0.5".to_string()];
        let two = vec!["10.0.0.5".to_string(), "10.0.0.6".to_string()];
        assert_eq!(pick_address("p", &one, None).unwrap(), "10.0.0.5");
        assert_eq!(
            pick_address("p", &two, Some("10.0.0.6")).unwrap(),
            "10.0.0.6"
        );
        assert_eq!(
            pick_address("p", &[], None).unwrap_err().kind,
            "LocalIPNoIP"
        );
        assert_eq!(
            pick_address("p", &two, None).unwrap_err().kind,
            "LocalIPNoRequestedIP"
        );
        assert_eq!(
            pick_address("p", &one, Some("10.0.0.9")).unwrap_err().kind,
            "LocalIPRequestedIPNotFound"
        );
    }
}
