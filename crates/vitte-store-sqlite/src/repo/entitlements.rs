//! Subscriptions, unlocks and credits, and how a grant changes them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use vitte_domain::ids::{PaymentId, PersonaId, SubscriptionId, UserId};
use vitte_domain::model::{CreditKind, Grant, Subscription, Unlock};
use vitte_domain::ports::{EntitlementRepo, StoreError};

use crate::SqliteStore;
use crate::codec::{col, micros, opt_time_col, plus_days, time_col};
use crate::error::{db_err, or_missing};

macro_rules! subscription_columns {
    () => {
        "id, user_id, plan, starts_at, ends_at, payment_id"
    };
}

fn subscription_from_row(row: &SqliteRow) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        id: SubscriptionId(col(row, "id")?),
        user_id: UserId(col(row, "user_id")?),
        plan: col(row, "plan")?,
        starts_at: time_col(row, "starts_at")?,
        ends_at: time_col(row, "ends_at")?,
        payment_id: col::<Option<i64>>(row, "payment_id")?.map(PaymentId),
    })
}

fn unlock_from_row(row: &SqliteRow) -> Result<Unlock, StoreError> {
    Ok(Unlock {
        user_id: UserId(col(row, "user_id")?),
        feature: col(row, "feature")?,
        persona_id: col::<Option<i64>>(row, "persona_id")?.map(PersonaId),
        granted_at: time_col(row, "granted_at")?,
        expires_at: opt_time_col(row, "expires_at")?,
    })
}

/// `start` (stored form) plus `days`, refusing lengths that are not
/// positive or leave the representable range.
fn days_after(start: i64, days: i64) -> Result<i64, StoreError> {
    if days <= 0 {
        return Err(StoreError::Conflict(format!(
            "a grant must last at least one day, not {days}"
        )));
    }
    plus_days(start, days)
        .ok_or_else(|| StoreError::Conflict(format!("a grant of {days} days is out of range")))
}

/// Credit grants and spends move a positive number of credits.
fn positive(amount: i64) -> Result<(), StoreError> {
    if amount <= 0 {
        return Err(StoreError::Conflict(format!(
            "a credit amount must be positive, not {amount}"
        )));
    }
    Ok(())
}

/// Applies `grant` inside the caller's transaction; `payment` is recorded on
/// the subscription it creates.
pub(crate) async fn apply_grant_in(
    conn: &mut SqliteConnection,
    user: UserId,
    grant: &Grant,
    payment: Option<PaymentId>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match grant {
        Grant::Subscription { plan, days } => {
            // A renewal starts where the latest period ends, so paying early
            // never loses days.
            let latest_end: Option<i64> =
                sqlx::query_scalar("SELECT max(ends_at) FROM subscriptions WHERE user_id = ?1")
                    .bind(user.0)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_err)?;
            let start = latest_end.map_or(micros(now), |end| end.max(micros(now)));
            let end = days_after(start, *days)?;
            sqlx::query(
                "INSERT INTO subscriptions (user_id, plan, starts_at, ends_at, payment_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(user.0)
            .bind(plan)
            .bind(start)
            .bind(end)
            .bind(payment.map(|p| p.0))
            .execute(&mut *conn)
            .await
            .map_err(or_missing("user"))?;
        }
        Grant::Unlock {
            feature,
            persona_id,
            days,
        } => {
            let expires = days.map(|d| days_after(micros(now), d)).transpose()?;
            let existing: Option<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, expires_at FROM unlocks \
                 WHERE user_id = ?1 AND feature = ?2 AND persona_id IS ?3 \
                 ORDER BY id LIMIT 1",
            )
            .bind(user.0)
            .bind(feature)
            .bind(persona_id.map(|p| p.0))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
            match existing {
                Some((id, current)) => {
                    // The later expiry wins; no expiry is the latest of all.
                    let merged = match (current, expires) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    sqlx::query("UPDATE unlocks SET expires_at = ?2 WHERE id = ?1")
                        .bind(id)
                        .bind(merged)
                        .execute(&mut *conn)
                        .await
                        .map_err(db_err)?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO unlocks (user_id, feature, persona_id, granted_at, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .bind(user.0)
                    .bind(feature)
                    .bind(persona_id.map(|p| p.0))
                    .bind(micros(now))
                    .bind(expires)
                    .execute(&mut *conn)
                    .await
                    .map_err(or_missing("user or persona"))?;
                }
            }
        }
        Grant::Credits { kind, amount } => {
            positive(*amount)?;
            sqlx::query(
                "INSERT INTO credits (user_id, kind, balance) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id, kind) DO UPDATE SET balance = balance + excluded.balance",
            )
            .bind(user.0)
            .bind(kind.as_str())
            .bind(amount)
            .execute(&mut *conn)
            .await
            .map_err(or_missing("user"))?;
            credit_event(conn, user, *kind, *amount, now).await?;
        }
    }
    Ok(())
}

/// Records a change of a balance, for support and audits.
async fn credit_event(
    conn: &mut SqliteConnection,
    user: UserId,
    kind: CreditKind,
    delta: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credit_events (user_id, kind, delta, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(user.0)
    .bind(kind.as_str())
    .bind(delta)
    .bind(micros(now))
    .execute(conn)
    .await
    .map_err(or_missing("user"))?;
    Ok(())
}

#[async_trait]
impl EntitlementRepo for SqliteStore {
    async fn active_subscription(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            subscription_columns!(),
            " FROM subscriptions WHERE user_id = ?1 AND starts_at <= ?2 AND ends_at > ?2 \
              ORDER BY ends_at DESC, id DESC LIMIT 1"
        ))
        .bind(user.0)
        .bind(micros(now))
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(subscription_from_row)
        .transpose()
    }

    async fn unlocks(&self, user: UserId, now: DateTime<Utc>) -> Result<Vec<Unlock>, StoreError> {
        sqlx::query(
            "SELECT user_id, feature, persona_id, granted_at, expires_at FROM unlocks \
             WHERE user_id = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY id",
        )
        .bind(user.0)
        .bind(micros(now))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(unlock_from_row)
        .collect()
    }

    async fn credit_balance(&self, user: UserId, kind: CreditKind) -> Result<i64, StoreError> {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance FROM credits WHERE user_id = ?1 AND kind = ?2")
                .bind(user.0)
                .bind(kind.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        // The condition makes the decrement refuse to go below zero even if
        // another writer spent in between.
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE credits SET balance = balance - ?3 \
             WHERE user_id = ?1 AND kind = ?2 AND balance >= ?3 RETURNING balance",
        )
        .bind(user.0)
        .bind(kind.as_str())
        .bind(amount)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(left) = left else {
            let balance: Option<i64> =
                sqlx::query_scalar("SELECT balance FROM credits WHERE user_id = ?1 AND kind = ?2")
                    .bind(user.0)
                    .bind(kind.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            return Err(StoreError::InsufficientCredits {
                kind,
                balance: balance.unwrap_or(0),
                wanted: amount,
            });
        };
        credit_event(&mut tx, user, kind, -amount, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(left)
    }

    async fn apply_grant(
        &self,
        user: UserId,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        apply_grant_in(&mut tx, user, grant, None, now).await?;
        tx.commit().await.map_err(db_err)
    }
}
