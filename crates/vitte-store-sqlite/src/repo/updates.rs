//! The durable inbox of Telegram updates, with leases so that concurrent
//! handlers never take the same update.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use vitte_domain::ids::UpdateId;
use vitte_domain::model::{InboundUpdate, UpdateState, sender_of};
use vitte_domain::ports::{StoreError, UpdateInbox};

use crate::SqliteStore;
use crate::codec::{col, corrupt, json_col, micros, parsed_col, time_col, to_json};
use crate::error::db_err;

macro_rules! update_columns {
    () => {
        "update_id, payload, state, attempts, received_at"
    };
}

fn update_from_row(row: &SqliteRow) -> Result<InboundUpdate, StoreError> {
    Ok(InboundUpdate {
        update_id: UpdateId::try_from(col::<i64>(row, "update_id")?).map_err(corrupt)?,
        payload: json_col(row, "payload")?,
        state: parsed_col(row, "state", UpdateState::parse)?,
        attempts: col(row, "attempts")?,
        received_at: time_col(row, "received_at")?,
    })
}

#[async_trait]
impl UpdateInbox for SqliteStore {
    async fn record_update(
        &self,
        id: UpdateId,
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO inbound_updates (update_id, payload, received_at, sender) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (update_id) DO NOTHING",
        )
        .bind(id.get())
        .bind(to_json(payload)?)
        .bind(micros(now))
        .bind(sender_of(payload))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_updates(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboundUpdate>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One statement, so choosing and leasing happen under one write lock.
        // Only a sender's oldest pending update qualifies, so one person's
        // updates are handled one after another by whichever process.
        let rows = sqlx::query(concat!(
            "UPDATE inbound_updates SET leased_until = ?3, attempts = attempts + 1 \
             WHERE update_id IN ( \
                 SELECT update_id FROM inbound_updates i \
                 WHERE state = 'pending' AND (leased_until IS NULL OR leased_until <= ?2) \
                   AND (sender IS NULL OR NOT EXISTS ( \
                       SELECT 1 FROM inbound_updates e \
                       WHERE e.state = 'pending' AND e.sender = i.sender \
                         AND e.update_id < i.update_id)) \
                 ORDER BY update_id LIMIT ?1) \
             RETURNING ",
            update_columns!()
        ))
        .bind(i64::from(limit))
        .bind(micros(now))
        .bind(micros(lease_until))
        .fetch_all(&self.writer)
        .await
        .map_err(db_err)?;
        let mut claimed = rows
            .iter()
            .map(update_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives rows in no promised order.
        claimed.sort_by_key(|u| u.update_id);
        Ok(claimed)
    }

    async fn finish_update(
        &self,
        id: UpdateId,
        state: UpdateState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE inbound_updates SET state = ?2, finished_at = ?3 WHERE update_id = ?1",
        )
        .bind(id.get())
        .bind(state.as_str())
        .bind(micros(now))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("update"));
        }
        Ok(())
    }

    async fn prune_updates(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM inbound_updates WHERE state <> 'pending' AND received_at < ?1",
        )
        .bind(micros(before))
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
