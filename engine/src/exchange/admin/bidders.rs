//! Bidders: endpoint, adapter, timeout, QPS cap, bid adjustment and enabled state, with live
//! health from the metrics registry; added, edited and disabled live.

use super::live::{Families, Health, HealthState, WindowCounts};
use super::{ListView, entry, list, number, render};
use crate::bidder::BidderSpec;
use crate::exchange::Exchange;
use askama::Template;
use bourse_kernel::admin::{
    AdminReply, AdminRequest, Alert, AlertLevel, FieldErrors, Form, Pager, SortKey,
};
use http::StatusCode;

/// What an empty field means, and what an unreadable one is checked as.
const DEFAULT_TIMEOUT_MS: i64 = 150;
const DEFAULT_QPS: i64 = 0;
const DEFAULT_ADJUSTMENT: f64 = 1.0;

const BIDDER_FIELDS: &[&str] = &[
    "name",
    "adapter",
    "endpoint",
    "timeout_ms",
    "qps",
    "adjustment",
    "media",
];

/// The bidders list's sortable columns, key columns first.
const BIDDER_COLUMNS: &[(&str, &str)] = &[
    ("name", "Bidder"),
    ("health", "Health"),
    ("errors", "Errors"),
    ("requests", "Requests"),
    ("bids", "Bids"),
    ("timeouts", "Timeouts"),
    ("adapter", "Adapter"),
    ("state", "State"),
];

/// What the bidders list filters by: a health state, or `off` for disabled bidders.
const HEALTH_FILTER: (&str, &[&str]) = ("Health", &["down", "degraded", "healthy", "idle", "off"]);

#[derive(Template)]
#[template(path = "bidders.html")]
struct BiddersPage<'a> {
    base: &'a str,
    csrf: &'a str,
    bidders: Vec<BidderRow>,
    list: ListView,
    pager: Pager,
    adapters: &'a [&'static str],
    form: BidderForm,
    errors: FieldErrors,
    editing: bool,
}

#[derive(Template)]
#[template(path = "bidder_edit.html")]
struct BidderEditPage<'a> {
    base: &'a str,
    csrf: &'a str,
    adapters: &'a [&'static str],
    form: BidderForm,
    errors: FieldErrors,
    editing: bool,
}

struct BidderRow {
    name: String,
    adapter: String,
    endpoint: String,
    timeout_ms: u64,
    qps: u32,
    adjustment: String,
    enabled: bool,
    requests: u64,
    bids: u64,
    timeouts: u64,
    errors: u64,
    health: &'static str,
    /// What the health rests on and since when it holds; empty when there is nothing to say.
    health_detail: String,
}

impl BidderRow {
    /// The row's key in a column of [`BIDDER_COLUMNS`]; health sorts worst first.
    fn sort_key(&self, column: &str) -> SortKey {
        let count = |n: u64| SortKey::Number(n as f64);
        match column {
            "health" => SortKey::Number(match self.health {
                "down" => 0.0,
                "degraded" => 1.0,
                "healthy" => 2.0,
                "idle" => 3.0,
                _ => 4.0,
            }),
            "errors" => count(self.errors),
            "requests" => count(self.requests),
            "bids" => count(self.bids),
            "timeouts" => count(self.timeouts),
            "adapter" => SortKey::Text(self.adapter.clone()),
            "state" => SortKey::Text(if self.enabled { "enabled" } else { "disabled" }.into()),
            _ => SortKey::Text(self.name.clone()),
        }
    }
}

/// A bidder's health over the last minute (disabled ones are "off"), and the words behind it:
/// what failed in the last minute and the last five, by kind, and since when the state holds.
fn health_of(health: Option<&Health>, enabled: bool) -> (&'static str, String) {
    if !enabled {
        return ("off", String::new());
    }
    let Some(health) = health else {
        // Not sampled yet (the first second of the instance).
        return (HealthState::Idle.as_str(), String::new());
    };
    let detail = format!(
        "last minute: {}; last 5 minutes: {}; since {}",
        window_text(&health.minute),
        window_text(&health.five_minutes),
        health.since_text(),
    );
    (health.state.as_str(), detail)
}

/// "12 of 400 calls failed (timeout 2, connect 10)", or "no calls".
pub(super) fn window_text(window: &WindowCounts) -> String {
    if window.requests == 0 {
        return "no calls".to_owned();
    }
    let mut text = format!("{} of {} calls failed", window.failed(), window.requests);
    let kinds: Vec<String> = (window.timeouts > 0)
        .then(|| format!("timeout {}", window.timeouts))
        .into_iter()
        .chain(window.kinds.iter().map(|(kind, n)| format!("{kind} {n}")))
        .collect();
    if !kinds.is_empty() {
        text.push_str(&format!(" ({})", kinds.join(", ")));
    }
    if let (Some(p50), Some(p99)) = (window.p50_ms, window.p99_ms) {
        text.push_str(&format!(
            ", answers in {p50:.0} ms (p50), {p99:.0} ms (p99)"
        ));
    }
    text
}

struct BidderForm {
    name: String,
    adapter: String,
    endpoint: String,
    timeout_ms: String,
    qps: String,
    adjustment: String,
    media: String,
    enabled: bool,
}

impl Default for BidderForm {
    fn default() -> Self {
        BidderForm {
            name: String::new(),
            adapter: "openrtb".into(),
            endpoint: String::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS.to_string(),
            qps: DEFAULT_QPS.to_string(),
            adjustment: DEFAULT_ADJUSTMENT.to_string(),
            media: "banner".into(),
            enabled: true,
        }
    }
}

impl BidderForm {
    fn from(form: &Form) -> BidderForm {
        BidderForm {
            name: form.text("name"),
            adapter: form.text("adapter"),
            endpoint: form.text("endpoint"),
            timeout_ms: form.text("timeout_ms"),
            qps: form.text("qps"),
            adjustment: form.text("adjustment"),
            media: form.text("media"),
            enabled: form.checked("enabled"),
        }
    }

    fn of(spec: &BidderSpec) -> BidderForm {
        BidderForm {
            name: spec.name.clone(),
            adapter: spec.adapter.clone(),
            endpoint: spec.endpoint.clone(),
            timeout_ms: spec.timeout_ms.to_string(),
            qps: spec.qps.to_string(),
            adjustment: number(spec.adjustment, 4),
            media: spec
                .media
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(","),
            enabled: spec.enabled,
        }
    }

    /// The form's numbers (defaults where a field cannot be read) and which fields cannot be
    /// read. Range checks are the config's.
    fn values(&self) -> (BidderValues, FieldErrors) {
        let mut errors = FieldErrors::default();
        let whole = |text: &str, default: i64| -> Option<i64> {
            if text.is_empty() {
                Some(default)
            } else {
                text.parse::<i64>().ok()
            }
        };
        let timeout_ms = whole(&self.timeout_ms, DEFAULT_TIMEOUT_MS);
        if timeout_ms.is_none() {
            errors.set(
                "timeout_ms",
                "The timeout is a whole number of milliseconds.",
            );
        }
        let qps = whole(&self.qps, DEFAULT_QPS);
        if qps.is_none() {
            errors.set(
                "qps",
                "The QPS cap is a whole number of requests per second.",
            );
        }
        let adjustment = if self.adjustment.is_empty() {
            Some(DEFAULT_ADJUSTMENT)
        } else {
            self.adjustment
                .parse::<f64>()
                .ok()
                .filter(|a| a.is_finite())
        };
        if adjustment.is_none() {
            errors.set("adjustment", "The adjustment is a number, e.g. 0.95.");
        }
        let values = BidderValues {
            timeout_ms: timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            qps: qps.unwrap_or(DEFAULT_QPS),
            adjustment: adjustment.unwrap_or(DEFAULT_ADJUSTMENT),
        };
        (values, errors)
    }

    /// Writes the form into `table`; other settings, such as headers, are kept.
    fn write(&self, values: &BidderValues, table: &mut toml_edit::Table) {
        let media = if self.media.is_empty() {
            "banner"
        } else {
            &self.media
        };
        let mut media_list = toml_edit::Array::new();
        for m in media.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            media_list.push(m);
        }
        table["name"] = toml_edit::value(self.name.as_str());
        table["adapter"] = toml_edit::value(self.adapter.as_str());
        table["endpoint"] = toml_edit::value(self.endpoint.as_str());
        table["timeout_ms"] = toml_edit::value(values.timeout_ms);
        table["qps"] = toml_edit::value(values.qps);
        table["adjustment"] = toml_edit::value(values.adjustment);
        table["media"] = toml_edit::value(media_list);
        table["enabled"] = toml_edit::value(self.enabled);
    }
}

/// A bidder form's numbers, read.
struct BidderValues {
    timeout_ms: i64,
    qps: i64,
    adjustment: f64,
}

impl Exchange {
    /// The enabled bidders that are down or degraded over the last minute, for the strip at the
    /// top of every admin page.
    pub(super) fn bidder_alerts(&self, base: &str) -> Vec<Alert> {
        let health = self.shared.admin.live.health();
        self.config
            .bidders
            .iter()
            .filter(|b| b.enabled)
            .filter_map(|b| {
                let health = health.get(&b.name)?;
                let level = match health.state {
                    HealthState::Down => AlertLevel::Down,
                    HealthState::Degraded => AlertLevel::Degraded,
                    HealthState::Idle | HealthState::Healthy => return None,
                };
                Some(Alert {
                    level,
                    text: format!(
                        "Bidder {} is {}: {} in the last minute, since {}",
                        b.name,
                        health.state.as_str(),
                        window_text(&health.minute),
                        health.since_text(),
                    ),
                    href: format!("{base}/bidders"),
                })
            })
            .collect()
    }

    fn bidders_page(
        &self,
        req: &AdminRequest,
        form: BidderForm,
        errors: FieldErrors,
    ) -> AdminReply {
        let admin = &self.shared.admin;
        let families = Families::gather(&admin.registry);
        let health = admin.live.health();
        let count = |name: &str, bidder: &str| families.sum(name, &[("bidder", bidder)]) as u64;
        let rows: Vec<BidderRow> = self
            .config
            .bidders
            .iter()
            .map(|b| {
                let requests = count("bourse_bidder_requests_total", &b.name);
                let timeouts = count("bourse_bidder_timeouts_total", &b.name);
                let errors = count("bourse_bidder_errors_total", &b.name);
                let (health, health_detail) = health_of(health.get(&b.name), b.enabled);
                BidderRow {
                    name: b.name.clone(),
                    adapter: b.adapter.clone(),
                    endpoint: b.endpoint.clone(),
                    timeout_ms: b.timeout_ms,
                    qps: b.qps,
                    adjustment: number(b.adjustment, 4),
                    enabled: b.enabled,
                    bids: count("bourse_bidder_bids_total", &b.name),
                    health,
                    health_detail,
                    requests,
                    timeouts,
                    errors,
                }
            })
            .collect();
        let mut list = ListView::read(req, "bidders", "bidders", BIDDER_COLUMNS, HEALTH_FILTER);
        let (bidders, pager) = list.apply(
            rows,
            |b: &BidderRow| vec![&b.name, &b.adapter, &b.endpoint, b.health],
            |b| b.health,
            BidderRow::sort_key,
        );
        render(
            "Bidders",
            "bidders",
            &BiddersPage {
                base: &req.base,
                csrf: &req.csrf,
                bidders,
                list,
                pager,
                adapters: &admin.adapters,
                form,
                errors,
                editing: false,
            },
        )
    }

    pub(super) fn bidders_get(&self, req: &AdminRequest) -> AdminReply {
        self.bidders_page(req, BidderForm::default(), FieldErrors::default())
    }

    pub(super) async fn add_bidder(&self, req: &AdminRequest) -> AdminReply {
        // New bidders start enabled; the edit form turns them off.
        let mut form = BidderForm {
            enabled: true,
            ..BidderForm::from(&req.form)
        };
        if form.adapter.is_empty() {
            form.adapter = "openrtb".into();
        }
        let (values, parsed) = form.values();
        let mut table = toml_edit::Table::new();
        form.write(&values, &mut table);
        let result = self
            .change_or_check(req, parsed, "bidders", BIDDER_FIELDS, |exchange| {
                list(exchange, "bidders")?.push(table);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => AdminReply::saved(format!("{}/bidders", req.base), "bidder", &form.name),
            Err(errors) => self
                .bidders_page(req, form, errors)
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        }
    }

    fn bidder_edit_page(
        &self,
        req: &AdminRequest,
        form: BidderForm,
        errors: FieldErrors,
    ) -> AdminReply {
        render(
            format!("Bidder {}", form.name),
            "bidders",
            &BidderEditPage {
                base: &req.base,
                csrf: &req.csrf,
                adapters: &self.shared.admin.adapters,
                form,
                errors,
                editing: true,
            },
        )
    }

    pub(super) fn bidder_edit_get(&self, req: &AdminRequest) -> AdminReply {
        let name = req.query.text("name");
        match self.config.bidders.iter().find(|b| b.name == name) {
            Some(spec) => self.bidder_edit_page(req, BidderForm::of(spec), FieldErrors::default()),
            None => self
                .bidders_page(
                    req,
                    BidderForm::default(),
                    FieldErrors::general(format!("No bidder `{name}` in the running config.")),
                )
                .with_status(StatusCode::NOT_FOUND),
        }
    }

    pub(super) async fn edit_bidder(&self, req: &AdminRequest) -> AdminReply {
        let form = BidderForm::from(&req.form);
        let (values, parsed) = form.values();
        let result = self
            .change_or_check(req, parsed, "bidders", BIDDER_FIELDS, |exchange| {
                form.write(&values, entry(exchange, "bidders", "name", &form.name)?);
                Ok(())
            })
            .await;
        match result {
            Ok(()) => AdminReply::saved(format!("{}/bidders", req.base), "bidder", &form.name),
            Err(errors) => self
                .bidder_edit_page(req, form, errors)
                .with_status(StatusCode::UNPROCESSABLE_ENTITY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_says_what_failed_by_kind_and_since_when() {
        let down = Health {
            state: HealthState::Down,
            since_ms: 86_400_000 + 3_723_000,
            minute: WindowCounts {
                requests: 400,
                timeouts: 12,
                errors: 300,
                kinds: vec![("http_status", 100), ("connect", 200)],
                p50_ms: Some(12.0),
                p99_ms: Some(87.4),
            },
            five_minutes: WindowCounts {
                requests: 2_000,
                timeouts: 12,
                errors: 300,
                kinds: vec![("http_status", 100), ("connect", 200)],
                ..WindowCounts::default()
            },
        };
        let (state, detail) = health_of(Some(&down), true);
        assert_eq!(state, "down");
        assert_eq!(
            detail,
            "last minute: 312 of 400 calls failed (timeout 12, http_status 100, connect 200), \
             answers in 12 ms (p50), 87 ms (p99); \
             last 5 minutes: 312 of 2000 calls failed (timeout 12, http_status 100, connect 200); \
             since 1970-01-02 01:02:03 UTC"
        );
        assert_eq!(health_of(Some(&down), false).0, "off");
        assert_eq!(health_of(None, true).0, "idle");
        assert_eq!(window_text(&WindowCounts::default()), "no calls");
    }
}
