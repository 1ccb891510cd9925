//! A shared limiter with a local stand-by: while the shared engine (Redis)
//! cannot answer, each process keeps enforcing the quotas on its own.
//!
//! Failing open would let anyone through while Redis is down, or while it is
//! too slow to answer under load: one abuser could then spend without limit.
//! The stand-by keeps every quota per process instead, so during an outage
//! a key gets at most its quota once per process, and the limits return to
//! being shared as soon as Redis answers again. The shared engine's own
//! circuit breaker makes its failures immediate during an outage, so the
//! stand-by costs no waiting.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};

use crate::MemoryLimiter;

/// Decisions of the shared limiter, or of an in-process one while the shared
/// one fails.
pub struct FailoverLimiter {
    shared: Box<dyn RateLimiter>,
    local: MemoryLimiter,
}

impl FailoverLimiter {
    /// `shared`, with an in-process stand-by.
    #[must_use]
    pub fn new(shared: Box<dyn RateLimiter>) -> Self {
        Self {
            shared,
            local: MemoryLimiter::new(),
        }
    }
}

impl std::fmt::Debug for FailoverLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverLimiter").finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for FailoverLimiter {
    async fn acquire(
        &self,
        key: &str,
        quotas: &[Quota],
        now: DateTime<Utc>,
    ) -> Result<RateDecision, LimitError> {
        match self.shared.acquire(key, quotas, now).await {
            Ok(decision) => Ok(decision),
            // Counted by the shared engine (`vitte_limiter_unavailable_total`).
            Err(e) => {
                tracing::debug!(error = %e, key, "shared limiter unavailable; deciding in this process");
                self.local.acquire(key, quotas, now).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A shared engine that admits everything, or fails, as told.
    struct Switch {
        down: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl RateLimiter for Switch {
        async fn acquire(
            &self,
            _key: &str,
            _quotas: &[Quota],
            _now: DateTime<Utc>,
        ) -> Result<RateDecision, LimitError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                Err(LimitError("redis is down".into()))
            } else {
                Ok(RateDecision::Allowed)
            }
        }
    }

    const THREE_A_MINUTE: [Quota; 1] = [Quota {
        count: 3,
        period: Duration::from_secs(60),
    }];

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant")
    }

    #[tokio::test]
    async fn the_shared_engine_decides_while_it_answers() {
        let down = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let limiter = FailoverLimiter::new(Box::new(Switch {
            down: down.clone(),
            calls: calls.clone(),
        }));
        for _ in 0..10 {
            assert_eq!(
                limiter
                    .acquire("u", &THREE_A_MINUTE, t0())
                    .await
                    .expect("decided"),
                RateDecision::Allowed,
                "the shared engine's decision was overridden"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn while_the_shared_engine_fails_the_quota_holds_in_this_process() {
        let down = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicUsize::new(0));
        let limiter = FailoverLimiter::new(Box::new(Switch {
            down: down.clone(),
            calls: calls.clone(),
        }));
        let mut allowed = 0;
        for _ in 0..10 {
            if limiter
                .acquire("u", &THREE_A_MINUTE, t0())
                .await
                .expect("decided")
                == RateDecision::Allowed
            {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 3, "an outage let the key through unlimited");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            10,
            "the shared engine was not asked"
        );
        // Another key has its own budget.
        assert_eq!(
            limiter
                .acquire("v", &THREE_A_MINUTE, t0())
                .await
                .expect("decided"),
            RateDecision::Allowed
        );

        // Back: the shared engine decides again.
        down.store(false, Ordering::SeqCst);
        assert_eq!(
            limiter
                .acquire("u", &THREE_A_MINUTE, t0())
                .await
                .expect("decided"),
            RateDecision::Allowed
        );
    }
}
