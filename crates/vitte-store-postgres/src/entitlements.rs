//! [`EntitlementRepo`] on the `subscriptions`, `unlocks`, `credits` and
//! `credit_events` tables, and the grant logic settled payments share.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;
use vitte_domain::ids::{PaymentId, PersonaId, SubscriptionId, UserId};
use vitte_domain::model::{CreditKind, Grant, Subscription, Unlock};
use vitte_domain::ports::{EntitlementRepo, StoreError};

use crate::PgStore;
use crate::error::db;

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: i64,
    user_id: i64,
    plan: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    payment_id: Option<i64>,
}

impl From<SubscriptionRow> for Subscription {
    fn from(r: SubscriptionRow) -> Self {
        Subscription {
            id: SubscriptionId(r.id),
            user_id: UserId(r.user_id),
            plan: r.plan,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            payment_id: r.payment_id.map(PaymentId),
        }
    }
}

#[derive(sqlx::FromRow)]
struct UnlockRow {
    user_id: i64,
    feature: String,
    persona_id: Option<i64>,
    granted_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<UnlockRow> for Unlock {
    fn from(r: UnlockRow) -> Self {
        Unlock {
            user_id: UserId(r.user_id),
            feature: r.feature,
            persona_id: r.persona_id.map(PersonaId),
            granted_at: r.granted_at,
            expires_at: r.expires_at,
        }
    }
}

/// `now + days`, refusing lengths that are not positive or overflow.
fn after_days(now: DateTime<Utc>, days: i64) -> Result<DateTime<Utc>, StoreError> {
    if days <= 0 {
        return Err(StoreError::Conflict(format!(
            "a grant must last at least one day, not {days}"
        )));
    }
    TimeDelta::try_days(days)
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| StoreError::Conflict(format!("a grant of {days} days is out of range")))
}

fn positive(amount: i64) -> Result<(), StoreError> {
    if amount <= 0 {
        return Err(StoreError::Conflict(format!(
            "a credit amount must be positive, not {amount}"
        )));
    }
    Ok(())
}

/// Applies `grant` to `user` inside the caller's transaction. The user row is
/// locked first, so concurrent grants to one person are applied one after
/// another (subscription periods chain instead of overlapping, an unlock is
/// never inserted twice). `NO KEY UPDATE` leaves inserts that merely
/// reference the user (messages, dialogs) unblocked.
pub(crate) async fn apply_grant_in(
    conn: &mut PgConnection,
    user: UserId,
    grant: &Grant,
    now: DateTime<Utc>,
    payment: Option<PaymentId>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound("user"))?;

    match grant {
        Grant::Subscription { plan, days } => {
            let latest_end: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT MAX(ends_at) FROM subscriptions WHERE user_id = $1")
                    .bind(user.0)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db)?;
            let starts_at = latest_end.map_or(now, |end| end.max(now));
            let ends_at = after_days(starts_at, *days)?;
            sqlx::query(
                "INSERT INTO subscriptions (user_id, plan, starts_at, ends_at, payment_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(user.0)
            .bind(plan)
            .bind(starts_at)
            .bind(ends_at)
            .bind(payment.map(|p| p.0))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        Grant::Unlock {
            feature,
            persona_id,
            days,
        } => {
            let expires_at = days.map(|d| after_days(now, d)).transpose()?;
            let existing: Option<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
                "SELECT id, expires_at FROM unlocks \
                 WHERE user_id = $1 AND feature = $2 AND persona_id IS NOT DISTINCT FROM $3 \
                 ORDER BY id LIMIT 1",
            )
            .bind(user.0)
            .bind(feature)
            .bind(persona_id.map(|p| p.0))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            match existing {
                Some((id, current)) => {
                    // The later expiry wins; never (None) beats any date.
                    let later = match (current, expires_at) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    sqlx::query("UPDATE unlocks SET expires_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(later)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO unlocks (user_id, feature, persona_id, granted_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(user.0)
                    .bind(feature)
                    .bind(persona_id.map(|p| p.0))
                    .bind(now)
                    .bind(expires_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
                }
            }
        }
        Grant::Credits { kind, amount } => {
            positive(*amount)?;
            sqlx::query(
                "INSERT INTO credits (user_id, kind, balance) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, kind) DO UPDATE SET balance = credits.balance + EXCLUDED.balance",
            )
            .bind(user.0)
            .bind(kind.as_str())
            .bind(*amount)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            credit_event(conn, user, *kind, *amount, now).await?;
        }
    }
    Ok(())
}

async fn credit_event(
    conn: &mut PgConnection,
    user: UserId,
    kind: CreditKind,
    delta: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credit_events (user_id, kind, delta, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user.0)
    .bind(kind.as_str())
    .bind(delta)
    .bind(now)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl EntitlementRepo for PgStore {
    async fn active_subscription(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        let row = sqlx::query_as::<_, SubscriptionRow>(
            "SELECT id, user_id, plan, starts_at, ends_at, payment_id FROM subscriptions \
             WHERE user_id = $1 AND starts_at <= $2 AND ends_at > $2 \
             ORDER BY ends_at DESC, id DESC LIMIT 1",
        )
        .bind(user.0)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(Subscription::from))
    }

    async fn unlocks(&self, user: UserId, now: DateTime<Utc>) -> Result<Vec<Unlock>, StoreError> {
        let rows = sqlx::query_as::<_, UnlockRow>(
            "SELECT user_id, feature, persona_id, granted_at, expires_at FROM unlocks \
             WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
             ORDER BY id",
        )
        .bind(user.0)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(Unlock::from).collect())
    }

    async fn credit_balance(&self, user: UserId, kind: CreditKind) -> Result<i64, StoreError> {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance FROM credits WHERE user_id = $1 AND kind = $2")
                .bind(user.0)
                .bind(kind.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(balance.unwrap_or(0))
    }

    async fn spend_credits(
        &self,
        user: UserId,
        kind: CreditKind,
        amount: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        positive(amount)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The condition and the decrement are one statement, so two spends
        // can never both take the last credit.
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE credits SET balance = balance - $3 \
             WHERE user_id = $1 AND kind = $2 AND balance >= $3 \
             RETURNING balance",
        )
        .bind(user.0)
        .bind(kind.as_str())
        .bind(amount)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(left) = left else {
            let balance: Option<i64> =
                sqlx::query_scalar("SELECT balance FROM credits WHERE user_id = $1 AND kind = $2")
                    .bind(user.0)
                    .bind(kind.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            return Err(StoreError::InsufficientCredits {
                kind,
                balance: balance.unwrap_or(0),
                wanted: amount,
            });
        };
        credit_event(&mut tx, user, kind, -amount, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(left)
    }

    async fn apply_grant(
        &self,
        user: UserId,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        apply_grant_in(&mut tx, user, grant, now, None).await?;
        tx.commit().await.map_err(db)
    }
}
