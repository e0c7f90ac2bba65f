//! Tenants (workspaces) of multi-tenant sites, their members, subscriptions to plans mirrored
//! from the payment provider, and metered usage. The saas and api sites build on these; what
//! is here is the data and its invariants, not any page.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock;
use crate::secret;
use crate::store::{Conn, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "member" => Role::Member,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub site: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    Trialing,
    Active,
    PastDue,
    Canceled,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Trialing => "trialing",
            SubscriptionState::Active => "active",
            SubscriptionState::PastDue => "past_due",
            SubscriptionState::Canceled => "canceled",
        }
    }

    fn parse(s: &str) -> Option<SubscriptionState> {
        Some(match s {
            "trialing" => SubscriptionState::Trialing,
            "active" => SubscriptionState::Active,
            "past_due" => SubscriptionState::PastDue,
            "canceled" => SubscriptionState::Canceled,
            _ => return None,
        })
    }

    /// Whether the plan's features are on.
    pub fn grants_access(self) -> bool {
        matches!(
            self,
            SubscriptionState::Trialing | SubscriptionState::Active
        )
    }
}

/// A subscription as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub site: String,
    pub tenant_id: Option<String>,
    pub account_id: Option<String>,
    pub plan: String,
    pub state: SubscriptionState,
    /// The provider's id (`sub_…`): the key updates are matched on.
    pub provider_ref: String,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("tenant data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Creates a tenant owned by `owner_account_id`.
pub async fn create(
    conn: &mut Conn,
    site: &str,
    name: &str,
    owner_account_id: &str,
) -> Result<Tenant, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TenantError::Invalid {
            field: "name",
            message: "must be 1-100 characters",
        });
    }
    let tenant = Tenant {
        id: secret::new_id("ten"),
        site: site.to_owned(),
        name: name.to_owned(),
        created_at: clock::now(),
    };
    sqlx::query("INSERT INTO tenants (id, site, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&tenant.id)
        .bind(site)
        .bind(&tenant.name)
        .bind(tenant.created_at)
        .execute(&mut *conn)
        .await?;
    add_member(conn, &tenant.id, owner_account_id, Role::Owner).await?;
    Ok(tenant)
}

/// Adds a member (or changes their role).
pub async fn add_member(
    conn: &mut Conn,
    tenant_id: &str,
    account_id: &str,
    role: Role,
) -> Result<(), TenantError> {
    sqlx::query(
        "INSERT INTO tenant_members (tenant_id, account_id, role, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, account_id) DO UPDATE SET role = $3",
    )
    .bind(tenant_id)
    .bind(account_id)
    .bind(role.as_str())
    .bind(clock::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// The role of an account in a tenant, None when not a member.
pub async fn role_of(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
) -> Result<Option<Role>, TenantError> {
    let role: Option<String> = sqlx::query_scalar(
        "SELECT role FROM tenant_members WHERE tenant_id = $1 AND account_id = $2",
    )
    .bind(tenant_id)
    .bind(account_id)
    .fetch_optional(store.reader())
    .await?;
    role.map(|r| Role::parse(&r).ok_or_else(|| TenantError::Corrupt(format!("role `{r}`"))))
        .transpose()
}

/// The tenants an account belongs to on a site, with its role in each.
pub async fn tenants_of(
    store: &Store,
    site: &str,
    account_id: &str,
) -> Result<Vec<(Tenant, Role)>, TenantError> {
    let rows = sqlx::query(
        "SELECT t.id, t.site, t.name, t.created_at, m.role FROM tenants t \
         JOIN tenant_members m ON m.tenant_id = t.id \
         WHERE t.site = $1 AND m.account_id = $2 ORDER BY t.created_at, t.id",
    )
    .bind(site)
    .bind(account_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row: &AnyRow| {
            let role: String = row.try_get("role")?;
            Ok((
                Tenant {
                    id: row.try_get("id")?,
                    site: row.try_get("site")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                },
                Role::parse(&role).ok_or_else(|| TenantError::Corrupt(format!("role `{role}`")))?,
            ))
        })
        .collect()
}

/// Records the provider's view of a subscription; repeated or reordered updates converge on
/// the newest state given.
pub async fn upsert_subscription(
    conn: &mut Conn,
    subscription: &Subscription,
) -> Result<(), TenantError> {
    if subscription.tenant_id.is_none() && subscription.account_id.is_none() {
        return Err(TenantError::Invalid {
            field: "subscription",
            message: "needs a tenant or an account",
        });
    }
    let now = clock::now();
    sqlx::query(
        "INSERT INTO subscriptions (id, site, tenant_id, account_id, plan, state, provider_ref, \
         current_period_end, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (provider_ref) DO UPDATE SET plan = $5, state = $6, \
         current_period_end = $8, updated_at = $9",
    )
    .bind(secret::new_id("sub"))
    .bind(&subscription.site)
    .bind(subscription.tenant_id.as_deref())
    .bind(subscription.account_id.as_deref())
    .bind(&subscription.plan)
    .bind(subscription.state.as_str())
    .bind(&subscription.provider_ref)
    .bind(subscription.current_period_end)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The plan in force for a tenant: its newest subscription that grants access.
pub async fn plan_of_tenant(
    store: &Store,
    site: &str,
    tenant_id: &str,
) -> Result<Option<String>, TenantError> {
    let rows = sqlx::query(
        "SELECT plan, state FROM subscriptions WHERE site = $1 AND tenant_id = $2 \
         ORDER BY updated_at DESC, id",
    )
    .bind(site)
    .bind(tenant_id)
    .fetch_all(store.reader())
    .await?;
    for row in rows {
        let state: String = row.try_get("state")?;
        let state = SubscriptionState::parse(&state)
            .ok_or_else(|| TenantError::Corrupt(format!("subscription state `{state}`")))?;
        if state.grants_access() {
            return Ok(Some(row.try_get("plan")?));
        }
    }
    Ok(None)
}

/// Adds `quantity` to a usage counter and returns its new total (one statement: concurrent
/// calls never lose an increment).
pub async fn record_usage(
    conn: &mut Conn,
    site: &str,
    subject: &str,
    metric: &str,
    period_start: i64,
    quantity: i64,
) -> Result<i64, TenantError> {
    let total: i64 = sqlx::query_scalar(
        "INSERT INTO usage_counters (site, subject, metric, period_start, quantity) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (site, subject, metric, period_start) \
         DO UPDATE SET quantity = usage_counters.quantity + $5 RETURNING quantity",
    )
    .bind(site)
    .bind(subject)
    .bind(metric)
    .bind(period_start)
    .bind(quantity)
    .fetch_one(conn)
    .await?;
    Ok(total)
}
