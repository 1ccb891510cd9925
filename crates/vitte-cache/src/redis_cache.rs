//! The shared cache engine: Redis, reached through one multiplexed,
//! self-reconnecting connection (redis' `ConnectionManager`).
//!
//! A cache must never make a request slow, so every call is bounded by a
//! short timeout, and after a failure calls fail at once for a cool-down
//! period instead of each waiting out its own timeout. The connection is
//! made in the background: a process starts even when Redis is down and
//! picks it up when it comes back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};
use vitte_domain::ports::{Cache, CacheError};

use crate::memory::MAX_TTL;

/// Timeouts of a [`RedisCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSettings {
    /// Longest a single get, set or delete may take, connecting included;
    /// past it the caller reads the database instead.
    pub op_timeout: Duration,
    /// Longest one attempt to (re)connect may take.
    pub connect_timeout: Duration,
    /// After a failed call or connection attempt, how long gets and sets fail
    /// at once rather than wait on a Redis that just failed. Deletes are
    /// always attempted: a missed invalidation leaves a stale value behind.
    pub cool_down: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(1),
            cool_down: Duration::from_secs(1),
        }
    }
}

/// Why a Redis cache call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisCacheError {
    /// The URL does not describe a Redis server.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// No connection yet (a connection attempt is under way or failed recently).
    #[error("not connected to Redis")]
    NotConnected,
    /// Redis failed recently; calls fail at once until the cool-down ends.
    #[error("Redis failed recently; cooling down")]
    CoolingDown,
    /// The call took longer than the configured timeout.
    #[error("Redis did not answer within {0:?}")]
    TimedOut(Duration),
    /// Redis or the connection reported an error.
    #[error("Redis error: {0}")]
    Redis(#[source] RedisError),
    /// Called outside a Tokio runtime, where no connection can be driven.
    #[error("no Tokio runtime to drive the Redis connection")]
    NoRuntime,
}

impl RedisCacheError {
    /// Whether the error says Redis is unwell (rather than refusing one command).
    fn is_outage(&self) -> bool {
        match self {
            Self::TimedOut(_) => true,
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
            }
            Self::InvalidUrl(_) | Self::NotConnected | Self::CoolingDown | Self::NoRuntime => false,
        }
    }
}

impl From<RedisCacheError> for CacheError {
    fn from(e: RedisCacheError) -> Self {
        CacheError(Box::new(e))
    }
}

/// Where the connection stands.
enum Link {
    /// Not connected; the next call may try again from `retry_at` on.
    Idle { retry_at: Option<Instant> },
    /// An attempt is running in the background.
    Connecting,
    /// Connected; the manager reconnects by itself after a drop.
    Ready(ConnectionManager),
}

struct Shared {
    client: Client,
    settings: RedisSettings,
    link: Mutex<Link>,
    origin: Instant,
    /// Milliseconds after `origin` until which gets and sets fail at once.
    cool_until: AtomicU64,
}

impl Shared {
    fn link(&self) -> MutexGuard<'_, Link> {
        // Every change of the link is a single assignment: a poisoned lock
        // still holds a valid state.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn millis_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn cooling(&self) -> bool {
        self.millis_since_origin(Instant::now()) < self.cool_until.load(Ordering::Relaxed)
    }

    fn cool_down(&self) {
        let until = self.millis_since_origin(Instant::now() + self.settings.cool_down);
        self.cool_until.fetch_max(until, Ordering::Relaxed);
    }
}

/// A [`Cache`] on Redis: `GET`, `SET … PX`, `DEL`. Cloning is cheap and
/// clones share the connection.
#[derive(Clone)]
pub struct RedisCache {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.shared.link() {
            Link::Idle { .. } => "idle",
            Link::Connecting => "connecting",
            Link::Ready(_) => "ready",
        };
        f.debug_struct("RedisCache")
            .field("server", &self.shared.client.get_connection_info().addr)
            .field("link", &state)
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl RedisCache {
    /// A cache on the Redis at `url` that connects on first use, in the
    /// background, and keeps trying while Redis is unreachable. Fails only
    /// for a malformed URL.
    pub fn open(url: &str, settings: RedisSettings) -> Result<Self, RedisCacheError> {
        let client = Client::open(url).map_err(RedisCacheError::InvalidUrl)?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                settings,
                link: Mutex::new(Link::Idle { retry_at: None }),
                origin: Instant::now(),
                cool_until: AtomicU64::new(0),
            }),
        })
    }

    /// Connects to the Redis at `url` with the default settings, failing when
    /// it cannot be reached within the connect timeout: for a start-up that
    /// wants to know. A cache built this way still survives later outages.
    pub async fn connect(url: &str) -> Result<Self, RedisCacheError> {
        Self::connect_with(url, RedisSettings::default()).await
    }

    /// [`RedisCache::connect`] with explicit settings.
    pub async fn connect_with(url: &str, settings: RedisSettings) -> Result<Self, RedisCacheError> {
        let cache = Self::open(url, settings)?;
        let limit = settings.connect_timeout;
        match tokio::time::timeout(limit, cache.manager()).await {
            Ok(Ok(_)) => Ok(cache),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RedisCacheError::TimedOut(limit)),
        }
    }

    /// The connection, starting an attempt when there is none and none is
    /// under way or cooling down. Only the call that starts an attempt waits
    /// for it (within its own timeout); the others fail at once.
    async fn manager(&self) -> Result<ConnectionManager, RedisCacheError> {
        let attempt = {
            let mut link = self.shared.link();
            match &*link {
                Link::Ready(manager) => return Ok(manager.clone()),
                Link::Connecting => return Err(RedisCacheError::NotConnected),
                Link::Idle { retry_at: Some(at) } if Instant::now() < *at => {
                    return Err(RedisCacheError::NotConnected);
                }
                Link::Idle { .. } => {}
            }
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return Err(RedisCacheError::NoRuntime);
            };
            *link = Link::Connecting;
            runtime.spawn(connect(self.shared.clone()))
        };
        // Dropping the handle (this call timing out) leaves the attempt running.
        match attempt.await {
            Ok(result) => result,
            Err(_) => Err(RedisCacheError::NotConnected),
        }
    }

    /// Runs `op` within the call timeout; a failure that looks like an outage
    /// starts the cool-down.
    async fn call<T, F, Fut>(&self, gated: bool, op: F) -> Result<T, RedisCacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        if gated && self.shared.cooling() {
            return Err(RedisCacheError::CoolingDown);
        }
        let limit = self.shared.settings.op_timeout;
        let result = tokio::time::timeout(limit, async {
            let manager = self.manager().await?;
            op(manager).await.map_err(|e| {
                // The connection's own response timeout is the same limit.
                if e.is_timeout() {
                    RedisCacheError::TimedOut(limit)
                } else {
                    RedisCacheError::Redis(e)
                }
            })
        })
        .await
        .unwrap_or(Err(RedisCacheError::TimedOut(limit)));
        if let Err(e) = &result
            && e.is_outage()
        {
            self.shared.cool_down();
        }
        result
    }
}

/// Puts a link left `Connecting` back to idle, should its attempt end
/// without recording an outcome (a panic, a runtime shutting down), so that
/// a later call can try again.
struct Unstick(Arc<Shared>);

impl Drop for Unstick {
    fn drop(&mut self) {
        let mut link = self.0.link();
        if matches!(*link, Link::Connecting) {
            *link = Link::Idle {
                retry_at: Some(Instant::now() + self.0.settings.cool_down),
            };
        }
    }
}

/// One connection attempt; records its outcome in the link.
async fn connect(shared: Arc<Shared>) -> Result<ConnectionManager, RedisCacheError> {
    let _unstick = Unstick(shared.clone());
    let settings = shared.settings;
    // No retries inside the manager: a failed reconnect simply fails the
    // calls until the next one triggers another attempt, while ours cool
    // down; hidden retry loops would only make calls wait.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(settings.connect_timeout)
        .set_response_timeout(settings.op_timeout)
        .set_number_of_retries(0);
    let result = tokio::time::timeout(
        settings.connect_timeout,
        ConnectionManager::new_with_config(shared.client.clone(), config),
    )
    .await
    .unwrap_or_else(|_| {
        Err(RedisError::from((
            redis::ErrorKind::IoError,
            "connection attempt timed out",
        )))
    });
    let mut link = shared.link();
    match result {
        Ok(manager) => {
            *link = Link::Ready(manager.clone());
            Ok(manager)
        }
        Err(e) => {
            tracing::debug!(error = %e, "Redis connection attempt failed");
            *link = Link::Idle {
                retry_at: Some(Instant::now() + settings.cool_down),
            };
            Err(RedisCacheError::Redis(e))
        }
    }
}

/// `ttl` in whole milliseconds for `PX`: at least 1 (a shorter positive TTL
/// still stores the value briefly), at most [`MAX_TTL`].
fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.min(MAX_TTL).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let cmd = redis::cmd("GET").arg(key).clone();
        Ok(self
            .call(true, |mut m| async move { cmd.query_async(&mut m).await })
            .await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            // Redis refuses `PX 0`; a value that expires at once is a delete.
            return self.delete(&[key.to_owned()]).await;
        }
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(px(ttl))
            .clone();
        Ok(self
            .call(true, |mut m| async move { cmd.query_async(&mut m).await })
            .await?)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let cmd = redis::cmd("DEL").arg(keys).clone();
        Ok(self
            .call(false, |mut m| async move {
                cmd.query_async::<i64>(&mut m).await.map(drop)
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn px_rounds_up_and_caps() {
        assert_eq!(px(Duration::from_micros(10)), 1);
        assert_eq!(px(Duration::from_millis(250)), 250);
        assert_eq!(px(Duration::MAX), px(MAX_TTL));
    }

    #[test]
    fn a_malformed_url_is_refused() {
        assert!(matches!(
            RedisCache::open("http://nowhere", RedisSettings::default()),
            Err(RedisCacheError::InvalidUrl(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_fast_and_cools_down() {
        // Port 1 is never a Redis; the connection is refused at once.
        let cache = RedisCache::open("redis://127.0.0.1:1", RedisSettings::default()).expect("url");
        let started = Instant::now();
        assert!(cache.get("k").await.is_err());
        assert!(cache.set("k", b"v", Duration::from_secs(1)).await.is_err());
        assert!(cache.delete(&["k".to_owned()]).await.is_err());
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }
}
