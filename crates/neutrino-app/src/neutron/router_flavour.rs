//! What a router document says about its flavour: highly available (`ha`), distributed
//! (`dvr`) or plain, the device owner its interfaces get, and which of its ports are bound to
//! its host. Routers, ports, HA, DVR and the scheduler all ask this one module, so none of
//! them imports another for it.

use neutrino_types::{ApiError, ApiResult};
use serde_json::{json, Value};

use super::owners::{DVR_INTERFACE_OWNER, HA_INTERFACE_OWNER, INTERFACE_OWNER};
use super::Doc;

/// The two flavours a router changes between while administratively down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavour {
    /// `ha`: active and standby hosts.
    Ha,
    /// `distributed`: DVR.
    Distributed,
}

impl Flavour {
    /// The router attribute that selects this flavour.
    pub(super) fn attribute(self) -> &'static str {
        match self {
            Flavour::Ha => "ha",
            Flavour::Distributed => "distributed",
        }
    }

    /// Neutron's refusal to change the flavour of a router that is up.
    pub(super) fn active_refusal(self) -> &'static str {
        match self {
            Flavour::Ha => "Cannot change HA attribute of active routers. Please set router admin_state_up to False prior to upgrade",
            Flavour::Distributed => "Cannot change the 'distributed' attribute of active routers. Please set router admin_state_up to False prior to upgrade",
        }
    }
}

/// Whether a router document is highly available.
pub(super) fn is_ha(router: &Value) -> bool {
    router["ha"] == true
}

/// Whether a router document is distributed.
pub(super) fn is_distributed(router: &Value) -> bool {
    router.get("distributed") == Some(&Value::Bool(true))
}

/// The device owner a new interface port of this router gets.
pub(super) fn interface_owner(router: &Value) -> &'static str {
    if is_distributed(router) {
        DVR_INTERFACE_OWNER
    } else if is_ha(router) {
        HA_INTERFACE_OWNER
    } else {
        INTERFACE_OWNER
    }
}

/// A router is not both distributed and HA here (400 `DistributedHARouterNotSupported`, as
/// Neutron before DVR+HA): the failover moves every bound router port, which a distributed
/// router's per-host interfaces must never be.
pub(super) fn check_not_distributed_ha(router: &Doc) -> ApiResult<()> {
    if router.get("distributed") == Some(&json!(true)) && router.get("ha") == Some(&json!(true)) {
        return Err(ApiError::bad(
            "DistributedHARouterNotSupported",
            "Currently distributed HA routers are not supported.",
        ));
    }
    Ok(())
}

/// Whether a router port with this owner is bound to the router's (SNAT) host: everything
/// but the distributed interfaces, which every host realises.
pub(super) fn bound_to_router_host(owner: &str) -> bool {
    owner != DVR_INTERFACE_OWNER
}

#[cfg(test)]
mod tests {
    use super::super::owners::SNAT_OWNER;
    use super::*;

    #[test]
    fn interface_owners_follow_the_flavour() {
        assert_eq!(
            interface_owner(&json!({"distributed": true})),
            DVR_INTERFACE_OWNER
        );
        assert_eq!(interface_owner(&json!({"ha": true})), HA_INTERFACE_OWNER);
        assert_eq!(interface_owner(&json!({})), INTERFACE_OWNER);
        assert!(!bound_to_router_host(DVR_INTERFACE_OWNER));
        assert!(bound_to_router_host(SNAT_OWNER));
    }

    #[test]
    fn distributed_ha_is_refused() {
        let both = json!({"distributed": true, "ha": true});
        assert!(check_not_distributed_ha(both.as_object().unwrap()).is_err());
        let one = json!({"distributed": true, "ha": false});
        assert!(check_not_distributed_ha(one.as_object().unwrap()).is_ok());
    }
}
