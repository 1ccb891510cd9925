//! [`MessageRepo`] on the `messages` table. Storing a message also moves its
//! dialog's `updated_at` (the latest message in either direction).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use vitte_domain::ids::{DialogId, MessageId, UpdateId};
use vitte_domain::model::{Message, MessageState, NewMessage, Role, TokenUsage};
use vitte_domain::ports::{MessageRepo, StoreError};

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

fn raw_ids(ids: &[MessageId]) -> Vec<i64> {
    ids.iter().map(|id| id.0).collect()
}

/// Inserts the message and moves its dialog's `updated_at` forward.
async fn insert(
    conn: &mut PgConnection,
    m: &NewMessage,
    now: DateTime<Utc>,
) -> Result<Message, StoreError> {
    let usage = m.usage.as_ref();
    let row = sqlx::query_as::<_, MessageRow>(concat!(
        "INSERT INTO messages (dialog_id, role, text, state, telegram_message_id, update_id, \
                               reply_to, model, prompt_tokens, completion_tokens, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         RETURNING ",
        message_columns!()
    ))
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
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query("UPDATE dialogs SET updated_at = GREATEST(updated_at, $2) WHERE id = $1")
        .bind(m.dialog_id.0)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    row.try_into()
}

#[async_trait]
impl MessageRepo for PgStore {
    async fn append_message(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let stored = insert(&mut tx, message, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
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

    async fn complete_reply(
        &self,
        answered: &[MessageId],
        reply: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let stored = insert(&mut tx, reply, now).await?;
        sqlx::query("UPDATE messages SET state = 'answered' WHERE id = ANY($1)")
            .bind(raw_ids(answered))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
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
}
