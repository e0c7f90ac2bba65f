//! The exchange's pages in the admin shell, under `/admin/<instance>/`: a live first page
//! (cards, charts and top bidders, also shown on the admin's overview), publishers, placements,
//! bidders and floors. Pages show the config of the generation that serves them; a change edits
//! `[plugins.<instance>]` of the config in force through the config center, as the signed-in
//! operator, and a refusal is shown beside the field it names.

mod bidder_test;
mod bidders;
mod charts;
mod drilldown;
mod floors;
mod history;
mod inventory;
mod live;

use crate::exchange::Exchange;
use askama::Template;
use bourse_kernel::admin::{
    AdminReply, AdminRequest, AdminSection, Alert, CHART_SCRIPT, FieldErrors, ListQuery, NavLink,
    Pager, SortKey,
};
use bourse_kernel::{Asset, ConfigCenter, EmbeddedAssets, PluginCtx, Refusal, plugin_table};
use charts::Chart;
use futures_util::future::BoxFuture;
use history::{Range, Scope};
use http::{Method, StatusCode};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// How often the live numbers sample the metrics registry.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

static ASSETS: LazyLock<EmbeddedAssets> = LazyLock::new(|| {
    EmbeddedAssets::new(
        &[
            Asset {
                name: "live.js",
                bytes: include_bytes!("../../../assets/live.js"),
                content_type: "text/javascript; charset=utf-8",
            },
            Asset {
                name: "charts.js",
                bytes: include_bytes!("../../../assets/charts.js"),
                content_type: "text/javascript; charset=utf-8",
            },
        ],
        "public, max-age=300",
    )
});

/// The admin pages' part of the instance's state: the live numbers, sampled for the instance's
/// whole life, and what the pages read besides the config.
pub(crate) struct AdminState {
    live: Arc<live::Live>,
    registry: prometheus::Registry,
    /// The adapters a bidder may name, from the exchange's own registry.
    adapters: Vec<&'static str>,
}

impl AdminState {
    /// Starts sampling the metrics registry; the sampler stops with the instance.
    pub(crate) fn start(ctx: &PluginCtx, adapters: Vec<&'static str>) -> AdminState {
        let live = Arc::new(live::Live::default());
        let registry = ctx.metrics.registry().clone();
        let (sampled, from, lifetime) = (live.clone(), registry.clone(), ctx.lifetime.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = lifetime.cancelled() => break,
                    _ = every.tick() => sampled.sample(&from),
                }
            }
        });
        AdminState {
            live,
            registry,
            adapters,
        }
    }

    /// Takes a generation's settings, once it is the one serving.
    pub(crate) fn configure(&self, config: &crate::exchange::config::AdminPagesConfig) {
        self.live
            .set_health_window(Duration::from_secs(config.health_window_secs));
    }
}

/// What a generation's pages need from its start: the instance's name (its table is
/// `[plugins.<name>]`, whatever the name) and the config center that applies changes.
pub(crate) struct Section {
    name: Arc<str>,
    center: ConfigCenter,
}

impl Section {
    pub(crate) fn of(ctx: &PluginCtx) -> Section {
        Section {
            name: ctx.name.clone(),
            center: ctx.config_center.clone(),
        }
    }
}

/// A page from a template; a template error (a bug) becomes a 500 that says so.
fn render(title: impl Into<String>, current: &str, template: &impl Template) -> AdminReply {
    match template.render() {
        Ok(body) => AdminReply::page(title, current, body),
        Err(error) => {
            tracing::error!(%error, "exchange admin template failed");
            AdminReply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log",
            )
        }
    }
}

/// A number for a table cell: at most `decimals` places, no trailing zeros.
fn number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A placement's learned floor as the pages show it: "learning" until the learner has one,
/// "off" when learned floors are off.
fn learned_floor_text(enabled: bool, learned: Option<f64>) -> String {
    if enabled {
        maybe(learned, 4, "").replace('–', "learning")
    } else {
        "off".into()
    }
}

/// An optional number, or a dash.
fn maybe(value: Option<f64>, decimals: usize, suffix: &str) -> String {
    value.map_or_else(
        || "–".to_owned(),
        |v| format!("{}{suffix}", number(v, decimals)),
    )
}

/// A list page's sort, search and filter (read from its query string), and what its controls
/// offer: the sortable columns as (key, heading) and the values of its state filter.
struct ListView {
    query: ListQuery,
    columns: &'static [(&'static str, &'static str)],
    states: &'static [&'static str],
    /// What the state filter filters by, e.g. "Health".
    filter_label: &'static str,
    /// What the list holds, e.g. "bidders".
    noun: &'static str,
    /// Rows before the search and filter.
    all: usize,
}

impl ListView {
    fn read(
        req: &AdminRequest,
        path: &str,
        noun: &'static str,
        columns: &'static [(&'static str, &'static str)],
        (filter_label, states): (&'static str, &'static [&'static str]),
    ) -> ListView {
        let keys: Vec<&str> = columns.iter().map(|(key, _)| *key).collect();
        ListView {
            query: ListQuery::read(&req.query, format!("{}/{path}", req.base), &keys, states),
            columns,
            states,
            filter_label,
            noun,
            all: 0,
        }
    }

    /// Searches, filters (`state` of a row against the filter), sorts and pages `rows`.
    fn apply<T>(
        &mut self,
        rows: Vec<T>,
        text: impl Fn(&T) -> Vec<&str>,
        state: impl Fn(&T) -> &str,
        key: impl Fn(&T, &str) -> SortKey,
    ) -> (Vec<T>, Pager) {
        self.all = rows.len();
        let query = &self.query;
        let mut rows: Vec<T> = rows
            .into_iter()
            .filter(|row| query.matches(&text(row)))
            .filter(|row| query.filter.is_empty() || state(row) == query.filter)
            .collect();
        query.sort(&mut rows, key);
        let (rows, pager) = Pager::slice(rows, query.page, query.path.clone());
        (rows, pager.keeping(query))
    }
}

/// `<list>` of the exchange's table (publishers, placements, bidders), created when absent.
fn list<'a>(
    exchange: &'a mut toml_edit::Table,
    list: &str,
) -> Result<&'a mut toml_edit::ArrayOfTables, Refusal> {
    let item = exchange
        .entry(list)
        .or_insert(toml_edit::Item::ArrayOfTables(Default::default()));
    // `bidders = []` written inline holds no table yet: make it a list of tables.
    if item.as_array().is_some_and(|array| array.is_empty()) {
        *item = toml_edit::Item::ArrayOfTables(Default::default());
    }
    item.as_array_of_tables_mut()
        .ok_or_else(|| Refusal::Unavailable(format!("`{list}` is not a list of tables")))
}

/// The entry of `<list>` whose `key` is `id`; gone means someone else changed the config since
/// the form was shown.
fn entry<'a>(
    exchange: &'a mut toml_edit::Table,
    list_name: &str,
    key: &str,
    id: &str,
) -> Result<&'a mut toml_edit::Table, Refusal> {
    list(exchange, list_name)?
        .iter_mut()
        .find(|t| t.get(key).and_then(|v| v.as_str()) == Some(id))
        .ok_or_else(|| {
            Refusal::Conflict(format!(
                "No {list_name} entry `{id}` in the running config."
            ))
        })
}

#[derive(Template)]
#[template(path = "live.html")]
struct LiveBox<'a> {
    base: &'a str,
    chart_script: &'a str,
    charts: charts::ChartsView,
    currency: &'a str,
    now: Now,
    auctions_total: u64,
    billed_total: String,
    top_bidders: Vec<TopBidderRow>,
}

/// The last point, formatted for the cards (`live.js` keeps them current).
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

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    title: &'a str,
    currency: &'a str,
    publishers: usize,
    placements: usize,
    bidders: usize,
    bidders_enabled: usize,
    live: &'a str,
}

impl Exchange {
    /// `plugins.<instance>`: where this instance's settings are in the config.
    fn table_path(&self) -> String {
        format!("plugins.{}", self.admin.name)
    }

    /// `plugins.<instance>.<list>`: the scope a refusal's paths are placed in.
    fn scope(&self, list: &str) -> String {
        format!("{}.{list}", self.table_path())
    }

    /// Changes this instance's table in the config in force and applies the result as the
    /// request's operator.
    async fn change<F>(&self, req: &AdminRequest, change: F) -> Result<(), Refusal>
    where
        F: FnOnce(&mut toml_edit::Table) -> Result<(), Refusal> + Send,
    {
        let name = self.admin.name.clone();
        self.admin
            .center
            .edit(req.who(), move |doc| change(plugin_table(doc, &name)?))
            .await
    }

    /// Applies `change` to the `list` entries when the form parsed (`parsed` holds no error);
    /// otherwise only checks it, with the unreadable fields at their defaults, so each other
    /// field's config error shows beside the parse errors on this submit, not the next.
    async fn change_or_check<F>(
        &self,
        req: &AdminRequest,
        parsed: FieldErrors,
        list: &str,
        fields: &[&str],
        change: F,
    ) -> Result<(), FieldErrors>
    where
        F: FnOnce(&mut toml_edit::Table) -> Result<(), Refusal> + Send,
    {
        let scope = self.scope(list);
        if parsed.is_empty() {
            return self
                .change(req, change)
                .await
                .map_err(|refusal| FieldErrors::from_refusal(&refusal, &scope, fields));
        }
        let name = self.admin.name.clone();
        let mut errors = parsed;
        let checked = self
            .admin
            .center
            .check_edit(move |doc| change(plugin_table(doc, &name)?))
            .await;
        if let Err(refusal) = checked {
            errors.add_missing(FieldErrors::from_refusal(&refusal, &scope, fields));
        }
        Err(errors)
    }

    /// The cards, charts and top bidders, as HTML for a page, the charts over the range chosen.
    fn live_box(&self, base: &str, chosen: (Range, bool)) -> Result<String, askama::Error> {
        let view = self.shared.admin.live.view(0);
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
        let charts = self.charts_view(
            base,
            base,
            (&Scope::Exchange, ""),
            chosen,
            vec![
                Chart::new("auctions", "Auctions per second"),
                Chart::new("latency", "Auction latency p50 / p99 (ms)"),
                Chart::new("fill", "Fill rate (%)"),
                Chart::new(
                    "revenue",
                    format!(
                        "Cleared/min, gross, and clearing eCPM ({})",
                        self.config.currency
                    ),
                ),
            ],
        );
        LiveBox {
            base,
            chart_script: CHART_SCRIPT,
            charts,
            currency: &self.config.currency,
            now,
            auctions_total: view.auctions_total,
            billed_total: number(view.billed_total, 2),
            top_bidders,
        }
        .render()
    }

    /// The section's first page: what is configured, and the live numbers.
    fn home(&self, req: &AdminRequest) -> AdminReply {
        let live = match self.live_box(&req.base, charts::chosen(req)) {
            Ok(live) => live,
            Err(error) => {
                tracing::error!(%error, "exchange admin template failed");
                String::new()
            }
        };
        let title = self.title();
        let config = &self.config;
        render(
            title.clone(),
            "",
            &HomePage {
                title: &title,
                currency: &config.currency,
                publishers: config.publishers.len(),
                placements: config.placements.len(),
                bidders: config.bidders.len(),
                bidders_enabled: config.bidders.iter().filter(|b| b.enabled).count(),
                live: &live,
            },
        )
    }

    /// `live.json?after=T`: the points after Unix ms `T` and the top bidders.
    fn live_json(&self, req: &AdminRequest) -> AdminReply {
        let after = req
            .query
            .get("after")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let view = self.shared.admin.live.view(after);
        AdminReply::json(serde_json::to_string(&view).unwrap_or_else(|_| "{}".into()))
    }
}

impl AdminSection for Exchange {
    fn title(&self) -> String {
        if &*self.admin.name == "exchange" {
            "Exchange".to_owned()
        } else {
            format!("Exchange {}", self.admin.name)
        }
    }

    fn nav(&self) -> Vec<NavLink> {
        vec![
            NavLink::new("Live", ""),
            NavLink::new("Publishers", "publishers"),
            NavLink::new("Placements", "placements"),
            NavLink::new("Bidders", "bidders"),
            NavLink::new("Floors", "floors"),
        ]
    }

    fn summary(&self, base: &str) -> Option<String> {
        match self.live_box(base, (Range::Minutes15, false)) {
            Ok(html) => Some(html),
            Err(error) => {
                tracing::error!(%error, "exchange admin template failed");
                None
            }
        }
    }

    fn alerts(&self, base: &str) -> Vec<Alert> {
        self.bidder_alerts(base)
    }

    fn serve<'a>(&'a self, req: AdminRequest) -> BoxFuture<'a, AdminReply> {
        Box::pin(async move {
            let post = req.method == Method::POST;
            if !post && req.method != Method::GET {
                return AdminReply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            }
            match (post, req.path.as_str()) {
                (false, "/") => self.home(&req),
                (false, "/live.json") => self.live_json(&req),
                (false, "/series.json") => self.series_json(&req),
                (false, "/bidders/view") => self.bidder_view(&req),
                (false, "/publishers/view") => self.publisher_view(&req).await,
                (false, "/placements/view") => self.placement_view(&req).await,
                (false, "/publishers") => self.publishers_get(&req),
                (false, "/publishers/edit") => self.publisher_edit_get(&req),
                (false, "/placements") => self.placements_get(&req),
                (false, "/placements/edit") => self.placement_edit_get(&req),
                (false, "/bidders") => self.bidders_get(&req),
                (false, "/bidders/edit") => self.bidder_edit_get(&req),
                (false, "/floors") => self.floors_get(&req),
                (false, path) if path.starts_with("/static/") => AdminReply::Raw(
                    ASSETS.serve(&path["/static/".len()..], req.if_none_match.as_ref()),
                ),
                (true, "/publishers") => self.create_publisher(&req).await,
                (true, "/publishers/edit") => self.edit_publisher(&req).await,
                (true, "/placements") => self.create_placement(&req).await,
                (true, "/placements/edit") => self.edit_placement(&req).await,
                (true, "/bidders") => self.add_bidder(&req).await,
                (true, "/bidders/edit") => self.edit_bidder(&req).await,
                (true, "/bidders/test") => self.test_bidder(&req).await,
                (true, "/floors") => self.set_floor(&req).await,
                (true, "/floors/rules") => self.set_floor_rules(&req).await,
                _ => AdminReply::text(StatusCode::NOT_FOUND, "not found"),
            }
        })
    }
}
