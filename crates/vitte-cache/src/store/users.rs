//! Users: cached by id, with the Telegram id cached as a pointer to the id.
//! Every write of a user deletes the id's key; only a creation touches the
//! Telegram pointer (to drop a cached "no such user").

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{PersonaId, TelegramUserId, UserId};
use vitte_domain::model::{TelegramProfile, User};
use vitte_domain::ports::{StoreError, UserRepo};

use super::{CachedStore, Lookup, Source, may_have_written, wrote};
use crate::codec::UserDto;

type Result<T> = std::result::Result<T, StoreError>;

impl CachedStore {
    /// The user with `id`, through the cache.
    async fn cached_user(&self, id: UserId) -> Result<Option<User>> {
        let ttl = self.policy.user_ttl;
        let (user, _) = self
            .read_through(
                &self.keys.user(id),
                |_| Some(ttl),
                |_: &Option<UserDto>| true,
                move || async move { Ok(self.inner.user(id).await?.as_ref().map(UserDto::from)) },
            )
            .await?;
        Ok(user.map(User::from))
    }

    /// Deletes the user's key after a write that returned `result`.
    async fn after_user_write<T>(&self, id: UserId, result: Result<T>) -> Result<T> {
        if wrote(&result) {
            self.invalidate(vec![self.keys.user(id)]).await;
        }
        result
    }
}

#[async_trait]
impl UserRepo for CachedStore {
    async fn upsert_user(&self, profile: &TelegramProfile, now: DateTime<Utc>) -> Result<User> {
        let result = self.inner.upsert_user(profile, now).await;
        let pointer = self.keys.user_by_telegram(profile.telegram_id);
        let keys = match &result {
            // Created (first and last contact are one instant, whatever the
            // precision of `now`): a cached "no such user" must go too.
            Ok(user) if user.first_seen == user.last_seen => {
                vec![pointer, self.keys.user(user.id)]
            }
            Ok(user) => vec![self.keys.user(user.id)],
            Err(e) if may_have_written(e) => {
                let mut keys = Vec::new();
                if let Lookup::Hit(Some(id)) = self.lookup::<Option<UserId>>(&pointer).await {
                    keys.push(self.keys.user(id));
                }
                keys.push(pointer);
                keys
            }
            Err(_) => Vec::new(),
        };
        self.invalidate(keys).await;
        result
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.cached_user(id).await
    }

    async fn user_by_telegram_id(&self, telegram_id: TelegramUserId) -> Result<Option<User>> {
        let pointer = self.keys.user_by_telegram(telegram_id);
        let epoch = self.flights.epoch();
        let mut fresh = None;
        let loaded = &mut fresh;
        let (id, source) = self
            .read_through(
                &pointer,
                |id: &Option<UserId>| Some(self.mapping_ttl(id.is_some(), self.policy.user_ttl)),
                |_| true,
                move || async move {
                    let user = self.inner.user_by_telegram_id(telegram_id).await?;
                    let id = user.as_ref().map(|u| u.id);
                    *loaded = user;
                    Ok(id)
                },
            )
            .await?;
        match (id, source) {
            (None, _) => Ok(None),
            (Some(_), Source::Store) => {
                // Read just now: cache it under the id as well, unless a write
                // may have changed it meanwhile.
                if let Some(user) = &fresh {
                    let dto = Some(UserDto::from(user));
                    let key = self.keys.user(user.id);
                    self.fill(&key, &dto, self.policy.user_ttl, epoch).await;
                }
                Ok(fresh)
            }
            (Some(_), Source::Bypass) => Ok(fresh),
            (Some(id), Source::Cache) => match self.cached_user(id).await? {
                Some(user) if user.telegram_id == telegram_id => Ok(Some(user)),
                _ => {
                    // The pointer disagrees with the row it points to (the
                    // database was replaced under the cache): drop it and ask
                    // the store.
                    self.invalidate(vec![pointer]).await;
                    self.inner.user_by_telegram_id(telegram_id).await
                }
            },
        }
    }

    async fn accept_terms(
        &self,
        id: UserId,
        version: i32,
        age_confirmed: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let result = self
            .inner
            .accept_terms(id, version, age_confirmed, now)
            .await;
        self.after_user_write(id, result).await
    }

    async fn set_language(&self, id: UserId, language: &str) -> Result<()> {
        let result = self.inner.set_language(id, language).await;
        self.after_user_write(id, result).await
    }

    async fn set_blocked_bot(&self, id: UserId, blocked: bool) -> Result<()> {
        let result = self.inner.set_blocked_bot(id, blocked).await;
        self.after_user_write(id, result).await
    }

    async fn set_current_persona(&self, id: UserId, persona: PersonaId) -> Result<()> {
        let result = self.inner.set_current_persona(id, persona).await;
        self.after_user_write(id, result).await
    }
}
