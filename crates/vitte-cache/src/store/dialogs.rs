//! Dialogs: the active dialog of (user, persona) is cached, and `open_dialog`
//! answers from it when it is there (opening an existing dialog writes
//! nothing). Resets and intimacy changes invalidate it; since an intimacy
//! change only names the dialog id, each cached dialog leaves a pointer from
//! its id to its (user, persona).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{DialogId, PersonaId, UserId};
use vitte_domain::model::Dialog;
use vitte_domain::ports::{DialogRepo, StoreError};

use super::{CachedStore, Lookup, may_have_written, wrote};
use crate::codec::{DialogDto, DialogOwner};

type Result<T> = std::result::Result<T, StoreError>;

/// How much longer than the dialog itself its owner pointer lives, so an
/// intimacy change finds the pointer whenever the dialog is cached.
const OWNER_MARGIN: Duration = Duration::from_secs(60);

impl CachedStore {
    /// Leaves the pointer from `dialog`'s id to its owner, before the dialog
    /// itself is cached.
    async fn remember_owner(&self, dialog: &Dialog) {
        let owner = DialogOwner {
            user: dialog.user_id,
            persona: dialog.persona_id,
        };
        let ttl = self.policy.dialog_ttl + OWNER_MARGIN;
        self.put(&self.keys.dialog_owner(dialog.id), &owner, ttl)
            .await;
    }

    /// Who owns dialog `id`: from its pointer, else from the store.
    async fn dialog_owner(&self, id: DialogId) -> Option<DialogOwner> {
        if let Lookup::Hit(owner) = self.lookup(&self.keys.dialog_owner(id)).await {
            return Some(owner);
        }
        match self.inner.dialog(id).await {
            Ok(dialog) => dialog.map(|d| DialogOwner {
                user: d.user_id,
                persona: d.persona_id,
            }),
            Err(e) => {
                tracing::warn!(dialog = %id, error = %e, "cannot find whose dialog it is; its cached copy stays until it expires");
                None
            }
        }
    }

    /// `open_dialog` when the cache has no dialog (or failed).
    async fn open_dialog_uncached(
        &self,
        key: &str,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog> {
        let seat = self.flights.seat(key);
        let held = seat.lock().await;
        match self.lookup::<Option<DialogDto>>(key).await {
            Lookup::Hit(Some(dialog)) => {
                self.health.counters.hit();
                return Ok(dialog.into());
            }
            Lookup::Failed => {
                drop(held);
                self.health.counters.miss();
                return self.inner.open_dialog(user, persona, now).await;
            }
            Lookup::Hit(None) | Lookup::Miss => {}
        }
        self.health.counters.miss();
        let result = self.inner.open_dialog(user, persona, now).await;
        match &result {
            Ok(dialog) => {
                self.remember_owner(dialog).await;
                let cached = Some(DialogDto::from(dialog));
                if !self.put(key, &cached, self.policy.dialog_ttl).await {
                    // A cached "no dialog" must not outlive the one just opened.
                    self.delete_held(&[key.to_owned()]).await;
                }
            }
            Err(e) if may_have_written(e) => self.delete_held(&[key.to_owned()]).await,
            Err(_) => {}
        }
        drop(held);
        if result.as_ref().is_ok_and(|d| d.created_at == d.updated_at) {
            // Created: another process may cache the "no dialog" it read
            // just before; the delayed delete catches that.
            self.redelete_later(vec![key.to_owned()]);
        }
        result
    }
}

#[async_trait]
impl DialogRepo for CachedStore {
    async fn active_dialog(&self, user: UserId, persona: PersonaId) -> Result<Option<Dialog>> {
        let ttl = self.policy.dialog_ttl;
        let (dialog, _) = self
            .read_through(
                &self.keys.active_dialog(user, persona),
                |_| ttl,
                |_: &Option<DialogDto>| true,
                move || async move {
                    let dialog = self.inner.active_dialog(user, persona).await?;
                    if let Some(d) = &dialog {
                        self.remember_owner(d).await;
                    }
                    Ok(dialog.as_ref().map(DialogDto::from))
                },
            )
            .await?;
        Ok(dialog.map(Dialog::from))
    }

    async fn open_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog> {
        let key = self.keys.active_dialog(user, persona);
        match self.lookup::<Option<DialogDto>>(&key).await {
            Lookup::Hit(Some(dialog)) => {
                self.health.counters.hit();
                Ok(dialog.into())
            }
            Lookup::Failed => {
                self.health.counters.miss();
                self.inner.open_dialog(user, persona, now).await
            }
            Lookup::Hit(None) | Lookup::Miss => {
                self.open_dialog_uncached(&key, user, persona, now).await
            }
        }
    }

    async fn reset_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog> {
        let result = self.inner.reset_dialog(user, persona, now).await;
        if wrote(&result) {
            self.invalidate(vec![self.keys.active_dialog(user, persona)])
                .await;
        }
        result
    }

    async fn dialog(&self, id: DialogId) -> Result<Option<Dialog>> {
        self.inner.dialog(id).await
    }

    async fn add_intimacy(&self, id: DialogId, delta: i64, now: DateTime<Utc>) -> Result<i64> {
        let result = self.inner.add_intimacy(id, delta, now).await;
        if wrote(&result)
            && let Some(owner) = self.dialog_owner(id).await
        {
            self.invalidate(vec![self.keys.active_dialog(owner.user, owner.persona)])
                .await;
        }
        result
    }

    async fn lease_reply(
        &self,
        id: DialogId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.inner.lease_reply(id, owner, now, until).await
    }

    async fn release_reply(&self, id: DialogId, owner: &str) -> Result<()> {
        self.inner.release_reply(id, owner).await
    }
}
