//! What the integration tests share: where the test Redis is, fresh caches
//! and caching stores with a key namespace of their own, a store wrapper
//! that counts calls, and the cache conformance cases.

#![allow(dead_code)]

pub mod cache_cases;
pub mod counting;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vitte_cache::{CachePolicy, CachedStore, MemoryCache, RedisCache, RedisSettings};
use vitte_domain::ports::{Cache, Store};

/// The Redis the tests use: `VITTE_TEST_REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("VITTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A namespace no other test (in this run or another) uses, so tests that
/// share one Redis never see each other's keys.
pub fn unique_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "vitte-test:{}:{nanos}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for the test Redis: a generous timeout, since tests run many at
/// once on a small machine and a timed-out call would read as a miss.
pub fn redis_settings() -> RedisSettings {
    RedisSettings {
        op_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(5),
        cool_down: Duration::from_millis(100),
        max_cool_down: Duration::from_millis(100),
    }
}

/// A Redis cache on the test Redis.
///
/// # Panics
/// When the test Redis cannot be reached: the Redis tests must not pass
/// without one.
pub async fn redis_cache() -> RedisCache {
    let url = redis_url();
    match RedisCache::connect_with(&url, redis_settings()).await {
        Ok(cache) => cache,
        Err(e) => panic!(
            "the test Redis at {url} is unreachable ({e}); start one or set VITTE_TEST_REDIS_URL"
        ),
    }
}

/// The default policy under a fresh namespace, with the long-lived pointers
/// shortened so test keys do not linger in a shared Redis.
pub fn test_policy() -> CachePolicy {
    CachePolicy {
        namespace: unique_namespace(),
        mapping_ttl: Duration::from_secs(10 * 60),
        ..CachePolicy::default()
    }
}

/// A fresh SQLite store.
pub async fn sqlite() -> Arc<dyn Store> {
    vitte_store_sqlite::testing::fresh_store().await
}

/// `inner` cached in `cache` under the test policy.
pub fn cached(inner: Arc<dyn Store>, cache: Arc<dyn Cache>) -> CachedStore {
    CachedStore::new(inner, cache, test_policy())
}

/// A fresh SQLite store cached in a fresh in-process cache.
pub async fn cached_in_memory() -> Arc<dyn Store> {
    Arc::new(cached(sqlite().await, Arc::new(MemoryCache::default())))
}

/// A fresh SQLite store cached in the test Redis.
pub async fn cached_in_redis() -> Arc<dyn Store> {
    Arc::new(cached(sqlite().await, Arc::new(redis_cache().await)))
}
