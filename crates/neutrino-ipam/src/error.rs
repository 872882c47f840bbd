//! The crate's error type.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};

use crate::mac::format_mac;
use crate::pools::AllocationPool;

/// Every error this crate reports.
///
/// Each variant carries the data Neutron interpolates into its message, and
/// `Display` renders that message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// The text is not a valid IP address.
    #[error("'{0}' is not a valid IP address")]
    InvalidIp(String),

    /// The text is not a valid CIDR (`address/prefix`).
    #[error("'{0}' is not a valid IP subnet")]
    InvalidCidr(String),

    /// An allocation pool's addresses are not of the subnet's IP version.
    #[error("The allocation pool {pool} is not valid.")]
    PoolVersionMismatch {
        /// The offending pool.
        pool: AllocationPool,
        /// The subnet's CIDR.
        cidr: IpNet,
    },

    /// An allocation pool's start address is greater than its end address
    /// (or its two ends are of different IP versions).
    #[error("The allocation pool {pool} is not valid.")]
    InvalidPoolRange {
        /// The offending pool.
        pool: AllocationPool,
    },

    /// An allocation pool reaches outside the subnet, or includes the IPv4
    /// network or broadcast address.
    #[error("The allocation pool {pool} spans beyond the subnet cidr {subnet_cidr}.")]
    OutOfBoundsAllocationPool {
        /// The offending pool.
        pool: AllocationPool,
        /// The subnet's CIDR.
        subnet_cidr: IpNet,
    },

    /// Two allocation pools share at least one address.
    #[error("Found overlapping allocation pools: {pool_1} {pool_2} for subnet {subnet_cidr}.")]
    OverlappingAllocationPools {
        /// The lower of the two pools.
        pool_1: AllocationPool,
        /// The higher of the two pools.
        pool_2: AllocationPool,
        /// The subnet's CIDR.
        subnet_cidr: IpNet,
    },

    /// The gateway address lies inside an allocation pool.
    #[error("Gateway ip {ip_address} conflicts with allocation pool {pool}.")]
    GatewayConflictWithAllocationPools {
        /// The gateway address.
        ip_address: IpAddr,
        /// The pool containing it.
        pool: AllocationPool,
    },

    /// The text is not a key produced by [`crate::ip_key`] (for the
    /// requested IP version).
    #[error("'{0}' is not a valid IP address key")]
    InvalidIpKey(String),

    /// An EUI-64 address was requested for a prefix that is not a /64.
    #[error(
        "Bad prefix or mac format for generating IPv6 address by EUI-64: {prefix}, {}",
        format_mac(*.mac)
    )]
    InvalidEui64Prefix {
        /// The prefix given.
        prefix: Ipv6Net,
        /// The MAC address given.
        mac: [u8; 6],
    },

    /// The text is not a valid unicast MAC address.
    #[error("'{0}' is not a valid MAC address")]
    InvalidMac(String),
}
