//! Bidders: endpoint, adapter, timeout, QPS cap, bid adjustment and enabled state, with live
//! health from the metrics registry; added, edited and disabled live.

use super::live::Families;
use super::{entry, list, number, render};
use crate::bidder::BidderSpec;
use crate::exchange::Exchange;
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest, FieldErrors, Form, Pager};
use http::StatusCode;

const BIDDER_FIELDS: &[&str] = &[
    "name",
    "adapter",
    "endpoint",
    "timeout_ms",
    "qps",
    "adjustment",
    "media",
];

#[derive(Template)]
#[template(path = "bidders.html")]
struct BiddersPage<'a> {
    base: &'a str,
    csrf: &'a str,
    bidders: Vec<BidderRow>,
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
}

/// A bidder's health from its counts: failing when most calls time out or fail, degraded
/// when more than one in twenty does, idle when nothing was asked.
fn health(requests: u64, timeouts: u64, errors: u64, enabled: bool) -> &'static str {
    if !enabled {
        return "off";
    }
    if requests == 0 {
        return "idle";
    }
    let failing = (timeouts + errors) as f64 / requests as f64;
    if failing > 0.5 {
        "failing"
    } else if failing > 0.05 {
        "degraded"
    } else {
        "ok"
    }
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
            timeout_ms: "150".into(),
            qps: "0".into(),
            adjustment: "1".into(),
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

    /// The form's numbers, or which fields cannot be read. Range checks are the config's.
    fn values(&self) -> Result<BidderValues, FieldErrors> {
        let mut errors = FieldErrors::default();
        let whole = |text: &str, default: i64| -> Option<i64> {
            if text.is_empty() {
                Some(default)
            } else {
                text.parse::<i64>().ok()
            }
        };
        let timeout_ms = whole(&self.timeout_ms, 150);
        if timeout_ms.is_none() {
            errors.set(
                "timeout_ms",
                "The timeout is a whole number of milliseconds.",
            );
        }
        let qps = whole(&self.qps, 0);
        if qps.is_none() {
            errors.set(
                "qps",
                "The QPS cap is a whole number of requests per second.",
            );
        }
        let adjustment = if self.adjustment.is_empty() {
            Some(1.0)
        } else {
            self.adjustment
                .parse::<f64>()
                .ok()
                .filter(|a| a.is_finite())
        };
        if adjustment.is_none() {
            errors.set("adjustment", "The adjustment is a number, e.g. 0.95.");
        }
        match (timeout_ms, qps, adjustment) {
            (Some(timeout_ms), Some(qps), Some(adjustment)) => Ok(BidderValues {
                timeout_ms,
                qps,
                adjustment,
            }),
            _ => Err(errors),
        }
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
    fn bidders_page(
        &self,
        req: &AdminRequest,
        page_number: usize,
        form: BidderForm,
        errors: FieldErrors,
    ) -> AdminReply {
        let admin = &self.shared.admin;
        let families = Families::gather(&admin.registry);
        let count = |name: &str, bidder: &str| families.sum(name, &[("bidder", bidder)]) as u64;
        let rows = self
            .config
            .bidders
            .iter()
            .map(|b| {
                let requests = count("bourse_bidder_requests_total", &b.name);
                let timeouts = count("bourse_bidder_timeouts_total", &b.name);
                let errors = count("bourse_bidder_errors_total", &b.name);
                BidderRow {
                    name: b.name.clone(),
                    adapter: b.adapter.clone(),
                    endpoint: b.endpoint.clone(),
                    timeout_ms: b.timeout_ms,
                    qps: b.qps,
                    adjustment: number(b.adjustment, 4),
                    enabled: b.enabled,
                    bids: count("bourse_bidder_bids_total", &b.name),
                    health: health(requests, timeouts, errors, b.enabled),
                    requests,
                    timeouts,
                    errors,
                }
            })
            .collect();
        let (bidders, pager) = Pager::slice(rows, page_number, format!("{}/bidders", req.base));
        render(
            "Bidders",
            "bidders",
            &BiddersPage {
                base: &req.base,
                csrf: &req.csrf,
                bidders,
                pager,
                adapters: &admin.adapters,
                form,
                errors,
                editing: false,
            },
        )
    }

    pub(super) fn bidders_get(&self, req: &AdminRequest) -> AdminReply {
        self.bidders_page(
            req,
            req.query.page(),
            BidderForm::default(),
            FieldErrors::default(),
        )
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
        let result = match form.values() {
            Ok(values) => {
                let mut table = toml_edit::Table::new();
                form.write(&values, &mut table);
                self.change(req, |exchange| {
                    list(exchange, "bidders")?.push(table);
                    Ok(())
                })
                .await
                .map_err(|refusal| {
                    FieldErrors::from_refusal(&refusal, &self.scope("bidders"), BIDDER_FIELDS)
                })
            }
            Err(errors) => Err(errors),
        };
        match result {
            Ok(()) => AdminReply::Redirect(format!("{}/bidders", req.base)),
            Err(errors) => self
                .bidders_page(req, 1, form, errors)
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
                    1,
                    BidderForm::default(),
                    FieldErrors::general(format!("No bidder `{name}` in the running config.")),
                )
                .with_status(StatusCode::NOT_FOUND),
        }
    }

    pub(super) async fn edit_bidder(&self, req: &AdminRequest) -> AdminReply {
        let form = BidderForm::from(&req.form);
        let result = match form.values() {
            Ok(values) => self
                .change(req, |exchange| {
                    form.write(&values, entry(exchange, "bidders", "name", &form.name)?);
                    Ok(())
                })
                .await
                .map_err(|refusal| {
                    FieldErrors::from_refusal(&refusal, &self.scope("bidders"), BIDDER_FIELDS)
                }),
            Err(errors) => Err(errors),
        };
        match result {
            Ok(()) => AdminReply::Redirect(format!("{}/bidders", req.base)),
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
    fn health_follows_the_share_of_failed_calls() {
        assert_eq!(health(0, 0, 0, true), "idle");
        assert_eq!(health(100, 1, 2, true), "ok");
        assert_eq!(health(100, 5, 5, true), "degraded");
        assert_eq!(health(100, 40, 20, true), "failing");
        assert_eq!(health(100, 40, 20, false), "off");
    }
}
