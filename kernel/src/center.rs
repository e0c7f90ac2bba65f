//! The config center as plugins see it: the audit history, and a way to apply a config (such
//! as an earlier one from the history) that goes through the same validation, diff, warm-up,
//! swap and drain as a file change, recorded under the caller's name.

use crate::audit::AuditEntry;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long [`ConfigCenter::apply`] waits for the kernel to apply a config.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A request to the serving loop.
pub(crate) struct ApplyRequest {
    pub text: String,
    pub who: String,
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// Handle given to every plugin generation (`PluginCtx::config_center`).
#[derive(Clone)]
pub struct ConfigCenter {
    history: Arc<Mutex<VecDeque<AuditEntry>>>,
    requests: mpsc::UnboundedSender<ApplyRequest>,
}

impl std::fmt::Debug for ConfigCenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

    /// Applies `text` as the new config, recorded as made by `who`. When the running config
    /// came from a file, the file is rewritten first so disk and process agree; with
    /// `[server.etcd]` the shared part is written to etcd before that, so every node gets it.
    /// Errors say why the config was refused (with its line, or because etcd changed since
    /// this node last saw it or cannot be reached) or that nothing is applying changes.
    pub async fn apply(&self, text: String, who: String) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(ApplyRequest { text, who, reply })
            .map_err(|_| "the server is shutting down".to_owned())?;
        match tokio::time::timeout(APPLY_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err("the server did not apply the change in time".to_owned()),
        }
    }
}
