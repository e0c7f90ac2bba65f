//! The live sampler's history, behind the admin's charts: what each second added to the
//! exchange's counters (auctions, fills, cleared value, wins, latency buckets; per bidder, and
//! billed impressions per placement), kept per second for 15 minutes and rolled up per minute
//! for 7 days, and the series and totals a chart asks for over a range, compared with the
//! period before it. Memory is bounded: counts are `u32` per slice, names are interned (at most
//! [`MAX_NAMES`]), and an active bidder costs about 150 bytes a minute, some 1.5 MB over the 7
//! days (the exchange's own figures as much again).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bourse_figures as dictionary;

use crate::metrics::BIDDER_ERROR_KINDS;

/// Per-second slices kept: 15 minutes.
pub(crate) const SECONDS_KEPT: usize = 15 * 60;
/// Per-minute roll-ups kept: 7 days.
pub(crate) const MINUTES_KEPT: usize = 7 * 24 * 60;
/// Bidder and placement names remembered; activity of names beyond these is not kept.
pub(crate) const MAX_NAMES: usize = 1024;
/// A chart's points stay at most this many, whatever its range...
const TARGET_POINTS: u64 = 720;
/// ...at the first of these steps (seconds) that keeps them so.
const STEPS: [u64; 7] = [60, 120, 300, 600, 900, 1800, 3600];

/// What one bidder added in a slice.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BidderSlice {
    pub(crate) requests: u32,
    pub(crate) bid_answers: u32,
    pub(crate) wins: u32,
    pub(crate) timeouts: u32,
    /// Errors by kind, in [`BIDDER_ERROR_KINDS`] order.
    pub(crate) errors: [u32; BIDDER_ERROR_KINDS.len()],
    pub(crate) priced_wins: u32,
    /// Sum of the wins' clearing CPMs.
    pub(crate) win_value_cpm: f64,
    /// Cumulative response-time bucket counts (bounds in [`History::bidder_bounds`]).
    pub(crate) latency: Box<[u32]>,
}

/// What the exchange's counters added over one interval: a second as sampled, or a minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Slice {
    /// Unix ms of the interval's start.
    pub(crate) start_ms: u64,
    /// Its length in seconds, as measured.
    pub(crate) secs: f32,
    pub(crate) auctions: u32,
    pub(crate) filled: u32,
    /// Cleared value, gross, in the exchange currency.
    pub(crate) cleared: f64,
    pub(crate) priced_wins: u32,
    pub(crate) win_value_cpm: f64,
    /// Cumulative auction-duration bucket counts (bounds in [`History::auction_bounds`]).
    pub(crate) latency: Box<[u32]>,
    /// Bidders that were called or won, by interned name, sorted.
    pub(crate) bidders: Vec<(u16, BidderSlice)>,
    /// Billed impressions by interned placement id, sorted.
    pub(crate) billed: Vec<(u16, u32)>,
}

fn add_counts(into: &mut Box<[u32]>, from: &[u32]) {
    if into.len() < from.len() {
        let mut grown = vec![0; from.len()];
        grown[..into.len()].copy_from_slice(into);
        *into = grown.into_boxed_slice();
    }
    for (slot, n) in into.iter_mut().zip(from) {
        *slot = slot.saturating_add(*n);
    }
}

impl BidderSlice {
    fn absorb(&mut self, other: &BidderSlice) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bid_answers = self.bid_answers.saturating_add(other.bid_answers);
        self.wins = self.wins.saturating_add(other.wins);
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
        for (slot, n) in self.errors.iter_mut().zip(other.errors) {
            *slot = slot.saturating_add(n);
        }
        self.priced_wins = self.priced_wins.saturating_add(other.priced_wins);
        self.win_value_cpm += other.win_value_cpm;
        add_counts(&mut self.latency, &other.latency);
    }
}

/// Adds `other`'s entries into a sorted list of (id, value).
fn absorb_by_id<T: Clone>(into: &mut Vec<(u16, T)>, other: &[(u16, T)], add: impl Fn(&mut T, &T)) {
    for (id, value) in other {
        match into.binary_search_by_key(id, |(i, _)| *i) {
            Ok(at) => add(&mut into[at].1, value),
            Err(at) => into.insert(at, (*id, value.clone())),
        }
    }
}

impl Slice {
    /// Adds a later interval into this one (a minute's roll-up of its seconds).
    fn absorb(&mut self, other: &Slice) {
        self.secs += other.secs;
        self.auctions = self.auctions.saturating_add(other.auctions);
        self.filled = self.filled.saturating_add(other.filled);
        self.cleared += other.cleared;
        self.priced_wins = self.priced_wins.saturating_add(other.priced_wins);
        self.win_value_cpm += other.win_value_cpm;
        add_counts(&mut self.latency, &other.latency);
        absorb_by_id(&mut self.bidders, &other.bidders, BidderSlice::absorb);
        absorb_by_id(&mut self.billed, &other.billed, |a, b| {
            *a = a.saturating_add(*b)
        });
    }
}

/// Names given small ids, so a slice does not carry strings.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<str>, u16>,
}

impl Interner {
    /// The name's id; `None` once [`MAX_NAMES`] are taken.
    pub(crate) fn id(&mut self, name: &str) -> Option<u16> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        if self.ids.len() >= MAX_NAMES {
            return None;
        }
        let id = self.ids.len() as u16;
        self.ids.insert(name.into(), id);
        Some(id)
    }

    /// The id of a name already seen.
    fn get(&self, name: &str) -> Option<u16> {
        self.ids.get(name).copied()
    }
}

/// The slices of the last 15 minutes and the minutes of the last 7 days.
#[derive(Debug, Default)]
pub(crate) struct History {
    seconds: VecDeque<Slice>,
    minutes: VecDeque<Slice>,
    /// The minute being rolled up, from the seconds that fell in it so far.
    open_minute: Option<Slice>,
    pub(crate) bidder_names: Interner,
    pub(crate) placement_names: Interner,
    /// Upper bounds of the auction-duration buckets, seconds.
    pub(crate) auction_bounds: Vec<f64>,
    /// Upper bounds of the bidder response-time buckets, seconds.
    pub(crate) bidder_bounds: Vec<f64>,
    /// Unix ms of the first slice: when this instance began sampling.
    started_ms: Option<u64>,
}

impl History {
    /// Adds a second's slice, rolling the minute it closes into the minutes.
    pub(crate) fn push(&mut self, slice: Slice) {
        self.started_ms.get_or_insert(slice.start_ms);
        let minute_ms = slice.start_ms - slice.start_ms % 60_000;
        match &mut self.open_minute {
            Some(open) if open.start_ms == minute_ms => open.absorb(&slice),
            open => {
                if let Some(closed) = open.take() {
                    self.minutes.push_back(closed);
                    if self.minutes.len() > MINUTES_KEPT {
                        self.minutes.pop_front();
                    }
                }
                let mut minute = slice.clone();
                minute.start_ms = minute_ms;
                *open = Some(minute);
            }
        }
        self.seconds.push_back(slice);
        if self.seconds.len() > SECONDS_KEPT {
            self.seconds.pop_front();
        }
    }

    /// The per-second slices starting after `after_ms`.
    pub(crate) fn seconds_after(&self, after_ms: u64) -> impl Iterator<Item = &Slice> {
        self.seconds.iter().filter(move |s| s.start_ms > after_ms)
    }

    /// The minutes, the open one last.
    fn all_minutes(&self) -> impl Iterator<Item = &Slice> {
        self.minutes.iter().chain(self.open_minute.iter())
    }

    /// The series and totals of `scope` over the `range` ending at `now_ms`, and of the period
    /// before it when `compare` is asked.
    pub(crate) fn view(
        &self,
        scope: &Scope,
        range: Range,
        now_ms: u64,
        compare: bool,
    ) -> SeriesView {
        let span_ms = range.secs() * 1000;
        let from = now_ms.saturating_sub(span_ms);
        // Seconds when they cover the range (15 minutes), minutes otherwise.
        let by_second = range == Range::Minutes15;
        let step_secs = if by_second {
            1
        } else {
            let least = range.secs().div_ceil(TARGET_POINTS);
            STEPS.into_iter().find(|s| *s >= least).unwrap_or(3600)
        };
        let pick = |from: u64, to: u64, seconds: bool| -> Vec<&Slice> {
            let source: Box<dyn Iterator<Item = &Slice>> = if seconds {
                Box::new(self.seconds.iter())
            } else {
                Box::new(self.all_minutes())
            };
            source
                .filter(|s| s.start_ms >= from && s.start_ms < to)
                .collect()
        };
        let scope = self.resolve(scope);
        let current = pick(from, now_ms + 1, by_second);
        let held_since = if by_second {
            self.seconds.front().map(|s| s.start_ms)
        } else {
            self.all_minutes().next().map(|s| s.start_ms)
        };
        let previous = compare.then(|| {
            // The period before, by minute (seconds are not kept that long), moved onto the
            // current period's time axis.
            let slices = pick(from.saturating_sub(span_ms), from, false);
            let step = if by_second { 60 } else { step_secs };
            self.columns(&scope, &slices, from.saturating_sub(span_ms), step, span_ms)
        });
        let totals = |slices: &[&Slice]| self.figures(&scope, &self.sum(&scope, slices));
        let previous_totals =
            compare.then(|| totals(&pick(from.saturating_sub(span_ms), from, false)));
        SeriesView {
            range: range.key(),
            step_secs,
            from_ms: from,
            to_ms: now_ms,
            held_since_ms: held_since,
            started_ms: self.started_ms,
            note: note(from, held_since, self.started_ms),
            current: self.columns(&scope, &current, from, step_secs, 0),
            previous,
            totals: totals(&current),
            previous_totals,
        }
    }

    /// A scope's names turned into ids (names never seen match nothing).
    fn resolve(&self, scope: &Scope) -> ResolvedScope {
        match scope {
            Scope::Exchange => ResolvedScope::Exchange,
            Scope::Bidder(name) => ResolvedScope::Bidder(self.bidder_names.get(name)),
            Scope::Placements(ids) => ResolvedScope::Placements(
                ids.iter()
                    .filter_map(|id| self.placement_names.get(id))
                    .collect(),
            ),
        }
    }

    fn sum(&self, scope: &ResolvedScope, slices: &[&Slice]) -> Sum {
        let mut sum = Sum::default();
        for slice in slices {
            sum.add(scope, slice);
        }
        sum
    }

    /// The figures of each step from `from` (slices grouped by step), shifted by `shift_ms`.
    fn columns(
        &self,
        scope: &ResolvedScope,
        slices: &[&Slice],
        from: u64,
        step_secs: u64,
        shift_ms: u64,
    ) -> Columns {
        let step_ms = step_secs * 1000;
        let mut steps: BTreeMap<u64, Sum> = BTreeMap::new();
        for slice in slices {
            let at = from + (slice.start_ms - from) / step_ms * step_ms;
            steps.entry(at).or_default().add(scope, slice);
        }
        let mut columns = Columns::default();
        let mut last: Option<u64> = None;
        for (at, sum) in steps {
            // A step without any sample (the node was down) breaks the line.
            if last.is_some_and(|last| at - last > step_ms) {
                columns.push_gap(last.unwrap_or_default() + step_ms + shift_ms);
            }
            columns.push((at + shift_ms) / 1000, self.figures(scope, &sum));
            last = Some(at);
        }
        columns
    }

    /// The exchange's figures over one slice: the overview's live cards, on the same formulas
    /// as its charts.
    pub(crate) fn slice_figures(&self, slice: &Slice) -> Figures {
        let mut sum = Sum::default();
        sum.add(&ResolvedScope::Exchange, slice);
        self.figures(&ResolvedScope::Exchange, &sum)
    }

    fn figures(&self, scope: &ResolvedScope, sum: &Sum) -> Figures {
        // The dictionary's figures (docs/metrics.md, "Figures") come from `bourse_figures`.
        let per_sec = |n: f64| dictionary::share(n, sum.secs);
        let per_min = |n: f64| dictionary::per_minute(n, sum.secs);
        let clearing_ecpm = |cpm_sum: f64, wins: f64| {
            dictionary::clearing_ecpm(dictionary::revenue_of_cpm(cpm_sum), wins)
        };
        let ms = |q: f64, bounds: &[f64], counts: &[f64]| {
            quantile_of(q, bounds, counts).map(|s| s * 1000.0)
        };
        let mut figures = Figures::new();
        match scope {
            ResolvedScope::Exchange => {
                figures.put("auctions", Some(sum.auctions));
                figures.put("auctions_per_sec", per_sec(sum.auctions));
                figures.put(
                    "fill_pct",
                    dictionary::percent(dictionary::fill_rate(
                        sum.filled,
                        (sum.auctions - sum.filled).max(0.0),
                    )),
                );
                figures.put("cleared", Some(sum.cleared));
                figures.put("revenue_per_min", per_min(sum.cleared));
                figures.put("ecpm", clearing_ecpm(sum.win_value_cpm, sum.priced_wins));
                figures.put("p50_ms", ms(0.5, &self.auction_bounds, &sum.latency));
                figures.put("p99_ms", ms(0.99, &self.auction_bounds, &sum.latency));
            }
            ResolvedScope::Bidder(_) => {
                let b = &sum.bidder;
                let errors: f64 = b.errors.iter().sum();
                figures.put("requests", Some(b.requests));
                figures.put("requests_per_sec", per_sec(b.requests));
                figures.put(
                    "bid_rate_pct",
                    dictionary::percent(dictionary::bid_rate(b.bid_answers, b.requests)),
                );
                figures.put("wins", Some(b.wins));
                figures.put(
                    "win_rate_pct",
                    dictionary::percent(dictionary::win_rate(b.wins, b.requests)),
                );
                let cleared = dictionary::revenue_of_cpm(b.win_value_cpm);
                figures.put("cleared", Some(cleared));
                figures.put("revenue_per_min", per_min(cleared));
                figures.put("ecpm", clearing_ecpm(b.win_value_cpm, b.priced_wins));
                figures.put("p50_ms", ms(0.5, &self.bidder_bounds, &b.latency));
                figures.put("p99_ms", ms(0.99, &self.bidder_bounds, &b.latency));
                figures.put("timeouts", Some(b.timeouts));
                figures.put("errors", Some(errors));
                figures.put(
                    "failed_pct",
                    dictionary::percent(dictionary::share(b.timeouts + errors, b.requests)),
                );
                figures.put("failed_per_sec", per_sec(b.timeouts + errors));
                for (kind, n) in BIDDER_ERROR_KINDS.iter().zip(b.errors) {
                    figures.put(error_key(kind), Some(n));
                }
            }
            ResolvedScope::Placements(_) => {
                figures.put("billed", Some(sum.billed));
                figures.put("billed_per_min", per_min(sum.billed));
            }
        }
        figures
    }
}

/// The key of an error kind's count among a bidder's figures.
pub(crate) fn error_key(kind: &str) -> &'static str {
    match kind {
        "bad_input" => "errors_bad_input",
        "bad_response" => "errors_bad_response",
        "http_status" => "errors_http_status",
        "connect" => "errors_connect",
        "body" => "errors_body",
        _ => "errors_other",
    }
}

/// What the page says when the range reaches back before the data held.
fn note(from: u64, held_since: Option<u64>, started: Option<u64>) -> Option<String> {
    let Some(held) = held_since else {
        return Some("No data yet: the first sample is a second away.".to_owned());
    };
    if held <= from + 60_000 {
        return None;
    }
    let why = if Some(held) <= started.map(|s| s + 60_000) {
        "node start"
    } else {
        "the oldest kept"
    };
    Some(format!(
        "Data since {} UTC ({why}).",
        bourse_kernel::utc_datetime(held / 1000)
    ))
}

/// The `q` quantile of bucket counts (cumulative) with these upper bounds, seconds,
/// interpolated inside the bucket as PromQL's `histogram_quantile` does.
fn quantile_of(q: f64, bounds: &[f64], counts: &[f64]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = bounds.iter().copied().zip(counts.iter().copied()).collect();
    super::live::quantile(q, &[], &pairs)
}

/// Which figures a chart shows: the exchange's, one bidder's, or some placements' (a
/// publisher's are those of its placements).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scope {
    Exchange,
    Bidder(String),
    Placements(Vec<String>),
}

enum ResolvedScope {
    Exchange,
    Bidder(Option<u16>),
    Placements(Vec<u16>),
}

/// A time range the picker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Range {
    Minutes15,
    Hour1,
    Hours6,
    Hours24,
    Days7,
}

impl Range {
    pub(crate) const ALL: [Range; 5] = [
        Range::Minutes15,
        Range::Hour1,
        Range::Hours6,
        Range::Hours24,
        Range::Days7,
    ];

    /// From a query value; anything else is the default, 15 minutes.
    pub(crate) fn parse(text: Option<&str>) -> Range {
        Range::ALL
            .into_iter()
            .find(|r| Some(r.key()) == text)
            .unwrap_or(Range::Minutes15)
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Range::Minutes15 => "15m",
            Range::Hour1 => "1h",
            Range::Hours6 => "6h",
            Range::Hours24 => "24h",
            Range::Days7 => "7d",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Range::Minutes15 => "15 minutes",
            Range::Hour1 => "1 hour",
            Range::Hours6 => "6 hours",
            Range::Hours24 => "24 hours",
            Range::Days7 => "7 days",
        }
    }

    pub(crate) fn secs(self) -> u64 {
        match self {
            Range::Minutes15 => 15 * 60,
            Range::Hour1 => 3600,
            Range::Hours6 => 6 * 3600,
            Range::Hours24 => 86_400,
            Range::Days7 => 7 * 86_400,
        }
    }
}

/// Sums over some slices, in floats (a week of counts may not fit a slice's `u32`).
#[derive(Debug, Default)]
struct Sum {
    secs: f64,
    auctions: f64,
    filled: f64,
    cleared: f64,
    priced_wins: f64,
    win_value_cpm: f64,
    latency: Vec<f64>,
    bidder: BidderSum,
    billed: f64,
}

#[derive(Debug, Default)]
struct BidderSum {
    requests: f64,
    bid_answers: f64,
    wins: f64,
    timeouts: f64,
    errors: [f64; BIDDER_ERROR_KINDS.len()],
    priced_wins: f64,
    win_value_cpm: f64,
    latency: Vec<f64>,
}

fn add_floats(into: &mut Vec<f64>, from: &[u32]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0.0);
    }
    for (slot, n) in into.iter_mut().zip(from) {
        *slot += f64::from(*n);
    }
}

impl Sum {
    fn add(&mut self, scope: &ResolvedScope, slice: &Slice) {
        self.secs += f64::from(slice.secs);
        match scope {
            ResolvedScope::Exchange => {
                self.auctions += f64::from(slice.auctions);
                self.filled += f64::from(slice.filled);
                self.cleared += slice.cleared;
                self.priced_wins += f64::from(slice.priced_wins);
                self.win_value_cpm += slice.win_value_cpm;
                add_floats(&mut self.latency, &slice.latency);
            }
            ResolvedScope::Bidder(id) => {
                let Some(b) = id.and_then(|id| {
                    slice
                        .bidders
                        .binary_search_by_key(&id, |(i, _)| *i)
                        .ok()
                        .map(|at| &slice.bidders[at].1)
                }) else {
                    return;
                };
                let sum = &mut self.bidder;
                sum.requests += f64::from(b.requests);
                sum.bid_answers += f64::from(b.bid_answers);
                sum.wins += f64::from(b.wins);
                sum.timeouts += f64::from(b.timeouts);
                for (slot, n) in sum.errors.iter_mut().zip(b.errors) {
                    *slot += f64::from(n);
                }
                sum.priced_wins += f64::from(b.priced_wins);
                sum.win_value_cpm += b.win_value_cpm;
                add_floats(&mut sum.latency, &b.latency);
            }
            ResolvedScope::Placements(ids) => {
                self.billed += slice
                    .billed
                    .iter()
                    .filter(|(id, _)| ids.contains(id))
                    .map(|(_, n)| f64::from(*n))
                    .sum::<f64>();
            }
        }
    }
}

/// Named figures, in the order they were put.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct Figures(Vec<(&'static str, Option<f64>)>);

impl Figures {
    fn new() -> Figures {
        Figures(Vec::new())
    }

    fn put(&mut self, name: &'static str, value: Option<f64>) {
        self.0.push((name, value.filter(|v| v.is_finite())));
    }

    /// A figure by name; `None` when it has no value (nothing to divide by) or no such name.
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    }
}

/// Series as columns, the way uPlot takes them: `t` (Unix seconds) and one column per figure,
/// `null` where a figure has no value.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Columns {
    pub(crate) t: Vec<u64>,
    #[serde(flatten)]
    pub(crate) figures: BTreeMap<&'static str, Vec<Option<f64>>>,
}

impl Columns {
    fn push(&mut self, t: u64, figures: Figures) {
        let at = self.t.len();
        self.t.push(t);
        for (name, value) in figures.0 {
            let column = self.figures.entry(name).or_default();
            column.resize(at, None);
            column.push(value);
        }
    }

    /// A point with no value anywhere, so the line breaks there.
    fn push_gap(&mut self, t_ms: u64) {
        self.t.push(t_ms / 1000);
        let len = self.t.len();
        for column in self.figures.values_mut() {
            column.resize(len, None);
        }
    }
}

/// What `series.json` answers, and what a page's tables show without script.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SeriesView {
    pub(crate) range: &'static str,
    pub(crate) step_secs: u64,
    pub(crate) from_ms: u64,
    pub(crate) to_ms: u64,
    /// The oldest data held for this range's resolution, if any.
    pub(crate) held_since_ms: Option<u64>,
    pub(crate) started_ms: Option<u64>,
    /// Set when the range reaches back before the data held: what the chart really covers.
    pub(crate) note: Option<String>,
    pub(crate) current: Columns,
    /// The period before, on the current period's time axis.
    pub(crate) previous: Option<Columns>,
    pub(crate) totals: Figures,
    pub(crate) previous_totals: Option<Figures>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(start_ms: u64, auctions: u32, bidder: Option<(u16, u32, u32)>) -> Slice {
        Slice {
            start_ms,
            secs: 1.0,
            auctions,
            filled: auctions / 2,
            cleared: f64::from(auctions) * 0.001,
            priced_wins: auctions / 2,
            win_value_cpm: f64::from(auctions),
            latency: vec![auctions / 2, auctions].into_boxed_slice(),
            bidders: bidder
                .map(|(id, requests, connect)| {
                    let mut errors = [0; BIDDER_ERROR_KINDS.len()];
                    let at = BIDDER_ERROR_KINDS
                        .iter()
                        .position(|k| *k == "connect")
                        .unwrap();
                    errors[at] = connect;
                    vec![(
                        id,
                        BidderSlice {
                            requests,
                            errors,
                            ..BidderSlice::default()
                        },
                    )]
                })
                .unwrap_or_default(),
            billed: vec![(0, 1)],
        }
    }

    /// A history of `minutes` minutes of one auction a second, starting at minute 1000.
    fn history(minutes: u64) -> (History, u64) {
        let mut history = History {
            auction_bounds: vec![0.001, f64::INFINITY],
            ..History::default()
        };
        history.bidder_names.id("dsp");
        history.placement_names.id("top");
        let start = 1000 * 60_000;
        for s in 0..minutes * 60 {
            history.push(second(start + s * 1000, 10, Some((0, 4, 1))));
        }
        (history, start + minutes * 60_000)
    }

    #[test]
    fn seconds_roll_up_into_minutes_and_both_stay_bounded() {
        let (history, _) = history(20);
        assert_eq!(history.seconds.len(), SECONDS_KEPT);
        // 19 closed minutes, the 20th still open.
        assert_eq!(history.minutes.len(), 19);
        let minute = &history.minutes[0];
        assert_eq!((minute.auctions, minute.secs), (600, 60.0));
        assert_eq!(minute.bidders[0].1.requests, 240);
        assert_eq!(minute.billed, vec![(0, 60)]);
        assert_eq!(&*minute.latency, &[300, 600]);
    }

    #[test]
    fn a_range_gives_rates_per_step_and_says_when_it_holds_less() {
        let (history, now) = history(30);
        let view = history.view(&Scope::Exchange, Range::Minutes15, now, false);
        assert_eq!(view.step_secs, 1);
        assert_eq!(view.current.t.len(), SECONDS_KEPT);
        assert_eq!(view.current.figures["auctions_per_sec"][0], Some(10.0));
        assert_eq!(view.totals.get("auctions"), Some(9000.0));
        assert_eq!(view.totals.get("fill_pct"), Some(50.0));
        assert_eq!(view.totals.get("ecpm"), Some(2.0));
        assert!(view.note.is_none(), "{:?}", view.note);
        // An hour asked of 30 minutes of data: by minute, and the page says since when.
        let view = history.view(&Scope::Exchange, Range::Hour1, now, true);
        assert_eq!(view.step_secs, 60);
        assert_eq!(view.current.t.len(), 30);
        let revenue = view.current.figures["revenue_per_min"][0].unwrap();
        assert!((revenue - 0.6).abs() < 1e-9, "{revenue}");
        let note = view.note.unwrap();
        assert!(
            note.starts_with("Data since ") && note.ends_with("UTC (node start)."),
            "{note}"
        );
        // The previous hour holds nothing: its totals have no rates.
        assert_eq!(view.previous_totals.unwrap().get("auctions_per_sec"), None);
        // 7 days step by 15 minutes: 672 points.
        let view = history.view(&Scope::Exchange, Range::Days7, now, false);
        assert_eq!(view.step_secs, 900);
    }

    #[test]
    fn compare_puts_the_period_before_on_the_current_time_axis() {
        let (history, now) = history(30);
        let view = history.view(&Scope::Exchange, Range::Minutes15, now, true);
        let previous = view.previous.unwrap();
        // The previous 15 minutes, by minute, shifted 15 minutes on.
        assert_eq!(previous.t.len(), 15);
        assert_eq!(previous.t[0] * 1000, view.from_ms);
        assert_eq!(previous.figures["auctions_per_sec"][0], Some(10.0));
        assert_eq!(view.previous_totals.unwrap().get("auctions"), Some(9000.0));
    }

    #[test]
    fn a_bidder_and_placements_have_their_own_figures() {
        let (history, now) = history(2);
        let bidder = history.view(&Scope::Bidder("dsp".into()), Range::Minutes15, now, false);
        assert_eq!(bidder.totals.get("requests"), Some(480.0));
        assert_eq!(bidder.totals.get("errors_connect"), Some(120.0));
        assert_eq!(bidder.totals.get("failed_pct"), Some(25.0));
        let unknown = history.view(
            &Scope::Bidder("nobody".into()),
            Range::Minutes15,
            now,
            false,
        );
        assert_eq!(unknown.totals.get("requests"), Some(0.0));
        let placements = history.view(
            &Scope::Placements(vec!["top".into(), "unknown".into()]),
            Range::Hour1,
            now,
            false,
        );
        assert_eq!(placements.totals.get("billed"), Some(120.0));
        assert_eq!(placements.totals.get("billed_per_min"), Some(60.0));
    }

    #[test]
    fn a_step_without_samples_breaks_the_line() {
        let mut history = History::default();
        history.push(second(0, 5, None));
        history.push(second(1000, 5, None));
        history.push(second(5000, 5, None));
        let view = history.view(&Scope::Exchange, Range::Minutes15, 6000, false);
        assert_eq!(view.current.t, vec![0, 1, 2, 5]);
        assert_eq!(view.current.figures["auctions"][2], None);
    }

    #[test]
    fn names_beyond_the_cap_are_not_kept() {
        let mut names = Interner::default();
        for i in 0..MAX_NAMES {
            assert!(names.id(&format!("b{i}")).is_some());
        }
        assert_eq!(names.id("one-more"), None);
        assert_eq!(names.id("b7"), Some(7));
    }
}
