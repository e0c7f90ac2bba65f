//! Bounded request-body reading: size limits enforced while reading, gzip decoded with the
//! decompressed size capped too.

use std::io::Read;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body (declared, received or decompressed) is larger than the limit.
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// `Content-Encoding: gzip` but the bytes are not valid gzip.
    #[error("request body is not valid gzip: {0}")]
    BadGzip(String),
    /// A `Content-Encoding` other than gzip or identity.
    #[error("unsupported content-encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The connection failed or the client sent a malformed body.
    #[error("request body could not be read: {0}")]
    Read(String),
    /// The client took longer than `[server.connections] body_timeout_ms` to send it.
    #[error("{0}")]
    Timeout(crate::BodyTimeout),
}

impl BodyError {
    /// The HTTP status a client should get for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::BadGzip(_) => StatusCode::BAD_REQUEST,
            BodyError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A stable machine-readable code for responses and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "body_too_large",
            BodyError::BadGzip(_) => "bad_gzip",
            BodyError::UnsupportedEncoding(_) => "unsupported_encoding",
            BodyError::Read(_) => "body_read",
            BodyError::Timeout(_) => "body_timeout",
        }
    }

    /// This error as a `{"error": code}` JSON response with the right status.
    pub fn to_response(&self) -> crate::Response {
        crate::error_response(self.status(), self.code())
    }
}

enum Encoding {
    Identity,
    Gzip,
}

fn encoding(headers: &http::HeaderMap) -> Result<Encoding, BodyError> {
    let mut result = Encoding::Identity;
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            BodyError::UnsupportedEncoding(String::from_utf8_lossy(value.as_bytes()).into_owned())
        })?;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("identity") {
                continue;
            }
            let is_gzip =
                token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip");
            if !is_gzip || matches!(result, Encoding::Gzip) {
                // Stacked encodings ("gzip, gzip") are refused rather than decoded twice.
                return Err(BodyError::UnsupportedEncoding(text.to_owned()));
            }
            result = Encoding::Gzip;
        }
    }
    Ok(result)
}

/// Reads a request body without ever buffering more than `limit` bytes.
///
/// A declared size (Content-Length) above the limit is refused before a byte is read; a chunked
/// body is cut off as soon as it passes the limit. `Content-Encoding: gzip` bodies are decoded,
/// with the decoded size also capped at `limit`, so a small gzip bomb cannot blow up memory.
/// Other encodings give [`BodyError::UnsupportedEncoding`].
pub async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
{
    let encoding = encoding(headers)?;
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => return Err(BodyError::TooLarge { limit }),
        Err(error) => {
            return Err(match error.downcast_ref::<crate::BodyTimeout>() {
                Some(timeout) => BodyError::Timeout(*timeout),
                None => BodyError::Read(error.to_string()),
            });
        }
    };
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => gunzip(&raw, limit),
    }
}

/// Decodes (possibly multi-member) gzip, refusing output larger than `limit`.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    // One byte past the limit tells "exactly limit" from "too large".
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| BodyError::BadGzip(error.to_string()))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests;
