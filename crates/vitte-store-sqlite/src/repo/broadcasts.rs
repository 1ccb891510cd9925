//! Broadcasts and their per-recipient delivery records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use vitte_domain::ids::{BroadcastId, UserId};
use vitte_domain::model::{Broadcast, BroadcastState};
use vitte_domain::ports::{BroadcastRepo, StoreError};

use crate::SqliteStore;
use crate::codec::{col, micros, opt_micros, opt_time_col, parsed_col, time_col};
use crate::error::{db_err, or_missing};

macro_rules! broadcast_columns {
    () => {
        "id, text, state, scheduled_at, sent, failed, created_at"
    };
}

fn broadcast_from_row(row: &SqliteRow) -> Result<Broadcast, StoreError> {
    Ok(Broadcast {
        id: BroadcastId(col(row, "id")?),
        text: col(row, "text")?,
        state: parsed_col(row, "state", BroadcastState::parse)?,
        scheduled_at: opt_time_col(row, "scheduled_at")?,
        sent: col(row, "sent")?,
        failed: col(row, "failed")?,
        created_at: time_col(row, "created_at")?,
    })
}

#[async_trait]
impl BroadcastRepo for SqliteStore {
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
        let row = sqlx::query(concat!(
            "INSERT INTO broadcasts (text, state, scheduled_at, created_at) \
             VALUES (?1, ?2, ?3, ?4) RETURNING ",
            broadcast_columns!()
        ))
        .bind(text)
        .bind(state.as_str())
        .bind(opt_micros(scheduled_at))
        .bind(micros(now))
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        broadcast_from_row(&row)
    }

    async fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            broadcast_columns!(),
            " FROM broadcasts WHERE id = ?1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(broadcast_from_row)
        .transpose()
    }

    async fn set_broadcast_state(
        &self,
        id: BroadcastId,
        state: BroadcastState,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE broadcasts SET state = ?2 WHERE id = ?1")
            .bind(id.0)
            .bind(state.as_str())
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO broadcast_deliveries (broadcast_id, user_id, delivered, at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (broadcast_id, user_id) DO NOTHING",
        )
        .bind(id.0)
        .bind(user.0)
        .bind(delivered)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(or_missing("broadcast or user"))?
        .rows_affected()
            == 1;
        if inserted {
            sqlx::query(
                "UPDATE broadcasts SET sent = sent + ?2, failed = failed + ?3 WHERE id = ?1",
            )
            .bind(id.0)
            .bind(i64::from(delivered))
            .bind(i64::from(!delivered))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }
}
