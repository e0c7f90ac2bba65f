//! Checkout and payment events, start to finish, for any site: an order with its seats held
//! is created, a Stripe Checkout Session opened for it; then each verified webhook applies its
//! effect — order state, stock, the site's own effect (enrolment, licence…), the receipt mail —
//! in one transaction with the inbox record, so a redelivered event does nothing and a crash
//! loses nothing. Start reading at [`Payments::start_checkout`] here and
//! [`Payments::handle_webhook`] in `events.rs`.

mod events;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::clock;
use crate::mail::{self, MailTemplates};
use crate::metrics::{CommerceMetrics, OrderOutcome, WebhookOutcome};
use crate::orders::{self, NewLine, NewOrder, Order, OrderError, OrderState, Transition};
use crate::stock::{self, StockError};
use crate::store::{Conn, Store, StoreError};
use crate::stripe::{CheckoutLine, CheckoutRequest, CheckoutSession, StripeClient, StripeError};

/// What a site does, inside the event's transaction, when one of its orders changes state.
/// Returning an error rolls everything back and the provider redelivers later.
pub trait OrderEffects: Sync {
    /// The order is paid: grant what was bought (enrol, issue a licence…).
    fn paid(
        &self,
        conn: &mut Conn,
        order: &Order,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// The order is refunded: take it back.
    fn refunded(
        &self,
        conn: &mut Conn,
        order: &Order,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
    /// The checkout expired unpaid.
    fn expired(
        &self,
        _conn: &mut Conn,
        _order: &Order,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        async { Ok(()) }
    }
}

/// A site with no effect of its own beyond orders, stock and receipts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEffects;

impl OrderEffects for NoEffects {
    async fn paid(&self, _conn: &mut Conn, _order: &Order) -> Result<(), sqlx::Error> {
        Ok(())
    }
    async fn refunded(&self, _conn: &mut Conn, _order: &Order) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

/// A site's payment settings.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentsConfig {
    pub site: String,
    pub site_title: String,
    /// The signing secret of the site's webhook endpoint.
    pub webhook_secret: String,
    /// How long a checkout (and the seats it holds) stays open; Stripe allows 30 min to 24 h.
    pub checkout_ttl_secs: i64,
}

impl std::fmt::Debug for PaymentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsConfig")
            .field("site", &self.site)
            .field("site_title", &self.site_title)
            .field("checkout_ttl_secs", &self.checkout_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// One thing bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutItem {
    pub sku: String,
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
    /// The limited stock this item draws on (a cohort's seats), if any.
    pub stock_item: Option<String>,
}

/// A purchase to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartCheckout {
    pub account_id: Option<String>,
    /// Where the receipt goes (guest checkout has no account).
    pub email: Option<String>,
    pub currency: String,
    pub items: Vec<CheckoutItem>,
    pub success_url: String,
    pub cancel_url: String,
}

/// A checkout ready for the buyer: send the browser to `url`.
#[derive(Debug, Clone)]
pub struct StartedCheckout {
    pub order: Order,
    pub session: CheckoutSession,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("sold out: {0}")]
    SoldOut(StockError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Stock(StockError),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error("payments config: {field}: {message}")]
    Config {
        field: &'static str,
        message: &'static str,
    },
    #[error("stripe returned a checkout session without a URL")]
    NoCheckoutUrl,
    #[error(transparent)]
    Template(#[from] mail::templates::TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

impl From<StockError> for PaymentError {
    fn from(e: StockError) -> Self {
        match e {
            StockError::SoldOut { .. } => PaymentError::SoldOut(e),
            StockError::Sql(e) => PaymentError::Sql(e),
            other => PaymentError::Stock(other),
        }
    }
}

/// The answer to give a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// 200 acknowledges; 400 refuses for good; 500 asks the provider to deliver again.
    pub status: u16,
    pub outcome: WebhookOutcome,
    pub message: String,
}

/// What an event did: its outcome, a message for the reply, and the order change to count
/// once committed.
type Effect = (WebhookOutcome, String, Option<(OrderOutcome, Order)>);

/// A site's payment service.
pub struct Payments {
    store: Store,
    config: PaymentsConfig,
    stripe: StripeClient,
    templates: Arc<MailTemplates>,
    metrics: Option<CommerceMetrics>,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments")
            .field("site", &self.config.site)
            .finish_non_exhaustive()
    }
}

impl Payments {
    pub fn new(
        store: Store,
        config: PaymentsConfig,
        stripe: StripeClient,
        templates: Arc<MailTemplates>,
        metrics: Option<CommerceMetrics>,
    ) -> Result<Payments, PaymentError> {
        if !(30 * 60..=24 * 3600).contains(&config.checkout_ttl_secs) {
            return Err(PaymentError::Config {
                field: "checkout_ttl_secs",
                message: "must be between 1800 (30 minutes) and 86400 (24 hours), as Stripe allows",
            });
        }
        if config.webhook_secret.is_empty() {
            return Err(PaymentError::Config {
                field: "webhook_secret",
                message: "must not be empty",
            });
        }
        Ok(Payments {
            store,
            config,
            stripe,
            templates,
            metrics,
        })
    }

    /// Creates the order, holds its stock until the checkout expires, and opens a Checkout
    /// Session for it. Sold out is refused before anything is asked of Stripe.
    pub async fn start_checkout(
        &self,
        request: &StartCheckout,
    ) -> Result<StartedCheckout, PaymentError> {
        let expires_at = clock::now() + self.config.checkout_ttl_secs;
        let new_order = NewOrder {
            site: self.config.site.clone(),
            account_id: request.account_id.clone(),
            email: request.email.clone(),
            currency: request.currency.clone(),
            lines: request
                .items
                .iter()
                .map(|item| NewLine {
                    sku: item.sku.clone(),
                    description: item.description.clone(),
                    quantity: item.quantity,
                    unit_minor: item.unit_minor,
                })
                .collect(),
        };
        let mut tx = self.store.begin().await?;
        let order = orders::create(&mut tx, &new_order).await?;
        for item in &request.items {
            if let Some(stock_item) = &item.stock_item {
                stock::reserve(
                    &mut tx,
                    &self.config.site,
                    stock_item,
                    item.quantity,
                    expires_at,
                    Some(&order.id),
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.count_order(OrderOutcome::Created, &order);

        let checkout = CheckoutRequest {
            line_items: request
                .items
                .iter()
                .map(|item| CheckoutLine {
                    name: item.description.clone(),
                    unit_amount: item.unit_minor,
                    currency: request.currency.clone(),
                    quantity: item.quantity,
                })
                .collect(),
            success_url: request.success_url.clone(),
            cancel_url: request.cancel_url.clone(),
            client_reference_id: Some(order.id.clone()),
            metadata: BTreeMap::from([
                ("order_id".to_owned(), order.id.clone()),
                ("site".to_owned(), self.config.site.clone()),
            ]),
            expires_at: Some(expires_at),
            customer_email: request.email.clone(),
        };
        // The order id is the idempotency key: a retry of this call reuses the session.
        let session = match self
            .stripe
            .create_checkout_session(&checkout, &order.id)
            .await
        {
            Ok(session) => session,
            Err(e) => {
                self.abandon(&order.id).await?;
                return Err(e.into());
            }
        };
        let mut tx = self.store.begin().await?;
        orders::set_checkout(&mut tx, &order.id, &session.id).await?;
        tx.commit().await?;
        let url = session.url.clone().ok_or(PaymentError::NoCheckoutUrl)?;
        let order = orders::get(&self.store, &order.id).await?;
        Ok(StartedCheckout {
            order,
            session,
            url,
        })
    }

    /// Gives up an order that never reached the buyer: expired, its holds released.
    async fn abandon(&self, order_id: &str) -> Result<(), PaymentError> {
        let mut tx = self.store.begin().await?;
        if orders::transition(&mut tx, order_id, OrderState::Expired, None).await?
            == Transition::Applied
        {
            for hold in stock::holds_of_order(&mut tx, order_id).await? {
                stock::release(&mut tx, &hold.id).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases lapsed holds and expires orders whose checkout never completed (a crash before
    /// the session was created, or an expiry event that never came). Run every minute or so.
    pub async fn sweep(&self) -> Result<u64, PaymentError> {
        let now = clock::now();
        let released = stock::release_expired(&self.store, &self.config.site, now).await?;
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE site = $1 AND state = 'pending' AND created_at < $2 \
             ORDER BY created_at LIMIT 500",
        )
        .bind(&self.config.site)
        .bind(now - self.config.checkout_ttl_secs - 3600)
        .fetch_all(self.store.reader())
        .await?;
        for id in stale {
            self.abandon(&id).await?;
        }
        Ok(released)
    }

    /// Refreshes the gauges (seats held and sold, outbox depth) from the database.
    pub async fn refresh_gauges(&self) -> Result<(), PaymentError> {
        if let Some(m) = &self.metrics {
            let site = m.site(&self.config.site);
            let (held, sold) = stock::totals(&self.store, &self.config.site).await?;
            site.seats_held.set(held);
            site.seats_sold.set(sold);
            site.mail_outbox_depth
                .set(mail::outbox::depth(&self.store, &self.config.site).await?);
        }
        Ok(())
    }

    fn count_order(&self, outcome: OrderOutcome, order: &Order) {
        if let Some(m) = &self.metrics {
            let site = m.site(&self.config.site);
            site.order(outcome);
            match outcome {
                OrderOutcome::Paid => site.revenue(&order.currency, order.total_minor),
                OrderOutcome::Refunded => site.refund(&order.currency, order.total_minor),
                OrderOutcome::Created | OrderOutcome::Expired => {}
            }
        }
    }
}

/// An amount for people: `49.00 USD`.
pub fn money(minor: i64, currency: &str) -> String {
    let exponent = crate::metrics::minor_unit_exponent(currency);
    let code = currency.to_uppercase();
    if exponent == 0 {
        return format!("{minor} {code}");
    }
    let unit = 10_i64.pow(exponent);
    format!(
        "{}{}.{:0width$} {code}",
        if minor < 0 { "-" } else { "" },
        (minor / unit).abs(),
        (minor % unit).abs(),
        width = exponent as usize
    )
}
