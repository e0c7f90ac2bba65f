//! The courses site, a kernel plugin of kind `courses`: a public catalog, course pages with free
//! preview lessons, paid lessons and their attachments for enrolled students only, cohorts with
//! a limited number of seats, checkout through Stripe (or its TEST MODE stand-in), accounts with
//! e-mail verification, "my courses" with progress, and admin pages. Every service it uses
//! (store, accounts, sessions, payments, mail) is `bourse-commerce`'s; this crate is the site's
//! pages, its data model and the wiring. Start reading at `site.rs`.

mod admin;
pub mod catalog;
mod config;
mod links;
mod pages;
mod site;
mod sites;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bourse_commerce::accounts::{AttemptLimits, PasswordHasher};
use bourse_commerce::metrics::CommerceMetrics;
use bourse_commerce::payments::Payments;
use bourse_commerce::session::{SigningKey, SigningKeyConfig};
use bourse_commerce::stripe::testmode::{TestCheckout, TestCheckoutConfig};
use bourse_commerce::{Store, secret};
use bourse_kernel::{ConfigIssue, Handler, Manifest, Mount, Plugin, PluginCtx, PluginError};

pub use config::{CoursesConfig, Prepared, SessionSettings, StripeSettings};
pub use sites::{Sites, SitesConfig, SitesShared};

/// The plugin kind: `CoursesPlugin::default()`.
#[derive(Debug, Default)]
pub struct CoursesPlugin {
    _private: (),
}

/// What outlives a generation: the store, the signing key, the password hasher and attempt
/// limits, the TEST MODE checkout's open sessions, the metrics, and the background sweep.
pub struct CoursesState {
    store: Store,
    metrics: Option<CommerceMetrics>,
    signing_key: SigningKey,
    hasher: PasswordHasher,
    limits: Arc<AttemptLimits>,
    /// Signs form tokens and attachment links when the config names no `secret`.
    random_secret: String,
    test_checkout: parking_lot::Mutex<Option<TestCheckout>>,
    /// The serving generation's payments, for the sweep of lapsed holds.
    payments: ArcSwapOption<Payments>,
}

impl Plugin for CoursesPlugin {
    type Config = CoursesConfig;
    type Prepared = Prepared;
    type State = CoursesState;

    fn manifest(&self) -> Manifest {
        Manifest {
            kind: "courses".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "A courses site: catalog, lessons, cohorts with seats, Stripe checkout"
                .to_owned(),
            mount: Mount::paths(["/courses"]),
        }
    }

    fn prepare(&self, config: CoursesConfig) -> Result<Prepared, Vec<ConfigIssue>> {
        config.prepare()
    }

    async fn init(&self, ctx: &PluginCtx, config: &Prepared) -> Result<CoursesState, PluginError> {
        let sites = ctx.extensions.get::<Sites>().ok_or_else(|| {
            PluginError("the [sites] extension is not registered in this binary".to_owned())
        })?;
        let (store, metrics) = sites
            .open(
                &ctx.name,
                &[config.config.currency.as_str()],
                &[&catalog::MODULE],
            )
            .await?;
        if config.config.sample_courses {
            catalog::add_samples(&store, &ctx.name, &config.config.currency)
                .await
                .map_err(|e| PluginError(format!("adding the sample courses: {e}")))?;
            write_sample_files(&ctx.config_dir.join(&config.config.files_dir));
        }
        let signing_key = match &config.config.session.signing_key_file {
            Some(file) => load_or_create_key(&ctx.config_dir.join(file), &config.key_id)?,
            None => SigningKey::generate(config.key_id.clone()),
        };
        let state = CoursesState {
            store,
            metrics,
            signing_key,
            hasher: PasswordHasher::new(2),
            limits: Arc::new(AttemptLimits::default()),
            random_secret: secret::random_hex(32),
            test_checkout: parking_lot::Mutex::new(None),
            payments: ArcSwapOption::empty(),
        };
        Ok(state)
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        state: Arc<CoursesState>,
        config: Prepared,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        if ctx.generation == 1 {
            tokio::spawn(sweep(state.clone(), ctx.lifetime.clone()));
        }
        let test_checkout = config.config.stripe.test_mode.then(|| {
            let wanted = TestCheckoutConfig {
                secret_key: config.config.stripe.secret_key.clone(),
                webhook_secret: config.config.stripe.webhook_secret.clone(),
                webhook_url: format!("{}/webhooks/stripe", config.public_url),
                public_url: format!("{}/test-checkout", config.public_url),
                mount: String::new(),
            };
            // The open test sessions live as long as the instance; a changed table starts anew.
            let mut current = state.test_checkout.lock();
            match current.as_ref() {
                Some(checkout) if checkout.config() == &wanted => checkout.clone(),
                _ => {
                    let checkout = TestCheckout::new(wanted);
                    *current = Some(checkout.clone());
                    checkout
                }
            }
        });
        let site = site::Site::new(&ctx, state, config, test_checkout)?;
        Ok(Arc::new(site))
    }

    async fn stop(&self, state: Arc<CoursesState>, _deadline: tokio::time::Instant) {
        state.payments.store(None);
    }
}

/// Every minute: lapsed holds released, stale orders expired; every few seconds the seat and
/// outbox gauges refreshed.
async fn sweep(state: Arc<CoursesState>, lifetime: tokio_util::sync::CancellationToken) {
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            () = lifetime.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        ticks += 1;
        let Some(payments) = state.payments.load_full() else {
            continue;
        };
        if let Err(error) = payments.refresh_gauges().await {
            tracing::warn!(%error, "refreshing the site's gauges failed");
        }
        if ticks.is_multiple_of(12)
            && let Err(error) = payments.sweep().await
        {
            tracing::warn!(%error, "releasing lapsed seats failed");
        }
    }
}

/// The signing key in `path` (its seed in base64), created with a new key when missing.
fn load_or_create_key(path: &PathBuf, kid: &str) -> Result<SigningKey, PluginError> {
    let fail = |what: String| PluginError(format!("session.signing_key_file: {what}"));
    match std::fs::read_to_string(path) {
        Ok(text) => SigningKey::from_config(&SigningKeyConfig {
            kid: kid.to_owned(),
            seed: text.trim().to_owned(),
        })
        .map_err(|e| fail(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(kid.to_owned());
            write_private(path, &key.to_config().seed)
                .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
            Ok(key)
        }
        Err(e) => Err(fail(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_private(path: &PathBuf, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// The sample courses' attachments, written when missing.
fn write_sample_files(dir: &std::path::Path) {
    for slug in ["rust-in-depth", "sql-for-builders"] {
        let path = dir.join(format!("{slug}-notes.txt"));
        if path.exists() {
            continue;
        }
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            std::fs::write(
                &path,
                format!("Notes for {slug}: the exercises of lesson 2, for enrolled students.\n"),
            )
        });
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "sample attachment not written");
        }
    }
}
