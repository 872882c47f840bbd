//! Claim scopes and keys that several resource kinds read: one home, so the kinds need not
//! import each other for a key format. (Claims are the store's unique `(scope, key) → owner`
//! rows: what the database itself keeps unique across servers.)

use ipnet::IpNet;
use neutrino_ipam as ipam;
use serde_json::Value;

use super::s;

/// Router → the host its ports are bound to (the active host).
pub(super) const HOST_SCOPE: &str = "l3-agent";
/// HA router → its standby host ("" when there is none).
pub(super) const STANDBY_SCOPE: &str = "l3-ha-standby";

/// The addresses taken on a subnet (key: sortable address, owner: port).
pub(super) fn ip_scope(subnet: &str) -> String {
    format!("ip:{subnet}")
}

/// The CIDRs of one IP version on a network (key: sortable prefix, owner: `subnet|pool`):
/// overlap and pool-affinity checks read a couple of keys instead of every subnet of the
/// network.
pub(super) fn network_cidr_scope(network: &str, version: i64) -> String {
    format!("netcidr:{network}:{version}")
}

/// The claim key of a prefix allocated from a pool: sortable network address and length.
pub(super) fn prefix_key(net: IpNet) -> String {
    format!("{}/{:03}", ipam::ip_key(net.network()), net.prefix_len())
}

/// The uniqueness key of an RBAC policy: object type, object, action, target.
pub(super) fn rbac_key(p: &Value) -> String {
    format!(
        "{}|{}|{}|{}",
        s(p, "object_type"),
        s(p, "object_id"),
        s(p, "action"),
        s(p, "target_tenant")
    )
}
