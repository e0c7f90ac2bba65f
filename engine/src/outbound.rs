//! The outbound URL policy for every URL a partner or a request supplies (notice URLs): only
//! http and https, only public addresses (loopback, private, link-local, multicast, metadata,
//! unspecified and reserved ranges refused, in IPv4, IPv6 and every embedded form) unless the
//! partner's config allows that host, the connection made to the address that was checked (the
//! resolver itself filters, so there is no gap for DNS to change its answer), no redirects, and
//! a small cap on what is read back.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

/// Why a URL is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a URL")]
    NotAUrl,
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("{0} is not a public address")]
    NotPublic(IpAddr),
    #[error("{0} resolves to no public address")]
    NoPublicAddress(String),
    #[error("{0} cannot be resolved")]
    Unresolved(String),
}

impl Refusal {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAUrl => "not_a_url",
            Refusal::Scheme(_) => "scheme",
            Refusal::NotPublic(_) | Refusal::NoPublicAddress(_) => "not_public",
            Refusal::Unresolved(_) => "unresolved",
        }
    }
}

/// Whether `ip` is an address a partner's URL may make us connect to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address: judge that one.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public_v4(Ipv4Addr::from(
                    (u32::from(segments[6]) << 16) | u32::from(segments[7]),
                ));
            }
            if segments[0] == 0x2002 {
                return is_public_v4(Ipv4Addr::from(
                    (u32::from(segments[1]) << 16) | u32::from(segments[2]),
                ));
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, the cloud metadata endpoint among them
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254, a metadata address, too)
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and the rest of ::/96
}

/// Which non-public hosts one partner may name (from its config).
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    hosts: Arc<[String]>,
}

impl Allowed {
    pub fn new(hosts: &[String]) -> Self {
        Allowed {
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }
}

/// Checks what can be checked before connecting: the URL parses, its scheme is http(s), and a
/// host given as an address is public (or allowed). A host given as a name is checked by
/// [`GuardedResolver`] when it is resolved.
pub fn check_url(url: &str, allowed: &Allowed) -> Result<http::Uri, Refusal> {
    let uri: http::Uri = url.parse().map_err(|_| Refusal::NotAUrl)?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(Refusal::Scheme(other.to_owned())),
        None => return Err(Refusal::NotAUrl),
    }
    let host = uri.host().ok_or(Refusal::NotAUrl)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>()
        && !is_public(ip)
        && !allowed.allows(bare)
    {
        return Err(Refusal::NotPublic(ip));
    }
    Ok(uri)
}

/// A resolver that only ever hands the connector public addresses (or every address of a host
/// the partner is allowed to name), so the address connected to is the address checked.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    allowed: Allowed,
}

impl GuardedResolver {
    pub fn new(allowed: Allowed) -> Self {
        GuardedResolver { allowed }
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, Refusal>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Refusal;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Refusal::Unresolved(host.clone()))?;
            let everything = allowed.allows(&host);
            let usable: Vec<SocketAddr> = found
                .filter(|addr| everything || is_public(addr.ip()))
                .collect();
            if usable.is_empty() {
                return Err(Refusal::NoPublicAddress(host));
            }
            Ok(usable.into_iter())
        })
    }
}

/// An HTTP connector whose every connection goes through a [`GuardedResolver`]. Nagle off,
/// a short connect timeout.
pub fn guarded_connector(allowed: Allowed) -> HttpConnector<GuardedResolver> {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(allowed));
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        !is_public(ip.parse().unwrap())
    }

    #[test]
    fn every_internal_range_is_refused_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1", // NAT64 of 10.0.0.1
            "2002:7f00:1::",  // 6to4 of 127.0.0.1
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        let none = Allowed::default();
        assert!(check_url("https://dsp.example/win?p=1", &none).is_ok());
        assert_eq!(
            check_url("ftp://dsp.example/x", &none).unwrap_err(),
            Refusal::Scheme("ftp".into())
        );
        assert_eq!(check_url("not a url", &none).unwrap_err(), Refusal::NotAUrl);
        assert!(matches!(
            check_url("http://127.0.0.1:6379/", &none),
            Err(Refusal::NotPublic(_))
        ));
        assert!(matches!(
            check_url("http://[::ffff:169.254.169.254]/latest/meta-data", &none),
            Err(Refusal::NotPublic(_))
        ));
        let internal = Allowed::new(&["10.1.2.3".into()]);
        assert!(check_url("http://10.1.2.3/win", &internal).is_ok());
        assert!(check_url("http://10.1.2.4/win", &internal).is_err());
    }

    #[tokio::test]
    async fn the_resolver_hands_over_no_internal_address() {
        use tower_service::Service as _;
        let mut resolver = GuardedResolver::new(Allowed::default());
        let name: Name = "localhost".parse().unwrap();
        let refusal = resolver.call(name.clone()).await.unwrap_err();
        assert_eq!(refusal, Refusal::NoPublicAddress("localhost".into()));
        let mut allowing = GuardedResolver::new(Allowed::new(&["localhost".into()]));
        let addrs: Vec<SocketAddr> = allowing.call(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
