//! HTTP plumbing of the admin pages: responses with safe headers, cookies, submitted forms,
//! field errors shown beside their inputs, and pagination.

use askama::Template;
use bourse_kernel::{Request, Response};
use http::{HeaderValue, StatusCode, header};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq as _;

/// Rows shown per page of every table.
pub(crate) const PAGE_SIZE: usize = 20;

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

/// Constant-time comparison, for tokens.
pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn with_safe_headers(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    response
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
    let mut response = Response::new(bourse_kernel::full(body));
    *response.status_mut() = status;
    with_safe_headers(response, "text/html; charset=utf-8")
}

pub(crate) fn json(body: String) -> Response {
    with_safe_headers(Response::new(bourse_kernel::full(body)), "application/json")
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

/// Submitted fields, from a form body or a query string.
#[derive(Debug, Default)]
pub(crate) struct Form(pub(crate) Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(bytes: &[u8]) -> Form {
        Form(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The request's query string.
    pub(crate) fn query(req: &Request) -> Form {
        Form::parse(req.uri().query().unwrap_or_default().as_bytes())
    }

    /// The field's value, trimmed; `None` when it was not sent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// The field's value, trimmed; empty when it was not sent.
    pub(crate) fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }

    /// A checkbox: sent (with any value but "false") means on.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "false")
    }

    /// `?page=N`, 1-based; anything else is page 1.
    pub(crate) fn page(&self) -> usize {
        self.get("page")
            .and_then(|p| p.parse().ok())
            .filter(|&p| p >= 1)
            .unwrap_or(1)
    }
}

/// Why a submitted form was refused, field by field, plus what belongs to no one field.
#[derive(Debug, Default)]
pub(crate) struct FieldErrors {
    pub(crate) general: Option<String>,
    fields: BTreeMap<String, String>,
}

impl FieldErrors {
    pub(crate) fn set(&mut self, field: &str, message: impl Into<String>) {
        self.fields.insert(field.to_owned(), message.into());
    }

    pub(crate) fn general(message: impl Into<String>) -> FieldErrors {
        FieldErrors {
            general: Some(message.into()),
            fields: BTreeMap::new(),
        }
    }

    /// The message for `field`, shown beside its input.
    pub(crate) fn field(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// Places each line of a config-center refusal beside the field it names when that field
    /// is one of `fields` of an entry of `plugins.exchange.<list>`, else above the form. A
    /// line reads `file:line:col: plugins.exchange.bidders[2].endpoint: why`.
    pub(crate) fn from_refusal(refusal: &str, list: &str, fields: &[&str]) -> FieldErrors {
        let mut errors = FieldErrors::default();
        let marker = format!("plugins.exchange.{list}[");
        let mut general = Vec::new();
        for line in refusal.lines().filter(|l| !l.trim().is_empty()) {
            let named = line.find(&marker).and_then(|at| {
                let rest = &line[at + marker.len()..];
                let after_index = &rest[rest.find("].")? + 2..];
                let end = after_index
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after_index.len());
                let field = &after_index[..end];
                let why = after_index[end..].trim_start_matches(':').trim();
                fields
                    .contains(&field)
                    .then(|| (field.to_owned(), why.to_owned()))
            });
            match named {
                Some((field, why)) if !errors.fields.contains_key(&field) => {
                    errors.fields.insert(field, why);
                }
                _ => general.push(line.to_owned()),
            }
        }
        if !general.is_empty() {
            errors.general = Some(general.join("\n"));
        }
        errors
    }
}

/// Where a table's rows are in the list of all of them.
#[derive(Debug, Clone)]
pub(crate) struct Pager {
    pub(crate) page: usize,
    pub(crate) pages: usize,
    pub(crate) total: usize,
    /// The page's path, to which `?page=N` is appended.
    pub(crate) path: &'static str,
}

impl Pager {
    /// The rows of page `page` (clamped to the last page) and where they sit.
    pub(crate) fn slice<T>(rows: Vec<T>, page: usize, path: &'static str) -> (Vec<T>, Pager) {
        let total = rows.len();
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        let page = page.clamp(1, pages);
        let rows = rows
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        (
            rows,
            Pager {
                page,
                pages,
                total,
                path,
            },
        )
    }

    pub(crate) fn previous(&self) -> Option<usize> {
        (self.page > 1).then(|| self.page - 1)
    }

    pub(crate) fn next(&self) -> Option<usize> {
        (self.page < self.pages).then(|| self.page + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_lands_beside_the_field_it_names() {
        let refusal = "bourse.toml:12:1: plugins.exchange.bidders[2].endpoint: `x` is not a URL\n\
                       bourse.toml:3:1: plugins.exchange.fee: must be a fraction in [0, 1)";
        let errors = FieldErrors::from_refusal(refusal, "bidders", &["name", "endpoint"]);
        assert_eq!(errors.field("endpoint"), Some("`x` is not a URL"));
        assert_eq!(errors.field("name"), None);
        assert!(
            errors
                .general
                .as_deref()
                .unwrap()
                .contains("plugins.exchange.fee")
        );
        // A field the form does not have stays above the form.
        let errors = FieldErrors::from_refusal(refusal, "bidders", &["name"]);
        assert!(errors.general.unwrap().contains("endpoint"));
    }

    #[test]
    fn pages_hold_twenty_rows_and_clamp() {
        let (rows, pager) = Pager::slice((0..45).collect::<Vec<_>>(), 3, "/admin/x");
        assert_eq!(rows, (40..45).collect::<Vec<_>>());
        assert_eq!(
            (pager.pages, pager.previous(), pager.next()),
            (3, Some(2), None)
        );
        let (rows, pager) = Pager::slice((0..45).collect::<Vec<_>>(), 99, "/admin/x");
        assert_eq!((rows.len(), pager.page), (5, 3));
        let (rows, pager) = Pager::slice(Vec::<u8>::new(), 1, "/admin/x");
        assert_eq!((rows.len(), pager.pages, pager.next()), (0, 1, None));
    }
}
