//! Who is asking: the client address of a request (the TCP peer, or, behind a configured proxy,
//! the address that proxy forwarded), loopback checks that understand IPv4-mapped IPv6, and the
//! access rule of the kernel's `/metrics`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

/// The client a request is from, in the request's extensions: the TCP peer, unless that peer is
/// one of `[server.access] trusted_proxies`, in which case the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy. Always canonical (an IPv4-mapped IPv6
/// address is its IPv4 address). Read this, never the header, wherever a client matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// Whether the client is this machine (127.0.0.0/8, ::1, or either mapped).
    pub fn is_loopback(&self) -> bool {
        self.0.is_loopback()
    }
}

/// `[server.access]`: whose forwarding headers to believe, and who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Proxies (addresses or networks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` is read.
    /// Empty: the header is ignored everywhere and the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <token>` (or a client in
    /// `metrics_allow`). Prometheus sends it with `authorization: { credentials: … }`.
    pub metrics_token: Option<String>,
    /// Networks whose clients may read `/metrics` without the token. With neither this nor a
    /// token set, `/metrics` is open.
    pub metrics_allow: Vec<String>,
}

impl AccessConfig {
    /// Problems as (field, message) relative to `server.access`.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (field, list) in [
            ("trusted_proxies", &self.trusted_proxies),
            ("metrics_allow", &self.metrics_allow),
        ] {
            for (i, text) in list.iter().enumerate() {
                if parse_net(text).is_none() {
                    problems.push((
                        format!("{field}[{i}]"),
                        format!("`{text}` is not an IP address or network such as 10.0.0.0/8"),
                    ));
                }
            }
        }
        if self.metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            problems.push((
                "metrics_token".to_owned(),
                "use a token of at least 16 characters".to_owned(),
            ));
        }
        problems
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| match net {
            // A mapped network is its IPv4 network.
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len().saturating_sub(96))
                    .map(IpNet::V4)
                    .unwrap_or(IpNet::V6(v6)),
                None => IpNet::V6(v6),
            },
            v4 => v4,
        })
}

/// The access rules in force, resolved from [`AccessConfig`].
#[derive(Debug, Default)]
pub(crate) struct Access {
    trusted: Vec<IpNet>,
    metrics_token: Option<String>,
    metrics_allow: Vec<IpNet>,
}

impl Access {
    pub(crate) fn new(config: &AccessConfig) -> Self {
        let nets = |list: &[String]| list.iter().filter_map(|t| parse_net(t)).collect();
        Access {
            trusted: nets(&config.trusted_proxies),
            metrics_token: config.metrics_token.clone(),
            metrics_allow: nets(&config.metrics_allow),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with these headers (see [`ClientAddr`]).
    pub(crate) fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> ClientAddr {
        let peer = peer.to_canonical();
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return ClientAddr(peer);
        }
        // Each proxy appends the address it got the request from: walk from the right, past
        // our own proxies, to the first address we did not put there.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.is_trusted(ip.to_canonical()) => continue,
                Ok(ip) => return ClientAddr(ip.to_canonical()),
                // Garbage where an address should be: stop believing the chain here.
                Err(_) => break,
            }
        }
        ClientAddr(peer)
    }

    /// Whether this request may read `/metrics`.
    pub(crate) fn may_read_metrics(&self, client: ClientAddr, headers: &http::HeaderMap) -> bool {
        if self.metrics_token.is_none() && self.metrics_allow.is_empty() {
            return true;
        }
        if self.metrics_allow.iter().any(|net| net.contains(&client.0)) {
            return true;
        }
        let Some(token) = &self.metrics_token else {
            return false;
        };
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(proxies: &[&str]) -> Access {
        Access::new(&AccessConfig {
            trusted_proxies: proxies.iter().map(|p| (*p).to_owned()).collect(),
            ..AccessConfig::default()
        })
    }

    fn forwarded(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn a_mapped_loopback_peer_is_loopback() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let client = access(&[]).client(mapped, &http::HeaderMap::new());
        assert_eq!(client.0, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(client.is_loopback());
        let remote: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert!(
            !access(&[])
                .client(remote, &http::HeaderMap::new())
                .is_loopback()
        );
    }

    #[test]
    fn forwarded_for_is_read_only_from_a_trusted_proxy() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let headers = forwarded("198.51.100.7, 10.0.0.9");
        // Nobody trusted: the header is ignored.
        assert_eq!(access(&[]).client(peer, &headers).0, peer);
        // The proxy is trusted, and so is the hop it got the request from.
        let trusting = access(&["10.0.0.0/24"]);
        assert_eq!(
            trusting.client(peer, &headers).0,
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // A client cannot pose as loopback by sending the header itself through the proxy:
        // the right-most untrusted hop is what the proxy saw.
        let spoofed = forwarded("127.0.0.1, 198.51.100.7");
        assert_eq!(
            trusting.client(peer, &spoofed).0,
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header counts for nothing.
        let outsider: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(trusting.client(outsider, &spoofed).0, outsider);
    }

    #[test]
    fn metrics_need_the_token_or_an_allowed_network_once_either_is_set() {
        let open = Access::default();
        let client = ClientAddr("203.0.113.1".parse().unwrap());
        assert!(open.may_read_metrics(client, &http::HeaderMap::new()));
        let guarded = Access::new(&AccessConfig {
            metrics_token: Some("a-long-metrics-token".into()),
            metrics_allow: vec!["10.0.0.0/8".into()],
            ..AccessConfig::default()
        });
        assert!(!guarded.may_read_metrics(client, &http::HeaderMap::new()));
        let mut bearer = http::HeaderMap::new();
        bearer.insert(
            "authorization",
            "Bearer a-long-metrics-token".parse().unwrap(),
        );
        assert!(guarded.may_read_metrics(client, &bearer));
        bearer.insert(
            "authorization",
            "Bearer wrong-token-of-length".parse().unwrap(),
        );
        assert!(!guarded.may_read_metrics(client, &bearer));
        let inside = ClientAddr("10.1.2.3".parse().unwrap());
        assert!(guarded.may_read_metrics(inside, &http::HeaderMap::new()));
    }

    #[test]
    fn bad_networks_are_named() {
        let config = AccessConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "proxy.local".into()],
            metrics_allow: vec!["::1".into()],
            metrics_token: Some("short".into()),
        };
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["trusted_proxies[1]", "metrics_token"]);
    }
}
