//! `[sites]`: what every paying site of the process shares, as a kernel extension: the store
//! (`[sites.store]`, SQLite by default, PostgreSQL when `url` is set) and the mail that leaves
//! its outbox (`[sites.mail]`, an SMTP server; without one, each mail is printed on standard
//! output, which is what the demo's console shows).
//!
//! The store is opened by the first site that asks, not when the process starts: a bourse that
//! runs no site never creates a database file.

use std::time::Duration;

use bourse_commerce::mail::{MailSender, SenderConfig, SmtpConfig, outbox};
use bourse_commerce::metrics::CommerceMetrics;
use bourse_commerce::migrate::{self, Module};
use bourse_commerce::{Store, StoreConfig, schema};
use bourse_kernel::{ConfigIssue, Extension, Metrics, PluginError};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// The `[sites]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SitesConfig {
    pub store: StoreConfig,
    /// Where mails go; absent: printed on standard output (for the demo and development).
    pub mail: Option<SmtpConfig>,
}

/// The `[sites]` extension; register it with `Kernel::builder().extension::<Sites>()`.
#[derive(Debug)]
pub struct Sites;

/// What every site reaches through `PluginCtx::extensions`.
pub struct SitesShared {
    config: SitesConfig,
    metrics: Metrics,
    opened: tokio::sync::OnceCell<(Store, Option<CommerceMetrics>)>,
    stop: CancellationToken,
}

impl std::fmt::Debug for SitesShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SitesShared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Extension for Sites {
    const NAME: &'static str = "sites";
    type Config = SitesConfig;
    type Shared = SitesShared;

    fn check(config: &SitesConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(bourse_commerce::StoreError::Config { field, message }) = config.store.validate()
        {
            issues.push(ConfigIssue::new(format!("store.{field}"), message));
        }
        if let Some(mail) = &config.mail {
            if mail.host.trim().is_empty() {
                issues.push(ConfigIssue::new("mail.host", "must not be empty"));
            }
            if mail.port == 0 {
                issues.push(ConfigIssue::new("mail.port", "must be 1-65535"));
            }
            if !mail.from.contains('@') {
                issues.push(ConfigIssue::new(
                    "mail.from",
                    "must be a mail address, e.g. `Courses <no-reply@example.com>`",
                ));
            }
        }
        issues
    }

    async fn start(config: &SitesConfig, metrics: &Metrics) -> Result<SitesShared, PluginError> {
        Ok(SitesShared {
            config: config.clone(),
            metrics: metrics.clone(),
            opened: tokio::sync::OnceCell::new(),
            stop: CancellationToken::new(),
        })
    }

    async fn reconfigure(shared: &SitesShared, config: &SitesConfig) -> Result<(), PluginError> {
        if *config == shared.config {
            return Ok(());
        }
        Err(PluginError(
            "[sites]: the store and mail settings take effect when bourse restarts".to_owned(),
        ))
    }

    async fn stop(shared: &SitesShared, deadline: tokio::time::Instant) {
        shared.stop.cancel();
        if let Some((store, _)) = shared.opened.get() {
            let _ = tokio::time::timeout_at(deadline, store.close()).await;
        }
    }
}

impl SitesShared {
    /// The store with the commerce modules and `site_modules` migrated, and the commerce
    /// metrics; the first call opens it, registers the `bourse_site_*` families (labelled by
    /// `site`; later sites count under `other`) and starts the mail sender.
    pub async fn open(
        &self,
        site: &str,
        currencies: &[&str],
        site_modules: &[&Module],
    ) -> Result<(Store, Option<CommerceMetrics>), PluginError> {
        let (store, metrics) = self
            .opened
            .get_or_try_init(|| async {
                let (store, _) = Store::open(&self.config.store, &schema::ALL)
                    .await
                    .map_err(|e| PluginError(format!("[sites.store]: {e}")))?;
                let metrics =
                    match CommerceMetrics::register(self.metrics.registry(), &[site], currencies) {
                        Ok(metrics) => Some(metrics),
                        Err(error) => {
                            tracing::error!(%error, "the bourse_site_* metrics are not registered");
                            None
                        }
                    };
                self.start_mail(&store, metrics.clone())?;
                Ok::<_, PluginError>((store, metrics))
            })
            .await?;
        migrate::apply(store, site_modules)
            .await
            .map_err(|e| PluginError(format!("[sites.store]: {e}")))?;
        Ok((store.clone(), metrics.clone()))
    }

    fn start_mail(
        &self,
        store: &Store,
        metrics: Option<CommerceMetrics>,
    ) -> Result<(), PluginError> {
        let stop = self.stop.clone();
        match &self.config.mail {
            Some(smtp) => {
                let sender = MailSender::new(
                    store.clone(),
                    smtp,
                    SenderConfig {
                        poll_interval: Duration::from_millis(200),
                        // Longer than one SMTP attempt can take, so a live sender keeps its row,
                        // and no longer, so a crashed node's rows go out soon after a restart.
                        lease: Duration::from_millis(smtp.timeout_ms.saturating_mul(2) + 1_000),
                        ..SenderConfig::default()
                    },
                    metrics,
                )
                .map_err(|e| PluginError(format!("[sites.mail]: {e}")))?;
                tokio::spawn(sender.run(async move { stop.cancelled().await }));
            }
            None => {
                tracing::warn!(
                    "no [sites.mail]: the sites' mails are printed on standard output, not sent"
                );
                tokio::spawn(print_outbox(store.clone(), stop));
            }
        }
        Ok(())
    }
}

/// Without an SMTP server: each queued mail is printed once, then marked sent.
async fn print_outbox(store: Store, stop: CancellationToken) {
    let owner = format!("console-{}", std::process::id());
    loop {
        let now = bourse_commerce::clock::now_ms();
        match outbox::claim(&store, &owner, now, now, 60_000).await {
            Ok(Some(row)) => {
                println!(
                    "\n--- mail to {} ({}) ---\nSubject: {}\n\n{}\n--- end of mail ---",
                    row.recipient,
                    row.site,
                    row.subject,
                    row.body_text.trim_end()
                );
                if let Err(error) = outbox::mark_sent(&store, &row.id, &owner).await {
                    tracing::error!(%error, "printed mail not marked sent");
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "reading the mail outbox failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
