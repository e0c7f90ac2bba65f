//! The sender task: claims due outbox rows, sends them over SMTP (lettre; implicit TLS, STARTTLS
//! or plain, with optional authentication), marks them sent, and backs off exponentially (with
//! jitter) on failure.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::mail::outbox::{self, OutboxRow};
use crate::metrics::{CommerceMetrics, MailFailure};
use crate::secret;
use crate::store::Store;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// No encryption: only for a server on the same host (a local relay or catcher).
    None,
}

/// `[sites.mail]`: the SMTP server and the sender address.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `From:`, e.g. `Courses <no-reply@example.com>`.
    pub from: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A PEM file of extra trusted root certificates, for a relay with a private CA.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_timeout_ms() -> u64 {
    20_000
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("from", &self.from)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Pace and patience of the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Pause between sweeps when the outbox is empty.
    pub poll_interval: Duration,
    /// How long a claim lasts; must exceed the SMTP timeout so a live sender never loses a row
    /// it is still sending.
    pub lease: Duration,
    /// First retry delay; doubled each attempt, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before a row is given up.
    pub max_attempts: i64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            max_attempts: 12,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail config: {field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Sends the outbox. Run one per process; any number may share a database.
pub struct MailSender {
    store: Store,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
    owner: String,
    config: SenderConfig,
    metrics: Option<CommerceMetrics>,
}

impl std::fmt::Debug for MailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSender")
            .field("from", &self.from.to_string())
            .field("owner", &self.owner)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub sent: usize,
    pub retried: usize,
    pub gave_up: usize,
}

impl MailSender {
    pub fn new(
        store: Store,
        smtp: &SmtpConfig,
        config: SenderConfig,
        metrics: Option<CommerceMetrics>,
    ) -> Result<MailSender, MailError> {
        let from: Mailbox = smtp.from.parse().map_err(|e| MailError::Config {
            field: "from",
            message: format!("not a mail address: {e}"),
        })?;
        let domain = from.email.domain().to_owned();
        let tls = || {
            let mut builder = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = std::fs::read(path).map_err(|e| MailError::Config {
                    field: "ca_file",
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| MailError::Config {
                    field: "ca_file",
                    message: format!("{}: {e}", path.display()),
                })?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build().map_err(|e| MailError::Config {
                field: "host",
                message: e.to_string(),
            })
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
                .port(smtp.port)
                .timeout(Some(Duration::from_millis(smtp.timeout_ms)))
                .tls(match smtp.security {
                    SmtpSecurity::Tls => Tls::Wrapper(tls()?),
                    SmtpSecurity::Starttls => Tls::Required(tls()?),
                    SmtpSecurity::None => Tls::None,
                });
        match (&smtp.username, &smtp.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            (None, None) => {}
            _ => {
                return Err(MailError::Config {
                    field: "username",
                    message: "username and password go together".into(),
                });
            }
        }
        if config.lease <= Duration::from_millis(smtp.timeout_ms) {
            return Err(MailError::Config {
                field: "timeout_ms",
                message: "must be shorter than the sender's lease".into(),
            });
        }
        Ok(MailSender {
            store,
            transport: builder.build(),
            from,
            domain,
            owner: secret::new_id("sender"),
            config,
            metrics,
        })
    }

    /// Sends every row due when the sweep starts (a row that fails is not tried again before
    /// the next sweep); returns what it did.
    pub async fn sweep(&self) -> Result<Sweep, MailError> {
        let mut sweep = Sweep::default();
        let lease_ms = self.config.lease.as_millis() as i64;
        let due = clock::now_ms();
        while let Some(row) =
            outbox::claim(&self.store, &self.owner, due, clock::now_ms(), lease_ms).await?
        {
            match self.send(&row).await {
                Ok(()) => {
                    if !outbox::mark_sent(&self.store, &row.id, &self.owner).await? {
                        tracing::warn!(id = %row.id, "mail sent after its lease lapsed");
                    }
                    sweep.sent += 1;
                    if let Some(m) = &self.metrics {
                        m.site(&row.site).mail_sent.inc();
                    }
                }
                Err(failure) => {
                    let give_up = failure.permanent || row.attempts >= self.config.max_attempts;
                    let retry_at = (!give_up)
                        .then(|| clock::now_ms() + self.backoff(row.attempts).as_millis() as i64);
                    tracing::warn!(id = %row.id, attempts = row.attempts, give_up,
                        error = %failure.message, "mail not sent");
                    outbox::mark_failed(
                        &self.store,
                        &row.id,
                        &self.owner,
                        &failure.message,
                        retry_at,
                    )
                    .await?;
                    let kind = if give_up {
                        sweep.gave_up += 1;
                        MailFailure::GaveUp
                    } else {
                        sweep.retried += 1;
                        MailFailure::Retry
                    };
                    if let Some(m) = &self.metrics {
                        m.site(&row.site).mail_failure(kind);
                    }
                }
            }
        }
        Ok(sweep)
    }

    /// Sweeps until `shutdown` resolves, pausing `poll_interval` when idle.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.sweep().await {
                tracing::error!(error = %e, "mail sweep failed");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// The delay before attempt `attempts + 1`: base × 2^(attempts-1), capped, with ±20% jitter
    /// so senders that failed together do not retry together.
    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = (attempts - 1).clamp(0, 30) as u32;
        let delay = self
            .config
            .base_backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.config.max_backoff);
        delay.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    async fn send(&self, row: &OutboxRow) -> Result<(), SendFailure> {
        let to: Mailbox = row.recipient.parse().map_err(|e| SendFailure {
            permanent: true,
            message: format!("bad recipient `{}`: {e}", row.recipient),
        })?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(row.subject.clone())
            // Derived from the outbox id: a copy sent after a crash carries the same id.
            .message_id(Some(format!("<{}@{}>", row.id, self.domain)));
        let message = match &row.body_html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                row.body_text.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(row.body_text.clone()),
        }
        .map_err(|e| SendFailure {
            permanent: true,
            message: format!("cannot build the message: {e}"),
        })?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| SendFailure {
                permanent: e.is_permanent(),
                message: e.to_string(),
            })
    }
}

struct SendFailure {
    permanent: bool,
    message: String,
}
