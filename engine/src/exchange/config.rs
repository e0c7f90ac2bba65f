//! The exchange plugin's configuration (`[plugins.exchange]`) and its semantic checks.

use crate::bidder::{AdapterRegistry, Bidder, BidderSpec};
use crate::currency::is_currency_code;
use bourse_kernel::ConfigIssue;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Everything the exchange is configured with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Base currency: the auction currency when a request names none, and the metrics currency.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Static conversion rates: units of the base currency per unit of each currency.
    #[serde(default)]
    pub rates: BTreeMap<String, f64>,
    /// `tmax` assumed when a request carries none, in milliseconds.
    #[serde(default = "default_tmax")]
    pub default_tmax_ms: u64,
    /// Our own share of `tmax` (parsing, auction, network back to the caller); bidders get the rest.
    #[serde(default = "default_budget")]
    pub budget_ms: u64,
    /// Largest request body accepted, in bytes (after gzip decoding too).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most impressions in one request.
    #[serde(default = "default_max_imps")]
    pub max_imps: usize,
    /// Our fee as a fraction of the clearing price, in `[0, 1)`.
    #[serde(default)]
    pub fee: f64,
    /// Added to the second price in second-price auctions, in the auction currency.
    #[serde(default = "default_increment")]
    pub increment: f64,
    /// A floor applied to every impression, in the base currency: net of the fee, like every
    /// floor (the auction enforces it grossed up, see `pricing`).
    #[serde(default)]
    pub min_floor: f64,
    /// Public base URL of this exchange, used in the notice URLs we hand out.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// Key that signs notice tokens; every node of a cluster needs the same one. Empty: a random
    /// key per process (notices then only work on the node that ran the auction).
    #[serde(default)]
    pub notice_secret: String,
    /// How long our notice URLs stay valid, in seconds.
    #[serde(default = "default_notice_ttl")]
    pub notice_ttl_secs: u64,
    /// Our supply-chain node's `asi` (our domain); when set, bourse appends itself to `source.schain`.
    #[serde(default)]
    pub schain_asi: Option<String>,
    /// Delivery of notices to partners.
    #[serde(default)]
    pub notices: NoticeDelivery,
    /// Supply partners allowed to send bid requests. Empty: anyone may (a closed network).
    /// Otherwise each request must carry `Authorization: Bearer <token>` of one of them.
    #[serde(default)]
    pub supply: Vec<SupplyPartner>,
    /// Demand partners.
    #[serde(default)]
    pub bidders: Vec<BidderSpec>,
    /// Publishers whose pages carry bourse's ad tag.
    #[serde(default)]
    pub publishers: Vec<Publisher>,
    /// Ad slots on those pages.
    #[serde(default)]
    pub placements: Vec<Placement>,
    /// How `/ad` auctions run and how their beacons are honoured.
    #[serde(default)]
    pub tags: TagConfig,
    /// Learned floors for tag placements (off unless `enabled`).
    #[serde(default)]
    pub floors: bourse_floors::LearnedFloorsConfig,
    /// What the exchange's admin pages judge by.
    #[serde(default)]
    pub admin: AdminPagesConfig,
    /// Moved to the kernel's `[services]` (Redis URL, key prefix, HyperLogLog and
    /// exactly-once settings, shared by every plugin). Accepted only to refuse it with that
    /// explanation.
    #[serde(default)]
    pub reach: Option<toml::Value>,
}

/// A supply partner (an SSP or ad network) and the token it authenticates with.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplyPartner {
    /// Name, for logs.
    pub name: String,
    /// Shared secret sent as a bearer token.
    pub token: String,
}

impl std::fmt::Debug for SupplyPartner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupplyPartner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How partner notices are delivered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeDelivery {
    /// Attempts per notice, at least 1.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry, doubling after.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Per-attempt timeout.
    #[serde(default = "default_notice_timeout")]
    pub timeout_ms: u64,
    /// Notices queued at most per partner; beyond it win and loss notices are dropped and
    /// counted, billing ones kept for the spool.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Notices sent at once per partner.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Where billing notices still owed at shutdown are written, to be sent after the next
    /// start (relative to the config file).
    #[serde(default = "default_spool")]
    pub spool_path: std::path::PathBuf,
    /// Fire every losing partner's `lurl` when an auction ends. Each is one more HTTP request
    /// per losing bid, so an exchange whose partners do not use loss notices may turn it off.
    #[serde(default = "default_true")]
    pub losses: bool,
}

/// A publisher: a site that embeds the ad tag.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// Stable id (a-z, 0-9, `-`, `_`); appears in metrics and the ledger.
    pub id: String,
    /// Display name, sent as `site.publisher.name`.
    #[serde(default)]
    pub name: String,
    /// The site's domain. When set, `/ad` only serves pages on it or its subdomains.
    #[serde(default)]
    pub domain: Option<String>,
    /// A disabled publisher's placements get no ads.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// An ad slot a publisher places on its pages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Stable id (a-z, 0-9, `-`, `_`), written in the tag snippet as `data-placement`.
    pub id: String,
    /// The publisher it belongs to.
    pub publisher: String,
    /// Sizes it can show, `[width, height]`.
    pub sizes: Vec<[u16; 2]>,
    /// Static floor, CPM in the exchange currency; the learned floor never goes below it.
    #[serde(default)]
    pub floor: f64,
    /// A disabled placement gets no ads.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// `[plugins.exchange.admin]`: how the exchange's admin pages judge what they show.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPagesConfig {
    /// The window of calls a bidder's health state is judged on, seconds: a dead bidder reads
    /// "down" within seconds, and "healthy" at the latest this long after it recovers. Tests
    /// shorten it; 60 by default.
    #[serde(default = "default_health_window")]
    pub health_window_secs: u64,
}

impl Default for AdminPagesConfig {
    fn default() -> Self {
        AdminPagesConfig {
            health_window_secs: default_health_window(),
        }
    }
}

fn default_health_window() -> u64 {
    60
}

/// Settings of the ad tag endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// Time bidders get for an `/ad` auction, milliseconds (the request's `tmax`).
    #[serde(default = "default_tag_tmax")]
    pub tmax_ms: u64,
    /// 1 first price, 2 second price.
    #[serde(default = "default_tag_auction_type")]
    pub auction_type: u8,
    /// How long impression, view and click links stay valid, seconds.
    #[serde(default = "default_beacon_ttl")]
    pub beacon_ttl_secs: u64,
    /// Replaced by `[server.access] trusted_proxies`, which believes `X-Forwarded-For` only
    /// from the proxies named there (this setting believed any caller's first hop). Accepted
    /// only to refuse it with that explanation.
    #[serde(default)]
    pub trust_forwarded_for: Option<bool>,
    /// Append every billed impression to this file as a JSON line.
    #[serde(default)]
    pub ledger_path: Option<std::path::PathBuf>,
    /// Bearer token for `/reach` and `/ledger`. Without one they answer loopback callers only.
    #[serde(default)]
    pub reports_token: Option<String>,
}

impl Default for TagConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

fn default_tag_tmax() -> u64 {
    250
}
fn default_tag_auction_type() -> u8 {
    2
}
fn default_beacon_ttl() -> u64 {
    3600
}

/// Whether `id` is a valid config id: 1-64 of a-z, 0-9, `-` and `_`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Default for NoticeDelivery {
    fn default() -> Self {
        NoticeDelivery {
            attempts: default_attempts(),
            backoff_ms: default_backoff(),
            timeout_ms: default_notice_timeout(),
            queue: default_queue(),
            concurrency: default_concurrency(),
            spool_path: default_spool(),
            losses: true,
        }
    }
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        // An empty table takes every serde default.
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

fn default_currency() -> String {
    "USD".into()
}
fn default_tmax() -> u64 {
    300
}
fn default_budget() -> u64 {
    20
}
fn default_max_body() -> usize {
    256 * 1024
}
fn default_max_imps() -> usize {
    100
}
fn default_increment() -> f64 {
    0.01
}
fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_notice_ttl() -> u64 {
    24 * 3600
}
fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> u64 {
    100
}
fn default_notice_timeout() -> u64 {
    2000
}
fn default_true() -> bool {
    true
}
fn default_queue() -> usize {
    16_384
}
fn default_concurrency() -> usize {
    32
}
fn default_spool() -> std::path::PathBuf {
    std::path::PathBuf::from("bourse-notices.spool")
}

fn issue(path: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        path: path.into(),
        message: message.into(),
    }
}

fn http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!(
            "`{text}` must be an http:// or https:// URL with a host"
        )),
    }
}

/// A checked configuration with each partner's adapter built: what a generation starts from.
pub struct PreparedExchange {
    pub config: ExchangeConfig,
    /// One adapter per entry of `config.bidders`, in order.
    pub adapters: Vec<Arc<dyn Bidder>>,
}

impl std::fmt::Debug for PreparedExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedExchange")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ExchangeConfig {
    /// Checks this configuration and builds every partner's adapter, once. The issues' paths
    /// are relative to the exchange's table.
    pub fn prepare(self, registry: &AdapterRegistry) -> Result<PreparedExchange, Vec<ConfigIssue>> {
        let mut adapters = Vec::with_capacity(self.bidders.len());
        let issues = self.check_with(|at, spec| match registry.build(spec) {
            Ok(adapter) => {
                adapters.push(adapter);
                None
            }
            Err(e) => {
                let field = if registry.names().any(|n| n == spec.adapter) {
                    "params"
                } else {
                    "adapter"
                };
                Some(issue(format!("{at}.{field}"), e))
            }
        });
        if issues.is_empty() {
            Ok(PreparedExchange {
                config: self,
                adapters,
            })
        } else {
            Err(issues)
        }
    }

    /// Every problem with this configuration, with paths relative to the exchange's table.
    pub fn check(&self, registry: &AdapterRegistry) -> Vec<ConfigIssue> {
        self.check_with(|at, spec| {
            registry.build(spec).err().map(|e| {
                let field = if registry.names().any(|n| n == spec.adapter) {
                    "params"
                } else {
                    "adapter"
                };
                issue(format!("{at}.{field}"), e)
            })
        })
    }

    /// The checks, with each bidder's adapter handed to `adapter` (which reports its problem).
    fn check_with(
        &self,
        mut adapter: impl FnMut(&str, &BidderSpec) -> Option<ConfigIssue>,
    ) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !(5..=3600).contains(&self.admin.health_window_secs) {
            issues.push(issue(
                "admin.health_window_secs",
                "between 5 and 3600 seconds",
            ));
        }
        if !is_currency_code(&self.currency) {
            issues.push(issue(
                "currency",
                format!("`{}` is not an ISO-4217 code", self.currency),
            ));
        }
        for (code, rate) in &self.rates {
            if !is_currency_code(code) {
                issues.push(issue(format!("rates.{code}"), "not an ISO-4217 code"));
            }
            if !rate.is_finite() || *rate <= 0.0 {
                issues.push(issue(
                    format!("rates.{code}"),
                    "a rate must be a positive number",
                ));
            }
        }
        if self.budget_ms >= self.default_tmax_ms {
            issues.push(issue(
                "budget_ms",
                "must be smaller than default_tmax_ms, or bidders get no time",
            ));
        }
        if !(0.0..1.0).contains(&self.fee) {
            issues.push(issue("fee", "must be a fraction in [0, 1)"));
        }
        if !self.increment.is_finite() || self.increment < 0.0 {
            issues.push(issue("increment", "must be >= 0"));
        }
        if !self.min_floor.is_finite() || self.min_floor < 0.0 {
            issues.push(issue("min_floor", "must be >= 0"));
        }
        if self.max_body_bytes < 1024 {
            issues.push(issue("max_body_bytes", "must be at least 1024"));
        }
        if let Err(e) = http_url(&self.public_url) {
            issues.push(issue("public_url", e));
        }
        if self.notices.attempts == 0 {
            issues.push(issue("notices.attempts", "must be at least 1"));
        }
        if self.notices.queue == 0 {
            issues.push(issue("notices.queue", "must be at least 1"));
        }
        if self.notices.concurrency == 0 || self.notices.concurrency > 1024 {
            issues.push(issue("notices.concurrency", "must be between 1 and 1024"));
        }
        let mut tokens = HashSet::new();
        for (i, partner) in self.supply.iter().enumerate() {
            if partner.name.is_empty() {
                issues.push(issue(
                    format!("supply[{i}].name"),
                    "a supply partner needs a name",
                ));
            }
            if partner.token.len() < 16 {
                issues.push(issue(
                    format!("supply[{i}].token"),
                    "use a token of at least 16 characters",
                ));
            }
            if !tokens.insert(partner.token.as_str()) {
                issues.push(issue(
                    format!("supply[{i}].token"),
                    "two supply partners share this token",
                ));
            }
        }
        let mut names = HashSet::new();
        for (i, spec) in self.bidders.iter().enumerate() {
            let at = format!("bidders[{i}]");
            if !valid_id(&spec.name) {
                issues.push(issue(
                    format!("{at}.name"),
                    "use 1-64 characters of a-z, 0-9, - and _",
                ));
            }
            if !names.insert(spec.name.as_str()) {
                issues.push(issue(
                    format!("{at}.name"),
                    format!("bidder `{}` is listed twice", spec.name),
                ));
            }
            if let Err(e) = http_url(&spec.endpoint) {
                issues.push(issue(format!("{at}.endpoint"), e));
            }
            if spec.timeout_ms == 0 || spec.timeout_ms > 10_000 {
                issues.push(issue(
                    format!("{at}.timeout_ms"),
                    "must be between 1 and 10000",
                ));
            }
            if !spec.adjustment.is_finite() || spec.adjustment <= 0.0 {
                issues.push(issue(
                    format!("{at}.adjustment"),
                    "must be a positive number",
                ));
            }
            if spec.media.is_empty() {
                issues.push(issue(format!("{at}.media"), "list at least one media type"));
            }
            for name in spec.headers.keys() {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    issues.push(issue(
                        format!("{at}.headers"),
                        format!("`{name}` is not a header name"),
                    ));
                }
            }
            if let Some(problem) = adapter(&at, spec) {
                issues.push(problem);
            }
        }
        self.check_tags(&mut issues);
        issues
    }

    fn check_tags(&self, issues: &mut Vec<ConfigIssue>) {
        let mut publishers = HashSet::new();
        for (i, publisher) in self.publishers.iter().enumerate() {
            if !valid_id(&publisher.id) {
                issues.push(issue(
                    format!("publishers[{i}].id"),
                    "use 1-64 characters of a-z, 0-9, - and _",
                ));
            }
            if !publishers.insert(publisher.id.as_str()) {
                issues.push(issue(
                    format!("publishers[{i}].id"),
                    format!("publisher `{}` is listed twice", publisher.id),
                ));
            }
            if let Some(domain) = &publisher.domain
                && (domain.is_empty() || domain.contains(['/', ':', ' ']))
            {
                issues.push(issue(
                    format!("publishers[{i}].domain"),
                    "a bare domain such as news.example, without scheme or path",
                ));
            }
        }
        let mut placements = HashSet::new();
        for (i, placement) in self.placements.iter().enumerate() {
            let at = format!("placements[{i}]");
            if !valid_id(&placement.id) {
                issues.push(issue(
                    format!("{at}.id"),
                    "use 1-64 characters of a-z, 0-9, - and _",
                ));
            }
            if !placements.insert(placement.id.as_str()) {
                issues.push(issue(
                    format!("{at}.id"),
                    format!("placement `{}` is listed twice", placement.id),
                ));
            }
            if !publishers.contains(placement.publisher.as_str()) {
                issues.push(issue(
                    format!("{at}.publisher"),
                    format!("no publisher `{}` is configured", placement.publisher),
                ));
            }
            if placement.sizes.is_empty() || placement.sizes.iter().any(|[w, h]| *w == 0 || *h == 0)
            {
                issues.push(issue(
                    format!("{at}.sizes"),
                    "list at least one [width, height], both above 0",
                ));
            }
            if !placement.floor.is_finite() || placement.floor < 0.0 {
                issues.push(issue(format!("{at}.floor"), "must be >= 0"));
            }
        }
        if self.tags.tmax_ms <= self.budget_ms || self.tags.tmax_ms > 10_000 {
            issues.push(issue(
                "tags.tmax_ms",
                "must be above budget_ms and at most 10000",
            ));
        }
        if !matches!(self.tags.auction_type, 1 | 2) {
            issues.push(issue(
                "tags.auction_type",
                "1 (first price) or 2 (second price)",
            ));
        }
        if let Err(e) = self.floors.validate() {
            issues.push(issue("floors", e.to_string()));
        }
        if self.reach.is_some() {
            issues.push(issue(
                "reach",
                "moved: reach and billing de-duplication are the kernel's shared services now; \
                 set redis_url and key_prefix in [services] and tuning in [services.uniques] \
                 and [services.once]",
            ));
        }
        if self
            .tags
            .reports_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            issues.push(issue(
                "tags.reports_token",
                "use a token of at least 16 characters",
            ));
        }
        if self.tags.trust_forwarded_for.is_some() {
            issues.push(issue(
                "tags.trust_forwarded_for",
                "no longer used: list your proxies in [server.access] trusted_proxies, and \
                 X-Forwarded-For is believed from them only",
            ));
        }
        if self.tags.beacon_ttl_secs == 0 {
            issues.push(issue("tags.beacon_ttl_secs", "must be at least 1"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_window_defaults_to_a_minute_and_stays_between_5_seconds_and_an_hour() {
        let config = |text: &str| -> ExchangeConfig { toml::from_str(text).unwrap() };
        assert_eq!(config("").admin.health_window_secs, 60);
        let refused = |secs: u64| {
            config(&format!("[admin]\nhealth_window_secs = {secs}\n"))
                .check_with(|_, _| None)
                .iter()
                .any(|issue| issue.path == "admin.health_window_secs")
        };
        assert!(refused(0) && refused(4) && refused(3601));
        assert!(!refused(5) && !refused(15) && !refused(3600));
    }
}
