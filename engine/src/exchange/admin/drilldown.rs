//! Drill-down pages, one per bidder, publisher and placement, linked from the lists and the
//! overview: what the metrics already record for each, over the range picked, with charts.
//! A bidder has every figure (its metrics carry a `bidder` label); a publisher or placement
//! has what is recorded per placement (billed impressions, floors, reach) and billed revenue
//! from the ledger, and the page says which figures are counted for the exchange only.

use super::bidders::window_text;
use super::charts::{Chart, ChartsView, chosen};
use super::history::Scope;
use super::live::{Families, HealthState};
use super::{learned_floor_text, maybe, number, render};
use crate::exchange::Exchange;
use crate::ledger::{Period, PeriodReport, Totals};
use crate::metrics::BIDDER_ERROR_KINDS;
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest, CHART_SCRIPT};
use http::StatusCode;

/// What the publisher and placement pages say is not broken down by them.
const NOT_BROKEN_DOWN: &str = "Auctions, fill rate, cleared revenue, clearing eCPM, latency and bidder \
     errors are counted for the whole exchange and per bidder, not per publisher or placement: \
     their metrics carry no such label, so that the auction path keeps a bounded set of series. \
     See them on the exchange's live page and each bidder's page.";

#[derive(Template)]
#[template(path = "bidder_view.html")]
struct BidderViewPage<'a> {
    base: &'a str,
    csrf: &'a str,
    chart_script: &'a str,
    name: String,
    adapter: String,
    endpoint: String,
    timeout_ms: u64,
    qps: u32,
    adjustment: String,
    enabled: bool,
    health: &'static str,
    since: String,
    /// The health window, e.g. "60 s".
    window: String,
    window_summary: String,
    five_minutes_summary: String,
    kinds: Vec<KindRow>,
    charts: ChartsView,
}

/// A kind of failure and how often it happened in the health window and in five minutes.
struct KindRow {
    kind: &'static str,
    window: u64,
    five_minutes: u64,
}

/// Billed revenue of one period from the ledger.
struct BilledRow {
    period: String,
    impressions: u64,
    gross: String,
    fee: String,
    net: String,
    ecpm: String,
}

/// One placement of a publisher's page, or the placement of its own page.
struct PlacementFacts {
    id: String,
    sizes: String,
    enabled: bool,
    floor: String,
    learned: String,
    in_force: String,
    billed_impressions: String,
}

#[derive(Template)]
#[template(path = "inventory_view.html")]
struct InventoryViewPage<'a> {
    base: &'a str,
    chart_script: &'a str,
    /// "Publisher" or "Placement".
    kind: &'static str,
    id: String,
    facts: Vec<(&'static str, String)>,
    /// The publisher of a placement, linked.
    publisher: Option<String>,
    placements: Vec<PlacementFacts>,
    currency: &'a str,
    billed: Vec<BilledRow>,
    by_bidder: Vec<(String, BilledRow)>,
    reach: Vec<(&'static str, String)>,
    not_broken_down: &'static str,
    charts: ChartsView,
}

/// Money from micro-units, with two decimals.
fn money(micros: u64) -> String {
    number(micros as f64 / 1e6, 2)
}

fn billed_row(period: String, totals: &Totals) -> BilledRow {
    // Billed eCPM (docs/metrics.md, "Figures"): gross billed per thousand billed impressions.
    let ecpm =
        bourse_figures::billed_ecpm(totals.gross_micros as f64 / 1e6, totals.impressions as f64);
    BilledRow {
        period,
        impressions: totals.impressions,
        gross: money(totals.gross_micros),
        fee: money(totals.fee_micros),
        net: money(totals.net_micros),
        ecpm: maybe(ecpm, 2, ""),
    }
}

/// The totals of a ledger period's rows whose placement is among `placements`, and by bidder.
fn billed_of(report: &PeriodReport, placements: &[&str]) -> (Totals, Vec<(String, Totals)>) {
    let mut total = Totals::default();
    let mut by_bidder: Vec<(String, Totals)> = Vec::new();
    for row in report
        .rows
        .iter()
        .filter(|r| placements.contains(&r.placement.as_str()))
    {
        for totals in [&mut total, bidder_slot(&mut by_bidder, &row.bidder)] {
            totals.impressions += row.totals.impressions;
            totals.gross_micros += row.totals.gross_micros;
            totals.fee_micros += row.totals.fee_micros;
            totals.net_micros += row.totals.net_micros;
        }
    }
    (total, by_bidder)
}

fn bidder_slot<'a>(rows: &'a mut Vec<(String, Totals)>, bidder: &str) -> &'a mut Totals {
    let at = match rows.iter().position(|(b, _)| b == bidder) {
        Some(at) => at,
        None => {
            rows.push((bidder.to_owned(), Totals::default()));
            rows.len() - 1
        }
    };
    &mut rows[at].1
}

impl Exchange {
    /// `bidders/view?name=…`: one bidder's health, errors by kind, figures and charts.
    pub(super) fn bidder_view(&self, req: &AdminRequest) -> AdminReply {
        let name = req.query.text("name");
        let Some(spec) = self.config.bidders.iter().find(|b| b.name == name) else {
            return AdminReply::text(
                StatusCode::NOT_FOUND,
                "no such bidder in the running config",
            );
        };
        let live = &self.shared.admin.live;
        let health = live.health().remove(&spec.name);
        let (state, since) = match (&health, spec.enabled) {
            (_, false) => ("off", String::new()),
            (None, true) => (HealthState::Idle.as_str(), String::new()),
            (Some(h), true) => (h.state.as_str(), h.since_text()),
        };
        let counts = |pick: fn(&super::live::Health) -> &super::live::WindowCounts, kind: &str| {
            health.as_ref().map_or(0, |h| {
                let window = pick(h);
                if kind == "timeout" {
                    window.timeouts
                } else {
                    window
                        .kinds
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .map_or(0, |(_, n)| *n)
                }
            })
        };
        let kinds = std::iter::once("timeout")
            .chain(BIDDER_ERROR_KINDS.iter().copied())
            .map(|kind| KindRow {
                kind,
                window: counts(|h| &h.minute, kind),
                five_minutes: counts(|h| &h.five_minutes, kind),
            })
            .collect();
        let page = format!("{}/bidders/view?name={}", req.base, urlencoding(&spec.name));
        let currency = &self.config.currency;
        let charts = self.charts_view(
            &req.base,
            &page,
            (
                &Scope::Bidder(spec.name.clone()),
                &format!("bidder={}", urlencoding(&spec.name)),
            ),
            chosen(req),
            vec![
                Chart::new("calls", "Calls and failed calls per second"),
                Chart::new("rates", "Bid rate, win rate and failed calls (%)"),
                Chart::new("latency", "Response time p50 / p99 (ms)"),
                Chart::new(
                    "revenue",
                    format!("Cleared/min, gross, and clearing eCPM ({currency})"),
                ),
            ],
        );
        render(
            format!("Bidder {}", spec.name),
            "bidders",
            &BidderViewPage {
                base: &req.base,
                csrf: &req.csrf,
                chart_script: CHART_SCRIPT,
                name: spec.name.clone(),
                adapter: spec.adapter.clone(),
                endpoint: spec.endpoint.clone(),
                timeout_ms: spec.timeout_ms,
                qps: spec.qps,
                adjustment: number(spec.adjustment, 4),
                enabled: spec.enabled,
                health: state,
                since,
                window: format!("{} s", live.health_window().as_secs()),
                window_summary: health
                    .as_ref()
                    .map_or_else(|| "no calls".to_owned(), |h| window_text(&h.minute)),
                five_minutes_summary: health
                    .as_ref()
                    .map_or_else(|| "no calls".to_owned(), |h| window_text(&h.five_minutes)),
                kinds,
                charts,
            },
        )
    }

    /// `publishers/view?id=…`: a publisher's placements, what they billed, reach and charts.
    pub(super) async fn publisher_view(&self, req: &AdminRequest) -> AdminReply {
        let id = req.query.text("id");
        let Some(publisher) = self.config.publishers.iter().find(|p| p.id == id) else {
            return AdminReply::text(
                StatusCode::NOT_FOUND,
                "no such publisher in the running config",
            );
        };
        let placements: Vec<&str> = self
            .config
            .placements
            .iter()
            .filter(|p| p.publisher == publisher.id)
            .map(|p| p.id.as_str())
            .collect();
        let facts = vec![
            ("Name", publisher.name.clone()),
            (
                "Domain",
                publisher.domain.clone().unwrap_or_else(|| "any".into()),
            ),
            ("State", state_word(publisher.enabled).into()),
            ("Placements", placements.len().to_string()),
        ];
        let page = format!(
            "{}/publishers/view?id={}",
            req.base,
            urlencoding(&publisher.id)
        );
        let named = format!("publisher={}", urlencoding(&publisher.id));
        self.inventory_view(
            req,
            ("Publisher", &publisher.id, "publisher"),
            facts,
            None,
            &placements,
            (page, named, self.publisher_scope(&publisher.id)),
        )
        .await
    }

    /// `placements/view?id=…`: a placement's floors, what it billed, reach and charts.
    pub(super) async fn placement_view(&self, req: &AdminRequest) -> AdminReply {
        let id = req.query.text("id");
        let Some(placement) = self.config.placements.iter().find(|p| p.id == id) else {
            return AdminReply::text(
                StatusCode::NOT_FOUND,
                "no such placement in the running config",
            );
        };
        let facts = vec![("State", state_word(placement.enabled).into())];
        let page = format!(
            "{}/placements/view?id={}",
            req.base,
            urlencoding(&placement.id)
        );
        let named = format!("placement={}", urlencoding(&placement.id));
        self.inventory_view(
            req,
            ("Placement", &placement.id, "placement"),
            facts,
            Some(placement.publisher.clone()),
            &[placement.id.as_str()],
            (page, named, Scope::Placements(vec![placement.id.clone()])),
        )
        .await
    }

    /// The page of a publisher or placement (`kind`, `id`, and reach's dimension).
    async fn inventory_view(
        &self,
        req: &AdminRequest,
        (kind, id, dimension): (&'static str, &str, &str),
        facts: Vec<(&'static str, String)>,
        publisher: Option<String>,
        placements: &[&str],
        (page, named, scope): (String, String, Scope),
    ) -> AdminReply {
        let config = &self.config;
        let families = Families::gather(&self.shared.admin.registry);
        let learned = families.by("bourse_floors_learned_cpm", "placement");
        let billed_counts = families.by("bourse_adserve_billed_impressions_total", "placement");
        let placement_facts = config
            .placements
            .iter()
            .filter(|p| placements.contains(&p.id.as_str()))
            .map(|p| {
                let learned = learned
                    .get(&p.id)
                    .copied()
                    .filter(|_| config.floors.enabled);
                PlacementFacts {
                    id: p.id.clone(),
                    sizes: p
                        .sizes
                        .iter()
                        .map(|[w, h]| format!("{w}x{h}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    enabled: p.enabled,
                    floor: number(p.floor, 4),
                    learned: learned_floor_text(config.floors.enabled, learned),
                    in_force: number(p.floor.max(learned.unwrap_or(0.0)), 4),
                    billed_impressions: number(billed_counts.get(&p.id).copied().unwrap_or(0.0), 0),
                }
            })
            .collect();
        // The ledger's current hour and day (UTC).
        let now = bourse_kernel::unix_now_ms() / 1000;
        let ledger = &self.shared.ledger;
        let (hour, day) = (
            ledger.report(Period::Hour(now)).await,
            ledger.report(Period::Day(now)).await,
        );
        let (hour_total, _) = billed_of(&hour, placements);
        let (day_total, by_bidder) = billed_of(&day, placements);
        let billed = vec![
            billed_row(format!("This hour ({} UTC)", hour.period), &hour_total),
            billed_row(format!("Today ({} UTC)", day.period), &day_total),
        ];
        let by_bidder = by_bidder
            .into_iter()
            .map(|(bidder, totals)| {
                let row = billed_row(String::new(), &totals);
                (bidder, row)
            })
            .collect();
        let reach = [
            ("hour", "Unique users this hour"),
            ("day", "Unique users today"),
        ]
        .into_iter()
        .map(|(window, label)| {
            let users = families.sum(
                "bourse_reach_unique_users",
                &[("dimension", dimension), ("id", id), ("window", window)],
            );
            (label, number(users, 0))
        })
        .collect();
        let charts = self.charts_view(
            &req.base,
            &page,
            (&scope, &named),
            chosen(req),
            vec![Chart::new("billed", "Billed impressions per minute")],
        );
        render(
            format!("{kind} {id}"),
            if kind == "Publisher" {
                "publishers"
            } else {
                "placements"
            },
            &InventoryViewPage {
                base: &req.base,
                chart_script: CHART_SCRIPT,
                kind,
                id: id.to_owned(),
                facts,
                publisher,
                placements: placement_facts,
                currency: &config.currency,
                billed,
                by_bidder,
                reach,
                not_broken_down: NOT_BROKEN_DOWN,
                charts,
            },
        )
    }
}

fn state_word(enabled: bool) -> &'static str {
    if enabled { "enabled" } else { "disabled" }
}

/// A config id or name for a query value.
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ReportRow;

    #[test]
    fn billed_revenue_adds_up_the_placements_asked_for_by_bidder() {
        let row = |placement: &str, bidder: &str, impressions: u64, gross: u64| ReportRow {
            publisher: "news".into(),
            placement: placement.into(),
            bidder: bidder.into(),
            totals: Totals {
                impressions,
                gross_micros: gross,
                fee_micros: gross / 10,
                net_micros: gross - gross / 10,
            },
        };
        let report = PeriodReport {
            period: "2025-01-01".into(),
            total: Totals::default(),
            rows: vec![
                row("top", "a", 2, 3_000),
                row("side", "a", 1, 1_000),
                row("top", "b", 1, 2_000),
                row("elsewhere", "a", 9, 9_000),
            ],
        };
        let (total, by_bidder) = billed_of(&report, &["top", "side"]);
        assert_eq!((total.impressions, total.gross_micros), (4, 6_000));
        assert_eq!(by_bidder.len(), 2);
        let row = billed_row("today".into(), &total);
        // 6,000 micros for 4 impressions: 1,500 micros each, a 1.5 CPM.
        assert_eq!((row.gross.as_str(), row.ecpm.as_str()), ("0.01", "1.5"));
    }
}
