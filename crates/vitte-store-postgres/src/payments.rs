//! [`PaymentRepo`] on the `payments` table; settling applies the grant in
//! the same transaction, so money and goods never disagree.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{Currency, Money, PaymentId, UserId};
use vitte_domain::model::{Grant, NewPayment, Payment, PaymentProvider, PaymentState};
use vitte_domain::ports::{PaymentRepo, SettleOutcome, StoreError};

use crate::PgStore;
use crate::entitlements::apply_grant_in;
use crate::error::{corrupt, db};

macro_rules! payment_columns {
    () => {
        "id, user_id, provider, provider_payment_id, amount_minor, currency, product, state, \
         created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: i64,
    user_id: i64,
    provider: String,
    provider_payment_id: String,
    amount_minor: i64,
    currency: String,
    product: String,
    state: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;

    fn try_from(r: PaymentRow) -> Result<Self, StoreError> {
        let currency = Currency::parse(&r.currency).map_err(corrupt)?;
        Ok(Payment {
            id: PaymentId(r.id),
            user_id: UserId(r.user_id),
            provider: PaymentProvider::parse(&r.provider).map_err(corrupt)?,
            provider_payment_id: r.provider_payment_id,
            amount: Money::new(r.amount_minor, currency).map_err(corrupt)?,
            product: r.product,
            state: PaymentState::parse(&r.state).map_err(corrupt)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const BY_PROVIDER_ID: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE provider = $1 AND provider_payment_id = $2"
);

#[async_trait]
impl PaymentRepo for PgStore {
    async fn record_payment(
        &self,
        payment: &NewPayment,
        now: DateTime<Utc>,
    ) -> Result<(Payment, bool), StoreError> {
        let created = sqlx::query_as::<_, PaymentRow>(concat!(
            "INSERT INTO payments (user_id, provider, provider_payment_id, amount_minor, \
                                   currency, product, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) \
             ON CONFLICT (provider, provider_payment_id) DO NOTHING \
             RETURNING ",
            payment_columns!()
        ))
        .bind(payment.user_id.0)
        .bind(payment.provider.as_str())
        .bind(&payment.provider_payment_id)
        .bind(payment.amount.minor)
        .bind(payment.amount.currency.code())
        .bind(&payment.product)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(row) = created {
            return Ok((row.try_into()?, true));
        }
        // The conflicting row is committed by the time DO NOTHING returns.
        let existing = sqlx::query_as::<_, PaymentRow>(BY_PROVIDER_ID)
            .bind(payment.provider.as_str())
            .bind(&payment.provider_payment_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok((existing.try_into()?, false))
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        sqlx::query_as::<_, PaymentRow>(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(Payment::try_from)
        .transpose()
    }

    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>, StoreError> {
        sqlx::query_as::<_, PaymentRow>(BY_PROVIDER_ID)
            .bind(provider.as_str())
            .bind(provider_payment_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(Payment::try_from)
            .transpose()
    }

    async fn settle_payment(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The row lock makes concurrent settlements of one payment take turns:
        // the second sees `succeeded` and applies nothing.
        let payment: Payment = sqlx::query_as::<_, PaymentRow>(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE provider = $1 AND provider_payment_id = $2 FOR UPDATE"
        ))
        .bind(provider.as_str())
        .bind(provider_payment_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound("payment"))?
        .try_into()?;

        match payment.state {
            PaymentState::Succeeded => Ok(SettleOutcome::AlreadySettled(payment)),
            PaymentState::Canceled | PaymentState::Refunded => Err(StoreError::Conflict(format!(
                "payment {} is {} and cannot be settled",
                payment.id,
                payment.state.as_str()
            ))),
            PaymentState::Pending => {
                let settled: Payment = sqlx::query_as::<_, PaymentRow>(concat!(
                    "UPDATE payments SET state = 'succeeded', updated_at = $2 WHERE id = $1 \
                     RETURNING ",
                    payment_columns!()
                ))
                .bind(payment.id.0)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?
                .try_into()?;
                apply_grant_in(&mut tx, settled.user_id, grant, now, Some(settled.id)).await?;
                tx.commit().await.map_err(db)?;
                Ok(SettleOutcome::Settled(settled))
            }
        }
    }

    async fn transition_payment(
        &self,
        id: PaymentId,
        from: PaymentState,
        to: PaymentState,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE payments SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2",
        )
        .bind(id.0)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }
}
