//! The mail outbox table: rows written in the caller's transaction, claimed by senders with a
//! lease, marked sent once, retried with backoff, and given up after too many attempts.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock;
use crate::mail::templates::RenderedMail;
use crate::secret;
use crate::store::{Conn, Store};

/// A row claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub site: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// Queues `mail` to `recipient` inside the caller's transaction: if the transaction rolls back,
/// no mail; if it commits, the mail goes out even if the process dies right after.
pub async fn enqueue(
    conn: &mut Conn,
    site: &str,
    recipient: &str,
    mail: &RenderedMail,
) -> Result<String, sqlx::Error> {
    let id = secret::new_id("mail");
    let now = clock::now_ms();
    sqlx::query(
        "INSERT INTO mail_outbox (id, site, recipient, subject, body_text, body_html, \
         created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7)",
    )
    .bind(&id)
    .bind(site)
    .bind(recipient)
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(mail.html.as_deref())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Claims the next row due at `due_ms` for `owner` until `now_ms + lease_ms`, or None when
/// nothing is due. The condition is repeated in the outer `UPDATE`, so of two senders racing
/// for one row only one gets it (PostgreSQL re-checks it against the row the winner just
/// changed).
pub async fn claim(
    store: &Store,
    owner: &str,
    due_ms: i64,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Option<OutboxRow>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE mail_outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL \
                     AND next_attempt_at <= $4 AND (lease_until IS NULL OR lease_until < $3) \
                     ORDER BY next_attempt_at, id LIMIT 1) \
           AND sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $4 \
           AND (lease_until IS NULL OR lease_until < $3) \
         RETURNING id, site, recipient, subject, body_text, body_html, attempts",
    )
    .bind(owner)
    .bind(now_ms + lease_ms)
    .bind(now_ms)
    .bind(due_ms)
    .fetch_optional(store.writer())
    .await?;
    row.as_ref().map(row_from).transpose()
}

/// Marks a claimed row sent; false if `owner` no longer held its lease (another sender took it
/// over after the lease lapsed, so the mail may go twice — see the module docs).
pub async fn mark_sent(store: &Store, id: &str, owner: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE mail_outbox SET sent_at = $3, lease_owner = NULL, lease_until = NULL, \
         last_error = NULL WHERE id = $1 AND lease_owner = $2 AND sent_at IS NULL",
    )
    .bind(id)
    .bind(owner)
    .bind(clock::now_ms())
    .execute(store.writer())
    .await?
    .rows_affected()
        == 1)
}

/// Schedules another attempt at `retry_at_ms`, or gives the row up when `retry_at_ms` is None.
pub async fn mark_failed(
    store: &Store,
    id: &str,
    owner: &str,
    error: &str,
    retry_at_ms: Option<i64>,
) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(500).collect();
    match retry_at_ms {
        Some(at) => {
            sqlx::query(
                "UPDATE mail_outbox SET next_attempt_at = $3, last_error = $4, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .bind(at)
            .bind(error)
            .execute(store.writer())
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE mail_outbox SET failed_at = $3, last_error = $4, lease_owner = NULL, \
                 lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .bind(clock::now_ms())
            .bind(error)
            .execute(store.writer())
            .await?;
        }
    }
    Ok(())
}

/// Rows not yet sent nor given up, per site (the outbox depth).
pub async fn depth(store: &Store, site: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox WHERE site = $1 AND sent_at IS NULL \
         AND failed_at IS NULL",
    )
    .bind(site)
    .fetch_one(store.reader())
    .await
}

fn row_from(row: &AnyRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        id: row.try_get("id")?,
        site: row.try_get("site")?,
        recipient: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        body_text: row.try_get("body_text")?,
        body_html: row.try_get("body_html")?,
        attempts: row.try_get("attempts")?,
    })
}
