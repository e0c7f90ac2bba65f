//! The live overview: right-now numbers and ten-minute charts from [`crate::live`], the top
//! bidders of the last minute, and the kernel's plugins with their states.

use super::{Chrome, maybe, number};
use crate::live::{Families, LiveView};
use crate::web::{Form, json, page};
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::{Request, Response};
use http::StatusCode;

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    chrome: Chrome<'a>,
    currency: String,
    now: Now,
    auctions_total: u64,
    billed_total: String,
    top_bidders: Vec<TopBidderRow>,
    plugins: Vec<PluginRow>,
}

/// The last point, formatted for the cards (the script keeps them current).
struct Now {
    auctions_per_sec: String,
    p50: String,
    p99: String,
    fill: String,
    revenue: String,
    ecpm: String,
}

struct TopBidderRow {
    name: String,
    wins: u64,
    requests: u64,
    bid_rate: String,
    timeouts: String,
    errors: u64,
    avg_win: String,
}

struct PluginRow {
    name: String,
    state: String,
    generation: i64,
    inflight: i64,
}

fn plugin_rows(families: &Families) -> Vec<PluginRow> {
    let generations = families.by("bourse_kernel_plugin_generation", "plugin");
    let inflight = families.by("bourse_kernel_plugin_inflight", "plugin");
    generations
        .into_iter()
        .map(|(name, generation)| {
            // A plugin is in each state whose gauge is above zero (a swap briefly shows two).
            let states = ["starting", "active", "draining"]
                .into_iter()
                .filter(|state| {
                    families.sum(
                        "bourse_kernel_plugin_state",
                        &[("plugin", &name), ("state", state)],
                    ) > 0.0
                })
                .collect::<Vec<_>>()
                .join(", ");
            PluginRow {
                inflight: inflight.get(&name).copied().unwrap_or(0.0) as i64,
                generation: generation as i64,
                state: if states.is_empty() {
                    "stopped".into()
                } else {
                    states
                },
                name,
            }
        })
        .collect()
}

impl Admin {
    pub(crate) fn overview(&self, session: &Session) -> Response {
        let view = self.live.view(0);
        let last = view.points.last();
        let now = Now {
            auctions_per_sec: maybe(last.map(|p| p.auctions_per_sec), 1, ""),
            p50: maybe(last.and_then(|p| p.p50_ms), 2, " ms"),
            p99: maybe(last.and_then(|p| p.p99_ms), 2, " ms"),
            fill: maybe(last.and_then(|p| p.fill_pct), 1, "%"),
            revenue: maybe(last.map(|p| p.revenue_per_min), 2, ""),
            ecpm: maybe(last.and_then(|p| p.ecpm), 2, ""),
        };
        let top_bidders = view
            .top_bidders
            .iter()
            .map(|b| TopBidderRow {
                name: b.name.clone(),
                wins: b.wins,
                requests: b.requests,
                bid_rate: maybe(b.bid_rate_pct, 1, "%"),
                timeouts: maybe(b.timeout_pct, 1, "%"),
                errors: b.errors,
                avg_win: maybe(b.avg_win_cpm, 2, ""),
            })
            .collect();
        let LiveView {
            auctions_total,
            billed_total,
            ..
        } = view;
        page(
            StatusCode::OK,
            &OverviewPage {
                chrome: Chrome::new(session, "overview"),
                currency: self.exchange_config().currency,
                now,
                auctions_total,
                billed_total: number(billed_total, 2),
                top_bidders,
                plugins: plugin_rows(&Families::gather(&self.registry)),
            },
        )
    }

    /// `/admin/live.json?after=T`: the points after Unix ms `T` and the top bidders.
    pub(crate) fn live_json(&self, req: &Request) -> Response {
        let after = Form::query(req)
            .get("after")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        json(serde_json::to_string(&self.live.view(after)).unwrap_or_else(|_| "{}".into()))
    }
}
