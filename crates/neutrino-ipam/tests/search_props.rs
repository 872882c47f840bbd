//! Property tests driving `FreeAddressSearch` against a simulated table.

use std::collections::BTreeSet;
use std::net::IpAddr;

use neutrino_ipam::{
    first_free_in, ip_from_u128, ip_key, ip_to_u128, pool_contains, AllocationPool,
    FreeAddressSearch, SearchStep,
};
use proptest::prelude::*;

/// Base of the test subnet: 10.0.0.0/24 or 2001:db8::/120.
fn base(v6: bool) -> u128 {
    if v6 {
        ip_to_u128("2001:db8::".parse().unwrap())
    } else {
        ip_to_u128("10.0.0.0".parse().unwrap())
    }
}

fn addr(v6: bool, offset: u32) -> IpAddr {
    ip_from_u128(base(v6) + u128::from(offset), v6).unwrap()
}

/// The caller's table: `SELECT ip WHERE key >= cursor [AND key < bound]
/// ORDER BY key LIMIT limit`.
fn query(table: &[IpAddr], search: &FreeAddressSearch, limit: usize, bounded: bool) -> Vec<IpAddr> {
    let from = ip_key(search.cursor());
    let bound = search.upper_bound().filter(|_| bounded).map(ip_key);
    table
        .iter()
        .copied()
        .filter(|a| ip_key(*a) >= from && bound.as_ref().is_none_or(|b| ip_key(*a) < *b))
        .take(limit)
        .collect()
}

/// Drives a search to its first result; returns it and the number of feeds.
fn drive(
    search: &mut FreeAddressSearch,
    table: &[IpAddr],
    limit: usize,
    bounded: bool,
) -> (SearchStep, usize) {
    let mut feeds = 0;
    loop {
        let batch = query(table, search, limit, bounded);
        feeds += 1;
        let step = search.feed(&batch, batch.len() < limit);
        if step != SearchStep::Continue || feeds > 10_000 {
            return (step, feeds);
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    v6: bool,
    pools: Vec<AllocationPool>,
    taken: Vec<IpAddr>,
    start: IpAddr,
    limit: usize,
    bounded: bool,
}

/// Offsets (inside the /24 or /120) of 1–3 disjoint, possibly adjacent pools.
fn pool_offsets() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((0u32..40, 0u32..40), 1..=3).prop_map(|spec| {
        let mut next = 0;
        spec.into_iter()
            .map(|(gap, len)| {
                let start = next + gap;
                next = start + len + 1;
                (start, start + len)
            })
            .collect()
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        pool_offsets(),
        0u8..=4,
        prop::collection::vec(0u8..4, 256),
        any::<bool>(),
        0u32..256,
        1usize..=8,
        any::<bool>(),
    )
        .prop_flat_map(
            |(v6, offsets, density, coins, start_in_pool, start_sel, limit, bounded)| {
                let pools: Vec<AllocationPool> = offsets
                    .iter()
                    .map(|&(s, e)| AllocationPool::new(addr(v6, s), addr(v6, e)))
                    .collect();
                let taken: Vec<IpAddr> = (0..256)
                    .filter(|&i| coins[i as usize] < density)
                    .map(|i| addr(v6, i))
                    .collect();
                let in_pool: Vec<u32> = offsets.iter().flat_map(|&(s, e)| s..=e).collect();
                let start = if start_in_pool {
                    addr(v6, in_pool[start_sel as usize % in_pool.len()])
                } else {
                    addr(v6, start_sel)
                };
                Just(pools).prop_shuffle().prop_map(move |pools| Case {
                    v6,
                    pools,
                    taken: taken.clone(),
                    start,
                    limit,
                    bounded,
                })
            },
        )
}

/// Pool addresses in scan order: from `start` (or the first pool address
/// if `start` is in no pool) upward, then wrapping around.
fn scan_order(case: &Case) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = (0..256).map(|i| addr(case.v6, i)).collect();
    all.retain(|a| pool_contains(&case.pools, *a));
    let begin = if pool_contains(&case.pools, case.start) {
        all.iter().position(|a| *a == case.start).unwrap()
    } else {
        0
    };
    all.rotate_left(begin);
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn finds_first_free_in_scan_order(case in case()) {
        let taken: BTreeSet<IpAddr> = case.taken.iter().copied().collect();
        let expected = scan_order(&case).into_iter().find(|a| !taken.contains(a));
        let mut search = FreeAddressSearch::new(&case.pools, case.start);
        let (step, feeds) = drive(&mut search, &case.taken, case.limit, case.bounded);
        match expected {
            Some(ip) => {
                prop_assert_eq!(step, SearchStep::Found(ip));
                prop_assert!(pool_contains(&case.pools, ip) && !taken.contains(&ip));
            }
            None => prop_assert_eq!(step, SearchStep::Exhausted),
        }
        prop_assert!(
            feeds <= case.taken.len() / case.limit + 4,
            "{} feeds for {} taken with limit {}", feeds, case.taken.len(), case.limit
        );
        prop_assert_eq!(first_free_in(&case.pools, case.start, &case.taken), expected);
    }

    #[test]
    fn resuming_enumerates_every_free_address_once(case in case()) {
        let taken: BTreeSet<IpAddr> = case.taken.iter().copied().collect();
        let expected: Vec<IpAddr> =
            scan_order(&case).into_iter().filter(|a| !taken.contains(a)).collect();
        let mut search = FreeAddressSearch::new(&case.pools, case.start);
        let mut got = Vec::new();
        loop {
            match drive(&mut search, &case.taken, case.limit, case.bounded).0 {
                SearchStep::Found(ip) => got.push(ip),
                SearchStep::Exhausted => break,
                SearchStep::Continue => prop_assert!(false, "search did not terminate"),
            }
            prop_assert!(got.len() <= 256);
        }
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn huge_v6_pool_needs_few_feeds() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let pools = [AllocationPool::new(
        ip("2001:db8::1"),
        ip("2001:db8::ffff:ffff:ffff:ffff"),
    )];
    let start = ip("2001:db8::1234:5678:9abc:def0");
    let taken: Vec<IpAddr> = [
        "2001:db8::1",
        "2001:db8::1234:5678:9abc:def0",
        "2001:db8::1234:5678:9abc:def1",
        "2001:db8::1234:5678:9abc:def2",
        "2001:db8::1234:5678:9abc:def3",
        "2001:db8::1234:5678:9abc:def4",
        "2001:db8::1234:5678:9abc:def5",
        "2001:db8::ffff:ffff:ffff:fffe",
    ]
    .iter()
    .map(|s| ip(s))
    .collect();
    let mut search = FreeAddressSearch::new(&pools, start);
    let (step, feeds) = drive(&mut search, &taken, 4, false);
    assert_eq!(step, SearchStep::Found(ip("2001:db8::1234:5678:9abc:def6")));
    assert!(feeds <= 3, "{feeds} feeds");

    // Starting just below a taken tail: wraps to the bottom of the pool.
    let start = ip("2001:db8::ffff:ffff:ffff:fffe");
    let taken = vec![
        ip("2001:db8::1"),
        start,
        ip("2001:db8::ffff:ffff:ffff:ffff"),
    ];
    let mut search = FreeAddressSearch::new(&pools, start);
    let (step, feeds) = drive(&mut search, &taken, 2, true);
    assert_eq!(step, SearchStep::Found(ip("2001:db8::2")));
    assert!(feeds <= 3, "{feeds} feeds");
}
