//! How long each kind of value may be served from the cache, and where its
//! keys live.

use std::time::Duration;

/// Time-to-live of each cached kind and the key namespace. The defaults are
/// the roadmap's: personas 5 minutes, subscriptions 1 hour, unlocks 10
/// minutes; users, dialogs, memories and a user's token usage 5 minutes
/// like personas.
///
/// A TTL is also the longest a value can stay wrong after an update the
/// cache missed (a process that died between its write and the cache
/// update, a cache that failed to take a delete): entries updated in place
/// keep the expiry they were loaded with, so updates never stretch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// First part of every key; distinct deployments (or tests) sharing one
    /// Redis use distinct namespaces.
    pub namespace: String,
    /// Users, by id and by Telegram id.
    pub user_ttl: Duration,
    /// Personas, by id and by slug.
    pub persona_ttl: Duration,
    /// Dialogs: the active dialog of a user with a persona, and dialogs by id.
    pub dialog_ttl: Duration,
    /// A dialog's rolling summary and its pinned facts.
    pub memory_ttl: Duration,
    /// A user's token usage since the start of their spend day. Every reply
    /// stored through this cache adds its tokens to the cached figure, so it
    /// stays exact; this TTL bounds how long a reply whose addition was lost
    /// (see [`CachedStore`](crate::CachedStore)) can be missing from it, and
    /// so how long a user's daily allowance can be overrun by that reply.
    pub usage_ttl: Duration,
    /// Active subscriptions; an entry never outlives the period it holds.
    pub subscription_ttl: Duration,
    /// Unlocks; lapsed ones are filtered out on every read.
    pub unlocks_ttl: Duration,
    /// Lookups that never change once they exist (Telegram id to user, slug
    /// to persona); they can live long because writes never make them wrong.
    pub mapping_ttl: Duration,
    /// After a write, its keys are deleted at once and, when this is set,
    /// once more after this delay: another process that read the old value
    /// from the database just before the write and stored it just after the
    /// first delete would otherwise keep it cached for a whole TTL.
    pub redelete_after: Option<Duration>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            namespace: "vitte:c".to_owned(),
            user_ttl: Duration::from_secs(5 * 60),
            persona_ttl: Duration::from_secs(5 * 60),
            dialog_ttl: Duration::from_secs(5 * 60),
            memory_ttl: Duration::from_secs(5 * 60),
            usage_ttl: Duration::from_secs(5 * 60),
            subscription_ttl: Duration::from_secs(60 * 60),
            unlocks_ttl: Duration::from_secs(10 * 60),
            mapping_ttl: Duration::from_secs(24 * 60 * 60),
            redelete_after: Some(Duration::from_secs(2)),
        }
    }
}
