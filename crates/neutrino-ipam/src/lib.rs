//! Pure IP address management for Neutrino.
//!
//! This crate holds the address arithmetic and validation rules that
//! Neutron applies to subnets and ports, without any I/O: the application
//! layer owns the database and drives the functions here.
//!
//! * [`parse_cidr`], [`parse_ip`] – strict parsing (CIDRs are canonicalised
//!   to their network address).
//! * [`AllocationPool`], [`default_pools`], [`validate_pools`] – Neutron's
//!   allocation-pool rules.
//! * [`ip_key`], [`ip_from_key`] – a fixed-width text key whose lexical order
//!   is numeric address order, for storing addresses in an ordered table.
//! * [`FreeAddressSearch`] – a state machine that finds a free address by
//!   scanning batches of taken addresses supplied by the caller.
//! * [`eui64_address`], [`parse_mac`], [`format_mac`], [`random_mac`] –
//!   SLAAC addresses and MAC handling.
//!
//! All fallible functions report errors as [`IpamError`], whose `Display`
//! renders Neutron's user-facing messages.

#![warn(missing_docs)]

mod addr;
mod error;
mod mac;
mod pools;
mod prefixes;
mod search;

pub use addr::{
    default_gateway, ip_from_key, ip_from_u128, ip_key, ip_to_u128, is_network_or_broadcast,
    overlaps, parse_cidr, parse_ip,
};
pub use error::IpamError;
pub use mac::{eui64_address, format_mac, parse_mac, random_mac};
pub use pools::{default_pools, pool_contains, pools_size, validate_pools, AllocationPool};
pub use prefixes::{
    any_overlap, contains_all, inside_pool, lowest_free_prefix, normalize_prefixes, prefix_is_free,
    prefix_quota_units, remove_prefixes, same_version,
};
pub use search::{first_free_in, random_start, FreeAddressSearch, SearchStep};
