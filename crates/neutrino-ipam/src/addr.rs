//! Address parsing, numeric conversions, sort keys and small CIDR helpers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::IpamError;

/// Parses an IPv4 or IPv6 address.
///
/// Parsing is strict: incomplete forms such as `10.0.0`, octets with leading
/// zeros (`010.0.0.1`, ambiguous octal), surrounding whitespace, prefixes and
/// zone indices are rejected. IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`)
/// are accepted as IPv6 addresses.
pub fn parse_ip(s: &str) -> Result<IpAddr, IpamError> {
    s.parse::<IpAddr>()
        .map_err(|_| IpamError::InvalidIp(s.to_owned()))
}

/// Parses a CIDR such as `10.0.0.0/24` or `2001:db8::/64`.
///
/// The prefix length is mandatory. Host bits are cleared, so `10.0.0.5/24`
/// yields `10.0.0.0/24`, the form Neutron stores.
pub fn parse_cidr(s: &str) -> Result<IpNet, IpamError> {
    let err = || IpamError::InvalidCidr(s.to_owned());
    let (addr, len) = s.split_once('/').ok_or_else(err)?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let len: u8 = len.parse().map_err(|_| err())?;
    let addr = parse_ip(addr).map_err(|_| err())?;
    let net = IpNet::new(addr, len).map_err(|_| err())?;
    Ok(net.trunc())
}

/// The address as an unsigned integer (IPv4 addresses occupy the low 32 bits).
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address with numeric value `value`, IPv6 if `v6` is set; `None` if
/// the value does not fit an IPv4 address.
pub fn ip_from_u128(value: u128, v6: bool) -> Option<IpAddr> {
    if v6 {
        Some(IpAddr::V6(Ipv6Addr::from(value)))
    } else {
        u32::try_from(value)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
    }
}

/// A sortable text key: 32 lowercase hex digits of [`ip_to_u128`].
///
/// Keys of the same IP version compare lexically exactly as the addresses
/// compare numerically.
pub fn ip_key(ip: IpAddr) -> String {
    format!("{:032x}", ip_to_u128(ip))
}

/// Inverse of [`ip_key`]; `v6` selects the IP version of the result.
pub fn ip_from_key(key: &str, v6: bool) -> Result<IpAddr, IpamError> {
    let err = || IpamError::InvalidIpKey(key.to_owned());
    if key.len() != 32 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(err());
    }
    let value = u128::from_str_radix(key, 16).map_err(|_| err())?;
    ip_from_u128(value, v6).ok_or_else(err)
}

/// True if `ip` is the network or broadcast address of an IPv4 `cidr` with a
/// prefix shorter than /31 (those addresses cannot be assigned). Always false
/// for IPv6, /31 and /32.
pub fn is_network_or_broadcast(cidr: IpNet, ip: IpAddr) -> bool {
    match cidr {
        IpNet::V4(net) if net.prefix_len() < 31 => {
            ip == IpAddr::V4(net.network()) || ip == IpAddr::V4(net.broadcast())
        }
        _ => false,
    }
}

/// Neutron's default gateway for a subnet: the first host address
/// (`x.x.x.1`, `prefix::1`). For /31 and /127 it is the first address of
/// the CIDR; /32 and /128 have no gateway.
pub fn default_gateway(cidr: IpNet) -> Option<IpAddr> {
    let cidr = cidr.trunc();
    let first = ip_to_u128(cidr.network());
    let v6 = matches!(cidr, IpNet::V6(_));
    match cidr.max_prefix_len() - cidr.prefix_len() {
        0 => None,
        1 => Some(cidr.network()),
        _ => ip_from_u128(first + 1, v6),
    }
}

/// True if the two CIDRs share at least one address (always false for
/// different IP versions).
pub fn overlaps(a: IpNet, b: IpNet) -> bool {
    match (a, b) {
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)) => {
            a.contains(&b.network()) || b.contains(&a.network())
        }
        _ => false,
    }
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

    #[test]
    fn parse_ip_accepts_valid_addresses() {
        assert_eq!(parse_ip("10.0.0.1").unwrap(), ip("10.0.0.1"));
        assert_eq!(parse_ip("2001:db8::1").unwrap(), ip("2001:db8::1"));
        assert_eq!(parse_ip("::ffff:1.2.3.4").unwrap(), ip("::ffff:1.2.3.4"));
    }

    #[test]
    fn parse_ip_rejects_invalid_addresses() {
        for bad in [
            "",
            "10.0.0",
            "10.0.0.256",
            "010.0.0.1",
            " 10.0.0.1",
            "10.0.0.1/32",
            "fe80::1%eth0",
            "2001:db8:::1",
            "abc",
        ] {
            assert_eq!(
                parse_ip(bad),
                Err(IpamError::InvalidIp(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn parse_cidr_canonicalises() {
        assert_eq!(parse_cidr("10.0.0.0/24").unwrap(), net("10.0.0.0/24"));
        assert_eq!(parse_cidr("10.0.0.5/24").unwrap(), net("10.0.0.0/24"));
        assert_eq!(parse_cidr("2001:db8::/64").unwrap(), net("2001:db8::/64"));
        assert_eq!(parse_cidr("2001:db8::77/64").unwrap(), net("2001:db8::/64"));
        assert_eq!(parse_cidr("10.0.0.7/32").unwrap(), net("10.0.0.7/32"));
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap(), net("0.0.0.0/0"));
    }

    #[test]
    fn parse_cidr_rejects_invalid() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0/24",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/8/8",
            "/24",
            "2001:db8::",
        ] {
            assert_eq!(
                parse_cidr(bad),
                Err(IpamError::InvalidCidr(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_roundtrip_and_order() {
        assert_eq!(ip_key(ip("10.0.0.1")), "0000000000000000000000000a000001");
        assert_eq!(
            ip_key(ip("2001:db8::1")),
            "20010db8000000000000000000000001"
        );
        assert_eq!(
            ip_key(ip("255.255.255.255")),
            "000000000000000000000000ffffffff"
        );
        for s in ["0.0.0.0", "10.0.0.1", "255.255.255.255"] {
            assert_eq!(ip_from_key(&ip_key(ip(s)), false).unwrap(), ip(s));
        }
        for s in [
            "::",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert_eq!(ip_from_key(&ip_key(ip(s)), true).unwrap(), ip(s));
        }
        assert!(ip_key(ip("10.0.0.9")) < ip_key(ip("10.0.0.10")));
        assert!(ip_key(ip("9.255.255.255")) < ip_key(ip("10.0.0.0")));
    }

    #[test]
    fn key_rejects_garbage() {
        let v6key = ip_key(ip("2001:db8::1"));
        assert!(matches!(
            ip_from_key(&v6key, false),
            Err(IpamError::InvalidIpKey(_))
        ));
        assert!(ip_from_key("0a000001", false).is_err());
        assert!(ip_from_key(&"0".repeat(33), true).is_err());
        assert!(ip_from_key("0000000000000000000000000A000001", false).is_err());
        assert!(ip_from_key("+000000000000000000000000a000001", false).is_err());
    }

    #[test]
    fn u128_conversions() {
        assert_eq!(ip_to_u128(ip("0.0.1.2")), 258);
        assert_eq!(ip_from_u128(258, false), Some(ip("0.0.1.2")));
        assert_eq!(ip_from_u128(258, true), Some(ip("::102")));
        assert_eq!(ip_from_u128(1 << 32, false), None);
    }

    #[test]
    fn network_or_broadcast() {
        let c = net("10.0.0.0/24");
        assert!(is_network_or_broadcast(c, ip("10.0.0.0")));
        assert!(is_network_or_broadcast(c, ip("10.0.0.255")));
        assert!(!is_network_or_broadcast(c, ip("10.0.0.1")));
        assert!(!is_network_or_broadcast(net("10.0.0.0/31"), ip("10.0.0.0")));
        assert!(!is_network_or_broadcast(net("10.0.0.0/31"), ip("10.0.0.1")));
        assert!(!is_network_or_broadcast(net("10.0.0.0/32"), ip("10.0.0.0")));
        assert!(!is_network_or_broadcast(
            net("2001:db8::/64"),
            ip("2001:db8::")
        ));
    }

    #[test]
    fn default_gateways() {
        assert_eq!(default_gateway(net("10.0.0.0/24")), Some(ip("10.0.0.1")));
        assert_eq!(default_gateway(net("10.0.0.0/30")), Some(ip("10.0.0.1")));
        assert_eq!(default_gateway(net("10.0.0.2/31")), Some(ip("10.0.0.2")));
        assert_eq!(default_gateway(net("10.0.0.2/32")), None);
        assert_eq!(
            default_gateway(net("2001:db8::/64")),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            default_gateway(net("2001:db8::/127")),
            Some(ip("2001:db8::"))
        );
        assert_eq!(default_gateway(net("2001:db8::/128")), None);
        assert_eq!(default_gateway(net("10.0.0.5/24")), Some(ip("10.0.0.1")));
    }

    #[test]
    fn overlap_detection() {
        assert!(overlaps(net("10.0.0.0/8"), net("10.1.0.0/16")));
        assert!(overlaps(net("10.1.0.0/16"), net("10.0.0.0/8")));
        assert!(overlaps(net("10.0.0.0/24"), net("10.0.0.0/24")));
        assert!(!overlaps(net("10.0.0.0/24"), net("10.0.1.0/24")));
        assert!(overlaps(net("2001:db8::/32"), net("2001:db8:1::/48")));
        assert!(!overlaps(net("2001:db8::/48"), net("2001:db8:1::/48")));
        assert!(!overlaps(net("0.0.0.0/0"), net("::/0")));
    }
}
