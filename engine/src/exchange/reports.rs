//! `GET /reach` (unique users per placement, publisher and bidder) and `GET /ledger` (billed
//! revenue totals), for publishers' and operators' reporting.

use super::Exchange;
use super::run::now_secs;
use crate::ledger::Period;
use bourse_kernel::{ClientAddr, Request, Response, json_response};
use http::StatusCode;
use subtle::ConstantTimeEq as _;

/// `at` (Unix seconds) from the query, else now.
fn requested_time(req: &Request) -> Result<u64, Box<Response>> {
    let at = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "at")
        .map(|(_, v)| v.into_owned());
    match at {
        None => Ok(now_secs()),
        Some(text) => text.parse::<u64>().map_err(|_| {
            Box::new(json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "bad_at", "message": "`at` is a Unix time in seconds"}),
            ))
        }),
    }
}

impl Exchange {
    /// Reports are for the operator: a bearer token when one is configured, else loopback only.
    fn report_allowed(&self, req: &Request) -> Result<(), Box<Response>> {
        let allowed = match &self.config.tags.reports_token {
            Some(token) => {
                let presented = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                bool::from(token.as_bytes().ct_eq(presented.as_bytes()))
            }
            // Canonical, so an IPv4-mapped loopback caller on a dual-stack listener is local;
            // behind a trusted proxy, the forwarded client (not the proxy) must be.
            None => req
                .extensions()
                .get::<ClientAddr>()
                .is_some_and(ClientAddr::is_loopback),
        };
        if allowed {
            Ok(())
        } else {
            Err(Box::new(json_response(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "unauthorized", "message": "send Authorization: Bearer <tags.reports_token>"}),
            )))
        }
    }

    /// `GET /reach[?at=UNIX]`: unique users for the hour and the day holding `at`.
    pub(crate) async fn reach_report(&self, req: &Request) -> Response {
        if let Err(refusal) = self.report_allowed(req) {
            return *refusal;
        }
        let at = match requested_time(req) {
            Ok(at) => at,
            Err(refusal) => return *refusal,
        };
        let reach = &self.shared.reach;
        let mut windows = Vec::new();
        for window in [
            bourse_services::Window::Hour(at).normalized(),
            bourse_services::Window::Day(at).normalized(),
        ] {
            match reach.uniques.counts(window).await {
                Ok(counts) => {
                    // Only the exchange's own dimensions (other plugins count other things).
                    let counts: Vec<ReachCount> = counts
                        .into_iter()
                        .filter(|c| matches!(&*c.dimension, "placement" | "publisher" | "bidder"))
                        .map(|c| ReachCount {
                            dimension: c.dimension.to_string(),
                            id: c.id,
                            window: c.window,
                            uniques: c.estimate,
                        })
                        .collect();
                    windows.push(WindowReport { window, counts });
                }
                Err(error) => {
                    return json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &serde_json::json!({"error": "reach_unavailable", "message": error.to_string()}),
                    );
                }
            }
        }
        let report = ReachReport {
            backend: reach.uniques.backend(),
            precision: reach.uniques.precision(),
            generated_at: super::run::now_secs(),
            windows,
        };
        json_response(StatusCode::OK, &report)
    }

    /// `GET /ledger[?at=UNIX]`: billed totals for the hour and the day holding `at`.
    pub(crate) async fn ledger_report(&self, req: &Request) -> Response {
        if let Err(refusal) = self.report_allowed(req) {
            return *refusal;
        }
        let at = match requested_time(req) {
            Ok(at) => at,
            Err(refusal) => return *refusal,
        };
        let hour = self.shared.ledger.report(Period::Hour(at)).await;
        let day = self.shared.ledger.report(Period::Day(at)).await;
        json_response(
            StatusCode::OK,
            &serde_json::json!({"currency": self.config.currency, "hour": hour, "day": day}),
        )
    }
}

/// `/reach`: unique users per placement, publisher and bidder for each window asked.
#[derive(Debug, serde::Serialize)]
struct ReachReport {
    /// Which store answered (`in_process`: this node's users only; `redis`: every node's).
    backend: bourse_services::Backend,
    /// HyperLogLog precision (registers = 2^precision); Redis always uses 14.
    precision: u8,
    /// When the report was built, Unix seconds.
    generated_at: u64,
    windows: Vec<WindowReport>,
}

#[derive(Debug, serde::Serialize)]
struct WindowReport {
    window: bourse_services::Window,
    counts: Vec<ReachCount>,
}

#[derive(Debug, serde::Serialize)]
struct ReachCount {
    /// `placement`, `publisher` or `bidder`.
    dimension: String,
    id: String,
    window: bourse_services::Window,
    /// Estimated distinct users.
    uniques: u64,
}
