//! The shared engine: GCRA state in Redis, decided by one Lua script
//! (`gcra.lua`) so the read-decide-write is atomic across every process.
//!
//! Layout: quota `count`/`period` under key `k` lives at
//! `{namespace}:{k}:{count}:{period_ms}` (the braces are literal), holding
//! its TAT in milliseconds and expiring (PX) when the TAT passes, so idle
//! keys vanish by themselves. The braces make the caller's key a Redis
//! Cluster hash tag: all quotas of one key share a slot, as a multi-key
//! script requires.
//!
//! Time: the script takes `now` as an argument (milliseconds from the
//! caller's injected clock) rather than reading Redis `TIME`. Tests can then
//! use exact instants, and both engines judge by the same clock source. The
//! cost is that processes must keep their clocks in sync (NTP); a process
//! running behind is merely stricter for its own events. Expiry uses only
//! the relative `TAT - now`, so Redis's own clock does not matter.
//!
//! Failures: every call Redis fails is counted in
//! `vitte_limiter_unavailable_total` before the error goes back to the caller.
//! Once Redis has failed (unreachable, timed out, connection dropped; not a
//! script Redis refused), a circuit breaker makes calls fail at once, without
//! touching the network, for a cool-down of 1 s; then one call probes Redis.
//! Its success brings every call back to Redis; its failure doubles the
//! cool-down, up to 10 s (see [`RedisLimiter::with_cool_down`]). An outage
//! thus costs one caller a timeout per cool-down, not every caller one each.
//! Between probes the connection manager tries nothing by itself: it
//! reconnects only when a call finds the connection broken, so its own
//! attempts follow the probes (one attempt after each failed probe).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};

use crate::LimiterError;
use crate::gcra::{self, Params};
use vitte_redis::breaker::{self, Breaker};

/// The prefix of every key unless [`RedisLimiter::with_namespace`] says
/// otherwise; `v1` is bumped if the stored format ever changes.
pub const DEFAULT_NAMESPACE: &str = "vitte:rl:v1";

/// How long [`RedisLimiter::connect`] waits for a connection, and each call
/// for its answer: a limiter that hangs would stall the path it guards,
/// while an error lets the caller fail open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// GCRA rate limiter shared through Redis (see [`crate::gcra`] for the
/// rules, which are those of [`crate::MemoryLimiter`] exactly).
#[derive(Clone)]
pub struct RedisLimiter {
    /// Multiplexed and self-reconnecting; cheap to clone per call.
    connection: ConnectionManager,
    /// The script, run by EVALSHA (loaded again if Redis forgot it).
    script: Script,
    /// Prefix of every key this limiter touches.
    namespace: String,
    /// Fails calls at once while Redis is known to be down; shared by the
    /// clones, which share the connection.
    breaker: Arc<Breaker>,
}

impl RedisLimiter {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port/db`),
    /// with short timeouts so a sick Redis turns into errors, not stalls.
    ///
    /// # Errors
    /// [`LimitError`] when the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, LimitError> {
        let client = redis::Client::open(url).map_err(LimiterError::from)?;
        // One connection attempt per reconnection, no retries: the backoff
        // of redis 0.32 starts at 1 s and grows by the factor (up to a
        // minute), and calls wait for it. Without retries a call during an
        // outage fails within CONNECT_TIMEOUT, and the next call that hits
        // the dead connection starts a new attempt.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(LimiterError::from)?;
        Ok(Self::new(connection))
    }

    /// A limiter over an existing connection (to share it with, say, the
    /// cache), under [`DEFAULT_NAMESPACE`], with the default cool-downs.
    #[must_use]
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            script: Script::new(include_str!("gcra.lua")),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            breaker: Arc::new(Breaker::new(
                "rate limiter",
                breaker::FIRST_COOL_DOWN,
                breaker::MAX_COOL_DOWN,
            )),
        }
    }

    /// The same limiter with other cool-downs: after Redis fails, calls
    /// fail at once for `first`; each failed probe doubles that, up to
    /// `max`. The defaults are 1 s and 10 s. Clones made before this call
    /// keep the old ones.
    #[must_use]
    pub fn with_cool_down(mut self, first: Duration, max: Duration) -> Self {
        self.breaker = Arc::new(Breaker::new("rate limiter", first, max));
        self
    }

    /// The same limiter with its keys under another prefix: separate
    /// environments sharing one Redis, or tests running in parallel.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Counts calls that failed because Redis could not be reached (those
    /// refused at once while the breaker is open included) or refused the
    /// script; callers then decide alone, usually letting the event through.
    pub const UNAVAILABLE_METRIC: &str = "vitte_limiter_unavailable_total";

    /// Describes this engine's metrics for the exporter; call once the
    /// recorder is in place.
    pub fn describe_metrics() {
        metrics::describe_counter!(
            Self::UNAVAILABLE_METRIC,
            "Rate limiter calls that failed because Redis was unreachable (or had just failed) or refused the script."
        );
    }

    /// The Redis key holding one quota's TAT under `key`.
    fn redis_key(&self, key: &str, params: &Params) -> String {
        format!(
            "{}:{{{key}}}:{}:{}",
            self.namespace, params.count, params.period_ms
        )
    }

    /// Runs the script for `key`, unless the breaker says Redis is down.
    async fn run(&self, key: &str, params: &[Params], now: i64) -> Result<i64, LimiterError> {
        let permit = self
            .breaker
            .admit(Instant::now())
            .ok_or(LimiterError::CoolingDown)?;
        let mut result = self.invoke(key, params, now).await;
        if permit.is_probe()
            && result
                .as_ref()
                .is_err_and(redis::RedisError::is_connection_refusal)
        {
            // After a failure the manager reconnects in the background, and
            // the next call first gets what that attempt found, which may be
            // a Redis down long ago. That answer started a new attempt;
            // waiting for it lets the probe judge the Redis of now. A refused
            // connection never carried the script, so it is not run twice.
            result = self.invoke(key, params, now).await;
        }
        match &result {
            Err(e) if breaker::is_outage(e) => {
                permit.failed(Instant::now(), e);
            }
            // An error Redis replied with is an answer all the same.
            Ok(_) | Err(_) => {
                permit.succeeded();
            }
        }
        Ok(result?)
    }

    async fn invoke(
        &self,
        key: &str,
        params: &[Params],
        now: i64,
    ) -> Result<i64, redis::RedisError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now);
        for p in params {
            invocation
                .key(self.redis_key(key, p))
                .arg(p.interval_ms)
                .arg(p.tolerance_ms);
        }
        let mut connection = self.connection.clone();
        invocation.invoke_async(&mut connection).await
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("namespace", &self.namespace)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn acquire(
        &self,
        key: &str,
        quotas: &[Quota],
        now: DateTime<Utc>,
    ) -> Result<RateDecision, LimitError> {
        let params = Params::all(quotas)?;
        if params.is_empty() {
            return Ok(RateDecision::Allowed);
        }
        let wait = match self.run(key, &params, gcra::millis(now)).await {
            Ok(wait) => wait,
            Err(e) => {
                metrics::counter!(Self::UNAVAILABLE_METRIC).increment(1);
                return Err(e.into());
            }
        };
        Ok(if wait > 0 {
            RateDecision::Limited {
                retry_after: gcra::wait_duration(wait),
            }
        } else {
            RateDecision::Allowed
        })
    }
}
