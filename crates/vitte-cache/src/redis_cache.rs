//! The shared cache engine: Redis, reached through one multiplexed,
//! self-reconnecting connection (redis' `ConnectionManager`).
//!
//! A cache must never make a request slow, so every call is bounded by a
//! short timeout, and a circuit breaker stands in front of Redis: once Redis
//! has failed (unreachable, timed out, connection dropped; not a command it
//! refused), every call (get, set and delete) fails at once, without
//! touching the network, for a cool-down; then one call probes Redis while
//! the others keep failing fast. The probe's success brings every call back
//! to Redis; its failure doubles the cool-down, up to a maximum (see
//! [`RedisSettings`]). The connection is made in the background: a process
//! starts even when Redis is down and picks it up when it comes back. A
//! connection that failed is dropped, so the probe connects afresh and
//! judges the Redis of now, not what the manager's own reconnection (which
//! starts in the background right after a failure) found a while ago.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};
use vitte_domain::ports::{Cache, CacheError};

use crate::memory::MAX_TTL;
use vitte_redis::breaker::{self, Breaker};

/// Timeouts and cool-downs of a [`RedisCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisSettings {
    /// Longest a single get, set or delete may take, connecting included;
    /// past it the caller reads the database instead.
    pub op_timeout: Duration,
    /// Longest one attempt to (re)connect may take.
    pub connect_timeout: Duration,
    /// After Redis fails, how long every call fails at once before one call
    /// probes Redis again. Deletes are refused too, so the write path never
    /// waits on a Redis that just failed; the keys of deletes that did not
    /// reach Redis are kept and deleted by the probe before it does anything
    /// else, so nothing a write invalidated is read back once Redis returns.
    pub cool_down: Duration,
    /// Each failed probe doubles the cool-down, up to this.
    pub max_cool_down: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(1),
            cool_down: breaker::FIRST_COOL_DOWN,
            max_cool_down: breaker::MAX_COOL_DOWN,
        }
    }
}

/// Why a Redis cache call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisCacheError {
    /// The URL does not describe a Redis server.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// No connection yet: another call's connection attempt is under way.
    #[error("not connected to Redis")]
    NotConnected,
    /// Redis failed recently; calls fail at once until the cool-down is
    /// over and a probe finds Redis back.
    #[error("Redis failed recently; cooling down")]
    CoolingDown,
    /// A connection attempt failed. Whatever the cause, there is no
    /// connection, so the breaker counts it as an outage.
    #[error("could not connect to Redis: {0}")]
    Connect(#[source] RedisError),
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
            Self::TimedOut(_) | Self::Connect(_) => true,
            Self::Redis(e) => breaker::is_outage(e),
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
    /// Not connected; the next call that gets past the breaker tries.
    Idle,
    /// An attempt is running in the background.
    Connecting,
    /// Connected; `generation` tells this connection from later ones.
    Ready {
        manager: ConnectionManager,
        generation: u64,
    },
}

struct Shared {
    client: Client,
    settings: RedisSettings,
    link: Mutex<Link>,
    /// The generation of the last connection made.
    generations: AtomicU64,
    breaker: Breaker,
    /// Keys whose delete did not reach Redis; the next probe deletes them.
    missed: Mutex<Missed>,
}

/// Deletes that did not reach Redis.
#[derive(Debug, Default)]
struct Missed {
    keys: std::collections::HashSet<String>,
    /// More keys were missed than [`MAX_MISSED`]; those are left to their TTL.
    overflowed: bool,
}

/// Most missed deletes kept for the probe (about 10 MB of keys at most).
const MAX_MISSED: usize = 100_000;

impl Shared {
    fn link(&self) -> MutexGuard<'_, Link> {
        // Every change of the link is a single assignment: a poisoned lock
        // still holds a valid state.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn missed(&self) -> MutexGuard<'_, Missed> {
        self.missed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `keys`, whose delete did not reach Redis, for the next probe.
    fn remember_missed(&self, keys: &[String]) {
        let mut missed = self.missed();
        for key in keys {
            if missed.keys.len() >= MAX_MISSED {
                if !missed.overflowed {
                    tracing::error!(
                        kept = MAX_MISSED,
                        "too many cache deletes missed while Redis was down; \
                         the rest are left to their TTL"
                    );
                }
                missed.overflowed = true;
                return;
            }
            missed.keys.insert(key.clone());
        }
    }

    /// Drops connection `generation` after it failed, unless it is gone
    /// already, so that the next call connects afresh.
    fn forget(&self, generation: u64) {
        let mut link = self.link();
        if matches!(*link, Link::Ready { generation: g, .. } if g == generation) {
            *link = Link::Idle;
        }
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
            Link::Idle => "idle",
            Link::Connecting => "connecting",
            Link::Ready { .. } => "ready",
        };
        f.debug_struct("RedisCache")
            .field("server", &self.shared.client.get_connection_info().addr)
            .field("link", &state)
            .field("breaker", &self.shared.breaker)
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
                link: Mutex::new(Link::Idle),
                generations: AtomicU64::new(0),
                breaker: Breaker::new("cache", settings.cool_down, settings.max_cool_down),
                missed: Mutex::new(Missed::default()),
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

    /// The connection and its generation, starting an attempt when there is
    /// none and none is under way. Only the call that starts an attempt
    /// waits for it (within its own timeout); the others fail at once.
    async fn manager(&self) -> Result<(ConnectionManager, u64), RedisCacheError> {
        let attempt = {
            let mut link = self.shared.link();
            match &*link {
                Link::Ready {
                    manager,
                    generation,
                } => return Ok((manager.clone(), *generation)),
                Link::Connecting => return Err(RedisCacheError::NotConnected),
                Link::Idle => {}
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

    /// Runs `op` within the call timeout, unless the breaker says Redis is
    /// down, and tells the breaker how it went.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, RedisCacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let permit = self
            .shared
            .breaker
            .admit(Instant::now())
            .ok_or(RedisCacheError::CoolingDown)?;
        let limit = self.shared.settings.op_timeout;
        // The probe first deletes what writes invalidated while Redis was
        // out of reach, so no call reads it back.
        let missed: Vec<String> = if permit.is_probe() {
            let mut missed = self.shared.missed();
            missed.overflowed = false;
            missed.keys.drain().collect()
        } else {
            Vec::new()
        };
        let mut used = None;
        let result = tokio::time::timeout(limit, async {
            let (manager, generation) = self.manager().await?;
            used = Some(generation);
            // The connection's own response timeout is the same limit.
            let error = |e: RedisError| {
                if e.is_timeout() {
                    RedisCacheError::TimedOut(limit)
                } else {
                    RedisCacheError::Redis(e)
                }
            };
            if !missed.is_empty() {
                let mut m = manager.clone();
                redis::cmd("DEL")
                    .arg(&missed)
                    .query_async::<i64>(&mut m)
                    .await
                    .map_err(error)?;
            }
            op(manager).await.map_err(error)
        })
        .await
        .unwrap_or(Err(RedisCacheError::TimedOut(limit)));
        if result.is_err() && !missed.is_empty() {
            self.shared.remember_missed(&missed);
        }
        match &result {
            Err(e) if e.is_outage() => {
                if let Some(generation) = used {
                    self.shared.forget(generation);
                }
                permit.failed(Instant::now(), e);
            }
            // An error Redis replied with is an answer all the same.
            Ok(_) | Err(RedisCacheError::Redis(_)) => {
                permit.succeeded();
            }
            // The call never reached Redis (another call is connecting): no
            // verdict, so a probe passes to the next call.
            Err(_) => drop(permit),
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
            *link = Link::Idle;
        }
    }
}

/// One connection attempt; records its outcome in the link.
async fn connect(shared: Arc<Shared>) -> Result<(ConnectionManager, u64), RedisCacheError> {
    let _unstick = Unstick(shared.clone());
    let settings = shared.settings;
    // No retries inside the manager: a failed reconnect simply fails the
    // calls until the next one triggers another attempt, and the breaker
    // spaces those out; hidden retry loops would only make calls wait.
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
            let generation = shared.generations.fetch_add(1, Ordering::Relaxed) + 1;
            *link = Link::Ready {
                manager: manager.clone(),
                generation,
            };
            Ok((manager, generation))
        }
        Err(e) => {
            tracing::debug!(error = %e, "Redis connection attempt failed");
            *link = Link::Idle;
            Err(RedisCacheError::Connect(e))
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
            .call(|mut m| async move { cmd.query_async(&mut m).await })
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
            .call(|mut m| async move { cmd.query_async(&mut m).await })
            .await?)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let cmd = redis::cmd("DEL").arg(keys).clone();
        let result = self
            .call(|mut m| async move { cmd.query_async::<i64>(&mut m).await.map(drop) })
            .await;
        // Whatever kept it from Redis, the probe deletes it later.
        if result.is_err() {
            self.shared.remember_missed(keys);
        }
        Ok(result?)
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
    async fn an_unreachable_server_fails_once_then_cools_down() {
        // Port 1 is never a Redis; the connection is refused at once.
        let hour = Duration::from_secs(3600);
        let settings = RedisSettings {
            cool_down: hour,
            max_cool_down: hour,
            ..RedisSettings::default()
        };
        let cache = RedisCache::open("redis://127.0.0.1:1", settings).expect("url");
        let refused = cache.call(|_| async { Ok(()) }).await;
        assert!(
            matches!(&refused, Err(RedisCacheError::Connect(e)) if e.is_connection_refusal()),
            "{refused:?}"
        );
        assert!(matches!(*cache.shared.link(), Link::Idle));
        for _ in 0..3 {
            let again = cache.call(|_| async { Ok(()) }).await;
            assert!(
                matches!(again, Err(RedisCacheError::CoolingDown)),
                "{again:?}"
            );
        }
    }

    #[test]
    fn replies_are_no_outage_but_timeouts_and_failed_connections_are() {
        let reply = RedisError::from((redis::ErrorKind::ResponseError, "WRONGTYPE"));
        assert!(!RedisCacheError::Redis(reply).is_outage());
        let refused =
            || RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(RedisCacheError::Redis(refused()).is_outage());
        assert!(RedisCacheError::Connect(refused()).is_outage());
        let auth = RedisError::from((redis::ErrorKind::AuthenticationFailed, "denied"));
        assert!(RedisCacheError::Connect(auth).is_outage(), "no connection");
        assert!(RedisCacheError::TimedOut(Duration::from_secs(1)).is_outage());
        assert!(!RedisCacheError::CoolingDown.is_outage());
        assert!(!RedisCacheError::NotConnected.is_outage());
    }
}
