//! `GET /notice/{win,bill,loss}`: the supply side reports the outcome of our bid; we verify
//! the signed token and fire the winning partner's own notice with its macros filled in.

use super::{Exchange, no_content};
use crate::notice::{MacroValues, NoticeKind, Target, TokenError, WinToken, expand};
use bourse_kernel::{Request, Response, json_response};
use http::StatusCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn parse_price(text: Option<&str>) -> Option<f64> {
    text?
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
}

impl Exchange {
    fn notice_outcome(&self, kind: NoticeKind, outcome: &'static str) {
        self.shared.metrics.notice_requests[kind as usize].inc(outcome);
    }

    /// Handles one notice from the supply side.
    pub(crate) async fn notice(&self, kind: String, req: Request) -> Response {
        let kind = match kind.as_str() {
            "win" => NoticeKind::Win,
            "bill" => NoticeKind::Bill,
            "loss" => NoticeKind::Loss,
            _ => {
                return json_response(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not_found"}),
                );
            }
        };
        let label = kind.as_str();
        let mut token_text = None;
        let mut price = None;
        let mut loss = None;
        let mut min_to_win = None;
        for (key, value) in url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        {
            match key.as_ref() {
                "t" => token_text = Some(value.into_owned()),
                "p" => price = parse_price(Some(&value)),
                "r" => loss = value.parse::<u16>().ok(),
                "m" => min_to_win = parse_price(Some(&value)),
                _ => {}
            }
        }
        let Some(token_text) = token_text else {
            self.notice_outcome(kind, "malformed");
            return json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "missing_token"}),
            );
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = match self.signer.verify(&token_text, now) {
            // A genuine token of another kind, replayed here, is as good as forged.
            Ok(token) if token.kind != kind => Err(TokenError::BadSignature),
            other => other,
        };
        let token = match token {
            Ok(token) => token,
            Err(err) => {
                let (status, outcome) = match err {
                    TokenError::Expired => (StatusCode::GONE, "expired"),
                    TokenError::BadSignature => (StatusCode::FORBIDDEN, "forged"),
                    TokenError::Malformed => (StatusCode::BAD_REQUEST, "malformed"),
                };
                self.notice_outcome(kind, outcome);
                return json_response(
                    status,
                    &serde_json::json!({"error": "bad_token", "message": err.to_string()}),
                );
            }
        };
        // A bill is honoured once per impression, whichever path or node it arrives by (its key
        // is the beacon's too); a win or loss notice once per bid.
        let (once, key) = match kind {
            NoticeKind::Bill => (&self.shared.billing, token.billing_key()),
            NoticeKind::Win | NoticeKind::Loss => (&self.shared.notices, token.notice_key()),
        };
        // Kept until the token can no longer be presented, plus clock skew between nodes.
        let ttl = Duration::from_secs(token.exp.saturating_sub(now).saturating_add(60))
            .min(bourse_services::MAX_ONCE_TTL);
        match once.first(&key, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                self.notice_outcome(kind, "duplicate");
                return no_content();
            }
            Err(error) => {
                // Refusing is safe: the supply side retries; notifying twice cannot be undone.
                tracing::error!(%error, notice = label, "cannot check whether a notice was honoured");
                self.notice_outcome(kind, "error");
                return bourse_kernel::error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dedup_unavailable",
                );
            }
        }
        self.notice_outcome(kind, "accepted");

        self.honour(kind, &token, price, loss, min_to_win);
        no_content()
    }

    /// Acts on a verified, first-seen notice: fires the partner's own URL for it with the
    /// macros filled in, and on billing counts the revenue. `price` is the price we quoted
    /// upstream (net of fee), `None` when the caller did not say.
    pub(crate) fn honour(
        &self,
        kind: NoticeKind,
        token: &WinToken,
        price: Option<f64>,
        loss: Option<u16>,
        min_to_win: Option<f64>,
    ) {
        // The upstream price is what we quoted, net of fee; turn it into the partner's terms.
        let partner_price = price.map_or(token.price, |p| (p * token.gross_up).min(token.price));
        let now_ms = bourse_kernel::unix_now_ms();
        let values = MacroValues {
            auction_id: &token.auction,
            bid_id: &token.bid,
            imp_id: &token.imp,
            seat_id: &token.seat,
            ad_id: &token.ad,
            price: (kind != NoticeKind::Loss).then_some(partner_price),
            currency: &token.cur,
            market_bid_ratio: (kind != NoticeKind::Loss && token.bid_price > 0.0)
                .then(|| partner_price / token.bid_price),
            loss: (kind == NoticeKind::Loss).then(|| loss.unwrap_or(1)),
            min_to_win: min_to_win.map(|m| m * token.gross_up),
            imp_ts: (kind == NoticeKind::Bill).then_some(now_ms),
        };
        if let Some(template) = token.partner_url.as_deref() {
            self.fire_notice(&token.bidder, kind, expand(template, &values, Target::Url));
        }
        if kind == NoticeKind::Bill {
            let to_base = self
                .rates
                .convert(1.0, &token.cur, &self.config.currency)
                .unwrap_or(1.0);
            let gross = partner_price / token.gross_up * (1.0 - self.config.fee).recip() * to_base;
            let gross = if gross.is_finite() { gross } else { 0.0 };
            self.shared.metrics.billed_revenue.inc_by(gross / 1000.0);
            self.shared
                .metrics
                .fee
                .inc_by(gross * self.config.fee / 1000.0);
        }
    }
}
