//! Integration tests of bourse-commerce against real SQLite files, a real PostgreSQL, a real SMTP
//! server (aiosmtpd) and signatures made by Stripe's own Node library.

mod accounts;
mod mail;
mod migrations;
mod sessions;
mod stock;
mod stripe;
mod support;
mod tenants;
