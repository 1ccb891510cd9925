//! [`UserRepo`] on the `users` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{PersonaId, TelegramUserId, UserId};
use vitte_domain::model::{TelegramProfile, User};
use vitte_domain::ports::{StoreError, UserRepo};

use crate::PgStore;
use crate::error::{corrupt, db};

macro_rules! user_columns {
    () => {
        "id, telegram_id, first_name, last_name, username, language, terms_version, \
         terms_accepted_at, age_confirmed, blocked_bot, current_persona_id, first_seen, last_seen"
    };
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    telegram_id: i64,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language: Option<String>,
    terms_version: Option<i32>,
    terms_accepted_at: Option<DateTime<Utc>>,
    age_confirmed: bool,
    blocked_bot: bool,
    current_persona_id: Option<i64>,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: UserId(r.id),
            telegram_id: TelegramUserId::try_from(r.telegram_id).map_err(corrupt)?,
            first_name: r.first_name,
            last_name: r.last_name,
            username: r.username,
            language: r.language,
            terms_version: r.terms_version,
            terms_accepted_at: r.terms_accepted_at,
            age_confirmed: r.age_confirmed,
            current_persona_id: r.current_persona_id.map(PersonaId),
            blocked_bot: r.blocked_bot,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        })
    }
}

/// `Ok` when one row was updated, `NotFound` when the user does not exist.
fn one_user(rows: u64) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound("user"))
    } else {
        Ok(())
    }
}

#[async_trait]
impl UserRepo for PgStore {
    async fn upsert_user(
        &self,
        profile: &TelegramProfile,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        sqlx::query_as::<_, UserRow>(concat!(
            "INSERT INTO users (telegram_id, first_name, last_name, username, language, \
                                first_seen, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (telegram_id) DO UPDATE SET \
                 first_name = EXCLUDED.first_name, \
                 last_name = EXCLUDED.last_name, \
                 username = EXCLUDED.username, \
                 last_seen = EXCLUDED.last_seen, \
                 blocked_bot = FALSE \
             RETURNING ",
            user_columns!()
        ))
        .bind(profile.telegram_id.get())
        .bind(&profile.first_name)
        .bind(&profile.last_name)
        .bind(&profile.username)
        .bind(&profile.language_code)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?
        .try_into()
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(User::try_from)
        .transpose()
    }

    async fn user_by_telegram_id(&self, id: TelegramUserId) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE telegram_id = $1"
        ))
        .bind(id.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(User::try_from)
        .transpose()
    }

    async fn accept_terms(
        &self,
        id: UserId,
        version: i32,
        age_confirmed: bool,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        sqlx::query_as::<_, UserRow>(concat!(
            "UPDATE users SET terms_version = $2, age_confirmed = $3, terms_accepted_at = $4 \
             WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id.0)
        .bind(version)
        .bind(age_confirmed)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound("user"))?
        .try_into()
    }

    async fn set_language(&self, id: UserId, language: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET language = $2 WHERE id = $1")
            .bind(id.0)
            .bind(language)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        one_user(done.rows_affected())
    }

    async fn set_blocked_bot(&self, id: UserId, blocked: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET blocked_bot = $2 WHERE id = $1")
            .bind(id.0)
            .bind(blocked)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        one_user(done.rows_affected())
    }

    async fn set_current_persona(&self, id: UserId, persona: PersonaId) -> Result<(), StoreError> {
        // A missing persona violates the foreign key and maps to NotFound("persona").
        let done = sqlx::query("UPDATE users SET current_persona_id = $2 WHERE id = $1")
            .bind(id.0)
            .bind(persona.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        one_user(done.rows_affected())
    }
}
