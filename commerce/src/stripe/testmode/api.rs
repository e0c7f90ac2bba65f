//! The test-mode checkout's Stripe-shaped answers: creating sessions (with Stripe's
//! validation messages and idempotency rule), refunds, the error JSON, and the TEST MODE pay
//! page.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use serde_json::json;

use super::{Line, TestCheckout, TestSession};
use crate::clock;
use crate::secret;
use crate::stripe::client::CheckoutSession;

pub(super) const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TEST MODE checkout</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:1rem auto;padding:0 1rem}
.banner{background:#b45309;color:#fff;padding:.6rem;border-radius:.3rem;font-weight:600}
table{width:100%;border-collapse:collapse}td{padding:.3rem 0}td.n{text-align:right}
button{font-size:1.1rem;padding:.6rem 1.4rem}</style></head>
<body>
<p class="banner">TEST MODE: no real payment is taken. This page stands in for Stripe Checkout.</p>
<h1>Pay {{ total }}</h1>
<table>{% for line in lines %}<tr><td>{{ line.quantity }} × {{ line.name }}</td><td class="n">{{ line.amount }}</td></tr>{% endfor %}</table>
{% if status == "open" %}
<form method="post" action="{{ pay_action }}"><button type="submit" id="pay">Pay {{ total }} (test)</button></form>
<p><a href="{{ cancel_url }}" id="cancel">Cancel</a></p>
{% else %}<p>This checkout is {{ status }}.</p>{% endif %}
</body></html>"#;

impl TestCheckout {
    pub(super) fn create(
        &self,
        body: &[u8],
        idempotency_key: Option<String>,
    ) -> Response<Full<Bytes>> {
        let form_text = String::from_utf8_lossy(body).into_owned();
        if let Some(key) = &idempotency_key {
            let replay = self.state.idempotency.lock().get(key).cloned();
            if let Some((earlier_form, id)) = replay {
                if earlier_form != form_text {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                        None,
                    );
                }
                if let Some(s) = self.session(&id) {
                    return json_response(StatusCode::OK, &s.session);
                }
            }
        }
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let session = match build_session(&form, &self.state.config.public_url) {
            Ok(s) => s,
            Err((message, param)) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &message,
                    Some(&param),
                );
            }
        };
        let id = session.session.id.clone();
        let reply = json_response(StatusCode::OK, &session.session);
        self.state.sessions.lock().insert(id.clone(), session);
        if let Some(key) = idempotency_key {
            self.state.idempotency.lock().insert(key, (form_text, id));
        }
        reply
    }

    /// `POST /v1/refunds` with `payment_intent`: refunds in full, answers the Refund, and
    /// delivers `charge.refunded` afterwards, as Stripe does.
    pub(super) fn refund_api(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let Some(intent) = form.get("payment_intent") else {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Missing required param: payment_intent.",
                Some("payment_intent"),
            );
        };
        let found = self.state.sessions.lock().values().find_map(|s| {
            (s.session.payment_intent.as_deref() == Some(intent.as_str()))
                .then(|| (s.session.id.clone(), s.refunded, s.session.amount_total))
        });
        let Some((id, refunded, amount)) = found else {
            return api_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                &format!("No such payment_intent: '{intent}'"),
                Some("payment_intent"),
            );
        };
        if refunded {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "Charge has already been refunded.",
                None,
            );
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.refund(&id).await {
                tracing::warn!(error = %e, "test-mode refund not delivered");
            }
        });
        json_response(
            StatusCode::OK,
            &json!({"id": secret::new_id("re_test"), "object": "refund",
            "status": "succeeded", "payment_intent": intent, "amount": amount}),
        )
    }

    pub(super) fn page(&self, id: &str) -> Response<Full<Bytes>> {
        let Some(s) = self.session(id) else {
            return html(StatusCode::NOT_FOUND, "<p>TEST MODE: no such checkout.</p>");
        };
        let currency = s.session.currency.clone().unwrap_or_default();
        let lines: Vec<_> = s
            .lines
            .iter()
            .map(|l| {
                json!({"quantity": l.quantity, "name": l.name,
                       "amount": crate::payments::money(l.unit_amount * l.quantity, &l.currency)})
            })
            .collect();
        let page = self.state.page.get_template("pay.html").and_then(|t| {
            t.render(json!({
                "total": crate::payments::money(s.session.amount_total.unwrap_or(0), &currency),
                "lines": lines,
                "status": s.session.status.clone().unwrap_or_default(),
                "pay_action": format!("{}/pay/{}", self.state.config.public_url.trim_end_matches('/'), id),
                "cancel_url": s.cancel_url,
            }))
        });
        match page {
            Ok(page) => html(StatusCode::OK, &page),
            Err(e) => html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("<p>TEST MODE: {e}</p>"),
            ),
        }
    }
}

/// Builds a session from a create request, or Stripe's error message and param.
pub(super) fn build_session(
    form: &BTreeMap<String, String>,
    public_url: &str,
) -> Result<TestSession, (String, String)> {
    let missing = |param: &str| {
        (
            format!("Missing required param: {param}."),
            param.to_owned(),
        )
    };
    match form.get("mode").map(String::as_str) {
        Some("payment") => {}
        Some(_) => {
            return Err((
                "Only mode=payment is supported in test mode.".into(),
                "mode".into(),
            ));
        }
        None => return Err(missing("mode")),
    }
    let success_url = form
        .get("success_url")
        .cloned()
        .ok_or_else(|| missing("success_url"))?;
    let cancel_url = form
        .get("cancel_url")
        .cloned()
        .unwrap_or_else(|| success_url.clone());
    let mut lines = Vec::new();
    for i in 0.. {
        let get = |rest: &str| form.get(&format!("line_items[{i}]{rest}"));
        let Some(currency) = get("[price_data][currency]") else {
            break;
        };
        let param = |rest: &str| format!("line_items[{i}]{rest}");
        let number = |rest: &str| -> Result<i64, (String, String)> {
            get(rest)
                .ok_or_else(|| missing(&param(rest)))?
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| (format!("Invalid integer: {}", param(rest)), param(rest)))
        };
        lines.push(Line {
            name: get("[price_data][product_data][name]")
                .cloned()
                .ok_or_else(|| missing(&param("[price_data][product_data][name]")))?,
            unit_amount: number("[price_data][unit_amount]")?,
            currency: currency.clone(),
            quantity: number("[quantity]")?,
        });
    }
    if lines.is_empty() {
        return Err(missing("line_items"));
    }
    let currency = lines[0].currency.clone();
    if lines.iter().any(|l| l.currency != currency) {
        return Err((
            "All line items must use the same currency.".into(),
            "line_items".into(),
        ));
    }
    let now = clock::now();
    let expires_at = match form.get("expires_at") {
        Some(at) => {
            let at: i64 = at.parse().map_err(|_| {
                (
                    "Invalid integer: expires_at".to_owned(),
                    "expires_at".to_owned(),
                )
            })?;
            if at < now + 30 * 60 - 60 || at > now + 24 * 3600 {
                return Err((
                    "The `expires_at` timestamp must be between 30 minutes and 24 hours from now."
                        .into(),
                    "expires_at".into(),
                ));
            }
            at
        }
        None => now + 24 * 3600,
    };
    let metadata: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let id = secret::new_id("cs_test");
    let total = lines.iter().map(|l| l.unit_amount * l.quantity).sum();
    Ok(TestSession {
        session: CheckoutSession {
            url: Some(format!("{}/pay/{id}", public_url.trim_end_matches('/'))),
            id,
            status: Some("open".into()),
            payment_status: Some("unpaid".into()),
            expires_at: Some(expires_at),
            client_reference_id: form.get("client_reference_id").cloned(),
            metadata,
            amount_total: Some(total),
            currency: Some(currency),
            customer_email: form.get("customer_email").cloned(),
            payment_intent: None,
        },
        lines,
        success_url,
        cancel_url,
        charge_id: None,
        refunded: false,
    })
}

pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

pub(super) fn api_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    param: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut error = json!({"type": kind, "message": message});
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json_response(status, &json!({ "error": error }))
}

pub(super) fn no_such_session(id: &str) -> Response<Full<Bytes>> {
    let mut response = api_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        &format!("No such checkout.session: '{id}'"),
        Some("session"),
    );
    if let Ok(body) = serde_json::to_vec(&json!({"error": {"type": "invalid_request_error",
        "code": "resource_missing", "message": format!("No such checkout.session: '{id}'"),
        "param": "session"}}))
    {
        *response.body_mut() = Full::new(Bytes::from(body));
    }
    response
}

pub(super) fn html(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap_or_default()
}

pub(super) fn redirect(location: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::payments::money;

    #[test]
    fn money_is_written_with_the_currency_exponent() {
        assert_eq!(money(4_900, "usd"), "49.00 USD");
        assert_eq!(money(5, "eur"), "0.05 EUR");
        assert_eq!(money(500, "jpy"), "500 JPY");
        assert_eq!(money(1_234, "kwd"), "1.234 KWD");
    }
}
