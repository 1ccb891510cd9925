//! Chat messages. The partial unique index `messages_one_per_update` keeps
//! one message per Telegram update, which makes storing a user message
//! idempotent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use vitte_domain::ids::{DialogId, MessageId, UpdateId, UserId};
use vitte_domain::model::{Message, MessageState, ModelUsage, NewMessage, Role, TokenUsage};
use vitte_domain::ports::{CompletedReply, MessageRepo, ReplyCompletion, StoreError};

use crate::SqliteStore;
use crate::codec::{col, corrupt, micros, parsed_col, time_col, to_json};
use crate::error::{db_err, or_missing};

macro_rules! message_columns {
    () => {
        "id, dialog_id, role, text, state, telegram_message_id, update_id, reply_to, model, \
         prompt_tokens, completion_tokens, created_at"
    };
}

fn message_from_row(row: &SqliteRow) -> Result<Message, StoreError> {
    let usage = match (
        col::<Option<String>>(row, "model")?,
        col::<Option<i32>>(row, "prompt_tokens")?,
        col::<Option<i32>>(row, "completion_tokens")?,
    ) {
        (None, None, None) => None,
        (Some(model), Some(prompt_tokens), Some(completion_tokens)) => Some(TokenUsage {
            model,
            prompt_tokens,
            completion_tokens,
        }),
        _ => {
            return Err(StoreError::Corrupt(
                "a message has only part of its token usage".to_owned(),
            ));
        }
    };
    Ok(Message {
        id: MessageId(col(row, "id")?),
        dialog_id: DialogId(col(row, "dialog_id")?),
        role: parsed_col(row, "role", Role::parse)?,
        text: col(row, "text")?,
        state: parsed_col(row, "state", MessageState::parse)?,
        telegram_message_id: col(row, "telegram_message_id")?,
        update_id: col::<Option<i64>>(row, "update_id")?
            .map(UpdateId::try_from)
            .transpose()
            .map_err(corrupt)?,
        reply_to: col::<Option<i64>>(row, "reply_to")?.map(MessageId),
        usage,
        created_at: time_col(row, "created_at")?,
    })
}

/// Stores a message and moves its dialog's `updated_at` (the latest message
/// in either direction), inside the caller's transaction; `None` (and
/// nothing written) when a message from the same update is stored.
async fn insert_message(
    conn: &mut SqliteConnection,
    message: &NewMessage,
    now: DateTime<Utc>,
) -> Result<Option<Message>, StoreError> {
    let row = sqlx::query(concat!(
        "INSERT INTO messages (dialog_id, role, text, state, telegram_message_id, update_id, \
                               reply_to, model, prompt_tokens, completion_tokens, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (update_id) WHERE update_id IS NOT NULL DO NOTHING RETURNING ",
        message_columns!()
    ))
    .bind(message.dialog_id.0)
    .bind(message.role.as_str())
    .bind(&message.text)
    .bind(message.state.as_str())
    .bind(message.telegram_message_id)
    .bind(message.update_id.map(UpdateId::get))
    .bind(message.reply_to.map(|m| m.0))
    .bind(message.usage.as_ref().map(|u| u.model.as_str()))
    .bind(message.usage.as_ref().map(|u| u.prompt_tokens))
    .bind(message.usage.as_ref().map(|u| u.completion_tokens))
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(or_missing("dialog"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    sqlx::query("UPDATE dialogs SET updated_at = max(updated_at, ?2) WHERE id = ?1")
        .bind(message.dialog_id.0)
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    message_from_row(&row).map(Some)
}

/// The message stored from `update`, which [`insert_message`] found already there.
async fn message_from_update(
    conn: &mut SqliteConnection,
    update: Option<UpdateId>,
) -> Result<Message, StoreError> {
    // Only a conflict on the update index makes the insert do nothing.
    let update = update.ok_or_else(|| {
        StoreError::Conflict("a message without an update was not stored".to_owned())
    })?;
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE update_id = ?1"
    ))
    .bind(update.get())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound("message"))?;
    message_from_row(&row)
}

/// User messages of the dialog in state `from`, moved to `pending`, with
/// ids above `after` and below `before`; returns their ids, oldest first.
async fn reopen_users(
    conn: &mut SqliteConnection,
    dialog: DialogId,
    from: MessageState,
    after: Option<MessageId>,
    before: Option<MessageId>,
) -> Result<Vec<MessageId>, StoreError> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE messages SET state = 'pending' \
         WHERE dialog_id = ?1 AND role = 'user' AND state = ?2 \
           AND (?3 IS NULL OR id > ?3) AND (?4 IS NULL OR id < ?4) \
         RETURNING id",
    )
    .bind(dialog.0)
    .bind(from.as_str())
    .bind(after.map(|id| id.0))
    .bind(before.map(|id| id.0))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    // RETURNING gives rows in no promised order.
    ids.sort_unstable();
    Ok(ids.into_iter().map(MessageId).collect())
}

/// Ids as a JSON array, so a whole set binds as one parameter (`json_each`).
fn id_list(ids: &[MessageId]) -> Result<String, StoreError> {
    to_json(&ids.iter().map(|m| m.0).collect::<Vec<_>>())
}

#[async_trait]
impl MessageRepo for SqliteStore {
    async fn append_message(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message, StoreError> {
        let mut tx = self.write_tx().await?;
        let stored = match insert_message(&mut tx, message, now).await? {
            Some(stored) => stored,
            None => message_from_update(&mut tx, message.update_id).await?,
        };
        tx.commit().await.map_err(db_err)?;
        Ok(stored)
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = ?1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(message_from_row)
        .transpose()
    }

    async fn recent_messages(
        &self,
        dialog: DialogId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        sqlx::query(concat!(
            "SELECT * FROM (SELECT ",
            message_columns!(),
            " FROM messages WHERE dialog_id = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id"
        ))
        .bind(dialog.0)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE dialog_id = ?1 AND role = 'user' AND state = 'pending' \
              ORDER BY id"
        ))
        .bind(dialog.0)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn set_message_state(
        &self,
        ids: &[MessageId],
        state: MessageState,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let done = sqlx::query(
            "UPDATE messages SET state = ?2 WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(id_list(ids)?)
        .bind(state.as_str())
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("message"));
        }
        Ok(())
    }

    async fn append_from_update(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message, StoreError> {
        let Some(update) = message.update_id else {
            return Err(StoreError::Conflict(
                "a message stored with its update needs the update's id".to_owned(),
            ));
        };
        let mut tx = self.write_tx().await?;
        let stored = match insert_message(&mut tx, message, now).await? {
            Some(stored) => stored,
            None => message_from_update(&mut tx, Some(update)).await?,
        };
        sqlx::query(
            "UPDATE inbound_updates SET state = 'done', finished_at = ?2, leased_until = NULL \
             WHERE update_id = ?1 AND state = 'pending'",
        )
        .bind(update.get())
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(stored)
    }

    async fn complete_reply(
        &self,
        completion: &ReplyCompletion<'_>,
        now: DateTime<Utc>,
    ) -> Result<CompletedReply, StoreError> {
        let mut tx = self.write_tx().await?;
        if !completion.answered.is_empty() {
            sqlx::query(
                "UPDATE messages SET state = 'answered' \
                 WHERE id IN (SELECT value FROM json_each(?1))",
            )
            .bind(id_list(completion.answered)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let message = insert_message(&mut tx, completion.reply, now)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(
                    "a message from the reply's update is already stored".to_owned(),
                )
            })?;
        let (intimacy, reply_wanted): (i64, bool) = sqlx::query_as(
            "UPDATE dialogs SET intimacy_score = intimacy_score + ?2, \
                 reply_owner = CASE WHEN reply_owner = ?3 THEN NULL ELSE reply_owner END, \
                 reply_lease_until = CASE WHEN reply_owner = ?3 THEN NULL \
                                          ELSE reply_lease_until END \
             WHERE id = ?1 RETURNING intimacy_score, reply_wanted",
        )
        .bind(completion.reply.dialog_id.0)
        .bind(completion.intimacy)
        .bind(completion.lease_owner)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("dialog"))?;
        tx.commit().await.map_err(db_err)?;
        Ok(CompletedReply {
            message,
            intimacy,
            reply_wanted,
        })
    }

    async fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>, StoreError> {
        // The immediate transaction holds the write lock throughout, so
        // concurrent retries take turns and only one reopens an exchange.
        // A missing dialog has no messages, hence nothing to retry.
        let mut tx = self.write_tx().await?;
        let failed = reopen_users(&mut tx, dialog, MessageState::Failed, None, None).await?;
        if !failed.is_empty() {
            tx.commit().await.map_err(db_err)?;
            return Ok(failed);
        }

        let sent: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM messages \
             WHERE dialog_id = ?1 AND role = 'assistant' AND state = 'sent' \
             ORDER BY id DESC LIMIT 2",
        )
        .bind(dialog.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(&last) = sent.first() else {
            return Ok(Vec::new());
        };
        let previous = sent.get(1).copied().map(MessageId);
        let reopened = reopen_users(
            &mut tx,
            dialog,
            MessageState::Answered,
            previous,
            Some(MessageId(last)),
        )
        .await?;
        // A reply that answered nothing (a greeting) is not an exchange:
        // leave it, and everything else, as it was.
        if reopened.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE messages SET state = 'dropped' WHERE id = ?1")
            .bind(last)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(reopened)
    }

    async fn dialogs_with_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DialogId>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT dialog_id FROM messages \
             WHERE state = 'pending' AND role = 'user' AND created_at < ?1 \
             GROUP BY dialog_id ORDER BY min(created_at), min(id) LIMIT ?2",
        )
        .bind(micros(older_than))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(ids.into_iter().map(DialogId).collect())
    }

    async fn usage_since(
        &self,
        user: Option<UserId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ModelUsage>, StoreError> {
        // Two statements rather than `?2 IS NULL OR ...`, so each gets the
        // plan that suits it: a time range for everyone, the person's
        // dialogs for one.
        let query = match user {
            None => sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT model, sum(prompt_tokens), sum(completion_tokens) FROM messages \
                 WHERE model IS NOT NULL AND role = 'assistant' AND created_at >= ?1 \
                 GROUP BY model ORDER BY model",
            )
            .bind(micros(since)),
            Some(user) => sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT m.model, sum(m.prompt_tokens), sum(m.completion_tokens) \
                 FROM dialogs d JOIN messages m ON m.dialog_id = d.id \
                 WHERE d.user_id = ?2 AND m.model IS NOT NULL AND m.role = 'assistant' \
                   AND m.created_at >= ?1 \
                 GROUP BY m.model ORDER BY m.model",
            )
            .bind(micros(since))
            .bind(user.0),
        };
        let rows = query.fetch_all(&self.reader).await.map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(model, prompt_tokens, completion_tokens)| ModelUsage {
                model,
                prompt_tokens,
                completion_tokens,
            })
            .collect())
    }
}
