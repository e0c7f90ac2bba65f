//! The Stripe API client: form-encoded requests with Stripe's bracketed keys
//! (`line_items[0][price_data][currency]`), the secret key as a Bearer token, an
//! `Idempotency-Key` on every POST so a retried call never creates a second session, and
//! Stripe's error JSON turned into [`StripeError::Api`].
//!
//! Over our own hyper + rustls stack (as the exchange's bidder client and the OTLP exporter),
//! so no second HTTP stack is built for one endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

/// `[sites.payments.stripe]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// `sk_live_…` or `sk_test_…`.
    pub secret_key: String,
    /// `whsec_…`: the signing secret of the webhook endpoint.
    pub webhook_secret: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Pins `Stripe-Version`; the account's default when absent.
    #[serde(default)]
    pub api_version: Option<String>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base_url", &self.base_url)
            .field("timeout_ms", &self.timeout_ms)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

fn default_base_url() -> String {
    "https://api.stripe.com".to_owned()
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl StripeConfig {
    pub fn new(secret_key: &str, webhook_secret: &str) -> StripeConfig {
        StripeConfig {
            secret_key: secret_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            base_url: default_base_url(),
            timeout_ms: default_timeout_ms(),
            api_version: None,
        }
    }
}

/// One line of a checkout, priced inline (`price_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutLine {
    pub name: String,
    /// In minor units of `currency`.
    pub unit_amount: i64,
    pub currency: String,
    pub quantity: i64,
}

/// `POST /v1/checkout/sessions` in `mode=payment`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckoutRequest {
    pub line_items: Vec<CheckoutLine>,
    pub success_url: String,
    pub cancel_url: String,
    pub client_reference_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds; Stripe accepts 30 minutes to 24 hours ahead.
    pub expires_at: Option<i64>,
    pub customer_email: Option<String>,
}

impl CheckoutRequest {
    /// The form fields, in Stripe's bracket notation.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("mode".to_owned(), "payment".to_owned()),
            ("success_url".to_owned(), self.success_url.clone()),
            ("cancel_url".to_owned(), self.cancel_url.clone()),
        ];
        for (i, line) in self.line_items.iter().enumerate() {
            let key = |rest: &str| format!("line_items[{i}]{rest}");
            form.push((key("[price_data][currency]"), line.currency.clone()));
            form.push((key("[price_data][product_data][name]"), line.name.clone()));
            form.push((
                key("[price_data][unit_amount]"),
                line.unit_amount.to_string(),
            ));
            form.push((key("[quantity]"), line.quantity.to_string()));
        }
        if let Some(id) = &self.client_reference_id {
            form.push(("client_reference_id".to_owned(), id.clone()));
        }
        for (k, v) in &self.metadata {
            form.push((format!("metadata[{k}]"), v.clone()));
            // Copied onto the payment, so a refund's charge names the order too.
            form.push((format!("payment_intent_data[metadata][{k}]"), v.clone()));
        }
        if let Some(at) = self.expires_at {
            form.push(("expires_at".to_owned(), at.to_string()));
        }
        if let Some(email) = &self.customer_email {
            form.push(("customer_email".to_owned(), email.clone()));
        }
        form
    }
}

/// A Checkout Session as Stripe returns it (fields we use; the rest is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub amount_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub customer_email: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<String>,
}

/// A Refund as Stripe returns it (fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub amount: Option<i64>,
}

/// What went wrong talking to Stripe.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("stripe refused ({status}, {kind}{}): {message}", param.as_ref().map(|p| format!(", param {p}")).unwrap_or_default())]
    Api {
        status: u16,
        /// `invalid_request_error`, `card_error`, `idempotency_error`, `api_error`…
        kind: String,
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
    #[error("stripe unreachable: {0}")]
    Transport(String),
    #[error("stripe did not answer within {0:?}")]
    Timeout(Duration),
    #[error("stripe answered {status} with an unreadable body: {message}")]
    Decode { status: u16, message: String },
    #[error("stripe config: {0}")]
    Config(String),
}

impl StripeError {
    /// Whether repeating the call (with the same idempotency key) may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            StripeError::Api { status, .. } => *status == 429 || *status >= 500,
            StripeError::Transport(_) | StripeError::Timeout(_) => true,
            StripeError::Decode { status, .. } => *status >= 500,
            StripeError::Config(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A Stripe API client; cheap to clone.
#[derive(Clone)]
pub struct StripeClient {
    http: HttpsClient,
    base_url: String,
    secret_key: String,
    api_version: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    pub fn new(config: &StripeConfig) -> Result<StripeClient, StripeError> {
        let base = url::Url::parse(&config.base_url)
            .map_err(|e| StripeError::Config(format!("base_url: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(StripeError::Config("base_url: must be http(s)".into()));
        }
        if config.secret_key.trim().is_empty() {
            return Err(StripeError::Config("secret_key: must not be empty".into()));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(StripeClient {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            secret_key: config.secret_key.clone(),
            api_version: config.api_version.clone(),
            timeout,
        })
    }

    /// Creates a Checkout Session. Repeating the call with the same `idempotency_key` returns
    /// the same session.
    pub async fn create_checkout_session(
        &self,
        request: &CheckoutRequest,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        self.call(
            Method::POST,
            "/v1/checkout/sessions",
            Some(&request.form()),
            Some(idempotency_key),
        )
        .await
    }

    /// Reads a Checkout Session.
    pub async fn retrieve_checkout_session(
        &self,
        id: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let path = format!("/v1/checkout/sessions/{}", path_segment(id)?);
        self.call(Method::GET, &path, None, None).await
    }

    /// Expires an open Checkout Session (the buyer gave up), so its seats come back at once.
    pub async fn expire_checkout_session(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, StripeError> {
        let path = format!("/v1/checkout/sessions/{}/expire", path_segment(id)?);
        self.call(Method::POST, &path, Some(&[]), Some(idempotency_key))
            .await
    }

    /// Refunds a payment in full (`POST /v1/refunds`); Stripe then sends `charge.refunded`.
    pub async fn create_refund(
        &self,
        payment_intent: &str,
        idempotency_key: &str,
    ) -> Result<Refund, StripeError> {
        let form = [("payment_intent".to_owned(), payment_intent.to_owned())];
        self.call(
            Method::POST,
            "/v1/refunds",
            Some(&form),
            Some(idempotency_key),
        )
        .await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: Option<&[(String, String)]>,
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base_url, path))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.secret_key))
            .header(header::USER_AGENT, "bourse-commerce");
        if let Some(version) = &self.api_version {
            builder = builder.header("Stripe-Version", version);
        }
        if let Some(key) = idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut encoded = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in form {
                    encoded.append_pair(k, v);
                }
                Full::new(Bytes::from(encoded.finish()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| StripeError::Config(e.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| StripeError::Transport(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| StripeError::Transport(e.to_string()))?
                .to_bytes();
            Ok::<_, StripeError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| StripeError::Timeout(self.timeout))??;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| StripeError::Decode {
                status: status.as_u16(),
                message: e.to_string(),
            });
        }
        Err(api_error(status, &bytes))
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> StripeError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => StripeError::Api {
            status: status.as_u16(),
            kind: error.kind.unwrap_or_else(|| "api_error".to_owned()),
            code: error.code,
            message: error.message.unwrap_or_else(|| "no message".to_owned()),
            param: error.param,
        },
        Err(_) => StripeError::Decode {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

/// Ids go into URL paths: only Stripe's id alphabet is allowed.
fn path_segment(id: &str) -> Result<&str, StripeError> {
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(id)
    } else {
        Err(StripeError::Config(format!("`{id}` is not a Stripe id")))
    }
}
