//! Stripe webhook verification and events, as Stripe documents them: the `Stripe-Signature`
//! header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]` (other schemes such as `v0` are ignored);
//! each `v1` is an HMAC-SHA256 under the endpoint's signing secret of `"{t}.{raw body}"`; any
//! one matching (compared in constant time) verifies the body, and `t` must lie within the
//! tolerance (300 s) of now, so a captured delivery cannot be replayed later.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::stripe::client::CheckoutSession;

/// Stripe's default tolerance for a signature's timestamp.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery was refused (answer 400: a sender that cannot sign will not do better later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header: {0}")]
    MalformedHeader(&'static str),
    #[error("Stripe-Signature carries no v1 signature")]
    NoSignature,
    #[error("Stripe-Signature timestamp is {age} s from now, beyond the {tolerance} s tolerance")]
    Stale { age: i64, tolerance: i64 },
    #[error("no Stripe-Signature v1 signature matches the body")]
    Mismatch,
    #[error("webhook body is not a Stripe event: {0}")]
    BadPayload(String),
}

/// Verifies `payload` against the `Stripe-Signature` header value at time `now`.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingHeader)?;
    let mut timestamp: Option<&str> = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedHeader("an item without `=`"))?;
        match key {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedHeader("no timestamp `t`"))?;
    let t: i64 = timestamp
        .parse()
        .map_err(|_| WebhookError::MalformedHeader("timestamp `t` is not a number"))?;
    if signatures.is_empty() {
        return Err(WebhookError::NoSignature);
    }
    let expected = signature(payload, secret, timestamp);
    let matched = signatures
        .iter()
        .fold(subtle::Choice::from(0), |any, candidate| {
            any | expected.as_bytes().ct_eq(candidate.as_bytes())
        });
    if !bool::from(matched) {
        return Err(WebhookError::Mismatch);
    }
    let age = now - t;
    if age.abs() > tolerance {
        return Err(WebhookError::Stale { age, tolerance });
    }
    Ok(())
}

/// The `Stripe-Signature` value for `payload` at `t` (what Stripe sends; used by the test-mode
/// checkout).
pub fn sign_header(payload: &[u8], secret: &str, t: i64) -> String {
    format!("t={t},v1={}", signature(payload, secret, &t.to_string()))
}

fn signature(payload: &[u8], secret: &str, timestamp: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// A Charge, as far as refunds need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub amount_refunded: i64,
    #[serde(default)]
    pub currency: Option<String>,
    /// True once the whole amount is refunded.
    #[serde(default)]
    pub refunded: bool,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The object an event carries, typed for the events sites act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    CheckoutSessionCompleted(CheckoutSession),
    CheckoutSessionExpired(CheckoutSession),
    ChargeRefunded(Charge),
    /// Any other type: kept as JSON and acknowledged.
    Other(serde_json::Value),
}

/// A verified Stripe event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

/// Reads an event body (after [`verify`]).
pub fn parse(payload: &[u8]) -> Result<Event, WebhookError> {
    let raw: RawEvent =
        serde_json::from_slice(payload).map_err(|e| WebhookError::BadPayload(e.to_string()))?;
    if raw.id.is_empty() {
        return Err(WebhookError::BadPayload("empty event id".into()));
    }
    let typed = |what: &str| WebhookError::BadPayload(format!("{} object: {what}", raw.kind));
    let data = match raw.kind.as_str() {
        "checkout.session.completed" => EventData::CheckoutSessionCompleted(
            serde_json::from_value(raw.data.object).map_err(|e| typed(&e.to_string()))?,
        ),
        "checkout.session.expired" => EventData::CheckoutSessionExpired(
            serde_json::from_value(raw.data.object).map_err(|e| typed(&e.to_string()))?,
        ),
        "charge.refunded" => EventData::ChargeRefunded(
            serde_json::from_value(raw.data.object).map_err(|e| typed(&e.to_string()))?,
        ),
        _ => EventData::Other(raw.data.object),
    };
    Ok(Event {
        id: raw.id,
        kind: raw.kind,
        created: raw.created,
        livemode: raw.livemode,
        data,
    })
}

/// Verifies, then parses.
pub fn construct_event(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
    now: i64,
) -> Result<Event, WebhookError> {
    verify(payload, header, secret, now, TOLERANCE_SECS)?;
    parse(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    #[test]
    fn any_v1_may_match_and_other_schemes_are_ignored() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign_header(body, SECRET, 1_700_000_000);
        let v1 = good.split("v1=").nth(1).unwrap();
        let header = format!("t=1700000000,v0=deadbeef,v1={},v1={v1}", "0".repeat(64));
        assert_eq!(
            verify(body, Some(&header), SECRET, 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify(
                body,
                Some("t=1700000000,v0=abc"),
                SECRET,
                1_700_000_000,
                300
            ),
            Err(WebhookError::NoSignature)
        );
        assert!(matches!(
            verify(body, Some("v1=abc"), SECRET, 0, 300),
            Err(WebhookError::MalformedHeader(_))
        ));
        assert!(matches!(
            verify(body, Some("t=soon,v1=abc"), SECRET, 0, 300),
            Err(WebhookError::MalformedHeader(_))
        ));
        assert!(matches!(
            verify(body, Some(&good), SECRET, 1_700_000_301, 300),
            Err(WebhookError::Stale { age: 301, .. })
        ));
    }

    #[test]
    fn unknown_event_types_are_kept_as_json() {
        let event = parse(
            br#"{"id":"evt_2","type":"invoice.paid","created":1,"livemode":false,
                 "data":{"object":{"id":"in_1","amount_paid":500}}}"#,
        )
        .unwrap();
        assert_eq!(event.kind, "invoice.paid");
        match event.data {
            EventData::Other(v) => assert_eq!(v["amount_paid"], 500),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(b"{}"), Err(WebhookError::BadPayload(_))));
        assert!(matches!(
            parse(br#"{"id":"evt_3","type":"charge.refunded","data":{"object":{"amount":1}}}"#),
            Err(WebhookError::BadPayload(_))
        ));
    }
}
