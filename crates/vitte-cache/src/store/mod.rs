//! The caching decorator of the store, [`CachedStore`]: the shared
//! machinery here (read-through, fill, invalidation), one file per cached
//! repository, and the plain forwarding of the rest.

mod delegate;
mod dialogs;
mod entitlements;
mod personas;
mod users;

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
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
/// slug), the active dialog of a user with a persona, the active
/// subscription and the unlocks of a user. Every write that changes one of
/// these deletes its keys once the store has answered, so the next read (in
/// any process sharing the cache) sees it:
///
/// | write | invalidates |
/// |---|---|
/// | `upsert_user`, `accept_terms`, `set_language`, `set_blocked_bot`, `set_current_persona` | the user (and, on creation, a cached "no such Telegram id") |
/// | `upsert_persona`, `set_persona_listed` | the persona (and, on creation, a cached "no such slug") |
/// | `reset_dialog`, `add_intimacy` (the score is part of the dialog) | the active dialog |
/// | `apply_grant`, `settle_payment` | the subscription or the unlocks the grant changes |
///
/// `open_dialog` stores the dialog it opened; credit balances are not
/// cached, so spends invalidate nothing.
///
/// Rules that make this safe:
///
/// - Writes are not preceded by a delete: a reader could refill the key
///   between that delete and the write, so it would buy nothing. The delete
///   after the write is done even when the write failed with an error that
///   may hide a committed transaction (a dropped connection), and repeated
///   after [`CachePolicy::redelete_after`] to catch another process that read
///   the old row just before the write and cached it just after the delete.
/// - Within a process, loads and deletes of one key hold that key's lock
///   (locks exist only for keys in flight), so a load can never store a value older than a delete
///   it raced with, and a cold key is loaded once however many requests
///   want it. Across processes a cold key costs at most one load per process.
/// - The cache is never needed: when it fails, the store answers, the error
///   is counted ([`CachedStore::cache_errors`]) and logged at most once per
///   10 seconds.
///
/// One difference from the bare store is accepted: `updated_at` of a cached
/// active dialog does not follow the messages appended to the dialog (it
/// does follow intimacy changes and resets) until the entry expires, so as
/// not to evict the dialog on every message. `dialog(id)` is never cached
/// and always exact.
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
        self.counters.error();
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
    /// `load` reads from the store, cached for `ttl(value)`. One load per key
    /// at a time: later callers wait and then find the loaded value.
    async fn read_through<T, F, Fut>(
        &self,
        key: &str,
        ttl: impl Fn(&T) -> Duration,
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
        self.put(key, &value, ttl(&value)).await;
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
