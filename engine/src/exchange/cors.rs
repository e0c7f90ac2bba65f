//! CORS for `/openrtb2/auction`: Prebid.js calls it from publishers' pages, cross-origin and
//! with credentials (`withCredentials`), so the answer names the caller's origin (never `*`,
//! which browsers refuse with credentials) and allows credentials, and a preflight is answered
//! without authentication.
//!
//! Every origin is allowed, as Prebid Server allows them by default: the endpoint neither sets
//! nor reads cookies, and its supply tokens (when configured) travel in `Authorization`, which a
//! page cannot borrow from another site. The `null` origin (sandboxed frames, `file:` pages)
//! gets no CORS grant.

use bourse_kernel::Response;
use http::header::{self, HeaderMap, HeaderValue};

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Request headers a caller may send when the preflight does not list its own.
const ALLOWED_HEADERS: &str = "content-type, authorization, content-encoding, x-openrtb-version";

/// The request's `Origin`, when it is one we grant.
pub(super) fn origin(headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    let granted = (text.starts_with("http://") || text.starts_with("https://"))
        && url::Url::parse(text).is_ok_and(|u| u.host_str().is_some());
    granted.then(|| origin.clone())
}

/// Grants `origin` (if any) on an answer, with credentials. An answer to a caller that sent no
/// granted origin (an SSP's server, every auction on the hot path) is left untouched.
pub(super) fn allow(origin: Option<HeaderValue>, response: &mut Response) {
    let Some(origin) = origin else {
        return;
    };
    let headers = response.headers_mut();
    // Caches keep answers for different origins apart.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// The answer to a preflight (`OPTIONS`): 204, POST allowed with the headers asked for.
pub(super) fn preflight(origin: Option<&HeaderValue>, request: &HeaderMap) -> Response {
    let mut response = super::no_content();
    allow(origin.cloned(), &mut response);
    if origin.is_none() {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    let asked = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.to_str().is_ok_and(is_header_list))
        .cloned()
        .unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    response
}

/// Whether `list` is a comma-separated list of header names (what a browser sends in
/// `Access-Control-Request-Headers`), so echoing it grants names and nothing else.
fn is_header_list(list: &str) -> bool {
    list.len() <= 1024
        && list.split(',').all(|name| {
            let name = name.trim();
            !name.is_empty() && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_page_origin_is_echoed_with_credentials() {
        let req = headers(&[("origin", "https://news.example:8443")]);
        let mut response = super::super::no_content();
        allow(origin(&req), &mut response);
        let h = response.headers();
        assert_eq!(
            h["access-control-allow-origin"],
            "https://news.example:8443"
        );
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["vary"], "Origin");
    }

    #[test]
    fn no_grant_without_a_real_origin() {
        for req in [
            headers(&[]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "file://")]),
        ] {
            let mut response = super::super::no_content();
            allow(origin(&req), &mut response);
            assert!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none()
            );
            assert!(
                response
                    .headers()
                    .get("access-control-allow-credentials")
                    .is_none()
            );
        }
    }

    #[test]
    fn a_preflight_allows_post_and_the_headers_asked_for() {
        let req = headers(&[
            ("origin", "http://127.0.0.1:9000"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, authorization",
            ),
        ]);
        let response = preflight(origin(&req).as_ref(), &req);
        let h = response.headers();
        assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:9000");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], "POST, OPTIONS");
        assert_eq!(
            h["access-control-allow-headers"],
            "content-type, authorization"
        );

        let odd = headers(&[
            ("origin", "http://127.0.0.1:9000"),
            ("access-control-request-headers", "x(y)"),
        ]);
        let response = preflight(origin(&odd).as_ref(), &odd);
        assert_eq!(
            response.headers()["access-control-allow-headers"],
            ALLOWED_HEADERS
        );
    }
}
