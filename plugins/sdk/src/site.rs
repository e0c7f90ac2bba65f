//! A small HTTP site: one `handle(request) -> response` function behind a mount.

/// Generated bindings of `bourse:site/site`; plugin authors use the re-exports.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: ["../wit/host", "../wit/site"],
        world: "bourse:site/site",
        pub_export_macro: true,
        export_macro_name: "__export_site_world",
        default_bindings_module: "bourse_plugin_sdk::site::bindings",
        runtime_path: "bourse_plugin_sdk::__private::wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::bourse::site::http::{Header, Request, Response};

/// A site plugin.
pub trait Site {
    /// Answers one request. The host bounds the time and memory this may take; a trap or an
    /// overrun becomes a 500 (or 503 once the plugin is quarantined) without the site's help.
    fn handle(request: Request) -> Response;
}

impl Request {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// The value of the first `name=` pair of the query string, undecoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

impl Response {
    /// A response with a status, a content type and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![Header {
                name: "content-type".into(),
                value: content_type.into(),
            }],
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// A redirect (`302 Found` unless another 3xx is given) to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Response {
            status,
            headers: vec![Header {
                name: "location".into(),
                value: location.into(),
            }],
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// Exports a type implementing [`Site`] as the plugin's site handler.
#[macro_export]
macro_rules! export_site {
    ($plugin:ty) => {
        const _: () = {
            use $crate::site::bindings::exports::bourse::site::handler as __handler;
            use $crate::site::{Request, Response, Site};

            struct __Exports;

            impl __handler::Guest for __Exports {
                fn handle(request: Request) -> Response {
                    <$plugin as Site>::handle(request)
                }
            }

            $crate::site::bindings::__export_site_world!(
                __Exports with_types_in $crate::site::bindings
            );
        };
    };
}
