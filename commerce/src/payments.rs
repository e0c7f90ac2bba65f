//! Checkout and payment events, start to finish, for any site: an order with its seats held
//! is created, a Stripe Checkout Session opened for it; then each verified webhook applies its
//! effect — order state, stock, the site's own effect (enrolment, licence…), the receipt mail —
//! in one transaction with the inbox record, so a redelivered event does nothing and a crash
//! loses nothing. Start reading at [`Payments::start_checkout`] and [`Payments::handle_webhook`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use crate::clock;
use crate::inbox;
use crate::mail::{self, MailTemplates};
use crate::metrics::{CommerceMetrics, OrderOutcome, WebhookOutcome};
use crate::orders::{self, NewLine, NewOrder, Order, OrderError, OrderState, Transition};
use crate::stock::{self, Confirmed, StockError};
use crate::store::{Conn, Store, StoreError};
use crate::stripe::webhook::{self, EventData, WebhookError};
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

    /// Verifies and applies one webhook delivery; see [`WebhookReply`] for what to answer.
    pub async fn handle_webhook<E: OrderEffects>(
        &self,
        payload: &[u8],
        signature: Option<&str>,
        effects: &E,
    ) -> WebhookReply {
        let reply = match webhook::construct_event(
            payload,
            signature,
            &self.config.webhook_secret,
            clock::now(),
        ) {
            Err(e @ WebhookError::BadPayload(_)) => WebhookReply {
                status: 400,
                outcome: WebhookOutcome::BadPayload,
                message: e.to_string(),
            },
            Err(e) => WebhookReply {
                status: 400,
                outcome: WebhookOutcome::BadSignature,
                message: e.to_string(),
            },
            Ok(event) => match self
                .apply(&event.id, &event.kind, &event.data, effects)
                .await
            {
                Ok((outcome, message)) => WebhookReply {
                    status: 200,
                    outcome,
                    message,
                },
                Err(e) => {
                    tracing::error!(event = %event.id, error = %e, "webhook not applied");
                    WebhookReply {
                        status: 500,
                        outcome: WebhookOutcome::Error,
                        message: "not applied; deliver again".to_owned(),
                    }
                }
            },
        };
        if let Some(m) = &self.metrics {
            m.site(&self.config.site).webhook(reply.outcome);
        }
        reply
    }

    /// The effect of one verified event, in one transaction with its inbox record.
    async fn apply<E: OrderEffects>(
        &self,
        event_id: &str,
        kind: &str,
        data: &EventData,
        effects: &E,
    ) -> Result<(WebhookOutcome, String), PaymentError> {
        let mut tx = self.store.begin().await?;
        if !inbox::record_event_once(&mut tx, &self.config.site, event_id, kind).await? {
            tx.rollback().await?;
            return Ok((WebhookOutcome::Duplicate, "already processed".into()));
        }
        let mut refund = None;
        let (outcome, message, counted) = match data {
            EventData::CheckoutSessionCompleted(session) => {
                let (effect, lost) = self.completed(&mut tx, session, effects).await?;
                refund = lost;
                effect
            }
            EventData::CheckoutSessionExpired(session) => {
                self.expired(&mut tx, session, effects).await?
            }
            EventData::ChargeRefunded(charge) => {
                let order = match &charge.payment_intent {
                    Some(intent) => find_by_payment_ref(&mut tx, intent).await?,
                    None => None,
                };
                let order = match (order, charge.metadata.get("order_id")) {
                    (Some(order), _) => Some(order),
                    (None, Some(id)) => orders::get_on(&mut tx, id).await.ok(),
                    (None, None) => None,
                };
                match order {
                    Some(order) if charge.refunded => {
                        self.refunded(&mut tx, order, effects).await?
                    }
                    Some(_) => (
                        WebhookOutcome::Ignored,
                        "partial refund: access kept".into(),
                        None,
                    ),
                    None => (
                        WebhookOutcome::Ignored,
                        "refund of a charge we do not know".into(),
                        None,
                    ),
                }
            }
            EventData::Other(_) => (WebhookOutcome::Ignored, format!("{kind} not handled"), None),
        };
        tx.commit().await?;
        if let Some((outcome, order)) = counted {
            self.count_order(outcome, &order);
        }
        if let Some((order_id, payment_intent)) = refund {
            // Keyed by the order: a redelivered event or a second node asks for one refund.
            let key = format!("{order_id}-sold-out-refund");
            if let Err(e) = self.stripe.create_refund(&payment_intent, &key).await {
                tracing::error!(order = %order_id, error = %e,
                    "paid after its stock was gone and the refund failed: refund it by hand");
            }
        }
        Ok((outcome, message))
    }

    /// A paid checkout: the order is paid, its holds sold, the site's effect and the receipt
    /// applied. If a hold had lapsed and its stock was sold meanwhile, nothing is granted and
    /// the order id and payment are returned to be refunded once the transaction commits.
    async fn completed<E: OrderEffects>(
        &self,
        tx: &mut Conn,
        session: &CheckoutSession,
        effects: &E,
    ) -> Result<(Effect, Option<(String, String)>), PaymentError> {
        let effect = |outcome, message: &str| Ok(((outcome, message.to_owned(), None), None));
        let Some(order) = self.order_of_session(tx, session).await? else {
            return effect(
                WebhookOutcome::Ignored,
                "checkout of an order we do not know",
            );
        };
        if session.payment_status.as_deref() != Some("paid") {
            // Delayed payment methods complete unpaid and pay later; nothing to grant yet.
            return effect(WebhookOutcome::Ignored, "completed but not paid yet");
        }
        if session.amount_total != Some(order.total_minor)
            || session.currency.as_deref() != Some(order.currency.as_str())
        {
            tracing::error!(order = %order.id, session = %session.id,
                "paid amount differs from the order; not granted");
            return effect(WebhookOutcome::Ignored, "amount differs from the order");
        }
        match orders::transition(
            tx,
            &order.id,
            OrderState::Paid,
            session.payment_intent.as_deref(),
        )
        .await?
        {
            Transition::Applied => {}
            Transition::Already => {
                return effect(WebhookOutcome::Duplicate, "order already paid");
            }
            Transition::Refused { current } => {
                return effect(
                    WebhookOutcome::Ignored,
                    &format!("order is {}", current.as_str()),
                );
            }
        }
        let mut lost = false;
        for hold in stock::holds_of_order(tx, &order.id).await? {
            if stock::confirm(tx, &hold.id).await? == Confirmed::Lost {
                tracing::error!(order = %order.id, item = %hold.item,
                    "paid after its hold lapsed and the stock is gone: refunding");
                lost = true;
            }
        }
        let order = orders::get_on(tx, &order.id).await?;
        if lost {
            if let Some(email) = self.buyer_email(tx, &order).await? {
                let mail = self.templates.render(
                    "sold_out_refund",
                    &json!({
                        "site_title": self.config.site_title,
                        "order_id": order.id,
                        "total": money(order.total_minor, &order.currency),
                    }),
                )?;
                mail::enqueue(tx, &self.config.site, &email, &mail).await?;
            }
            let refund = order
                .payment_ref
                .clone()
                .map(|intent| (order.id.clone(), intent));
            let message = format!(
                "order {} paid after its stock was gone: refunding",
                order.id
            );
            return Ok((
                (
                    WebhookOutcome::Applied,
                    message,
                    Some((OrderOutcome::Paid, order)),
                ),
                refund,
            ));
        }
        effects.paid(tx, &order).await?;
        if let Some(email) = self.buyer_email(tx, &order).await? {
            let lines = lines_on(tx, &order.id).await?;
            let mail = self.templates.render(
                "receipt",
                &json!({
                    "site_title": self.config.site_title,
                    "order_id": order.id,
                    "total": money(order.total_minor, &order.currency),
                    "lines": lines.iter().map(|(description, quantity, amount)| json!({
                        "description": description, "quantity": quantity,
                        "amount": money(*amount, &order.currency),
                    })).collect::<Vec<_>>(),
                }),
            )?;
            mail::enqueue(tx, &self.config.site, &email, &mail).await?;
        }
        Ok((
            (
                WebhookOutcome::Applied,
                format!("order {} paid", order.id),
                Some((OrderOutcome::Paid, order)),
            ),
            None,
        ))
    }

    async fn expired<E: OrderEffects>(
        &self,
        tx: &mut Conn,
        session: &CheckoutSession,
        effects: &E,
    ) -> Result<Effect, PaymentError> {
        let Some(order) = self.order_of_session(tx, session).await? else {
            return Ok((
                WebhookOutcome::Ignored,
                "checkout of an order we do not know".into(),
                None,
            ));
        };
        match orders::transition(tx, &order.id, OrderState::Expired, None).await? {
            Transition::Applied => {}
            Transition::Already => {
                return Ok((
                    WebhookOutcome::Duplicate,
                    "order already expired".into(),
                    None,
                ));
            }
            Transition::Refused { current } => {
                return Ok((
                    WebhookOutcome::Ignored,
                    format!("order is {}", current.as_str()),
                    None,
                ));
            }
        }
        for hold in stock::holds_of_order(tx, &order.id).await? {
            stock::release(tx, &hold.id).await?;
        }
        effects.expired(tx, &order).await?;
        Ok((
            WebhookOutcome::Applied,
            format!("order {} expired", order.id),
            Some((OrderOutcome::Expired, order)),
        ))
    }

    async fn refunded<E: OrderEffects>(
        &self,
        tx: &mut Conn,
        order: Order,
        effects: &E,
    ) -> Result<Effect, PaymentError> {
        match orders::transition(tx, &order.id, OrderState::Refunded, None).await? {
            Transition::Applied => {}
            Transition::Already => {
                return Ok((
                    WebhookOutcome::Duplicate,
                    "order already refunded".into(),
                    None,
                ));
            }
            Transition::Refused { current } => {
                return Ok((
                    WebhookOutcome::Ignored,
                    format!("order is {}", current.as_str()),
                    None,
                ));
            }
        }
        for hold in stock::holds_of_order(tx, &order.id).await? {
            stock::return_sold(tx, &hold.id).await?;
        }
        effects.refunded(tx, &order).await?;
        Ok((
            WebhookOutcome::Applied,
            format!("order {} refunded", order.id),
            Some((OrderOutcome::Refunded, order)),
        ))
    }

    /// The order a session belongs to: by our reference, else by the session id; only this
    /// site's orders.
    async fn order_of_session(
        &self,
        tx: &mut Conn,
        session: &CheckoutSession,
    ) -> Result<Option<Order>, PaymentError> {
        let by_reference = match &session.client_reference_id {
            Some(id) => match orders::get_on(tx, id).await {
                Ok(order) => Some(order),
                Err(OrderError::Unknown(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let order = match by_reference {
            Some(order) => Some(order),
            None => orders::find_by_checkout(tx, &session.id).await?,
        };
        Ok(order.filter(|o| o.site == self.config.site))
    }

    async fn buyer_email(
        &self,
        tx: &mut Conn,
        order: &Order,
    ) -> Result<Option<String>, sqlx::Error> {
        if let Some(email) = &order.email {
            return Ok(Some(email.clone()));
        }
        let Some(account) = &order.account_id else {
            return Ok(None);
        };
        sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1")
            .bind(account)
            .fetch_optional(tx)
            .await
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

async fn find_by_payment_ref(
    tx: &mut Conn,
    payment_ref: &str,
) -> Result<Option<Order>, PaymentError> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE payment_ref = $1")
        .bind(payment_ref)
        .fetch_optional(&mut *tx)
        .await?;
    match id {
        Some(id) => Ok(Some(orders::get_on(tx, &id).await?)),
        None => Ok(None),
    }
}

/// (description, quantity, amount) of each line.
async fn lines_on(tx: &mut Conn, order_id: &str) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT description, quantity, unit_minor FROM order_lines WHERE order_id = $1 \
         ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(d, q, unit)| (d, q, q.saturating_mul(unit)))
        .collect())
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
