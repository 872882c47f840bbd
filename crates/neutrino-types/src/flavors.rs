//! Service flavors (`flavors`) and service providers (`service-type`) as data: the attribute
//! specifications of flavors and service profiles, and the providers this server offers for
//! each service type. A flavor names a service type; its service profiles name a provider's
//! driver, and the first enabled profile bound to a flavor picks the provider
//! (`next_providers`). A router flavor (`l3-flavors`) decides whether the router is highly
//! available and distributed. Upstream's driver paths name the same providers.

use serde_json::{json, Value};

use crate::attrs::{ro, rw, Attr, Conv, Fill};
use crate::resources::NAME_LEN;

/// Neutron's `LONG_DESCRIPTION_FIELD_SIZE`.
pub const LONG_DESCRIPTION_LEN: usize = 1024;

/// `/v2.0/flavors`.
pub const FLAVOR: &[Attr] = &[
    ro("id"),
    rw("name", Conv::Str(NAME_LEN), Fill::Str("")),
    rw(
        "description",
        Conv::NullableStr(LONG_DESCRIPTION_LEN),
        Fill::Str(""),
    ),
    rw("service_type", Conv::Any, Fill::Absent)
        .required()
        .create_only(),
    rw("service_profiles", Conv::StrList, Fill::EmptyList)
        .no_filter()
        .no_sort(),
    rw("enabled", Conv::Bool, Fill::Bool(true)),
];

/// `/v2.0/service_profiles`.
pub const SERVICE_PROFILE: &[Attr] = &[
    ro("id"),
    rw(
        "description",
        Conv::NullableStr(LONG_DESCRIPTION_LEN),
        Fill::Str(""),
    ),
    rw("driver", Conv::Str(LONG_DESCRIPTION_LEN), Fill::Str("")),
    rw("metainfo", Conv::Any, Fill::Str("")).no_filter(),
    rw("enabled", Conv::Bool, Fill::Bool(true)),
];

/// One provider of a service type, as `GET /v2.0/service-providers` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider {
    /// The service type, e.g. `L3_ROUTER_NAT`.
    pub service_type: &'static str,
    /// The provider's name.
    pub name: &'static str,
    /// The driver a service profile names to select it.
    pub driver: &'static str,
    /// Whether it serves resources that name no flavor.
    pub default: bool,
    /// Upstream's driver path for the same provider, accepted as a profile's driver too.
    pub upstream_driver: &'static str,
    /// A router of this provider is highly available (`ha`).
    pub ha: bool,
    /// A router of this provider is distributed (`distributed`).
    pub distributed: bool,
}

/// The providers of this server: the router flavours (`L3_ROUTER_NAT`), as upstream's L3
/// service providers name them.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        service_type: "L3_ROUTER_NAT",
        name: "single_node",
        driver: "neutrino.l3.single_node",
        default: true,
        upstream_driver:
            "neutron.services.l3_router.service_providers.single_node.SingleNodeDriver",
        ha: false,
        distributed: false,
    },
    Provider {
        service_type: "L3_ROUTER_NAT",
        name: "ha",
        driver: "neutrino.l3.ha",
        default: false,
        upstream_driver: "neutron.services.l3_router.service_providers.ha.HaDriver",
        ha: true,
        distributed: false,
    },
    Provider {
        service_type: "L3_ROUTER_NAT",
        name: "dvr",
        driver: "neutrino.l3.dvr",
        default: false,
        upstream_driver: "neutron.services.l3_router.service_providers.dvr.DvrDriver",
        ha: false,
        distributed: true,
    },
    Provider {
        service_type: "L3_ROUTER_NAT",
        name: "dvrha",
        driver: "neutrino.l3.dvrha",
        default: false,
        upstream_driver: "neutron.services.l3_router.service_providers.dvrha.DvrHaDriver",
        ha: true,
        distributed: true,
    },
];

/// The service types a flavor may name: those of the service plugins this server runs.
pub const SERVICE_TYPES: &[&str] = &["L3_ROUTER_NAT", "FLAVORS", "QOS", "SFC", "BGP", "L2GW"];

/// The providers whose driver is `driver` (this server's name or upstream's path).
pub fn providers_of_driver(driver: &str) -> impl Iterator<Item = &'static Provider> + '_ {
    PROVIDERS
        .iter()
        .filter(move |p| p.driver == driver || p.upstream_driver == driver)
}

impl Provider {
    /// The provider as the API shows it.
    pub fn to_json(&self) -> Value {
        json!({"service_type": self.service_type, "name": self.name,
               "driver": self.driver, "default": self.default})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_driver_names_one_provider_of_a_known_type() {
        for p in PROVIDERS {
            assert_eq!(providers_of_driver(p.driver).count(), 1, "{}", p.driver);
            assert_eq!(providers_of_driver(p.upstream_driver).count(), 1);
            assert!(SERVICE_TYPES.contains(&p.service_type));
        }
        assert_eq!(providers_of_driver("nope").count(), 0);
    }
}
