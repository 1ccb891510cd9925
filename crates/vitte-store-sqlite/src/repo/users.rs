//! People.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use vitte_domain::ids::{PersonaId, TelegramUserId, UserId};
use vitte_domain::model::{TelegramProfile, User};
use vitte_domain::ports::{StoreError, UserRepo};

use crate::SqliteStore;
use crate::codec::{col, corrupt, micros, opt_time_col, time_col};
use crate::error::{db_err, or_missing};

macro_rules! user_columns {
    () => {
        "id, telegram_id, first_name, last_name, username, language, terms_version, \
         terms_accepted_at, age_confirmed, blocked_bot, current_persona_id, first_seen, last_seen"
    };
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(col(row, "id")?),
        telegram_id: TelegramUserId::try_from(col::<i64>(row, "telegram_id")?).map_err(corrupt)?,
        first_name: col(row, "first_name")?,
        last_name: col(row, "last_name")?,
        username: col(row, "username")?,
        language: col(row, "language")?,
        terms_version: col(row, "terms_version")?,
        terms_accepted_at: opt_time_col(row, "terms_accepted_at")?,
        age_confirmed: col(row, "age_confirmed")?,
        current_persona_id: col::<Option<i64>>(row, "current_persona_id")?.map(PersonaId),
        blocked_bot: col(row, "blocked_bot")?,
        first_seen: time_col(row, "first_seen")?,
        last_seen: time_col(row, "last_seen")?,
    })
}

/// `NotFound` when an update touched no user.
fn found(rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound("user"))
    } else {
        Ok(())
    }
}

#[async_trait]
impl UserRepo for SqliteStore {
    async fn upsert_user(
        &self,
        profile: &TelegramProfile,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO users (telegram_id, first_name, last_name, username, language, \
                                first_seen, last_seen) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
             ON CONFLICT (telegram_id) DO UPDATE SET \
                 first_name = excluded.first_name, last_name = excluded.last_name, \
                 username = excluded.username, last_seen = excluded.last_seen, blocked_bot = 0 \
             RETURNING ",
            user_columns!()
        ))
        .bind(profile.telegram_id.get())
        .bind(&profile.first_name)
        .bind(&profile.last_name)
        .bind(&profile.username)
        .bind(&profile.language_code)
        .bind(micros(now))
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        user_from_row(&row)
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?1"
        ))
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn user_by_telegram_id(&self, id: TelegramUserId) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE telegram_id = ?1"
        ))
        .bind(id.get())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn accept_terms(
        &self,
        id: UserId,
        version: i32,
        age_confirmed: bool,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE users SET terms_version = ?2, terms_accepted_at = ?3, age_confirmed = ?4 \
             WHERE id = ?1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(version)
        .bind(micros(now))
        .bind(age_confirmed)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound("user"))?;
        user_from_row(&row)
    }

    async fn set_language(&self, id: UserId, language: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET language = ?2 WHERE id = ?1")
            .bind(id.0)
            .bind(language)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        found(done.rows_affected())
    }

    async fn set_blocked_bot(&self, id: UserId, blocked: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET blocked_bot = ?2 WHERE id = ?1")
            .bind(id.0)
            .bind(blocked)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        found(done.rows_affected())
    }

    async fn set_current_persona(&self, id: UserId, persona: PersonaId) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET current_persona_id = ?2 WHERE id = ?1")
            .bind(id.0)
            .bind(persona.0)
            .execute(&self.writer)
            .await
            .map_err(or_missing("persona"))?;
        found(done.rows_affected())
    }
}
