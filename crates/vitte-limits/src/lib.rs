//! Rate limiter engines behind [`vitte_domain::ports::RateLimiter`]: how often
//! a key (a user, a chat) may do something.
//!
//! Both engines run the same GCRA (generic cell rate algorithm, see
//! [`gcra`]) with the same integer arithmetic, so they decide identically:
//!
//! - [`MemoryLimiter`] keeps the state in this process: the embedded mode,
//!   where one process serves everything.
//! - [`RedisLimiter`] keeps it in Redis and decides in one atomic Lua script,
//!   so every process shares the limits: a user whose updates reach two bot
//!   processes still gets 10 a minute in total. After Redis fails it fails
//!   calls at once for a short cool-down, then probes Redis with one call.
//!
//! Time comes only from the caller's `now`, never from a clock inside the
//! engine, so tests are exact and every process judges by the same clock
//! source (its own injected [`Clock`](vitte_domain::Clock)).
//!
//! A quota is identified under a key by its `(count, period)`: two calls that
//! name the same key and the same quota share one budget, whichever other
//! quotas they name alongside it.
//!
//! [`conformance`] holds the behaviour both engines must show; the
//! integration tests run it unchanged against each.

pub mod conformance;
mod failover;
pub mod gcra;
mod memory_limiter;
mod redis_limiter;

pub use failover::FailoverLimiter;
pub use memory_limiter::MemoryLimiter;
pub use redis_limiter::{DEFAULT_NAMESPACE, RedisLimiter};

use vitte_domain::ports::{LimitError, Quota};

/// Why an engine refused to decide. It travels boxed inside the port's
/// [`LimitError`], so a caller that cares can downcast to it.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// The quota can never be enforced: no events at all (`count` 0) or no
    /// time to spread them over (`period` 0). That is a configuration
    /// mistake, so it is reported rather than guessed at; check quotas at
    /// start-up with [`gcra::check_quota`].
    #[error("invalid quota {} per {:?}: count and period must be positive", .0.count, .0.period)]
    InvalidQuota(Quota),
    /// Redis could not be reached or refused the script.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis failed recently, so the call was not sent: calls fail at once
    /// until the cool-down is over and a probe finds Redis back.
    #[error("redis failed recently; failing fast until it answers again")]
    CoolingDown,
}

impl From<LimiterError> for LimitError {
    fn from(error: LimiterError) -> Self {
        LimitError(Box::new(error))
    }
}
