//! [`MessageRepo`] on the `messages` table. Storing a message also moves its
//! dialog's `updated_at` (the latest message in either direction). The
//! partial unique index `messages_one_per_update` keeps one message per
//! Telegram update, which makes storing a user message idempotent.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vitte_domain::ids::{DialogId, MessageId, UpdateId, UserId};
use vitte_domain::model::{Message, MessageState, ModelUsage, NewMessage, Role, TokenUsage};
use vitte_domain::ports::{CompletedReply, MessageRepo, ReplyCompletion, StoreError};

use crate::PgStore;
use crate::error::{corrupt, db};

macro_rules! message_columns {
    () => {
        "id, dialog_id, role, text, state, telegram_message_id, update_id, reply_to, model, \
         prompt_tokens, completion_tokens, created_at"
    };
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    dialog_id: i64,
    role: String,
    text: String,
    state: String,
    telegram_message_id: Option<i64>,
    update_id: Option<i64>,
    reply_to: Option<i64>,
    model: Option<String>,
    prompt_tokens: Option<i32>,
    completion_tokens: Option<i32>,
    created_at: DateTime<Utc>,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;

    fn try_from(r: MessageRow) -> Result<Self, StoreError> {
        let usage = match (r.model, r.prompt_tokens, r.completion_tokens) {
            (Some(model), Some(prompt_tokens), Some(completion_tokens)) => Some(TokenUsage {
                model,
                prompt_tokens,
                completion_tokens,
            }),
            (None, None, None) => None,
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "message {} has partial token usage",
                    r.id
                )));
            }
        };
        Ok(Message {
            id: MessageId(r.id),
            dialog_id: DialogId(r.dialog_id),
            role: Role::parse(&r.role).map_err(corrupt)?,
            text: r.text,
            state: MessageState::parse(&r.state).map_err(corrupt)?,
            telegram_message_id: r.telegram_message_id,
            update_id: r
                .update_id
                .map(UpdateId::try_from)
                .transpose()
                .map_err(corrupt)?,
            reply_to: r.reply_to.map(MessageId),
            usage,
            created_at: r.created_at,
        })
    }
}

/// The insert of a new message, parameters `$1`…`$11` as [`bind_new`]
/// binds them, returning the stored row; a message of an update already
/// stored is not inserted again.
macro_rules! insert_message {
    () => {
        concat!(
            "INSERT INTO messages (dialog_id, role, text, state, telegram_message_id, update_id, \
                                   reply_to, model, prompt_tokens, completion_tokens, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (update_id) WHERE update_id IS NOT NULL DO NOTHING \
             RETURNING ",
            message_columns!()
        )
    };
}

/// The first part of a statement storing a message, `$1`…`$11` bound by
/// [`bind_new`]: `m` holds the stored row (none when a message of the same
/// update was stored before), and its dialog's `updated_at` moves with it.
/// One statement commits both, in one round trip.
macro_rules! store_message {
    () => {
        concat!(
            "WITH m AS (",
            insert_message!(),
            "), d AS ( \
                 UPDATE dialogs SET updated_at = GREATEST(updated_at, $11) \
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM m) \
             )"
        )
    };
}

impl PgStore {
    /// Runs `sql`, a statement made of [`store_message!`] and what follows,
    /// selecting `m`; when the insert did nothing, answers the message
    /// stored before from the same update.
    async fn store_message(
        &self,
        sql: &'static str,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message, StoreError> {
        let row = bind_new(sqlx::query_as::<_, MessageRow>(sql), message, now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(row) => row.try_into(),
            None => from_update(&self.pool, message.update_id).await,
        }
    }
}

/// A stored reply and the dialog's score after it.
#[derive(sqlx::FromRow)]
struct CompletedRow {
    #[sqlx(flatten)]
    message: MessageRow,
    intimacy_score: i64,
    reply_wanted: bool,
}

type QueryAs<'q, T> = sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>;

/// Binds a new message as `$1`…`$11` of [`insert_message!`].
fn bind_new<'q, T>(query: QueryAs<'q, T>, m: &'q NewMessage, now: DateTime<Utc>) -> QueryAs<'q, T> {
    let usage = m.usage.as_ref();
    query
        .bind(m.dialog_id.0)
        .bind(m.role.as_str())
        .bind(&m.text)
        .bind(m.state.as_str())
        .bind(m.telegram_message_id)
        .bind(m.update_id.map(UpdateId::get))
        .bind(m.reply_to.map(|id| id.0))
        .bind(usage.map(|u| u.model.as_str()))
        .bind(usage.map(|u| u.prompt_tokens))
        .bind(usage.map(|u| u.completion_tokens))
        .bind(now)
}

fn raw_ids(ids: &[MessageId]) -> Vec<i64> {
    ids.iter().map(|id| id.0).collect()
}

/// The message stored from `update`, found when storing it again did nothing.
async fn from_update(pool: &sqlx::PgPool, update: Option<UpdateId>) -> Result<Message, StoreError> {
    // Only a conflict on the update index makes the insert do nothing.
    let update = update.ok_or_else(|| {
        StoreError::Conflict("a message without an update was not stored".to_owned())
    })?;
    sqlx::query_as::<_, MessageRow>(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE update_id = $1"
    ))
    .bind(update.get())
    .fetch_optional(pool)
    .await
    .map_err(db)?
    .ok_or(StoreError::NotFound("message"))?
    .try_into()
}

/// User messages of the dialog in state `from`, moved to `pending`, with
/// ids above `after` and below `before`; returns their ids, oldest first.
async fn reopen_users(
    conn: &mut PgConnection,
    dialog: DialogId,
    from: MessageState,
    after: Option<MessageId>,
    before: Option<MessageId>,
) -> Result<Vec<MessageId>, StoreError> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE messages SET state = 'pending' \
         WHERE dialog_id = $1 AND role = 'user' AND state = $2 \
           AND ($3::BIGINT IS NULL OR id > $3) AND ($4::BIGINT IS NULL OR id < $4) \
         RETURNING id",
    )
    .bind(dialog.0)
    .bind(from.as_str())
    .bind(after.map(|id| id.0))
    .bind(before.map(|id| id.0))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    ids.sort_unstable();
    Ok(ids.into_iter().map(MessageId).collect())
}

#[async_trait]
impl MessageRepo for PgStore {
    async fn append_message(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message, StoreError> {
        self.store_message(concat!(store_message!(), " SELECT * FROM m"), message, now)
            .await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(Message::try_from)
        .transpose()
    }

    async fn recent_messages(
        &self,
        dialog: DialogId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT * FROM (SELECT ",
            message_columns!(),
            " FROM messages WHERE dialog_id = $1 ORDER BY id DESC LIMIT $2) newest ORDER BY id"
        ))
        .bind(dialog.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(Message::try_from)
        .collect()
    }

    async fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>, StoreError> {
        sqlx::query_as::<_, MessageRow>(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE dialog_id = $1 AND role = 'user' AND state = 'pending' \
              ORDER BY id"
        ))
        .bind(dialog.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(Message::try_from)
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
        let done = sqlx::query("UPDATE messages SET state = $2 WHERE id = ANY($1)")
            .bind(raw_ids(ids))
            .bind(state.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
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
        if message.update_id.is_none() {
            return Err(StoreError::Conflict(
                "a message stored with its update needs the update's id".to_owned(),
            ));
        }
        // The update's end joins the same statement. Stored before (the
        // handler ran again after a crash), the message stored then is the
        // answer, and the update is finished all the same.
        self.store_message(
            concat!(
                store_message!(),
                ", u AS ( \
                     UPDATE inbound_updates \
                     SET state = 'done', finished_at = $11, leased_until = NULL \
                     WHERE update_id = $6 AND state = 'pending' \
                 ) \
                 SELECT * FROM m"
            ),
            message,
            now,
        )
        .await
    }

    async fn complete_reply(
        &self,
        completion: &ReplyCompletion<'_>,
        now: DateTime<Utc>,
    ) -> Result<CompletedReply, StoreError> {
        // One statement: the reply, the answered messages, the dialog's
        // intimacy, `updated_at` and lease commit together, in one round trip.
        // Nothing but the insert's conflict leaves `m` empty, and then
        // nothing else is written either.
        let row = bind_new(
            sqlx::query_as::<_, CompletedRow>(concat!(
                "WITH m AS (",
                insert_message!(),
                "), a AS ( \
                     UPDATE messages SET state = 'answered' \
                     WHERE id = ANY($12) AND EXISTS (SELECT 1 FROM m) \
                 ), d AS ( \
                     UPDATE dialogs SET updated_at = GREATEST(updated_at, $11), \
                         intimacy_score = intimacy_score + $13, \
                         reply_owner = CASE WHEN reply_owner = $14 THEN NULL ELSE reply_owner END, \
                         reply_lease_until = CASE WHEN reply_owner = $14 THEN NULL \
                                                  ELSE reply_lease_until END \
                     WHERE id = $1 AND EXISTS (SELECT 1 FROM m) \
                     RETURNING intimacy_score, reply_wanted \
                 ) \
                 SELECT m.*, d.intimacy_score, d.reply_wanted FROM m CROSS JOIN d"
            )),
            completion.reply,
            now,
        )
        .bind(raw_ids(completion.answered))
        .bind(completion.intimacy)
        .bind(completion.lease_owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| {
            StoreError::Conflict("a message from the reply's update is already stored".to_owned())
        })?;
        Ok(CompletedReply {
            message: row.message.try_into()?,
            intimacy: row.intimacy_score,
            reply_wanted: row.reply_wanted,
        })
    }

    async fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Locking the dialog makes concurrent retries run one after another,
        // as they do on SQLite: each sees what the previous one reopened.
        // A missing dialog has nothing to retry.
        let locked = sqlx::query("SELECT id FROM dialogs WHERE id = $1 FOR UPDATE")
            .bind(dialog.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if locked.is_none() {
            return Ok(Vec::new());
        }

        let failed = reopen_users(&mut tx, dialog, MessageState::Failed, None, None).await?;
        if !failed.is_empty() {
            tx.commit().await.map_err(db)?;
            return Ok(failed);
        }

        let sent: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM messages \
             WHERE dialog_id = $1 AND role = 'assistant' AND state = 'sent' \
             ORDER BY id DESC LIMIT 2",
        )
        .bind(dialog.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
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
        sqlx::query("UPDATE messages SET state = 'dropped' WHERE id = $1")
            .bind(last)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(reopened)
    }

    async fn dialogs_with_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DialogId>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT dialog_id FROM messages \
             WHERE state = 'pending' AND role = 'user' AND created_at < $1 \
             GROUP BY dialog_id \
             ORDER BY MIN(created_at), MIN(id) \
             LIMIT $2",
        )
        .bind(older_than)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(DialogId).collect())
    }

    async fn usage_since(
        &self,
        user: Option<UserId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ModelUsage>, StoreError> {
        // Two statements rather than `$2 IS NULL OR ...`, so each gets the
        // plan that suits it: a time range for everyone, the person's
        // dialogs for one.
        let query = match user {
            None => sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT model, SUM(prompt_tokens)::BIGINT, SUM(completion_tokens)::BIGINT \
                 FROM messages \
                 WHERE model IS NOT NULL AND role = 'assistant' AND created_at >= $1 \
                 GROUP BY model ORDER BY model",
            )
            .bind(since),
            Some(user) => sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT m.model, SUM(m.prompt_tokens)::BIGINT, SUM(m.completion_tokens)::BIGINT \
                 FROM dialogs d JOIN messages m ON m.dialog_id = d.id \
                 WHERE d.user_id = $2 AND m.model IS NOT NULL AND m.role = 'assistant' \
                   AND m.created_at >= $1 \
                 GROUP BY m.model ORDER BY m.model",
            )
            .bind(since)
            .bind(user.0),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(db)?;
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
