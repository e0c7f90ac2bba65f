//! Accounts: sign-up with e-mail verification, sign-in, sign-out, password reset by e-mail link
//! and password change. Tokens in links are single-use, expire, and are stored hashed; every
//! mail is queued in the outbox inside the transaction that creates its token.
//!
//! Nothing here tells a stranger whether an address has an account: sign-up of a known address
//! and a reset request for an unknown one answer exactly like the ordinary case (the owner of a
//! known address gets a mail saying so), and an unknown address costs a sign-in the same
//! password-hash time as a wrong password.

pub mod limits;
pub mod password;

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use crate::clock;
use crate::mail::{self, MailTemplates};
use crate::secret;
use crate::session::{self, IssuedSession, SessionError, Sessions};
use crate::store::{Conn, Store, StoreError};

pub use limits::{AttemptLimits, LimitScope, Limited};
pub use password::PasswordHasher;

/// A site's account settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsConfig {
    /// The site name (outbox rows, metrics).
    pub site: String,
    /// How mails name the site.
    pub site_title: String,
    /// Public base URL of the site, links are built on it: `https://example.com/courses`.
    pub base_url: String,
    pub verify_path: String,
    pub reset_path: String,
    pub verify_ttl_secs: i64,
    pub reset_ttl_secs: i64,
    pub min_password_chars: usize,
}

impl AccountsConfig {
    pub fn new(site: &str, site_title: &str, base_url: &str) -> AccountsConfig {
        AccountsConfig {
            site: site.to_owned(),
            site_title: site_title.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            verify_path: "/account/verify".to_owned(),
            reset_path: "/account/reset".to_owned(),
            verify_ttl_secs: 24 * 3600,
            reset_ttl_secs: 30 * 60,
            min_password_chars: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("too many attempts; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        scope: LimitScope,
        retry_after: std::time::Duration,
    },
    #[error("wrong e-mail address or password")]
    BadCredentials,
    #[error("confirm your e-mail address first: follow the link we sent you")]
    NotVerified,
    #[error("this link is unknown, already used or expired")]
    BadToken,
    #[error("this account is disabled")]
    Disabled,
    #[error(transparent)]
    Hash(#[from] password::HashError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Template(#[from] mail::templates::TemplateError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Limited> for AccountError {
    fn from(l: Limited) -> Self {
        AccountError::RateLimited {
            scope: l.scope,
            retry_after: l.retry_after,
        }
    }
}

const PURPOSE_VERIFY: &str = "verify_email";
const PURPOSE_RESET: &str = "reset_password";

/// One site's account service. The hasher and limits may be shared by every site.
pub struct Accounts {
    store: Store,
    config: AccountsConfig,
    sessions: Arc<Sessions>,
    hasher: PasswordHasher,
    limits: Arc<AttemptLimits>,
    templates: Arc<MailTemplates>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    pub fn new(
        store: Store,
        config: AccountsConfig,
        sessions: Arc<Sessions>,
        hasher: PasswordHasher,
        limits: Arc<AttemptLimits>,
        templates: Arc<MailTemplates>,
    ) -> Accounts {
        Accounts {
            store,
            config,
            sessions,
            hasher,
            limits,
            templates,
        }
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Creates an unverified account and mails a verification link. For an address that already
    /// has an account, mails its owner instead and answers the same (`Ok(None)`).
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Option<String>, AccountError> {
        self.limits.address(client)?;
        let email = normalize_email(email)?;
        self.check_password(password)?;
        let hash = self.hasher.hash(password).await?;
        let now = clock::now();
        let mut tx = self.store.begin().await?;
        let id = secret::new_id("acct");
        let created = sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, created_at, password_changed_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(&email)
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !created {
            let mail = self.templates.render(
                "account_exists",
                &json!({
                    "site_title": self.config.site_title,
                    "reset_link": self.link(&self.config.reset_path, None),
                }),
            )?;
            mail::enqueue(&mut tx, &self.config.site, &email, &mail).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let token = new_account_token(
            &mut tx,
            &id,
            PURPOSE_VERIFY,
            now + self.config.verify_ttl_secs,
        )
        .await?;
        let mail = self.templates.render(
            "verify_email",
            &json!({
                "site_title": self.config.site_title,
                "valid_hours": self.config.verify_ttl_secs / 3600,
                "link": self.link(&self.config.verify_path, Some(&token)),
            }),
        )?;
        mail::enqueue(&mut tx, &self.config.site, &email, &mail).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Marks the address of the token's account verified; returns the account id.
    pub async fn verify_email(&self, token: &str) -> Result<String, AccountError> {
        let mut tx = self.store.begin().await?;
        let account_id = use_account_token(&mut tx, token, PURPOSE_VERIFY).await?;
        sqlx::query("UPDATE accounts SET verified_at = COALESCE(verified_at, $2) WHERE id = $1")
            .bind(&account_id)
            .bind(clock::now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(account_id)
    }

    /// Checks the credentials and starts a session for this site.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<IssuedSession, AccountError> {
        self.limits.address(client)?;
        let email = normalize_email(email).map_err(|_| AccountError::BadCredentials)?;
        self.limits.account(&email)?;
        let row = sqlx::query(
            "SELECT id, password_hash, verified_at, disabled_at FROM accounts WHERE email = $1",
        )
        .bind(&email)
        .fetch_optional(self.store.reader())
        .await?;
        let hash: Option<String> = row
            .as_ref()
            .map(|r| r.try_get("password_hash"))
            .transpose()?;
        if !self.hasher.verify(password, hash.as_deref()).await? {
            return Err(AccountError::BadCredentials);
        }
        let row = row.ok_or(AccountError::BadCredentials)?;
        if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
            return Err(AccountError::Disabled);
        }
        if row.try_get::<Option<i64>, _>("verified_at")?.is_none() {
            return Err(AccountError::NotVerified);
        }
        let account_id: String = row.try_get("id")?;
        let mut tx = self.store.begin().await?;
        let session = self.sessions.start(&mut tx, &account_id).await?;
        tx.commit().await?;
        Ok(session)
    }

    /// Ends the session whose refresh token this is.
    pub async fn sign_out(&self, refresh_token: &str) -> Result<(), AccountError> {
        Ok(self.sessions.end(refresh_token).await?)
    }

    /// Mails a reset link when the address has an account; answers the same either way.
    pub async fn request_password_reset(
        &self,
        email: &str,
        client: IpAddr,
    ) -> Result<(), AccountError> {
        self.limits.address(client)?;
        let email = normalize_email(email)?;
        self.limits.account(&email)?;
        let mut tx = self.store.begin().await?;
        let account: Option<String> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE email = $1 AND disabled_at IS NULL")
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(account_id) = account else {
            return Ok(());
        };
        let token = new_account_token(
            &mut tx,
            &account_id,
            PURPOSE_RESET,
            clock::now() + self.config.reset_ttl_secs,
        )
        .await?;
        let mail = self.templates.render(
            "reset_password",
            &json!({
                "site_title": self.config.site_title,
                "valid_minutes": self.config.reset_ttl_secs / 60,
                "link": self.link(&self.config.reset_path, Some(&token)),
            }),
        )?;
        mail::enqueue(&mut tx, &self.config.site, &email, &mail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password from a reset link, verifies the address (the link proved it), and
    /// signs out every session of the account.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<String, AccountError> {
        self.check_password(new_password)?;
        let hash = self.hasher.hash(new_password).await?;
        let mut tx = self.store.begin().await?;
        let account_id = use_account_token(&mut tx, token, PURPOSE_RESET).await?;
        self.replace_password(&mut tx, &account_id, &hash).await?;
        tx.commit().await?;
        Ok(account_id)
    }

    /// Changes the password of a signed-in account after checking the current one; every
    /// session is revoked and a fresh one returned for the caller.
    pub async fn change_password(
        &self,
        account_id: &str,
        current: &str,
        new_password: &str,
    ) -> Result<IssuedSession, AccountError> {
        self.check_password(new_password)?;
        self.limits.account(account_id)?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(self.store.reader())
                .await?;
        if !self.hasher.verify(current, stored.as_deref()).await? {
            return Err(AccountError::BadCredentials);
        }
        let hash = self.hasher.hash(new_password).await?;
        let mut tx = self.store.begin().await?;
        self.replace_password(&mut tx, account_id, &hash).await?;
        let session = self.sessions.start(&mut tx, account_id).await?;
        tx.commit().await?;
        Ok(session)
    }

    async fn replace_password(
        &self,
        conn: &mut Conn,
        account_id: &str,
        hash: &str,
    ) -> Result<(), AccountError> {
        let now = clock::now();
        let email: String = sqlx::query_scalar(
            "UPDATE accounts SET password_hash = $2, password_changed_at = $3, \
             verified_at = COALESCE(verified_at, $3) WHERE id = $1 RETURNING email",
        )
        .bind(account_id)
        .bind(hash)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        session::revoke_account(conn, account_id).await?;
        // Reset links issued before the change are no good any more.
        sqlx::query(
            "UPDATE account_tokens SET used_at = $2 WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(account_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let mail = self.templates.render(
            "password_changed",
            &json!({
                "site_title": self.config.site_title,
                "reset_link": self.link(&self.config.reset_path, None),
            }),
        )?;
        mail::enqueue(conn, &self.config.site, &email, &mail).await?;
        Ok(())
    }

    fn check_password(&self, password: &str) -> Result<(), AccountError> {
        let chars = password.chars().count();
        if chars < self.config.min_password_chars {
            return Err(AccountError::Invalid {
                field: "password",
                message: format!(
                    "must be at least {} characters",
                    self.config.min_password_chars
                ),
            });
        }
        if chars > 1024 {
            return Err(AccountError::Invalid {
                field: "password",
                message: "must be at most 1024 characters".into(),
            });
        }
        Ok(())
    }

    fn link(&self, path: &str, token: Option<&str>) -> String {
        match token {
            Some(token) => format!("{}{}?token={}", self.config.base_url, path, token),
            None => format!("{}{}", self.config.base_url, path),
        }
    }
}

/// The canonical form of an e-mail address (trimmed, lower case), or why it is not one.
pub fn normalize_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 {
        return Err(AccountError::Invalid {
            field: "email",
            message: "must be at most 254 characters".into(),
        });
    }
    email
        .parse::<lettre::Address>()
        .map_err(|_| AccountError::Invalid {
            field: "email",
            message: "is not an e-mail address".into(),
        })?;
    Ok(email)
}

async fn new_account_token(
    conn: &mut Conn,
    account_id: &str,
    purpose: &str,
    expires_at: i64,
) -> Result<String, sqlx::Error> {
    let token = secret::new_token();
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, account_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret::token_hash(&token))
    .bind(account_id)
    .bind(purpose)
    .bind(clock::now())
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Spends a single-use token: one conditional UPDATE, so two clicks cannot both succeed.
async fn use_account_token(
    conn: &mut Conn,
    token: &str,
    purpose: &str,
) -> Result<String, AccountError> {
    let now = clock::now();
    sqlx::query_scalar(
        "UPDATE account_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 \
         AND used_at IS NULL AND expires_at > $3 RETURNING account_id",
    )
    .bind(secret::token_hash(token))
    .bind(purpose)
    .bind(now)
    .fetch_optional(conn)
    .await?
    .ok_or(AccountError::BadToken)
}
