//! [`UpdateInbox`] on the `inbound_updates` table: the durable inbox that
//! deduplicates Telegram's redeliveries and hands updates out under leases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::UpdateId;
use vitte_domain::model::{InboundUpdate, UpdateState, sender_of};
use vitte_domain::ports::{StoreError, UpdateInbox};

use crate::PgStore;
use crate::error::{corrupt, db};

#[derive(sqlx::FromRow)]
struct UpdateRow {
    update_id: i64,
    payload: serde_json::Value,
    state: String,
    attempts: i32,
    received_at: DateTime<Utc>,
}

impl TryFrom<UpdateRow> for InboundUpdate {
    type Error = StoreError;

    fn try_from(r: UpdateRow) -> Result<Self, StoreError> {
        Ok(InboundUpdate {
            update_id: UpdateId::try_from(r.update_id).map_err(corrupt)?,
            payload: r.payload,
            state: UpdateState::parse(&r.state).map_err(corrupt)?,
            attempts: r.attempts,
            received_at: r.received_at,
        })
    }
}

#[async_trait]
impl UpdateInbox for PgStore {
    async fn record_update(
        &self,
        id: UpdateId,
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO inbound_updates (update_id, payload, received_at, sender) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (update_id) DO NOTHING",
        )
        .bind(id.get())
        .bind(payload)
        .bind(now)
        .bind(sender_of(payload))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_updates(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboundUpdate>, StoreError> {
        // SKIP LOCKED lets concurrent claimers pass over rows another claimer
        // is taking; a row whose claim committed meanwhile is re-checked
        // against the lease condition and left out. Only a sender's oldest
        // pending update qualifies: the older one stays pending until it is
        // finished, whoever holds it, so no race hands out the next one early.
        sqlx::query_as::<_, UpdateRow>(
            "WITH claimable AS ( \
                 SELECT update_id FROM inbound_updates i \
                 WHERE state = 'pending' AND (leased_until IS NULL OR leased_until <= $2) \
                   AND (sender IS NULL OR NOT EXISTS ( \
                       SELECT 1 FROM inbound_updates e \
                       WHERE e.state = 'pending' AND e.sender = i.sender \
                         AND e.update_id < i.update_id)) \
                 ORDER BY update_id \
                 LIMIT $1 \
                 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
                 UPDATE inbound_updates u \
                 SET leased_until = $3, attempts = u.attempts + 1 \
                 FROM claimable c WHERE u.update_id = c.update_id \
                 RETURNING u.update_id, u.payload, u.state, u.attempts, u.received_at \
             ) \
             SELECT * FROM claimed ORDER BY update_id",
        )
        .bind(i64::from(limit))
        .bind(now)
        .bind(lease_until)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(InboundUpdate::try_from)
        .collect()
    }

    async fn finish_update(
        &self,
        id: UpdateId,
        state: UpdateState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE inbound_updates SET state = $2, finished_at = $3, leased_until = NULL \
             WHERE update_id = $1",
        )
        .bind(id.get())
        .bind(state.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("update"));
        }
        Ok(())
    }

    async fn prune_updates(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM inbound_updates WHERE state <> 'pending' AND received_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }
}
