//! The test-mode checkout: a local stand-in for Stripe, on only when configured and labelled
//! TEST MODE on every page it shows. It answers the API calls the client makes
//! (`POST /v1/checkout/sessions`, retrieve, expire) with Stripe's shapes and errors, serves a
//! pay page for each session, and on "Pay" sends the site a `checkout.session.completed`
//! webhook signed with the configured secret, exactly as Stripe would; `refund` and `expire`
//! send `charge.refunded` and `checkout.session.expired`. A purchase thus runs end to end
//! offline through the same client, webhook endpoint and verification as with Stripe.

mod api;

use std::collections::HashMap;
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

use self::api::{PAGE, api_error, html, json_response, no_such_session, redirect};
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

    /// The settings it runs on.
    pub fn config(&self) -> &TestCheckoutConfig {
        &self.state.config
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
