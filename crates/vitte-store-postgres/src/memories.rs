//! [`MemoryRepo`] on the `memories` table: one rolling summary per dialog
//! (partial unique index `memories_one_summary`) and any number of facts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{DialogId, MemoryId, MessageId};
use vitte_domain::model::{Memory, MemoryKind};
use vitte_domain::ports::{MemoryRepo, StoreError};

use crate::PgStore;
use crate::error::{corrupt, db};

macro_rules! memory_columns {
    () => {
        "id, dialog_id, kind, text, covers_until, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct MemoryRow {
    id: i64,
    dialog_id: i64,
    kind: String,
    text: String,
    covers_until: Option<i64>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<MemoryRow> for Memory {
    type Error = StoreError;

    fn try_from(r: MemoryRow) -> Result<Self, StoreError> {
        Ok(Memory {
            id: MemoryId(r.id),
            dialog_id: DialogId(r.dialog_id),
            kind: MemoryKind::parse(&r.kind).map_err(corrupt)?,
            text: r.text,
            covers_until: r.covers_until.map(MessageId),
            updated_at: r.updated_at,
        })
    }
}

#[async_trait]
impl MemoryRepo for PgStore {
    async fn summary(&self, dialog: DialogId) -> Result<Option<Memory>, StoreError> {
        sqlx::query_as::<_, MemoryRow>(concat!(
            "SELECT ",
            memory_columns!(),
            " FROM memories WHERE dialog_id = $1 AND kind = 'summary'"
        ))
        .bind(dialog.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(Memory::try_from)
        .transpose()
    }

    async fn put_summary(
        &self,
        dialog: DialogId,
        text: &str,
        covers_until: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Memory, StoreError> {
        sqlx::query_as::<_, MemoryRow>(concat!(
            "INSERT INTO memories (dialog_id, kind, text, covers_until, updated_at) \
             VALUES ($1, 'summary', $2, $3, $4) \
             ON CONFLICT (dialog_id) WHERE kind = 'summary' DO UPDATE SET \
                 text = EXCLUDED.text, \
                 covers_until = EXCLUDED.covers_until, \
                 updated_at = EXCLUDED.updated_at \
             RETURNING ",
            memory_columns!()
        ))
        .bind(dialog.0)
        .bind(text)
        .bind(covers_until.0)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?
        .try_into()
    }

    async fn add_fact(
        &self,
        dialog: DialogId,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Memory, StoreError> {
        sqlx::query_as::<_, MemoryRow>(concat!(
            "INSERT INTO memories (dialog_id, kind, text, updated_at) \
             VALUES ($1, 'fact', $2, $3) \
             RETURNING ",
            memory_columns!()
        ))
        .bind(dialog.0)
        .bind(text)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?
        .try_into()
    }

    async fn facts(&self, dialog: DialogId) -> Result<Vec<Memory>, StoreError> {
        sqlx::query_as::<_, MemoryRow>(concat!(
            "SELECT ",
            memory_columns!(),
            " FROM memories WHERE dialog_id = $1 AND kind = 'fact' ORDER BY id"
        ))
        .bind(dialog.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(Memory::try_from)
        .collect()
    }

    async fn delete_memory(&self, id: MemoryId) -> Result<(), StoreError> {
        // Forgetting is idempotent: a memory already gone is what was asked for.
        sqlx::query("DELETE FROM memories WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
