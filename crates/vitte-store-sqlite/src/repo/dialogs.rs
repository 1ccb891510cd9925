//! Dialogs: one active per user and persona, guarded by the partial unique
//! index `dialogs_one_active`; `reply_owner`/`reply_lease_until` hold the
//! reply lease.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use vitte_domain::ids::{DialogId, PersonaId, UserId};
use vitte_domain::model::Dialog;
use vitte_domain::ports::{DialogRepo, StoreError};

use crate::SqliteStore;
use crate::codec::{col, micros, time_col};
use crate::error::{db_err, or_missing};

macro_rules! dialog_columns {
    () => {
        "id, user_id, persona_id, active, intimacy_score, created_at, updated_at"
    };
}

fn dialog_from_row(row: &SqliteRow) -> Result<Dialog, StoreError> {
    Ok(Dialog {
        id: DialogId(col(row, "id")?),
        user_id: UserId(col(row, "user_id")?),
        persona_id: PersonaId(col(row, "persona_id")?),
        active: col(row, "active")?,
        intimacy_score: col(row, "intimacy_score")?,
        created_at: time_col(row, "created_at")?,
        updated_at: time_col(row, "updated_at")?,
    })
}

async fn active_dialog(
    conn: &mut SqliteConnection,
    user: UserId,
    persona: PersonaId,
) -> Result<Option<Dialog>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        dialog_columns!(),
        " FROM dialogs WHERE user_id = ?1 AND persona_id = ?2 AND active"
    ))
    .bind(user.0)
    .bind(persona.0)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .as_ref()
    .map(dialog_from_row)
    .transpose()
}

#[async_trait]
impl DialogRepo for SqliteStore {
    async fn active_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
    ) -> Result<Option<Dialog>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        active_dialog(&mut conn, user, persona).await
    }

    async fn open_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog, StoreError> {
        // Nearly always the dialog exists: find it without queueing for the writer.
        if let Some(dialog) = self.active_dialog(user, persona).await? {
            return Ok(dialog);
        }
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO dialogs (user_id, persona_id, active, created_at, updated_at) \
             VALUES (?1, ?2, 1, ?3, ?3) \
             ON CONFLICT (user_id, persona_id) WHERE active DO NOTHING",
        )
        .bind(user.0)
        .bind(persona.0)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(or_missing("user or persona"))?;
        let dialog = active_dialog(&mut tx, user, persona)
            .await?
            .ok_or(StoreError::NotFound("dialog"))?;
        tx.commit().await.map_err(db_err)?;
        Ok(dialog)
    }

    async fn reset_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE dialogs SET active = 0, updated_at = ?3 \
             WHERE user_id = ?1 AND persona_id = ?2 AND active",
        )
        .bind(user.0)
        .bind(persona.0)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let row = sqlx::query(concat!(
            "INSERT INTO dialogs (user_id, persona_id, active, created_at, updated_at) \
             VALUES (?1, ?2, 1, ?3, ?3) RETURNING ",
            dialog_columns!()
        ))
        .bind(user.0)
        .bind(persona.0)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(or_missing("user or persona"))?;
        let dialog = dialog_from_row(&row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(dialog)
    }

    async fn dialog(&self, id: DialogId) -> Result<Option<Dialog>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            dialog_columns!(),
            " FROM dialogs WHERE id = ?1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(dialog_from_row)
        .transpose()
    }

    async fn add_intimacy(
        &self,
        id: DialogId,
        delta: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "UPDATE dialogs SET intimacy_score = intimacy_score + ?2, \
             updated_at = MAX(updated_at, ?3) \
             WHERE id = ?1 RETURNING intimacy_score",
        )
        .bind(id.0)
        .bind(delta)
        .bind(micros(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("dialog"))
    }

    async fn lease_reply(
        &self,
        id: DialogId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement (SET sees the row as it was): a concurrent taker
        // waits for the row's write lock, then decides on what was just
        // written. Refused, it leaves its request for another reply instead.
        let taken: Option<bool> = sqlx::query_scalar(
            "UPDATE dialogs SET \
                 reply_wanted = CASE WHEN reply_owner = ?2 THEN reply_wanted \
                     WHEN reply_lease_until IS NULL OR reply_lease_until <= ?3 THEN false \
                     ELSE true END, \
                 reply_owner = CASE WHEN reply_lease_until IS NULL OR reply_lease_until <= ?3 OR reply_owner = ?2 \
                     THEN ?2 ELSE reply_owner END, \
                 reply_lease_until = CASE WHEN reply_lease_until IS NULL OR reply_lease_until <= ?3 OR reply_owner = ?2 \
                     THEN ?4 ELSE reply_lease_until END \
             WHERE id = ?1 \
             RETURNING COALESCE(reply_owner = ?2, false)",
        )
        .bind(id.0)
        .bind(owner)
        .bind(micros(now))
        .bind(micros(until))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        taken.ok_or(StoreError::NotFound("dialog"))
    }

    async fn release_reply(&self, id: DialogId, owner: &str) -> Result<bool, StoreError> {
        // The request flag stays: the next taker of the lease clears it.
        let wanted: Option<bool> = sqlx::query_scalar(
            "UPDATE dialogs SET reply_owner = NULL, reply_lease_until = NULL \
             WHERE id = ?1 AND reply_owner = ?2 \
             RETURNING reply_wanted",
        )
        .bind(id.0)
        .bind(owner)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?;
        Ok(wanted.unwrap_or(false))
    }
}
