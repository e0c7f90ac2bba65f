//! Files compiled into the binary (a plugin's scripts, styles and images), served so that no
//! request path can ever name anything else.
//!
//! A path is decoded once and then looked up by exact name in the plugin's own list; nothing
//! touches the file system. Paths that try to leave the list (`..`, backslashes, drive letters,
//! absolute paths, leftover percent-escapes from double encoding, NUL) are refused before the
//! lookup, so the refusal is explicit and counted the same way as a miss: 404.

use crate::{Response, empty, full};
use http::{HeaderValue, StatusCode, header};
use sha2::Digest as _;
use std::collections::HashMap;

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under the mount, e.g. `"tag.js"` or `"css/admin.css"`.
    pub name: &'static str,
    /// Its bytes, usually from `include_bytes!`.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// A plugin's embedded files, with a strong `ETag` per file.
#[derive(Debug)]
pub struct EmbeddedAssets {
    files: HashMap<&'static str, (Asset, HeaderValue)>,
    cache_control: HeaderValue,
}

/// Why a request path names no embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetRefusal {
    /// The path is malformed or tries to leave the embedded files.
    Unsafe,
    /// A well-formed name that is not embedded.
    NotFound,
}

impl EmbeddedAssets {
    /// A set of files served with `Cache-Control: cache_control`.
    pub fn new(files: &[Asset], cache_control: &'static str) -> Self {
        let files = files
            .iter()
            .map(|asset| {
                let digest = sha2::Sha256::digest(asset.bytes);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header");
                (asset.name, (*asset, etag))
            })
            .collect();
        EmbeddedAssets {
            files,
            cache_control: HeaderValue::from_static(cache_control),
        }
    }

    /// The embedded file a request path (relative to the mount, still percent-encoded) names.
    pub fn resolve(&self, raw_path: &str) -> Result<&Asset, AssetRefusal> {
        let decoded = percent_encoding::percent_decode_str(raw_path)
            .decode_utf8()
            .map_err(|_| AssetRefusal::Unsafe)?;
        let unsafe_path = decoded.is_empty()
            || decoded.starts_with('/')
            || decoded.contains(['\\', ':', '%', '\0'])
            || decoded
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..");
        if unsafe_path {
            return Err(AssetRefusal::Unsafe);
        }
        self.files
            .get(decoded.as_ref())
            .map(|(asset, _)| asset)
            .ok_or(AssetRefusal::NotFound)
    }

    /// The response for a request path: 200 with the file (or 304 when `if_none_match` holds
    /// its ETag), else 404.
    pub fn serve(&self, raw_path: &str, if_none_match: Option<&HeaderValue>) -> Response {
        let Ok(asset) = self.resolve(raw_path) else {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        };
        let etag = &self.files[asset.name].1;
        let fresh = if_none_match
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().as_bytes() == etag.as_bytes()));
        let mut response = if fresh {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            Response::new(full(asset.bytes))
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        headers.insert(header::ETAG, etag.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets() -> EmbeddedAssets {
        EmbeddedAssets::new(
            &[
                Asset {
                    name: "tag.js",
                    bytes: b"console.log(1)",
                    content_type: "application/javascript",
                },
                Asset {
                    name: "css/admin.css",
                    bytes: b"body{}",
                    content_type: "text/css",
                },
            ],
            "public, max-age=300",
        )
    }

    #[test]
    fn embedded_names_resolve_exactly() {
        let assets = assets();
        assert_eq!(assets.resolve("tag.js").unwrap().name, "tag.js");
        assert_eq!(
            assets.resolve("css/admin.css").unwrap().name,
            "css/admin.css"
        );
        assert_eq!(
            assets.resolve("css%2Fadmin.css").unwrap().name,
            "css/admin.css"
        );
        assert_eq!(
            assets.resolve("nope.js").err(),
            Some(AssetRefusal::NotFound)
        );
        assert_eq!(assets.resolve("TAG.JS").err(), Some(AssetRefusal::NotFound));
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        let assets = assets();
        for path in [
            "../Cargo.toml",
            "..%2fCargo.toml",
            "..%2FCargo.toml",
            "%2e%2e/Cargo.toml",
            "%2E%2E%2Fetc%2Fpasswd",
            ".%2e/Cargo.toml",
            ".%252e/Cargo.toml",
            "%252e%252e%252fetc%252fpasswd",
            "css/../tag.js",
            "css/./admin.css",
            "css//admin.css",
            "%5c..%5cwindows%5cwin.ini",
            "..\\..\\windows\\win.ini",
            "c:/windows/win.ini",
            "C:%5cwindows",
            "/etc/passwd",
            "%2fetc%2fpasswd",
            "//etc/passwd",
            "tag.js%00.png",
            "%ff%fe",
            "",
        ] {
            assert_eq!(
                assets.resolve(path).err(),
                Some(AssetRefusal::Unsafe),
                "{path} must be refused"
            );
        }
    }

    #[test]
    fn served_files_carry_type_cache_and_revalidate() {
        let assets = assets();
        let response = assets.serve("tag.js", None);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/javascript"
        );
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=300"
        );
        let etag = response.headers()[header::ETAG].clone();
        assert_eq!(
            assets.serve("tag.js", Some(&etag)).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            assets.serve("..%2ftag.js", None).status(),
            StatusCode::NOT_FOUND
        );
    }
}
