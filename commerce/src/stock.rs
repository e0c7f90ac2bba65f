//! Limited stock — course seats, units of a product, licence slots — that can never be oversold.
//!
//! A reservation is one conditional `UPDATE … SET held = held + q WHERE capacity - held - sold >= q`:
//! the database checks and increments in one step, so no interleaving of processes, nodes or
//! pools can take more than the capacity (PostgreSQL re-evaluates the condition on the newest row
//! version after a concurrent update; SQLite runs writers one at a time). A hold carries a
//! deadline; it is confirmed into a sale when payment arrives, or released when its checkout
//! expires.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock;
use crate::secret;
use crate::store::{Conn, Store, StoreError};

/// An item's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub site: String,
    pub item: String,
    pub capacity: i64,
    pub held: i64,
    pub sold: i64,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.capacity - self.held - self.sold
    }
}

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Counted in `held`, until `hold_until`.
    Held,
    /// Paid: counted in `sold`.
    Confirmed,
    /// Expired or abandoned: counts nowhere.
    Released,
    /// Sold, then refunded: counts nowhere.
    Returned,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Confirmed => "confirmed",
            HoldState::Released => "released",
            HoldState::Returned => "returned",
        }
    }

    fn parse(s: &str) -> Result<Self, StockError> {
        Ok(match s {
            "held" => HoldState::Held,
            "confirmed" => HoldState::Confirmed,
            "released" => HoldState::Released,
            "returned" => HoldState::Returned,
            other => return Err(StockError::Corrupt(format!("hold state `{other}`"))),
        })
    }
}

/// A quantity of one item set aside for one buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub site: String,
    pub item: String,
    pub quantity: i64,
    pub state: HoldState,
    pub hold_until: i64,
    pub order_id: Option<String>,
}

/// What confirming a hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The held quantity is now sold.
    Sold,
    /// It was already sold (a repeated confirmation).
    AlreadySold,
    /// The hold had lapsed but stock was still free, so it was sold anyway.
    Reacquired,
    /// The hold had lapsed and the stock is gone: the buyer paid for nothing and must be
    /// refunded.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("`{item}` is sold out: {requested} requested, {available} available")]
    SoldOut {
        item: String,
        requested: i64,
        available: i64,
    },
    #[error("no stock item `{item}` on site `{site}`")]
    UnknownItem { site: String, item: String },
    #[error("no hold `{0}`")]
    UnknownHold(String),
    #[error("quantity must be at least 1, got {0}")]
    BadQuantity(i64),
    #[error("capacity {capacity} is below the {committed} seats already held or sold")]
    CapacityBelowCommitted { capacity: i64, committed: i64 },
    #[error("stock data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Creates an item with `capacity`, or changes its capacity; a capacity below what is already
/// held or sold is refused.
pub async fn set_capacity(
    conn: &mut Conn,
    site: &str,
    item: &str,
    capacity: i64,
) -> Result<(), StockError> {
    if capacity < 0 {
        return Err(StockError::BadQuantity(capacity));
    }
    sqlx::query(
        "INSERT INTO stock_items (site, item, capacity, held, sold) VALUES ($1, $2, $3, 0, 0) \
         ON CONFLICT (site, item) DO NOTHING",
    )
    .bind(site)
    .bind(item)
    .bind(capacity)
    .execute(&mut *conn)
    .await?;
    let changed = sqlx::query(
        "UPDATE stock_items SET capacity = $3 WHERE site = $1 AND item = $2 AND held + sold <= $3",
    )
    .bind(site)
    .bind(item)
    .bind(capacity)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        let level = level_on(conn, site, item).await?;
        return Err(StockError::CapacityBelowCommitted {
            capacity,
            committed: level.held + level.sold,
        });
    }
    Ok(())
}

/// Sets `quantity` of `item` aside until `hold_until` (Unix seconds), or refuses with
/// [`StockError::SoldOut`]. Never takes more than the capacity, whatever runs concurrently.
pub async fn reserve(
    conn: &mut Conn,
    site: &str,
    item: &str,
    quantity: i64,
    hold_until: i64,
    order_id: Option<&str>,
) -> Result<Hold, StockError> {
    if quantity < 1 {
        return Err(StockError::BadQuantity(quantity));
    }
    let taken = sqlx::query(
        "UPDATE stock_items SET held = held + $3 \
         WHERE site = $1 AND item = $2 AND capacity - held - sold >= $3",
    )
    .bind(site)
    .bind(item)
    .bind(quantity)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if taken == 0 {
        let level = level_on(conn, site, item).await?;
        return Err(StockError::SoldOut {
            item: item.to_owned(),
            requested: quantity,
            available: level.available(),
        });
    }
    let hold = Hold {
        id: secret::new_id("hold"),
        site: site.to_owned(),
        item: item.to_owned(),
        quantity,
        state: HoldState::Held,
        hold_until,
        order_id: order_id.map(str::to_owned),
    };
    let now = clock::now();
    sqlx::query(
        "INSERT INTO stock_holds (id, site, item, quantity, state, hold_until, order_id, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, 'held', $5, $6, $7, $7)",
    )
    .bind(&hold.id)
    .bind(site)
    .bind(item)
    .bind(quantity)
    .bind(hold_until)
    .bind(order_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(hold)
}

/// Turns a hold into a sale (payment arrived). Idempotent.
pub async fn confirm(conn: &mut Conn, hold_id: &str) -> Result<Confirmed, StockError> {
    let hold = hold_on(conn, hold_id).await?;
    let now = clock::now();
    match hold.state {
        HoldState::Confirmed => Ok(Confirmed::AlreadySold),
        HoldState::Returned => Ok(Confirmed::AlreadySold),
        HoldState::Held => {
            if move_state(conn, hold_id, HoldState::Held, HoldState::Confirmed, now).await? {
                sqlx::query(
                    "UPDATE stock_items SET held = held - $3, sold = sold + $3 \
                     WHERE site = $1 AND item = $2",
                )
                .bind(&hold.site)
                .bind(&hold.item)
                .bind(hold.quantity)
                .execute(conn)
                .await?;
                Ok(Confirmed::Sold)
            } else {
                Ok(Confirmed::AlreadySold)
            }
        }
        HoldState::Released => {
            let taken = sqlx::query(
                "UPDATE stock_items SET sold = sold + $3 \
                 WHERE site = $1 AND item = $2 AND capacity - held - sold >= $3",
            )
            .bind(&hold.site)
            .bind(&hold.item)
            .bind(hold.quantity)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if taken == 0 {
                return Ok(Confirmed::Lost);
            }
            move_state(
                conn,
                hold_id,
                HoldState::Released,
                HoldState::Confirmed,
                now,
            )
            .await?;
            Ok(Confirmed::Reacquired)
        }
    }
}

/// Gives a held quantity back (checkout expired or abandoned). True when it was still held.
pub async fn release(conn: &mut Conn, hold_id: &str) -> Result<bool, StockError> {
    let hold = hold_on(conn, hold_id).await?;
    if !move_state(
        conn,
        hold_id,
        HoldState::Held,
        HoldState::Released,
        clock::now(),
    )
    .await?
    {
        return Ok(false);
    }
    sqlx::query("UPDATE stock_items SET held = held - $3 WHERE site = $1 AND item = $2")
        .bind(&hold.site)
        .bind(&hold.item)
        .bind(hold.quantity)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Gives a sold quantity back (refund). True when it was sold.
pub async fn return_sold(conn: &mut Conn, hold_id: &str) -> Result<bool, StockError> {
    let hold = hold_on(conn, hold_id).await?;
    if !move_state(
        conn,
        hold_id,
        HoldState::Confirmed,
        HoldState::Returned,
        clock::now(),
    )
    .await?
    {
        return Ok(false);
    }
    sqlx::query("UPDATE stock_items SET sold = sold - $3 WHERE site = $1 AND item = $2")
        .bind(&hold.site)
        .bind(&hold.item)
        .bind(hold.quantity)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Releases every hold of `site` whose deadline is before `now`, each in its own transaction;
/// returns how many were released. Safe to run on several nodes at once.
pub async fn release_expired(store: &Store, site: &str, now: i64) -> Result<u64, StockError> {
    let ids: Vec<String> = sqlx::query(
        "SELECT id FROM stock_holds WHERE site = $1 AND state = 'held' AND hold_until < $2 \
         ORDER BY hold_until LIMIT 500",
    )
    .bind(site)
    .bind(now)
    .fetch_all(store.reader())
    .await?
    .iter()
    .map(|row| row.try_get("id"))
    .collect::<Result<_, _>>()?;
    let mut released = 0;
    for id in ids {
        let mut tx = store.begin().await.map_err(store_error)?;
        if release(&mut tx, &id).await? {
            released += 1;
        }
        tx.commit().await?;
    }
    Ok(released)
}

/// The holds of an order, oldest first.
pub async fn holds_of_order(conn: &mut Conn, order_id: &str) -> Result<Vec<Hold>, StockError> {
    sqlx::query(
        "SELECT id, site, item, quantity, state, hold_until, order_id FROM stock_holds \
         WHERE order_id = $1 ORDER BY created_at, id",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(hold_from_row)
    .collect()
}

/// An item's counts, read outside any transaction.
pub async fn level(store: &Store, site: &str, item: &str) -> Result<StockLevel, StockError> {
    let mut conn = store.reader().acquire().await?;
    level_on(&mut conn, site, item).await
}

/// Held and sold totals of every item of `site`.
pub async fn totals(store: &Store, site: &str) -> Result<(i64, i64), StockError> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) AS held, \
         CAST(COALESCE(SUM(sold), 0) AS BIGINT) AS sold FROM stock_items WHERE site = $1",
    )
    .bind(site)
    .fetch_one(store.reader())
    .await?;
    Ok((row.try_get("held")?, row.try_get("sold")?))
}

async fn level_on(conn: &mut Conn, site: &str, item: &str) -> Result<StockLevel, StockError> {
    let row =
        sqlx::query("SELECT capacity, held, sold FROM stock_items WHERE site = $1 AND item = $2")
            .bind(site)
            .bind(item)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| StockError::UnknownItem {
                site: site.to_owned(),
                item: item.to_owned(),
            })?;
    Ok(StockLevel {
        site: site.to_owned(),
        item: item.to_owned(),
        capacity: row.try_get("capacity")?,
        held: row.try_get("held")?,
        sold: row.try_get("sold")?,
    })
}

async fn hold_on(conn: &mut Conn, hold_id: &str) -> Result<Hold, StockError> {
    let row = sqlx::query(
        "SELECT id, site, item, quantity, state, hold_until, order_id FROM stock_holds \
         WHERE id = $1",
    )
    .bind(hold_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| StockError::UnknownHold(hold_id.to_owned()))?;
    hold_from_row(&row)
}

async fn move_state(
    conn: &mut Conn,
    hold_id: &str,
    from: HoldState,
    to: HoldState,
    now: i64,
) -> Result<bool, StockError> {
    let moved = sqlx::query(
        "UPDATE stock_holds SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2",
    )
    .bind(hold_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

fn hold_from_row(row: &AnyRow) -> Result<Hold, StockError> {
    let state: String = row.try_get("state")?;
    Ok(Hold {
        id: row.try_get("id")?,
        site: row.try_get("site")?,
        item: row.try_get("item")?,
        quantity: row.try_get("quantity")?,
        state: HoldState::parse(&state)?,
        hold_until: row.try_get("hold_until")?,
        order_id: row.try_get("order_id")?,
    })
}

fn store_error(err: StoreError) -> StockError {
    match err {
        StoreError::Sql(e) => StockError::Sql(e),
        other => StockError::Corrupt(other.to_string()),
    }
}
