//! Free-address search over a table of taken addresses the crate cannot see.
//!
//! The caller keeps a subnet's allocated addresses in a table ordered by
//! [`crate::ip_key`]. [`FreeAddressSearch`] tells it where to look next
//! ([`FreeAddressSearch::cursor`], [`FreeAddressSearch::upper_bound`]) and
//! consumes batches of taken addresses until a free pool address is found.
//! The scan starts at a (usually random, see [`random_start`]) address,
//! runs upward to the end of the last pool, then wraps to the first pool's
//! start and runs up to the starting address.

use std::net::IpAddr;

use crate::addr::{ip_from_u128, ip_to_u128};
use crate::pools::{pools_size, AllocationPool};

/// The outcome of one [`FreeAddressSearch::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchStep {
    /// This pool address is not taken.
    Found(IpAddr),
    /// More data is needed: read [`FreeAddressSearch::cursor`] again and
    /// feed the next batch.
    Continue,
    /// Every pool address is taken.
    Exhausted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Scanning from the start address to the end of the last pool.
    Upper,
    /// Scanning from the first pool's start up to (excluding) the start.
    Lower,
    /// Nothing left to scan.
    Done,
}

/// Where [`FreeAddressSearch::seek`] left the cursor.
enum Moved {
    Stay,
    Wrapped,
    Done,
}

/// A resumable search for a free address in allocation pools.
///
/// Each [`feed`](Self::feed) does work proportional to the batch (plus the
/// number of pools skipped), never to the size of untaken spans, so huge
/// IPv6 pools are cheap.
///
/// Addresses are compared by their numeric value ([`crate::ip_key`]), so
/// an address of the other IP version in a batch is treated as taking the
/// address with the same key; that is merely conservative.
///
/// ```
/// use neutrino_ipam::{AllocationPool, FreeAddressSearch, SearchStep, ip_key};
/// # use std::net::IpAddr;
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// let pools = [AllocationPool::new(ip("10.0.0.2"), ip("10.0.0.9"))];
/// // Stand-in for `SELECT ip FROM allocs WHERE key >= ? ORDER BY key LIMIT 2`.
/// let table = [ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")];
/// let limit = 2;
/// let mut search = FreeAddressSearch::new(&pools, ip("10.0.0.5"));
/// let found = loop {
///     let from = ip_key(search.cursor());
///     let batch: Vec<IpAddr> =
///         table.iter().copied().filter(|a| ip_key(*a) >= from).take(limit).collect();
///     match search.feed(&batch, batch.len() < limit) {
///         SearchStep::Found(a) => break Some(a),
///         SearchStep::Exhausted => break None,
///         SearchStep::Continue => {}
///     }
/// };
/// assert_eq!(found, Some(ip("10.0.0.8")));
/// ```
#[derive(Clone, Debug)]
pub struct FreeAddressSearch {
    v6: bool,
    /// Sorted, merged, inclusive pool ranges.
    ranges: Vec<(u128, u128)>,
    start: u128,
    phase: Phase,
    /// Index of the range holding `cursor` (while not `Done`).
    idx: usize,
    cursor: u128,
}

impl FreeAddressSearch {
    /// A search over `pools` starting at `start`.
    ///
    /// Pools are taken in address order regardless of the given order;
    /// invalid pools and pools of another IP version than the first valid
    /// one are ignored. If `start` lies in no pool, the search starts at the
    /// first pool's start. With no pools the search is already exhausted.
    pub fn new(pools: &[AllocationPool], start: IpAddr) -> Self {
        let ranges = normalize(pools);
        let v6 = pools
            .iter()
            .find(|p| p.is_valid())
            .map_or(start.is_ipv6(), |p| p.is_ipv6());
        let s = ip_to_u128(start);
        let (idx, cursor) = if start.is_ipv6() != v6 {
            None
        } else {
            ranges
                .iter()
                .position(|&(lo, hi)| lo <= s && s <= hi)
                .map(|i| (i, s))
        }
        .or_else(|| ranges.first().map(|r| (0, r.0)))
        .unwrap_or((0, s));
        let phase = if ranges.is_empty() {
            Phase::Done
        } else {
            Phase::Upper
        };
        Self {
            v6,
            ranges,
            start: cursor,
            phase,
            idx,
            cursor,
        }
    }

    /// The next candidate address. The caller must next supply the taken
    /// addresses `>= cursor` in ascending order, at most its batch limit.
    pub fn cursor(&self) -> IpAddr {
        self.addr(self.cursor)
    }

    /// Exclusive upper bound of the current scan phase (`None` = no bound,
    /// also once exhausted), so the caller may also bound its query. A
    /// caller that does so may report `complete` relative to this bound.
    pub fn upper_bound(&self) -> Option<IpAddr> {
        match self.phase {
            Phase::Upper => {
                let last = self.ranges.last()?.1;
                ip_from_u128(last.checked_add(1)?, self.v6)
            }
            Phase::Lower => Some(self.addr(self.start)),
            Phase::Done => None,
        }
    }

    /// Consumes one batch of taken addresses.
    ///
    /// `taken` holds addresses `>= cursor()` in ascending order; it may
    /// include addresses outside the pools or beyond
    /// [`upper_bound`](Self::upper_bound). The search relies only on `taken`
    /// being every taken address in `[cursor, last element of taken]`, and,
    /// if `complete` is set (the caller got fewer rows than its limit), on
    /// nothing taken lying beyond. An empty batch counts as complete.
    ///
    /// After [`SearchStep::Found`] the search may be resumed (e.g. when
    /// claiming the address lost a race): the next feed continues after the
    /// found address. After [`SearchStep::Exhausted`] every feed returns
    /// `Exhausted`.
    pub fn feed(&mut self, taken: &[IpAddr], complete: bool) -> SearchStep {
        if self.phase == Phase::Done {
            return SearchStep::Exhausted;
        }
        for &ip in taken {
            let t = ip_to_u128(ip);
            if t > self.cursor {
                return self.take_cursor();
            }
            if t == self.cursor {
                match self.seek(self.cursor.checked_add(1)) {
                    Moved::Stay => {}
                    Moved::Wrapped => return SearchStep::Continue,
                    Moved::Done => return SearchStep::Exhausted,
                }
            }
        }
        if complete || taken.is_empty() {
            self.take_cursor()
        } else {
            SearchStep::Continue
        }
    }

    /// Returns the cursor as found and moves past it.
    fn take_cursor(&mut self) -> SearchStep {
        let found = self.cursor;
        self.seek(found.checked_add(1));
        SearchStep::Found(self.addr(found))
    }

    /// Moves the cursor to the first pool address `>= from` in the current
    /// phase (`None` = past the address space), switching phase if there is
    /// none.
    fn seek(&mut self, from: Option<u128>) -> Moved {
        if let Some(x) = from {
            while self.idx < self.ranges.len() && self.ranges[self.idx].1 < x {
                self.idx += 1;
            }
            if let Some(&(lo, _)) = self.ranges.get(self.idx) {
                let c = x.max(lo);
                if self.phase == Phase::Upper || c < self.start {
                    self.cursor = c;
                    return Moved::Stay;
                }
            }
        }
        if self.phase == Phase::Upper && self.start > self.ranges[0].0 {
            self.phase = Phase::Lower;
            self.idx = 0;
            self.cursor = self.ranges[0].0;
            Moved::Wrapped
        } else {
            self.phase = Phase::Done;
            Moved::Done
        }
    }

    fn addr(&self, value: u128) -> IpAddr {
        ip_from_u128(value, self.v6).expect("search positions come from pool addresses")
    }
}

/// Valid pools of the first valid pool's IP version, as sorted, merged,
/// inclusive numeric ranges.
fn normalize(pools: &[AllocationPool]) -> Vec<(u128, u128)> {
    let Some(v6) = pools.iter().find(|p| p.is_valid()).map(|p| p.is_ipv6()) else {
        return Vec::new();
    };
    let mut ranges: Vec<(u128, u128)> = pools
        .iter()
        .filter(|p| p.is_valid() && p.is_ipv6() == v6)
        .map(|p| (ip_to_u128(p.start), ip_to_u128(p.end)))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// A start address drawn uniformly from all addresses of the (valid) pools,
/// or `None` if the pools are empty. Overlapping pools weigh their shared
/// addresses twice.
pub fn random_start<R: rand::Rng>(pools: &[AllocationPool], rng: &mut R) -> Option<IpAddr> {
    let total = pools_size(pools);
    if total == 0 {
        return None;
    }
    let mut k = rng.gen_range(0..total);
    for pool in pools {
        let size = pool.size();
        if k < size {
            return ip_from_u128(ip_to_u128(pool.start) + k, pool.is_ipv6());
        }
        k -= size;
    }
    None
}

/// Runs a [`FreeAddressSearch`] from `start` against the complete list of
/// taken addresses (sorted ascending by [`crate::ip_key`]); `None` if every
/// pool address is taken.
pub fn first_free_in(
    pools: &[AllocationPool],
    start: IpAddr,
    taken_sorted_all: &[IpAddr],
) -> Option<IpAddr> {
    let mut search = FreeAddressSearch::new(pools, start);
    loop {
        let cursor = ip_to_u128(search.cursor());
        let from = taken_sorted_all.partition_point(|&t| ip_to_u128(t) < cursor);
        match search.feed(&taken_sorted_all[from..], true) {
            SearchStep::Found(ip) => return Some(ip),
            SearchStep::Exhausted => return None,
            SearchStep::Continue => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(s: &str, e: &str) -> AllocationPool {
        AllocationPool::new(ip(s), ip(e))
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| ip(s)).collect()
    }

    #[test]
    fn finds_start_when_free() {
        let pools = [pool("10.0.0.2", "10.0.0.9")];
        assert_eq!(
            first_free_in(&pools, ip("10.0.0.5"), &[]),
            Some(ip("10.0.0.5"))
        );
        let taken = ips(&["10.0.0.2", "10.0.0.3"]);
        assert_eq!(
            first_free_in(&pools, ip("10.0.0.5"), &taken),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn skips_taken_and_crosses_pools() {
        let pools = [pool("10.0.0.20", "10.0.0.21"), pool("10.0.0.2", "10.0.0.4")];
        let taken = ips(&["10.0.0.3", "10.0.0.4", "10.0.0.10", "10.0.0.20"]);
        assert_eq!(
            first_free_in(&pools, ip("10.0.0.3"), &taken),
            Some(ip("10.0.0.21"))
        );
    }

    #[test]
    fn wraps_around() {
        let pools = [pool("10.0.0.2", "10.0.0.9")];
        let taken = ips(&["10.0.0.3", "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9"]);
        assert_eq!(
            first_free_in(&pools, ip("10.0.0.6"), &taken),
            Some(ip("10.0.0.2"))
        );
        let taken = ips(&[
            "10.0.0.2", "10.0.0.3", "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9",
        ]);
        assert_eq!(
            first_free_in(&pools, ip("10.0.0.6"), &taken),
            Some(ip("10.0.0.4"))
        );
    }

    #[test]
    fn exhausted() {
        let pools = [pool("10.0.0.2", "10.0.0.4"), pool("10.0.0.8", "10.0.0.8")];
        let taken = ips(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.8"]);
        for start in ["10.0.0.2", "10.0.0.3", "10.0.0.8", "10.0.0.6"] {
            assert_eq!(first_free_in(&pools, ip(start), &taken), None, "{start}");
        }
        assert_eq!(first_free_in(&[], ip("10.0.0.1"), &[]), None);
        let mut s = FreeAddressSearch::new(&[], ip("10.0.0.1"));
        assert_eq!(s.feed(&[], true), SearchStep::Exhausted);
        assert_eq!(s.upper_bound(), None);
    }

    #[test]
    fn start_outside_pools_uses_first_pool() {
        let pools = [pool("10.0.0.20", "10.0.0.29"), pool("10.0.0.2", "10.0.0.9")];
        let s = FreeAddressSearch::new(&pools, ip("10.0.0.15"));
        assert_eq!(s.cursor(), ip("10.0.0.2"));
        let s = FreeAddressSearch::new(&pools, ip("2001:db8::1"));
        assert_eq!(s.cursor(), ip("10.0.0.2"));
    }

    #[test]
    fn batches_and_bounds() {
        let pools = [pool("10.0.0.2", "10.0.0.9")];
        let mut s = FreeAddressSearch::new(&pools, ip("10.0.0.7"));
        assert_eq!(s.cursor(), ip("10.0.0.7"));
        assert_eq!(s.upper_bound(), Some(ip("10.0.0.10")));
        // Incomplete batch: the cursor moves past it.
        assert_eq!(
            s.feed(&ips(&["10.0.0.7", "10.0.0.8"]), false),
            SearchStep::Continue
        );
        assert_eq!(s.cursor(), ip("10.0.0.9"));
        // Reaching the end of the last pool wraps.
        assert_eq!(
            s.feed(&ips(&["10.0.0.9", "10.0.0.12"]), false),
            SearchStep::Continue
        );
        assert_eq!(s.cursor(), ip("10.0.0.2"));
        assert_eq!(s.upper_bound(), Some(ip("10.0.0.7")));
        // The batch may run past the phase bound.
        let rest = ips(&[
            "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7",
        ]);
        assert_eq!(s.feed(&rest, false), SearchStep::Exhausted);
        assert_eq!(s.feed(&[], true), SearchStep::Exhausted);
    }

    #[test]
    fn resumes_after_found() {
        let pools = [pool("10.0.0.2", "10.0.0.4")];
        let mut s = FreeAddressSearch::new(&pools, ip("10.0.0.3"));
        assert_eq!(s.feed(&[], true), SearchStep::Found(ip("10.0.0.3")));
        assert_eq!(s.cursor(), ip("10.0.0.4"));
        assert_eq!(s.feed(&[], true), SearchStep::Found(ip("10.0.0.4")));
        assert_eq!(s.cursor(), ip("10.0.0.2"));
        assert_eq!(s.feed(&[], true), SearchStep::Found(ip("10.0.0.2")));
        assert_eq!(s.feed(&[], true), SearchStep::Exhausted);
    }

    #[test]
    fn top_of_address_space() {
        let pools = [pool(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        )];
        let top = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        let s = FreeAddressSearch::new(&pools, top);
        assert_eq!(s.upper_bound(), None);
        assert_eq!(
            first_free_in(&pools, top, &[top]),
            Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"))
        );
        let v4 = [pool("255.255.255.254", "255.255.255.255")];
        let s = FreeAddressSearch::new(&v4, ip("255.255.255.255"));
        assert_eq!(s.upper_bound(), None);
        assert_eq!(
            first_free_in(&v4, ip("255.255.255.255"), &ips(&["255.255.255.255"])),
            Some(ip("255.255.255.254"))
        );
    }

    #[test]
    fn huge_v6_pool_is_fast() {
        let pools = [pool("2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff")];
        let taken = ips(&[
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::ffff:ffff:ffff:ffff",
        ]);
        let last = ip("2001:db8::ffff:ffff:ffff:ffff");
        assert_eq!(first_free_in(&pools, last, &taken), Some(ip("2001:db8::3")));
    }

    #[test]
    fn random_start_is_in_pools_and_spread() {
        let pools = [pool("10.0.0.2", "10.0.0.3"), pool("10.0.0.10", "10.0.0.11")];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let s = random_start(&pools, &mut rng).unwrap();
            assert!(crate::pool_contains(&pools, s));
            seen.insert(s);
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(random_start(&[], &mut rng), None);
        let big = [pool("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff")];
        assert!(crate::pool_contains(
            &big,
            random_start(&big, &mut rng).unwrap()
        ));
        let all = [pool("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")];
        assert!(random_start(&all, &mut rng).is_some());
    }
}
