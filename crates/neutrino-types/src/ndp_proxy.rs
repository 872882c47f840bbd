//! NDP proxy (`l3-ndp-proxy`, `l3-ext-ndp-proxy`) as data: the attribute specification of
//! `/v2.0/ndp_proxies` and the errors of Neutron's NDP proxy plugin. An NDP proxy makes a
//! router answer neighbour solicitations on its external gateway for one IPv6 address of an
//! internal port, so that address is reachable from the external network without NAT (both
//! networks in one IPv6 address scope).

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::resources::NAME_LEN;
use crate::ApiError;

/// `/v2.0/ndp_proxies`.
pub const NDP_PROXY: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("router_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("port_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("ip_address", Conv::Any, Fill::Absent).create_only(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// `RouterGatewayNotValid` (409).
pub fn gateway_not_valid(router: &str, reason: &str) -> ApiError {
    ApiError::conflict(
        "RouterGatewayNotValid",
        format!("Can not enable ndp proxy on router {router}, {reason}."),
    )
}

/// `RouterNDPProxyNotEnable` (409).
pub fn not_enabled(router: &str) -> ApiError {
    ApiError::conflict(
        "RouterNDPProxyNotEnable",
        format!("The enable_ndp_proxy parameter of router {router} must be set as True while create ndp proxy entry for it."),
    )
}

/// `PortUnreachableRouter` (409).
pub fn unreachable(port: &str, router: &str) -> ApiError {
    ApiError::conflict(
        "PortUnreachableRouter",
        format!("The port {port} cannot reach the router {router} by IPv6 subnet."),
    )
}

/// `InvalidAddress` (400).
pub fn invalid_address(address: &str, reason: &str) -> ApiError {
    ApiError::bad(
        "InvalidAddress",
        format!("The address {address} is invalid, reason: {reason}."),
    )
}

/// `AddressScopeConflict` (409).
pub fn scope_conflict(external: &str, internal: &str) -> ApiError {
    ApiError::conflict(
        "AddressScopeConflict",
        format!("The IPv6 address scope {external} of external network conflict with internal network's IPv6 address scope {internal}."),
    )
}

/// `RouterGatewayInUseByNDPProxy` (409).
pub fn gateway_in_use(router: &str) -> ApiError {
    ApiError::conflict(
        "RouterGatewayInUseByNDPProxy",
        format!("Unable to unset external gateway of router {router}, There are one or more ndp proxies still in use on the router."),
    )
}

/// `RouterInterfaceInUseByNDPProxy` (409).
pub fn interface_in_use(router: &str, subnet: &str) -> ApiError {
    ApiError::conflict(
        "RouterInterfaceInUseByNDPProxy",
        format!("Unable to remove subnet {subnet} from router {router}, There are one or more ndp proxies still in use on the subnet."),
    )
}
