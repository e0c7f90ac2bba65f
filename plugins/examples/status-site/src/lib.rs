//! A tiny site: a status page counting its visits, and a redirect service whose links are kept
//! in the host's key/value store.
//!
//! - `GET /` (or `/status`): an HTML status page with the visit count and the server time.
//! - `PUT /links/{slug}` with an `http(s)://` URL as the body: stores a redirect.
//! - `GET /go/{slug}`: `302` to the stored URL, counted per link; `404` when unknown.

use bourse_plugin_sdk::host::{clock, counters, kv, log};
use bourse_plugin_sdk::site::{Request, Response, Site};

const MAX_URL_BYTES: usize = 2048;

fn status_page() -> Response {
    let visits = counters::incr("visits", 1);
    let links = counters::get("links");
    let now_ms = clock::now_ms();
    let body = format!(
        "<!doctype html><html><head><title>Status</title></head><body>\
         <h1>All systems go</h1>\
         <p>Visits: <span id=\"visits\">{visits}</span></p>\
         <p>Links: <span id=\"links\">{links}</span></p>\
         <p>Server time: <span id=\"now\">{now_ms}</span> ms</p>\
         </body></html>"
    );
    Response::new(200, "text/html; charset=utf-8", body)
}

fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn store_link(slug: &str, body: &[u8]) -> Response {
    if !valid_slug(slug) {
        return Response::text(400, "a slug is 1-64 letters, digits, '-' or '_'\n");
    }
    let Ok(url) = std::str::from_utf8(body).map(str::trim) else {
        return Response::text(400, "the body must be a UTF-8 URL\n");
    };
    if url.len() > MAX_URL_BYTES || !(url.starts_with("https://") || url.starts_with("http://")) {
        return Response::text(
            400,
            "the body must be an http(s) URL of at most 2048 bytes\n",
        );
    }
    let key = format!("link:{slug}");
    let created = kv::get(&key).is_none();
    if let Err(reason) = kv::put(&key, url.as_bytes()) {
        return Response::text(507, format!("cannot store the link: {reason}\n"));
    }
    if created {
        counters::incr("links", 1);
    }
    log::info(&format!("link {slug} now points to {url}"));
    Response::text(if created { 201 } else { 200 }, format!("/go/{slug}\n"))
}

fn follow_link(slug: &str) -> Response {
    match kv::get(&format!("link:{slug}")).and_then(|url| String::from_utf8(url).ok()) {
        Some(url) => {
            counters::incr(&format!("clicks:{slug}"), 1);
            Response::redirect(302, &url)
        }
        None => Response::text(404, "no such link\n"),
    }
}

struct StatusSite;

impl Site for StatusSite {
    fn handle(request: Request) -> Response {
        let path = request.path.as_str();
        match (request.method.as_str(), path) {
            ("GET", "/" | "/status") => status_page(),
            ("PUT", _) if path.starts_with("/links/") => store_link(&path[7..], &request.body),
            ("GET", _) if path.starts_with("/go/") => follow_link(&path[4..]),
            (_, "/" | "/status") => {
                Response::text(405, "method not allowed\n").with_header("allow", "GET")
            }
            _ => Response::text(404, "not found\n"),
        }
    }
}

bourse_plugin_sdk::export_site!(StatusSite);
