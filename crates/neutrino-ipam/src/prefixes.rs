//! Prefix arithmetic for subnet pools: merging, containment, difference, overlap, the
//! lowest-free-prefix allocator and prefix quota units.

use ipnet::IpNet;

use crate::addr::{ip_from_u128, ip_to_u128};

/// A prefix as an inclusive `u128` range plus its version.
fn range(net: IpNet) -> (u128, u128) {
    let start = ip_to_u128(net.network());
    let end = ip_to_u128(net.broadcast());
    (start, end)
}

fn bits(v6: bool) -> u32 {
    if v6 {
        128
    } else {
        32
    }
}

/// `2^bits - 1` without overflow (all ones for 128).
fn low_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// Splits the inclusive range `[start, end]` into a minimal list of CIDRs.
fn range_to_cidrs(mut start: u128, end: u128, v6: bool) -> Vec<IpNet> {
    let width = bits(v6);
    let mut out = Vec::new();
    loop {
        // The largest block aligned at `start` that does not pass `end`.
        let mut size = if start == 0 {
            width
        } else {
            start.trailing_zeros().min(width)
        };
        while size > 0
            && start
                .checked_add(low_mask(size))
                .is_none_or(|last| last > end)
        {
            size -= 1;
        }
        let last = start + low_mask(size);
        if let Some(net) =
            ip_from_u128(start, v6).and_then(|a| IpNet::new(a, (width - size) as u8).ok())
        {
            out.push(net);
        }
        if last >= end {
            break;
        }
        start = last + 1;
    }
    out
}

/// Merged inclusive ranges of a prefix list (one version), sorted.
fn merged_ranges(prefixes: &[IpNet]) -> Vec<(u128, u128)> {
    let mut ranges: Vec<(u128, u128)> = prefixes.iter().map(|p| range(p.trunc())).collect();
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some((_, le)) if s <= le.saturating_add(1) => *le = (*le).max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The IP version shared by all prefixes (4 or 6); `None` when mixed or empty.
pub fn same_version(prefixes: &[IpNet]) -> Option<u8> {
    let first = prefixes.first()?;
    let v6 = matches!(first, IpNet::V6(_));
    prefixes
        .iter()
        .all(|p| matches!(p, IpNet::V6(_)) == v6)
        .then_some(if v6 { 6 } else { 4 })
}

/// Canonical, merged, sorted form of a prefix list (one version): adjacent and overlapping
/// prefixes are combined into the fewest CIDRs.
pub fn normalize_prefixes(prefixes: &[IpNet]) -> Vec<IpNet> {
    let Some(version) = same_version(prefixes) else {
        return Vec::new();
    };
    merged_ranges(prefixes)
        .into_iter()
        .flat_map(|(s, e)| range_to_cidrs(s, e, version == 6))
        .collect()
}

/// Whether every address of `inner` lies inside `outer`.
pub fn contains_all(outer: &[IpNet], inner: &[IpNet]) -> bool {
    let outer = merged_ranges(outer);
    merged_ranges(inner)
        .iter()
        .all(|(s, e)| outer.iter().any(|(os, oe)| os <= s && e <= oe))
}

/// Whether `cidr` lies entirely inside the pool prefixes.
pub fn inside_pool(pool: &[IpNet], cidr: IpNet) -> bool {
    contains_all(pool, &[cidr])
}

/// The first overlapping pair between two prefix lists, if any.
pub fn any_overlap(a: &[IpNet], b: &[IpNet]) -> Option<(IpNet, IpNet)> {
    for x in a {
        for y in b {
            if matches!(x, IpNet::V6(_)) == matches!(y, IpNet::V6(_)) {
                let (xs, xe) = range(*x);
                let (ys, ye) = range(*y);
                if xs <= ye && ys <= xe {
                    return Some((*x, *y));
                }
            }
        }
    }
    None
}

/// `pool` minus `remove`, as a minimal sorted CIDR list.
pub fn remove_prefixes(pool: &[IpNet], remove: &[IpNet]) -> Vec<IpNet> {
    let Some(version) = same_version(pool) else {
        return Vec::new();
    };
    let cut = merged_ranges(remove);
    let mut out = Vec::new();
    for (mut s, e) in merged_ranges(pool) {
        let mut done = false;
        for &(cs, ce) in &cut {
            if ce < s || cs > e {
                continue;
            }
            if cs > s {
                out.push((s, cs - 1));
            }
            if ce >= e {
                done = true;
                break;
            }
            s = ce + 1;
        }
        if !done {
            out.push((s, e));
        }
    }
    out.into_iter()
        .flat_map(|(s, e)| range_to_cidrs(s, e, version == 6))
        .collect()
}

/// The lowest prefix of length `prefixlen` inside the pool that overlaps no allocated prefix.
///
/// Walks the gaps between the sorted allocations inside each pool range, aligning each gap
/// start to the block size: O(n log n) in the number of allocations.
pub fn lowest_free_prefix(pool: &[IpNet], allocated: &[IpNet], prefixlen: u8) -> Option<IpNet> {
    let version = same_version(pool)?;
    let v6 = version == 6;
    let width = bits(v6);
    if u32::from(prefixlen) > width {
        return None;
    }
    let size_bits = width - u32::from(prefixlen);
    let block = low_mask(size_bits);
    let mut taken: Vec<(u128, u128)> = allocated
        .iter()
        .filter(|a| matches!(a, IpNet::V6(_)) == v6)
        .map(|a| range(a.trunc()))
        .collect();
    taken.sort_unstable();
    for (ps, pe) in merged_ranges(pool) {
        let mut cursor = ps;
        let mut i = taken.partition_point(|(_, e)| *e < ps);
        // Align the cursor up to the block size.
        while let Some(aligned) = cursor.checked_add(block).map(|v| v & !block) {
            let Some(last) = aligned.checked_add(block) else {
                break;
            };
            if aligned < cursor || last > pe {
                break;
            }
            // Skip allocations that end before the candidate.
            while i < taken.len() && taken[i].1 < aligned {
                i += 1;
            }
            match taken.get(i) {
                Some(&(ts, te)) if ts <= last => {
                    match te.checked_add(1) {
                        Some(next) => cursor = next,
                        None => break,
                    }
                    if cursor > pe {
                        break;
                    }
                }
                _ => {
                    let addr = ip_from_u128(aligned, v6)?;
                    return IpNet::new(addr, prefixlen).ok();
                }
            }
        }
    }
    None
}

/// Whether `cidr` lies inside the pool and overlaps no allocated prefix.
pub fn prefix_is_free(pool: &[IpNet], allocated: &[IpNet], cidr: IpNet) -> bool {
    inside_pool(pool, cidr) && any_overlap(&[cidr], allocated).is_none()
}

/// What a prefix costs against a subnet pool's `default_quota`: addresses for IPv4, /64s for
/// IPv6 (longer IPv6 prefixes count one).
pub fn prefix_quota_units(cidr: IpNet) -> u128 {
    match cidr {
        IpNet::V4(n) => 1u128 << (32 - u32::from(n.prefix_len())),
        IpNet::V6(n) if n.prefix_len() >= 64 => 1,
        IpNet::V6(n) => 1u128 << (64 - u32::from(n.prefix_len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn merges_adjacent_and_contained() {
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.0.128/25", "10.0.0.0/25"])),
            nets(&["10.0.0.0/24"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.0.0/16", "10.0.5.0/24"])),
            nets(&["10.0.0.0/16"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["10.0.1.0/24", "10.0.2.0/24"])),
            nets(&["10.0.1.0/24", "10.0.2.0/24"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["2001:db8::/65", "2001:db8:0:0:8000::/65"])),
            nets(&["2001:db8::/64"])
        );
        assert_eq!(same_version(&nets(&["10.0.0.0/8", "::/0"])), None);
        assert_eq!(
            normalize_prefixes(&nets(&["::/1", "8000::/1"])),
            nets(&["::/0"])
        );
        assert_eq!(
            normalize_prefixes(&nets(&["0.0.0.0/0"])),
            nets(&["0.0.0.0/0"])
        );
        assert_eq!(
            lowest_free_prefix(&nets(&["::/0"]), &[], 0),
            Some("::/0".parse().unwrap())
        );
    }

    #[test]
    fn difference_and_containment() {
        let left = remove_prefixes(&nets(&["10.0.0.0/16"]), &nets(&["10.0.0.0/24"]));
        assert!(contains_all(&nets(&["10.0.0.0/16"]), &left));
        assert!(!contains_all(&left, &nets(&["10.0.0.0/24"])));
        assert!(contains_all(
            &left,
            &nets(&["10.0.1.0/24", "10.0.128.0/17"])
        ));
        assert_eq!(
            normalize_prefixes(&[left, nets(&["10.0.0.0/24"])].concat()),
            nets(&["10.0.0.0/16"])
        );
        assert_eq!(
            remove_prefixes(&nets(&["10.0.0.0/24"]), &nets(&["192.168.0.0/24"])),
            nets(&["10.0.0.0/24"])
        );
    }

    #[test]
    fn lowest_free_prefix_skips_allocations() {
        let pool = nets(&["10.0.0.0/24"]);
        assert_eq!(
            lowest_free_prefix(&pool, &[], 26),
            Some("10.0.0.0/26".parse().unwrap())
        );
        let taken = nets(&["10.0.0.0/28", "10.0.0.64/26"]);
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 26),
            Some("10.0.0.128/26".parse().unwrap())
        );
        assert_eq!(
            lowest_free_prefix(&pool, &taken, 28),
            Some("10.0.0.16/28".parse().unwrap())
        );
        assert_eq!(lowest_free_prefix(&pool, &nets(&["10.0.0.0/24"]), 30), None);
        assert_eq!(
            lowest_free_prefix(&pool, &[], 16),
            None,
            "larger than the pool"
        );
        let v6 = nets(&["2001:db8::/48"]);
        assert_eq!(
            lowest_free_prefix(&v6, &nets(&["2001:db8::/64"]), 64),
            Some("2001:db8:0:1::/64".parse().unwrap())
        );
        let top = nets(&["ffff:ffff:ffff:ffff::/64"]);
        assert_eq!(
            lowest_free_prefix(&top, &nets(&["ffff:ffff:ffff:ffff::/65"]), 65),
            Some("ffff:ffff:ffff:ffff:8000::/65".parse().unwrap())
        );
        assert_eq!(lowest_free_prefix(&top, &top, 65), None);
    }

    #[test]
    fn quota_units() {
        assert_eq!(prefix_quota_units("10.0.0.0/24".parse().unwrap()), 256);
        assert_eq!(prefix_quota_units("2001:db8::/56".parse().unwrap()), 256);
        assert_eq!(prefix_quota_units("2001:db8::/80".parse().unwrap()), 1);
    }
}
