//! MAC addresses and EUI-64 (SLAAC) IPv6 addresses.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use crate::IpamError;

/// The SLAAC address of `mac` in the /64 `prefix` (modified EUI-64: the
/// universal/local bit of the first octet is flipped and `ff:fe` inserted
/// in the middle of the MAC). Host bits of `prefix` are ignored.
pub fn eui64_address(prefix: Ipv6Net, mac: [u8; 6]) -> Result<Ipv6Addr, IpamError> {
    if prefix.prefix_len() != 64 {
        return Err(IpamError::InvalidEui64Prefix { prefix, mac });
    }
    let mut octets = prefix.network().octets();
    octets[8..].copy_from_slice(&[
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    Ok(Ipv6Addr::from(octets))
}

/// Parses a unicast MAC address written as six two-digit hex octets
/// separated by `:` or `-` (one separator throughout), in either case.
///
/// The all-zero address, broadcast and multicast addresses (lowest bit of
/// the first octet set) are rejected with [`IpamError::InvalidMac`].
pub fn parse_mac(s: &str) -> Result<[u8; 6], IpamError> {
    let err = || IpamError::InvalidMac(s.to_owned());
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = s.split(sep);
    for octet in &mut mac {
        let part = parts.next().ok_or_else(err)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
    }
    if parts.next().is_some() || mac == [0; 6] || mac[0] & 1 == 1 {
        return Err(err());
    }
    Ok(mac)
}

/// Formats a MAC address in lowercase colon form (`fa:16:3e:01:02:03`).
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// A random MAC keeping the three `base` octets (Neutron's `base_mac`, by
/// default `fa:16:3e`) and randomising the other three.
pub fn random_mac<R: rand::Rng>(base: [u8; 3], rng: &mut R) -> [u8; 6] {
    let tail: [u8; 3] = rng.gen();
    [base[0], base[1], base[2], tail[0], tail[1], tail[2]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn eui64_matches_neutron() {
        // Neutron: get_ipv6_addr_by_EUI64('2001:db8::/64', 'fa:16:3e:33:44:55')
        let prefix: Ipv6Net = "2001:db8::/64".parse().unwrap();
        let mac = [0xfa, 0x16, 0x3e, 0x33, 0x44, 0x55];
        let expect: Ipv6Addr = "2001:db8::f816:3eff:fe33:4455".parse().unwrap();
        assert_eq!(eui64_address(prefix, mac).unwrap(), expect);
        // The universal/local bit is flipped in both directions.
        let mac2 = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        let expect2: Ipv6Addr = "2001:db8::211:22ff:fe33:4455".parse().unwrap();
        assert_eq!(eui64_address(prefix, mac2).unwrap(), expect2);
        // Host bits of the prefix are ignored.
        let sloppy: Ipv6Net = "2001:db8::1/64".parse().unwrap();
        assert_eq!(eui64_address(sloppy, mac).unwrap(), expect);
    }

    #[test]
    fn eui64_requires_64() {
        let prefix: Ipv6Net = "2001:db8::/48".parse().unwrap();
        let mac = [0xfa, 0x16, 0x3e, 0, 0, 1];
        let err = eui64_address(prefix, mac).unwrap_err();
        assert_eq!(err, IpamError::InvalidEui64Prefix { prefix, mac });
        assert!(
            err.to_string()
                .ends_with("2001:db8::/48, fa:16:3e:00:00:01"),
            "{err}"
        );
    }

    #[test]
    fn parse_mac_forms() {
        let want = [0xfa, 0x16, 0x3e, 0xab, 0xcd, 0xef];
        assert_eq!(parse_mac("fa:16:3e:ab:cd:ef").unwrap(), want);
        assert_eq!(parse_mac("FA:16:3E:AB:CD:EF").unwrap(), want);
        assert_eq!(parse_mac("fa-16-3e-AB-cd-ef").unwrap(), want);
    }

    #[test]
    fn parse_mac_rejects() {
        for bad in [
            "",
            "fa:16:3e:ab:cd",
            "fa:16:3e:ab:cd:ef:01",
            "fa:16:3e-ab:cd:ef",
            "fa:16:3e:ab:cd:e",
            "fa:16:3e:ab:cd:eg",
            "fa:16:3e:ab:cd:+f",
            "fa163eabcdef",
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
        ] {
            assert_eq!(
                parse_mac(bad),
                Err(IpamError::InvalidMac(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn format_roundtrip() {
        let mac = [0xfa, 0x16, 0x3e, 0x0a, 0x00, 0xff];
        assert_eq!(format_mac(mac), "fa:16:3e:0a:00:ff");
        assert_eq!(parse_mac(&format_mac(mac)).unwrap(), mac);
    }

    #[test]
    fn random_mac_keeps_base() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let macs: Vec<_> = (0..20)
            .map(|_| random_mac([0xfa, 0x16, 0x3e], &mut rng))
            .collect();
        assert!(macs.iter().all(|m| m[..3] == [0xfa, 0x16, 0x3e]));
        assert!(macs.iter().any(|m| m != &macs[0]));
        assert!(macs.iter().all(|m| parse_mac(&format_mac(*m)).is_ok()));
    }
}
