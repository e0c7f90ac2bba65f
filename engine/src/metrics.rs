//! The exchange's Prometheus metrics, registered once per process and resolved per bidder
//! when a configuration generation starts, so the auction path only touches atomics.

use prometheus::core::Collector as _;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
};

/// Latency buckets fine enough to show sub-millisecond overhead.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];
const CPM_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 50.0,
];

/// Why a call to a bidder failed (`kind` of `bourse_bidder_errors_total`): the adapter's and
/// the HTTP client's error kinds. Timeouts have their own counter.
pub const BIDDER_ERROR_KINDS: &[&str] = &[
    "bad_input",
    "bad_response",
    "http_status",
    "connect",
    "body",
];

/// Why the auction refused a bid (`reason` of `bourse_bidder_rejected_bids_total`).
pub const REJECTION_REASONS: &[&str] = &[
    "invalid_bid",
    "invalid_deal",
    "missing_markup",
    "missing_price",
    "below_floor",
    "below_deal_floor",
    "seat_blocked",
    "size_not_allowed",
    "wrong_format",
    "blocked_advertiser",
    "blocked_app",
    "blocked_category",
    "blocked_attribute",
    "expired",
    "internal_error",
    "unknown_currency",
    "native_markup",
    "native_assets",
    "disapproved",
];

/// What the auction's hooks changed (`decision` of `bourse_exchange_hook_decisions_total`).
pub const HOOK_DECISIONS: &[&str] = &[
    "request_dropped",
    "request_enriched",
    "floor_raised",
    "bid_dropped",
    "bid_adjusted",
];

/// Outcomes of `POST /openrtb2/auction` (`outcome` of `bourse_exchange_requests_total`).
pub const AUCTION_OUTCOMES: &[&str] = &[
    "bid",
    "no_bid",
    "invalid",
    "bad_method",
    "unauthorized",
    "body_too_large",
    "bad_gzip",
    "unsupported_encoding",
    "body_read",
    "overloaded",
    "unsupported_currency",
];

/// Beacon kinds and their outcomes (`bourse_adserve_beacons_total{kind,outcome}`).
pub const BEACON_OUTCOMES: &[(&str, &[&str])] = &[
    (
        "imp",
        &[
            "billed",
            "duplicate",
            "forged",
            "expired",
            "malformed",
            "error",
        ],
    ),
    (
        "view",
        &[
            "counted",
            "duplicate",
            "forged",
            "expired",
            "malformed",
            "error",
        ],
    ),
    ("click", &["redirected", "forged", "expired", "malformed"]),
];

/// Outcomes of ad-tag slots (`outcome` of `bourse_adserve_slots_total`).
pub const SLOT_OUTCOMES: &[&str] = &[
    "filled",
    "no_bid",
    "no_markup",
    "unknown_placement",
    "disabled",
    "wrong_domain",
    "another_publisher",
    "no_matching_size",
    "duplicate_slot_id",
];

/// Outcomes of notices the supply side sends (`bourse_exchange_notice_requests_total`).
pub const NOTICE_REQUEST_OUTCOMES: &[&str] = &[
    "accepted",
    "duplicate",
    "forged",
    "expired",
    "malformed",
    "error",
];

/// Counters of one family for a fixed enumeration of label values, resolved up front: counting
/// is a short scan of `&'static str`s and an atomic add, with no hashing, lock or allocation.
/// A value outside the enumeration (a new code path) still counts, through the family.
#[derive(Debug, Clone)]
pub struct FixedCounters {
    family: IntCounterVec,
    prefix: Vec<String>,
    values: &'static [&'static str],
    counters: Vec<IntCounter>,
}

impl FixedCounters {
    /// Resolves `family{prefix.., value}` for every value (so every series exists from the start).
    pub fn new(family: &IntCounterVec, prefix: &[&str], values: &'static [&'static str]) -> Self {
        let counters = values
            .iter()
            .map(|value| {
                let mut labels: Vec<&str> = prefix.to_vec();
                labels.push(value);
                family.with_label_values(&labels)
            })
            .collect();
        FixedCounters {
            family: family.clone(),
            prefix: prefix.iter().map(|p| (*p).to_owned()).collect(),
            values,
            counters,
        }
    }

    /// Adds one to the series of `value`.
    pub fn inc(&self, value: &'static str) {
        match self.values.iter().position(|v| *v == value) {
            Some(index) => self.counters[index].inc(),
            None => {
                let mut labels: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
                labels.push(value);
                self.family.with_label_values(&labels).inc();
            }
        }
    }

    /// The counter of `value`, if it is in the enumeration.
    pub fn get(&self, value: &str) -> Option<&IntCounter> {
        self.values
            .iter()
            .position(|v| *v == value)
            .map(|index| &self.counters[index])
    }
}

/// Every metric family the exchange exports.
#[derive(Debug, Clone)]
pub struct ExchangeMetrics {
    /// `bourse_exchange_requests_total{endpoint,outcome}`.
    pub requests: IntCounterVec,
    /// `requests{endpoint="auction",outcome}`, every outcome resolved once.
    pub auction_outcomes: FixedCounters,
    /// `requests{endpoint="ad",outcome}`: ad-tag pages whose auction filled a slot or none.
    pub ad_outcomes: FixedCounters,
    /// `bourse_exchange_ignored_signals_total{signal="regs.us_privacy",reason}`: malformed
    /// optional signals dropped instead of refusing the auction (`signals::US_PRIVACY_FAULTS`).
    pub ignored_us_privacy: FixedCounters,
    /// `bourse_exchange_hook_decisions_total{decision}`: what the auction's hooks (runtime
    /// plugins) changed, in [`HOOK_DECISIONS`].
    pub hook_decisions: FixedCounters,
    /// `bourse_exchange_auction_duration_seconds`: from request arrival to response.
    pub auction_seconds: Histogram,
    /// `bourse_exchange_overhead_seconds`: auction time minus time spent waiting for bidders.
    pub overhead_seconds: Histogram,
    /// `bourse_exchange_cleared_value_total`: sum of clearing prices / 1000, base currency.
    pub cleared_value: prometheus::Counter,
    /// `bourse_exchange_billed_revenue_total`: gross billed on burl notices / 1000, base currency.
    pub billed_revenue: prometheus::Counter,
    /// `bourse_exchange_fee_total`: our fee on billed impressions / 1000, base currency.
    pub fee: prometheus::Counter,
    /// `bourse_exchange_notices_total{kind,outcome}`: notices fired at partners.
    pub notices: IntCounterVec,
    /// `bourse_exchange_notices_refused_total{bidder,reason}`: partners' notice URLs the
    /// outbound policy refused (never fetched).
    pub notices_refused: IntCounterVec,
    /// `bourse_exchange_notice_requests_total{kind,outcome}`: notices the supply side sent us,
    /// resolved per kind (win, bill, loss, in `NoticeKind` order).
    pub notice_requests: [FixedCounters; 3],
    /// `bourse_adserve_beacons_total{kind,outcome}`: impression, view and click beacons by
    /// outcome (billed, counted, duplicate, forged, expired, malformed, error), resolved per
    /// kind in `BEACON_OUTCOMES` order.
    pub beacons: [FixedCounters; 3],
    /// `bourse_adserve_viewable_impressions_total`: ads at least half in view for a second.
    pub viewable: IntCounter,
    /// `bourse_adserve_billed_impressions_total{publisher,placement}` (ids from config only).
    pub billed_impressions: IntCounterVec,
    /// `bourse_adserve_slots_total{outcome}`: slots asked for by ad tags, filled or why not.
    pub tag_slots: FixedCounters,
    /// `bourse_floors_configured_cpm{placement}`: each configured placement's static floor.
    pub configured_floor: GaugeVec,
    /// `bourse_exchange_base_currency{currency}`: 1 for the currency every money figure is
    /// in, so dashboards can name it.
    base_currency: IntGaugeVec,
    bidder_requests: IntCounterVec,
    bidder_bids: IntCounterVec,
    bidder_bid_answers: IntCounterVec,
    bidder_nobids: IntCounterVec,
    bidder_timeouts: IntCounterVec,
    bidder_throttled: IntCounterVec,
    bidder_errors: IntCounterVec,
    bidder_rejected: IntCounterVec,
    bidder_wins: IntCounterVec,
    bidder_response_seconds: HistogramVec,
    bidder_win_price: HistogramVec,
}

/// One bidder's handles, resolved once per generation.
#[derive(Debug, Clone)]
pub struct BidderMetrics {
    /// Requests sent.
    pub requests: IntCounter,
    /// Bids received.
    pub bids: IntCounter,
    /// Answers with at least one bid that entered the auction: the numerator of the bid rate.
    pub bid_answers: IntCounter,
    /// Answers without a bid.
    pub nobids: IntCounter,
    /// Calls that passed their deadline.
    pub timeouts: IntCounter,
    /// Auctions the QPS cap kept this bidder out of.
    pub throttled: IntCounter,
    /// Auctions won.
    pub wins: IntCounter,
    /// Response time of completed calls.
    pub response_seconds: Histogram,
    /// Clearing CPM of wins, base currency.
    pub win_price: Histogram,
    errors: FixedCounters,
    rejected: FixedCounters,
}

impl BidderMetrics {
    /// Counts a failure of `kind` (one of [`BIDDER_ERROR_KINDS`]).
    pub fn error(&self, kind: &'static str) {
        self.errors.inc(kind);
    }

    /// Counts a bid refused for `reason` (one of [`REJECTION_REASONS`]).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.inc(reason);
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn int_counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

fn counter(name: &str, help: &str) -> prometheus::Counter {
    prometheus::Counter::new(name, help).expect("valid metric")
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric")
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric")
}

impl ExchangeMetrics {
    /// Creates the families and registers them.
    pub fn register(metrics: &bourse_kernel::Metrics) -> Result<Self, prometheus::Error> {
        let requests = metrics.register(counter_vec(
            "bourse_exchange_requests_total",
            "Requests to the exchange by endpoint and outcome.",
            &["endpoint", "outcome"],
        ))?;
        let notice_requests = metrics.register(counter_vec(
            "bourse_exchange_notice_requests_total",
            "Notices received from the supply side by kind and outcome.",
            &["kind", "outcome"],
        ))?;
        let beacons = metrics.register(counter_vec(
            "bourse_adserve_beacons_total",
            "Impression, view and click beacons by kind and outcome.",
            &["kind", "outcome"],
        ))?;
        let tag_slots = metrics.register(counter_vec(
            "bourse_adserve_slots_total",
            "Slots asked for by ad tags: filled, or why not.",
            &["outcome"],
        ))?;
        let ignored_signals = metrics.register(counter_vec(
            "bourse_exchange_ignored_signals_total",
            "Malformed optional request signals ignored instead of refusing the auction.",
            &["signal", "reason"],
        ))?;
        let hook_decisions = metrics.register(counter_vec(
            "bourse_exchange_hook_decisions_total",
            "Requests and bids the auction's hooks (runtime plugins) dropped or changed.",
            &["decision"],
        ))?;
        let beacon_kind = |index: usize| {
            let (kind, outcomes) = BEACON_OUTCOMES[index];
            FixedCounters::new(&beacons, &[kind], outcomes)
        };
        let notice_kind =
            |kind: &str| FixedCounters::new(&notice_requests, &[kind], NOTICE_REQUEST_OUTCOMES);
        Ok(ExchangeMetrics {
            hook_decisions: FixedCounters::new(&hook_decisions, &[], HOOK_DECISIONS),
            auction_outcomes: FixedCounters::new(&requests, &["auction"], AUCTION_OUTCOMES),
            ad_outcomes: FixedCounters::new(&requests, &["ad"], &["bid", "no_bid"]),
            ignored_us_privacy: FixedCounters::new(
                &ignored_signals,
                &["regs.us_privacy"],
                crate::signals::US_PRIVACY_FAULTS,
            ),
            requests,
            notice_requests: [notice_kind("win"), notice_kind("bill"), notice_kind("loss")],
            beacons: [beacon_kind(0), beacon_kind(1), beacon_kind(2)],
            tag_slots: FixedCounters::new(&tag_slots, &[], SLOT_OUTCOMES),
            configured_floor: metrics.register(
                GaugeVec::new(
                    Opts::new(
                        "bourse_floors_configured_cpm",
                        "Static floor of each configured placement, CPM in the base currency.",
                    ),
                    &["placement"],
                )
                .expect("valid metric"),
            )?,
            base_currency: metrics.register(
                IntGaugeVec::new(
                    Opts::new(
                        "bourse_exchange_base_currency",
                        "1 for the currency the exchange's money figures are in (its config's currency).",
                    ),
                    &["currency"],
                )
                .expect("valid metric"),
            )?,
            auction_seconds: metrics.register(histogram(
                "bourse_exchange_auction_duration_seconds",
                "Auction response time, request arrival to response.",
                LATENCY_BUCKETS,
            ))?,
            overhead_seconds: metrics.register(histogram(
                "bourse_exchange_overhead_seconds",
                "Auction time not spent waiting for bidders.",
                OVERHEAD_BUCKETS,
            ))?,
            cleared_value: metrics.register(counter(
                "bourse_exchange_cleared_value_total",
                "Sum of clearing prices of won impressions (CPM/1000, base currency).",
            ))?,
            billed_revenue: metrics.register(counter(
                "bourse_exchange_billed_revenue_total",
                "Gross billed on billing notices (CPM/1000, base currency).",
            ))?,
            fee: metrics.register(counter(
                "bourse_exchange_fee_total",
                "Exchange fee on billed impressions (CPM/1000, base currency).",
            ))?,
            notices: {
                let notices = metrics.register(counter_vec(
                    "bourse_exchange_notices_total",
                    "Notices fired at partners by kind and outcome.",
                    &["kind", "outcome"],
                ))?;
                // Every series from the start, so a rate over them is never empty.
                for kind in ["win", "bill", "loss"] {
                    for outcome in NOTICE_OUTCOMES {
                        notices.with_label_values(&[kind, outcome]);
                    }
                }
                notices
            },
            notices_refused: metrics.register(counter_vec(
                "bourse_exchange_notices_refused_total",
                "Partners' notice URLs refused by the outbound policy, by bidder and reason.",
                &["bidder", "reason"],
            ))?,
            viewable: metrics.register(int_counter(
                "bourse_adserve_viewable_impressions_total",
                "Ads reported at least 50% in view for one second.",
            ))?,
            billed_impressions: metrics.register(counter_vec(
                "bourse_adserve_billed_impressions_total",
                "Impressions billed from ad tags, by configured publisher and placement.",
                &["publisher", "placement"],
            ))?,
            bidder_requests: metrics.register(counter_vec(
                "bourse_bidder_requests_total",
                "Requests sent to each bidder.",
                &["bidder"],
            ))?,
            bidder_bids: metrics.register(counter_vec(
                "bourse_bidder_bids_total",
                "Bids received from each bidder.",
                &["bidder"],
            ))?,
            bidder_bid_answers: metrics.register(counter_vec(
                "bourse_bidder_bid_answers_total",
                "Answers from each bidder with at least one bid that entered the auction.",
                &["bidder"],
            ))?,
            bidder_nobids: metrics.register(counter_vec(
                "bourse_bidder_nobids_total",
                "No-bid answers from each bidder.",
                &["bidder"],
            ))?,
            bidder_timeouts: metrics.register(counter_vec(
                "bourse_bidder_timeouts_total",
                "Calls to each bidder that passed their deadline.",
                &["bidder"],
            ))?,
            bidder_throttled: metrics.register(counter_vec(
                "bourse_bidder_throttled_total",
                "Auctions a bidder sat out because of its QPS cap.",
                &["bidder"],
            ))?,
            bidder_errors: metrics.register(counter_vec(
                "bourse_bidder_errors_total",
                "Failed calls to each bidder by kind.",
                &["bidder", "kind"],
            ))?,
            bidder_rejected: metrics.register(counter_vec(
                "bourse_bidder_rejected_bids_total",
                "Bids refused by the auction by reason.",
                &["bidder", "reason"],
            ))?,
            bidder_wins: metrics.register(counter_vec(
                "bourse_bidder_wins_total",
                "Impressions won by each bidder.",
                &["bidder"],
            ))?,
            bidder_response_seconds: metrics.register(histogram_vec(
                "bourse_bidder_response_duration_seconds",
                "Response time of each bidder's completed calls.",
                &["bidder"],
                LATENCY_BUCKETS,
            ))?,
            bidder_win_price: metrics.register(histogram_vec(
                "bourse_bidder_win_price_cpm",
                "Clearing CPM of each bidder's wins, base currency.",
                &["bidder"],
                CPM_BUCKETS,
            ))?,
        })
    }

    /// Handles for one configured bidder.
    pub fn bidder(&self, name: &str) -> BidderMetrics {
        let l = &[name];
        BidderMetrics {
            requests: self.bidder_requests.with_label_values(l),
            bids: self.bidder_bids.with_label_values(l),
            bid_answers: self.bidder_bid_answers.with_label_values(l),
            nobids: self.bidder_nobids.with_label_values(l),
            timeouts: self.bidder_timeouts.with_label_values(l),
            throttled: self.bidder_throttled.with_label_values(l),
            wins: self.bidder_wins.with_label_values(l),
            response_seconds: self.bidder_response_seconds.with_label_values(l),
            win_price: self.bidder_win_price.with_label_values(l),
            errors: FixedCounters::new(&self.bidder_errors, l, BIDDER_ERROR_KINDS),
            rejected: FixedCounters::new(&self.bidder_rejected, l, REJECTION_REASONS),
        }
    }

    /// Publishes the static floors of the configured placements, removing the series of
    /// placements no longer configured so the label set follows the configuration.
    pub fn set_configured_floors<'a>(&self, placements: impl IntoIterator<Item = (&'a str, f64)>) {
        let placements: Vec<(&str, f64)> = placements.into_iter().collect();
        for family in self.configured_floor.collect() {
            for metric in family.get_metric() {
                let Some(label) = metric.get_label().iter().find(|l| l.name() == "placement")
                else {
                    continue;
                };
                if !placements.iter().any(|(id, _)| *id == label.value()) {
                    let _ = self.configured_floor.remove_label_values(&[label.value()]);
                }
            }
        }
        for (id, floor) in placements {
            self.configured_floor.with_label_values(&[id]).set(floor);
        }
    }

    /// Names the currency of every money figure: one series, at 1, for `currency`.
    pub fn set_base_currency(&self, currency: &str) {
        self.base_currency.reset();
        self.base_currency.with_label_values(&[currency]).set(1);
    }
}

/// Outcomes of notices fired at partners (`bourse_exchange_notices_total`): delivered, a
/// failed attempt that will be tried again, given up after the last attempt or a 4xx,
/// dropped because the partner's queue was full (win and loss), held for the spool because it
/// was full (billing), written to the spool at a stop, read back from it at start, and given
/// up at a stop.
pub const NOTICE_OUTCOMES: [&str; 8] = [
    "sent",
    "retried",
    "failed",
    "dropped",
    "deferred",
    "spooled",
    "recovered",
    "given_up",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> (bourse_kernel::Metrics, ExchangeMetrics) {
        let registry = bourse_kernel::Metrics::new();
        let metrics = ExchangeMetrics::register(&registry).unwrap();
        (registry, metrics)
    }

    #[test]
    fn every_fixed_series_exists_at_zero_before_its_first_event() {
        let (registry, metrics) = registered();
        let _alpha = metrics.bidder("alpha");
        let text = registry.render();
        for line in [
            "bourse_bidder_errors_total{bidder=\"alpha\",kind=\"connect\"} 0",
            "bourse_bidder_rejected_bids_total{bidder=\"alpha\",reason=\"below_floor\"} 0",
            "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"forged\"} 0",
            "bourse_adserve_beacons_total{kind=\"view\",outcome=\"counted\"} 0",
            "bourse_adserve_slots_total{outcome=\"filled\"} 0",
            "bourse_exchange_requests_total{endpoint=\"auction\",outcome=\"invalid\"} 0",
            "bourse_exchange_notice_requests_total{kind=\"bill\",outcome=\"forged\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn fixed_counters_count_listed_and_unlisted_values_under_their_own_label() {
        let (registry, metrics) = registered();
        let alpha = metrics.bidder("alpha");
        alpha.error("connect");
        alpha.error("connect");
        alpha.rejected("below_floor");
        // Not in the enumeration (a new code path): still counted, under its own value.
        alpha.error("tls");
        metrics.beacons[1].inc("duplicate");
        let text = registry.render();
        for line in [
            "bourse_bidder_errors_total{bidder=\"alpha\",kind=\"connect\"} 2",
            "bourse_bidder_errors_total{bidder=\"alpha\",kind=\"tls\"} 1",
            "bourse_bidder_rejected_bids_total{bidder=\"alpha\",reason=\"below_floor\"} 1",
            "bourse_adserve_beacons_total{kind=\"view\",outcome=\"duplicate\"} 1",
            "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"duplicate\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(
            metrics.tag_slots.get("filled").map(IntCounter::get),
            Some(0)
        );
        assert!(metrics.tag_slots.get("tls").is_none());
    }

    #[test]
    fn configured_floors_follow_the_placements_given() {
        let (registry, metrics) = registered();
        metrics.set_configured_floors([("top", 0.5), ("side", 0.1)]);
        metrics.set_configured_floors([("top", 0.75)]);
        let text = registry.render();
        assert!(text.contains("bourse_floors_configured_cpm{placement=\"top\"} 0.75"));
        assert!(!text.contains("placement=\"side\""), "{text}");
    }

    #[test]
    fn the_base_currency_series_names_only_the_currency_in_force() {
        let (registry, metrics) = registered();
        metrics.set_base_currency("USD");
        metrics.set_base_currency("EUR");
        let text = registry.render();
        assert!(
            text.contains("bourse_exchange_base_currency{currency=\"EUR\"} 1"),
            "{text}"
        );
        assert!(!text.contains("currency=\"USD\""), "{text}");
    }
}
