//! `[plugins.<name>]` of kind `courses`: the typed table and its checks, each refusal as the
//! field's path and the rule it breaks.

use std::path::PathBuf;

use bourse_commerce::stripe::StripeConfig;
use bourse_kernel::ConfigIssue;
use serde::Deserialize;

/// The table as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoursesConfig {
    /// How pages and mails name the site.
    #[serde(default = "default_title")]
    pub title: String,
    /// Where browsers reach the site, its mount included: `https://example.com/courses`. Links
    /// in mails and the checkout's return addresses are built on it.
    pub public_url: String,
    /// Signs form tokens and attachment links; at least 32 characters. Give every node sharing
    /// a database the same one; when absent, a random one per process.
    #[serde(default)]
    pub secret: Option<String>,
    /// ISO 4217 code, lower case, of new courses' prices.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// The folder lesson attachments are read from (relative to the config file).
    #[serde(default = "default_files_dir")]
    pub files_dir: PathBuf,
    /// How long an attachment link stays valid, seconds.
    #[serde(default = "default_link_ttl_secs")]
    pub link_ttl_secs: i64,
    /// How long a checkout, and the seat it holds, stays open: 1800-86400 s, as Stripe allows.
    #[serde(default = "default_checkout_ttl_secs")]
    pub checkout_ttl_secs: i64,
    /// Adds the two sample courses to an empty catalog (the demo does).
    #[serde(default)]
    pub sample_courses: bool,
    /// `Secure` cookies with the `__Host-` prefix: set when the site is served over TLS.
    #[serde(default)]
    pub secure_cookies: bool,
    pub stripe: StripeSettings,
    #[serde(default)]
    pub session: SessionSettings,
}

/// `[plugins.<name>.stripe]`: Stripe's keys, or the built-in TEST MODE checkout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    /// `sk_live_…` or `sk_test_…`.
    pub secret_key: String,
    /// `whsec_…`: the signing secret of the site's webhook endpoint.
    pub webhook_secret: String,
    #[serde(default = "default_stripe_url")]
    pub base_url: String,
    #[serde(default = "default_stripe_timeout_ms")]
    pub timeout_ms: u64,
    /// Serve the TEST MODE checkout at `<mount>/test-checkout` and send the API calls there
    /// instead of to `base_url`: no real payment is ever taken. Needs an `sk_test_` key.
    #[serde(default)]
    pub test_mode: bool,
}

impl StripeSettings {
    /// The client's settings, its calls going to `base_url`.
    pub fn client(&self, base_url: &str) -> StripeConfig {
        let mut config = StripeConfig::new(&self.secret_key, &self.webhook_secret);
        config.base_url = base_url.to_owned();
        config.timeout_ms = self.timeout_ms;
        config
    }
}

fn default_stripe_url() -> String {
    "https://api.stripe.com".to_owned()
}
fn default_stripe_timeout_ms() -> u64 {
    30_000
}

/// `[plugins.<name>.session]`: the signed sessions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// `iss` of the site's tokens; the public URL's origin when absent.
    pub issuer: Option<String>,
    /// `aud` of the site's tokens; the public URL when absent.
    pub audience: Option<String>,
    /// A file holding the Ed25519 signing key's 32-byte seed in base64 (created when missing);
    /// give every node the same. Absent: a new key per process, so a restart signs everyone out.
    pub signing_key_file: Option<PathBuf>,
    /// The `kid` of that key.
    pub key_id: Option<String>,
}

fn default_title() -> String {
    "Courses".to_owned()
}
fn default_currency() -> String {
    "usd".to_owned()
}
fn default_files_dir() -> PathBuf {
    PathBuf::from("course-files")
}
fn default_link_ttl_secs() -> i64 {
    600
}
fn default_checkout_ttl_secs() -> i64 {
    3600
}

/// The table checked: what a generation runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub config: CoursesConfig,
    /// `public_url` without its trailing slash.
    pub public_url: String,
    pub issuer: String,
    pub audience: String,
    pub key_id: String,
}

impl CoursesConfig {
    /// Every problem at once, each with its path in the table.
    pub fn prepare(self) -> Result<Prepared, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let public_url = self.public_url.trim_end_matches('/').to_owned();
        let origin = match url::Url::parse(&public_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                url.origin().ascii_serialization()
            }
            _ => {
                issues.push(ConfigIssue::new(
                    "public_url",
                    "must be an absolute http(s) URL, e.g. https://example.com/courses",
                ));
                String::new()
            }
        };
        if self.title.trim().is_empty() {
            issues.push(ConfigIssue::new("title", "must not be empty"));
        }
        if let Some(secret) = &self.secret
            && secret.len() < 32
        {
            issues.push(ConfigIssue::new("secret", "must be at least 32 characters"));
        }
        let currency_ok =
            self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_lowercase());
        if !currency_ok {
            issues.push(ConfigIssue::new(
                "currency",
                "must be an ISO 4217 code in lower case, e.g. usd",
            ));
        }
        if !(10..=7 * 86_400).contains(&self.link_ttl_secs) {
            issues.push(ConfigIssue::new(
                "link_ttl_secs",
                "must be between 10 seconds and 7 days",
            ));
        }
        if !(1800..=86_400).contains(&self.checkout_ttl_secs) {
            issues.push(ConfigIssue::new(
                "checkout_ttl_secs",
                "must be between 1800 (30 minutes) and 86400 (24 hours), as Stripe allows",
            ));
        }
        let stripe = &self.stripe;
        if !(stripe.secret_key.starts_with("sk_test_")
            || stripe.secret_key.starts_with("sk_live_")
            || stripe.secret_key.starts_with("rk_"))
        {
            issues.push(ConfigIssue::new(
                "stripe.secret_key",
                "must be a Stripe secret key (sk_test_…, sk_live_… or a restricted rk_…)",
            ));
        }
        if stripe.test_mode && !stripe.secret_key.starts_with("sk_test_") {
            issues.push(ConfigIssue::new(
                "stripe.test_mode",
                "needs an sk_test_ key: a live key never goes to the TEST MODE checkout",
            ));
        }
        if stripe.webhook_secret.len() < 16 {
            issues.push(ConfigIssue::new(
                "stripe.webhook_secret",
                "must be the endpoint's signing secret (whsec_…), at least 16 characters",
            ));
        }
        if url::Url::parse(&stripe.base_url).is_err() {
            issues.push(ConfigIssue::new(
                "stripe.base_url",
                "must be an absolute URL",
            ));
        }
        let key_id = self
            .session
            .key_id
            .clone()
            .unwrap_or_else(|| "k1".to_owned());
        if key_id.is_empty() || key_id.len() > 64 {
            issues.push(ConfigIssue::new(
                "session.key_id",
                "must be 1-64 characters",
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Prepared {
            issuer: self.session.issuer.clone().unwrap_or(origin),
            audience: self
                .session
                .audience
                .clone()
                .unwrap_or_else(|| public_url.clone()),
            public_url,
            key_id,
            config: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Prepared, Vec<ConfigIssue>> {
        let config: CoursesConfig = toml_like(text);
        config.prepare()
    }

    fn toml_like(text: &str) -> CoursesConfig {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_minimal_table_prepares() {
        let prepared = parse(
            r#"{"public_url": "http://127.0.0.1:8080/courses/",
                "stripe": {"secret_key": "sk_test_x", "webhook_secret": "whsec_0123456789abcdef",
                           "test_mode": true}}"#,
        )
        .unwrap();
        assert_eq!(prepared.public_url, "http://127.0.0.1:8080/courses");
        assert_eq!(prepared.issuer, "http://127.0.0.1:8080");
        assert_eq!(prepared.audience, "http://127.0.0.1:8080/courses");
    }

    #[test]
    fn every_problem_is_named_by_its_path() {
        let issues = parse(
            r#"{"public_url": "courses", "secret": "short", "currency": "USD",
                "checkout_ttl_secs": 60,
                "stripe": {"secret_key": "sk_live_x", "webhook_secret": "w", "test_mode": true}}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "public_url",
                "secret",
                "currency",
                "checkout_ttl_secs",
                "stripe.test_mode",
                "stripe.webhook_secret"
            ]
        );
    }
}
