//! Payment events: a verified webhook's effect on the order, its stock, the site and the
//! buyer's mail, applied in one transaction with its inbox record.

use serde_json::json;

use super::{Effect, OrderEffects, PaymentError, Payments, WebhookReply, money};
use crate::clock;
use crate::inbox;
use crate::mail;
use crate::metrics::{OrderOutcome, WebhookOutcome};
use crate::orders::{self, Order, OrderError, OrderState, Transition};
use crate::stock::{self, Confirmed};
use crate::store::Conn;
use crate::stripe::CheckoutSession;
use crate::stripe::webhook::{self, EventData, WebhookError};

impl Payments {
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
