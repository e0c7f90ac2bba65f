//! Outgoing HTTP to demand partners: one pooled keep-alive client per bidder, deadlines, gzip.

use crate::bidder::{BidderRequest, BidderResponse, BidderSpec};
use bytes::Bytes;
use http::HeaderValue;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};
use std::time::Duration;
use tokio::time::Instant;

/// Largest bidder response body we read (decompressed).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a call to a partner produced no usable HTTP response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The deadline passed before the whole response arrived.
    #[error("timed out")]
    Timeout,
    /// Connecting or sending failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The response body could not be read or decoded.
    #[error("bad body: {0}")]
    Body(String),
}

impl CallError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Connect(_) => "connect",
            CallError::Body(_) => "body",
        }
    }
}

/// A keep-alive connection pool to one partner.
#[derive(Clone, Debug)]
pub struct BidderClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    gzip: bool,
}

/// An HTTP(S) connector with Nagle off and the bundled web PKI roots.
pub fn connector() -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http)
}

impl BidderClient {
    /// A pool sized and shaped by the partner's spec.
    pub fn new(spec: &BidderSpec) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(spec.max_idle_connections)
            .http2_only(spec.http2);
        BidderClient {
            client: builder.build(connector()),
            gzip: spec.gzip,
        }
    }

    /// Compresses a request body when the partner takes gzip; done once per request.
    pub fn encode_body(&self, body: &Bytes) -> Bytes {
        if !self.gzip {
            return body.clone();
        }
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 3),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        enc.write_all(body).expect("gzip into memory");
        Bytes::from(enc.finish().expect("gzip into memory"))
    }

    /// Sends one request and reads the whole response before `deadline`.
    pub async fn call(
        &self,
        req: &BidderRequest,
        body: Bytes,
        deadline: Instant,
    ) -> Result<BidderResponse, CallError> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(&req.uri);
        let headers = builder.headers_mut().expect("fresh builder");
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (name, value) in &req.headers {
            headers.insert(name.clone(), value.clone());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| CallError::Connect(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| CallError::Connect(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| CallError::Body(e.to_string()))?
                .to_bytes();
            let gzipped = parts
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let body = if gzipped { gunzip(&bytes)? } else { bytes };
            Ok(BidderResponse {
                status: parts.status,
                body,
            })
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}

fn gunzip(bytes: &[u8]) -> Result<Bytes, CallError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CallError::Body(format!("gzip: {e}")))?;
    if out.len() > MAX_RESPONSE_BYTES {
        return Err(CallError::Body("decompressed body too large".into()));
    }
    Ok(Bytes::from(out))
}

/// The error and its sources in one line, so logs say why a connection failed.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
