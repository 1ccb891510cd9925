//! [`BroadcastRepo`] on the `broadcasts` and `broadcast_deliveries` tables:
//! one delivery row per recipient, so a restarted broadcast never sends twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{BroadcastId, UserId};
use vitte_domain::model::{Broadcast, BroadcastState};
use vitte_domain::ports::{BroadcastRepo, StoreError};

use crate::PgStore;
use crate::error::{corrupt, db};

macro_rules! broadcast_columns {
    () => {
        "id, text, state, scheduled_at, sent, failed, created_at"
    };
}

#[derive(sqlx::FromRow)]
struct BroadcastRow {
    id: i64,
    text: String,
    state: String,
    scheduled_at: Option<DateTime<Utc>>,
    sent: i64,
    failed: i64,
    created_at: DateTime<Utc>,
}

impl TryFrom<BroadcastRow> for Broadcast {
    type Error = StoreError;

    fn try_from(r: BroadcastRow) -> Result<Self, StoreError> {
        Ok(Broadcast {
            id: BroadcastId(r.id),
            text: r.text,
            state: BroadcastState::parse(&r.state).map_err(corrupt)?,
            scheduled_at: r.scheduled_at,
            sent: r.sent,
            failed: r.failed,
            created_at: r.created_at,
        })
    }
}

#[async_trait]
impl BroadcastRepo for PgStore {
    async fn create_broadcast(
        &self,
        text: &str,
        scheduled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast, StoreError> {
        let state = if scheduled_at.is_some() {
            BroadcastState::Scheduled
        } else {
            BroadcastState::Draft
        };
        sqlx::query_as::<_, BroadcastRow>(concat!(
            "INSERT INTO broadcasts (text, state, scheduled_at, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING ",
            broadcast_columns!()
        ))
        .bind(text)
        .bind(state.as_str())
        .bind(scheduled_at)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?
        .try_into()
    }

    async fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>, StoreError> {
        sqlx::query_as::<_, BroadcastRow>(concat!(
            "SELECT ",
            broadcast_columns!(),
            " FROM broadcasts WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(Broadcast::try_from)
        .transpose()
    }

    async fn set_broadcast_state(
        &self,
        id: BroadcastId,
        state: BroadcastState,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE broadcasts SET state = $2 WHERE id = $1")
            .bind(id.0)
            .bind(state.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("broadcast"));
        }
        Ok(())
    }

    async fn record_delivery(
        &self,
        id: BroadcastId,
        user: UserId,
        delivered: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO broadcast_deliveries (broadcast_id, user_id, delivered, at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (broadcast_id, user_id) DO NOTHING",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(delivered)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected()
            == 1;
        if inserted {
            sqlx::query(
                "UPDATE broadcasts SET sent = sent + $2::int, failed = failed + (NOT $2)::int \
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(delivered)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(inserted)
    }
}
