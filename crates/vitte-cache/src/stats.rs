//! Counters of the caching store, and the gate that keeps a failing cache
//! from flooding the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the caching store has done since it was built. Metrics export these
/// later; tests read them to tell a hit from a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the store (absent, expired, or the cache failed).
    pub misses: u64,
    /// Cache operations that failed (unreachable, timed out, undecodable
    /// bytes); each was answered from the store instead.
    pub errors: u64,
    /// Keys deleted because a write changed what they held.
    pub invalidations: u64,
}

/// The live counters behind [`CacheStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    invalidations: AtomicU64,
}

impl Counters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn invalidated(&self, keys: usize) {
        self.invalidations
            .fetch_add(u64::try_from(keys).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
        }
    }
}

/// Lets one event through per period and counts the ones it holds back, so
/// an unreachable cache logs one warning every few seconds instead of one per
/// request.
#[derive(Debug)]
pub(crate) struct LogGate {
    origin: Instant,
    period: Duration,
    /// Milliseconds after `origin` before which nothing passes.
    closed_until: AtomicU64,
    held_back: AtomicU64,
}

impl LogGate {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            origin: Instant::now(),
            period,
            closed_until: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when the event at `now` may be logged, `n` being how many
    /// were held back since the last one that was; `None` otherwise.
    pub(crate) fn pass(&self, now: Instant) -> Option<u64> {
        let at = millis(now.saturating_duration_since(self.origin));
        let until = self.closed_until.load(Ordering::Relaxed);
        let reopen = at.saturating_add(millis(self.period));
        if at >= until
            && self
                .closed_until
                .compare_exchange(until, reopen, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_passes_one_event_per_period_and_counts_the_rest() {
        let gate = LogGate::new(Duration::from_secs(10));
        let t = gate.origin;
        assert_eq!(gate.pass(t), Some(0));
        assert_eq!(gate.pass(t + Duration::from_secs(1)), None);
        assert_eq!(gate.pass(t + Duration::from_secs(9)), None);
        assert_eq!(gate.pass(t + Duration::from_secs(10)), Some(2));
        assert_eq!(gate.pass(t + Duration::from_secs(11)), None);
        assert_eq!(gate.pass(t + Duration::from_secs(25)), Some(1));
    }
}
