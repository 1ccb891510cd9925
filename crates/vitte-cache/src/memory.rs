//! The in-process cache engine (moka): the embedded default, for a single
//! process. It never fails; entries expire by their own time to live and the
//! least useful ones are evicted when the bound is reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use vitte_domain::ports::{Cache, CacheError};

/// The longest time to live an entry gets; longer requests are shortened so
/// that expiry instants never overflow.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// What bounds a [`MemoryCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryCapacity {
    /// At most this many bytes of keys and values (the usual choice: entries
    /// range from a few bytes to a persona card of kilobytes).
    Bytes(u64),
    /// At most this many entries, whatever their size.
    Entries(u64),
}

impl Default for MemoryCapacity {
    fn default() -> Self {
        Self::Bytes(64 * 1024 * 1024)
    }
}

/// A stored value and the time to live it was stored with.
#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

/// Gives every entry the time to live of its own `set`.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Entry,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// An in-process [`Cache`] with a time to live per entry, bounded by bytes or
/// entries. Cloning is cheap and clones share the entries.
#[derive(Clone)]
pub struct MemoryCache {
    entries: moka::future::Cache<String, Entry>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .field("weighted_size", &self.entries.weighted_size())
            .finish()
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(MemoryCapacity::default())
    }
}

impl MemoryCache {
    /// An empty cache bounded by `capacity`.
    pub fn new(capacity: MemoryCapacity) -> Self {
        let builder = moka::future::Cache::builder().expire_after(PerEntryTtl);
        let entries = match capacity {
            MemoryCapacity::Bytes(bytes) => builder
                .max_capacity(bytes)
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(key.len() + entry.bytes.len()).unwrap_or(u32::MAX)
                })
                .build(),
            MemoryCapacity::Entries(count) => builder.max_capacity(count).build(),
        };
        Self { entries }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.entries.get(key).await.map(|e| e.bytes.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            // Expired at once: nothing to keep, and an older value must go.
            self.entries.invalidate(key).await;
            return Ok(());
        }
        let entry = Entry {
            bytes: Arc::from(value),
            ttl: ttl.min(MAX_TTL),
        };
        self.entries.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), CacheError> {
        for key in keys {
            self.entries.invalidate(key).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entry_bound_evicts() {
        let cache = MemoryCache::new(MemoryCapacity::Entries(10));
        for i in 0..100 {
            let key = format!("k{i}");
            cache
                .set(&key, b"v", Duration::from_secs(60))
                .await
                .expect("set");
            // Reading makes entries "popular" enough for moka's admission policy
            // to consider them; eviction must still keep the bound.
            let _ = cache.get(&key).await;
        }
        cache.entries.run_pending_tasks().await;
        assert!(cache.entries.entry_count() <= 10, "{cache:?}");
    }

    #[tokio::test]
    async fn byte_bound_counts_keys_and_values() {
        let cache = MemoryCache::new(MemoryCapacity::Bytes(10_000));
        for i in 0..100 {
            cache
                .set(&format!("k{i:03}"), &[7u8; 996], Duration::from_secs(60))
                .await
                .expect("set");
        }
        cache.entries.run_pending_tasks().await;
        assert!(cache.entries.weighted_size() <= 10_000, "{cache:?}");
        assert!(cache.entries.entry_count() <= 10, "{cache:?}");
    }

    #[tokio::test]
    async fn huge_ttls_are_capped_not_rejected() {
        let cache = MemoryCache::default();
        cache.set("k", b"v", Duration::MAX).await.expect("set");
        assert_eq!(cache.get("k").await.expect("get"), Some(b"v".to_vec()));
    }
}
