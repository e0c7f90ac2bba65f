//! The test-mode checkout: a local stand-in for Stripe, on only when configured and labelled
//! TEST MODE on every page it shows. It answers the API calls the client makes
//! (`POST /v1/checkout/sessions`, retrieve, expire) with Stripe's shapes and errors, serves a
//! pay page for each session, and on "Pay" sends the site a `checkout.session.completed`
//! webhook signed with the configured secret, exactly as Stripe would; `refund` and `expire`
//! send `charge.refunded` and `checkout.session.expired`. A purchase thus runs end to end
//! offline through the same client, webhook endpoint and verification as with Stripe.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock;
use crate::secret;
use crate::stripe::client::CheckoutSession;
use crate::stripe::webhook;

/// `[sites.payments.test_checkout]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCheckoutConfig {
    /// The API key clients must present (`sk_test_…`).
    pub secret_key: String,
    /// The secret webhooks are signed with (`whsec_…`), shared with the site.
    pub webhook_secret: String,
    /// The site's webhook endpoint, e.g. `http://127.0.0.1:8080/courses/webhooks/stripe`.
    pub webhook_url: String,
    /// Where this checkout is reachable by browsers, e.g. `http://127.0.0.1:8080/test-checkout`.
    pub public_url: String,
    /// The path prefix requests arrive under when mounted inside another server.
    #[serde(default)]
    pub mount: String,
}

impl std::fmt::Debug for TestCheckoutConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCheckoutConfig")
            .field("webhook_url", &self.webhook_url)
            .field("public_url", &self.public_url)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Line {
    name: String,
    unit_amount: i64,
    currency: String,
    quantity: i64,
}

#[derive(Debug, Clone)]
struct TestSession {
    session: CheckoutSession,
    lines: Vec<Line>,
    success_url: String,
    cancel_url: String,
    charge_id: Option<String>,
    refunded: bool,
}

/// What a webhook delivery got back from the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: String,
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum TestCheckoutError {
    #[error("no test checkout session `{0}`")]
    Unknown(String),
    #[error("session `{id}` is {status}, not {wanted}")]
    WrongState {
        id: String,
        status: String,
        wanted: &'static str,
    },
    #[error("webhook delivery to {url} failed: {message}")]
    Delivery { url: String, message: String },
}

/// The test-mode checkout; cheap to clone.
#[derive(Clone)]
pub struct TestCheckout {
    state: Arc<State>,
}

impl std::fmt::Debug for TestCheckout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCheckout")
            .field("public_url", &self.state.config.public_url)
            .finish_non_exhaustive()
    }
}

struct State {
    config: TestCheckoutConfig,
    sessions: Mutex<HashMap<String, TestSession>>,
    /// Idempotency-Key → (the request's form, the session it created).
    idempotency: Mutex<HashMap<String, (String, String)>>,
    http: Client<HttpConnector, Full<Bytes>>,
    page: minijinja::Environment<'static>,
}

const PAGE: &str = r#"<!doctype html>
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
    pub fn new(config: TestCheckoutConfig) -> TestCheckout {
        let mut page = minijinja::Environment::new();
        page.add_template("pay.html", PAGE)
            .expect("the pay page template parses");
        page.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        TestCheckout {
            state: Arc::new(State {
                config,
                sessions: Mutex::new(HashMap::new()),
                idempotency: Mutex::new(HashMap::new()),
                http: Client::builder(TokioExecutor::new()).build_http(),
                page,
            }),
        }
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let this = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Answers one request (for mounting inside another server).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let Some(path) = parts
            .uri
            .path()
            .strip_prefix(self.state.config.mount.as_str())
            .map(str::to_owned)
        else {
            return api_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "Unrecognized request URL.",
                None,
            );
        };
        let body = match Limited::new(body, 256 * 1024).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "Request body unreadable or too large.",
                    None,
                );
            }
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let api = path.starts_with("/v1/");
        if api && !self.authorized(&parts.headers) {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "Invalid API Key provided.",
                None,
            );
        }
        match (&parts.method, segments.as_slice()) {
            (&Method::POST, ["v1", "checkout", "sessions"]) => {
                let key = parts
                    .headers
                    .get("Idempotency-Key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                self.create(&body, key)
            }
            (&Method::GET, ["v1", "checkout", "sessions", id]) => match self.session(id) {
                Some(s) => json_response(StatusCode::OK, &s.session),
                None => no_such_session(id),
            },
            (&Method::POST, ["v1", "checkout", "sessions", id, "expire"]) => {
                match self.expire(id).await {
                    Ok(_) => match self.session(id) {
                        Some(s) => json_response(StatusCode::OK, &s.session),
                        None => no_such_session(id),
                    },
                    Err(TestCheckoutError::Unknown(_)) => no_such_session(id),
                    Err(e) => api_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        &e.to_string(),
                        None,
                    ),
                }
            }
            (&Method::POST, ["v1", "refunds"]) => self.refund_api(&body),
            (&Method::GET, ["pay", id]) => self.page(id),
            (&Method::POST, ["pay", id]) => match self.pay(id).await {
                Ok(_) => {
                    let target = self
                        .session(id)
                        .map(|s| s.success_url.replace("{CHECKOUT_SESSION_ID}", id))
                        .unwrap_or_default();
                    redirect(&target)
                }
                Err(e) => html(StatusCode::CONFLICT, &format!("<p>TEST MODE: {e}</p>")),
            },
            _ => api_error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "Unrecognized request URL.",
                None,
            ),
        }
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let expected = format!("Bearer {}", self.state.config.secret_key);
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
    }

    fn session(&self, id: &str) -> Option<TestSession> {
        self.state.sessions.lock().get(id).cloned()
    }

    fn create(&self, body: &[u8], idempotency_key: Option<String>) -> Response<Full<Bytes>> {
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
    fn refund_api(&self, body: &[u8]) -> Response<Full<Bytes>> {
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

    fn page(&self, id: &str) -> Response<Full<Bytes>> {
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

    /// Completes an open session as paid and delivers `checkout.session.completed`.
    pub async fn pay(&self, id: &str) -> Result<Delivery, TestCheckoutError> {
        let object = {
            let mut sessions = self.state.sessions.lock();
            let s = sessions
                .get_mut(id)
                .ok_or_else(|| TestCheckoutError::Unknown(id.to_owned()))?;
            let status = s.session.status.clone().unwrap_or_default();
            if status == "open" && s.session.expires_at.is_some_and(|at| at <= clock::now()) {
                return Err(TestCheckoutError::WrongState {
                    id: id.to_owned(),
                    status: "expired".into(),
                    wanted: "open",
                });
            }
            if status != "open" {
                return Err(TestCheckoutError::WrongState {
                    id: id.to_owned(),
                    status,
                    wanted: "open",
                });
            }
            s.session.status = Some("complete".into());
            s.session.payment_status = Some("paid".into());
            s.session.payment_intent = Some(secret::new_id("pi_test"));
            s.charge_id = Some(secret::new_id("ch_test"));
            s.session.clone()
        };
        self.deliver(
            "checkout.session.completed",
            serde_json::to_value(object).unwrap_or_default(),
        )
        .await
    }

    /// Expires an open session and delivers `checkout.session.expired`.
    pub async fn expire(&self, id: &str) -> Result<Delivery, TestCheckoutError> {
        let object = {
            let mut sessions = self.state.sessions.lock();
            let s = sessions
                .get_mut(id)
                .ok_or_else(|| TestCheckoutError::Unknown(id.to_owned()))?;
            let status = s.session.status.clone().unwrap_or_default();
            if status != "open" {
                return Err(TestCheckoutError::WrongState {
                    id: id.to_owned(),
                    status,
                    wanted: "open",
                });
            }
            s.session.status = Some("expired".into());
            s.session.clone()
        };
        self.deliver(
            "checkout.session.expired",
            serde_json::to_value(object).unwrap_or_default(),
        )
        .await
    }

    /// Refunds a paid session in full and delivers `charge.refunded`.
    pub async fn refund(&self, id: &str) -> Result<Delivery, TestCheckoutError> {
        let charge = {
            let mut sessions = self.state.sessions.lock();
            let s = sessions
                .get_mut(id)
                .ok_or_else(|| TestCheckoutError::Unknown(id.to_owned()))?;
            if s.refunded {
                return Err(TestCheckoutError::WrongState {
                    id: id.to_owned(),
                    status: "refunded".into(),
                    wanted: "complete",
                });
            }
            let (Some(charge_id), Some(intent)) = (&s.charge_id, &s.session.payment_intent) else {
                return Err(TestCheckoutError::WrongState {
                    id: id.to_owned(),
                    status: s.session.status.clone().unwrap_or_default(),
                    wanted: "complete",
                });
            };
            let amount = s.session.amount_total.unwrap_or(0);
            let charge = json!({"id": charge_id, "object": "charge", "amount": amount,
                   "amount_refunded": amount, "currency": s.session.currency,
                   "refunded": true, "payment_intent": intent,
                   "metadata": s.session.metadata});
            s.refunded = true;
            charge
        };
        self.deliver("charge.refunded", charge).await
    }

    /// Sends one signed event to the site, as Stripe does: retried a few times while the site
    /// answers 5xx or cannot be reached.
    async fn deliver(
        &self,
        kind: &str,
        object: serde_json::Value,
    ) -> Result<Delivery, TestCheckoutError> {
        let event_id = secret::new_id("evt_test");
        let payload = json!({
            "id": event_id, "object": "event", "type": kind, "created": clock::now(),
            "livemode": false, "pending_webhooks": 1, "data": {"object": object},
        })
        .to_string();
        let url = self.state.config.webhook_url.clone();
        let mut last_error = String::new();
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
            }
            let signature = webhook::sign_header(
                payload.as_bytes(),
                &self.state.config.webhook_secret,
                clock::now(),
            );
            let request = Request::post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .header("Stripe-Signature", signature)
                .header(header::USER_AGENT, "bourse-test-checkout (TEST MODE)")
                .body(Full::new(Bytes::from(payload.clone())));
            let request = match request {
                Ok(r) => r,
                Err(e) => {
                    return Err(TestCheckoutError::Delivery {
                        url,
                        message: e.to_string(),
                    });
                }
            };
            match self.state.http.request(request).await {
                Ok(response) if !response.status().is_server_error() => {
                    return Ok(Delivery {
                        event_id,
                        status: response.status().as_u16(),
                    });
                }
                Ok(response) => last_error = format!("answered {}", response.status()),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(TestCheckoutError::Delivery {
            url,
            message: last_error,
        })
    }
}

/// Builds a session from a create request, or Stripe's error message and param.
fn build_session(
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

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn api_error(
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

fn no_such_session(id: &str) -> Response<Full<Bytes>> {
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

fn html(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap_or_default()
}

fn redirect(location: &str) -> Response<Full<Bytes>> {
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
