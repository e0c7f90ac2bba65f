-- Workspaces (tenants) of multi-tenant sites and their members.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE tenant_members (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    account_id TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, account_id),
    CHECK (role IN ('owner', 'admin', 'member'))
);

-- A subscription to a plan, held by a tenant or an account, mirrored from the payment provider.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    tenant_id TEXT,
    account_id TEXT,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_ref TEXT UNIQUE,
    current_period_end BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (state IN ('trialing', 'active', 'past_due', 'canceled'))
);
CREATE INDEX subscriptions_holder ON subscriptions (site, tenant_id, account_id);

-- API keys: shown once, stored as SHA-256; found by their public prefix.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    account_id TEXT,
    tenant_id TEXT,
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    plan TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- Metered usage per subject (key, tenant or account) and period.
CREATE TABLE usage_counters (
    site TEXT NOT NULL,
    subject TEXT NOT NULL,
    metric TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (site, subject, metric, period_start)
);
