//! Which addresses and hosts outbound requests may reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use crate::OutboundError;

/// The SSRF policy: public addresses only, plus what the operator allows.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl OutboundPolicy {
    /// Parses `ROUNDHOUSE_OUTBOUND_ALLOWLIST`: comma-separated host names
    /// (`hooks.internal`, matched exactly, case-insensitively), IP addresses
    /// (`127.0.0.1`) or networks (`10.0.0.0/8`, `::1/128`). Empty allows
    /// nothing beyond public addresses.
    pub fn parse(allowlist: &str) -> Result<Self, OutboundError> {
        let mut policy = OutboundPolicy::default();
        for entry in allowlist
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.nets.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                policy.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(OutboundError::BadAllowlist(entry.to_owned()));
            }
        }
        Ok(policy)
    }

    /// Whether `addr` may be connected to.
    pub fn allows_addr(&self, addr: IpAddr) -> bool {
        is_public(addr) || self.nets.iter().any(|net| net.contains(&addr))
    }

    /// Whether the operator allowlisted this host name (its addresses are
    /// then not checked).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks a URL before sending to it: an absolute `http(s)` URL whose
    /// host is allowlisted or resolves only to allowed addresses. A clean,
    /// early error for the caller; the client's resolver re-checks at
    /// connect time.
    pub async fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        self.check_scheme_and_literal(url)?;
        let Some(Host::Domain(host)) = url.host() else {
            return Ok(()); // an IP literal, checked above
        };
        if self.allows_host(host) {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| {
            OutboundError::Unresolvable {
                host: host.to_owned(),
                reason: e.to_string(),
            }
        })?;
        for addr in addrs {
            self.check_addr(host, addr.ip())?;
        }
        Ok(())
    }

    /// The checks that need no DNS: scheme, a host, and an IP literal's
    /// address. Also applied to every redirect.
    pub(crate) fn check_scheme_and_literal(&self, url: &Url) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::BadUrl(format!(
                "scheme `{}` is not http or https",
                url.scheme()
            )));
        }
        let addr = match url.host() {
            None => return Err(OutboundError::BadUrl("the URL has no host".into())),
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        self.check_addr(&addr.to_string(), addr)
    }

    pub(crate) fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), OutboundError> {
        if self.allows_addr(addr) {
            Ok(())
        } else {
            Err(OutboundError::Forbidden {
                host: host.to_owned(),
                addr,
            })
        }
    }
}

/// Whether `addr` is a public unicast address: not loopback, private,
/// shared (CGNAT), link-local, unique-local, multicast, broadcast,
/// documentation, benchmarking or reserved, and not one of those hidden in
/// an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 IPv6 address.
///
/// Written out rather than taken from `std`: `Ipv4Addr::is_global` is still
/// unstable, and the ranges are the point of the guard, so they are listed
/// where a reviewer can see them.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const FORBIDDEN: [(u32, u8); 16] = [
        (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
        (0x0a00_0000, 8),  // 10.0.0.0/8 private
        (0x6440_0000, 10), // 100.64.0.0/10 carrier-grade NAT (Alibaba metadata)
        (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
        (0xa9fe_0000, 16), // 169.254.0.0/16 link-local (cloud metadata)
        (0xac10_0000, 12), // 172.16.0.0/12 private
        (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
        (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
        (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
        (0xc0a8_0000, 16), // 192.168.0.0/16 private
        (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
        (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
        (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
        (0xe000_0000, 4),  // 224.0.0.0/4 multicast
        (0xf000_0000, 4),  // 240.0.0.0/4 reserved, incl. broadcast
        (0xffff_ffff, 32), // 255.255.255.255 broadcast
    ];
    let bits = u32::from(ip);
    !FORBIDDEN
        .iter()
        .any(|&(net, len)| bits & (u32::MAX << (32 - u32::from(len))) == net)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    // IPv4 carried inside IPv6 is judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match segments {
        // ::/128 unspecified, ::1 loopback, ::a.b.c.d IPv4-compatible (deprecated).
        [0, 0, 0, 0, 0, 0, hi, lo] => {
            (hi, lo) != (0, 0) && (hi, lo) != (0, 1) && is_public_v4(embedded_v4(hi, lo))
        }
        // 64:ff9b::/96 NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded_v4(hi, lo)),
        // 2002::/16 6to4: the IPv4 address is in segments 1 and 2.
        [0x2002, hi, lo, ..] => is_public_v4(embedded_v4(hi, lo)),
        [first, second, ..] => {
            let unique_local = first & 0xfe00 == 0xfc00; // fc00::/7
            let link_local = first & 0xffc0 == 0xfe80; // fe80::/10
            let site_local = first & 0xffc0 == 0xfec0; // fec0::/10 (deprecated)
            let multicast = first & 0xff00 == 0xff00; // ff00::/8
            let documentation = first == 0x2001 && second == 0x0db8; // 2001:db8::/32
            let discard = first == 0x0100 && segments[1..4] == [0, 0, 0]; // 100::/64
            // 2001::/23 IETF protocol assignments (Teredo, ORCHID…).
            let ietf = first == 0x2001 && second < 0x0200;
            !(unique_local
                || link_local
                || site_local
                || multicast
                || documentation
                || discard
                || ietf)
        }
    }
}

fn is_host_name(entry: &str) -> bool {
    !entry.is_empty()
        && entry.len() <= 253
        && entry.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(addr: &str) -> bool {
        is_public(addr.parse().unwrap())
    }

    #[test]
    fn internal_and_special_addresses_are_not_public() {
        for addr in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:0a00:0001::1",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(!public(addr), "{addr} must not be public");
        }
    }

    #[test]
    fn ordinary_internet_addresses_are_public() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(addr), "{addr} must be public");
        }
    }

    #[test]
    fn the_allowlist_admits_hosts_addresses_and_networks() {
        let policy =
            OutboundPolicy::parse(" hooks.internal, 127.0.0.1 ,10.0.0.0/8,::1/128").unwrap();
        assert!(policy.allows_host("HOOKS.internal"));
        assert!(policy.allows_host("hooks.internal."));
        assert!(!policy.allows_host("evil.hooks.internal"));
        assert!(policy.allows_addr("127.0.0.1".parse().unwrap()));
        assert!(!policy.allows_addr("127.0.0.2".parse().unwrap()));
        assert!(policy.allows_addr("10.9.8.7".parse().unwrap()));
        assert!(policy.allows_addr("::1".parse().unwrap()));
        assert!(!policy.allows_addr("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn a_malformed_allowlist_entry_is_named() {
        let error = OutboundPolicy::parse("ok.example,10.0.0.0/33").unwrap_err();
        assert_eq!(error, OutboundError::BadAllowlist("10.0.0.0/33".into()));
        assert!(OutboundPolicy::parse("http://x").is_err());
        assert!(OutboundPolicy::parse("").is_ok());
    }

    #[tokio::test]
    async fn urls_are_checked_for_scheme_host_and_address() {
        let policy = OutboundPolicy::default();
        let check = |url: &str| {
            let policy = policy.clone();
            let url: Url = url.parse().unwrap();
            async move { policy.check_url(&url).await }
        };
        assert!(matches!(
            check("ftp://example.com/").await,
            Err(OutboundError::BadUrl(_))
        ));
        assert!(matches!(
            check("http://10.0.0.1/").await,
            Err(OutboundError::Forbidden { .. })
        ));
        assert!(matches!(
            check("http://[::1]:8080/").await,
            Err(OutboundError::Forbidden { .. })
        ));
        // `localhost` resolves to loopback: refused after resolution.
        assert!(matches!(
            check("http://localhost/").await,
            Err(OutboundError::Forbidden { .. })
        ));
        assert!(matches!(
            check("http://0x7f000001/").await,
            Err(OutboundError::Forbidden { .. })
        ));
        assert!(check("https://8.8.8.8/").await.is_ok());
    }
}
