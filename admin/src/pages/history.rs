//! Config history: every applied config with who, when and its diff, newest first, paginated,
//! and a rollback to any of them through the config center: previewed first (what it changes,
//! and what it removes or disables, called out), applied only when confirmed over the config
//! that was previewed, and recorded as "rollback to #N by admin:NAME".

use crate::shell::Chrome;
use crate::web::{page, redirect};
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::admin::{Form, Pager};
use bourse_kernel::{AuditEntry, Refusal, Response};
use http::StatusCode;

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage<'a> {
    chrome: Chrome<'a>,
    entries: Vec<HistoryRow>,
    pager: Pager,
    error: Option<&'a str>,
    /// What the last change did, after it succeeded.
    notice: Option<String>,
}

struct HistoryRow {
    seq: u64,
    at: String,
    who: String,
    diff: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "config_rollback.html")]
struct RollbackPage<'a> {
    chrome: Chrome<'a>,
    seq: u64,
    at: String,
    who: String,
    /// The sequence number of the config in force, which the rollback replaces.
    current: u64,
    /// From the config in force to the one rolled back to.
    diff: String,
    /// What the rollback takes away, in words ("2 [[plugins.exchange.placements]] tables").
    removes: Vec<String>,
    error: Option<&'a str>,
}

/// What a change takes away, read from its diff: whole tables removed, and entries turned off.
pub(crate) fn removals(diff: &str) -> Vec<String> {
    let mut tables: Vec<(String, usize)> = Vec::new();
    let mut disabled = 0;
    for line in diff.lines().filter(|l| !l.starts_with("---")) {
        let Some(removed) = line.strip_prefix('-') else {
            if line.starts_with('+') && line[1..].trim().replace(' ', "") == "enabled=false" {
                disabled += 1;
            }
            continue;
        };
        let removed = removed.trim();
        if removed.starts_with('[') && removed.ends_with(']') {
            match tables.iter_mut().find(|(name, _)| name == removed) {
                Some((_, count)) => *count += 1,
                None => tables.push((removed.to_owned(), 1)),
            }
        }
    }
    let mut said: Vec<String> = tables
        .into_iter()
        .map(|(table, count)| match count {
            1 => format!("1 {table} table"),
            n => format!("{n} {table} tables"),
        })
        .collect();
    if disabled > 0 {
        said.push(format!(
            "{disabled} entr{} turned off (enabled = false)",
            if disabled == 1 { "y" } else { "ies" }
        ));
    }
    said
}

/// The entry numbered `seq` (as typed in a form or a link) in `history`.
fn find<'a>(history: &'a [AuditEntry], seq: &str) -> Option<&'a AuditEntry> {
    let seq = seq.parse::<u64>().ok()?;
    history.iter().find(|e| e.seq == seq)
}

impl Admin {
    pub(crate) fn config_page(
        &self,
        status: StatusCode,
        session: &Session,
        page_number: usize,
        error: Option<&str>,
        rolled_back: Option<&str>,
    ) -> Response {
        let history = self.center.history();
        let last = history.last().map(|e| e.seq);
        // Only a number in the history is named, so a crafted link says nothing.
        let notice = rolled_back
            .and_then(|seq| seq.parse::<u64>().ok())
            .filter(|seq| history.iter().any(|e| e.seq == *seq))
            .zip(last)
            .map(|(seq, now)| {
                format!("Rolled back to #{seq}: its config is in force, recorded as #{now}.")
            });
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
                notice,
            },
        )
    }

    fn entry(&self, seq: &str) -> Option<AuditEntry> {
        find(&self.center.history(), seq).cloned()
    }

    /// `GET /admin/config/rollback?seq=N`: what rolling back to #N would change, and the form
    /// that confirms it.
    pub(crate) fn rollback_preview(
        &self,
        status: StatusCode,
        session: &Session,
        seq: &str,
        error: Option<&str>,
    ) -> Response {
        let history = self.center.history();
        let (Some(current), Some(target)) = (history.last(), find(&history, seq)) else {
            return self.config_page(
                StatusCode::NOT_FOUND,
                session,
                1,
                Some("That config is no longer in the history."),
                None,
            );
        };
        let diff = bourse_kernel::config_diff(&current.text, &target.text);
        page(
            status,
            &RollbackPage {
                chrome: self.chrome(session, "config", None),
                seq: target.seq,
                at: bourse_kernel::utc_datetime(target.at),
                who: target.who.clone(),
                current: current.seq,
                removes: removals(&diff),
                diff,
                error,
            },
        )
    }

    /// `POST /admin/config/rollback`: applies #`seq` again once the preview's form confirms it
    /// over the config it showed (`based_on`); anything else goes back to the preview.
    pub(crate) async fn rollback(&self, session: Session, form: Form) -> Response {
        let seq = form.text("seq");
        let Some(entry) = self.entry(&seq) else {
            return self.config_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                1,
                Some("That config is no longer in the history."),
                None,
            );
        };
        let based_on = form.text("based_on").parse::<u64>().ok();
        let (Some(based_on), "yes") = (based_on, form.text("confirm").as_str()) else {
            return redirect(&format!("/admin/config/rollback?seq={}", entry.seq));
        };
        let who = format!("rollback to #{} by admin:{}", entry.seq, session.user);
        match self.center.apply_over(entry.text, who, based_on).await {
            Ok(()) => redirect(&format!("/admin/config?rolled_back={}", entry.seq)),
            Err(Refusal::Conflict(_)) => self.rollback_preview(
                StatusCode::CONFLICT,
                &session,
                &seq,
                Some(
                    "The config changed since this preview; here is what the rollback changes now.",
                ),
            ),
            Err(error) => self.rollback_preview(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                &seq,
                Some(&format!("Rollback to #{} refused: {error}", entry.seq)),
            ),
        }
    }

    pub(crate) fn history_get(&self, session: &Session, query: &Form) -> Response {
        let rolled_back = query.get("rolled_back");
        self.config_page(StatusCode::OK, session, query.page(), None, rolled_back)
    }
}

#[cfg(test)]
mod tests {
    use super::removals;

    #[test]
    fn a_diff_says_which_tables_it_removes_and_what_it_turns_off() {
        let before = "[server]\nlisten = \"a\"\n\n[[plugins.exchange.placements]]\nid = \"a\"\n\n\
                      [[plugins.exchange.placements]]\nid = \"b\"\n\n[[plugins.exchange.publishers]]\n\
                      id = \"p\"\n\n[[plugins.exchange.bidders]]\nname = \"x\"\nenabled = true\n";
        let after = "[server]\nlisten = \"a\"\n\n[[plugins.exchange.bidders]]\nname = \"x\"\nenabled = false\n";
        let diff = bourse_kernel::config_diff(before, after);
        assert_eq!(
            removals(&diff),
            vec![
                "2 [[plugins.exchange.placements]] tables".to_owned(),
                "1 [[plugins.exchange.publishers]] table".to_owned(),
                "1 entry turned off (enabled = false)".to_owned(),
            ]
        );
        assert!(removals(&bourse_kernel::config_diff(after, before)).is_empty());
    }
}
