//! [`DialogRepo`] on the `dialogs` table, whose partial unique index
//! `dialogs_one_active` keeps one active dialog per user and persona, and
//! whose `reply_owner`/`reply_lease_until` hold the reply lease.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{DialogId, PersonaId, UserId};
use vitte_domain::model::Dialog;
use vitte_domain::ports::{DialogRepo, StoreError};

use crate::PgStore;
use crate::error::db;

macro_rules! dialog_columns {
    () => {
        "id, user_id, persona_id, active, intimacy_score, created_at, updated_at"
    };
}

/// Inserts an active dialog unless one exists (then returns no row). A
/// concurrent uncommitted insert makes this wait for it and then do nothing.
const INSERT_ACTIVE: &str = concat!(
    "INSERT INTO dialogs (user_id, persona_id, active, created_at, updated_at) \
     VALUES ($1, $2, TRUE, $3, $3) \
     ON CONFLICT (user_id, persona_id) WHERE active DO NOTHING \
     RETURNING ",
    dialog_columns!()
);

const SELECT_ACTIVE: &str = concat!(
    "SELECT ",
    dialog_columns!(),
    " FROM dialogs WHERE user_id = $1 AND persona_id = $2 AND active"
);

/// How often open/reset go round when concurrent callers keep replacing the
/// active dialog under them; each round sees the others' committed work, so
/// more than a couple of rounds means something else is wrong.
const ATTEMPTS: usize = 8;

#[derive(sqlx::FromRow)]
struct DialogRow {
    id: i64,
    user_id: i64,
    persona_id: i64,
    active: bool,
    intimacy_score: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<DialogRow> for Dialog {
    fn from(r: DialogRow) -> Self {
        Dialog {
            id: DialogId(r.id),
            user_id: UserId(r.user_id),
            persona_id: PersonaId(r.persona_id),
            active: r.active,
            intimacy_score: r.intimacy_score,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn contended() -> StoreError {
    StoreError::Conflict("the active dialog kept changing under concurrent opens".to_owned())
}

#[async_trait]
impl DialogRepo for PgStore {
    async fn active_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
    ) -> Result<Option<Dialog>, StoreError> {
        let row = sqlx::query_as::<_, DialogRow>(SELECT_ACTIVE)
            .bind(user.0)
            .bind(persona.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(Dialog::from))
    }

    async fn open_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog, StoreError> {
        for _ in 0..ATTEMPTS {
            let inserted = sqlx::query_as::<_, DialogRow>(INSERT_ACTIVE)
                .bind(user.0)
                .bind(persona.0)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            if let Some(row) = inserted {
                return Ok(row.into());
            }
            // Someone else's dialog is active; a reset may replace it between
            // the two statements, hence the loop.
            if let Some(row) = sqlx::query_as::<_, DialogRow>(SELECT_ACTIVE)
                .bind(user.0)
                .bind(persona.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
            {
                return Ok(row.into());
            }
        }
        Err(contended())
    }

    async fn reset_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for _ in 0..ATTEMPTS {
            // Each statement sees what concurrent callers committed so far
            // (read committed), so a dialog another caller opened meanwhile
            // is deactivated on the next round instead of failing the insert.
            sqlx::query(
                "UPDATE dialogs SET active = FALSE, updated_at = $3 \
                 WHERE user_id = $1 AND persona_id = $2 AND active",
            )
            .bind(user.0)
            .bind(persona.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let inserted = sqlx::query_as::<_, DialogRow>(INSERT_ACTIVE)
                .bind(user.0)
                .bind(persona.0)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(row) = inserted {
                tx.commit().await.map_err(db)?;
                return Ok(row.into());
            }
        }
        Err(contended())
    }

    async fn dialog(&self, id: DialogId) -> Result<Option<Dialog>, StoreError> {
        let row = sqlx::query_as::<_, DialogRow>(concat!(
            "SELECT ",
            dialog_columns!(),
            " FROM dialogs WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(Dialog::from))
    }

    async fn add_intimacy(
        &self,
        id: DialogId,
        delta: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "UPDATE dialogs SET intimacy_score = intimacy_score + $2, \
             updated_at = GREATEST(updated_at, $3) \
             WHERE id = $1 RETURNING intimacy_score",
        )
        .bind(id.0)
        .bind(delta)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
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
                 reply_wanted = CASE WHEN reply_owner = $2 THEN reply_wanted \
                     WHEN reply_lease_until IS NULL OR reply_lease_until <= $3 THEN false \
                     ELSE true END, \
                 reply_owner = CASE WHEN reply_lease_until IS NULL OR reply_lease_until <= $3 OR reply_owner = $2 \
                     THEN $2 ELSE reply_owner END, \
                 reply_lease_until = CASE WHEN reply_lease_until IS NULL OR reply_lease_until <= $3 OR reply_owner = $2 \
                     THEN $4 ELSE reply_lease_until END \
             WHERE id = $1 \
             RETURNING COALESCE(reply_owner = $2, false)",
        )
        .bind(id.0)
        .bind(owner)
        .bind(now)
        .bind(until)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        taken.ok_or(StoreError::NotFound("dialog"))
    }

    async fn release_reply(&self, id: DialogId, owner: &str) -> Result<bool, StoreError> {
        // The request flag stays: the next taker of the lease clears it.
        let wanted: Option<bool> = sqlx::query_scalar(
            "UPDATE dialogs SET reply_owner = NULL, reply_lease_until = NULL \
             WHERE id = $1 AND reply_owner = $2 \
             RETURNING reply_wanted",
        )
        .bind(id.0)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(wanted.unwrap_or(false))
    }
}
