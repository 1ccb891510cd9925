//! Messages: never cached themselves (the history and the pending messages
//! are read from the store every time), but storing one keeps two cached
//! values right in place: the dialog's `updated_at`, and, for a reply that
//! carries token usage, its user's usage since the start of the spend day.
//!
//! The usage is what a per-user daily allowance is checked against before
//! every reply, so it is kept exact rather than deleted on each reply (which
//! would cost a store read on every next message): the reply's tokens are
//! added to the cached sum under the sum's lock, taken before the reply is
//! written. Everyone's usage is not cached.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vitte_domain::ids::{DialogId, MessageId, UserId};
use vitte_domain::model::{Message, MessageState, ModelUsage, NewMessage, TokenUsage};
use vitte_domain::ports::{CompletedReply, MessageRepo, ReplyCompletion, StoreError};

use super::dialogs::{edit_dialog, touch};
use super::{CachedStore, Change, Timed, may_have_written};
use crate::codec::DialogDto;

type Result<T> = std::result::Result<T, StoreError>;

/// A cached [`ModelUsage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ModelUsageDto {
    model: String,
    prompt_tokens: i64,
    completion_tokens: i64,
}

impl From<&ModelUsage> for ModelUsageDto {
    fn from(u: &ModelUsage) -> Self {
        let ModelUsage {
            model,
            prompt_tokens,
            completion_tokens,
        } = u.clone();
        Self {
            model,
            prompt_tokens,
            completion_tokens,
        }
    }
}

impl From<ModelUsageDto> for ModelUsage {
    fn from(u: ModelUsageDto) -> Self {
        let ModelUsageDto {
            model,
            prompt_tokens,
            completion_tokens,
        } = u;
        Self {
            model,
            prompt_tokens,
            completion_tokens,
        }
    }
}

/// The answer of `usage_since(Some(user), since)`, kept up to date as
/// replies are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UsageEntry {
    since: DateTime<Utc>,
    /// Per model, ordered by model name as the store orders them.
    models: Vec<ModelUsageDto>,
}

impl UsageEntry {
    fn new(since: DateTime<Utc>, usage: &[ModelUsage]) -> Self {
        Self {
            since,
            models: usage.iter().map(ModelUsageDto::from).collect(),
        }
    }

    fn answer(&self) -> Vec<ModelUsage> {
        self.models.iter().cloned().map(ModelUsage::from).collect()
    }

    /// Counts a reply created at `at` that cost `usage`, if it falls in the
    /// period this entry sums.
    fn add(&mut self, at: DateTime<Utc>, usage: &TokenUsage) -> Change {
        if at < self.since {
            return Change::Keep;
        }
        let (prompt, completion) = (
            i64::from(usage.prompt_tokens),
            i64::from(usage.completion_tokens),
        );
        match self
            .models
            .binary_search_by(|m| m.model.as_str().cmp(usage.model.as_str()))
        {
            Ok(i) => {
                let m = &mut self.models[i];
                m.prompt_tokens = m.prompt_tokens.saturating_add(prompt);
                m.completion_tokens = m.completion_tokens.saturating_add(completion);
            }
            Err(i) => self.models.insert(
                i,
                ModelUsageDto {
                    model: usage.model.clone(),
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                },
            ),
        }
        Change::Changed
    }
}

impl CachedStore {
    /// Moves the cached `updated_at` of `dialog` to the stored message's
    /// time, as the store did (a message stored before, returned again by an
    /// idempotent append, moves nothing), or deletes the cached dialog when
    /// the write failed in a way that may have stored it.
    async fn after_message_write(
        &self,
        dialog: DialogId,
        result: std::result::Result<DateTime<Utc>, &StoreError>,
    ) {
        let key = self.keys.dialog(dialog);
        match result {
            Ok(at) => {
                self.update(&key, |cached: &mut Option<DialogDto>| {
                    edit_dialog(cached, dialog, |d| touch(d, at))
                })
                .await;
            }
            Err(e) if may_have_written(e) => self.invalidate(vec![key]).await,
            Err(_) => {}
        }
    }
}

#[async_trait]
impl MessageRepo for CachedStore {
    async fn append_message(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Message> {
        let result = self.inner.append_message(message, now).await;
        self.after_message_write(message.dialog_id, result.as_ref().map(|m| m.created_at))
            .await;
        // Replies come through `complete_reply`; a message stored here with
        // a cost is rare enough to just drop the sum it changes.
        if message.usage.is_some()
            && (result.is_ok() || result.as_ref().err().is_some_and(may_have_written))
            && let Some(owner) = self.dialog_owner(message.dialog_id).await
        {
            self.invalidate(vec![self.keys.usage(owner.user)]).await;
        }
        result
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>> {
        self.inner.message(id).await
    }

    async fn recent_messages(&self, dialog: DialogId, limit: u32) -> Result<Vec<Message>> {
        self.inner.recent_messages(dialog, limit).await
    }

    async fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>> {
        self.inner.pending_messages(dialog).await
    }

    async fn set_message_state(&self, ids: &[MessageId], state: MessageState) -> Result<()> {
        self.inner.set_message_state(ids, state).await
    }

    async fn append_from_update(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message> {
        // A user's message: it carries no cost, so only the dialog moves.
        let result = self.inner.append_from_update(message, now).await;
        self.after_message_write(message.dialog_id, result.as_ref().map(|m| m.created_at))
            .await;
        result
    }

    async fn complete_reply(
        &self,
        completion: &ReplyCompletion<'_>,
        now: DateTime<Utc>,
    ) -> Result<CompletedReply> {
        let reply = completion.reply;
        let dialog = reply.dialog_id;
        let result = match &reply.usage {
            None => self.inner.complete_reply(completion, now).await,
            Some(usage) => match self.dialog_owner(dialog).await {
                // The dialog is gone (the write will say so) or its owner
                // cannot be read: no known sum to keep.
                None => self.inner.complete_reply(completion, now).await,
                Some(owner) => {
                    let key = self.keys.usage(owner.user);
                    // Held from before the write: a load of the sum in this
                    // process then either precedes the write (and the reply is
                    // added below) or follows the addition.
                    let seat = self.flights.seat(&key);
                    let held = seat.lock().await;
                    let result = self.inner.complete_reply(completion, now).await;
                    match &result {
                        Ok(stored) => {
                            let at = stored.message.created_at;
                            self.update_held(&key, |sum: &mut UsageEntry| sum.add(at, usage))
                                .await;
                        }
                        Err(e) if may_have_written(e) => {
                            self.delete_held(std::slice::from_ref(&key)).await;
                            drop(held);
                            self.redelete_later(vec![key]);
                        }
                        Err(_) => {}
                    }
                    result
                }
            },
        };
        self.after_message_write(dialog, result.as_ref().map(|c| c.message.created_at))
            .await;
        self.after_intimacy(dialog, result.as_ref().map(|c| c.intimacy), now)
            .await;
        result
    }

    async fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>> {
        self.inner.reopen_last_exchange(dialog).await
    }

    async fn dialogs_with_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DialogId>> {
        self.inner.dialogs_with_pending(older_than, limit).await
    }

    async fn usage_since(
        &self,
        user: Option<UserId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ModelUsage>> {
        let Some(user) = user else {
            // Everyone's: changed by every reply of every process; the
            // caller decides how often it is worth a read.
            return self.inner.usage_since(None, since).await;
        };
        let ttl: Duration = self.policy.usage_ttl;
        let (entry, _) = self
            .read_through(
                &self.keys.usage(user),
                |_| Some(ttl),
                |e: &Timed<UsageEntry>| e.value.since == since,
                move || async move {
                    let usage = self.inner.usage_since(Some(user), since).await?;
                    Ok(Timed::new(UsageEntry::new(since, &usage), ttl))
                },
            )
            .await?;
        Ok(entry.value.answer())
    }
}
