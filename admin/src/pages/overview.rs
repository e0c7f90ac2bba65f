//! The overview: what each section shows of its plugin (the exchange's live numbers, for
//! one), then every running plugin instance with its kind, version, mounts, generation,
//! requests in flight and state; the Plugins page is that list alone.

use crate::shell::{Chrome, RESERVED, base};
use crate::web::page;
use crate::{Admin, Session};
use askama::Template;
use bourse_kernel::Response;
use http::StatusCode;
use prometheus::proto::MetricFamily;

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    chrome: Chrome<'a>,
    summaries: Vec<Summary>,
    /// Instances whose pages cannot be shown, and why.
    hidden: Vec<String>,
    plugins: Vec<PluginRow>,
}

#[derive(Template)]
#[template(path = "plugins.html")]
struct PluginsPage<'a> {
    chrome: Chrome<'a>,
    plugins: Vec<PluginRow>,
}

/// One section's part of the overview.
struct Summary {
    title: String,
    base: String,
    /// Trusted HTML, rendered by the plugin's own templates.
    html: String,
}

struct PluginRow {
    name: String,
    kind: String,
    version: String,
    description: String,
    mounts: String,
    generation: u64,
    inflight: usize,
    state: String,
}

/// The lifecycle states a plugin's generations are in now, from the kernel's state gauge:
/// "active" in steady state, "active, draining" for a moment after a swap.
fn states(families: &[MetricFamily], plugin: &str) -> String {
    let mut states: Vec<&str> = families
        .iter()
        .filter(|f| f.name() == "bourse_kernel_plugin_state")
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_gauge().get_value() > 0.0)
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "plugin" && l.value() == plugin)
        })
        .filter_map(|m| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "state")
                .map(|l| l.value())
        })
        .collect();
    let order = |s: &&str| {
        ["starting", "active", "draining"]
            .iter()
            .position(|o| o == s)
    };
    states.sort_by_key(order);
    if states.is_empty() {
        "active".to_owned()
    } else {
        states.join(", ")
    }
}

impl Admin {
    fn plugin_rows(&self) -> Vec<PluginRow> {
        let families = self.registry.gather();
        self.plugins
            .list()
            .into_iter()
            .map(|entry| PluginRow {
                state: states(&families, &entry.name),
                name: entry.name.to_string(),
                kind: entry.kind.clone(),
                version: entry.version.clone(),
                description: entry.description.clone(),
                mounts: if entry.mounts.is_empty() {
                    "none".to_owned()
                } else {
                    entry.mounts.join(" ")
                },
                generation: entry.generation(),
                inflight: entry.inflight(),
            })
            .collect()
    }

    pub(crate) fn overview(&self, session: &Session) -> Response {
        let summaries = self
            .sections()
            .iter()
            .filter_map(|entry| {
                let admin = entry.handler().admin()?;
                let base = base(&entry.name);
                let html = admin.summary(&base)?;
                Some(Summary {
                    title: admin.title(),
                    base,
                    html,
                })
            })
            .collect();
        let hidden = self
            .plugins
            .list()
            .into_iter()
            .filter(|entry| RESERVED.contains(&&*entry.name) && entry.handler().admin().is_some())
            .map(|entry| {
                format!(
                    "The pages of plugin `{0}` are not shown: /admin/{0} is one of the admin's \
                     own pages. Give the instance another name.",
                    entry.name
                )
            })
            .collect();
        page(
            StatusCode::OK,
            &OverviewPage {
                chrome: self.chrome(session, "overview", None),
                summaries,
                hidden,
                plugins: self.plugin_rows(),
            },
        )
    }

    pub(crate) fn plugins_page(&self, session: &Session) -> Response {
        page(
            StatusCode::OK,
            &PluginsPage {
                chrome: self.chrome(session, "plugins", None),
                plugins: self.plugin_rows(),
            },
        )
    }
}
