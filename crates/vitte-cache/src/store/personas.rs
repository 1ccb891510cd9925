//! Personas: cached by id, with the slug cached as a pointer to the id; the
//! list and pictures are not cached (rare, and pictures are large).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{PersonaId, PersonaSlug};
use vitte_domain::model::{Persona, PersonaCard, Picture};
use vitte_domain::ports::{PersonaRepo, StoreError};

use super::{CachedStore, Lookup, Source, may_have_written, wrote};
use crate::codec::PersonaDto;

type Result<T> = std::result::Result<T, StoreError>;

impl CachedStore {
    /// The persona with `id`, through the cache.
    async fn cached_persona(&self, id: PersonaId) -> Result<Option<Persona>> {
        let ttl = self.policy.persona_ttl;
        let (persona, _) = self
            .read_through(
                &self.keys.persona(id),
                |_| Some(ttl),
                |_: &Option<PersonaDto>| true,
                move || async move {
                    Ok(self.inner.persona(id).await?.as_ref().map(PersonaDto::from))
                },
            )
            .await?;
        Ok(persona.map(Persona::from))
    }
}

#[async_trait]
impl PersonaRepo for CachedStore {
    async fn upsert_persona(
        &self,
        slug: &PersonaSlug,
        card: &PersonaCard,
        picture: Option<&Picture>,
        now: DateTime<Utc>,
    ) -> Result<Persona> {
        let result = self.inner.upsert_persona(slug, card, picture, now).await;
        let pointer = self.keys.persona_by_slug(slug);
        let keys = match &result {
            // Created (never updated since): a cached "no such persona" must go too.
            Ok(p) if p.created_at == p.updated_at => vec![pointer, self.keys.persona(p.id)],
            Ok(p) => vec![self.keys.persona(p.id)],
            Err(e) if may_have_written(e) => {
                let mut keys = Vec::new();
                if let Lookup::Hit(Some(id)) = self.lookup::<Option<PersonaId>>(&pointer).await {
                    keys.push(self.keys.persona(id));
                }
                keys.push(pointer);
                keys
            }
            Err(_) => Vec::new(),
        };
        self.invalidate(keys).await;
        result
    }

    async fn persona(&self, id: PersonaId) -> Result<Option<Persona>> {
        self.cached_persona(id).await
    }

    async fn persona_by_slug(&self, slug: &PersonaSlug) -> Result<Option<Persona>> {
        let pointer = self.keys.persona_by_slug(slug);
        let epoch = self.flights.epoch();
        let mut fresh = None;
        let loaded = &mut fresh;
        let (id, source) = self
            .read_through(
                &pointer,
                |id: &Option<PersonaId>| {
                    Some(self.mapping_ttl(id.is_some(), self.policy.persona_ttl))
                },
                |_| true,
                move || async move {
                    let persona = self.inner.persona_by_slug(slug).await?;
                    let id = persona.as_ref().map(|p| p.id);
                    *loaded = persona;
                    Ok(id)
                },
            )
            .await?;
        match (id, source) {
            (None, _) => Ok(None),
            (Some(_), Source::Store) => {
                if let Some(persona) = &fresh {
                    let dto = Some(PersonaDto::from(persona));
                    let key = self.keys.persona(persona.id);
                    self.fill(&key, &dto, self.policy.persona_ttl, epoch).await;
                }
                Ok(fresh)
            }
            (Some(_), Source::Bypass) => Ok(fresh),
            (Some(id), Source::Cache) => match self.cached_persona(id).await? {
                Some(persona) if persona.slug == *slug => Ok(Some(persona)),
                _ => {
                    // The pointer disagrees with the row it points to: drop it.
                    self.invalidate(vec![pointer]).await;
                    self.inner.persona_by_slug(slug).await
                }
            },
        }
    }

    async fn list_personas(&self, listed_only: bool) -> Result<Vec<Persona>> {
        self.inner.list_personas(listed_only).await
    }

    async fn persona_picture(&self, id: PersonaId) -> Result<Option<Picture>> {
        self.inner.persona_picture(id).await
    }

    async fn set_persona_listed(&self, id: PersonaId, listed: bool) -> Result<()> {
        let result = self.inner.set_persona_listed(id, listed).await;
        if wrote(&result) {
            self.invalidate(vec![self.keys.persona(id)]).await;
        }
        result
    }
}
