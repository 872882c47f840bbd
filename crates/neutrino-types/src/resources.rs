//! The attribute specifications of every resource the API serves.

use crate::attrs::{ro, rw, Attr, Conv, Fill};

/// Longest name or description.
pub const NAME_LEN: usize = 255;

const VNIC_TYPES: &[&str] = &[
    "normal",
    "direct",
    "macvtap",
    "baremetal",
    "direct-physical",
    "virtio-forwarder",
    "smart-nic",
    "vdpa",
    "accelerator-direct",
    "accelerator-direct-physical",
    "remote-managed",
];
const IPV6_MODES: &[&str] = &["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];

/// Network: `/v2.0/networks`.
pub const NETWORK: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
    ro("status"),
    ro("subnets").no_sort(),
    rw("shared", Conv::Bool, Fill::Bool(false)).no_sort(),
    rw("router:external", Conv::Bool, Fill::Bool(false)).no_sort(),
    rw("is_default", Conv::Bool, Fill::Absent).no_sort(),
    rw("mtu", Conv::Int(0, 65535), Fill::Absent),
    rw("provider:network_type", Conv::Str(32), Fill::Absent)
        .admin()
        .no_sort(),
    rw(
        "provider:physical_network",
        Conv::NullableStr(64),
        Fill::Absent,
    )
    .admin()
    .no_sort(),
    rw(
        "provider:segmentation_id",
        Conv::NullableInt(0, 16_777_215),
        Fill::Absent,
    )
    .admin()
    .no_sort(),
    rw("port_security_enabled", Conv::Bool, Fill::Bool(true)).no_sort(),
    rw("qos_policy_id", Conv::NullableUuid, Fill::Absent).no_sort(),
    rw("availability_zone_hints", Conv::StrList, Fill::EmptyList)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("availability_zones").no_filter().no_sort(),
    ro("ipv4_address_scope").no_sort(),
    ro("ipv6_address_scope").no_sort(),
    // `dns-integration`.
    rw("dns_domain", Conv::Str(255), Fill::Str("")).no_sort(),
    ro("tags").no_filter().no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Subnet: `/v2.0/subnets`.
pub const SUBNET: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("network_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("ip_version", Conv::Int(4, 6), Fill::Absent).create_only(),
    rw("cidr", Conv::Any, Fill::Absent).create_only(),
    rw("prefixlen", Conv::Int(0, 128), Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    rw("subnetpool_id", Conv::NullableUuid, Fill::Null).create_only(),
    rw("use_default_subnetpool", Conv::Bool, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    rw("gateway_ip", Conv::Any, Fill::Absent),
    rw("allocation_pools", Conv::Any, Fill::Absent)
        .no_filter()
        .no_sort(),
    rw("dns_nameservers", Conv::Any, Fill::EmptyList).no_sort(),
    rw("host_routes", Conv::Any, Fill::EmptyList)
        .no_filter()
        .no_sort(),
    rw("enable_dhcp", Conv::Bool, Fill::Bool(true)),
    rw("ipv6_ra_mode", Conv::NullableEnum(IPV6_MODES), Fill::Null).create_only(),
    rw(
        "ipv6_address_mode",
        Conv::NullableEnum(IPV6_MODES),
        Fill::Null,
    )
    .create_only(),
    rw("service_types", Conv::StrList, Fill::EmptyList).no_sort(),
    rw("segment_id", Conv::NullableUuid, Fill::Null).create_only(),
    ro("tags").no_filter().no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Port: `/v2.0/ports`.
pub const PORT: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("network_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
    ro("status"),
    rw("mac_address", Conv::Any, Fill::Absent),
    rw("fixed_ips", Conv::Any, Fill::Absent).no_sort(),
    rw("device_id", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("device_owner", Conv::Str(NAME_LEN), Fill::Str("")),
    // `dns-integration` and `dns-domain-ports`.
    rw("dns_name", Conv::Str(255), Fill::Str("")).no_sort(),
    rw("dns_domain", Conv::Str(255), Fill::Str("")).no_sort(),
    ro("dns_assignment").no_filter().no_sort(),
    rw("security_groups", Conv::Any, Fill::Absent).no_sort(),
    rw("allowed_address_pairs", Conv::Any, Fill::EmptyList)
        .no_filter()
        .no_sort(),
    rw("port_security_enabled", Conv::Bool, Fill::Absent).no_sort(),
    rw("qos_policy_id", Conv::NullableUuid, Fill::Absent).no_sort(),
    rw("extra_dhcp_opts", Conv::Any, Fill::EmptyList)
        .no_filter()
        .no_sort(),
    rw("binding:host_id", Conv::Str(NAME_LEN), Fill::Str("")).admin(),
    rw(
        "binding:vnic_type",
        Conv::Enum(VNIC_TYPES),
        Fill::Str("normal"),
    ),
    rw("binding:profile", Conv::Dict, Fill::EmptyDict)
        .admin()
        .no_filter()
        .no_sort(),
    // `port-trusted-vif`: kept in `binding:profile` as `trusted` (SR-IOV virtual functions'
    // trusted mode; a veth has no such mode, as for upstream's OVS ports).
    rw("trusted", Conv::NullableBool, Fill::Absent)
        .admin()
        .no_filter()
        .no_sort(),
    ro("binding:vif_type").admin(),
    ro("binding:vif_details").admin().no_filter().no_sort(),
    ro("ip_allocation").no_sort(),
    ro("trunk_details").no_filter().no_sort(),
    rw("tags", Conv::StrList, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Security group: `/v2.0/security-groups`.
pub const SECURITY_GROUP: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("stateful", Conv::Bool, Fill::Bool(true)),
    ro("shared").no_sort(),
    ro("security_group_rules").no_filter().no_sort(),
    ro("tags").no_filter().no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Security group rule: `/v2.0/security-group-rules` (immutable).
pub const SECURITY_GROUP_RULE: &[Attr] = &[
    ro("id"),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")).create_only(),
    rw("security_group_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw(
        "direction",
        Conv::Enum(&["ingress", "egress"]),
        Fill::Absent,
    )
    .required()
    .create_only(),
    rw("ethertype", Conv::Any, Fill::Str("IPv4")).create_only(),
    rw("protocol", Conv::Any, Fill::Null).create_only(),
    rw("port_range_min", Conv::Any, Fill::Null).create_only(),
    rw("port_range_max", Conv::Any, Fill::Null).create_only(),
    rw("remote_ip_prefix", Conv::Any, Fill::Null).create_only(),
    rw("remote_group_id", Conv::NullableStr(NAME_LEN), Fill::Null).create_only(),
    rw("remote_address_group_id", Conv::NullableUuid, Fill::Null).create_only(),
    ro("normalized_cidr").no_sort(),
    ro("belongs_to_default_sg").no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// RBAC policy: `/v2.0/rbac-policies`.
pub const RBAC_POLICY: &[Attr] = &[
    ro("id"),
    rw("object_type", Conv::Str(NAME_LEN), Fill::Absent)
        .required()
        .create_only(),
    rw("object_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("action", Conv::Str(NAME_LEN), Fill::Absent)
        .required()
        .create_only(),
    rw("target_tenant", Conv::Str(NAME_LEN), Fill::Absent).required(),
];

/// Router: `/v2.0/routers`.
pub const ROUTER: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
    ro("status"),
    rw("external_gateway_info", Conv::Any, Fill::Null)
        .no_filter()
        .no_sort(),
    rw("routes", Conv::Any, Fill::Absent).no_filter().no_sort(),
    rw("availability_zone_hints", Conv::StrList, Fill::EmptyList)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("availability_zones").no_filter().no_sort(),
    // `expose-l3-conntrack-helper`: protocol, port and helper of each of its helpers.
    ro("conntrack_helpers").no_filter().no_sort(),
    rw("distributed", Conv::NullableBool, Fill::Absent).admin(),
    rw("tags", Conv::StrList, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    // `l3-ha`: set by the server when absent (its `l3_ha` option).
    rw("ha", Conv::Bool, Fill::Absent).admin().no_sort(),
    // `l3-flavors`: the flavor a router was made with (it decides `ha` and `distributed`).
    rw("flavor_id", Conv::NullableUuid, Fill::Null).create_only(),
    // `l3-ext-ndp-proxy`: the router answers for its NDP proxies' addresses (always false
    // without an IPv6-capable gateway).
    rw("enable_ndp_proxy", Conv::Bool, Fill::Absent),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Floating IP: `/v2.0/floatingips`.
pub const FLOATINGIP: &[Attr] = &[
    ro("id"),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("floating_network_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    rw("floating_ip_address", Conv::Any, Fill::Absent).create_only(),
    rw("subnet_id", Conv::NullableUuid, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    rw("port_id", Conv::NullableUuid, Fill::Null),
    rw("fixed_ip_address", Conv::Any, Fill::Null),
    // Writable (`floating-ip-router-writable`): names the router hosting the NAT.
    rw("router_id", Conv::NullableUuid, Fill::Absent),
    ro("status"),
    // `fip-port-details`: computed from the associated port when rendered.
    ro("port_details").no_filter().no_sort(),
    ro("port_forwardings").no_filter().no_sort(),
    rw("tags", Conv::StrList, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Floating IP pool: `/v2.0/floatingip-pools` (read-only: one per IPv4 subnet of an
/// external network).
pub const FLOATINGIP_POOL: &[Attr] = &[
    ro("subnet_id"),
    ro("subnet_name"),
    ro("network_id"),
    ro("project_id"),
    ro("cidr"),
];

/// Subnet pool: `/v2.0/subnetpools`.
pub const SUBNETPOOL: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Absent).required(),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("prefixes", Conv::Any, Fill::Absent)
        .required()
        .no_filter()
        .no_sort(),
    ro("ip_version"),
    rw("min_prefixlen", Conv::Any, Fill::Absent),
    rw("max_prefixlen", Conv::Any, Fill::Absent),
    rw("default_prefixlen", Conv::Any, Fill::Absent),
    rw(
        "default_quota",
        Conv::NullableInt(0, i32::MAX as i64),
        Fill::Null,
    ),
    rw("is_default", Conv::Bool, Fill::Bool(false)),
    rw("shared", Conv::Bool, Fill::Bool(false)).create_only(),
    rw("address_scope_id", Conv::NullableUuid, Fill::Null),
    rw("tags", Conv::StrList, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Address scope: `/v2.0/address-scopes` (not a standard-attribute resource).
pub const ADDRESS_SCOPE: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("ip_version", Conv::Int(4, 6), Fill::Absent)
        .required()
        .create_only(),
    rw("shared", Conv::Bool, Fill::Bool(false)),
];

/// Host agent: `/v2.0/agents` (admin only; agents register themselves through the feed API).
pub const AGENT: &[Attr] = &[
    ro("id"),
    ro("agent_type"),
    ro("binary"),
    ro("host"),
    ro("topic"),
    rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
    rw("description", Conv::NullableStr(NAME_LEN), Fill::Null),
    ro("alive"),
    ro("heartbeat_timestamp"),
    ro("started_at"),
    ro("created_at").no_filter(),
    ro("configurations").no_filter().no_sort(),
    ro("availability_zone"),
    ro("resources_synced"),
];

/// Security group rule template: `/v2.0/default-security-group-rules` (admin writes, all read).
pub const DEFAULT_SECURITY_GROUP_RULE: &[Attr] = &[
    ro("id"),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")).create_only(),
    rw(
        "direction",
        Conv::Enum(&["ingress", "egress"]),
        Fill::Absent,
    )
    .required()
    .create_only(),
    rw("ethertype", Conv::Any, Fill::Str("IPv4")).create_only(),
    rw("protocol", Conv::Any, Fill::Null).create_only(),
    rw("port_range_min", Conv::Any, Fill::Null).create_only(),
    rw("port_range_max", Conv::Any, Fill::Null).create_only(),
    rw("remote_ip_prefix", Conv::Any, Fill::Null).create_only(),
    rw("remote_group_id", Conv::NullableStr(NAME_LEN), Fill::Null).create_only(),
    rw("remote_address_group_id", Conv::NullableUuid, Fill::Null).create_only(),
    rw("used_in_default_sg", Conv::Bool, Fill::Bool(false)).create_only(),
    rw("used_in_non_default_sg", Conv::Bool, Fill::Bool(true)).create_only(),
];

/// Address group: `/v2.0/address-groups` (CIDRs a security group rule can name as its remote).
pub const ADDRESS_GROUP: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("addresses", Conv::Any, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];

/// Trunk: `/v2.0/trunks` (a parent port carrying VLAN-tagged subports).
pub const TRUNK: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("description", Conv::Str(NAME_LEN), Fill::Str("")),
    rw("admin_state_up", Conv::Bool, Fill::Bool(true)),
    rw("port_id", Conv::Uuid, Fill::Absent)
        .required()
        .create_only(),
    ro("status"),
    rw("sub_ports", Conv::Any, Fill::EmptyList)
        .create_only()
        .no_filter()
        .no_sort(),
    rw("tags", Conv::StrList, Fill::Absent)
        .create_only()
        .no_filter()
        .no_sort(),
    ro("created_at"),
    ro("updated_at"),
    ro("revision_number"),
];
