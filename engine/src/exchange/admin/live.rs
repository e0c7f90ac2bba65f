//! The live numbers of the exchange's admin section: a sampler, running for the instance's
//! whole life, reads the metrics registry once a second, adds what each second counted to the
//! history behind the charts (`history.rs`: seconds for 15 minutes, minutes for 7 days) and keeps
//! the per-bidder totals behind the top-bidders table and each bidder's health. Reading the
//! registry costs nothing on the auction path; the page polls `/admin/<instance>/live.json` for
//! its cards and `series.json` for its charts.

use parking_lot::Mutex;
use prometheus::proto::MetricFamily;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bourse_figures as figures;

use crate::metrics::BIDDER_ERROR_KINDS;

use super::history::{BidderSlice, History, Range, Scope, SeriesView, Slice};

/// The top-bidders table covers this window, and so does a bidder's health state unless the
/// config sets another (`[plugins.<exchange>.admin] health_window_secs`).
pub(crate) const BIDDER_WINDOW: Duration = Duration::from_secs(60);
/// The longer window a bidder's health also reports, and how long totals are kept at least.
const LONG_WINDOW: Duration = Duration::from_secs(300);
const AUCTION_HISTOGRAM: &str = "bourse_exchange_auction_duration_seconds";
const BIDDER_LATENCY_HISTOGRAM: &str = "bourse_bidder_response_duration_seconds";

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

    /// A counter's value per pair of values of `first` and `second`.
    fn by_pair(&self, name: &str, first: &str, second: &str) -> Vec<(String, String, f64)> {
        self.series(name)
            .filter_map(|metric| {
                let a = Self::label(metric, first)?;
                let b = Self::label(metric, second)?;
                Some((a.to_owned(), b.to_owned(), metric.get_counter().get_value()))
            })
            .collect()
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
        let mut buckets = Vec::new();
        for metric in self.series(name) {
            add_buckets(&mut buckets, metric);
        }
        buckets
    }

    /// A histogram's cumulative bucket counts per value of `label`, summed over the others.
    fn buckets_by(&self, name: &str, label: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
        let mut values: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for metric in self.series(name) {
            if let Some(key) = Self::label(metric, label) {
                add_buckets(values.entry(key.to_owned()).or_default(), metric);
            }
        }
        values
    }
}

/// Adds one histogram series' cumulative bucket counts into `buckets`.
fn add_buckets(buckets: &mut Vec<(f64, f64)>, metric: &prometheus::proto::Metric) {
    for (i, bucket) in metric.get_histogram().get_bucket().iter().enumerate() {
        let count = bucket.cumulative_count() as f64;
        match buckets.get_mut(i) {
            Some(slot) => slot.1 += count,
            None => buckets.push((bucket.upper_bound(), count)),
        }
    }
}

/// One bidder's running totals.
#[derive(Debug, Clone, Default)]
struct BidderTotals {
    requests: f64,
    bid_answers: f64,
    wins: f64,
    timeouts: f64,
    /// Errors by kind, in [`BIDDER_ERROR_KINDS`] order (every kind the counter has).
    error_kinds: [f64; BIDDER_ERROR_KINDS.len()],
    /// Cumulative buckets of its completed calls' response times.
    latency: Vec<(f64, f64)>,
    /// Wins counted by the win-price histogram, read in the same snapshot as its sum.
    priced_wins: f64,
    win_value_cpm: f64,
}

impl BidderTotals {
    /// Errors of every kind.
    fn errors(&self) -> f64 {
        self.error_kinds.iter().sum()
    }
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
    /// Billed impressions by placement id.
    billed_by_placement: BTreeMap<String, f64>,
}

impl Totals {
    fn read(families: &Families, at: Instant) -> Totals {
        // Every endpoint that runs auctions (OpenRTB and ad tags) counts its outcome.
        let auction =
            |outcome| families.sum("bourse_exchange_requests_total", &[("outcome", outcome)]);
        let filled = auction("bid");
        let mut bidders: BTreeMap<String, BidderTotals> = BTreeMap::new();
        let columns: [(&str, Column); 4] = [
            ("bourse_bidder_requests_total", |b| &mut b.requests),
            ("bourse_bidder_bid_answers_total", |b| &mut b.bid_answers),
            ("bourse_bidder_wins_total", |b| &mut b.wins),
            ("bourse_bidder_timeouts_total", |b| &mut b.timeouts),
        ];
        for (name, column) in columns {
            for (bidder, value) in families.by(name, "bidder") {
                *column(bidders.entry(bidder).or_default()) = value;
            }
        }
        for (bidder, kind, value) in
            families.by_pair("bourse_bidder_errors_total", "bidder", "kind")
        {
            if let Some(slot) = BIDDER_ERROR_KINDS.iter().position(|k| *k == kind) {
                bidders.entry(bidder).or_default().error_kinds[slot] = value;
            }
        }
        for (bidder, latency) in families.buckets_by(BIDDER_LATENCY_HISTOGRAM, "bidder") {
            bidders.entry(bidder).or_default().latency = latency;
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
            billed_by_placement: families
                .by("bourse_adserve_billed_impressions_total", "placement"),
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
    /// Cleared revenue (gross) per minute, in the exchange currency.
    pub(crate) revenue_per_min: f64,
    /// Clearing eCPM: the mean clearing CPM of the wins (docs/metrics.md, "Figures").
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
pub(super) fn quantile(q: f64, before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
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

/// Keeps the history; part of the instance's state, so every generation shows the same one.
#[derive(Default)]
pub(crate) struct Live {
    state: Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    history: History,
    /// Totals of the last five minutes or so (or the health window, if longer), oldest first.
    totals: VecDeque<Totals>,
    /// Each bidder's health over the health window, and since when it has held.
    health: BTreeMap<String, Health>,
    /// The window a bidder's health state covers; [`BIDDER_WINDOW`] unless configured.
    health_window: Option<Duration>,
}

/// A bidder's state over the last minute of calls (see [`Health::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthState {
    /// Nothing asked of it in the window.
    Idle,
    /// At most one call in twenty timed out or failed.
    Healthy,
    /// More than one in twenty, up to half.
    Degraded,
    /// More than half of its calls timed out or failed.
    Down,
}

impl HealthState {
    /// The word the admin shows (and styles by).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HealthState::Idle => "idle",
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Down => "down",
        }
    }
}

/// What one window saw of a bidder's calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct WindowCounts {
    pub(crate) requests: u64,
    pub(crate) timeouts: u64,
    pub(crate) errors: u64,
    /// Errors by kind (those that happened), in [`BIDDER_ERROR_KINDS`] order.
    pub(crate) kinds: Vec<(&'static str, u64)>,
    /// Median and 99th percentile response time of the completed calls, milliseconds.
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

impl WindowCounts {
    fn between(then: &BidderTotals, now: &BidderTotals) -> WindowCounts {
        let count = |now: f64, then: f64| (now - then).max(0.0) as u64;
        WindowCounts {
            requests: count(now.requests, then.requests),
            timeouts: count(now.timeouts, then.timeouts),
            errors: count(now.errors(), then.errors()),
            kinds: BIDDER_ERROR_KINDS
                .iter()
                .enumerate()
                .map(|(i, kind)| (*kind, count(now.error_kinds[i], then.error_kinds[i])))
                .filter(|(_, n)| *n > 0)
                .collect(),
            p50_ms: quantile(0.5, &then.latency, &now.latency).map(|s| s * 1000.0),
            p99_ms: quantile(0.99, &then.latency, &now.latency).map(|s| s * 1000.0),
        }
    }

    /// Calls that timed out or failed.
    pub(crate) fn failed(&self) -> u64 {
        self.timeouts + self.errors
    }
}

/// A bidder's health: its state over the last minute, since when that state holds, and what
/// the last minute and the last five saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Health {
    pub(crate) state: HealthState,
    /// Unix ms of the first sample that found this state.
    pub(crate) since_ms: u64,
    pub(crate) minute: WindowCounts,
    pub(crate) five_minutes: WindowCounts,
}

impl Health {
    /// When the state began, as the admin shows it: `YYYY-MM-DD HH:MM:SS UTC`.
    pub(crate) fn since_text(&self) -> String {
        format!("{} UTC", bourse_kernel::utc_datetime(self.since_ms / 1000))
    }

    /// The state of a window's counts: judged on the window alone, so a bidder that stops
    /// answering is down within a minute, and healthy again a minute after it recovers.
    pub(crate) fn judge(requests: u64, timeouts: u64, errors: u64) -> HealthState {
        if requests == 0 {
            return HealthState::Idle;
        }
        let failing = (timeouts + errors) as f64 / requests as f64;
        if failing > 0.5 {
            HealthState::Down
        } else if failing > 0.05 {
            HealthState::Degraded
        } else {
            HealthState::Healthy
        }
    }
}

/// What the registry counted between two samples, `seconds` apart, as a slice of history.
fn slice_between(
    history: &mut History,
    then: &Totals,
    now: &Totals,
    start_ms: u64,
    seconds: f64,
) -> Slice {
    let count = |now: f64, then: f64| (now - then).max(0.0).min(f64::from(u32::MAX)) as u32;
    let buckets = |then: &[(f64, f64)], now: &[(f64, f64)]| -> Box<[u32]> {
        now.iter()
            .enumerate()
            .map(|(i, &(_, n))| count(n, then.get(i).map_or(0.0, |b| b.1)))
            .collect()
    };
    if history.auction_bounds.is_empty() {
        history.auction_bounds = now.latency.iter().map(|b| b.0).collect();
    }
    let mut bidders = Vec::new();
    for (name, b) in &now.bidders {
        let before = then.bidders.get(name).cloned().unwrap_or_default();
        if history.bidder_bounds.is_empty() && !b.latency.is_empty() {
            history.bidder_bounds = b.latency.iter().map(|b| b.0).collect();
        }
        let slice = BidderSlice {
            requests: count(b.requests, before.requests),
            bid_answers: count(b.bid_answers, before.bid_answers),
            wins: count(b.wins, before.wins),
            timeouts: count(b.timeouts, before.timeouts),
            errors: std::array::from_fn(|i| count(b.error_kinds[i], before.error_kinds[i])),
            priced_wins: count(b.priced_wins, before.priced_wins),
            win_value_cpm: (b.win_value_cpm - before.win_value_cpm).max(0.0),
            latency: buckets(&before.latency, &b.latency),
        };
        // A quiet bidder's second costs nothing.
        let quiet = slice.requests == 0
            && slice.wins == 0
            && slice.timeouts == 0
            && slice.errors.iter().all(|n| *n == 0)
            && slice.latency.last().is_none_or(|n| *n == 0);
        if quiet {
            continue;
        }
        if let Some(id) = history.bidder_names.id(name) {
            bidders.push((id, slice));
        }
    }
    bidders.sort_by_key(|(id, _)| *id);
    let mut billed: Vec<(u16, u32)> = now
        .billed_by_placement
        .iter()
        .filter_map(|(placement, n)| {
            let before = then
                .billed_by_placement
                .get(placement)
                .copied()
                .unwrap_or(0.0);
            let added = count(*n, before);
            (added > 0).then(|| history.placement_names.id(placement).map(|id| (id, added)))?
        })
        .collect();
    billed.sort_by_key(|(id, _)| *id);
    Slice {
        start_ms,
        secs: seconds as f32,
        auctions: count(now.auctions, then.auctions),
        filled: count(now.filled, then.filled),
        cleared: (now.cleared - then.cleared).max(0.0),
        priced_wins: count(now.priced_wins, then.priced_wins),
        win_value_cpm: (now.win_value_cpm - then.win_value_cpm).max(0.0),
        latency: buckets(&then.latency, &now.latency),
        bidders,
        billed,
    }
}

/// A second of the live cards, from its slice.
fn point_of(history: &History, slice: &Slice) -> Point {
    let figures = history.slice_figures(slice);
    Point {
        t: slice.start_ms + (f64::from(slice.secs) * 1000.0) as u64,
        auctions_per_sec: figures.get("auctions_per_sec").unwrap_or(0.0),
        p50_ms: figures.get("p50_ms"),
        p99_ms: figures.get("p99_ms"),
        fill_pct: figures.get("fill_pct"),
        revenue_per_min: figures.get("revenue_per_min").unwrap_or(0.0),
        // Clearing eCPM from the win-price histogram alone: the cleared-value counter and the
        // win counters are read at slightly different moments, and an auction finishing
        // between them would skew a point's mean.
        ecpm: figures.get("ecpm"),
    }
}

impl LiveState {
    fn health_window(&self) -> Duration {
        self.health_window.unwrap_or(BIDDER_WINDOW)
    }

    /// The oldest kept totals no older than `window` (and a second), if any.
    fn window_start(&self, window: Duration) -> Option<&Totals> {
        let last = self.totals.back()?;
        self.totals
            .iter()
            .find(|t| last.at.duration_since(t.at) <= window + Duration::from_secs(1))
    }

    /// Judges every bidder on the health window, keeping the time a state began.
    fn judge_health(&mut self, now_ms: u64) {
        let (Some(minute_ago), Some(long_ago), Some(last)) = (
            self.window_start(self.health_window()),
            self.window_start(LONG_WINDOW),
            self.totals.back(),
        ) else {
            return;
        };
        let mut judged = BTreeMap::new();
        for (name, now) in &last.bidders {
            let counts = |start: &Totals| {
                let then = start.bidders.get(name).cloned().unwrap_or_default();
                WindowCounts::between(&then, now)
            };
            let (minute, five_minutes) = (counts(minute_ago), counts(long_ago));
            let state = Health::judge(minute.requests, minute.timeouts, minute.errors);
            let since_ms = match self.health.get(name) {
                Some(previous) if previous.state == state => previous.since_ms,
                _ => now_ms,
            };
            judged.insert(
                name.clone(),
                Health {
                    state,
                    since_ms,
                    minute,
                    five_minutes,
                },
            );
        }
        self.health = judged;
    }
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
        let state = &mut *state;
        if let Some(last) = state.totals.back() {
            let seconds = now.duration_since(last.at).as_secs_f64();
            let end_ms = bourse_kernel::unix_now_ms();
            let start_ms = end_ms.saturating_sub((seconds * 1000.0) as u64);
            let slice = slice_between(&mut state.history, last, &totals, start_ms, seconds);
            state.history.push(slice);
        }
        state.totals.push_back(totals);
        let kept = LONG_WINDOW.max(state.health_window()) + Duration::from_secs(1);
        while state
            .totals
            .front()
            .is_some_and(|first| now.duration_since(first.at) > kept)
        {
            state.totals.pop_front();
        }
        state.judge_health(bourse_kernel::unix_now_ms());
    }

    /// Each bidder's health over the health window, by name.
    pub(crate) fn health(&self) -> BTreeMap<String, Health> {
        self.state.lock().health.clone()
    }

    /// Sets the window a bidder's health covers (from the config in force).
    pub(crate) fn set_health_window(&self, window: Duration) {
        self.state.lock().health_window = Some(window);
    }

    /// The window a bidder's health covers.
    pub(crate) fn health_window(&self) -> Duration {
        self.state.lock().health_window()
    }

    /// A chart's series and totals over `range`, with the period before when `compare`.
    pub(crate) fn series(&self, scope: &Scope, range: Range, compare: bool) -> SeriesView {
        let now_ms = bourse_kernel::unix_now_ms();
        self.state
            .lock()
            .history
            .view(scope, range, now_ms, compare)
    }

    /// The points since `after` (Unix ms; 0 for all) and the top bidders of the last minute.
    pub(crate) fn view(&self, after: u64) -> LiveView {
        let state = self.state.lock();
        let points: Vec<Point> = state
            .history
            // A point ends a second or so after its slice starts.
            .seconds_after(after.saturating_sub(5_000))
            .map(|slice| point_of(&state.history, slice))
            .filter(|p| p.t > after)
            .collect();
        let (Some(first), Some(last)) = (state.window_start(BIDDER_WINDOW), state.totals.back())
        else {
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
                    // Answers with a bid per call (at most 100%), not bids per call.
                    bid_rate_pct: figures::percent(figures::bid_rate(
                        now.bid_answers - then.bid_answers,
                        requests,
                    )),
                    timeout_pct: figures::percent(figures::share(
                        now.timeouts - then.timeouts,
                        requests,
                    )),
                    errors: (now.errors() - then.errors()) as u64,
                    avg_win_cpm: figures::clearing_ecpm(
                        figures::revenue_of_cpm(now.win_value_cpm - then.win_value_cpm),
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

    #[test]
    fn a_bidder_is_down_while_most_of_its_last_minute_fails_and_healthy_once_it_passes() {
        let registry = prometheus::Registry::new();
        let counter = |name: &str| {
            let counter =
                prometheus::IntCounterVec::new(prometheus::Opts::new(name, "c"), &["bidder"])
                    .unwrap();
            registry.register(Box::new(counter.clone())).unwrap();
            counter
        };
        let requests = counter("bourse_bidder_requests_total");
        let errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new("bourse_bidder_errors_total", "e"),
            &["bidder", "kind"],
        )
        .unwrap();
        registry.register(Box::new(errors.clone())).unwrap();
        let errors = errors.with_label_values(&["dsp", "connect"]);
        let live = Live::default();
        // Move every kept sample one step into the past, as a second of ticks would.
        let age = |live: &Live, by: Duration| {
            for totals in live.state.lock().totals.iter_mut() {
                totals.at -= by;
            }
        };
        // A second passes and the sampler reads the registry.
        let tick = |live: &Live| {
            age(live, Duration::from_secs(1));
            live.sample(&registry);
        };
        let latency = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("bourse_bidder_response_duration_seconds", "l")
                .buckets(vec![0.005, 0.01, 0.025, 0.05]),
            &["bidder"],
        )
        .unwrap();
        registry.register(Box::new(latency.clone())).unwrap();
        // A healthy start: 100 calls, none failing, answered in 5 to 10 ms.
        live.sample(&registry);
        requests.with_label_values(&["dsp"]).inc_by(100);
        for _ in 0..100 {
            latency.with_label_values(&["dsp"]).observe(0.008);
        }
        tick(&live);
        let healthy = live.health()["dsp"].clone();
        assert_eq!(healthy.state, HealthState::Healthy, "{healthy:?}");
        let (p50, p99) = (
            healthy.minute.p50_ms.unwrap(),
            healthy.minute.p99_ms.unwrap(),
        );
        assert!(
            (5.0..=10.0).contains(&p50) && p50 <= p99 && p99 <= 10.0,
            "{healthy:?}"
        );
        // It stops answering: the next 300 calls all fail, three times what it answered, so
        // even with the good calls still in the window it is down.
        requests.with_label_values(&["dsp"]).inc_by(300);
        errors.inc_by(300);
        live.state.lock().health.get_mut("dsp").unwrap().since_ms -= 5_000;
        let healthy_since = live.health()["dsp"].since_ms;
        tick(&live);
        let down = live.health()["dsp"].clone();
        assert_eq!(down.state, HealthState::Down, "{down:?}");
        assert_eq!((down.minute.requests, down.minute.errors), (400, 300));
        assert_eq!(down.minute.kinds, vec![("connect", 300)]);
        assert!(
            down.since_ms > healthy_since,
            "a new state starts its own time"
        );
        // Still down a tick later: the time it began is kept.
        requests.with_label_values(&["dsp"]).inc_by(10);
        errors.inc_by(10);
        tick(&live);
        assert_eq!(live.health()["dsp"].since_ms, down.since_ms);
        // It recovers. Once the failures are older than the minute, only good calls remain.
        age(&live, BIDDER_WINDOW + Duration::from_secs(5));
        live.sample(&registry);
        requests.with_label_values(&["dsp"]).inc_by(50);
        tick(&live);
        let recovered = live.health()["dsp"].clone();
        assert_eq!(recovered.state, HealthState::Healthy, "{recovered:?}");
        assert_eq!(
            (recovered.minute.requests, recovered.minute.errors),
            (50, 0)
        );
        // The five minutes still hold the outage.
        assert_eq!(
            (
                recovered.five_minutes.requests,
                recovered.five_minutes.errors
            ),
            (460, 310)
        );
    }

    #[test]
    fn health_thresholds() {
        assert_eq!(Health::judge(0, 0, 0), HealthState::Idle);
        assert_eq!(Health::judge(100, 5, 0), HealthState::Healthy);
        assert_eq!(Health::judge(100, 3, 3), HealthState::Degraded);
        assert_eq!(Health::judge(100, 30, 21), HealthState::Down);
        assert_eq!(Health::judge(100, 0, 50), HealthState::Degraded);
    }
}
