//! The storage conformance suite, run against the caching store: caching
//! must not change any behaviour of the store it wraps, whichever engine
//! caches.

mod support;

/// `CachedStore(SqliteStore, MemoryCache)`.
mod memory {
    use std::sync::Arc;

    use vitte_domain::ports::Store;

    async fn fresh_store() -> Arc<dyn Store> {
        crate::support::cached_in_memory().await
    }

    vitte_store_conformance::conformance_suite!(fresh_store);
}

/// `CachedStore(SqliteStore, RedisCache)`, each case under its own namespace.
mod redis {
    use std::sync::Arc;

    use vitte_domain::ports::Store;

    async fn fresh_store() -> Arc<dyn Store> {
        crate::support::cached_in_redis().await
    }

    vitte_store_conformance::conformance_suite!(fresh_store);
}
