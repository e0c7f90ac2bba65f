//! Sessions: short-lived signed JWTs (15 minutes by default) renewed from a revocable refresh
//! token.
//!
//! Access tokens are EdDSA (Ed25519): the algorithm is pinned at validation, so neither
//! `alg=none` nor an HMAC token keyed with our public key is ever accepted; `exp`, `nbf`, `iat`,
//! `aud` (one per site) and `iss` are all required and checked. Keys carry a `kid`; rotating
//! makes a new key sign while the old ones still verify until removed.
//!
//! Refresh tokens are random, stored as SHA-256, and rotated on every use. A token used twice
//! means it was copied: the whole family (one sign-in) is revoked, the thief's copy and the
//! owner's alike. Sign-out revokes the family; a password change revokes every family of the
//! account. An access token outlives revocation by at most its 15 minutes, the price of checking
//! it without a database read.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock;
use crate::secret;
use crate::store::{Conn, Store, StoreError};

/// An Ed25519 key that signs access tokens, named by its `kid`.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A signing key as configured: its id and its 32-byte seed in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    pub kid: String,
    pub seed: String,
}

impl SigningKey {
    /// A new random key.
    pub fn generate(kid: impl Into<String>) -> SigningKey {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        SigningKey {
            kid: kid.into(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// The key a configuration names; a bad seed is refused with the field and the rule.
    pub fn from_config(config: &SigningKeyConfig) -> Result<SigningKey, SessionError> {
        if config.kid.is_empty() {
            return Err(SessionError::Config("kid: must not be empty".into()));
        }
        let seed: [u8; 32] = STANDARD
            .decode(config.seed.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                SessionError::Config(format!(
                    "seed of key `{}`: must be 32 bytes in standard base64",
                    config.kid
                ))
            })?;
        Ok(SigningKey {
            kid: config.kid.clone(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The configuration that recreates this key.
    pub fn to_config(&self) -> SigningKeyConfig {
        SigningKeyConfig {
            kid: self.kid.clone(),
            seed: STANDARD.encode(self.key.to_bytes()),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key (what verifies this key's tokens).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn encoding_key(&self) -> Result<EncodingKey, SessionError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| SessionError::Config(format!("key `{}`: {e}", self.kid)))?;
        Ok(EncodingKey::from_ed_der(der.as_bytes()))
    }
}

/// The keys in force: one signs, all verify.
#[derive(Clone)]
pub struct KeyRing {
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self.verifying.keys().collect();
        kids.sort();
        f.debug_struct("KeyRing")
            .field("signing_kid", &self.signing_kid)
            .field("verifying", &kids)
            .finish()
    }
}

impl KeyRing {
    /// A ring where `key` signs and verifies.
    pub fn new(key: &SigningKey) -> Result<KeyRing, SessionError> {
        let mut verifying = HashMap::new();
        verifying.insert(key.kid.clone(), DecodingKey::from_ed_der(&key.public_key()));
        Ok(KeyRing {
            signing_kid: key.kid.clone(),
            signing: key.encoding_key()?,
            verifying,
        })
    }

    /// This ring with `key` signing from now on; earlier keys still verify.
    pub fn rotated(&self, key: &SigningKey) -> Result<KeyRing, SessionError> {
        let mut ring = self.clone();
        ring.signing_kid = key.kid.clone();
        ring.signing = key.encoding_key()?;
        ring.verifying
            .insert(key.kid.clone(), DecodingKey::from_ed_der(&key.public_key()));
        Ok(ring)
    }

    /// This ring without `kid`; tokens it signed stop verifying. The signing key stays.
    pub fn without(&self, kid: &str) -> Result<KeyRing, SessionError> {
        if kid == self.signing_kid {
            return Err(SessionError::Config(format!(
                "key `{kid}` signs new tokens; rotate to another key before removing it"
            )));
        }
        let mut ring = self.clone();
        ring.verifying.remove(kid);
        Ok(ring)
    }

    /// A key that only verifies (its seed kept elsewhere).
    pub fn with_verifier(&self, kid: &str, public_key: [u8; 32]) -> KeyRing {
        let mut ring = self.clone();
        ring.verifying
            .insert(kid.to_owned(), DecodingKey::from_ed_der(&public_key));
        ring
    }
}

/// A site's session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// `iss`: who signs, e.g. the public base URL of the bourse.
    pub issuer: String,
    /// `aud`: the site the session is for; a token for one site is no good on another.
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
}

impl SessionConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> SessionConfig {
        SessionConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            leeway_secs: 5,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account id.
    pub sub: String,
    pub aud: String,
    pub iss: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// The refresh family (one sign-in); binds CSRF tokens and sign-out.
    pub sid: String,
    pub jti: String,
}

/// A session just started or renewed: hand both tokens to the client.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub account_id: String,
    pub family_id: String,
    pub access_token: String,
    pub access_expires_at: i64,
    pub refresh_token: String,
    pub refresh_expires_at: i64,
}

/// Why a token was refused (or a session call failed).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token is for another site")]
    WrongAudience,
    #[error("token from an unknown issuer")]
    WrongIssuer,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token signed with a refused algorithm")]
    BadAlgorithm,
    #[error("token is malformed or its signature is wrong")]
    Invalid,
    #[error("refresh token unknown")]
    RefreshUnknown,
    #[error("refresh token expired")]
    RefreshExpired,
    #[error("refresh token revoked")]
    RefreshRevoked,
    #[error("refresh token used twice: the session is revoked")]
    RefreshReused,
    #[error("session config: {0}")]
    Config(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

impl From<StoreError> for SessionError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Sql(e) => SessionError::Sql(e),
            other => SessionError::Config(other.to_string()),
        }
    }
}

/// A site's session service.
pub struct Sessions {
    store: Store,
    config: SessionConfig,
    keys: RwLock<Arc<KeyRing>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.config)
            .field("keys", &*self.keys.read())
            .finish()
    }
}

impl Sessions {
    pub fn new(store: Store, config: SessionConfig, keys: KeyRing) -> Sessions {
        Sessions {
            store,
            config,
            keys: RwLock::new(Arc::new(keys)),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Replaces the key ring (rotation, removal); tokens in flight verify against the new one.
    pub fn set_keys(&self, keys: KeyRing) {
        *self.keys.write() = Arc::new(keys);
    }

    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().clone()
    }

    /// Starts a session (a new refresh family) for `account_id` inside the caller's transaction.
    pub async fn start(
        &self,
        conn: &mut Conn,
        account_id: &str,
    ) -> Result<IssuedSession, SessionError> {
        let family_id = secret::new_id("ses");
        self.issue(conn, account_id, &family_id).await
    }

    async fn issue(
        &self,
        conn: &mut Conn,
        account_id: &str,
        family_id: &str,
    ) -> Result<IssuedSession, SessionError> {
        let now = clock::now();
        let refresh_token = secret::new_token();
        let refresh_expires_at = now + self.config.refresh_ttl_secs;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, account_id, audience, issued_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(secret::token_hash(&refresh_token))
        .bind(family_id)
        .bind(account_id)
        .bind(&self.config.audience)
        .bind(now)
        .bind(refresh_expires_at)
        .execute(conn)
        .await?;
        let (access_token, access_expires_at) = self.access_token(account_id, family_id, now)?;
        Ok(IssuedSession {
            account_id: account_id.to_owned(),
            family_id: family_id.to_owned(),
            access_token,
            access_expires_at,
            refresh_token,
            refresh_expires_at,
        })
    }

    /// Signs an access token issued at `now`.
    pub fn access_token(
        &self,
        account_id: &str,
        family_id: &str,
        now: i64,
    ) -> Result<(String, i64), SessionError> {
        let exp = now + self.config.access_ttl_secs;
        let claims = Claims {
            sub: account_id.to_owned(),
            aud: self.config.audience.clone(),
            iss: self.config.issuer.clone(),
            exp,
            nbf: now,
            iat: now,
            sid: family_id.to_owned(),
            jti: secret::new_id("jwt"),
        };
        let keys = self.keys();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &keys.signing)
            .map_err(|e| SessionError::Config(format!("signing: {e}")))?;
        Ok((token, exp))
    }

    /// Checks an access token: signature by a known `kid` with EdDSA only, then `exp`, `nbf`,
    /// `iat`, `aud` and `iss`.
    pub fn verify(&self, token: &str) -> Result<Claims, SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(SessionError::BadAlgorithm);
        }
        let keys = self.keys();
        let kid = header.kid.ok_or(SessionError::UnknownKey)?;
        let key = keys.verifying.get(&kid).ok_or(SessionError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = self.config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss", "sub"]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_issuer(&[&self.config.issuer]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => SessionError::Expired,
                ErrorKind::ImmatureSignature => SessionError::NotYetValid,
                ErrorKind::InvalidAudience => SessionError::WrongAudience,
                ErrorKind::InvalidIssuer => SessionError::WrongIssuer,
                ErrorKind::InvalidAlgorithm => SessionError::BadAlgorithm,
                _ => SessionError::Invalid,
            }
        })?;
        if data.claims.iat > clock::now() + self.config.leeway_secs as i64 {
            return Err(SessionError::IssuedInFuture);
        }
        Ok(data.claims)
    }

    /// Exchanges a refresh token for a new pair, rotating it. A token already used revokes its
    /// whole family and is refused.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedSession, SessionError> {
        let hash = secret::token_hash(refresh_token);
        let now = clock::now();
        let mut tx = self.store.begin().await?;
        let row = sqlx::query(
            "SELECT family_id, account_id, audience, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(SessionError::RefreshUnknown)?;
        let family_id: String = row.try_get("family_id")?;
        let account_id: String = row.try_get("account_id")?;
        let audience: String = row.try_get("audience")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let used_at: Option<i64> = row.try_get("used_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        if audience != self.config.audience {
            return Err(SessionError::RefreshUnknown);
        }
        if revoked_at.is_some() {
            return Err(SessionError::RefreshRevoked);
        }
        if used_at.is_some() {
            revoke_family(&mut tx, &family_id).await?;
            tx.commit().await?;
            tracing::warn!(family = %family_id, "refresh token reused; session revoked");
            return Err(SessionError::RefreshReused);
        }
        if expires_at <= now {
            return Err(SessionError::RefreshExpired);
        }
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL",
        )
        .bind(&hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            // Another request rotated it between our read and write: a concurrent reuse.
            revoke_family(&mut tx, &family_id).await?;
            tx.commit().await?;
            return Err(SessionError::RefreshReused);
        }
        let issued = self.issue(&mut tx, &account_id, &family_id).await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// Signs out: revokes the family of `refresh_token`. Unknown tokens are ignored.
    pub async fn end(&self, refresh_token: &str) -> Result<(), SessionError> {
        let mut tx = self.store.begin().await?;
        let family: Option<String> =
            sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(secret::token_hash(refresh_token))
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(family) = family {
            revoke_family(&mut tx, &family).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether the family behind an access token is still live (a database read; for pages
    /// that must not honour a signed-out session for its remaining minutes).
    pub async fn is_live(&self, claims: &Claims) -> Result<bool, SessionError> {
        let live: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM refresh_tokens WHERE family_id = $1 \
             AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $2",
        )
        .bind(&claims.sid)
        .bind(clock::now())
        .fetch_one(self.store.reader())
        .await?;
        Ok(live > 0)
    }
}

/// Revokes every token of one sign-in.
pub async fn revoke_family(conn: &mut Conn, family_id: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(clock::now())
    .execute(conn)
    .await?
    .rows_affected())
}

/// Revokes every session of an account on every site (password change or reset).
pub async fn revoke_account(conn: &mut Conn, account_id: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE account_id = $1 AND revoked_at IS NULL",
    )
    .bind(account_id)
    .bind(clock::now())
    .execute(conn)
    .await?
    .rows_affected())
}
