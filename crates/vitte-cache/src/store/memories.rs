//! Long-term memory: a dialog's rolling summary and its pinned facts are
//! cached, each under its own key; storing a summary or a fact deletes the
//! key it changes. Forgetting a memory names only the memory, so every
//! cached memory leaves a pointer from its id to its dialog.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vitte_domain::ids::{DialogId, MemoryId, MessageId};
use vitte_domain::model::{Memory, MemoryKind};
use vitte_domain::ports::{MemoryRepo, StoreError};

use super::{CachedStore, Lookup, wrote};

type Result<T> = std::result::Result<T, StoreError>;

/// How much longer than the memories themselves their pointers live, so
/// forgetting one finds its pointer whenever it is cached.
const POINTER_MARGIN: Duration = Duration::from_secs(60);

/// A cached [`Memory`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemoryDto {
    id: MemoryId,
    dialog_id: DialogId,
    kind: MemoryKind,
    text: String,
    covers_until: Option<MessageId>,
    updated_at: DateTime<Utc>,
}

impl From<&Memory> for MemoryDto {
    fn from(m: &Memory) -> Self {
        let Memory {
            id,
            dialog_id,
            kind,
            text,
            covers_until,
            updated_at,
        } = m.clone();
        Self {
            id,
            dialog_id,
            kind,
            text,
            covers_until,
            updated_at,
        }
    }
}

impl From<MemoryDto> for Memory {
    fn from(m: MemoryDto) -> Self {
        let MemoryDto {
            id,
            dialog_id,
            kind,
            text,
            covers_until,
            updated_at,
        } = m;
        Self {
            id,
            dialog_id,
            kind,
            text,
            covers_until,
            updated_at,
        }
    }
}

impl CachedStore {
    /// Leaves a pointer from each memory's id to its dialog, before the
    /// memories themselves are cached.
    async fn remember_memories<'a>(&self, memories: impl IntoIterator<Item = &'a Memory>) {
        let ttl = self.policy.memory_ttl + POINTER_MARGIN;
        for memory in memories {
            self.put(&self.keys.memory_dialog(memory.id), &memory.dialog_id, ttl)
                .await;
        }
    }
}

#[async_trait]
impl MemoryRepo for CachedStore {
    async fn summary(&self, dialog: DialogId) -> Result<Option<Memory>> {
        let ttl = self.policy.memory_ttl;
        let (summary, _) = self
            .read_through(
                &self.keys.summary(dialog),
                |_| Some(ttl),
                |_: &Option<MemoryDto>| true,
                move || async move {
                    let summary = self.inner.summary(dialog).await?;
                    self.remember_memories(&summary).await;
                    Ok(summary.as_ref().map(MemoryDto::from))
                },
            )
            .await?;
        Ok(summary.map(Memory::from))
    }

    async fn put_summary(
        &self,
        dialog: DialogId,
        text: &str,
        covers_until: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Memory> {
        let result = self
            .inner
            .put_summary(dialog, text, covers_until, now)
            .await;
        if wrote(&result) {
            self.invalidate(vec![self.keys.summary(dialog)]).await;
        }
        result
    }

    async fn add_fact(&self, dialog: DialogId, text: &str, now: DateTime<Utc>) -> Result<Memory> {
        let result = self.inner.add_fact(dialog, text, now).await;
        if wrote(&result) {
            self.invalidate(vec![self.keys.facts(dialog)]).await;
        }
        result
    }

    async fn facts(&self, dialog: DialogId) -> Result<Vec<Memory>> {
        let ttl = self.policy.memory_ttl;
        let (facts, _) = self
            .read_through(
                &self.keys.facts(dialog),
                |_| Some(ttl),
                |_: &Vec<MemoryDto>| true,
                move || async move {
                    let facts = self.inner.facts(dialog).await?;
                    self.remember_memories(&facts).await;
                    Ok(facts.iter().map(MemoryDto::from).collect())
                },
            )
            .await?;
        Ok(facts.into_iter().map(Memory::from).collect())
    }

    async fn delete_memory(&self, id: MemoryId) -> Result<()> {
        let pointer = self.keys.memory_dialog(id);
        let result = self.inner.delete_memory(id).await;
        // Without a pointer the memory is not cached: pointers outlive the
        // entries that hold their memory, unless the cache evicted one
        // early under memory pressure, and then that entry lives out its TTL.
        if wrote(&result)
            && let Lookup::Hit(dialog) = self.lookup::<DialogId>(&pointer).await
        {
            self.invalidate(vec![
                self.keys.summary(dialog),
                self.keys.facts(dialog),
                pointer,
            ])
            .await;
        }
        result
    }
}
