//! The `bourse_site_*` metric families, registered once on the registry passed in. Label values
//! are bounded: site names and currencies come from configuration (anything else counts as
//! `other`), outcomes from the fixed enums below.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::orders::OrderState;

/// What became of an order (or its creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOutcome {
    Created,
    Paid,
    Expired,
    Refunded,
}

impl OrderOutcome {
    const ALL: [OrderOutcome; 4] = [
        OrderOutcome::Created,
        OrderOutcome::Paid,
        OrderOutcome::Expired,
        OrderOutcome::Refunded,
    ];

    fn label(self) -> &'static str {
        match self {
            OrderOutcome::Created => "created",
            OrderOutcome::Paid => "paid",
            OrderOutcome::Expired => "expired",
            OrderOutcome::Refunded => "refunded",
        }
    }

    pub fn of(state: OrderState) -> OrderOutcome {
        match state {
            OrderState::Pending => OrderOutcome::Created,
            OrderState::Paid => OrderOutcome::Paid,
            OrderState::Expired => OrderOutcome::Expired,
            OrderState::Refunded => OrderOutcome::Refunded,
        }
    }
}

/// What a webhook delivery came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Verified, new, and its effect committed.
    Applied,
    /// Verified, but already processed: acknowledged, nothing done.
    Duplicate,
    /// Verified, of a type the site does not act on: acknowledged.
    Ignored,
    /// Refused: missing, malformed, stale or wrong signature.
    BadSignature,
    /// Refused: signed, but not a Stripe event we can read.
    BadPayload,
    /// Our failure (database): not acknowledged, so Stripe retries.
    Error,
}

impl WebhookOutcome {
    const ALL: [WebhookOutcome; 6] = [
        WebhookOutcome::Applied,
        WebhookOutcome::Duplicate,
        WebhookOutcome::Ignored,
        WebhookOutcome::BadSignature,
        WebhookOutcome::BadPayload,
        WebhookOutcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::BadSignature => "bad_signature",
            WebhookOutcome::BadPayload => "bad_payload",
            WebhookOutcome::Error => "error",
        }
    }
}

/// Why a mail attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFailure {
    /// Will be tried again after a backoff.
    Retry,
    /// Given up (permanent refusal or too many attempts).
    GaveUp,
}

impl MailFailure {
    fn label(self) -> &'static str {
        match self {
            MailFailure::Retry => "retry",
            MailFailure::GaveUp => "gave_up",
        }
    }
}

/// The label value for sites and currencies not named in configuration.
pub const OTHER: &str = "other";

/// The families, with every label combination resolved up front.
#[derive(Debug, Clone)]
pub struct CommerceMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sites: HashMap<String, SiteMetrics>,
    other: SiteMetrics,
}

/// One site's handles.
#[derive(Debug, Clone)]
pub struct SiteMetrics {
    orders: HashMap<&'static str, IntCounter>,
    revenue: HashMap<String, IntCounter>,
    refunded: HashMap<String, IntCounter>,
    webhooks: HashMap<&'static str, IntCounter>,
    mail_failures: HashMap<&'static str, IntCounter>,
    pub seats_held: IntGauge,
    pub seats_sold: IntGauge,
    pub mail_outbox_depth: IntGauge,
    pub mail_sent: IntCounter,
}

impl CommerceMetrics {
    /// Registers the families on `registry` for `sites` and `currencies` (lower-case ISO codes).
    pub fn register(
        registry: &Registry,
        sites: &[&str],
        currencies: &[&str],
    ) -> Result<CommerceMetrics, prometheus::Error> {
        let orders = IntCounterVec::new(
            Opts::new(
                "bourse_site_orders_total",
                "Orders created and state changes, by site and outcome.",
            ),
            &["site", "outcome"],
        )?;
        let revenue = IntCounterVec::new(
            Opts::new(
                "bourse_site_revenue_micros_total",
                "Paid order totals in millionths of the currency unit, by site and currency.",
            ),
            &["site", "currency"],
        )?;
        let refunded = IntCounterVec::new(
            Opts::new(
                "bourse_site_refunded_micros_total",
                "Refunded order totals in millionths of the currency unit, by site and currency.",
            ),
            &["site", "currency"],
        )?;
        let seats = IntGaugeVec::new(
            Opts::new(
                "bourse_site_seats",
                "Limited stock (seats, units) currently held by open checkouts or sold.",
            ),
            &["site", "state"],
        )?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                "bourse_site_webhooks_total",
                "Payment webhook deliveries, by site and outcome.",
            ),
            &["site", "outcome"],
        )?;
        let depth = IntGaugeVec::new(
            Opts::new(
                "bourse_site_mail_outbox_depth",
                "Mails queued and neither sent nor given up.",
            ),
            &["site"],
        )?;
        let sent = IntCounterVec::new(
            Opts::new(
                "bourse_site_mail_sent_total",
                "Mails accepted by the SMTP server.",
            ),
            &["site"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "bourse_site_mail_failures_total",
                "Failed mail attempts, by site and whether they will be retried.",
            ),
            &["site", "kind"],
        )?;
        for collector in [
            Box::new(orders.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(revenue.clone()),
            Box::new(refunded.clone()),
            Box::new(seats.clone()),
            Box::new(webhooks.clone()),
            Box::new(depth.clone()),
            Box::new(sent.clone()),
            Box::new(failures.clone()),
        ] {
            registry.register(collector)?;
        }
        let mut currency_labels: Vec<&str> = currencies.to_vec();
        currency_labels.push(OTHER);
        let resolve = |site: &str| SiteMetrics {
            orders: OrderOutcome::ALL
                .iter()
                .map(|o| (o.label(), orders.with_label_values(&[site, o.label()])))
                .collect(),
            revenue: currency_labels
                .iter()
                .map(|c| (c.to_string(), revenue.with_label_values(&[site, c])))
                .collect(),
            refunded: currency_labels
                .iter()
                .map(|c| (c.to_string(), refunded.with_label_values(&[site, c])))
                .collect(),
            webhooks: WebhookOutcome::ALL
                .iter()
                .map(|o| (o.label(), webhooks.with_label_values(&[site, o.label()])))
                .collect(),
            mail_failures: [MailFailure::Retry, MailFailure::GaveUp]
                .iter()
                .map(|k| (k.label(), failures.with_label_values(&[site, k.label()])))
                .collect(),
            seats_held: seats.with_label_values(&[site, "held"]),
            seats_sold: seats.with_label_values(&[site, "sold"]),
            mail_outbox_depth: depth.with_label_values(&[site]),
            mail_sent: sent.with_label_values(&[site]),
        };
        Ok(CommerceMetrics {
            inner: Arc::new(Inner {
                sites: sites.iter().map(|s| (s.to_string(), resolve(s))).collect(),
                other: resolve(OTHER),
            }),
        })
    }

    /// The handles of `site` (those of `other` for a site not configured).
    pub fn site(&self, site: &str) -> &SiteMetrics {
        self.inner.sites.get(site).unwrap_or(&self.inner.other)
    }
}

impl SiteMetrics {
    pub fn order(&self, outcome: OrderOutcome) {
        self.orders[outcome.label()].inc();
    }

    /// Counts a paid order's total, given in minor units of `currency`.
    pub fn revenue(&self, currency: &str, total_minor: i64) {
        self.count_money(&self.revenue, currency, total_minor);
    }

    /// Counts a refunded order's total, given in minor units of `currency`.
    pub fn refund(&self, currency: &str, total_minor: i64) {
        self.count_money(&self.refunded, currency, total_minor);
    }

    fn count_money(&self, family: &HashMap<String, IntCounter>, currency: &str, minor: i64) {
        let counter = family.get(currency).unwrap_or(&family[OTHER]);
        counter.inc_by(minor_to_micros(currency, minor).max(0) as u64);
    }

    pub fn webhook(&self, outcome: WebhookOutcome) {
        self.webhooks[outcome.label()].inc();
    }

    pub fn mail_failure(&self, kind: MailFailure) {
        self.mail_failures[kind.label()].inc();
    }
}

/// Converts minor units to millionths of the unit: cents are 10,000 micros, and a yen (which
/// has no minor unit) is 1,000,000.
pub fn minor_to_micros(currency: &str, minor: i64) -> i64 {
    minor.saturating_mul(10_i64.pow(6 - minor_unit_exponent(currency)))
}

/// Decimal places of a currency's minor unit, as Stripe counts them.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    const ZERO_DECIMAL: [&str; 16] = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];
    if ZERO_DECIMAL.contains(&currency) {
        0
    } else if THREE_DECIMAL.contains(&currency) {
        3
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded_and_money_is_in_micros() {
        let registry = Registry::new();
        let metrics = CommerceMetrics::register(&registry, &["courses"], &["usd"]).unwrap();
        metrics.site("courses").revenue("usd", 4_900);
        metrics.site("courses").revenue("jpy", 500);
        metrics.site("somebody-elses").order(OrderOutcome::Paid);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains(
            "bourse_site_revenue_micros_total{currency=\"usd\",site=\"courses\"} 49000000"
        ));
        assert!(text.contains(
            "bourse_site_revenue_micros_total{currency=\"other\",site=\"courses\"} 500000000"
        ));
        assert!(text.contains("bourse_site_orders_total{outcome=\"paid\",site=\"other\"} 1"));
        assert!(!text.contains("somebody-elses"));
    }
}
