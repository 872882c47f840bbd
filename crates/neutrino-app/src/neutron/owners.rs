//! The `device_owner` values the server gives its own ports, and the groups of them the
//! resources check: one home, so routers, ports, DHCP, HA and DVR need not import each other
//! for a constant.

/// A network's DHCP port.
pub(super) const DHCP_OWNER: &str = "network:dhcp";
/// A router's gateway port.
pub(super) const GATEWAY_OWNER: &str = "network:router_gateway";
/// A (centralized) router's interface port.
pub(super) const INTERFACE_OWNER: &str = "network:router_interface";
/// A distributed router's interface port.
pub(super) const DVR_INTERFACE_OWNER: &str = "network:router_interface_distributed";
/// An HA router's interface port.
pub(super) const HA_INTERFACE_OWNER: &str = "network:ha_router_replicated_interface";
/// An HA router's port on its HA network (one per agent hosting it).
pub(super) const HA_PORT_OWNER: &str = "network:router_ha_interface";
/// A distributed router's SNAT port (one per interface subnet).
pub(super) const SNAT_OWNER: &str = "network:router_centralized_snat";
/// The port holding a floating IP's address.
pub(super) const FLOATINGIP_OWNER: &str = "network:floatingip";
/// A container's port (the CNI plugin's, or a pooled port a container took).
pub(super) const CONTAINER_OWNER: &str = "compute:container";
/// A pooled container port parked on its host until a container takes it.
pub(super) const POOL_OWNER: &str = "compute:container-pool";
/// A trunk's subport.
pub(super) const SUBPORT_OWNER: &str = "trunk:subport";

/// Every owner that makes a port a router interface (for floating IP reachability).
pub(super) const INTERFACE_OWNERS: &[&str] =
    &[INTERFACE_OWNER, DVR_INTERFACE_OWNER, HA_INTERFACE_OWNER];

/// The ports of routers (interfaces, gateway, SNAT).
pub(super) const ROUTER_OWNERS: &[&str] = &[
    INTERFACE_OWNER,
    DVR_INTERFACE_OWNER,
    HA_INTERFACE_OWNER,
    GATEWAY_OWNER,
    SNAT_OWNER,
];

/// Ports only routers and floating IPs may delete.
pub(super) const UNDELETABLE_OWNERS: &[&str] = &[
    INTERFACE_OWNER,
    DVR_INTERFACE_OWNER,
    HA_INTERFACE_OWNER,
    GATEWAY_OWNER,
    SNAT_OWNER,
    FLOATINGIP_OWNER,
];

/// Ports Neutron itself owns (`network:dhcp`, `network:router_interface`, ...), which it
/// trusts: no per-port fixed IP limit, no port security.
pub(super) fn is_network_owned(device_owner: &str) -> bool {
    device_owner.starts_with("network:")
}

/// A network's internal attribute (not shown): the hosts an admin scheduled its DHCP to
/// (`dhcp_agent_scheduler`; absent: the automatic choice).
pub(super) const DHCP_HOSTS: &str = "neutrino:dhcp_hosts";
