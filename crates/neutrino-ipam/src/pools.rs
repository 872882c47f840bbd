//! Allocation pools: Neutron's defaults and validation rules.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::addr::{ip_from_u128, ip_to_u128, is_network_or_broadcast};
use crate::IpamError;

/// An inclusive range of assignable addresses of a subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocationPool {
    /// First address of the pool.
    pub start: IpAddr,
    /// Last address of the pool (inclusive).
    pub end: IpAddr,
}

impl AllocationPool {
    /// A pool from `start` to `end` inclusive (not validated).
    pub fn new(start: IpAddr, end: IpAddr) -> Self {
        Self { start, end }
    }

    /// True if `start` and `end` are IPv6 addresses.
    pub fn is_ipv6(&self) -> bool {
        self.start.is_ipv6() && self.end.is_ipv6()
    }

    /// True if both ends have the same IP version and `start <= end`.
    pub fn is_valid(&self) -> bool {
        self.start.is_ipv6() == self.end.is_ipv6() && self.start <= self.end
    }

    /// True if `ip` lies in the pool (and has the pool's IP version).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.is_valid()
            && ip.is_ipv6() == self.start.is_ipv6()
            && self.start <= ip
            && ip <= self.end
    }

    /// Number of addresses in the pool; 0 for an invalid pool, saturating
    /// at `u128::MAX` for the whole IPv6 space.
    pub fn size(&self) -> u128 {
        if !self.is_valid() {
            return 0;
        }
        (ip_to_u128(self.end) - ip_to_u128(self.start)).saturating_add(1)
    }
}

/// Renders `start-end`, as Neutron renders an IP range in messages.
impl fmt::Display for AllocationPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Neutron's default allocation pools for a subnet.
///
/// IPv4: every address except the network and broadcast address (a /31
/// keeps both addresses, a /32 its single one). IPv6: every address except
/// the subnet-router anycast (first) address (/127 and /128 keep all).
/// A gateway inside the range is cut out, splitting the range around it.
/// Returns an empty list if nothing remains.
pub fn default_pools(cidr: IpNet, gateway: Option<IpAddr>) -> Vec<AllocationPool> {
    let cidr = cidr.trunc();
    let v6 = matches!(cidr, IpNet::V6(_));
    let first = ip_to_u128(cidr.network());
    let last = ip_to_u128(cidr.broadcast());
    let (lo, hi) = match (cidr.max_prefix_len() - cidr.prefix_len(), v6) {
        (0 | 1, _) => (first, last),
        (_, true) => (first + 1, last),
        (_, false) => (first + 1, last - 1),
    };
    let mut ranges = vec![(lo, hi)];
    if let Some(gw) = gateway.filter(|g| g.is_ipv6() == v6) {
        let g = ip_to_u128(gw);
        if (lo..=hi).contains(&g) {
            ranges.clear();
            if g > lo {
                ranges.push((lo, g - 1));
            }
            if g < hi {
                ranges.push((g + 1, hi));
            }
        }
    }
    ranges
        .into_iter()
        .filter_map(|(s, e)| {
            Some(AllocationPool::new(
                ip_from_u128(s, v6)?,
                ip_from_u128(e, v6)?,
            ))
        })
        .collect()
}

/// Validates user-supplied allocation pools against a subnet, in Neutron's
/// order: per pool IP version ([`IpamError::PoolVersionMismatch`]), range
/// ([`IpamError::InvalidPoolRange`]) and bounds
/// ([`IpamError::OutOfBoundsAllocationPool`], which includes covering the
/// IPv4 network or broadcast address for prefixes shorter than /31); then
/// overlaps between pools ([`IpamError::OverlappingAllocationPools`]; merely
/// adjacent pools are fine); finally the gateway must not lie in any pool
/// ([`IpamError::GatewayConflictWithAllocationPools`]). A gateway of the
/// other IP version is ignored here.
pub fn validate_pools(
    cidr: IpNet,
    pools: &[AllocationPool],
    gateway: Option<IpAddr>,
) -> Result<(), IpamError> {
    let cidr = cidr.trunc();
    let v6 = matches!(cidr, IpNet::V6(_));
    for &pool in pools {
        if pool.start.is_ipv6() != v6 || pool.end.is_ipv6() != v6 {
            return Err(IpamError::PoolVersionMismatch { pool, cidr });
        }
        if pool.start > pool.end {
            return Err(IpamError::InvalidPoolRange { pool });
        }
        if !cidr.contains(&pool.start)
            || !cidr.contains(&pool.end)
            || is_network_or_broadcast(cidr, pool.start)
            || is_network_or_broadcast(cidr, pool.end)
        {
            return Err(IpamError::OutOfBoundsAllocationPool {
                pool,
                subnet_cidr: cidr,
            });
        }
    }
    let mut sorted = pools.to_vec();
    sorted.sort_by_key(|p| (p.start, p.end));
    // Sorted by start, any overlap implies an overlap of neighbours.
    if let Some(w) = sorted.windows(2).find(|w| w[1].start <= w[0].end) {
        return Err(IpamError::OverlappingAllocationPools {
            pool_1: w[0],
            pool_2: w[1],
            subnet_cidr: cidr,
        });
    }
    if let Some(gw) = gateway {
        if let Some(&pool) = sorted.iter().find(|p| p.contains(gw)) {
            return Err(IpamError::GatewayConflictWithAllocationPools {
                ip_address: gw,
                pool,
            });
        }
    }
    Ok(())
}

/// True if `ip` lies in any of the pools.
pub fn pool_contains(pools: &[AllocationPool], ip: IpAddr) -> bool {
    pools.iter().any(|p| p.contains(ip))
}

/// Total number of addresses in the pools (invalid pools count 0; the sum
/// saturates at `u128::MAX`). Overlapping pools are counted twice.
pub fn pools_size(pools: &[AllocationPool]) -> u128 {
    pools
        .iter()
        .fold(0u128, |acc, p| acc.saturating_add(p.size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn pool(s: &str, e: &str) -> AllocationPool {
        AllocationPool::new(ip(s), ip(e))
    }

    #[test]
    fn display_is_range() {
        assert_eq!(
            pool("10.0.0.2", "10.0.0.9").to_string(),
            "10.0.0.2-10.0.0.9"
        );
    }

    #[test]
    fn default_v4() {
        let c = net("10.0.0.0/24");
        assert_eq!(default_pools(c, None), vec![pool("10.0.0.1", "10.0.0.254")]);
        assert_eq!(
            default_pools(c, Some(ip("10.0.0.1"))),
            vec![pool("10.0.0.2", "10.0.0.254")]
        );
        assert_eq!(
            default_pools(c, Some(ip("10.0.0.254"))),
            vec![pool("10.0.0.1", "10.0.0.253")]
        );
        assert_eq!(
            default_pools(c, Some(ip("10.0.0.100"))),
            vec![
                pool("10.0.0.1", "10.0.0.99"),
                pool("10.0.0.101", "10.0.0.254")
            ]
        );
        // Gateway outside the range, or of the other version: no effect.
        assert_eq!(
            default_pools(c, Some(ip("10.0.0.255"))),
            vec![pool("10.0.0.1", "10.0.0.254")]
        );
        assert_eq!(
            default_pools(c, Some(ip("10.9.0.1"))),
            vec![pool("10.0.0.1", "10.0.0.254")]
        );
        assert_eq!(
            default_pools(c, Some(ip("::1"))),
            vec![pool("10.0.0.1", "10.0.0.254")]
        );
    }

    #[test]
    fn default_v4_small() {
        assert_eq!(
            default_pools(net("10.0.0.0/30"), None),
            vec![pool("10.0.0.1", "10.0.0.2")]
        );
        assert_eq!(
            default_pools(net("10.0.0.0/30"), Some(ip("10.0.0.1"))),
            vec![pool("10.0.0.2", "10.0.0.2")]
        );
        assert_eq!(
            default_pools(net("10.0.0.0/31"), None),
            vec![pool("10.0.0.0", "10.0.0.1")]
        );
        assert_eq!(
            default_pools(net("10.0.0.0/31"), Some(ip("10.0.0.0"))),
            vec![pool("10.0.0.1", "10.0.0.1")]
        );
        assert_eq!(
            default_pools(net("10.0.0.7/32"), None),
            vec![pool("10.0.0.7", "10.0.0.7")]
        );
        assert_eq!(
            default_pools(net("10.0.0.7/32"), Some(ip("10.0.0.7"))),
            vec![]
        );
    }

    #[test]
    fn default_v6() {
        let c = net("2001:db8::/64");
        assert_eq!(
            default_pools(c, None),
            vec![pool("2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff")]
        );
        assert_eq!(
            default_pools(c, Some(ip("2001:db8::1"))),
            vec![pool("2001:db8::2", "2001:db8::ffff:ffff:ffff:ffff")]
        );
        assert_eq!(
            default_pools(c, Some(ip("2001:db8::ffff:ffff:ffff:ffff"))),
            vec![pool("2001:db8::1", "2001:db8::ffff:ffff:ffff:fffe")]
        );
        assert_eq!(
            default_pools(net("2001:db8::/127"), None),
            vec![pool("2001:db8::", "2001:db8::1")]
        );
        assert_eq!(
            default_pools(net("2001:db8::5/128"), None),
            vec![pool("2001:db8::5", "2001:db8::5")]
        );
        assert_eq!(
            default_pools(net("::/0"), None),
            vec![pool("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
        );
    }

    #[test]
    fn validate_accepts_good_pools() {
        let c = net("10.0.0.0/24");
        let pools = [pool("10.0.0.10", "10.0.0.20"), pool("10.0.0.2", "10.0.0.9")];
        assert_eq!(validate_pools(c, &pools, Some(ip("10.0.0.1"))), Ok(()));
        assert_eq!(validate_pools(c, &pools, Some(ip("10.0.0.21"))), Ok(()));
        assert_eq!(validate_pools(c, &pools, None), Ok(()));
        assert_eq!(validate_pools(c, &[], None), Ok(()));
        let all31 = [pool("10.0.0.0", "10.0.0.1")];
        assert_eq!(validate_pools(net("10.0.0.0/31"), &all31, None), Ok(()));
        let all32 = [pool("10.0.0.0", "10.0.0.0")];
        assert_eq!(validate_pools(net("10.0.0.0/32"), &all32, None), Ok(()));
        let v6 = [pool("2001:db8::", "2001:db8::ffff")];
        assert_eq!(validate_pools(net("2001:db8::/64"), &v6, None), Ok(()));
    }

    #[test]
    fn validate_version_mismatch() {
        let c = net("10.0.0.0/24");
        let p = pool("2001:db8::1", "2001:db8::5");
        assert_eq!(
            validate_pools(c, &[p], None),
            Err(IpamError::PoolVersionMismatch { pool: p, cidr: c })
        );
        let mixed = pool("10.0.0.2", "2001:db8::5");
        assert!(matches!(
            validate_pools(c, &[mixed], None),
            Err(IpamError::PoolVersionMismatch { .. })
        ));
    }

    #[test]
    fn validate_invalid_range() {
        let p = pool("10.0.0.9", "10.0.0.2");
        assert_eq!(
            validate_pools(net("10.0.0.0/24"), &[p], None),
            Err(IpamError::InvalidPoolRange { pool: p })
        );
    }

    #[test]
    fn validate_out_of_bounds() {
        let c = net("10.0.0.0/24");
        for p in [
            pool("10.0.0.0", "10.0.0.5"),
            pool("10.0.0.5", "10.0.0.255"),
            pool("10.0.0.5", "10.0.1.5"),
            pool("9.255.255.255", "10.0.0.5"),
        ] {
            assert_eq!(
                validate_pools(c, &[p], None),
                Err(IpamError::OutOfBoundsAllocationPool {
                    pool: p,
                    subnet_cidr: c
                }),
                "{p}"
            );
        }
        let c6 = net("2001:db8::/64");
        let p6 = pool("2001:db8::1", "2001:db8:0:1::1");
        assert!(matches!(
            validate_pools(c6, &[p6], None),
            Err(IpamError::OutOfBoundsAllocationPool { .. })
        ));
    }

    #[test]
    fn validate_overlap() {
        let c = net("10.0.0.0/24");
        let a = pool("10.0.0.2", "10.0.0.10");
        let b = pool("10.0.0.10", "10.0.0.20");
        assert_eq!(
            validate_pools(c, &[b, a], None),
            Err(IpamError::OverlappingAllocationPools {
                pool_1: a,
                pool_2: b,
                subnet_cidr: c
            })
        );
        // Adjacent pools do not overlap.
        let adjacent = pool("10.0.0.11", "10.0.0.20");
        assert_eq!(validate_pools(c, &[adjacent, a], None), Ok(()));
        // A pool nested in another, not adjacent in sorted order to it.
        let outer = pool("10.0.0.2", "10.0.0.100");
        let inner = pool("10.0.0.50", "10.0.0.60");
        let other = pool("10.0.0.3", "10.0.0.4");
        assert!(matches!(
            validate_pools(c, &[inner, outer, other], None),
            Err(IpamError::OverlappingAllocationPools { .. })
        ));
        let c6 = net("2001:db8::/64");
        let x = pool("2001:db8::1", "2001:db8::ff");
        let y = pool("2001:db8::80", "2001:db8::1ff");
        assert!(matches!(
            validate_pools(c6, &[x, y], None),
            Err(IpamError::OverlappingAllocationPools { .. })
        ));
    }

    #[test]
    fn validate_gateway_conflict() {
        let c = net("10.0.0.0/24");
        let p = pool("10.0.0.2", "10.0.0.20");
        for gw in ["10.0.0.2", "10.0.0.10", "10.0.0.20"] {
            assert_eq!(
                validate_pools(c, &[p], Some(ip(gw))),
                Err(IpamError::GatewayConflictWithAllocationPools {
                    ip_address: ip(gw),
                    pool: p
                })
            );
        }
        assert_eq!(
            IpamError::GatewayConflictWithAllocationPools {
                ip_address: ip("10.0.0.2"),
                pool: p
            }
            .to_string(),
            "Gateway ip 10.0.0.2 conflicts with allocation pool 10.0.0.2-10.0.0.20."
        );
    }

    #[test]
    fn contains_and_size() {
        let pools = [pool("10.0.0.2", "10.0.0.9"), pool("10.0.0.20", "10.0.0.20")];
        assert!(pool_contains(&pools, ip("10.0.0.2")));
        assert!(pool_contains(&pools, ip("10.0.0.9")));
        assert!(pool_contains(&pools, ip("10.0.0.20")));
        assert!(!pool_contains(&pools, ip("10.0.0.10")));
        assert!(!pool_contains(&pools, ip("::a00:5")));
        assert_eq!(pools_size(&pools), 9);
        assert_eq!(pools_size(&[]), 0);
        assert_eq!(pools_size(&[pool("10.0.0.9", "10.0.0.2")]), 0);
        assert_eq!(
            pools_size(&default_pools(net("2001:db8::/64"), None)),
            (1 << 64) - 1
        );
        let everything = pool("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(pools_size(&[everything, everything]), u128::MAX);
    }
}
