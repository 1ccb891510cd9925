//! [`PersonaRepo`] on the `personas` and `persona_pictures` tables.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use vitte_domain::ids::{PersonaId, PersonaSlug};
use vitte_domain::model::{LoreEntry, Persona, PersonaCard, Picture};
use vitte_domain::ports::{PersonaRepo, StoreError};

use crate::PgStore;
use crate::error::{corrupt, db};

/// Every column of a persona plus whether it has a picture; the picture
/// bytes themselves are read only by `persona_picture`.
macro_rules! persona_select {
    () => {
        "SELECT p.id, p.slug, p.name, p.description, p.personality, p.scenario, \
                p.first_message, p.example_messages, p.system_prompt, \
                p.post_history_instructions, p.alternate_greetings, p.lorebook, p.tags, \
                p.creator, p.creator_notes, p.listed, p.created_at, p.updated_at, \
                EXISTS (SELECT 1 FROM persona_pictures pp WHERE pp.persona_id = p.id) \
                    AS has_picture \
         FROM personas p "
    };
}

#[derive(sqlx::FromRow)]
struct PersonaRow {
    id: i64,
    slug: String,
    name: String,
    description: String,
    personality: String,
    scenario: String,
    first_message: String,
    example_messages: String,
    system_prompt: String,
    post_history_instructions: String,
    alternate_greetings: Json<Vec<String>>,
    lorebook: Json<Vec<LoreEntry>>,
    tags: Json<Vec<String>>,
    creator: String,
    creator_notes: String,
    listed: bool,
    has_picture: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PersonaRow> for Persona {
    type Error = StoreError;

    fn try_from(r: PersonaRow) -> Result<Self, StoreError> {
        Ok(Persona {
            id: PersonaId(r.id),
            slug: PersonaSlug::parse(&r.slug).map_err(corrupt)?,
            card: PersonaCard {
                name: r.name,
                description: r.description,
                personality: r.personality,
                scenario: r.scenario,
                first_message: r.first_message,
                example_messages: r.example_messages,
                system_prompt: r.system_prompt,
                post_history_instructions: r.post_history_instructions,
                alternate_greetings: r.alternate_greetings.0,
                lorebook: r.lorebook.0,
                tags: r.tags.0,
                creator: r.creator,
                creator_notes: r.creator_notes,
            },
            listed: r.listed,
            has_picture: r.has_picture,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[async_trait]
impl PersonaRepo for PgStore {
    async fn upsert_persona(
        &self,
        slug: &PersonaSlug,
        card: &PersonaCard,
        picture: Option<&Picture>,
        now: DateTime<Utc>,
    ) -> Result<Persona, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // `listed` is an operator's choice, not part of the card: a re-import keeps it.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO personas (slug, name, description, personality, scenario, \
                                   first_message, example_messages, system_prompt, \
                                   post_history_instructions, alternate_greetings, lorebook, \
                                   tags, creator, creator_notes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
             ON CONFLICT (slug) DO UPDATE SET \
                 name = EXCLUDED.name, \
                 description = EXCLUDED.description, \
                 personality = EXCLUDED.personality, \
                 scenario = EXCLUDED.scenario, \
                 first_message = EXCLUDED.first_message, \
                 example_messages = EXCLUDED.example_messages, \
                 system_prompt = EXCLUDED.system_prompt, \
                 post_history_instructions = EXCLUDED.post_history_instructions, \
                 alternate_greetings = EXCLUDED.alternate_greetings, \
                 lorebook = EXCLUDED.lorebook, \
                 tags = EXCLUDED.tags, \
                 creator = EXCLUDED.creator, \
                 creator_notes = EXCLUDED.creator_notes, \
                 updated_at = EXCLUDED.updated_at \
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
        .bind(Json(&card.alternate_greetings))
        .bind(Json(&card.lorebook))
        .bind(Json(&card.tags))
        .bind(&card.creator)
        .bind(&card.creator_notes)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;

        if let Some(picture) = picture {
            sqlx::query(
                "INSERT INTO persona_pictures (persona_id, mime, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (persona_id) DO UPDATE SET mime = EXCLUDED.mime, bytes = EXCLUDED.bytes",
            )
            .bind(id)
            .bind(&picture.mime)
            .bind(&picture.bytes)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }

        let persona =
            sqlx::query_as::<_, PersonaRow>(concat!(persona_select!(), "WHERE p.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?
                .try_into()?;
        tx.commit().await.map_err(db)?;
        Ok(persona)
    }

    async fn persona(&self, id: PersonaId) -> Result<Option<Persona>, StoreError> {
        sqlx::query_as::<_, PersonaRow>(concat!(persona_select!(), "WHERE p.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(Persona::try_from)
            .transpose()
    }

    async fn persona_by_slug(&self, slug: &PersonaSlug) -> Result<Option<Persona>, StoreError> {
        sqlx::query_as::<_, PersonaRow>(concat!(persona_select!(), "WHERE p.slug = $1"))
            .bind(slug.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(Persona::try_from)
            .transpose()
    }

    async fn list_personas(&self, listed_only: bool) -> Result<Vec<Persona>, StoreError> {
        // Byte order ("C") so every engine lists in the same order, whatever
        // the database's locale.
        sqlx::query_as::<_, PersonaRow>(concat!(
            persona_select!(),
            "WHERE p.listed OR NOT $1 ORDER BY p.name COLLATE \"C\", p.id"
        ))
        .bind(listed_only)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(Persona::try_from)
        .collect()
    }

    async fn persona_picture(&self, id: PersonaId) -> Result<Option<Picture>, StoreError> {
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT mime, bytes FROM persona_pictures WHERE persona_id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(row.map(|(mime, bytes)| Picture { mime, bytes }))
    }

    async fn set_persona_listed(&self, id: PersonaId, listed: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE personas SET listed = $2 WHERE id = $1")
            .bind(id.0)
            .bind(listed)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("persona"));
        }
        Ok(())
    }
}
