//! The shell around every plugin's admin section: which instance a path under `/admin/` names,
//! the session and CSRF checks before a section sees a request, the navigation (Overview, one
//! group per section, Plugins, Config history), and the layout wrapped around a section's page.

use crate::web::{page, plain, query, redirect};
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest, Form};
use bourse_kernel::{PluginEntry, Request, Response};
use http::{Method, StatusCode, header};

/// Paths under `/admin/` the shell answers itself: an instance with one of these names keeps
/// its pages out of the admin (the overview says so).
pub(crate) const RESERVED: [&str; 6] = ["login", "logout", "static", "config", "plugins", "debug"];

/// The navigation and the signed-in operator, around every signed-in page.
pub(crate) struct Chrome<'a> {
    pub(crate) user: &'a str,
    pub(crate) csrf: &'a str,
    /// `overview`, `plugins` or `config` for the shell's pages; empty on a section's.
    pub(crate) current: &'static str,
    pub(crate) groups: Vec<NavGroup>,
    /// What every section says is failing, worst first (the health strip).
    pub(crate) alerts: Vec<bourse_kernel::admin::Alert>,
    /// On the page a save redirected to: that it was saved.
    pub(crate) saved: Option<String>,
}

/// One section in the navigation: its title and its pages.
pub(crate) struct NavGroup {
    pub(crate) title: String,
    pub(crate) links: Vec<NavItem>,
}

pub(crate) struct NavItem {
    pub(crate) label: String,
    pub(crate) href: String,
    pub(crate) current: bool,
}

/// A section's page inside the layout.
#[derive(Template)]
#[template(path = "section.html")]
struct SectionPage<'a> {
    chrome: Chrome<'a>,
    title: String,
    body: String,
}

/// The section path of an instance: `/admin/<name>`.
pub(crate) fn base(name: &str) -> String {
    format!("/admin/{name}")
}

impl Admin {
    /// Every running instance that has admin pages the shell can show, by name.
    pub(crate) fn sections(&self) -> Vec<PluginEntry> {
        self.plugins
            .list()
            .into_iter()
            .filter(|entry| entry.handler().admin().is_some())
            .filter(|entry| !RESERVED.contains(&&*entry.name))
            .collect()
    }

    /// The instance a path under `/admin/<name>` belongs to, and the path below it (`/` for
    /// the section's root).
    pub(crate) fn section_of(&self, path: &str) -> Option<(PluginEntry, String)> {
        let below = path.strip_prefix("/admin/")?;
        let (name, rest) = match below.split_once('/') {
            Some((name, rest)) => (name, format!("/{rest}")),
            None => (below, "/".to_owned()),
        };
        if RESERVED.contains(&name) {
            return None;
        }
        let entry = self.plugins.get(name)?;
        entry.handler().admin()?;
        Some((entry, rest))
    }

    /// The chrome of a signed-in page; `section` marks the current link of a section's page.
    pub(crate) fn chrome<'a>(
        &self,
        session: &'a Session,
        current: &'static str,
        section: Option<(&str, &str)>,
    ) -> Chrome<'a> {
        let sections = self.sections();
        let mut alerts: Vec<bourse_kernel::admin::Alert> = sections
            .iter()
            .filter_map(|entry| Some(entry.handler().admin()?.alerts(&base(&entry.name))))
            .flatten()
            .collect();
        alerts.sort_by_key(|alert| alert.level);
        let groups = sections
            .iter()
            .filter_map(|entry| {
                let admin = entry.handler().admin()?;
                let base = base(&entry.name);
                let links = admin
                    .nav()
                    .into_iter()
                    .map(|link| NavItem {
                        current: section == Some((&*entry.name, link.path.as_str())),
                        href: if link.path.is_empty() {
                            base.clone()
                        } else {
                            format!("{base}/{}", link.path)
                        },
                        label: link.label,
                    })
                    .collect();
                Some(NavGroup {
                    title: admin.title(),
                    links,
                })
            })
            .collect();
        Chrome {
            user: &session.user,
            csrf: &session.csrf,
            current,
            groups,
            alerts,
            saved: None,
        }
    }

    /// Hands a request under `/admin/<instance>/` to that instance's section: a GET from a
    /// signed-in operator, a POST once its session and CSRF token are checked.
    pub(crate) async fn section(&self, req: Request, entry: PluginEntry, rest: String) -> Response {
        let method = req.method().clone();
        let query = query(&req);
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
        let (session, form) = match method {
            Method::POST => match self.signed_form(req).await {
                Ok((_, session, form)) => (session, form),
                Err(refusal) => return *refusal,
            },
            Method::GET => match self.session(&req) {
                Some((_, session)) => (session, Form::default()),
                None => return redirect("/admin/login"),
            },
            _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
        let Some(section) = entry.handler().admin() else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let saved = bourse_kernel::admin::saved_notice(&query);
        let request = AdminRequest {
            method,
            path: rest,
            query,
            form,
            user: session.user.clone(),
            csrf: session.csrf.clone(),
            base: base(&entry.name),
            if_none_match,
        };
        match section.serve(request).await {
            AdminReply::Page {
                title,
                current,
                body,
                status,
            } => page(
                status,
                &SectionPage {
                    chrome: Chrome {
                        saved,
                        ..self.chrome(&session, "", Some((&entry.name, &current)))
                    },
                    title: format!("{title} · {}", section.title()),
                    body,
                },
            ),
            AdminReply::Redirect(to) => redirect(&to),
            AdminReply::Raw(response) => response,
        }
    }
}
