//! Caching for Vitte: two engines of the [`Cache`](vitte_domain::ports::Cache)
//! port and [`CachedStore`], a decorator of the [`Store`](vitte_domain::ports::Store)
//! that answers the reads of every chat message from the cache.
//!
//! - [`MemoryCache`]: in-process (moka), for the embedded single-process setup.
//! - [`RedisCache`]: shared by every process of a scaled-out deployment; a
//!   Redis that is down or slow costs one caller a short timeout, after
//!   which calls fail at once for a cool-down until a single probe finds
//!   Redis back, and the cache reconnects by itself.
//! - [`CachedStore`]: cache-aside over any store, with invalidation on every
//!   write that changes a cached value, one loader per key at a time, and a
//!   fall-back to the store whenever the cache fails.
//!
//! The engine is chosen once, by the binary: `MemoryCache` when no Redis is
//! configured, `RedisCache` otherwise.
//!
//! Hits, misses, fall-backs to the store and invalidations are counted per
//! store ([`CachedStore::stats`]) and in the process's metrics
//! ([`describe_metrics`] names them).

mod codec;
mod flight;
mod keys;
mod memory;
mod policy;
mod redis_cache;
mod stats;
mod store;

pub use keys::{Keys, SHAPE_VERSION};
pub use memory::{MemoryCache, MemoryCapacity};
pub use policy::CachePolicy;
pub use redis_cache::{RedisCache, RedisCacheError, RedisSettings};
pub use stats::{
    CacheStats, FALLBACKS_METRIC, HITS_METRIC, INVALIDATIONS_METRIC, MISSES_METRIC,
    describe_metrics,
};
pub use store::CachedStore;
