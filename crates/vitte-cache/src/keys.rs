//! Cache keys: `{namespace}:v{SHAPE_VERSION}:{kind}:{id}`, e.g.
//! `vitte:c:v2:user:42`.
//!
//! The namespace keeps deployments (and tests) that share one Redis apart;
//! the shape version keeps a build from reading bytes written by a build
//! whose cached shapes differ.

use vitte_domain::ids::{DialogId, MemoryId, PersonaId, PersonaSlug, TelegramUserId, UserId};

/// Version of the cached value shapes. Bump it whenever a cached struct
/// changes (a field added, renamed or retyped): a deploy then reads and
/// writes fresh keys and never decodes stale bytes; the old keys expire on
/// their own.
pub const SHAPE_VERSION: u32 = 2;

/// Builds every key the caching store uses, so the format lives in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `{namespace}:v{SHAPE_VERSION}`, computed once.
    prefix: String,
}

impl Keys {
    /// Keys under `namespace` (e.g. `vitte:c`).
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("{namespace}:v{SHAPE_VERSION}"),
        }
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// A user, by our key.
    pub fn user(&self, id: UserId) -> String {
        self.key("user", id)
    }

    /// Which user (if any) has this Telegram id. Only the id is cached here:
    /// the mapping never changes once a user exists, so writes to the user
    /// need not find this key.
    pub fn user_by_telegram(&self, id: TelegramUserId) -> String {
        self.key("user_tg", id)
    }

    /// A persona, by our key.
    pub fn persona(&self, id: PersonaId) -> String {
        self.key("persona", id)
    }

    /// Which persona (if any) has this slug; like the Telegram mapping, it
    /// never changes once the persona exists.
    pub fn persona_by_slug(&self, slug: &PersonaSlug) -> String {
        self.key("persona_slug", slug)
    }

    /// The active dialog of a user with a persona.
    pub fn active_dialog(&self, user: UserId, persona: PersonaId) -> String {
        self.key("dialog", format_args!("{user}:{persona}"))
    }

    /// Whose dialog a dialog id is, so a write that only knows the dialog id
    /// (intimacy, a reply's cost) can find the active-dialog and usage keys
    /// it changes.
    pub fn dialog_owner(&self, dialog: DialogId) -> String {
        self.key("dialog_owner", dialog)
    }

    /// A dialog, by our key.
    pub fn dialog(&self, id: DialogId) -> String {
        self.key("dialog_id", id)
    }

    /// A dialog's rolling summary.
    pub fn summary(&self, dialog: DialogId) -> String {
        self.key("summary", dialog)
    }

    /// A dialog's pinned facts.
    pub fn facts(&self, dialog: DialogId) -> String {
        self.key("facts", dialog)
    }

    /// Which dialog a memory belongs to, so forgetting a memory (which names
    /// only the memory) can find the summary and facts keys to invalidate.
    pub fn memory_dialog(&self, memory: MemoryId) -> String {
        self.key("memory_dialog", memory)
    }

    /// A user's token usage since the start of their spend day.
    pub fn usage(&self, user: UserId) -> String {
        self.key("usage", user)
    }

    /// A user's active subscription.
    pub fn subscription(&self, user: UserId) -> String {
        self.key("sub", user)
    }

    /// A user's unlocks.
    pub fn unlocks(&self, user: UserId) -> String {
        self.key("unlocks", user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_versioned() {
        let keys = Keys::new("vitte:c");
        assert_eq!(keys.user(UserId(42)), "vitte:c:v2:user:42");
        let tg = TelegramUserId::try_from(7).expect("positive");
        assert_eq!(keys.user_by_telegram(tg), "vitte:c:v2:user_tg:7");
        let slug = PersonaSlug::parse("mira").expect("slug");
        assert_eq!(keys.persona_by_slug(&slug), "vitte:c:v2:persona_slug:mira");
        assert_eq!(
            keys.active_dialog(UserId(1), PersonaId(2)),
            "vitte:c:v2:dialog:1:2"
        );
        assert_eq!(keys.dialog(DialogId(2)), "vitte:c:v2:dialog_id:2");
        assert_eq!(keys.subscription(UserId(3)), "vitte:c:v2:sub:3");
        assert_eq!(keys.usage(UserId(3)), "vitte:c:v2:usage:3");
        assert_ne!(keys.summary(DialogId(4)), keys.facts(DialogId(4)));
        assert_ne!(
            Keys::new("a").user(UserId(1)),
            Keys::new("b").user(UserId(1))
        );
    }
}
