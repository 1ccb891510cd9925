//! Dialogs: the active dialog of (user, persona) and dialogs by id are
//! cached, and `open_dialog` answers from the active one when it is there
//! (opening an existing dialog writes nothing). Intimacy changes set the
//! score the store returned in both cached copies; resets delete them. Since
//! an intimacy change only names the dialog id, each cached dialog leaves a
//! pointer from its id to its (user, persona).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use vitte_domain::ids::{DialogId, PersonaId, UserId};
use vitte_domain::model::Dialog;
use vitte_domain::ports::{DialogRepo, StoreError};

use super::{CachedStore, Change, Lookup, Timed, may_have_written, wrote};
use crate::codec::{DialogDto, DialogOwner};

type Result<T> = std::result::Result<T, StoreError>;

/// What a dialog key holds: the dialog, or (for the active-dialog key only)
/// that there is none.
pub(super) type DialogEntry = Timed<Option<DialogDto>>;

/// How much longer than the dialog itself its owner pointer lives, so an
/// intimacy change finds the pointer whenever the dialog is cached.
const OWNER_MARGIN: Duration = Duration::from_secs(60);

/// Applies `edit` to the cached dialog if it is dialog `id`.
pub(super) fn edit_dialog(
    cached: &mut Option<DialogDto>,
    id: DialogId,
    edit: impl FnOnce(&mut Dialog) -> Change,
) -> Change {
    let Some(dto) = cached.as_ref() else {
        return Change::Keep;
    };
    let mut dialog = Dialog::from(dto.clone());
    if dialog.id != id || edit(&mut dialog) == Change::Keep {
        return Change::Keep;
    }
    *cached = Some(DialogDto::from(&dialog));
    Change::Changed
}

/// Moves `updated_at` forward to `at`, as storing a message does.
pub(super) fn touch(dialog: &mut Dialog, at: DateTime<Utc>) -> Change {
    if at > dialog.updated_at {
        dialog.updated_at = at;
        Change::Changed
    } else {
        Change::Keep
    }
}

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

    /// Who owns dialog `id`: from its pointer or its cached copy, else from
    /// the store; `None` when it does not exist or cannot be read.
    pub(super) async fn dialog_owner(&self, id: DialogId) -> Option<DialogOwner> {
        if let Lookup::Hit(owner) = self.lookup(&self.keys.dialog_owner(id)).await {
            return Some(owner);
        }
        if let Lookup::Hit(DialogEntry {
            value: Some(dto), ..
        }) = self.lookup::<DialogEntry>(&self.keys.dialog(id)).await
        {
            let dialog = Dialog::from(dto);
            return Some(DialogOwner {
                user: dialog.user_id,
                persona: dialog.persona_id,
            });
        }
        match self.inner.dialog(id).await {
            Ok(dialog) => dialog.map(|d| DialogOwner {
                user: d.user_id,
                persona: d.persona_id,
            }),
            Err(e) => {
                tracing::warn!(dialog = %id, error = %e, "cannot find whose dialog it is; its cached copies stay until they expire");
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
        match self.lookup::<DialogEntry>(key).await {
            Lookup::Hit(DialogEntry {
                value: Some(dialog),
                ..
            }) => {
                self.health.counters.hit();
                return Ok(dialog.into());
            }
            Lookup::Failed => {
                drop(held);
                self.health.counters.miss();
                return self.inner.open_dialog(user, persona, now).await;
            }
            Lookup::Hit(_) | Lookup::Miss => {}
        }
        self.health.counters.miss();
        let result = self.inner.open_dialog(user, persona, now).await;
        match &result {
            Ok(dialog) => {
                self.remember_owner(dialog).await;
                let ttl = self.policy.dialog_ttl;
                let cached = Timed::new(Some(DialogDto::from(dialog)), ttl);
                if !self.put(key, &cached, ttl).await {
                    // A cached "no dialog" must not outlive the one just opened.
                    self.delete_held(&[key.to_owned()]).await;
                }
            }
            Err(e) if may_have_written(e) => self.delete_held(&[key.to_owned()]).await,
            Err(_) => {}
        }
        drop(held);
        // Created now (at the store's precision), not found: another process
        // may cache the "no dialog" it read just before; the delayed delete
        // catches that. A dialog that already existed needs none.
        if result
            .as_ref()
            .is_ok_and(|d| d.created_at == now.trunc_subsecs(6))
        {
            self.redelete_later(vec![key.to_owned()]);
        }
        result
    }

    /// The id of the active dialog of (user, persona), from the cache or
    /// the store, before a reset deactivates it.
    async fn active_dialog_id(&self, user: UserId, persona: PersonaId) -> Option<DialogId> {
        if let Lookup::Hit(DialogEntry { value, .. }) = self
            .lookup::<DialogEntry>(&self.keys.active_dialog(user, persona))
            .await
        {
            return value.map(|d| Dialog::from(d).id);
        }
        match self.inner.active_dialog(user, persona).await {
            Ok(dialog) => dialog.map(|d| d.id),
            Err(e) => {
                tracing::warn!(user = %user, persona = %persona, error = %e, "cannot find the dialog a reset closes; its cached copy stays until it expires");
                None
            }
        }
    }
}

impl CachedStore {
    /// Sets a dialog's new intimacy score (the one the store returned) and
    /// `updated_at` in the cached dialog, by id and as the active one, or
    /// drops both when the write failed in a way that may have stored it.
    pub(super) async fn after_intimacy(
        &self,
        id: DialogId,
        result: std::result::Result<i64, &StoreError>,
        now: DateTime<Utc>,
    ) {
        let score = match result {
            Ok(score) => score,
            Err(e) if may_have_written(e) => {
                let mut keys = vec![self.keys.dialog(id)];
                if let Some(owner) = self.dialog_owner(id).await {
                    keys.push(self.keys.active_dialog(owner.user, owner.persona));
                }
                self.invalidate(keys).await;
                return;
            }
            Err(_) => return,
        };
        // The store keeps time to the microsecond.
        let at = now.trunc_subsecs(6);
        let set = |cached: &mut Option<DialogDto>| {
            edit_dialog(cached, id, |d| {
                d.intimacy_score = score;
                d.updated_at = d.updated_at.max(at);
                Change::Changed
            })
        };
        self.update(&self.keys.dialog(id), set).await;
        if let Some(owner) = self.dialog_owner(id).await {
            self.update(&self.keys.active_dialog(owner.user, owner.persona), set)
                .await;
        }
    }
}

#[async_trait]
impl DialogRepo for CachedStore {
    async fn active_dialog(&self, user: UserId, persona: PersonaId) -> Result<Option<Dialog>> {
        let ttl = self.policy.dialog_ttl;
        let (entry, _) = self
            .read_through(
                &self.keys.active_dialog(user, persona),
                |_| Some(ttl),
                |_: &DialogEntry| true,
                move || async move {
                    let dialog = self.inner.active_dialog(user, persona).await?;
                    if let Some(d) = &dialog {
                        self.remember_owner(d).await;
                    }
                    Ok(Timed::new(dialog.as_ref().map(DialogDto::from), ttl))
                },
            )
            .await?;
        Ok(entry.value.map(Dialog::from))
    }

    async fn open_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog> {
        let key = self.keys.active_dialog(user, persona);
        match self.lookup::<DialogEntry>(&key).await {
            Lookup::Hit(DialogEntry {
                value: Some(dialog),
                ..
            }) => {
                self.health.counters.hit();
                Ok(dialog.into())
            }
            Lookup::Failed => {
                self.health.counters.miss();
                self.inner.open_dialog(user, persona, now).await
            }
            Lookup::Hit(_) | Lookup::Miss => {
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
        // The dialog the reset deactivates may be cached by id too.
        let closing = self.active_dialog_id(user, persona).await;
        let result = self.inner.reset_dialog(user, persona, now).await;
        if wrote(&result) {
            let mut keys = vec![self.keys.active_dialog(user, persona)];
            keys.extend(closing.map(|id| self.keys.dialog(id)));
            self.invalidate(keys).await;
        }
        result
    }

    async fn dialog(&self, id: DialogId) -> Result<Option<Dialog>> {
        let ttl = self.policy.dialog_ttl;
        let (entry, _) = self
            .read_through(
                &self.keys.dialog(id),
                // Only dialogs that exist: an id not taken yet may be soon.
                |e: &DialogEntry| e.value.is_some().then_some(ttl),
                |e| e.value.is_some(),
                move || async move {
                    let dialog = self.inner.dialog(id).await?;
                    if let Some(d) = &dialog {
                        self.remember_owner(d).await;
                    }
                    Ok(Timed::new(dialog.as_ref().map(DialogDto::from), ttl))
                },
            )
            .await?;
        Ok(entry.value.map(Dialog::from))
    }

    async fn add_intimacy(&self, id: DialogId, delta: i64, now: DateTime<Utc>) -> Result<i64> {
        let result = self.inner.add_intimacy(id, delta, now).await;
        self.after_intimacy(id, result.as_ref().map(|score| *score), now)
            .await;
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

    async fn release_reply(&self, id: DialogId, owner: &str) -> Result<bool> {
        self.inner.release_reply(id, owner).await
    }
}
