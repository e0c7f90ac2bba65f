//! The live numbers of the exchange's admin section: a sampler, running for the instance's
//! whole life, reads the metrics registry once a second and keeps ten minutes of per-second
//! points (auctions/s, p50/p99 latency, fill rate, revenue, eCPM) and the per-bidder totals
//! behind the top-bidders table. Reading the registry costs nothing on the auction path; the
//! page polls `/admin/<instance>/live.json` and `live.js` draws the charts.

use parking_lot::Mutex;
use prometheus::proto::MetricFamily;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Points kept: ten minutes at one a second.
const POINTS: usize = 600;
/// The top-bidders table covers this window.
const BIDDER_WINDOW: Duration = Duration::from_secs(60);
const AUCTION_HISTOGRAM: &str = "bourse_exchange_auction_duration_seconds";

/// The registry's samples, with the sums the overview needs.
pub(crate) struct Families(Vec<MetricFamily>);

impl Families {
    pub(crate) fn gather(registry: &prometheus::Registry) -> Families {
        Families(registry.gather())
    }

    fn series<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a prometheus::proto::Metric> + 'a {
        self.0
            .iter()
            .filter(move |f| f.name() == name)
            .flat_map(|f| f.get_metric())
    }

    fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
        metric
            .get_label()
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.value())
    }

    /// The sum of a counter's or gauge's series that carry every one of `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .filter(|m| labels.iter().all(|(k, v)| Self::label(m, k) == Some(*v)))
            .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
            .sum()
    }

    /// A counter's or gauge's value per value of `label`, summed over the other labels.
    pub(crate) fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut values = BTreeMap::new();
        for metric in self.series(name) {
            if let Some(key) = Self::label(metric, label) {
                *values.entry(key.to_owned()).or_default() +=
                    metric.get_counter().get_value() + metric.get_gauge().get_value();
            }
        }
        values
    }

    /// A histogram's (count, sum) per value of `label`. The two come from one snapshot of each
    /// series, so a mean taken from them never mixes an observation with its neighbour's.
    fn histogram_by(&self, name: &str, label: &str) -> BTreeMap<String, (f64, f64)> {
        let mut values = BTreeMap::new();
        for metric in self.series(name) {
            if let Some(key) = Self::label(metric, label) {
                let histogram = metric.get_histogram();
                let slot: &mut (f64, f64) = values.entry(key.to_owned()).or_default();
                slot.0 += histogram.get_sample_count() as f64;
                slot.1 += histogram.get_sample_sum();
            }
        }
        values
    }

    /// A histogram's cumulative bucket counts (upper bound, count), summed over its series.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for metric in self.series(name) {
            for (i, bucket) in metric.get_histogram().get_bucket().iter().enumerate() {
                let count = bucket.cumulative_count() as f64;
                match buckets.get_mut(i) {
                    Some(slot) => slot.1 += count,
                    None => buckets.push((bucket.upper_bound(), count)),
                }
            }
        }
        buckets
    }
}

/// One bidder's running totals.
#[derive(Debug, Clone, Default)]
struct BidderTotals {
    requests: f64,
    bids: f64,
    wins: f64,
    timeouts: f64,
    errors: f64,
    /// Wins counted by the win-price histogram, read in the same snapshot as its sum.
    priced_wins: f64,
    win_value_cpm: f64,
}

/// Where a per-bidder counter goes in [`BidderTotals`].
type Column = fn(&mut BidderTotals) -> &mut f64;

/// The counters one sample reads.
#[derive(Debug, Clone)]
struct Totals {
    at: Instant,
    auctions: f64,
    filled: f64,
    latency: Vec<(f64, f64)>,
    cleared: f64,
    priced_wins: f64,
    win_value_cpm: f64,
    billed: f64,
    bidders: BTreeMap<String, BidderTotals>,
}

impl Totals {
    fn read(families: &Families, at: Instant) -> Totals {
        // Every endpoint that runs auctions (OpenRTB and ad tags) counts its outcome.
        let auction =
            |outcome| families.sum("bourse_exchange_requests_total", &[("outcome", outcome)]);
        let filled = auction("bid");
        let mut bidders: BTreeMap<String, BidderTotals> = BTreeMap::new();
        let columns: [(&str, Column); 5] = [
            ("bourse_bidder_requests_total", |b| &mut b.requests),
            ("bourse_bidder_bids_total", |b| &mut b.bids),
            ("bourse_bidder_wins_total", |b| &mut b.wins),
            ("bourse_bidder_timeouts_total", |b| &mut b.timeouts),
            ("bourse_bidder_errors_total", |b| &mut b.errors),
        ];
        for (name, column) in columns {
            for (bidder, value) in families.by(name, "bidder") {
                *column(bidders.entry(bidder).or_default()) = value;
            }
        }
        for (bidder, (count, sum)) in families.histogram_by("bourse_bidder_win_price_cpm", "bidder")
        {
            let totals = bidders.entry(bidder).or_default();
            totals.priced_wins = count;
            totals.win_value_cpm = sum;
        }
        Totals {
            at,
            auctions: filled + auction("no_bid"),
            filled,
            latency: families.buckets(AUCTION_HISTOGRAM),
            cleared: families.sum("bourse_exchange_cleared_value_total", &[]),
            priced_wins: bidders.values().map(|b| b.priced_wins).sum(),
            win_value_cpm: bidders.values().map(|b| b.win_value_cpm).sum(),
            billed: families.sum("bourse_exchange_billed_revenue_total", &[]),
            bidders,
        }
    }
}

/// One second of the overview's charts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    /// Unix time, milliseconds.
    pub(crate) t: u64,
    pub(crate) auctions_per_sec: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) fill_pct: Option<f64>,
    /// Cleared value per minute, in the exchange currency.
    pub(crate) revenue_per_min: f64,
    pub(crate) ecpm: Option<f64>,
}

/// A bidder over the last minute.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TopBidder {
    pub(crate) name: String,
    pub(crate) wins: u64,
    pub(crate) requests: u64,
    pub(crate) bid_rate_pct: Option<f64>,
    pub(crate) timeout_pct: Option<f64>,
    pub(crate) errors: u64,
    pub(crate) avg_win_cpm: Option<f64>,
}

/// What `live.json` answers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveView {
    pub(crate) points: Vec<Point>,
    pub(crate) top_bidders: Vec<TopBidder>,
    pub(crate) auctions_total: u64,
    pub(crate) billed_total: f64,
}

/// The `q` quantile (0..1) of the observations between two cumulative histograms, by linear
/// interpolation inside the bucket, as PromQL's `histogram_quantile` does.
fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .enumerate()
        .map(|(i, &(bound, count))| (bound, count - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in &counts {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// Keeps the points; part of the instance's state, so every generation shows the same ones.
#[derive(Default)]
pub(crate) struct Live {
    state: Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    points: VecDeque<Point>,
    /// Totals of the last minute or so, oldest first.
    totals: VecDeque<Totals>,
}

impl Live {
    /// Reads the registry and adds a point; a tick that comes right behind a late one finds the
    /// last sample too recent and does nothing, so no point covers a few milliseconds.
    pub(crate) fn sample(&self, registry: &prometheus::Registry) {
        let now = Instant::now();
        let mut state = self.state.lock();
        if state
            .totals
            .back()
            .is_some_and(|last| now.duration_since(last.at) < Duration::from_millis(900))
        {
            return;
        }
        let totals = Totals::read(&Families::gather(registry), now);
        if let Some(last) = state.totals.back() {
            let seconds = now.duration_since(last.at).as_secs_f64();
            let auctions = totals.auctions - last.auctions;
            let cleared = totals.cleared - last.cleared;
            let point = Point {
                t: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                auctions_per_sec: auctions / seconds,
                p50_ms: quantile(0.5, &last.latency, &totals.latency).map(|s| s * 1000.0),
                p99_ms: quantile(0.99, &last.latency, &totals.latency).map(|s| s * 1000.0),
                fill_pct: ratio(totals.filled - last.filled, auctions).map(|r| r * 100.0),
                revenue_per_min: cleared / seconds * 60.0,
                // From the win-price histogram alone: the cleared-value counter and the win
                // counters are read at slightly different moments, and an auction finishing
                // between them would skew a point's mean.
                ecpm: ratio(
                    totals.win_value_cpm - last.win_value_cpm,
                    totals.priced_wins - last.priced_wins,
                ),
            };
            state.points.push_back(point);
            if state.points.len() > POINTS {
                state.points.pop_front();
            }
        }
        state.totals.push_back(totals);
        while state.totals.front().is_some_and(|first| {
            now.duration_since(first.at) > BIDDER_WINDOW + Duration::from_secs(1)
        }) {
            state.totals.pop_front();
        }
    }

    /// The points since `after` (Unix ms; 0 for all) and the top bidders of the last minute.
    pub(crate) fn view(&self, after: u64) -> LiveView {
        let state = self.state.lock();
        let points = state
            .points
            .iter()
            .filter(|p| p.t > after)
            .cloned()
            .collect();
        let (Some(first), Some(last)) = (state.totals.front(), state.totals.back()) else {
            return LiveView {
                points,
                top_bidders: Vec::new(),
                auctions_total: 0,
                billed_total: 0.0,
            };
        };
        let mut top_bidders: Vec<TopBidder> = last
            .bidders
            .iter()
            .map(|(name, now)| {
                let then = first.bidders.get(name).cloned().unwrap_or_default();
                let requests = now.requests - then.requests;
                let wins = now.wins - then.wins;
                TopBidder {
                    name: name.clone(),
                    wins: wins as u64,
                    requests: requests as u64,
                    bid_rate_pct: ratio(now.bids - then.bids, requests).map(|r| r * 100.0),
                    timeout_pct: ratio(now.timeouts - then.timeouts, requests).map(|r| r * 100.0),
                    errors: (now.errors - then.errors) as u64,
                    avg_win_cpm: ratio(
                        now.win_value_cpm - then.win_value_cpm,
                        now.priced_wins - then.priced_wins,
                    ),
                }
            })
            .collect();
        top_bidders.sort_by(|a, b| b.wins.cmp(&a.wins).then(b.requests.cmp(&a.requests)));
        top_bidders.truncate(10);
        LiveView {
            points,
            top_bidders,
            auctions_total: last.auctions as u64,
            billed_total: last.billed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket_as_promql_does() {
        let before = [(0.001, 0.0), (0.01, 0.0), (f64::INFINITY, 0.0)];
        // 100 observations: 50 under 1 ms, 40 between 1 and 10 ms, 10 above.
        let after = [(0.001, 50.0), (0.01, 90.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &before, &after), Some(0.001));
        let p70 = quantile(0.7, &before, &after).unwrap();
        assert!((p70 - 0.0055).abs() < 1e-9, "{p70}");
        // Above the last finite bucket the answer is its bound.
        assert_eq!(quantile(0.99, &before, &after), Some(0.01));
        // Only what happened between the two samples counts.
        assert_eq!(quantile(0.5, &after, &after), None);
    }

    #[test]
    fn a_point_reports_rates_between_samples() {
        let registry = prometheus::Registry::new();
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("bourse_exchange_requests_total", "r"),
            &["endpoint", "outcome"],
        )
        .unwrap();
        registry.register(Box::new(requests.clone())).unwrap();
        let live = Live::default();
        live.sample(&registry);
        requests.with_label_values(&["auction", "bid"]).inc_by(30);
        requests
            .with_label_values(&["auction", "no_bid"])
            .inc_by(10);
        // Make the next sample count as a second later.
        live.state.lock().totals.back_mut().unwrap().at -= Duration::from_secs(1);
        live.sample(&registry);
        let view = live.view(0);
        assert_eq!(view.points.len(), 1);
        let point = &view.points[0];
        assert!((point.auctions_per_sec - 40.0).abs() < 2.0, "{point:?}");
        assert_eq!(point.fill_pct.map(f64::round), Some(75.0));
        assert_eq!(view.auctions_total, 40);
        // A sample right after the last one is skipped.
        live.sample(&registry);
        assert_eq!(live.view(0).points.len(), 1);
    }
}
