//! A key-value cache with expiry, for cache-aside reads of hot data.

use std::time::Duration;

use async_trait::async_trait;

use super::BoxError;

/// The cache engine failed; callers fall back to the database.
#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(#[source] pub BoxError);

/// A cache engine: bytes under string keys, each with a time to live.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    /// Removes keys (absent keys are fine).
    async fn delete(&self, keys: &[String]) -> Result<(), CacheError>;
}
