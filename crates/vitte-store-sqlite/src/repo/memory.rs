//! Long-term memory: one rolling summary per dialog (partial unique index
//! `memories_one_summary`) and pinned facts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use vitte_domain::ids::{DialogId, MemoryId, MessageId};
use vitte_domain::model::{Memory, MemoryKind};
use vitte_domain::ports::{MemoryRepo, StoreError};

use crate::SqliteStore;
use crate::codec::{col, micros, parsed_col, time_col};
use crate::error::{db_err, or_missing};

macro_rules! memory_columns {
    () => {
        "id, dialog_id, kind, text, covers_until, updated_at"
    };
}

fn memory_from_row(row: &SqliteRow) -> Result<Memory, StoreError> {
    Ok(Memory {
        id: MemoryId(col(row, "id")?),
        dialog_id: DialogId(col(row, "dialog_id")?),
        kind: parsed_col(row, "kind", MemoryKind::parse)?,
        text: col(row, "text")?,
        covers_until: col::<Option<i64>>(row, "covers_until")?.map(MessageId),
        updated_at: time_col(row, "updated_at")?,
    })
}

#[async_trait]
impl MemoryRepo for SqliteStore {
    async fn summary(&self, dialog: DialogId) -> Result<Option<Memory>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            memory_columns!(),
            " FROM memories WHERE dialog_id = ?1 AND kind = 'summary'"
        ))
        .bind(dialog.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(memory_from_row)
        .transpose()
    }

    async fn put_summary(
        &self,
        dialog: DialogId,
        text: &str,
        covers_until: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Memory, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO memories (dialog_id, kind, text, covers_until, updated_at) \
             VALUES (?1, 'summary', ?2, ?3, ?4) \
             ON CONFLICT (dialog_id) WHERE kind = 'summary' DO UPDATE SET \
                 text = excluded.text, covers_until = excluded.covers_until, \
                 updated_at = excluded.updated_at \
             RETURNING ",
            memory_columns!()
        ))
        .bind(dialog.0)
        .bind(text)
        .bind(covers_until.0)
        .bind(micros(now))
        .fetch_one(&self.writer)
        .await
        .map_err(or_missing("dialog"))?;
        memory_from_row(&row)
    }

    async fn add_fact(
        &self,
        dialog: DialogId,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Memory, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO memories (dialog_id, kind, text, updated_at) \
             VALUES (?1, 'fact', ?2, ?3) RETURNING ",
            memory_columns!()
        ))
        .bind(dialog.0)
        .bind(text)
        .bind(micros(now))
        .fetch_one(&self.writer)
        .await
        .map_err(or_missing("dialog"))?;
        memory_from_row(&row)
    }

    async fn facts(&self, dialog: DialogId) -> Result<Vec<Memory>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            memory_columns!(),
            " FROM memories WHERE dialog_id = ?1 AND kind = 'fact' ORDER BY id"
        ))
        .bind(dialog.0)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(memory_from_row)
        .collect()
    }

    async fn delete_memory(&self, id: MemoryId) -> Result<(), StoreError> {
        // Forgetting is idempotent: a memory already gone is what was asked for.
        sqlx::query("DELETE FROM memories WHERE id = ?1")
            .bind(id.0)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
