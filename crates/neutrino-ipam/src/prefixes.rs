//! Prefix arithmetic for subnet pools ("subnet allocation").
//!
//! Every prefix is handled as an inclusive `u128` address range; IPv4
//! addresses occupy the low 32 bits. Prefixes of the two IP families are
//! never compared with each other: a subnet pool holds one family only (the
//! caller rejects mixed lists with the help of [`same_version`]), and where a
//! function is given prefixes of the other family it treats them as
//! unrelated — they neither contain, overlap nor cut anything of this family.
//!
//! * [`normalize_prefixes`] – canonical, merged, sorted form (like
//!   `netaddr.cidr_merge`).
//! * [`contains_all`], [`inside_pool`] – containment ("prefixes can only grow").
//! * [`any_overlap`] – the first overlapping pair ("pools in one address
//!   scope never overlap").
//! * [`remove_prefixes`] – set difference (like `IPSet` difference).
//! * [`lowest_free_prefix`], [`prefix_is_free`] – the allocator.
//! * [`prefix_quota_units`] – what a prefix costs against a pool quota.

use ipnet::IpNet;

use crate::addr::{ip_from_u128, ip_to_u128};

/// An inclusive address range `(first, last)`.
type Range = (u128, u128);

fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

/// Address width of the family, in bits.
fn width(v6: bool) -> u32 {
    if v6 {
        128
    } else {
        32
    }
}

/// `2^bits - 1`, i.e. the host mask of a block of `2^bits` addresses
/// (all ones for 128 bits, without overflowing).
fn host_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The inclusive address range of a prefix (host bits ignored).
fn range(net: IpNet) -> Range {
    (ip_to_u128(net.network()), ip_to_u128(net.broadcast()))
}

/// The prefixes of one family as sorted, disjoint, non-adjacent ranges:
/// overlapping, contained and touching prefixes are combined.
fn merged_ranges(prefixes: &[IpNet], v6: bool) -> Vec<Range> {
    let mut ranges: Vec<Range> = prefixes
        .iter()
        .filter(|p| is_v6(p) == v6)
        .map(|p| range(*p))
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some((_, prev_last)) if first <= prev_last.saturating_add(1) => {
                *prev_last = (*prev_last).max(last);
            }
            _ => out.push((first, last)),
        }
    }
    out
}

/// The prefix of length `prefixlen` starting at `first`.
fn prefix_at(first: u128, prefixlen: u8, v6: bool) -> Option<IpNet> {
    IpNet::new(ip_from_u128(first, v6)?, prefixlen).ok()
}

/// Appends the minimal list of CIDRs covering exactly `[first, last]`.
fn range_to_cidrs(mut first: u128, last: u128, v6: bool, out: &mut Vec<IpNet>) {
    let width = width(v6);
    loop {
        // The largest block aligned at `first` (`0` is aligned to anything)...
        let aligned = first.trailing_zeros().min(width);
        // ...that does not run past `last`: 2^fits <= last - first + 1.
        let fits = (last - first).checked_add(1).map_or(128, u128::ilog2);
        let bits = aligned.min(fits);
        // `bits <= width`, so the prefix length fits in a u8.
        out.extend(prefix_at(first, (width - bits) as u8, v6));
        let block_last = first + host_mask(bits);
        if block_last >= last {
            return;
        }
        first = block_last + 1;
    }
}

/// Converts merged ranges of one family back to CIDRs.
fn ranges_to_cidrs(ranges: &[Range], v6: bool, out: &mut Vec<IpNet>) {
    for &(first, last) in ranges {
        range_to_cidrs(first, last, v6, out);
    }
}

/// Whether the range lies inside one of the sorted, merged `ranges`.
fn covered(ranges: &[Range], (first, last): Range) -> bool {
    // The last range starting at or before `first` is the only candidate.
    let i = ranges.partition_point(|&(start, _)| start <= first);
    i > 0 && last <= ranges[i - 1].1
}

/// The IP version shared by all prefixes: `Some(4)` or `Some(6)`, `None`
/// when the list is empty or mixes versions.
pub fn same_version(prefixes: &[IpNet]) -> Option<u8> {
    let v6 = is_v6(prefixes.first()?);
    prefixes
        .iter()
        .all(|p| is_v6(p) == v6)
        .then_some(if v6 { 6 } else { 4 })
}

/// The canonical form of a prefix list, as Neutron stores a subnet pool's
/// prefixes: host bits cleared, adjacent, overlapping and contained prefixes
/// merged into the fewest CIDRs, sorted by address
/// (`10.0.0.0/25` + `10.0.0.128/25` → `10.0.0.0/24`).
///
/// A mixed list is normalised per family, IPv4 first; callers that must
/// reject mixed lists check [`same_version`] first.
pub fn normalize_prefixes(prefixes: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        ranges_to_cidrs(&merged_ranges(prefixes, v6), v6, &mut out);
    }
    out
}

/// Whether every address of the `inner` prefixes lies inside the `outer`
/// prefixes (which may be given unmerged). An empty `inner` is always
/// contained; a prefix of the other family never is.
///
/// This is the "existing prefixes must be a subset of the new prefixes" rule
/// of a subnet-pool update.
pub fn contains_all(outer: &[IpNet], inner: &[IpNet]) -> bool {
    let outer = [merged_ranges(outer, false), merged_ranges(outer, true)];
    inner
        .iter()
        .all(|p| covered(&outer[usize::from(is_v6(p))], range(*p)))
}

/// Whether `cidr` lies entirely inside the pool prefixes.
pub fn inside_pool(pool: &[IpNet], cidr: IpNet) -> bool {
    contains_all(pool, &[cidr])
}

/// The first pair `(x, y)` with `x` from `a` and `y` from `b` that share an
/// address: the first `x` in `a`'s order that overlaps anything, paired with
/// the first `y` in `b`'s order it overlaps. Prefixes of different families
/// never overlap.
///
/// Used for "pools in one address scope never overlap"; the lists are a
/// pool's prefixes, so the O(|a|·|b|) scan is cheap.
pub fn any_overlap(a: &[IpNet], b: &[IpNet]) -> Option<(IpNet, IpNet)> {
    a.iter().find_map(|x| {
        let (x_first, x_last) = range(*x);
        b.iter()
            .find(|y| {
                let (y_first, y_last) = range(**y);
                is_v6(x) == is_v6(y) && x_first <= y_last && y_first <= x_last
            })
            .map(|y| (*x, *y))
    })
}

/// `pool` minus `remove`, as a minimal sorted CIDR list (the canonical form
/// of [`normalize_prefixes`]). Removing a prefix that lies only partly in the
/// pool cuts out the common part; disjoint prefixes and prefixes of the other
/// family change nothing (`10.0.0.0/16` − `10.0.0.0/24` →
/// `10.0.1.0/24, 10.0.2.0/23, …, 10.0.128.0/17`).
pub fn remove_prefixes(pool: &[IpNet], remove: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let cuts = merged_ranges(remove, v6);
        let mut left = Vec::new();
        // Both lists are sorted and disjoint: one forward sweep.
        let mut c = 0;
        for (mut first, last) in merged_ranges(pool, v6) {
            while c < cuts.len() && cuts[c].1 < first {
                c += 1;
            }
            let mut rest = true;
            // Cuts overlapping [first, last], in address order.
            let mut k = c;
            while k < cuts.len() && cuts[k].0 <= last {
                let (cut_first, cut_last) = cuts[k];
                if cut_first > first {
                    left.push((first, cut_first - 1));
                }
                if cut_last >= last {
                    rest = false;
                    break;
                }
                first = cut_last + 1;
                k += 1;
            }
            if rest {
                left.push((first, last));
            }
        }
        ranges_to_cidrs(&left, v6, &mut out);
    }
    out
}

/// The lowest-addressed prefix of length `prefixlen` that lies inside the
/// pool and overlaps none of the `allocated` prefixes, or `None` when none
/// fits (pool exhausted, `prefixlen` shorter than every pool prefix, or
/// longer than the address width).
///
/// The family is the pool's (`None` for an empty or mixed pool); allocated
/// prefixes outside the pool or of the other family are ignored, and they may
/// overlap each other. The result does not depend on the order of either
/// list.
///
/// Runs in O(n log n) for n allocations: the allocations are sorted and
/// merged, then for each pool range the gaps between them are walked, each
/// gap start aligned up to the block size and checked against the start of
/// the next allocation. Each allocation is passed at most once per pool
/// range; the size of the pool never matters.
pub fn lowest_free_prefix(pool: &[IpNet], allocated: &[IpNet], prefixlen: u8) -> Option<IpNet> {
    let v6 = same_version(pool)? == 6;
    let width = width(v6);
    if u32::from(prefixlen) > width {
        return None;
    }
    let mask = host_mask(width - u32::from(prefixlen));
    let taken = merged_ranges(allocated, v6);
    for (pool_first, pool_last) in merged_ranges(pool, v6) {
        // The first allocation that does not end before this pool range.
        let mut next = taken.partition_point(|&(_, last)| last < pool_first);
        let mut cursor = pool_first;
        // Align the cursor up to the block size; `None` means no aligned
        // block is left below the top of the address space.
        while let Some(first) = cursor.checked_add(mask).map(|a| a & !mask) {
            // `first` is aligned, so this cannot overflow.
            let last = first + mask;
            if last > pool_last {
                break;
            }
            while next < taken.len() && taken[next].1 < first {
                next += 1;
            }
            match taken.get(next) {
                // The candidate hits this allocation: retry after it.
                Some(&(taken_first, taken_last)) if taken_first <= last => {
                    match taken_last.checked_add(1) {
                        Some(after) => cursor = after,
                        None => break,
                    }
                }
                _ => return prefix_at(first, prefixlen, v6),
            }
        }
    }
    None
}

/// Whether `cidr` lies inside the pool and overlaps no allocated prefix,
/// i.e. whether a request for exactly that subnet can be granted.
pub fn prefix_is_free(pool: &[IpNet], allocated: &[IpNet], cidr: IpNet) -> bool {
    inside_pool(pool, cidr) && any_overlap(&[cidr], allocated).is_none()
}

/// What a prefix costs against a subnet pool's `default_quota`: its number
/// of addresses for IPv4 (a /24 counts 256) and its number of /64s for IPv6
/// (a /56 counts 256; prefixes longer than /64 count 1).
pub fn prefix_quota_units(cidr: IpNet) -> u128 {
    match cidr {
        IpNet::V4(net) => 1u128 << (32 - u32::from(net.prefix_len())),
        IpNet::V6(net) => 1u128 << 64u32.saturating_sub(u32::from(net.prefix_len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| net(s)).collect()
    }

    // --- same_version ---

    #[test]
    fn same_version_reports_the_family() {
        assert_eq!(
            same_version(&nets(&["10.0.0.0/8", "192.168.0.0/16"])),
            Some(4)
        );
        assert_eq!(same_version(&nets(&["2001:db8::/32", "::/0"])), Some(6));
        assert_eq!(same_version(&nets(&["10.0.0.0/8", "2001:db8::/32"])), None);
        assert_eq!(same_version(&[]), None);
    }

    // --- normalize_prefixes ---

    #[test]
    fn normalize_merges_adjacent_halves() {
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.0.128/25", "10.0.0.0/25"])),
            nets(&["10.0.0.0/24"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["192.168.0.0/24", "192.168.1.0/24"])),
            nets(&["192.168.0.0/23"])
        );
    }

    #[test]
    fn normalize_merges_chains_of_blocks() {
        assert_eq!(
            normalize_prefixes(&nets(&[
                "10.0.0.0/26",
                "10.0.0.64/26",
                "10.0.0.128/26",
                "10.0.0.192/26"
            ])),
            nets(&["10.0.0.0/24"])
        );
    }

    #[test]
    fn normalize_drops_contained_and_duplicate_prefixes() {
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.5.0/24", "10.0.0.0/16", "10.0.0.0/16"])),
            nets(&["10.0.0.0/16"])
        );
    }

    #[test]
    fn normalize_keeps_unalignable_neighbours_apart() {
        // Adjacent, but their union is no single CIDR.
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.2.0/24", "10.0.1.0/24"])),
            nets(&["10.0.1.0/24", "10.0.2.0/24"])
        );
    }

    #[test]
    fn normalize_clears_host_bits_and_sorts() {
        assert_eq!(
            normalize_prefixes(&nets(&["192.168.7.9/24", "10.1.2.3/8"])),
            nets(&["10.0.0.0/8", "192.168.7.0/24"])
        );
    }

    #[test]
    fn normalize_splits_overlapping_ranges_into_cidrs() {
        // 10.0.0.0/25 ∪ 10.0.0.64/26 ∪ 10.0.0.128/27 = 10.0.0.0 - 10.0.0.159.
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.0.64/26", "10.0.0.0/25", "10.0.0.128/27"])),
            nets(&["10.0.0.0/25", "10.0.0.128/27"])
        );
    }

    #[test]
    fn normalize_ipv6_and_whole_address_space() {
        assert_eq!(
            normalize_prefixes(&nets(&["2001:db8::/65", "2001:db8:0:0:8000::/65"])),
            nets(&["2001:db8::/64"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["::/1", "8000::/1"])),
            nets(&["::/0"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["128.0.0.0/1", "0.0.0.0/1"])),
            nets(&["0.0.0.0/0"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"])),
            nets(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"])
        );
    }

    #[test]
    fn normalize_mixed_list_per_family() {
        assert_eq!(
            normalize_prefixes(&nets(&[
                "2001:db8::/33",
                "10.0.0.0/9",
                "2001:db8:8000::/33"
            ])),
            nets(&["10.0.0.0/9", "2001:db8::/32"])
        );
        assert_eq!(normalize_prefixes(&[]), Vec::<IpNet>::new());
    }

    // --- contains_all / inside_pool ---

    #[test]
    fn contains_all_across_merged_outer_prefixes() {
        let outer = nets(&["10.0.0.0/25", "10.0.0.128/25"]);
        assert!(contains_all(&outer, &nets(&["10.0.0.0/24"])));
        assert!(contains_all(
            &outer,
            &nets(&["10.0.0.64/26", "10.0.0.200/30"])
        ));
        assert!(!contains_all(&outer, &nets(&["10.0.0.0/23"])));
        assert!(!contains_all(
            &outer,
            &nets(&["10.0.0.0/24", "10.0.1.0/30"])
        ));
        assert!(contains_all(&outer, &[]));
        assert!(!contains_all(&[], &nets(&["10.0.0.0/32"])));
    }

    #[test]
    fn contains_all_is_the_grow_only_rule() {
        let old = nets(&["10.0.0.0/24", "10.0.2.0/24"]);
        assert!(contains_all(&nets(&["10.0.0.0/22"]), &old));
        assert!(!contains_all(&nets(&["10.0.0.0/24", "10.0.3.0/24"]), &old));
    }

    #[test]
    fn contains_all_never_crosses_families() {
        assert!(!contains_all(&nets(&["::/0"]), &nets(&["10.0.0.0/8"])));
        assert!(!contains_all(&nets(&["0.0.0.0/0"]), &nets(&["::/96"])));
    }

    #[test]
    fn inside_pool_checks_one_cidr() {
        let pool = nets(&["10.0.0.0/16", "2001:db8::/48"]);
        assert!(inside_pool(&pool, net("10.0.255.0/24")));
        assert!(inside_pool(&pool, net("10.0.0.0/16")));
        assert!(!inside_pool(&pool, net("10.0.0.0/15")));
        assert!(!inside_pool(&pool, net("10.1.0.0/24")));
        assert!(inside_pool(&pool, net("2001:db8:0:ff::/64")));
        assert!(!inside_pool(&pool, net("2001:db9::/64")));
        assert!(inside_pool(&nets(&["::/0"]), net("ffff::/16")));
    }

    // --- any_overlap ---

    #[test]
    fn any_overlap_finds_containment_either_way() {
        let a = nets(&["10.0.0.0/24", "10.1.0.0/16"]);
        assert_eq!(
            any_overlap(&a, &nets(&["10.1.2.0/24"])),
            Some((net("10.1.0.0/16"), net("10.1.2.0/24")))
        );
        assert_eq!(
            any_overlap(&a, &nets(&["10.0.0.0/8"])),
            Some((net("10.0.0.0/24"), net("10.0.0.0/8")))
        );
    }

    #[test]
    fn any_overlap_returns_the_first_pair() {
        let a = nets(&["10.2.0.0/16", "10.1.0.0/16"]);
        let b = nets(&["10.1.0.0/24", "10.2.5.0/24", "10.2.0.0/24"]);
        assert_eq!(
            any_overlap(&a, &b),
            Some((net("10.2.0.0/16"), net("10.2.5.0/24")))
        );
    }

    #[test]
    fn any_overlap_none_for_adjacent_or_other_family() {
        assert_eq!(
            any_overlap(&nets(&["10.0.0.0/25"]), &nets(&["10.0.0.128/25"])),
            None
        );
        assert_eq!(any_overlap(&nets(&["::/0"]), &nets(&["0.0.0.0/0"])), None);
        assert_eq!(any_overlap(&[], &nets(&["10.0.0.0/8"])), None);
    }

    // --- remove_prefixes ---

    #[test]
    fn remove_splits_a_prefix() {
        assert_eq!(
            remove_prefixes(&nets(&["10.0.0.0/22"]), &nets(&["10.0.1.0/24"])),
            nets(&["10.0.0.0/24", "10.0.2.0/23"])
        );
        let left = remove_prefixes(&nets(&["10.0.0.0/16"]), &nets(&["10.0.0.0/24"]));
        assert_eq!(left.len(), 8);
        assert_eq!(left[0], net("10.0.1.0/24"));
        assert_eq!(left[7], net("10.0.128.0/17"));
        assert_eq!(
            normalize_prefixes(&[left, nets(&["10.0.0.0/24"])].concat()),
            nets(&["10.0.0.0/16"])
        );
    }

    #[test]
    fn remove_whole_partial_and_disjoint() {
        let pool = nets(&["10.0.0.0/24", "10.0.2.0/24"]);
        assert_eq!(remove_prefixes(&pool, &nets(&["10.0.0.0/22"])), vec![]);
        // A removal reaching outside the pool cuts only the common part.
        assert_eq!(
            remove_prefixes(&pool, &nets(&["10.0.0.0/23"])),
            nets(&["10.0.2.0/24"])
        );
        assert_eq!(
            remove_prefixes(&pool, &nets(&["192.168.0.0/24", "::/96"])),
            pool
        );
        assert_eq!(remove_prefixes(&pool, &[]), pool);
        assert_eq!(remove_prefixes(&[], &pool), vec![]);
    }

    #[test]
    fn remove_several_cuts_from_one_range() {
        assert_eq!(
            remove_prefixes(
                &nets(&["10.0.0.0/24"]),
                &nets(&["10.0.0.192/26", "10.0.0.0/26", "10.0.0.64/27"])
            ),
            nets(&["10.0.0.96/27", "10.0.0.128/26"])
        );
    }

    #[test]
    fn remove_ipv6_at_the_top_of_the_address_space() {
        assert_eq!(
            remove_prefixes(&nets(&["::/0"]), &nets(&["::/1"])),
            nets(&["8000::/1"])
        );
        assert_eq!(
            remove_prefixes(
                &nets(&["ffff:ffff:ffff:ffff::/64"]),
                &nets(&["ffff:ffff:ffff:ffff:8000::/65"])
            ),
            nets(&["ffff:ffff:ffff:ffff::/65"])
        );
    }

    // --- lowest_free_prefix ---

    #[test]
    fn lowest_free_in_an_empty_pool_is_the_pool_start() {
        let pool = nets(&["10.0.0.0/24"]);
        assert_eq!(lowest_free_prefix(&pool, &[], 26), Some(net("10.0.0.0/26")));
        assert_eq!(lowest_free_prefix(&pool, &[], 24), Some(net("10.0.0.0/24")));
        assert_eq!(lowest_free_prefix(&pool, &[], 32), Some(net("10.0.0.0/32")));
    }

    #[test]
    fn lowest_free_skips_allocations_and_aligns() {
        let pool = nets(&["10.0.0.0/24"]);
        let taken = nets(&["10.0.0.0/28", "10.0.0.64/26"]);
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 28),
            Some(net("10.0.0.16/28"))
        );
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 27),
            Some(net("10.0.0.32/27"))
        );
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 26),
            Some(net("10.0.0.128/26"))
        );
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 25),
            Some(net("10.0.0.128/25"))
        );
        assert_eq!(lowest_free_prefix(&pool, &taken, 24), None);
    }

    #[test]
    fn lowest_free_ignores_list_order() {
        let pool = nets(&["10.0.2.0/24", "10.0.0.0/24"]);
        let taken = nets(&["10.0.2.0/25", "10.0.0.0/24"]);
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 25),
            Some(net("10.0.2.128/25"))
        );
    }

    #[test]
    fn lowest_free_pool_exhausted() {
        let pool = nets(&["10.0.0.0/24"]);
        assert_eq!(lowest_free_prefix(&pool, &pool, 30), None);
        let quarters = nets(&[
            "10.0.0.0/26",
            "10.0.0.64/26",
            "10.0.0.128/26",
            "10.0.0.192/26",
        ]);
        assert_eq!(lowest_free_prefix(&pool, &quarters, 26), None);
        assert_eq!(lowest_free_prefix(&pool, &quarters, 32), None);
        // Fragmented: plenty of /26s free in total, but no aligned /25.
        let holes = nets(&["10.0.0.0/26", "10.0.0.128/26"]);
        assert_eq!(lowest_free_prefix(&pool, &holes, 25), None);
        assert_eq!(
            lowest_free_prefix(&pool, &holes, 26),
            Some(net("10.0.0.64/26"))
        );
    }

    #[test]
    fn lowest_free_prefixlen_shorter_than_the_pool() {
        assert_eq!(lowest_free_prefix(&nets(&["10.0.0.0/24"]), &[], 16), None);
        assert_eq!(lowest_free_prefix(&nets(&["10.0.0.0/24"]), &[], 33), None);
        // Adjacent pool prefixes whose union is not a /23 do not yield a /23.
        assert_eq!(
            lowest_free_prefix(&nets(&["10.0.1.0/24", "10.0.2.0/24"]), &[], 23),
            None
        );
        // ...but merged halves do yield the whole.
        assert_eq!(
            lowest_free_prefix(&nets(&["10.0.0.128/25", "10.0.0.0/25"]), &[], 24),
            Some(net("10.0.0.0/24"))
        );
    }

    #[test]
    fn lowest_free_ignores_allocations_outside_the_pool() {
        let pool = nets(&["10.0.1.0/24"]);
        let taken = nets(&["10.0.0.0/24", "10.0.2.0/24", "192.168.0.0/16", "::/0"]);
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 24),
            Some(net("10.0.1.0/24"))
        );
    }

    #[test]
    fn lowest_free_tolerates_overlapping_allocations() {
        // A covering allocation listed together with smaller ones inside it.
        let pool = nets(&["10.0.1.0/24"]);
        let taken = nets(&["10.0.0.5/32", "10.0.0.0/16", "10.0.2.0/24"]);
        assert_eq!(lowest_free_prefix(&pool, &taken, 24), None);
        let pool = nets(&["10.0.0.0/24"]);
        let taken = nets(&["10.0.0.0/26", "10.0.0.16/28", "10.0.0.0/25"]);
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 26),
            Some(net("10.0.0.128/26"))
        );
    }

    #[test]
    fn lowest_free_empty_or_mixed_pool() {
        assert_eq!(lowest_free_prefix(&[], &[], 24), None);
        assert_eq!(
            lowest_free_prefix(&nets(&["10.0.0.0/8", "2001:db8::/32"]), &[], 24),
            None
        );
    }

    #[test]
    fn lowest_free_ipv6() {
        let pool = nets(&["2001:db8::/48"]);
        assert_eq!(
            lowest_free_prefix(&pool, &nets(&["2001:db8::/64"]), 64),
            Some(net("2001:db8:0:1::/64"))
        );
        assert_eq!(
            lowest_free_prefix(&pool, &nets(&["2001:db8::/64"]), 56),
            Some(net("2001:db8:0:100::/56"))
        );
        assert_eq!(
            lowest_free_prefix(&pool, &[], 128),
            Some(net("2001:db8::/128"))
        );
    }

    #[test]
    fn lowest_free_at_the_top_of_the_address_space() {
        let all = nets(&["::/0"]);
        assert_eq!(lowest_free_prefix(&all, &[], 0), Some(net("::/0")));
        assert_eq!(lowest_free_prefix(&all, &all, 128), None);
        assert_eq!(
            lowest_free_prefix(&all, &nets(&["::/1"]), 1),
            Some(net("8000::/1"))
        );
        // Everything but the last address is taken.
        let taken = remove_prefixes(
            &all,
            &nets(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"]),
        );
        assert_eq!(taken.len(), 128);
        assert_eq!(
            lowest_free_prefix(&all, &taken, 128),
            Some(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
        );
        assert_eq!(lowest_free_prefix(&all, &taken, 127), None);

        // A /64 pool ending at ffff..ff.
        let top = nets(&["ffff:ffff:ffff:ffff::/64"]);
        assert_eq!(lowest_free_prefix(&top, &[], 64), Some(top[0]));
        assert_eq!(lowest_free_prefix(&top, &top, 64), None);
        assert_eq!(
            lowest_free_prefix(&top, &nets(&["ffff:ffff:ffff:ffff::/65"]), 65),
            Some(net("ffff:ffff:ffff:ffff:8000::/65"))
        );
        assert_eq!(
            lowest_free_prefix(&top, &nets(&["ffff:ffff:ffff:ffff::/65"]), 64),
            None
        );

        // The same for IPv4.
        let v4 = nets(&["0.0.0.0/0"]);
        assert_eq!(lowest_free_prefix(&v4, &[], 0), Some(v4[0]));
        assert_eq!(
            lowest_free_prefix(&v4, &nets(&["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"]), 3),
            Some(net("224.0.0.0/3"))
        );
    }

    #[test]
    fn lowest_free_with_many_allocations_in_a_huge_pool() {
        // 100 000 /64s allocated back to back from a /32: the answer is found
        // from the allocation list alone, whatever the pool size.
        let pool = nets(&["2001:db8::/32"]);
        let base = ip_to_u128(net("2001:db8::/32").network());
        let taken: Vec<IpNet> = (0..100_000u128)
            .rev()
            .map(|i| prefix_at(base + (i << 64), 64, true).unwrap())
            .collect();
        let expected = prefix_at(base + (100_000u128 << 64), 64, true);
        assert_eq!(lowest_free_prefix(&pool, &taken, 64), expected);
        assert_eq!(
            lowest_free_prefix(&nets(&["::/0"]), &taken, 64),
            Some(net("::/64"))
        );
    }

    // --- prefix_is_free ---

    #[test]
    fn prefix_is_free_checks_pool_and_allocations() {
        let pool = nets(&["10.0.0.0/24"]);
        let taken = nets(&["10.0.0.64/26", "10.0.1.0/24"]);
        assert!(prefix_is_free(&pool, &taken, net("10.0.0.0/26")));
        assert!(prefix_is_free(&pool, &taken, net("10.0.0.128/25")));
        assert!(
            !prefix_is_free(&pool, &taken, net("10.0.0.64/27")),
            "inside an allocation"
        );
        assert!(
            !prefix_is_free(&pool, &taken, net("10.0.0.0/25")),
            "covers an allocation"
        );
        assert!(
            !prefix_is_free(&pool, &[], net("10.0.0.0/23")),
            "reaches outside"
        );
        assert!(!prefix_is_free(&pool, &[], net("10.0.2.0/24")), "outside");
        assert!(
            !prefix_is_free(&nets(&["::/0"]), &[], net("10.0.0.0/24")),
            "other family"
        );
        assert!(prefix_is_free(
            &nets(&["ffff:ffff:ffff:ffff::/64"]),
            &[],
            net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
        ));
    }

    // --- prefix_quota_units ---

    #[test]
    fn quota_units_ipv4_counts_addresses() {
        assert_eq!(prefix_quota_units(net("10.0.0.0/24")), 256);
        assert_eq!(prefix_quota_units(net("10.0.0.0/26")), 64);
        assert_eq!(prefix_quota_units(net("10.0.0.1/32")), 1);
        assert_eq!(prefix_quota_units(net("0.0.0.0/0")), 1 << 32);
    }

    #[test]
    fn quota_units_ipv6_counts_slash_64s() {
        assert_eq!(prefix_quota_units(net("2001:db8::/64")), 1);
        assert_eq!(prefix_quota_units(net("2001:db8::/62")), 4);
        assert_eq!(prefix_quota_units(net("2001:db8::/56")), 256);
        assert_eq!(prefix_quota_units(net("2001:db8::/80")), 1);
        assert_eq!(prefix_quota_units(net("2001:db8::1/128")), 1);
        assert_eq!(prefix_quota_units(net("::/0")), 1 << 64);
    }
}
