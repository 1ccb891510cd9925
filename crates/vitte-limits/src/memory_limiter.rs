//! The in-process engine: GCRA state in sharded maps, for the embedded mode
//! where one process serves everything.
//!
//! Each key's quotas sit under one shard lock, so the read-decide-write of an
//! `acquire` is atomic and concurrent calls on one key never over-admit. The
//! lock is never held across an `.await`.
//!
//! Memory stays bounded without a clock of its own: a key whose every TAT is
//! at or before `now` holds no information (an absent key behaves the same),
//! so when a shard has doubled in size since its last sweep it drops such
//! keys, judged by the `now` of the call that triggers the sweep. A key thus
//! lives at most one period (its longest) after its last admitted event.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};

use crate::gcra::{self, Params, Verdict};

/// Shards split the lock so unrelated keys rarely wait on each other.
const SHARDS: usize = 16;

/// A shard is not swept below this many keys: sweeping tiny maps often
/// would cost more than the memory it frees.
const MIN_SWEEP_LEN: usize = 1024;

/// In-process GCRA rate limiter (see [`crate::gcra`] for the rules).
#[derive(Debug)]
pub struct MemoryLimiter {
    /// Keys spread over independently locked maps.
    shards: Box<[Mutex<Shard>]>,
    /// Picks a key's shard; seeded per limiter so keys cannot be chosen to
    /// pile onto one shard.
    hasher: RandomState,
}

/// One lock's worth of keys.
#[derive(Debug)]
struct Shard {
    /// Per key, the TAT of each quota it has been counted against.
    keys: HashMap<String, Vec<Slot>>,
    /// Sweep when the map reaches this size (amortised O(1) per call).
    sweep_at: usize,
}

/// The state of one quota under one key.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The quota's identity: count...
    count: u32,
    /// ...and period, as the algorithm sees it.
    period_ms: i64,
    /// Its theoretical arrival time, in milliseconds since the epoch.
    tat: i64,
}

impl Slot {
    fn is(&self, params: &Params) -> bool {
        self.count == params.count && self.period_ms == params.period_ms
    }
}

impl MemoryLimiter {
    /// An empty limiter.
    #[must_use]
    pub fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    keys: HashMap::new(),
                    sweep_at: MIN_SWEEP_LEN,
                })
            })
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    /// How many keys hold state now (swept keys excluded), for metrics and
    /// to see that idle keys are forgotten.
    #[must_use]
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).keys.len()).sum()
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(key) as usize % self.shards.len();
        lock(&self.shards[index])
    }
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// The maps stay consistent even if a holder panicked (a decision is
/// computed before anything is written), so a poisoned lock is still usable.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    fn acquire(&mut self, key: &str, params: &[Params], now: i64) -> Verdict {
        let slots = self.keys.get(key).map_or(&[][..], Vec::as_slice);
        let stored: Vec<Option<i64>> = params
            .iter()
            .map(|p| slots.iter().find(|s| s.is(p)).map(|s| s.tat))
            .collect();
        let verdict = gcra::decide(params, &stored, now);
        if let Verdict::Allowed(new_tats) = &verdict {
            let slots = self.keys.entry(key.to_owned()).or_default();
            // Slots that have run out hold nothing; dropping them keeps a
            // key's list as short as its live quotas.
            slots.retain(|s| s.tat > now);
            for (p, &tat) in params.iter().zip(new_tats) {
                match slots.iter_mut().find(|s| s.is(p)) {
                    Some(slot) => slot.tat = tat,
                    None => slots.push(Slot {
                        count: p.count,
                        period_ms: p.period_ms,
                        tat,
                    }),
                }
            }
            self.sweep_if_grown(now);
        }
        verdict
    }

    fn sweep_if_grown(&mut self, now: i64) {
        if self.keys.len() < self.sweep_at {
            return;
        }
        self.keys
            .retain(|_, slots| slots.iter().any(|s| s.tat > now));
        self.sweep_at = (self.keys.len() * 2).max(MIN_SWEEP_LEN);
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
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
        let verdict = self.shard(key).acquire(key, &params, gcra::millis(now));
        Ok(match verdict {
            Verdict::Allowed(_) => RateDecision::Allowed,
            Verdict::Limited(wait) => RateDecision::Limited {
                retry_after: gcra::wait_duration(wait),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn idle_keys_are_forgotten() {
        let limiter = MemoryLimiter::new();
        let minute = [Quota {
            count: 10,
            period: Duration::from_secs(60),
        }];
        let t0 = DateTime::from_timestamp(1_735_689_600, 0).unwrap();
        let n = SHARDS * MIN_SWEEP_LEN;
        for i in 0..n {
            let decision = limiter.acquire(&format!("u{i}"), &minute, t0).await;
            assert_eq!(decision.unwrap(), RateDecision::Allowed);
        }
        // Still within the period: nothing may be forgotten.
        assert_eq!(limiter.tracked_keys(), n);
        // A minute later every key is spent; new traffic sweeps them all
        // away and keeps only the new, live keys.
        let later = t0 + Duration::from_secs(60);
        for i in 0..3 * n {
            let decision = limiter.acquire(&format!("v{i}"), &minute, later).await;
            assert_eq!(decision.unwrap(), RateDecision::Allowed);
        }
        assert_eq!(limiter.tracked_keys(), 3 * n);
    }

    #[tokio::test]
    async fn invalid_quota_stores_nothing() {
        let limiter = MemoryLimiter::new();
        let minute = [Quota {
            count: 1,
            period: Duration::from_secs(60),
        }];
        let t0 = DateTime::from_timestamp(0, 0).unwrap();
        // An invalid quota refuses the whole call before any state exists.
        let bad = [
            minute[0],
            Quota {
                count: 0,
                period: Duration::from_secs(1),
            },
        ];
        assert!(limiter.acquire("k", &bad, t0).await.is_err());
        assert_eq!(limiter.tracked_keys(), 0);
    }
}
