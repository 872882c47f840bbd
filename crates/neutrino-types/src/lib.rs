//! The Neutron v2.0 resource model as data: attribute specifications, generic body
//! validation, list-query semantics and the API error type. Pure: no I/O, no async.

pub mod agent_protocol;
pub mod attrs;
pub mod bgp;
pub mod dns;
pub mod error;
pub mod flavors;
pub mod l2gw;
pub mod local_ip;
pub mod logging;
pub mod metering;
pub mod ndp_proxy;
pub mod port_forwarding;
pub mod qos;
pub mod query;
pub mod resources;
pub mod segment_ranges;
pub mod sfc;
pub mod sfc_status;

pub use error::{ApiError, ApiResult};
