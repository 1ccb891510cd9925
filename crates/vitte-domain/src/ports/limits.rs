//! Rate limits: how often a key (a user, a chat) may do something, shared by
//! every process when the engine is shared.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::BoxError;

/// At most `count` events per `period`, with bursts up to `count` (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Events allowed per period.
    pub count: u32,
    /// The period.
    pub period: Duration,
}

/// The answer of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// The event may happen; it was counted against every quota.
    Allowed,
    /// Over a quota; nothing was counted. The earliest moment the event
    /// would be allowed is `retry_after` from now.
    Limited {
        /// How long to wait.
        retry_after: Duration,
    },
}

/// The limiter's engine failed (callers decide whether to fail open).
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct LimitError(#[source] pub BoxError);

/// A rate limiter engine.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one event for `key` against all `quotas` atomically: either
    /// every quota has room and the event is counted in all of them, or
    /// nothing is counted and the longest wait is returned.
    async fn acquire(
        &self,
        key: &str,
        quotas: &[Quota],
        now: DateTime<Utc>,
    ) -> Result<RateDecision, LimitError>;
}
