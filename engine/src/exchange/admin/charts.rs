//! The charts of the exchange's pages (its live page, the overview's summary and the drill-down
//! pages): the range picker and the compare link, the figures of the range as a table (what
//! the page shows without script), and `series.json`, which `static/charts.js` draws with the
//! shell's uPlot.

use super::history::{Range, Scope, SeriesView, error_key};
use super::number;
use crate::exchange::Exchange;
use crate::metrics::BIDDER_ERROR_KINDS;
use bourse_kernel::admin::{AdminReply, AdminRequest};

/// One chart of a page: its key in `charts.js`'s catalogue (which says what it draws, on which
/// axes and in which units) and its caption.
pub(super) struct Chart {
    pub(super) name: &'static str,
    pub(super) caption: String,
}

impl Chart {
    pub(super) fn new(name: &'static str, caption: impl Into<String>) -> Chart {
        Chart {
            name,
            caption: caption.into(),
        }
    }
}

/// A link of the range picker.
pub(super) struct RangeLink {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    pub(super) href: String,
    pub(super) current: bool,
}

/// One line of the figures table: this range, and the one before when comparing.
pub(super) struct FigureRow {
    pub(super) key: &'static str,
    pub(super) label: String,
    /// What the figure means, from docs/metrics.md, for the row's title.
    pub(super) meaning: &'static str,
    pub(super) current: String,
    pub(super) previous: String,
    pub(super) change: String,
}

/// Everything `charts.html` shows.
pub(super) struct ChartsView {
    /// `series.json` with the scope's parameters, without range or compare.
    pub(super) source: String,
    pub(super) range: Range,
    pub(super) compare: bool,
    pub(super) ranges: Vec<RangeLink>,
    pub(super) compare_href: String,
    pub(super) currency: String,
    pub(super) charts: Vec<Chart>,
    pub(super) note: Option<String>,
    /// "per second", "per minute", "per 15 minutes": what one point of the charts covers.
    pub(super) step: String,
    pub(super) rows: Vec<FigureRow>,
}

/// How a figure is written: decimals and unit.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    Rate(&'static str),
    Percent,
    Money,
    Millis,
}

/// The figures a scope's table shows: key, label, unit, meaning.
fn rows_of(scope: &Scope) -> Vec<(&'static str, &'static str, Unit, &'static str)> {
    match scope {
        Scope::Exchange => vec![
            (
                "auctions",
                "Auctions",
                Unit::Count,
                "OpenRTB and ad-tag auctions that ran (bid or no bid)",
            ),
            (
                "auctions_per_sec",
                "Auctions/s",
                Unit::Rate(""),
                "auctions per second, on average",
            ),
            (
                "fill_pct",
                "Fill rate",
                Unit::Percent,
                "share of auctions answered with at least one bid",
            ),
            (
                "cleared",
                "Cleared, gross",
                Unit::Money,
                "what winning bidders pay at the clearing price, before our fee",
            ),
            (
                "revenue_per_min",
                "Cleared/min, gross",
                Unit::Money,
                "cleared value per minute, before our fee",
            ),
            (
                "ecpm",
                "Clearing eCPM",
                Unit::Money,
                "mean clearing CPM of the wins, gross",
            ),
            (
                "p50_ms",
                "Auction latency p50",
                Unit::Millis,
                "request arrival to answer, median",
            ),
            (
                "p99_ms",
                "Auction latency p99",
                Unit::Millis,
                "request arrival to answer, 99th percentile",
            ),
        ],
        Scope::Bidder(_) => {
            let mut rows = vec![
                (
                    "requests",
                    "Requests",
                    Unit::Count,
                    "calls sent to the bidder",
                ),
                (
                    "requests_per_sec",
                    "Requests/s",
                    Unit::Rate(""),
                    "calls per second, on average",
                ),
                (
                    "bid_rate_pct",
                    "Bid rate",
                    Unit::Percent,
                    "share of calls answered with at least one bid that entered the auction",
                ),
                ("wins", "Wins", Unit::Count, "impressions won"),
                (
                    "win_rate_pct",
                    "Win rate",
                    Unit::Percent,
                    "impressions won per call",
                ),
                (
                    "cleared",
                    "Cleared, gross",
                    Unit::Money,
                    "what the bidder pays for its wins at the clearing price, before our fee",
                ),
                (
                    "revenue_per_min",
                    "Cleared/min, gross",
                    Unit::Money,
                    "the same, per minute",
                ),
                (
                    "ecpm",
                    "Clearing eCPM",
                    Unit::Money,
                    "mean clearing CPM of its wins, gross",
                ),
                (
                    "p50_ms",
                    "Response time p50",
                    Unit::Millis,
                    "completed calls, median",
                ),
                (
                    "p99_ms",
                    "Response time p99",
                    Unit::Millis,
                    "completed calls, 99th percentile",
                ),
                (
                    "failed_pct",
                    "Failed calls",
                    Unit::Percent,
                    "calls that timed out or failed, of all calls",
                ),
                (
                    "timeouts",
                    "Timeouts",
                    Unit::Count,
                    "calls past their deadline",
                ),
            ];
            for kind in BIDDER_ERROR_KINDS {
                rows.push((
                    error_key(kind),
                    error_label(kind),
                    Unit::Count,
                    "failed calls and refused answers of this kind",
                ));
            }
            rows
        }
        Scope::Placements(_) => vec![
            (
                "billed",
                "Billed impressions",
                Unit::Count,
                "impressions billed from ad tags (impression beacons)",
            ),
            (
                "billed_per_min",
                "Billed impressions/min",
                Unit::Rate(""),
                "the same, per minute",
            ),
        ],
    }
}

/// "Errors: connect" and the like.
fn error_label(kind: &str) -> &'static str {
    match kind {
        "bad_input" => "Errors: bad_input",
        "bad_response" => "Errors: bad_response",
        "http_status" => "Errors: http_status",
        "connect" => "Errors: connect",
        "body" => "Errors: body",
        _ => "Errors: other",
    }
}

fn write(value: Option<f64>, unit: Unit, currency: &str) -> String {
    let Some(value) = value else {
        return "–".to_owned();
    };
    match unit {
        Unit::Count => number(value, 0),
        Unit::Rate(suffix) => format!("{}{suffix}", number(value, 2)),
        Unit::Percent => format!("{}%", number(value, 1)),
        Unit::Money => format!("{} {currency}", number(value, 2)),
        Unit::Millis => format!("{} ms", number(value, 2)),
    }
}

/// The change from the previous period, in percent.
fn change(current: Option<f64>, previous: Option<f64>) -> String {
    match (current, previous) {
        (Some(now), Some(then)) if then.abs() > f64::EPSILON => {
            let change = (now - then) / then.abs() * 100.0;
            format!(
                "{}{}%",
                if change >= 0.0 { "+" } else { "" },
                number(change, 1)
            )
        }
        _ => "–".to_owned(),
    }
}

/// What one point of a chart covers.
fn step_text(step_secs: u64) -> String {
    match step_secs {
        1 => "per second".to_owned(),
        60 => "per minute".to_owned(),
        s if s % 3600 == 0 => format!("per {} hours", s / 3600),
        s => format!("per {} minutes", s / 60),
    }
}

/// The range and compare a page's query asks for (anything unknown: 15 minutes, no compare).
pub(super) fn chosen(req: &AdminRequest) -> (Range, bool) {
    (
        Range::parse(req.query.get("range")),
        req.query.get("compare") == Some("1"),
    )
}

impl Exchange {
    /// The charts of `scope` on the page at `page` (which may carry its own query, such as
    /// `?name=adv`), over `range`; `named` is the query naming the scope to `series.json`
    /// (`bidder=adv`, `publisher=news`, or empty for the whole exchange).
    pub(super) fn charts_view(
        &self,
        base: &str,
        page: &str,
        (scope, named): (&Scope, &str),
        (range, compare): (Range, bool),
        charts: Vec<Chart>,
    ) -> ChartsView {
        let view = self.shared.admin.live.series(scope, range, compare);
        let join = if page.contains('?') { '&' } else { '?' };
        let link = |range: Range, compare: bool| {
            let mut href = format!("{page}{join}range={}", range.key());
            if compare {
                href.push_str("&compare=1");
            }
            href
        };
        let currency = self.config.currency.clone();
        let rows = rows_of(scope)
            .into_iter()
            .map(|(key, label, unit, meaning)| {
                let now = view.totals.get(key);
                let then = view.previous_totals.as_ref().and_then(|t| t.get(key));
                FigureRow {
                    key,
                    label: label.to_owned(),
                    meaning,
                    current: write(now, unit, &currency),
                    previous: write(then, unit, &currency),
                    change: change(now, then),
                }
            })
            .collect();
        ChartsView {
            source: format!("{base}/series.json?{named}"),
            range,
            compare,
            ranges: Range::ALL
                .into_iter()
                .map(|r| RangeLink {
                    key: r.key(),
                    label: r.label(),
                    href: link(r, compare),
                    current: r == range,
                })
                .collect(),
            compare_href: link(range, !compare),
            currency,
            charts,
            note: view.note.clone(),
            step: step_text(view.step_secs),
            rows,
        }
    }

    /// `series.json?range=1h&compare=1[&bidder=NAME|&publisher=ID|&placement=ID]`: a chart's
    /// columns (see [`SeriesView`]); an unknown bidder, publisher or placement is a 404.
    pub(super) fn series_json(&self, req: &AdminRequest) -> AdminReply {
        let Some(scope) = self.scope_of(req) else {
            return AdminReply::text(
                http::StatusCode::NOT_FOUND,
                "no such bidder, publisher or placement",
            );
        };
        let (range, compare) = chosen(req);
        let view: SeriesView = self.shared.admin.live.series(&scope, range, compare);
        AdminReply::json(serde_json::to_string(&view).unwrap_or_else(|_| "{}".into()))
    }

    /// The scope a `series.json` query names, among the configured bidders and inventory.
    fn scope_of(&self, req: &AdminRequest) -> Option<Scope> {
        let config = &self.config;
        if let Some(name) = req.query.get("bidder") {
            return config
                .bidders
                .iter()
                .any(|b| b.name == name)
                .then(|| Scope::Bidder(name.to_owned()));
        }
        if let Some(id) = req.query.get("placement") {
            return config
                .placements
                .iter()
                .any(|p| p.id == id)
                .then(|| Scope::Placements(vec![id.to_owned()]));
        }
        if let Some(id) = req.query.get("publisher") {
            return config
                .publishers
                .iter()
                .any(|p| p.id == id)
                .then(|| self.publisher_scope(id));
        }
        Some(Scope::Exchange)
    }

    /// A publisher's figures: those of its placements.
    pub(super) fn publisher_scope(&self, id: &str) -> Scope {
        Scope::Placements(
            self.config
                .placements
                .iter()
                .filter(|p| p.publisher == id)
                .map(|p| p.id.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_with_their_units_and_changes_in_percent() {
        assert_eq!(write(Some(12.345), Unit::Money, "EUR"), "12.35 EUR");
        assert_eq!(write(Some(99.96), Unit::Percent, "EUR"), "100%");
        assert_eq!(write(None, Unit::Millis, "EUR"), "–");
        assert_eq!(change(Some(150.0), Some(100.0)), "+50%");
        assert_eq!(change(Some(50.0), Some(100.0)), "-50%");
        assert_eq!(change(Some(1.0), Some(0.0)), "–");
        assert_eq!(step_text(1), "per second");
        assert_eq!(step_text(900), "per 15 minutes");
        assert_eq!(step_text(7200), "per 2 hours");
    }
}
