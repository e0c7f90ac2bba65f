//! Applying etcd's config (built with the `etcd` feature): joining the shared config at start,
//! and applying each change the watch sees, with this node's local settings laid over it.

use std::path::PathBuf;

use anyhow::Context;

use super::{EtcdLink, EtcdMetrics};
use crate::config::{self, ConfigError, LoadedConfig};
use crate::running::write_config_file;
use crate::{Kernel, Running, etcd};

impl Kernel {
    /// With `[server.etcd]`: reads (or seeds) the shared config and returns the config to start
    /// from, with the link to keep. Without it, the config unchanged.
    pub(crate) async fn join_etcd(
        &self,
        config: LoadedConfig,
    ) -> anyhow::Result<(LoadedConfig, Option<EtcdStart>)> {
        let Some(settings) = config.server.etcd.clone() else {
            return Ok((config, None));
        };
        let metrics = EtcdMetrics::register(&self.metrics).context("registering etcd metrics")?;
        let mut link = EtcdLink::new(
            settings.clone(),
            config.text.clone(),
            config.config_dir.clone(),
            metrics,
        );
        let seed = etcd::shared_document(&config.text)
            .map_err(|e| anyhow::anyhow!("extracting the shared part of the config: {e}"))?;
        let fetched = match link.client().await {
            Ok(client) => etcd::fetch_or_seed(client, &settings, Some(&seed)).await,
            Err(error) => Err(error),
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(
                    key = settings.key,
                    error,
                    "etcd cannot be reached at start-up: serving the local config file and \
                     trying etcd again in the background"
                );
                let start = EtcdStart {
                    link,
                    next_revision: None,
                    seed: Some(seed),
                    applied: None,
                };
                return Ok((config, Some(start)));
            }
        };
        let mut start = EtcdStart {
            link,
            next_revision: Some(fetched.revision + 1),
            seed: None,
            applied: None,
        };
        let Some((revision, document)) = fetched.value else {
            return Ok((config, Some(start)));
        };
        let link = &mut start.link;
        link.seen = revision;
        let loaded = document.and_then(|text| {
            load_etcd_document(&self.registered, link, &text, config.source.clone())
                .map(|loaded| (text, loaded))
                .map_err(|errors| errors.to_string())
        });
        match loaded {
            Ok((document, loaded)) => {
                link.last_document = Some(document);
                link.metrics.applied(revision);
                if etcd::same_config(&loaded.text, &config.text) {
                    // This node's file already says it (it seeded etcd, say): keep its text.
                    return Ok((config, Some(start)));
                }
                tracing::info!(revision, "starting from the shared config in etcd");
                // So that a restart without etcd serves it. A file that cannot be written
                // (mounted read-only, say) stays as it was: the watcher starts from its bytes.
                match loaded
                    .source
                    .as_deref()
                    .map(|p| (p, write_config_file(p, &loaded.text)))
                {
                    Some((_, Ok(()))) => link.local_text = loaded.text.clone(),
                    Some((path, Err(error))) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "cannot write the config from etcd to the config file"
                    ),
                    None => {}
                }
                start.applied = Some(revision);
                Ok((loaded, Some(start)))
            }
            Err(error) => {
                link.metrics.outcome("refused");
                tracing::error!(
                    revision,
                    error,
                    "the shared config in etcd is refused: serving the local config file"
                );
                Ok((config, Some(start)))
            }
        }
    }
}

/// What `Kernel::start` learnt from etcd.
pub(crate) struct EtcdStart {
    pub(crate) link: EtcdLink,
    /// Where the watch resumes; `None`: etcd was not reached, read it first.
    pub(crate) next_revision: Option<i64>,
    /// What to seed an empty key with, when etcd was not reached at start-up.
    pub(crate) seed: Option<String>,
    /// The revision started from, when it was etcd's document.
    pub(crate) applied: Option<i64>,
}

/// Validates `text` from etcd on its own (errors name `etcd:KEY:LINE:COL`), then loads it with
/// the node's local settings laid over it.
fn load_etcd_document(
    plugins: &crate::config::Registered,
    link: &EtcdLink,
    text: &str,
    source: Option<PathBuf>,
) -> Result<LoadedConfig, crate::ConfigErrors> {
    let origin = link.settings.origin();
    config::load_str(plugins, text, &origin, link.config_dir.clone())?;
    let merged = etcd::overlay_node_local(text, &link.local_text).map_err(|error| {
        crate::ConfigErrors(vec![ConfigError {
            file: origin.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot lay this node's settings over it: {error}"),
        }])
    })?;
    let merged_origin = format!("{origin} (with this node's [server] settings)");
    let mut loaded = config::load_str(plugins, &merged, &merged_origin, link.config_dir.clone())?;
    loaded.source = source;
    Ok(loaded)
}

impl Running {
    /// One change the etcd watch saw: validated on its own and with this node's settings laid
    /// over it, then applied as `etcd rev N`, and written to the config file so that a restart
    /// without etcd serves it too. A document that fails is refused and logged with its line;
    /// the running config keeps serving.
    pub(crate) async fn apply_etcd_update(&self, update: etcd::Update) {
        let Some(link) = &self.etcd else { return };
        let mut link = link.lock().await;
        let (revision, text) = match update {
            etcd::Update::Deleted { revision } => {
                link.seen = 0;
                // The next change made here publishes again, whatever it is.
                link.last_document = None;
                link.metrics.outcome("deleted");
                tracing::warn!(
                    key = link.settings.key,
                    revision,
                    "the shared config was deleted from etcd; this node keeps serving its config"
                );
                return;
            }
            etcd::Update::Put { revision, text } => (revision, text),
        };
        link.seen = revision;
        if let Ok(text) = &text
            && link.last_document.as_deref() == Some(text.as_str())
        {
            link.metrics.outcome("unchanged");
            return;
        }
        let source = self.state.lock().await.source.clone();
        let loaded = text.and_then(|text| {
            load_etcd_document(&self.host.registered, &link, &text, source.clone())
                .map(|loaded| (text, loaded))
                .map_err(|errors| errors.to_string())
        });
        let (document, loaded) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(
                    revision,
                    error,
                    "config in etcd refused; the running config keeps serving"
                );
                link.metrics.outcome("refused");
                self.count_refused_apply();
                return;
            }
        };
        let effective = loaded.text.clone();
        if self
            .apply_as(loaded, &format!("etcd rev {revision}"))
            .await
            .is_err()
        {
            link.metrics.outcome("refused");
            return;
        }
        link.last_document = Some(document);
        link.metrics.applied(revision);
        if let Some(path) = source {
            match write_config_file(&path, &effective) {
                Ok(()) => link.local_text = effective,
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    %error,
                    "cannot write the config from etcd to the config file"
                ),
            }
        }
    }
}
