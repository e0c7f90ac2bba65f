//! What stands between a guessed password and the serving threads: sign-in attempts limited per
//! client network (an IPv6 client by its /64, which one host owns whole), per account and
//! overall, and Argon2id verification run on the blocking pool a few at a time, so a flood of
//! wrong passwords neither finds a password nor slows an auction.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bourse_kernel::services::{DirectLimiter, KeyedLimiter, Rate, RateLimits};
use tokio::sync::Semaphore;

use crate::users::Users;

/// Longest account name counted per account; longer names share one bucket (there is no such
/// user, and the name must not grow the limiter).
const MAX_COUNTED_NAME: usize = 64;

/// Why an attempt was refused before its password was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many attempts from this client's network.
    Network,
    /// Too many attempts on this account.
    Account,
    /// Too many attempts overall.
    Overall,
}

/// The sign-in limits and the hashing pool of one admin instance.
pub(crate) struct SignInGuard {
    by_network: KeyedLimiter<IpAddr>,
    by_account: KeyedLimiter<String>,
    overall: DirectLimiter,
    /// Verifications running at once on the blocking pool; the others wait their turn.
    hashing: Arc<Semaphore>,
}

/// The limits, per minute.
pub(crate) struct Limits {
    pub per_network: u32,
    pub per_account: u32,
    pub overall: u32,
    pub hashing_at_once: usize,
}

impl SignInGuard {
    /// Limiters named `<instance>.sign_in*` in the kernel's rate limits, so the same rates keep
    /// their buckets across generations and their refusals are counted per name.
    pub(crate) fn new(
        limits: &RateLimits,
        instance: &str,
        wanted: &Limits,
    ) -> Result<Self, String> {
        let rate = |n: u32| Rate::per_minute(n).map_err(|e| e.to_string());
        Ok(SignInGuard {
            by_network: limits
                .keyed(&format!("{instance}.sign_in"), rate(wanted.per_network)?)
                .map_err(|e| e.to_string())?,
            by_account: limits
                .keyed(
                    &format!("{instance}.sign_in_account"),
                    rate(wanted.per_account)?,
                )
                .map_err(|e| e.to_string())?,
            overall: limits
                .direct(
                    &format!("{instance}.sign_in_overall"),
                    rate(wanted.overall)?,
                )
                .map_err(|e| e.to_string())?,
            hashing: Arc::new(Semaphore::new(wanted.hashing_at_once.max(1))),
        })
    }

    /// Admits one attempt from `client` before anything is read: its network's and the overall
    /// limit.
    pub(crate) fn admit_client(&self, client: IpAddr) -> Result<(), Refusal> {
        self.by_network
            .check(&network_of(client))
            .map_err(|_| Refusal::Network)?;
        self.overall.check().map_err(|_| Refusal::Overall)
    }

    /// Admits one attempt on account `user`.
    pub(crate) fn admit_account(&self, user: &str) -> Result<(), Refusal> {
        let key = if user.len() <= MAX_COUNTED_NAME {
            user.to_lowercase()
        } else {
            String::new()
        };
        self.by_account.check(&key).map_err(|_| Refusal::Account)
    }

    /// Whether `password` is `user`'s, checked against the users file on the blocking pool
    /// (reading the file and Argon2id both block), a few at a time. `Err` when the file cannot
    /// be read.
    pub(crate) async fn verify(
        &self,
        users_file: PathBuf,
        user: String,
        password: String,
    ) -> Result<bool, String> {
        let _turn = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the hashing pool is closed".to_owned())?;
        tokio::task::spawn_blocking(move || {
            Users::load(&users_file)
                .map(|users| users.verify(&user, &password))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the password check failed: {e}"))?
    }
}

/// The key a client is limited by: an IPv4 address itself, an IPv6 address its /64.
pub(crate) fn network_of(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_limited_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(other));
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(network_of(v4), v4);
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(network_of(mapped), v4);
    }

    #[tokio::test]
    async fn every_limit_refuses_on_its_own() {
        let registry = prometheus::Registry::new();
        let services = bourse_kernel::services::Services::start(
            &bourse_kernel::services::ServicesConfig::default(),
            &registry,
        )
        .await
        .unwrap();
        let guard = SignInGuard::new(
            &services.limits,
            "t",
            &Limits {
                per_network: 3,
                per_account: 2,
                overall: 5,
                hashing_at_once: 1,
            },
        )
        .unwrap();
        let client: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..3 {
            guard.admit_client(client).unwrap();
        }
        // The same /64: no more.
        assert_eq!(guard.admit_client(neighbour), Err(Refusal::Network));
        // Another network still gets in until the overall cap.
        let elsewhere: IpAddr = "198.51.100.1".parse().unwrap();
        guard.admit_client(elsewhere).unwrap();
        guard.admit_client("198.51.100.2".parse().unwrap()).unwrap();
        assert_eq!(
            guard.admit_client("198.51.100.3".parse().unwrap()),
            Err(Refusal::Overall)
        );
        guard.admit_account("ops").unwrap();
        guard.admit_account("OPS").unwrap();
        assert_eq!(guard.admit_account("Ops"), Err(Refusal::Account));
        guard.admit_account("dev").unwrap();
    }
}
