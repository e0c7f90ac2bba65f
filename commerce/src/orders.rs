//! Orders of every site: line items priced in integer minor units of one currency, and the
//! states pending → paid → refunded, or pending → expired. Every transition is one conditional
//! `UPDATE` from the expected state, so repeating it (a redelivered webhook, two nodes racing)
//! changes nothing and says so.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock;
use crate::secret;
use crate::store::{Conn, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Pending,
    Paid,
    Refunded,
    Expired,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Paid => "paid",
            OrderState::Refunded => "refunded",
            OrderState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OrderState::Pending,
            "paid" => OrderState::Paid,
            "refunded" => OrderState::Refunded,
            "expired" => OrderState::Expired,
            _ => return None,
        })
    }

    /// The one state a transition to `self` starts from.
    fn predecessor(self) -> Option<OrderState> {
        match self {
            OrderState::Pending => None,
            OrderState::Paid | OrderState::Expired => Some(OrderState::Pending),
            OrderState::Refunded => Some(OrderState::Paid),
        }
    }

    /// The column stamped when the state is entered.
    fn stamp_column(self) -> &'static str {
        match self {
            OrderState::Pending => "created_at",
            OrderState::Paid => "paid_at",
            OrderState::Refunded => "refunded_at",
            OrderState::Expired => "expired_at",
        }
    }
}

/// One line of a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub sku: String,
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
}

/// An order to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub site: String,
    pub account_id: Option<String>,
    /// The buyer's address for guest checkout and receipts.
    pub email: Option<String>,
    /// ISO 4217 code, lower case (`usd`, `eur`), as Stripe writes it.
    pub currency: String,
    pub lines: Vec<NewLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub site: String,
    pub account_id: Option<String>,
    pub email: Option<String>,
    pub state: OrderState,
    pub currency: String,
    pub total_minor: i64,
    pub checkout_id: Option<String>,
    pub payment_ref: Option<String>,
    pub created_at: i64,
    pub paid_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line_no: i64,
    pub sku: String,
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The order moved to the requested state.
    Applied,
    /// It was already there: nothing changed.
    Already,
    /// It is in a state the requested one cannot follow (e.g. refunding a pending order).
    Refused { current: OrderState },
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order: {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("no order `{0}`")]
    Unknown(String),
    #[error("order data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> OrderError {
    OrderError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl NewOrder {
    /// Checks the order and returns its total, naming the first field that breaks a rule.
    pub fn validate(&self) -> Result<i64, OrderError> {
        if self.site.is_empty() {
            return Err(invalid("site", "must not be empty"));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(invalid(
                "currency",
                "must be a three-letter ISO 4217 code in lower case",
            ));
        }
        if self.lines.is_empty() {
            return Err(invalid("lines", "an order needs at least one line"));
        }
        let mut total: i64 = 0;
        for (i, line) in self.lines.iter().enumerate() {
            if line.sku.is_empty() {
                return Err(invalid(format!("lines[{i}].sku"), "must not be empty"));
            }
            if line.quantity < 1 {
                return Err(invalid(
                    format!("lines[{i}].quantity"),
                    "must be at least 1",
                ));
            }
            if line.unit_minor < 0 {
                return Err(invalid(
                    format!("lines[{i}].unit_minor"),
                    "must not be negative",
                ));
            }
            total = line
                .quantity
                .checked_mul(line.unit_minor)
                .and_then(|amount| total.checked_add(amount))
                .ok_or_else(|| invalid(format!("lines[{i}]"), "amount overflows"))?;
        }
        Ok(total)
    }
}

/// Creates a pending order with its lines.
pub async fn create(conn: &mut Conn, new: &NewOrder) -> Result<Order, OrderError> {
    let total = new.validate()?;
    let id = secret::new_id("ord");
    let now = clock::now();
    sqlx::query(
        "INSERT INTO orders (id, site, account_id, email, state, currency, total_minor, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(&new.site)
    .bind(new.account_id.as_deref())
    .bind(new.email.as_deref())
    .bind(&new.currency)
    .bind(total)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for (i, line) in new.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, sku, description, quantity, unit_minor) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(i as i64 + 1)
        .bind(&line.sku)
        .bind(&line.description)
        .bind(line.quantity)
        .bind(line.unit_minor)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Order {
        id,
        site: new.site.clone(),
        account_id: new.account_id.clone(),
        email: new.email.clone(),
        state: OrderState::Pending,
        currency: new.currency.clone(),
        total_minor: total,
        checkout_id: None,
        payment_ref: None,
        created_at: now,
        paid_at: None,
    })
}

/// Links the order to its payment provider's checkout session.
pub async fn set_checkout(
    conn: &mut Conn,
    order_id: &str,
    checkout_id: &str,
) -> Result<(), OrderError> {
    let updated = sqlx::query("UPDATE orders SET checkout_id = $2, updated_at = $3 WHERE id = $1")
        .bind(order_id)
        .bind(checkout_id)
        .bind(clock::now())
        .execute(conn)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(OrderError::Unknown(order_id.to_owned()));
    }
    Ok(())
}

/// Moves an order to `to` from the one state that may precede it; see [`Transition`].
/// `payment_ref` (a payment intent or charge id) is kept when given.
pub async fn transition(
    conn: &mut Conn,
    order_id: &str,
    to: OrderState,
    payment_ref: Option<&str>,
) -> Result<Transition, OrderError> {
    let Some(from) = to.predecessor() else {
        return Err(invalid("state", "an order cannot go back to pending"));
    };
    let sql = format!(
        "UPDATE orders SET state = $3, updated_at = $4, {stamp} = $4, \
         payment_ref = COALESCE($5, payment_ref) WHERE id = $1 AND state = $2",
        stamp = to.stamp_column()
    );
    let moved = sqlx::query(&sql)
        .bind(order_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(clock::now())
        .bind(payment_ref)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if moved == 1 {
        return Ok(Transition::Applied);
    }
    let current = get_on(conn, order_id).await?.state;
    Ok(if current == to {
        Transition::Already
    } else {
        Transition::Refused { current }
    })
}

/// An order, read inside a transaction.
pub async fn get_on(conn: &mut Conn, order_id: &str) -> Result<Order, OrderError> {
    let row = sqlx::query(&format!("{SELECT_ORDER} WHERE id = $1"))
        .bind(order_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| OrderError::Unknown(order_id.to_owned()))?;
    order_from_row(&row)
}

/// An order by its checkout session id, read inside a transaction.
pub async fn find_by_checkout(
    conn: &mut Conn,
    checkout_id: &str,
) -> Result<Option<Order>, OrderError> {
    sqlx::query(&format!("{SELECT_ORDER} WHERE checkout_id = $1"))
        .bind(checkout_id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(order_from_row)
        .transpose()
}

/// An order, read outside any transaction.
pub async fn get(store: &Store, order_id: &str) -> Result<Order, OrderError> {
    let mut conn = store.reader().acquire().await?;
    get_on(&mut conn, order_id).await
}

/// The lines of an order, in order.
pub async fn lines(store: &Store, order_id: &str) -> Result<Vec<Line>, OrderError> {
    let rows = sqlx::query(
        "SELECT line_no, sku, description, quantity, unit_minor FROM order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Line {
                line_no: row.try_get("line_no")?,
                sku: row.try_get("sku")?,
                description: row.try_get("description")?,
                quantity: row.try_get("quantity")?,
                unit_minor: row.try_get("unit_minor")?,
            })
        })
        .collect()
}

/// The newest orders of a site, for admin pages.
pub async fn list(
    store: &Store,
    site: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<Order>, OrderError> {
    sqlx::query(&format!(
        "{SELECT_ORDER} WHERE site = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    ))
    .bind(site)
    .bind(limit)
    .bind(offset)
    .fetch_all(store.reader())
    .await?
    .iter()
    .map(order_from_row)
    .collect()
}

/// Revenue of a site: paid (and not refunded) totals per currency, in minor units.
pub async fn revenue(store: &Store, site: &str) -> Result<Vec<(String, i64)>, OrderError> {
    let rows = sqlx::query(
        "SELECT currency, CAST(SUM(total_minor) AS BIGINT) AS total FROM orders \
         WHERE site = $1 AND state = 'paid' GROUP BY currency ORDER BY currency",
    )
    .bind(site)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("currency")?, row.try_get("total")?)))
        .collect()
}

const SELECT_ORDER: &str = "SELECT id, site, account_id, email, state, currency, total_minor, \
     checkout_id, payment_ref, created_at, paid_at FROM orders";

fn order_from_row(row: &AnyRow) -> Result<Order, OrderError> {
    let state: String = row.try_get("state")?;
    Ok(Order {
        id: row.try_get("id")?,
        site: row.try_get("site")?,
        account_id: row.try_get("account_id")?,
        email: row.try_get("email")?,
        state: OrderState::parse(&state)
            .ok_or_else(|| OrderError::Corrupt(format!("order state `{state}`")))?,
        currency: row.try_get("currency")?,
        total_minor: row.try_get("total_minor")?,
        checkout_id: row.try_get("checkout_id")?,
        payment_ref: row.try_get("payment_ref")?,
        created_at: row.try_get("created_at")?,
        paid_at: row.try_get("paid_at")?,
    })
}
