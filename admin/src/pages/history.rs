//! Config history: every applied config with who, when and its diff, newest first, paginated,
//! and a rollback to any of them through the config center.

use crate::shell::Chrome;
use crate::web::{page, redirect};
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::Response;
use bourse_kernel::admin::{Form, Pager};
use http::StatusCode;

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage<'a> {
    chrome: Chrome<'a>,
    entries: Vec<HistoryRow>,
    pager: Pager,
    error: Option<&'a str>,
}

struct HistoryRow {
    seq: u64,
    at: String,
    who: String,
    diff: String,
    current: bool,
}

impl Admin {
    pub(crate) fn config_page(
        &self,
        status: StatusCode,
        session: &Session,
        page_number: usize,
        error: Option<&str>,
    ) -> Response {
        let history = self.center.history();
        let last = history.last().map(|e| e.seq);
        let rows = history
            .into_iter()
            .rev()
            .map(|e| HistoryRow {
                current: Some(e.seq) == last,
                seq: e.seq,
                at: bourse_kernel::utc_datetime(e.at),
                who: e.who,
                diff: e.diff,
            })
            .collect();
        let (entries, pager) = Pager::slice(rows, page_number, "/admin/config");
        page(
            status,
            &ConfigPage {
                chrome: self.chrome(session, "config", None),
                entries,
                pager,
                error,
            },
        )
    }

    pub(crate) async fn rollback(&self, session: Session, form: Form) -> Response {
        let Some(entry) = form
            .text("seq")
            .parse::<u64>()
            .ok()
            .and_then(|seq| self.center.history().into_iter().find(|e| e.seq == seq))
        else {
            return self.config_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                1,
                Some("That config is no longer in the history."),
            );
        };
        let who = format!("admin:{}", session.user);
        match self.center.apply(entry.text, who).await {
            Ok(()) => redirect("/admin/config"),
            Err(error) => self.config_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                1,
                Some(&format!("Rollback to #{} refused: {error}", entry.seq)),
            ),
        }
    }

    pub(crate) fn history_get(&self, session: &Session, page_number: usize) -> Response {
        self.config_page(StatusCode::OK, session, page_number, None)
    }
}
