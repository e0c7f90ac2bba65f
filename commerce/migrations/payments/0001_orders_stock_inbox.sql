-- Orders of every site: amounts in integer minor units of `currency` (ISO 4217, lower case).
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    account_id TEXT,
    email TEXT,
    state TEXT NOT NULL,
    currency TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    checkout_id TEXT UNIQUE,
    payment_ref TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    paid_at BIGINT,
    refunded_at BIGINT,
    expired_at BIGINT,
    CHECK (state IN ('pending', 'paid', 'refunded', 'expired')),
    CHECK (total_minor >= 0)
);
CREATE INDEX orders_site_state ON orders (site, state);
CREATE INDEX orders_account ON orders (account_id);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_no BIGINT NOT NULL,
    sku TEXT NOT NULL,
    description TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CHECK (quantity > 0 AND unit_minor >= 0)
);

-- The payments inbox: an event id recorded in the transaction of its effect, so a redelivered
-- event finds its id and does nothing.
CREATE TABLE payment_events (
    event_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- Limited stock (seats, units, licences). The CHECK is the last line of defence; reservations
-- never rely on it (they are one conditional UPDATE).
CREATE TABLE stock_items (
    site TEXT NOT NULL,
    item TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    held BIGINT NOT NULL DEFAULT 0,
    sold BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (site, item),
    CHECK (held >= 0 AND sold >= 0 AND held + sold <= capacity)
);

CREATE TABLE stock_holds (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    item TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    state TEXT NOT NULL,
    hold_until BIGINT NOT NULL,
    order_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (state IN ('held', 'confirmed', 'released', 'returned')),
    CHECK (quantity > 0)
);
CREATE INDEX stock_holds_expiry ON stock_holds (state, hold_until);
CREATE INDEX stock_holds_order ON stock_holds (order_id);
