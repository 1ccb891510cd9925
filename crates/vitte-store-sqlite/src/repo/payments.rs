//! Payments: recorded once per provider id, settled once, with the grant in
//! the same transaction so money and goods never disagree.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use vitte_domain::ids::{Currency, Money, PaymentId, UserId};
use vitte_domain::model::{Grant, NewPayment, Payment, PaymentProvider, PaymentState};
use vitte_domain::ports::{PaymentRepo, SettleOutcome, StoreError};

use crate::SqliteStore;
use crate::codec::{col, corrupt, micros, parsed_col, time_col};
use crate::error::{db_err, or_missing};
use crate::repo::entitlements::apply_grant_in;

macro_rules! payment_columns {
    () => {
        "id, user_id, provider, provider_payment_id, amount_minor, currency, product, state, \
         created_at, updated_at"
    };
}

fn payment_from_row(row: &SqliteRow) -> Result<Payment, StoreError> {
    Ok(Payment {
        id: PaymentId(col(row, "id")?),
        user_id: UserId(col(row, "user_id")?),
        provider: parsed_col(row, "provider", PaymentProvider::parse)?,
        provider_payment_id: col(row, "provider_payment_id")?,
        amount: Money::new(
            col(row, "amount_minor")?,
            parsed_col(row, "currency", Currency::parse)?,
        )
        .map_err(corrupt)?,
        product: col(row, "product")?,
        state: parsed_col(row, "state", PaymentState::parse)?,
        created_at: time_col(row, "created_at")?,
        updated_at: time_col(row, "updated_at")?,
    })
}

async fn payment_by_provider_id(
    conn: &mut SqliteConnection,
    provider: PaymentProvider,
    provider_payment_id: &str,
) -> Result<Option<Payment>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE provider = ?1 AND provider_payment_id = ?2"
    ))
    .bind(provider.as_str())
    .bind(provider_payment_id)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .as_ref()
    .map(payment_from_row)
    .transpose()
}

#[async_trait]
impl PaymentRepo for SqliteStore {
    async fn record_payment(
        &self,
        payment: &NewPayment,
        now: DateTime<Utc>,
    ) -> Result<(Payment, bool), StoreError> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO payments (user_id, provider, provider_payment_id, amount_minor, \
                                   currency, product, state, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) \
             ON CONFLICT (provider, provider_payment_id) DO NOTHING RETURNING ",
            payment_columns!()
        ))
        .bind(payment.user_id.0)
        .bind(payment.provider.as_str())
        .bind(&payment.provider_payment_id)
        .bind(payment.amount.minor)
        .bind(payment.amount.currency.code())
        .bind(&payment.product)
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(or_missing("user"))?;
        let outcome = match inserted {
            Some(row) => (payment_from_row(&row)?, true),
            None => {
                let existing =
                    payment_by_provider_id(&mut tx, payment.provider, &payment.provider_payment_id)
                        .await?
                        .ok_or(StoreError::NotFound("payment"))?;
                (existing, false)
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE id = ?1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(payment_from_row)
        .transpose()
    }

    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        payment_by_provider_id(&mut conn, provider, provider_payment_id).await
    }

    async fn settle_payment(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, StoreError> {
        let mut tx = self.write_tx().await?;
        let payment = payment_by_provider_id(&mut tx, provider, provider_payment_id)
            .await?
            .ok_or(StoreError::NotFound("payment"))?;
        match payment.state {
            PaymentState::Pending => {}
            PaymentState::Succeeded => return Ok(SettleOutcome::AlreadySettled(payment)),
            PaymentState::Canceled | PaymentState::Refunded => {
                return Err(StoreError::Conflict(format!(
                    "payment {} is {} and cannot be settled",
                    payment.id,
                    payment.state.as_str()
                )));
            }
        }
        let row = sqlx::query(concat!(
            "UPDATE payments SET state = 'succeeded', updated_at = ?2 WHERE id = ?1 RETURNING ",
            payment_columns!()
        ))
        .bind(payment.id.0)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let settled = payment_from_row(&row)?;
        apply_grant_in(&mut tx, settled.user_id, grant, Some(settled.id), now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(SettleOutcome::Settled(settled))
    }

    async fn transition_payment(
        &self,
        id: PaymentId,
        from: PaymentState,
        to: PaymentState,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE payments SET state = ?3, updated_at = ?4 WHERE id = ?1 AND state = ?2",
        )
        .bind(id.0)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}
