//! Personas and their pictures.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use vitte_domain::ids::{PersonaId, PersonaSlug};
use vitte_domain::model::{Persona, PersonaCard, Picture};
use vitte_domain::ports::{PersonaRepo, StoreError};

use crate::SqliteStore;
use crate::codec::{col, json_col, micros, parsed_col, time_col, to_json};
use crate::error::db_err;

/// The columns of a persona, and whether it has a picture (without loading it).
macro_rules! persona_columns {
    () => {
        "id, slug, name, description, personality, scenario, first_message, example_messages, \
         system_prompt, post_history_instructions, alternate_greetings, lorebook, tags, creator, \
         creator_notes, listed, created_at, updated_at, \
         EXISTS (SELECT 1 FROM persona_pictures pp WHERE pp.persona_id = personas.id) \
             AS has_picture"
    };
}

fn persona_from_row(row: &SqliteRow) -> Result<Persona, StoreError> {
    Ok(Persona {
        id: PersonaId(col(row, "id")?),
        slug: parsed_col(row, "slug", PersonaSlug::parse)?,
        card: PersonaCard {
            name: col(row, "name")?,
            description: col(row, "description")?,
            personality: col(row, "personality")?,
            scenario: col(row, "scenario")?,
            first_message: col(row, "first_message")?,
            example_messages: col(row, "example_messages")?,
            system_prompt: col(row, "system_prompt")?,
            post_history_instructions: col(row, "post_history_instructions")?,
            alternate_greetings: json_col(row, "alternate_greetings")?,
            lorebook: json_col(row, "lorebook")?,
            tags: json_col(row, "tags")?,
            creator: col(row, "creator")?,
            creator_notes: col(row, "creator_notes")?,
        },
        listed: col(row, "listed")?,
        has_picture: col(row, "has_picture")?,
        created_at: time_col(row, "created_at")?,
        updated_at: time_col(row, "updated_at")?,
    })
}

async fn persona_by_id(
    conn: &mut SqliteConnection,
    id: PersonaId,
) -> Result<Option<Persona>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        persona_columns!(),
        " FROM personas WHERE id = ?1"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?
    .as_ref()
    .map(persona_from_row)
    .transpose()
}

#[async_trait]
impl PersonaRepo for SqliteStore {
    async fn upsert_persona(
        &self,
        slug: &PersonaSlug,
        card: &PersonaCard,
        picture: Option<&Picture>,
        now: DateTime<Utc>,
    ) -> Result<Persona, StoreError> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO personas (slug, name, description, personality, scenario, first_message, \
                 example_messages, system_prompt, post_history_instructions, \
                 alternate_greetings, lorebook, tags, creator, creator_notes, \
                 created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15) \
             ON CONFLICT (slug) DO UPDATE SET \
                 name = excluded.name, description = excluded.description, \
                 personality = excluded.personality, scenario = excluded.scenario, \
                 first_message = excluded.first_message, \
                 example_messages = excluded.example_messages, \
                 system_prompt = excluded.system_prompt, \
                 post_history_instructions = excluded.post_history_instructions, \
                 alternate_greetings = excluded.alternate_greetings, \
                 lorebook = excluded.lorebook, tags = excluded.tags, \
                 creator = excluded.creator, creator_notes = excluded.creator_notes, \
                 updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(slug.as_str())
        .bind(&card.name)
        .bind(&card.description)
        .bind(&card.personality)
        .bind(&card.scenario)
        .bind(&card.first_message)
        .bind(&card.example_messages)
        .bind(&card.system_prompt)
        .bind(&card.post_history_instructions)
        .bind(to_json(&card.alternate_greetings)?)
        .bind(to_json(&card.lorebook)?)
        .bind(to_json(&card.tags)?)
        .bind(&card.creator)
        .bind(&card.creator_notes)
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(picture) = picture {
            sqlx::query(
                "INSERT INTO persona_pictures (persona_id, mime, bytes) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (persona_id) DO UPDATE SET mime = excluded.mime, bytes = excluded.bytes",
            )
            .bind(id)
            .bind(&picture.mime)
            .bind(&picture.bytes)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let persona = persona_by_id(&mut tx, PersonaId(id))
            .await?
            .ok_or(StoreError::NotFound("persona"))?;
        tx.commit().await.map_err(db_err)?;
        Ok(persona)
    }

    async fn persona(&self, id: PersonaId) -> Result<Option<Persona>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        persona_by_id(&mut conn, id).await
    }

    async fn persona_by_slug(&self, slug: &PersonaSlug) -> Result<Option<Persona>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            persona_columns!(),
            " FROM personas WHERE slug = ?1"
        ))
        .bind(slug.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(persona_from_row)
        .transpose()
    }

    async fn list_personas(&self, listed_only: bool) -> Result<Vec<Persona>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            persona_columns!(),
            " FROM personas WHERE listed = 1 OR ?1 = 0 ORDER BY name, id"
        ))
        .bind(listed_only)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .iter()
        .map(persona_from_row)
        .collect()
    }

    async fn persona_picture(&self, id: PersonaId) -> Result<Option<Picture>, StoreError> {
        sqlx::query("SELECT mime, bytes FROM persona_pictures WHERE persona_id = ?1")
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .map(|row| {
                Ok(Picture {
                    mime: col(&row, "mime")?,
                    bytes: col(&row, "bytes")?,
                })
            })
            .transpose()
    }

    async fn set_persona_listed(&self, id: PersonaId, listed: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE personas SET listed = ?2 WHERE id = ?1")
            .bind(id.0)
            .bind(listed)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("persona"));
        }
        Ok(())
    }
}
