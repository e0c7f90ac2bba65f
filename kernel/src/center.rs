//! The config center as plugins see it: the audit history, and a way to apply a config (such
//! as an earlier one from the history, or the one in force edited in place) that goes through
//! the same validation, diff, warm-up, swap and drain as a file change, recorded under the
//! caller's name. A refusal is typed, so a page can place each problem beside its field.

use crate::audit::AuditEntry;
use crate::{ConfigError, ConfigErrors};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long [`ConfigCenter::apply`] waits for the kernel to apply a config.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a config was not applied. Nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The config does not validate; every problem with its file, line and path.
    Invalid(ConfigErrors),
    /// The config changed since the edit was based on it (here, or on another node through
    /// etcd): read it again and redo the change.
    Conflict(String),
    /// The shared store (etcd) or the config file could not be written.
    Unavailable(String),
    /// Valid, but a plugin failed to start with it.
    Start(String),
}

impl Refusal {
    /// The located problems, when the config was invalid.
    pub fn problems(&self) -> &[ConfigError] {
        match self {
            Refusal::Invalid(errors) => &errors.0,
            _ => &[],
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(errors) => write!(f, "{errors}"),
            Refusal::Conflict(why) | Refusal::Unavailable(why) | Refusal::Start(why) => {
                f.write_str(why)
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// A request to the serving loop.
pub(crate) struct ApplyRequest {
    pub text: String,
    pub who: String,
    /// The audit sequence number the text was derived from; refused when another config was
    /// applied since.
    pub based_on: Option<u64>,
    /// Validate only: answer whether the text would be accepted, change nothing.
    pub check_only: bool,
    pub reply: oneshot::Sender<Result<(), Refusal>>,
}

/// Handle given to every plugin (`PluginCtx::config_center`).
#[derive(Clone)]
pub struct ConfigCenter {
    history: Arc<Mutex<VecDeque<AuditEntry>>>,
    requests: mpsc::UnboundedSender<ApplyRequest>,
}

impl fmt::Debug for ConfigCenter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfigCenter(..)")
    }
}

impl ConfigCenter {
    pub(crate) fn new(
        history: Arc<Mutex<VecDeque<AuditEntry>>>,
    ) -> (ConfigCenter, mpsc::UnboundedReceiver<ApplyRequest>) {
        let (requests, receiver) = mpsc::unbounded_channel();
        (ConfigCenter { history, requests }, receiver)
    }

    /// Every applied config this process remembers, oldest first.
    pub fn history(&self) -> Vec<AuditEntry> {
        self.history.lock().iter().cloned().collect()
    }

    /// The text of the config in force (the last one applied), without copying the history.
    pub fn current_text(&self) -> Option<String> {
        self.history.lock().back().map(|e| e.text.clone())
    }

    /// The config in force and its audit sequence number.
    fn current(&self) -> Option<(u64, String)> {
        self.history.lock().back().map(|e| (e.seq, e.text.clone()))
    }

    /// Applies `text` as the new config, recorded as made by `who`. When the running config
    /// came from a file, the file is rewritten first so disk and process agree; with
    /// `[server.etcd]` the shared part is written to etcd before that, so every node gets it.
    pub async fn apply(&self, text: String, who: String) -> Result<(), Refusal> {
        self.send(text, who, None, false).await
    }

    /// Applies `text` as [`Self::apply`] does, but only over the config `based_on` (an audit
    /// sequence number): refused with [`Refusal::Conflict`] when another change was applied
    /// since, so what an operator reviewed is what gets replaced.
    pub async fn apply_over(
        &self,
        text: String,
        who: String,
        based_on: u64,
    ) -> Result<(), Refusal> {
        self.send(text, who, Some(based_on), false).await
    }

    /// Edits the config in force in place (comments and layout kept) and applies the result as
    /// `who`. Refused with [`Refusal::Conflict`] when another change was applied between the
    /// read and the apply, so no change is ever silently overwritten.
    pub async fn edit<F>(&self, who: String, change: F) -> Result<(), Refusal>
    where
        F: FnOnce(&mut toml_edit::DocumentMut) -> Result<(), Refusal>,
    {
        let (seq, text) = self.edited(change)?;
        self.send(text, who, Some(seq), false).await
    }

    /// What [`Self::edit`] with `change` would answer, without applying anything: the config
    /// validated as an apply validates it (every plugin's checks), nothing written or counted.
    /// A form with a field it cannot even parse uses it to show every other field's error on
    /// the same submit.
    pub async fn check_edit<F>(&self, change: F) -> Result<(), Refusal>
    where
        F: FnOnce(&mut toml_edit::DocumentMut) -> Result<(), Refusal>,
    {
        let (seq, text) = self.edited(change)?;
        self.send(text, String::new(), Some(seq), true).await
    }

    /// The config in force with `change` made to it, and the sequence number it was read at.
    fn edited<F>(&self, change: F) -> Result<(u64, String), Refusal>
    where
        F: FnOnce(&mut toml_edit::DocumentMut) -> Result<(), Refusal>,
    {
        let (seq, text) = self.current().unwrap_or_default();
        let mut doc: toml_edit::DocumentMut = text.parse().map_err(|error| {
            Refusal::Unavailable(format!("the config in force does not parse: {error}"))
        })?;
        change(&mut doc)?;
        Ok((seq, doc.to_string()))
    }

    async fn send(
        &self,
        text: String,
        who: String,
        based_on: Option<u64>,
        check_only: bool,
    ) -> Result<(), Refusal> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(ApplyRequest {
                text,
                who,
                based_on,
                check_only,
                reply,
            })
            .map_err(|_| Refusal::Unavailable("the server is shutting down".to_owned()))?;
        match tokio::time::timeout(APPLY_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(Refusal::Unavailable(
                "the server did not apply the change in time".to_owned(),
            )),
        }
    }
}

/// `[plugins.<name>]` of an editable document, created (implicit parent) when absent.
pub fn plugin_table<'a>(
    doc: &'a mut toml_edit::DocumentMut,
    name: &str,
) -> Result<&'a mut toml_edit::Table, Refusal> {
    let plugins = doc["plugins"].or_insert(toml_edit::table());
    if let Some(plugins) = plugins.as_table_mut() {
        // A `[plugins]` made here only holds sub-tables; keep it from printing as empty.
        plugins.set_implicit(true);
    }
    plugins[name]
        .or_insert(toml_edit::table())
        .as_table_mut()
        .ok_or_else(|| Refusal::Unavailable(format!("plugins.{name} is not a table")))
}
