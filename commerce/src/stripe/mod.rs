//! Stripe: a client for its HTTP API (Checkout Sessions), webhook signature verification and
//! typed events, and a test-mode checkout that plays Stripe locally so a purchase works end to
//! end offline.

pub mod client;
pub mod testmode;
pub mod webhook;

pub use client::{
    CheckoutLine, CheckoutRequest, CheckoutSession, Refund, StripeClient, StripeConfig, StripeError,
};
pub use webhook::{Charge, Event, EventData, WebhookError};
