//! The payments inbox: exactly-once processing of provider events. The event id is recorded in
//! the same transaction as the event's effect; a redelivered (or concurrently delivered) event
//! finds it there and the caller skips the effect.

use crate::clock;
use crate::store::Conn;

/// Records `event_id` inside the caller's transaction; true when it is new (apply the effect),
/// false when it was already recorded (do nothing). Two concurrent deliveries cannot both get
/// true: the primary key makes the second insert wait for the first transaction and then find
/// the row.
pub async fn record_event_once(
    conn: &mut Conn,
    site: &str,
    event_id: &str,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO payment_events (event_id, site, event_type, received_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(site)
    .bind(event_type)
    .bind(clock::now())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
