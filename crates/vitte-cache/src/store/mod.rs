//! The caching decorator of the store, [`CachedStore`]: the shared
//! machinery here (read-through, fill, invalidation), one file per cached
//! repository, and the plain forwarding of the rest.

mod delegate;
mod dialogs;
mod entitlements;
mod memories;
mod messages;
mod personas;
mod users;

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vitte_domain::ports::{Cache, Store, StoreError};

use crate::flight::Flights;
use crate::keys::Keys;
use crate::policy::CachePolicy;
use crate::stats::{CacheStats, Counters, LogGate};

/// How often, at most, a failing cache is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A [`Store`] that answers the reads of every chat message from a
/// [`Cache`] and passes everything else to the store it wraps.
///
/// Cached, cache-aside: users (by id and Telegram id), personas (by id and
/// slug), dialogs (the active one of a user with a persona, and by id), a
/// dialog's summary and facts, the active subscription and the unlocks of a
/// user, and a user's token usage since the start of their spend day. A
/// chat message then reads only its dialog's recent messages from the store
/// once everything is warm.
///
/// Every write that changes a cached value either deletes its keys once the
/// store has answered, so the next read (in any process sharing the cache)
/// sees it, or, where the written value is known and the change is small
/// and frequent, updates the cached value in place:
///
/// | write | effect on the cache |
/// |---|---|
/// | `upsert_user`, `accept_terms`, `set_language`, `set_blocked_bot`, `set_current_persona` | deletes the user (and, on creation, a cached "no such Telegram id") |
/// | `upsert_persona`, `set_persona_listed` | deletes the persona (and, on creation, a cached "no such slug") |
/// | `reset_dialog` | deletes the active dialog and the dialog it deactivated |
/// | `add_intimacy`, `complete_reply` | sets the new score (the one the store returned) in the cached dialog, by id and as the active one |
/// | `append_message`, `append_from_update`, `complete_reply` | moves `updated_at` of the cached dialog by id; a reply's tokens are added to its user's cached usage |
/// | `put_summary`, `add_fact`, `delete_memory` | deletes the dialog's summary or facts |
/// | `apply_grant`, `settle_payment` | deletes the subscription or the unlocks the grant changes |
///
/// `open_dialog` stores the dialog it opened; credit balances, messages and
/// everyone's usage are not cached, so spends and message states invalidate
/// nothing.
///
/// Rules that make this safe:
///
/// - Writes are not preceded by a delete: a reader could refill the key
///   between that delete and the write, so it would buy nothing. The delete
///   after the write is done even when the write failed with an error that
///   may hide a committed transaction (a dropped connection), and repeated
///   after [`CachePolicy::redelete_after`] to catch another process that read
///   the old row just before the write and cached it just after the delete.
/// - Within a process, loads, updates in place and deletes of one key hold
///   that key's lock (locks exist only for keys in flight), so a load can
///   never store a value older than a delete it raced with, and a cold key
///   is loaded once however many requests want it. Across processes a cold
///   key costs at most one load per process.
/// - Updates in place set what the store answered (the new score) or are
///   idempotent (`updated_at` only moves forward), except the usage sum: a
///   reply's tokens are added once, under the usage key's lock held from
///   before the reply is written until the cached sum is updated, so a load
///   racing with the write in this process either sees the reply or gets it
///   added, never both. An updated entry keeps the expiry it was loaded
///   with.
/// - The cache is never needed: when it fails, the store answers, the error
///   is counted ([`CachedStore::cache_errors`]) and logged at most once per
///   10 seconds; a cached value that could not be updated is deleted.
///
/// What can still be wrong, and for how long: a process that dies between a
/// write and its cache update, a cache that fails to take a delete but keeps
/// the entry, or two processes racing on one key (a load that read the row
/// before another process's write and stores it after that write's update,
/// or two replies to one user stored at once by two processes) can leave a
/// value that misses one write. It is corrected by the next write that sets
/// the value (a score) or at the latest when the entry expires: for a
/// user's usage that is [`CachePolicy::usage_ttl`] (5 minutes by default),
/// the longest a daily allowance can be overrun, and only by the tokens of
/// the replies whose addition was lost. Everyone's usage (the global spend
/// cap) is never cached here.
///
/// One difference from the bare store is accepted: `updated_at` of a cached
/// active dialog does not follow the messages appended to the dialog (it
/// does follow intimacy changes and resets) until the entry expires, so as
/// not to rewrite that entry on every message. A dialog read by id does
/// follow them.
///
/// After a database is restored or replaced under a live shared cache,
/// change [`CachePolicy::namespace`] (or flush Redis): cached rows would
/// otherwise outlive the data they came from for up to their TTL.
///
/// ```no_run
/// # async fn build(store: std::sync::Arc<dyn vitte_domain::ports::Store>) {
/// use std::sync::Arc;
/// use vitte_cache::{CachePolicy, CachedStore, MemoryCache};
///
/// let _cached = CachedStore::new(store, Arc::new(MemoryCache::default()), CachePolicy::default());
/// # }
/// ```
pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    policy: CachePolicy,
    keys: Keys,
    flights: Flights,
    health: Arc<Health>,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("engine", &self.inner.engine())
            .field("policy", &self.policy)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The counters and the log gate, shared with delayed deletes.
#[derive(Debug)]
struct Health {
    counters: Counters,
    gate: LogGate,
}

impl Health {
    /// Counts a failed cache operation and logs it, unless one was logged recently.
    fn cache_failed(&self, op: &'static str, key: &str, error: &dyn Display) {
        self.counters.error(op);
        if let Some(held_back) = self.gate.pass(Instant::now()) {
            tracing::warn!(
                op,
                key,
                error = %error,
                held_back,
                "cache failed; answering from the store"
            );
        }
    }
}

/// What the cache said about a key.
enum Lookup<T> {
    /// A value that decoded.
    Hit(T),
    /// Nothing (or bytes that did not decode, which the next load replaces).
    Miss,
    /// The cache failed: go to the store and do not bother storing.
    Failed,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The cache.
    Cache,
    /// The store, under the key's lock; the value is now cached.
    Store,
    /// The store, because the cache failed; nothing was cached.
    Bypass,
}

/// A cached value that may be updated in place, with the instant it was
/// due to expire when it was loaded: an update stores it again for only
/// what is left of that, so updates never stretch how long a value missing
/// an update can live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Timed<T> {
    expires_at: DateTime<Utc>,
    pub(crate) value: T,
}

impl<T> Timed<T> {
    /// `value`, due to expire `ttl` from now.
    fn new(value: T, ttl: Duration) -> Self {
        let ttl = chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
        Self {
            expires_at: Utc::now()
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            value,
        }
    }

    /// What is left of its life; `None` once it is over.
    fn remaining(&self) -> Option<Duration> {
        (self.expires_at - Utc::now())
            .to_std()
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// What an update in place did to a cached value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Nothing to change (it is not the value the write touched).
    Keep,
    /// Changed: store it again.
    Changed,
}

/// Whether a failed write may still have been committed (so its keys must
/// be invalidated): everything but the errors that prove nothing was written.
fn may_have_written(error: &StoreError) -> bool {
    !matches!(
        error,
        StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::InsufficientCredits { .. }
    )
}

/// Whether a write's keys must be invalidated after it returned `result`.
fn wrote<T>(result: &Result<T, StoreError>) -> bool {
    result.as_ref().err().is_none_or(may_have_written)
}

impl CachedStore {
    /// Wraps `inner`, caching in `cache` as `policy` says.
    pub fn new(inner: Arc<dyn Store>, cache: Arc<dyn Cache>, policy: CachePolicy) -> Self {
        Self {
            inner,
            cache,
            keys: Keys::new(&policy.namespace),
            policy,
            flights: Flights::default(),
            health: Arc::new(Health {
                counters: Counters::default(),
                gate: LogGate::new(WARN_EVERY),
            }),
        }
    }

    /// Hits, misses, errors and invalidations so far.
    pub fn stats(&self) -> CacheStats {
        self.health.counters.snapshot()
    }

    /// How many cache operations failed (each answered from the store).
    pub fn cache_errors(&self) -> u64 {
        self.health.counters.errors()
    }

    /// The keys this store reads and writes, for tools that inspect the cache.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// What `key` holds, decoded.
    async fn lookup<T: DeserializeOwned>(&self, key: &str) -> Lookup<T> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(value) => Lookup::Hit(value),
                Err(e) => {
                    self.health.cache_failed("decode", key, &e);
                    Lookup::Miss
                }
            },
            Ok(None) => Lookup::Miss,
            Err(e) => {
                self.health.cache_failed("get", key, &e);
                Lookup::Failed
            }
        }
    }

    /// Stores `value` under `key`; `false` when the cache failed.
    async fn put<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) -> bool {
        let bytes = match serde_json::to_vec(value) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.health.cache_failed("encode", key, &e);
                return false;
            }
        };
        match self.cache.set(key, &bytes, ttl).await {
            Ok(()) => true,
            Err(e) => {
                self.health.cache_failed("set", key, &e);
                false
            }
        }
    }

    /// The cached value of `key` if there is a `usable` one, else the value
    /// `load` reads from the store, cached for `ttl(value)` (not at all when
    /// that is `None`). One load per key at a time: later callers wait and
    /// then find the loaded value.
    async fn read_through<T, F, Fut>(
        &self,
        key: &str,
        ttl: impl Fn(&T) -> Option<Duration>,
        usable: impl Fn(&T) -> bool,
        load: F,
    ) -> Result<(T, Source), StoreError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.lookup::<T>(key).await {
            Lookup::Hit(value) if usable(&value) => {
                self.health.counters.hit();
                return Ok((value, Source::Cache));
            }
            Lookup::Failed => return self.bypass(load).await,
            Lookup::Hit(_) | Lookup::Miss => {}
        }
        let seat = self.flights.seat(key);
        let held = seat.lock().await;
        // Whoever held the lock before us may have just loaded it.
        match self.lookup::<T>(key).await {
            Lookup::Hit(value) if usable(&value) => {
                self.health.counters.hit();
                return Ok((value, Source::Cache));
            }
            Lookup::Failed => {
                drop(held);
                return self.bypass(load).await;
            }
            Lookup::Hit(_) | Lookup::Miss => {}
        }
        self.health.counters.miss();
        let value = load().await?;
        if let Some(ttl) = ttl(&value) {
            self.put(key, &value, ttl).await;
        }
        Ok((value, Source::Store))
    }

    /// Loads from the store without caching, because the cache failed.
    async fn bypass<T, F, Fut>(&self, load: F) -> Result<(T, Source), StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.health.counters.miss();
        Ok((load().await?, Source::Bypass))
    }

    /// Caches `value`, read from the store without `key`'s lock after the
    /// epoch was `epoch`, unless an invalidation happened since (then the
    /// value may predate a write, and the next read loads it instead).
    async fn fill<T: Serialize>(&self, key: &str, value: &T, ttl: Duration, epoch: u64) {
        let seat = self.flights.seat(key);
        let _held = seat.lock().await;
        if self.flights.epoch() == epoch {
            self.put(key, value, ttl).await;
        }
    }

    /// Deletes `keys` now, under their locks, and again after
    /// [`CachePolicy::redelete_after`].
    async fn invalidate(&self, mut keys: Vec<String>) {
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return;
        }
        {
            // Sorted order, so two invalidations never wait for each other in a cycle.
            let seats: Vec<_> = keys.iter().map(|k| self.flights.seat(k)).collect();
            let mut held = Vec::with_capacity(seats.len());
            for seat in &seats {
                held.push(seat.lock().await);
            }
            self.delete_held(&keys).await;
            drop(held);
        }
        self.health.counters.invalidated(keys.len());
        self.redelete_later(keys);
    }

    /// Deletes `keys`, whose locks the caller holds, and records the
    /// invalidation for [`CachedStore::fill`].
    async fn delete_held(&self, keys: &[String]) {
        if let Err(e) = self.cache.delete(keys).await {
            self.health.cache_failed("delete", &keys.join(" "), &e);
        }
        self.flights.bump();
    }

    /// Updates the [`Timed`] value under `key`, whose lock the caller holds,
    /// with `change`, keeping its expiry. Nothing cached is nothing to
    /// update; a value that cannot be stored again (expired, or the cache
    /// failed) is deleted rather than left behind the store.
    async fn update_held<T, F>(&self, key: &str, change: F)
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&mut T) -> Change,
    {
        let mut entry = match self.lookup::<Timed<T>>(key).await {
            Lookup::Hit(entry) => entry,
            Lookup::Miss => return,
            Lookup::Failed => {
                self.delete_held(&[key.to_owned()]).await;
                return;
            }
        };
        if change(&mut entry.value) == Change::Keep {
            return;
        }
        let stored = match entry.remaining() {
            Some(ttl) => self.put(key, &entry, ttl).await,
            None => false,
        };
        if stored {
            // A value read from the store before this update must not be
            // stored over it by `fill`.
            self.flights.bump();
        } else {
            self.delete_held(&[key.to_owned()]).await;
        }
    }

    /// [`CachedStore::update_held`], taking the key's lock.
    async fn update<T, F>(&self, key: &str, change: F)
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&mut T) -> Change,
    {
        let seat = self.flights.seat(key);
        let _held = seat.lock().await;
        self.update_held(key, change).await;
    }

    /// Deletes `keys` once more after the configured delay, in the background.
    fn redelete_later(&self, keys: Vec<String>) {
        let Some(delay) = self.policy.redelete_after else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cache, health) = (self.cache.clone(), self.health.clone());
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = cache.delete(&keys).await {
                health.cache_failed("delete", &keys.join(" "), &e);
            }
        });
    }

    /// TTL of a lookup entry (Telegram id or slug to id): long when it found
    /// something, since that never changes; `absent` when it did not, since
    /// a creation may follow.
    fn mapping_ttl(&self, found: bool, absent: Duration) -> Duration {
        if found {
            self.policy.mapping_ttl
        } else {
            absent
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
