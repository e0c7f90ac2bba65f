//! API keys for paid APIs: shown once when issued, stored as SHA-256 only, found by a public
//! prefix. A key reads `bsk_<prefix>_<secret>`; the prefix identifies it in lists and logs,
//! the secret never leaves the response that issued it.

use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;

use crate::clock;
use crate::secret;
use crate::store::{Conn, Store};

/// A key just issued: show `key` to its owner once; it cannot be recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedKey {
    pub id: String,
    pub prefix: String,
    pub key: String,
}

/// A key as stored (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub site: String,
    pub account_id: Option<String>,
    pub tenant_id: Option<String>,
    pub prefix: String,
    pub label: String,
    pub plan: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Who holds a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOwner {
    pub account_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("API key malformed: expected bsk_<prefix>_<secret>")]
    Malformed,
    #[error("API key unknown")]
    Unknown,
    #[error("API key revoked")]
    Revoked,
    #[error("API key label: must be 1-100 characters")]
    BadLabel,
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Issues a key for `owner` on `site`.
pub async fn issue(
    conn: &mut Conn,
    site: &str,
    owner: &KeyOwner,
    label: &str,
    plan: Option<&str>,
) -> Result<IssuedKey, ApiKeyError> {
    if label.is_empty() || label.chars().count() > 100 {
        return Err(ApiKeyError::BadLabel);
    }
    let id = secret::new_id("key");
    let prefix = secret::random_hex(6);
    let secret_part = secret::new_token();
    let key = format!("bsk_{prefix}_{secret_part}");
    sqlx::query(
        "INSERT INTO api_keys (id, site, account_id, tenant_id, prefix, key_hash, label, plan, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(site)
    .bind(owner.account_id.as_deref())
    .bind(owner.tenant_id.as_deref())
    .bind(&prefix)
    .bind(secret::token_hash(&key))
    .bind(label)
    .bind(plan)
    .bind(clock::now())
    .execute(conn)
    .await?;
    Ok(IssuedKey { id, prefix, key })
}

/// The key `presented` belongs to, if it is genuine and not revoked.
pub async fn verify(store: &Store, presented: &str) -> Result<ApiKey, ApiKeyError> {
    let prefix = presented
        .strip_prefix("bsk_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(prefix, _)| prefix)
        .filter(|p| p.len() == 12 && p.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or(ApiKeyError::Malformed)?;
    let row = sqlx::query(&format!(
        "{SELECT_KEY}, key_hash FROM api_keys WHERE prefix = $1"
    ))
    .bind(prefix)
    .fetch_optional(store.reader())
    .await?
    .ok_or(ApiKeyError::Unknown)?;
    let stored: String = row.try_get("key_hash")?;
    if !bool::from(
        stored
            .as_bytes()
            .ct_eq(secret::token_hash(presented).as_bytes()),
    ) {
        return Err(ApiKeyError::Unknown);
    }
    let key = key_from(&row)?;
    if key.revoked_at.is_some() {
        return Err(ApiKeyError::Revoked);
    }
    Ok(key)
}

/// Revokes a key; true if it was live.
pub async fn revoke(conn: &mut Conn, id: &str) -> Result<bool, ApiKeyError> {
    Ok(
        sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(clock::now())
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}

/// The keys of an account on a site, newest first.
pub async fn list(store: &Store, site: &str, account_id: &str) -> Result<Vec<ApiKey>, ApiKeyError> {
    sqlx::query(&format!(
        "{SELECT_KEY} FROM api_keys WHERE site = $1 AND account_id = $2 \
         ORDER BY created_at DESC, id"
    ))
    .bind(site)
    .bind(account_id)
    .fetch_all(store.reader())
    .await?
    .iter()
    .map(key_from)
    .collect()
}

const SELECT_KEY: &str =
    "SELECT id, site, account_id, tenant_id, prefix, label, plan, created_at, revoked_at";

fn key_from(row: &AnyRow) -> Result<ApiKey, ApiKeyError> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        site: row.try_get("site")?,
        account_id: row.try_get("account_id")?,
        tenant_id: row.try_get("tenant_id")?,
        prefix: row.try_get("prefix")?,
        label: row.try_get("label")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}
