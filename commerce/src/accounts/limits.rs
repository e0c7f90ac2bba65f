//! Attempt limits for sign-in, sign-up and reset requests: per client address and per account,
//! with `governor`'s keyed GCRA limiters. IPv6 clients are grouped by /64, the block one
//! subscriber usually holds, so rotating addresses inside it gains nothing.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Address,
    Account,
}

/// A refused attempt and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: LimitScope,
    pub retry_after: Duration,
}

/// Per-address and per-account limits.
#[derive(Debug)]
pub struct AttemptLimits {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
}

impl Default for AttemptLimits {
    /// 30 attempts a minute per address (burst 30), 10 per account (burst 10).
    fn default() -> Self {
        AttemptLimits::new(per_minute(30), per_minute(10))
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl AttemptLimits {
    pub fn new(per_address: Quota, per_account: Quota) -> AttemptLimits {
        AttemptLimits {
            per_address: RateLimiter::keyed(per_address),
            per_account: RateLimiter::keyed(per_account),
        }
    }

    /// Counts one attempt from `address`.
    pub fn address(&self, address: IpAddr) -> Result<(), Limited> {
        self.per_address
            .check_key(&address_key(address))
            .map_err(|not_until| Limited {
                scope: LimitScope::Address,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Counts one attempt on the account named `email` (normalised).
    pub fn account(&self, email: &str) -> Result<(), Limited> {
        self.per_account
            .check_key(&email.to_owned())
            .map_err(|not_until| Limited {
                scope: LimitScope::Account,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    /// Drops the state of keys that are back to full; call now and then.
    pub fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_account.retain_recent();
    }
}

/// The key a client address is limited under: IPv4 as is, IPv6 by its /64 (IPv4-mapped IPv6 as
/// the IPv4 address).
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_64_share_a_limit() {
        let limits = AttemptLimits::new(per_minute(2), per_minute(2));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.address(a).is_ok());
        assert!(limits.address(b).is_ok());
        let refused = limits.address(a).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Address);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(
            limits.address(elsewhere).is_ok(),
            "another /64 is not limited"
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn accounts_are_limited_apart_from_addresses() {
        let limits = AttemptLimits::new(per_minute(100), per_minute(1));
        assert!(limits.account("ann@example.com").is_ok());
        assert_eq!(
            limits.account("ann@example.com").unwrap_err().scope,
            LimitScope::Account
        );
        assert!(limits.account("bob@example.com").is_ok());
    }
}
