//! HTTP plumbing of the shell's own pages: rendered pages with the admin's safe headers,
//! cookies, the query string, the client's address, random tokens and their constant-time
//! comparison.

use askama::Template;
use bourse_kernel::admin::{Form, safe_response};
use bourse_kernel::{ClientAddr, Request, Response};
use http::{HeaderValue, StatusCode, header};
use std::net::IpAddr;
use subtle::ConstantTimeEq as _;

pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client a request is from, as the kernel resolved it (behind a trusted proxy, the
/// address it forwarded): the key of the sign-in limiter.
pub(crate) fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ClientAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |client| client.0)
}

/// Constant-time comparison, for tokens.
pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The request's query string.
pub(crate) fn query(req: &Request) -> Form {
    Form::parse(req.uri().query().unwrap_or_default().as_bytes())
}

/// A rendered page; a template error (a bug) becomes a 500 that says so.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    let (status, body) = match template.render() {
        Ok(body) => (status, body),
        Err(error) => {
            tracing::error!(%error, "admin template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log".to_owned(),
            )
        }
    };
    safe_response(status, "text/html; charset=utf-8", body)
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut response = Response::new(bourse_kernel::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(bourse_kernel::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
