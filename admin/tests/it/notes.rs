//! `notes`: a plugin kind that only has admin pages, written as any site would write them.

use bourse_kernel::admin::{AdminReply, AdminRequest, AdminSection, FieldErrors, NavLink};
use bourse_kernel::{
    ConfigCenter, ConfigIssue, Handler, Manifest, Mount, Plugin, PluginCtx, PluginError, Request,
    Response, plugin_table,
};
use futures_util::future::BoxFuture;
use http::{Method, StatusCode};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotesConfig {
    #[serde(default)]
    title: String,
}

pub struct NotesPlugin;

impl Plugin for NotesPlugin {
    type Config = NotesConfig;
    type Prepared = NotesConfig;
    type State = ();

    fn manifest(&self) -> Manifest {
        Manifest {
            kind: "notes".to_owned(),
            version: "1.2.3".to_owned(),
            description: "Notes, for the shell's tests".to_owned(),
            mount: Mount::none(),
        }
    }

    fn prepare(&self, config: NotesConfig) -> Result<NotesConfig, Vec<ConfigIssue>> {
        if config.title.chars().count() > 20 {
            return Err(vec![ConfigIssue::new("title", "at most 20 characters")]);
        }
        Ok(config)
    }

    async fn init(&self, _ctx: &PluginCtx, _config: &NotesConfig) -> Result<(), PluginError> {
        Ok(())
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        _state: Arc<()>,
        config: NotesConfig,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        Ok(Arc::new(Notes {
            name: ctx.name.clone(),
            center: ctx.config_center.clone(),
            title: config.title,
        }))
    }
}

struct Notes {
    name: Arc<str>,
    center: ConfigCenter,
    title: String,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
}

impl Handler for Notes {
    fn handle<'a>(&'a self, _req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async { bourse_kernel::error_response(StatusCode::NOT_FOUND, "not_found") })
    }

    fn admin(&self) -> Option<&dyn AdminSection> {
        Some(self)
    }
}

impl Notes {
    fn home(&self, req: &AdminRequest, errors: &FieldErrors) -> String {
        let error = errors
            .field("title")
            .map(|e| format!("<p class=\"field-error\">{}</p>", escape(e)))
            .unwrap_or_default();
        let general = errors
            .general
            .as_deref()
            .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
            .unwrap_or_default();
        format!(
            "<h1>{}</h1>{general}<form method=\"post\" action=\"{}/title\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>Title <input name=\"title\"></label>{error}</form>",
            escape(&self.title),
            req.base,
            req.csrf
        )
    }
}

impl AdminSection for Notes {
    fn title(&self) -> String {
        format!("Notes {}", self.title)
    }

    fn nav(&self) -> Vec<NavLink> {
        vec![NavLink::new("Home", ""), NavLink::new("Items", "items")]
    }

    fn summary(&self, _base: &str) -> Option<String> {
        Some(format!(
            "<p class=\"notes-summary\">{}: 2 items</p>",
            escape(&self.title)
        ))
    }

    fn serve<'a>(&'a self, req: AdminRequest) -> BoxFuture<'a, AdminReply> {
        Box::pin(async move {
            match (req.method.clone(), req.path.as_str()) {
                (Method::GET, "/") => AdminReply::page(
                    self.title.clone(),
                    "",
                    self.home(&req, &FieldErrors::default()),
                ),
                (Method::GET, "/items") => AdminReply::page(
                    "Items",
                    "items",
                    format!(
                        "<h1>Items</h1><p>user={} base={} path={} page={}</p>\
                         <form method=\"post\" action=\"{}/title\">\
                         <input type=\"hidden\" name=\"csrf\" value=\"{}\"></form>",
                        req.user,
                        req.base,
                        req.path,
                        req.query.page(),
                        req.base,
                        req.csrf
                    ),
                ),
                (Method::GET, "/count.json") => AdminReply::json("{\"items\":2}".to_owned()),
                (Method::POST, "/title") => {
                    let title = req.form.text("title");
                    let name = self.name.clone();
                    let result = self
                        .center
                        .edit(req.who(), move |doc| {
                            plugin_table(doc, &name)?["title"] = toml_edit::value(title);
                            Ok(())
                        })
                        .await;
                    match result {
                        Ok(()) => AdminReply::Redirect(req.base.clone()),
                        Err(refusal) => {
                            let scope = format!("plugins.{}", self.name);
                            let errors = FieldErrors::from_refusal(&refusal, &scope, &["title"]);
                            AdminReply::page(self.title.clone(), "", self.home(&req, &errors))
                                .with_status(StatusCode::UNPROCESSABLE_ENTITY)
                        }
                    }
                }
                _ => AdminReply::text(StatusCode::NOT_FOUND, "no such notes page"),
            }
        })
    }
}
