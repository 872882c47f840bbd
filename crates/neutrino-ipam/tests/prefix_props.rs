//! Property tests for the subnet-pool prefix arithmetic.
//!
//! * The allocator is driven through random sequences of allocations (by
//!   prefix length and by explicit CIDR) and frees, and compared at every step
//!   with a brute-force scan over aligned blocks.
//! * The set functions are compared with address bitmaps over a small space.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use neutrino_ipam::{
    any_overlap, contains_all, inside_pool, lowest_free_prefix, normalize_prefixes, overlaps,
    prefix_is_free, remove_prefixes,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The canonical IPv4 prefix at `10.0.0.0 + offset` with length `len`.
fn v4(offset: u32, len: u8) -> IpNet {
    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + offset);
    IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
}

/// The offset of a prefix's network address from 10.0.0.0.
fn offset_of(net: &IpNet) -> u32 {
    let IpNet::V4(net) = net else {
        unreachable!("IPv4 only")
    };
    u32::from(net.network()) - u32::from(Ipv4Addr::new(10, 0, 0, 0))
}

/// The number of addresses of an IPv4 prefix.
fn size(net: &IpNet) -> u64 {
    1 << (32 - net.prefix_len())
}

/// Total number of addresses of a prefix list (which must not overlap).
fn total_size(prefixes: &[IpNet]) -> u64 {
    prefixes.iter().map(size).sum()
}

/// Brute force: the lowest block of length `len` inside one of the pool
/// prefixes that overlaps no allocation. Valid while `len` is at least every
/// pool prefix length, since an aligned block meeting a larger aligned block
/// then lies inside it.
fn brute_lowest_free(pool: &[IpNet], live: &[IpNet], len: u8) -> Option<IpNet> {
    pool.iter()
        .filter_map(|p| {
            p.subnets(len)
                .ok()?
                .find(|block| live.iter().all(|a| !overlaps(*block, *a)))
        })
        .min()
}

/// Brute force for `prefix_is_free`, with the same validity condition.
fn brute_is_free(pool: &[IpNet], live: &[IpNet], cidr: IpNet) -> bool {
    pool.iter().any(|p| p.contains(&cidr)) && live.iter().all(|a| !overlaps(cidr, *a))
}

/// Every allocation lies inside the pool, and no two allocations overlap.
fn check_invariants(pool: &[IpNet], live: &[IpNet]) -> Result<(), TestCaseError> {
    for (i, a) in live.iter().enumerate() {
        prop_assert!(inside_pool(pool, *a), "{a} outside the pool {pool:?}");
        for b in &live[i + 1..] {
            prop_assert!(!overlaps(*a, *b), "live allocations {a} and {b} overlap");
        }
    }
    Ok(())
}

/// Allocates blocks of length `len` until the allocator gives up, checking
/// each answer against the brute force when `verify` is set. Returns the
/// number of blocks allocated.
fn fill(
    pool: &[IpNet],
    live: &mut Vec<IpNet>,
    len: u8,
    verify: bool,
) -> Result<u64, TestCaseError> {
    let mut count = 0;
    while let Some(block) = lowest_free_prefix(pool, live, len) {
        if verify {
            prop_assert_eq!(Some(block), brute_lowest_free(pool, live, len));
        }
        prop_assert!(prefix_is_free(pool, live, block));
        live.push(block);
        count += 1;
    }
    if verify {
        prop_assert_eq!(brute_lowest_free(pool, live, len), None);
    }
    Ok(count)
}

// ---------------------------------------------------------------------------
// The allocator
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Allocate the lowest free block of this length.
    Alloc(u8),
    /// Request an explicit CIDR near pool prefix `pool % n`: `offset` is taken
    /// modulo twice the prefix size, so half the requests reach past it.
    AllocCidr { pool: usize, offset: u32, len: u8 },
    /// Free live allocation `index % n`.
    Free(usize),
}

fn op(lens: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => lens.clone().prop_map(Op::Alloc),
        2 => (any::<usize>(), any::<u32>(), lens)
            .prop_map(|(pool, offset, len)| Op::AllocCidr { pool, offset, len }),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

/// 1–3 pool prefixes with lengths in `lens`, at offsets inside 10.0.0.0/8
/// below `span` (a small span makes overlapping and adjacent prefixes common).
fn pool(span: u32, lens: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec((0..span, lens), 1..=3)
        .prop_map(|spec| spec.into_iter().map(|(o, l)| v4(o, l)).collect())
}

/// Runs the operations, checking the allocator against the brute force and
/// the invariants after every step. Returns the live allocations.
fn run(pool: &[IpNet], ops: &[Op]) -> Result<Vec<IpNet>, TestCaseError> {
    let mut live: Vec<IpNet> = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc(len) => {
                let got = lowest_free_prefix(pool, &live, len);
                prop_assert_eq!(
                    got,
                    brute_lowest_free(pool, &live, len),
                    "/{} in {:?}",
                    len,
                    live
                );
                live.extend(got);
            }
            Op::AllocCidr {
                pool: i,
                offset,
                len,
            } => {
                let near = pool[i % pool.len()];
                let cidr = v4(offset_of(&near) + offset % (2 * size(&near)) as u32, len);
                let free = prefix_is_free(pool, &live, cidr);
                prop_assert_eq!(
                    free,
                    brute_is_free(pool, &live, cidr),
                    "{} in {:?}",
                    cidr,
                    live
                );
                if free {
                    live.push(cidr);
                }
            }
            Op::Free(i) => {
                if !live.is_empty() {
                    live.swap_remove(i % live.len());
                }
            }
        }
        check_invariants(pool, &live)?;
    }
    Ok(live)
}

proptest! {
    /// Pools of /16–/24 prefixes inside 10.0.0.0/8, allocations of /24–/30.
    #[test]
    fn allocator_matches_brute_force(
        pool in prop_oneof![pool(1 << 24, 16..=24), pool(1 << 18, 16..=24)],
        ops in prop::collection::vec(op(24..=30), 1..40),
    ) {
        run(&pool, &ops)?;

        // Free everything: the whole pool is available again, as /24s.
        let canonical = normalize_prefixes(&pool);
        for p in &canonical {
            prop_assert!(prefix_is_free(&pool, &[], *p));
        }
        let mut live = Vec::new();
        let blocks = fill(&pool, &mut live, 24, false)?;
        prop_assert_eq!(blocks, total_size(&canonical) / 256);
        check_invariants(&pool, &live)?;
    }

    /// Small pools (/24–/28 prefixes inside 10.0.0.0/22): filling with /30s
    /// uses up exactly the free space, before and after freeing everything.
    #[test]
    fn small_pool_fills_exactly(
        pool in pool(1 << 10, 24..=28),
        ops in prop::collection::vec(op(28..=30), 1..30),
    ) {
        let pool_size = total_size(&normalize_prefixes(&pool));
        let mut live = run(&pool, &ops)?;

        let used = total_size(&live);
        let blocks = fill(&pool, &mut live, 30, true)?;
        prop_assert_eq!(blocks, (pool_size - used) / 4);
        check_invariants(&pool, &live)?;
        // The pool is full: the allocations cover it exactly.
        prop_assert_eq!(normalize_prefixes(&live), normalize_prefixes(&pool));

        live.clear();
        let blocks = fill(&pool, &mut live, 30, true)?;
        prop_assert_eq!(blocks, pool_size / 4);
    }
}

// ---------------------------------------------------------------------------
// Set functions against bitmaps of 10.0.0.0/22
// ---------------------------------------------------------------------------

const SPACE: usize = 1024;

/// Up to 5 prefixes inside 10.0.0.0/22 (lengths /22–/32).
fn prefixes() -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec((0..SPACE as u32, 22u8..=32), 0..=5)
        .prop_map(|spec| spec.into_iter().map(|(o, l)| v4(o, l)).collect())
}

/// Up to 8 allocations inside 10.0.0.0/22, often nested in one another.
fn allocations() -> impl Strategy<Value = Vec<IpNet>> {
    let len = prop_oneof![22u8..=25, 26u8..=32];
    prop::collection::vec((0..SPACE as u32, len), 0..=8)
        .prop_map(|spec| spec.into_iter().map(|(o, l)| v4(o, l)).collect())
}

/// Which addresses of 10.0.0.0/22 the prefixes cover.
fn bitmap(prefixes: &[IpNet]) -> Vec<bool> {
    let mut bits = vec![false; SPACE];
    for p in prefixes {
        let first = offset_of(p) as usize;
        bits[first..first + size(p) as usize].fill(true);
    }
    bits
}

fn subset(a: &[bool], b: &[bool]) -> bool {
    a.iter().zip(b).all(|(x, y)| !x || *y)
}

/// Sorted, pairwise disjoint, and no two prefixes are the halves of one
/// larger prefix — together, the minimal CIDR cover.
fn is_canonical(prefixes: &[IpNet]) -> bool {
    let sorted = prefixes.windows(2).all(|w| w[0] < w[1]);
    let disjoint = prefixes
        .iter()
        .enumerate()
        .all(|(i, a)| prefixes[i + 1..].iter().all(|b| !overlaps(*a, *b)));
    let no_siblings = prefixes.iter().enumerate().all(|(i, a)| {
        prefixes[i + 1..]
            .iter()
            .all(|b| a.prefix_len() != b.prefix_len() || a.supernet() != b.supernet())
    });
    sorted && disjoint && no_siblings
}

proptest! {
    #[test]
    fn normalize_is_the_minimal_cover(a in prefixes()) {
        let n = normalize_prefixes(&a);
        prop_assert_eq!(bitmap(&n), bitmap(&a));
        prop_assert!(is_canonical(&n), "{:?}", n);
        prop_assert_eq!(normalize_prefixes(&n), n);
    }

    #[test]
    fn containment_and_overlap_match_bitmaps(a in prefixes(), b in prefixes()) {
        let (bits_a, bits_b) = (bitmap(&a), bitmap(&b));
        prop_assert_eq!(contains_all(&a, &b), subset(&bits_b, &bits_a));
        for cidr in &b {
            prop_assert_eq!(inside_pool(&a, *cidr), subset(&bitmap(&[*cidr]), &bits_a));
        }
        let intersect = bits_a.iter().zip(&bits_b).any(|(x, y)| *x && *y);
        match any_overlap(&a, &b) {
            Some((x, y)) => {
                prop_assert!(a.contains(&x) && b.contains(&y) && overlaps(x, y));
            }
            None => prop_assert!(!intersect),
        }
        prop_assert_eq!(any_overlap(&a, &b).is_some(), intersect);
    }

    #[test]
    fn remove_is_set_difference(a in prefixes(), b in prefixes()) {
        let left = remove_prefixes(&a, &b);
        let expected: Vec<bool> = bitmap(&a)
            .iter()
            .zip(bitmap(&b))
            .map(|(x, y)| *x && !y)
            .collect();
        prop_assert_eq!(bitmap(&left), expected);
        prop_assert!(is_canonical(&left), "{:?}", left);
    }
}

/// Bitmap brute force for the allocator: the lowest aligned block of length
/// `len` in 10.0.0.0/22 whose addresses are all in the pool and none taken.
fn bitmap_lowest_free(pool: &[bool], taken: &[bool], len: u8) -> Option<IpNet> {
    let block = 1usize << (32 - len);
    (0..SPACE)
        .step_by(block)
        .find(|&start| (start..start + block).all(|i| pool[i] && !taken[i]))
        .map(|start| v4(start as u32, len))
}

proptest! {
    /// Any pool and any allocation list — overlapping, nested, reaching
    /// outside the pool — against the bitmaps.
    #[test]
    fn allocator_matches_bitmaps(
        pool in prefixes(),
        allocated in allocations(),
        len in 22u8..=32,
        cidr in (0..SPACE as u32, 22u8..=32).prop_map(|(o, l)| v4(o, l)),
    ) {
        let (bits_pool, bits_taken) = (bitmap(&pool), bitmap(&allocated));
        prop_assert_eq!(
            lowest_free_prefix(&pool, &allocated, len),
            bitmap_lowest_free(&bits_pool, &bits_taken, len)
        );
        let bits_cidr = bitmap(&[cidr]);
        let free = bits_cidr
            .iter()
            .enumerate()
            .all(|(i, c)| !c || (bits_pool[i] && !bits_taken[i]));
        prop_assert_eq!(prefix_is_free(&pool, &allocated, cidr), free);
    }
}
