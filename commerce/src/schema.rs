//! The schema modules this crate owns. A site passes the ones it uses, plus its own, to
//! [`crate::Store::open`].

use crate::migrate::{Migration, Module};

/// Accounts, e-mail tokens and refresh tokens.
pub const ACCOUNTS: Module = Module {
    name: "accounts",
    migrations: &[Migration {
        version: 1,
        name: "accounts",
        sql: include_str!("../migrations/accounts/0001_accounts.sql"),
    }],
};

/// Orders, the payments inbox, stock and holds.
pub const PAYMENTS: Module = Module {
    name: "payments",
    migrations: &[Migration {
        version: 1,
        name: "orders_stock_inbox",
        sql: include_str!("../migrations/payments/0001_orders_stock_inbox.sql"),
    }],
};

/// The mail outbox.
pub const MAIL: Module = Module {
    name: "mail",
    migrations: &[Migration {
        version: 1,
        name: "outbox",
        sql: include_str!("../migrations/mail/0001_outbox.sql"),
    }],
};

/// Tenants, subscriptions, API keys and metered usage.
pub const TENANTS: Module = Module {
    name: "tenants",
    migrations: &[Migration {
        version: 1,
        name: "tenants_plans_keys",
        sql: include_str!("../migrations/tenants/0001_tenants_plans_keys.sql"),
    }],
};

/// Every module of this crate, in dependency order.
pub const ALL: [&Module; 4] = [&ACCOUNTS, &PAYMENTS, &MAIL, &TENANTS];
