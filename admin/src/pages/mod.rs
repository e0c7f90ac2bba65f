//! The admin's pages, one module per section; each renders an askama template from
//! `admin/templates/` and changes the running config through [`crate::edit`].

pub(crate) mod bidders;
pub(crate) mod floors;
pub(crate) mod history;
pub(crate) mod inventory;
pub(crate) mod overview;

use crate::Session;

/// What every signed-in page shows around its content: who is signed in, the session's CSRF
/// token for its forms, and which section is open.
pub(crate) struct Chrome<'a> {
    pub(crate) user: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) nav: &'static str,
}

impl<'a> Chrome<'a> {
    pub(crate) fn new(session: &'a Session, nav: &'static str) -> Chrome<'a> {
        Chrome {
            user: &session.user,
            csrf: &session.csrf,
            nav,
        }
    }
}

/// A number for a table cell: at most `decimals` places, no trailing zeros.
pub(crate) fn number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// An optional number, or a dash.
pub(crate) fn maybe(value: Option<f64>, decimals: usize, suffix: &str) -> String {
    value.map_or_else(
        || "–".to_owned(),
        |v| format!("{}{suffix}", number(v, decimals)),
    )
}
