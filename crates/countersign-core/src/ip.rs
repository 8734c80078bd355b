//! Who is calling: the client address behind trusted proxies, and allowlists of networks.
//!
//! The client is the socket peer, unless the peer is a configured trusted proxy: then the
//! forwarding header it sets is walked from the right, trusted proxies are skipped, and the
//! first untrusted hop is the client. A forwarding header from an untrusted peer is ignored,
//! so a client cannot claim another address by sending `X-Forwarded-For` itself. A trusted
//! peer's header that cannot be read (bytes that are not text, a hop that is not an address)
//! names no client: that is an error, never the proxy's own address, which an allowlist may
//! well contain.
//!
//! ```
//! use std::net::IpAddr;
//! use countersign_core::ip::{ForwardedHeader, IpAllowlist, client_ip};
//! use http::HeaderMap;
//!
//! let proxies = IpAllowlist::new(["10.0.0.0/8"]).unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.3".parse().unwrap());
//! let peer: IpAddr = "10.0.0.2".parse().unwrap();
//! let client = client_ip(peer, &headers, &proxies, ForwardedHeader::XForwardedFor);
//! assert_eq!(client, Ok("198.51.100.7".parse::<IpAddr>().unwrap()));
//! ```

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

use crate::error::{ConfigError, ConfigErrorKind};

/// Whether `url` may carry keys or credentials: `https://`, or plain `http://` to this machine
/// (`localhost`, `127.0.0.0/8`, `[::1]`: tests and local servers). Over plain http anyone on
/// the path could read or swap what travels.
///
/// The URL is read as the WHATWG URL standard reads it (the `url` crate, as HTTP clients and
/// Node.js do), so the host judged is the host that is reached: in
/// `http://keys.example\@127.0.0.1/` the host is `keys.example`, not the loopback address.
#[must_use]
pub fn is_secure_url(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Domain(domain))) => domain.eq_ignore_ascii_case("localhost"),
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
    }
}

/// `text` as a base URL (`scheme://host[:port]`, trimmed, a trailing `/` dropped) when it is
/// [secure](is_secure_url) and has no user, path, query or fragment: where keys or tokens may
/// be fetched from. Paths are appended to it as text, so it must read the same alone and with
/// a path: no `\`, `@`, `?` or `#` anywhere in it.
#[must_use]
pub fn secure_base_url(text: &str) -> Option<&str> {
    let base = text.trim().trim_end_matches('/');
    let parsed = url::Url::parse(base).ok()?;
    let plain = !base.contains(['\\', '@', '?', '#', ' '])
        && parsed.path() == "/"
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none();
    (plain && is_secure_url(base)).then_some(base)
}

/// A set of IPv4 and IPv6 networks, looked up in logarithmic time.
///
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are treated as the IPv4 address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist {
    /// Disjoint, sorted, inclusive ranges over the IPv6 space (IPv4 mapped in).
    ranges: Vec<(u128, u128)>,
}

impl IpAllowlist {
    /// Networks in CIDR notation (`203.0.113.0/24`, `2001:db8::/32`) or single addresses.
    ///
    /// # Errors
    /// [`ConfigErrorKind::InvalidSetting`] naming the entry that is neither.
    pub fn new<I, S>(networks: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ranges = Vec::new();
        for network in networks {
            let text = network.as_ref().trim();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        ConfigErrorKind::InvalidSetting,
                        format!("{text:?} is not an IP address or a CIDR network"),
                    )
                })?;
            ranges.push(range(net));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(Self { ranges: merged })
    }

    /// The addresses Contentstack's troubleshooting FAQ lists for webhooks: AWS NA
    /// `52.35.1.58`, `52.35.48.83`, `52.27.91.224` and Azure NA `20.98.104.159`,
    /// `20.115.208.50`.
    ///
    /// **Subject to change**, in Contentstack's own words, and incomplete: other regions' addresses
    /// are handed out by their support. Opt-in only; prefer signatures, which do not change.
    #[must_use]
    pub fn contentstack_documented() -> Self {
        Self::new([
            "52.35.1.58",
            "52.35.48.83",
            "52.27.91.224",
            "20.98.104.159",
            "20.115.208.50",
        ])
        .unwrap_or_default()
    }

    /// Whether `ip` is in one of the networks.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let key = key(ip);
        let after = self.ranges.partition_point(|(start, _)| *start <= key);
        after > 0 && self.ranges[after - 1].1 >= key
    }

    /// Whether no network is in the list.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// IPv4 addresses live at `::ffff:0:0/96`, as IPv4-mapped IPv6 addresses do.
fn key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn range(net: IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(v4) => (
            u128::from(v4.network().to_ipv6_mapped()),
            u128::from(v4.broadcast().to_ipv6_mapped()),
        ),
        IpNet::V6(v6) => (u128::from(v6.network()), u128::from(v6.broadcast())),
    }
}

/// Which header a trusted proxy states the client address in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client`, a single address set by the proxy.
    XRealIp,
}

/// Why a trusted proxy's forwarding header names no client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardingError {
    /// A value holds bytes that are not text (say, a client's garbage appended by a proxy).
    NotText,
    /// A hop is not an address (`unknown`, an obfuscated identifier, garbage, or a `Forwarded`
    /// element without `for=`) before an untrusted address was reached.
    NotAnAddress,
}

impl std::fmt::Display for ForwardingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotText => "a trusted proxy's forwarding header holds bytes that are not text",
            Self::NotAnAddress => {
                "a trusted proxy's forwarding header names a hop that is not an address"
            }
        })
    }
}

impl std::error::Error for ForwardingError {}

/// The client's address: `peer` unless it is a trusted proxy; then the first untrusted hop of
/// the forwarding header, walked from the right (the leftmost hop when every hop is trusted,
/// `peer` when the header is absent).
///
/// # Errors
/// A trusted peer's header that cannot be read to an untrusted address: a value that is not
/// text ([`ForwardingError::NotText`]) or a hop that is not an address
/// ([`ForwardingError::NotAnAddress`]). The caller refuses the request: falling back to the
/// proxy's own address would let anyone in whenever an allowlist holds the proxy.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &IpAllowlist,
    source: ForwardedHeader,
) -> Result<IpAddr, ForwardingError> {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return Ok(client);
    }
    for hop in forwarded_hops(headers, source)?.iter().rev() {
        client = parse_hop(hop).ok_or(ForwardingError::NotAnAddress)?;
        if !trusted.contains(client) {
            break;
        }
    }
    Ok(client)
}

fn forwarded_hops(
    headers: &HeaderMap,
    source: ForwardedHeader,
) -> Result<Vec<String>, ForwardingError> {
    let name = match source {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
        ForwardedHeader::XRealIp => "x-real-ip",
    };
    let values = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().map_err(|_| ForwardingError::NotText))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values = values.into_iter();
    Ok(match source {
        ForwardedHeader::XForwardedFor => values
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_owned())
            .collect(),
        ForwardedHeader::XRealIp => values
            .next_back()
            .map(|v| vec![v.trim().to_owned()])
            .unwrap_or_default(),
        ForwardedHeader::Forwarded => values
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (key, value) = pair.split_once('=')?;
                        key.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| value.trim().trim_matches('"').to_owned())
                    })
                    .unwrap_or_default()
            })
            .collect(),
    })
}

/// An address from a hop, with an optional port: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, value.parse().unwrap());
        map
    }

    #[test]
    fn cidrs_of_both_families_are_looked_up() {
        let list = IpAllowlist::new(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap();
        assert!(list.contains(ip("203.0.113.255")));
        assert!(!list.contains(ip("203.0.114.0")));
        assert!(list.contains(ip("2001:db8:ffff::1")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert!(list.contains(ip("198.51.100.7")));
        assert!(!list.contains(ip("198.51.100.8")));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        let list = IpAllowlist::new(["192.0.2.0/24"]).unwrap();
        assert!(list.contains(ip("::ffff:192.0.2.9")));
        let v6_list = IpAllowlist::new(["::ffff:192.0.2.0/120"]).unwrap();
        assert!(v6_list.contains(ip("192.0.2.9")));
    }

    #[test]
    fn overlapping_networks_merge() {
        let list = IpAllowlist::new(["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8"]).unwrap();
        assert_eq!(list.ranges.len(), 1);
        assert!(list.contains(ip("11.255.255.255")));
    }

    #[test]
    fn bad_networks_are_configuration_errors() {
        let err = IpAllowlist::new(["10.0.0.0/33"]).unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::InvalidSetting);
        assert!(IpAllowlist::new(["example.com"]).is_err());
    }

    #[test]
    fn an_untrusted_peers_forwarding_header_is_ignored() {
        let trusted = IpAllowlist::new(["10.0.0.0/8"]).unwrap();
        let spoofed = headers("x-forwarded-for", "52.35.1.58");
        assert_eq!(
            client_ip(
                ip("198.51.100.1"),
                &spoofed,
                &trusted,
                ForwardedHeader::XForwardedFor
            ),
            Ok(ip("198.51.100.1"))
        );
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_skipping_trusted_proxies() {
        let trusted = IpAllowlist::new(["10.0.0.0/8"]).unwrap();
        // The client prepended a fake address; the proxies appended the real one.
        let chain = headers("x-forwarded-for", "52.35.1.58, 198.51.100.1, 10.0.0.5");
        assert_eq!(
            client_ip(
                ip("10.0.0.6"),
                &chain,
                &trusted,
                ForwardedHeader::XForwardedFor
            ),
            Ok(ip("198.51.100.1"))
        );
        let all_trusted = headers("x-forwarded-for", "10.0.0.1, 10.0.0.5");
        assert_eq!(
            client_ip(
                ip("10.0.0.6"),
                &all_trusted,
                &trusted,
                ForwardedHeader::XForwardedFor
            ),
            Ok(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_trusted_peers_unreadable_chain_names_no_client() {
        let trusted = IpAllowlist::new(["10.0.0.0/8"]).unwrap();
        let resolve = |map: &HeaderMap, source| client_ip(ip("10.0.0.6"), map, &trusted, source);
        // Before: the walk stopped at the garbage and returned the proxy 10.0.0.5.
        let garbage = headers("x-forwarded-for", "198.51.100.1, nonsense, 10.0.0.5");
        assert_eq!(
            resolve(&garbage, ForwardedHeader::XForwardedFor),
            Err(ForwardingError::NotAnAddress)
        );
        // Before: the non-UTF-8 value was dropped and the client became the peer 10.0.0.6.
        let mut not_text = HeaderMap::new();
        not_text.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.1\xff, 10.0.0.5").unwrap(),
        );
        assert_eq!(
            resolve(&not_text, ForwardedHeader::XForwardedFor),
            Err(ForwardingError::NotText)
        );
        let mut second_not_text = headers("x-forwarded-for", "198.51.100.1");
        second_not_text.append("x-forwarded-for", HeaderValue::from_bytes(b"\xfe").unwrap());
        assert_eq!(
            resolve(&second_not_text, ForwardedHeader::XForwardedFor),
            Err(ForwardingError::NotText)
        );
        let unknown = headers("forwarded", "for=unknown, for=10.0.0.5");
        assert_eq!(
            resolve(&unknown, ForwardedHeader::Forwarded),
            Err(ForwardingError::NotAnAddress)
        );
        let without_for = headers("forwarded", "proto=https");
        assert_eq!(
            resolve(&without_for, ForwardedHeader::Forwarded),
            Err(ForwardingError::NotAnAddress)
        );
        // Garbage left of the client is never read: the walk stops at the untrusted address.
        let garbage_beyond = headers("x-forwarded-for", "nonsense, 198.51.100.1, 10.0.0.5");
        assert_eq!(
            resolve(&garbage_beyond, ForwardedHeader::XForwardedFor),
            Ok(ip("198.51.100.1"))
        );
        // No header: the trusted peer is the client (a proxy's own health check).
        assert_eq!(
            resolve(&HeaderMap::new(), ForwardedHeader::XForwardedFor),
            Ok(ip("10.0.0.6"))
        );
    }

    #[test]
    fn forwarded_rfc_7239_with_ports_and_ipv6() {
        let trusted = IpAllowlist::new(["10.0.0.0/8"]).unwrap();
        let value =
            r#"for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711", For=10.0.0.9:80"#;
        let map = headers("forwarded", value);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &map, &trusted, ForwardedHeader::Forwarded),
            Ok(ip("2001:db8:cafe::17"))
        );
    }

    #[test]
    fn x_real_ip_is_a_single_address() {
        let trusted = IpAllowlist::new(["127.0.0.1"]).unwrap();
        let map = headers("x-real-ip", "203.0.113.9");
        assert_eq!(
            client_ip(ip("127.0.0.1"), &map, &trusted, ForwardedHeader::XRealIp),
            Ok(ip("203.0.113.9"))
        );
    }

    #[test]
    fn the_contentstack_preset_holds_the_documented_addresses() {
        let list = IpAllowlist::contentstack_documented();
        for documented in [
            "52.35.1.58",
            "52.35.48.83",
            "52.27.91.224",
            "20.98.104.159",
            "20.115.208.50",
        ] {
            assert!(list.contains(ip(documented)));
        }
        assert!(!list.contains(ip("52.35.1.59")));
    }
}
