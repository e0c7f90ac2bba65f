//! What a load run measured: corrected and uncorrected latency histograms, outcome counts,
//! the dictionary's figures (fill rate, net cleared, net clearing eCPM; `bourse_figures`) and a
//! per-second timeline, printed as text, serialized as JSON or plotted as SVG.

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Highest latency the histograms hold, microseconds (one hour); larger values saturate.
const MAX_US: u64 = 3_600_000_000;

fn histogram(significant: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, significant).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(MAX_US)
        .clamp(1, MAX_US)
}

/// Why a request did not get a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The exchange answered 4xx.
    Status4xx,
    /// The exchange answered 5xx.
    Status5xx,
    /// No complete answer before the deadline (`timeout_ms` after the scheduled time).
    Timeout,
    /// The connection could not be made, or broke before the answer was complete.
    Connect,
    /// Not sent: `max_in_flight` requests were already outstanding.
    Overload,
    /// An answer the client could not use: a 200 whose body is not a bid response, or a status
    /// other than 200, 204, 4xx and 5xx.
    BadBody,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// 200 with a bid response.
    Bids {
        /// Bids in the response.
        count: u64,
        /// Sum of their prices, CPM.
        value: f64,
    },
    /// 204: no bid.
    NoBid,
    /// No usable answer.
    Error(ErrorKind),
}

/// Counts of errors by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// 4xx answers.
    pub status_4xx: u64,
    /// 5xx answers.
    pub status_5xx: u64,
    /// Deadlines passed.
    pub timeout: u64,
    /// Connections refused or broken.
    pub connect: u64,
    /// Requests never sent because too many were in flight.
    pub overload: u64,
    /// Unusable answers.
    pub bad_body: u64,
}

impl Errors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.status_4xx
            + self.status_5xx
            + self.timeout
            + self.connect
            + self.overload
            + self.bad_body
    }

    fn add(&mut self, kind: ErrorKind) {
        *match kind {
            ErrorKind::Status4xx => &mut self.status_4xx,
            ErrorKind::Status5xx => &mut self.status_5xx,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Overload => &mut self.overload,
            ErrorKind::BadBody => &mut self.bad_body,
        } += 1;
    }

    fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("status_4xx", self.status_4xx),
            ("status_5xx", self.status_5xx),
            ("timeout", self.timeout),
            ("connect", self.connect),
            ("overload", self.overload),
            ("bad_body", self.bad_body),
        ]
    }
}

/// Outcome counts over the measured period (warm-up excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests issued: `bid_responses + no_bids + errors.total()`, overloads included.
    pub sent: u64,
    /// 200 answers carrying a bid response.
    pub bid_responses: u64,
    /// 204 answers.
    pub no_bids: u64,
    /// Errors by kind.
    pub errors: Errors,
    /// Requests issued during the warm-up, not counted anywhere else.
    pub warmup: u64,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded (including the synthetic ones of a closed-loop correction).
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the measured period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the end of the warm-up.
    pub second: u64,
    /// Requests scheduled in this second.
    pub sent: u64,
    /// Usable answers (200 or 204) received in this second: the achieved rate.
    pub completed: u64,
    /// Median corrected latency of the requests scheduled in this second.
    pub p50_ms: Option<f64>,
    /// 99th percentile corrected latency of the requests scheduled in this second.
    pub p99_ms: Option<f64>,
    /// Errors among the requests scheduled in this second.
    pub errors: u64,
}

struct SecondAcc {
    sent: u64,
    completed: u64,
    errors: u64,
    latency: Histogram<u64>,
}

impl SecondAcc {
    fn new() -> SecondAcc {
        SecondAcc {
            sent: 0,
            completed: 0,
            errors: 0,
            latency: histogram(2),
        }
    }
}

/// One finished request, as the traffic generator reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it was meant to be sent, since the end of the warm-up (`None`: during the warm-up).
    pub scheduled: Option<Duration>,
    /// When it finished, since the end of the warm-up (`None`: during the warm-up).
    pub finished: Option<Duration>,
    /// From the scheduled time to the outcome (`None`: nothing to measure, as for an overload).
    pub corrected: Option<Duration>,
    /// From the actual send to the outcome.
    pub uncorrected: Option<Duration>,
    /// How late the generator launched it after its scheduled time (open loop).
    pub lag: Option<Duration>,
    /// Closed loop: the interval at which this worker meant to send, for `record_correct`.
    pub expected_interval: Option<Duration>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Accumulates samples during a run; `finish` turns it into a [`Report`].
pub(crate) struct Recorder {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    lag: Histogram<u64>,
    counts: Counts,
    bids: u64,
    value: f64,
    seconds: Vec<SecondAcc>,
    // Every sample's uncorrected latency, warm-up included: the closed loop's expected interval.
    raw_sum_us: u64,
    raw_count: u64,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            corrected: histogram(3),
            uncorrected: histogram(3),
            lag: histogram(2),
            counts: Counts::default(),
            bids: 0,
            value: 0.0,
            seconds: Vec::new(),
            raw_sum_us: 0,
            raw_count: 0,
        }
    }

    /// Mean uncorrected latency so far, warm-up included.
    pub(crate) fn mean_latency(&self) -> Option<Duration> {
        (self.raw_count > 0).then(|| Duration::from_micros(self.raw_sum_us / self.raw_count))
    }

    fn second(&mut self, offset: Duration) -> &mut SecondAcc {
        let index = offset.as_secs() as usize;
        while self.seconds.len() <= index {
            self.seconds.push(SecondAcc::new());
        }
        &mut self.seconds[index]
    }

    pub(crate) fn record(&mut self, sample: Sample) {
        if let Some(raw) = sample.uncorrected {
            self.raw_sum_us += micros(raw);
            self.raw_count += 1;
        }
        let Some(scheduled) = sample.scheduled else {
            self.counts.warmup += 1;
            return;
        };
        self.counts.sent += 1;
        if let Some(lag) = sample.lag {
            self.lag.saturating_record(micros(lag));
        }
        let usable = match sample.outcome {
            Outcome::Bids { count, value } => {
                self.counts.bid_responses += 1;
                self.bids += count;
                self.value += value;
                true
            }
            Outcome::NoBid => {
                self.counts.no_bids += 1;
                true
            }
            Outcome::Error(kind) => {
                self.counts.errors.add(kind);
                false
            }
        };
        if let Some(latency) = sample.corrected {
            let us = micros(latency);
            match sample.expected_interval {
                Some(interval) => {
                    // Closed loop: fill in the requests this worker would have sent meanwhile.
                    let _ = self.corrected.record_correct(us, micros(interval));
                }
                None => self.corrected.saturating_record(us),
            }
        }
        if let Some(latency) = sample.uncorrected {
            self.uncorrected.saturating_record(micros(latency));
        }
        let second = self.second(scheduled);
        second.sent += 1;
        if !usable {
            second.errors += 1;
        }
        if let Some(latency) = sample.corrected {
            second.latency.saturating_record(micros(latency));
        }
        if let (true, Some(finished)) = (usable, sample.finished) {
            self.second(finished).completed += 1;
        }
    }

    pub(crate) fn finish(self, run: RunInfo) -> Report {
        let counts = self.counts;
        let answered = counts.bid_responses + counts.no_bids;
        // Every figure from the dictionary (`bourse_figures`, docs/metrics.md), 0 when there is
        // nothing to divide by.
        let (sent, bids) = (counts.sent as f64, self.bids as f64);
        let net_cleared = bourse_figures::revenue_of_cpm(self.value);
        let timeline = self
            .seconds
            .iter()
            .enumerate()
            .map(|(n, s)| Second {
                second: n as u64,
                sent: s.sent,
                completed: s.completed,
                p50_ms: (!s.latency.is_empty())
                    .then(|| s.latency.value_at_quantile(0.5) as f64 / 1000.0),
                p99_ms: (!s.latency.is_empty())
                    .then(|| s.latency.value_at_quantile(0.99) as f64 / 1000.0),
                errors: s.errors,
            })
            .collect();
        Report {
            mode: run.mode,
            duration_secs: run.duration_secs,
            warmup_secs: run.warmup_secs,
            offered_rate: run.offered_rate,
            achieved_rate: if run.duration_secs > 0.0 {
                answered as f64 / run.duration_secs
            } else {
                0.0
            },
            latency: Percentiles::of(&self.corrected),
            latency_uncorrected: Percentiles::of(&self.uncorrected),
            schedule_lag: Percentiles::of(&self.lag),
            no_bid_share: bourse_figures::share(counts.no_bids as f64, answered as f64)
                .unwrap_or(0.0),
            fill_rate: bourse_figures::fill_rate(
                counts.bid_responses as f64,
                counts.no_bids as f64,
            )
            .unwrap_or(0.0),
            bids_per_request: bourse_figures::bids_per_request(bids, sent).unwrap_or(0.0),
            bids: self.bids,
            net_cleared,
            net_clearing_ecpm: bourse_figures::net_clearing_ecpm(net_cleared, bids).unwrap_or(0.0),
            net_per_thousand_requests: bourse_figures::revenue_per_thousand_requests(
                net_cleared,
                sent,
            )
            .unwrap_or(0.0),
            counts,
            timeline,
            corrected: self.corrected,
            uncorrected: self.uncorrected,
        }
    }
}

/// What the traffic generator tells the report about the run itself.
pub(crate) struct RunInfo {
    pub mode: String,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub offered_rate: Option<f64>,
}

/// The result of a load run. Serializes to JSON (without the raw histograms).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// How load was applied, for example `open 2000/s` or `closed 64 workers`.
    pub mode: String,
    /// Length of the measured period, seconds (warm-up excluded).
    pub duration_secs: f64,
    /// Length of the warm-up, seconds.
    pub warmup_secs: f64,
    /// Requests scheduled per second (open loop; `None` for a closed loop).
    pub offered_rate: Option<f64>,
    /// Usable answers (200 and 204) per second of the measured period.
    pub achieved_rate: f64,
    /// Latency from the *scheduled* send time to the outcome: the coordinated-omission
    /// corrected latency a publisher sees. Timeouts count at the deadline; connection errors and
    /// overloads are not in it.
    pub latency: Percentiles,
    /// Latency from the actual send to the outcome, for comparison: it understates a stall.
    pub latency_uncorrected: Percentiles,
    /// How late the generator launched requests after their scheduled time. Up to
    /// `traffic::TIMER_SLACK` is timer resolution and left out of `latency`; a large p99 here
    /// means the generator was starved (machine saturated) and its numbers are suspect.
    pub schedule_lag: Percentiles,
    /// Outcome counts.
    pub counts: Counts,
    /// 204 answers among usable answers.
    pub no_bid_share: f64,
    /// Fill rate (docs/metrics.md): the share of usable answers that carried a bid, 200 among
    /// 200 and 204; what the exchange counts as `outcome="bid"` among `bid` and `no_bid`.
    pub fill_rate: f64,
    /// Bids returned per request sent (an answer may carry several impressions' bids).
    pub bids_per_request: f64,
    /// Bids returned: impressions won, each at its clearing price net of the exchange's fee.
    pub bids: u64,
    /// Net cleared: the sum of the returned bid prices / 1000 (prices are CPM), what the
    /// exchange's answers say sellers receive: cleared revenue net of its fee.
    pub net_cleared: f64,
    /// Net clearing eCPM: the mean returned bid price, `1000 × net_cleared / bids`.
    pub net_clearing_ecpm: f64,
    /// Net cleared per thousand requests sent. Not an eCPM: requests divide it, not impressions.
    pub net_per_thousand_requests: f64,
    /// Per-second view of the measured period.
    pub timeline: Vec<Second>,
    #[serde(skip)]
    corrected: Histogram<u64>,
    #[serde(skip)]
    uncorrected: Histogram<u64>,
}

impl Report {
    /// The corrected latency histogram, microseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.corrected
    }

    /// The uncorrected latency histogram, microseconds.
    pub fn histogram_uncorrected(&self) -> &Histogram<u64> {
        &self.uncorrected
    }

    /// An aligned, human-readable summary with the timeline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let c = &self.counts;
        let share = |n: u64| {
            if c.sent == 0 {
                0.0
            } else {
                100.0 * n as f64 / c.sent as f64
            }
        };
        let _ = writeln!(
            out,
            "{} for {:.1} s (warm-up {:.1} s)",
            self.mode, self.duration_secs, self.warmup_secs
        );
        let offered = self
            .offered_rate
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.1}/s"));
        let _ = writeln!(
            out,
            "  rate       offered {offered:>12}   achieved {:>10.1}/s",
            self.achieved_rate
        );
        let _ = writeln!(
            out,
            "  requests   sent {:>10}   bids {:>10} ({:5.1}%)   no-bids {:>10} ({:5.1}%)   errors {:>8} ({:5.1}%)",
            c.sent,
            c.bid_responses,
            share(c.bid_responses),
            c.no_bids,
            share(c.no_bids),
            c.errors.total(),
            share(c.errors.total())
        );
        let errors: Vec<String> = c
            .errors
            .named()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out, "  errors     {}", errors.join("   "));
        }
        let _ = writeln!(
            out,
            "  auction    fill rate {:5.1}%   no-bid share {:5.1}%   bids/request {:.3}",
            100.0 * self.fill_rate,
            100.0 * self.no_bid_share,
            self.bids_per_request,
        );
        let _ = writeln!(
            out,
            "  money      net cleared {:.4}   net clearing eCPM {:.4}   net per 1000 requests {:.4}",
            self.net_cleared, self.net_clearing_ecpm, self.net_per_thousand_requests
        );
        let _ = writeln!(
            out,
            "  latency ms {:>12} {:>12}",
            "corrected", "uncorrected"
        );
        let (a, b) = (&self.latency, &self.latency_uncorrected);
        for (name, x, y) in [
            ("mean", a.mean_ms, b.mean_ms),
            ("p50", a.p50_ms, b.p50_ms),
            ("p90", a.p90_ms, b.p90_ms),
            ("p99", a.p99_ms, b.p99_ms),
            ("p99.9", a.p999_ms, b.p999_ms),
            ("max", a.max_ms, b.max_ms),
        ] {
            let _ = writeln!(out, "    {name:<8} {x:>12.3} {y:>12.3}");
        }
        if self.schedule_lag.count > 0 {
            let _ = writeln!(
                out,
                "  generator  schedule lag p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
                self.schedule_lag.p50_ms, self.schedule_lag.p99_ms, self.schedule_lag.max_ms
            );
        }
        if !self.timeline.is_empty() {
            let _ = writeln!(
                out,
                "  timeline {:>6} {:>9} {:>10} {:>10} {:>10} {:>8}",
                "second", "sent", "completed", "p50 ms", "p99 ms", "errors"
            );
            let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
            for s in &self.timeline {
                let _ = writeln!(
                    out,
                    "           {:>6} {:>9} {:>10} {:>10} {:>10} {:>8}",
                    s.second,
                    s.sent,
                    s.completed,
                    opt(s.p50_ms),
                    opt(s.p99_ms),
                    s.errors
                );
            }
        }
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// Draws corrected p50 and p99 per second (log-scale milliseconds) into an SVG file.
    pub fn plot_svg(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let p50: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .filter_map(|s| Some((s.second as f64 + 0.5, s.p50_ms?)))
            .collect();
        let p99: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .filter_map(|s| Some((s.second as f64 + 0.5, s.p99_ms?)))
            .collect();
        let values = p50.iter().chain(&p99).map(|p| p.1.max(0.001));
        let low = values.clone().fold(f64::INFINITY, f64::min);
        let high = values.fold(0.0, f64::max);
        let (low, high) = if low.is_finite() && high > 0.0 {
            (low / 2.0, high * 2.0)
        } else {
            (0.1, 100.0)
        };
        let width = (self.timeline.len() as f64).max(1.0);
        let draw = || -> Result<(), Box<dyn std::error::Error>> {
            let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{}: corrected latency per second", self.mode),
                    ("sans-serif", 20),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0f64..width, (low..high).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("second")
                .y_desc("latency, ms (log)")
                .draw()?;
            for (label, points, color) in [("p50", p50, BLUE), ("p99", p99, RED)] {
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
            root.present()?;
            Ok(())
        };
        draw()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("drawing {}", path.display()))
    }
}
