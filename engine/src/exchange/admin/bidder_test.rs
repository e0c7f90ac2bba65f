//! "Test": one request to one bidder from its admin page, and what came back, so an operator
//! checking a partner sees the answer itself (status, time, body) and what our adapter made of
//! it, without an auction and without touching the bidder's figures or its QPS cap.

use super::render;
use crate::bidder::{CallInfo, Outbound};
use crate::exchange::{BidderRuntime, Exchange};
use crate::openrtb::{BidRequest, MediaType};
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest};
use http::StatusCode;
use std::time::{Duration, Instant};

/// How much of the answer the page shows.
const SHOWN_BYTES: usize = 8 * 1024;

#[derive(Template)]
#[template(path = "bidder_test.html")]
struct BidderTestPage<'a> {
    base: &'a str,
    csrf: &'a str,
    name: &'a str,
    endpoint: &'a str,
    at: String,
    /// One line: what happened.
    outcome: String,
    /// `bid`, `no_bid` or `failed`, for the page's colour.
    verdict: &'static str,
    status: String,
    millis: String,
    bids: Vec<String>,
    problems: Vec<String>,
    sent: String,
    answer: String,
}

/// A small request the bidder can bid on: one impression of the first media type it buys,
/// marked `test: 1` so the partner knows not to bill it.
fn test_request(runtime: &BidderRuntime) -> Option<BidRequest> {
    let media = runtime
        .spec
        .media
        .first()
        .copied()
        .unwrap_or(MediaType::Banner);
    let offer = match media {
        MediaType::Banner => serde_json::json!({"banner": {"format": [{"w": 300, "h": 250}]}}),
        MediaType::Video => {
            serde_json::json!({"video": {"mimes": ["video/mp4"], "w": 640, "h": 360}})
        }
        MediaType::Audio => serde_json::json!({"audio": {"mimes": ["audio/mp4"]}}),
        MediaType::Native => serde_json::json!({"native": {"ver": "1.2", "request":
            "{\"ver\":\"1.2\",\"assets\":[{\"id\":1,\"required\":1,\"title\":{\"len\":90}}]}"}}),
    };
    let mut imp = serde_json::json!({"id": "1", "bidfloor": 0.01, "bidfloorcur": "USD"});
    imp.as_object_mut()?.extend(offer.as_object()?.clone());
    let request = serde_json::json!({
        "id": format!("bourse-admin-test-{}", bourse_kernel::unix_now_ms()),
        "test": 1,
        "tmax": runtime.spec.timeout_ms,
        "cur": ["USD"],
        "imp": [imp],
        "site": {"page": "https://bourse.example/admin-test", "domain": "bourse.example"},
        "device": {"ua": "bourse-admin-test", "ip": "192.0.2.1"},
    });
    serde_json::from_value(request).ok()
}

/// The first `SHOWN_BYTES` of a body, as text.
fn shown(body: &[u8]) -> String {
    let cut = body.len().min(SHOWN_BYTES);
    let mut text = String::from_utf8_lossy(&body[..cut]).into_owned();
    if body.len() > cut {
        text.push_str(&format!("\n… ({} bytes in all)", body.len()));
    }
    text
}

impl Exchange {
    /// `POST bidders/test` with `name`: sends the test request and shows the answer.
    pub(super) async fn test_bidder(&self, req: &AdminRequest) -> AdminReply {
        let name = req.form.text("name");
        let Some(runtime) = self.bidders.iter().find(|b| b.spec.name == name) else {
            return AdminReply::text(
                StatusCode::NOT_FOUND,
                format!("No bidder `{name}` in the running config."),
            );
        };
        let mut page = BidderTestPage {
            base: &req.base,
            csrf: &req.csrf,
            name: &runtime.spec.name,
            endpoint: &runtime.spec.endpoint,
            at: bourse_kernel::utc_datetime(bourse_kernel::unix_now_ms() / 1000),
            outcome: String::new(),
            verdict: "failed",
            status: "—".into(),
            millis: "—".into(),
            bids: Vec::new(),
            problems: Vec::new(),
            sent: String::new(),
            answer: String::new(),
        };
        let Some(request) = test_request(runtime) else {
            page.outcome = "The test request could not be built.".into();
            return render("Test bidder", "bidders", &page);
        };
        let outbound = Outbound::new(&request);
        let made = runtime.adapter.make_requests(
            &outbound,
            &CallInfo {
                spec: &runtime.spec,
                tmax_ms: runtime.spec.timeout_ms,
            },
        );
        page.problems = made.errors.iter().map(ToString::to_string).collect();
        let Some(call) = made.requests.into_iter().next() else {
            page.outcome = "The adapter made no request of this test (see why below).".into();
            return render("Test bidder", "bidders", &page);
        };
        page.sent = shown(&call.body);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(runtime.spec.timeout_ms);
        let body = runtime.client.encode_body(&call.body);
        let result = runtime.client.call(&call, body, deadline).await;
        page.millis = format!("{:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                page.outcome = format!(
                    "The call failed ({}): {error}. Timeout {} ms.",
                    error.kind(),
                    runtime.spec.timeout_ms
                );
                return render("Test bidder", "bidders", &page);
            }
        };
        page.status = response.status.to_string();
        page.answer = shown(&response.body);
        match runtime.adapter.make_bids(&request, &call, &response) {
            Ok(Some(bids)) => {
                page.verdict = "bid";
                let currency = bids.currency.as_deref().unwrap_or("USD").to_owned();
                page.bids = bids
                    .bids
                    .iter()
                    .map(|typed| {
                        format!(
                            "{} on impression {} at {} {currency}{}",
                            typed.media_type.as_str(),
                            typed.bid.impid,
                            typed.bid.price.map_or("no price".into(), |p| p.to_string()),
                            typed.bid.adm.as_ref().map_or(String::new(), |adm| format!(
                                ", markup of {} bytes",
                                adm.len()
                            )),
                        )
                    })
                    .collect();
                page.problems
                    .extend(bids.errors.iter().map(ToString::to_string));
                page.outcome = format!("{} bid(s).", page.bids.len());
            }
            Ok(None) => {
                page.verdict = "no_bid";
                page.outcome = "A valid answer without bids (a no-bid).".into();
            }
            Err(error) => {
                page.outcome = format!("The answer was refused ({}): {error}", error.kind());
            }
        }
        render("Test bidder", "bidders", &page)
    }
}
