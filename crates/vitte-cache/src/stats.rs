//! Counters of the caching store, and the gate that keeps a failing cache
//! from flooding the log.
//!
//! Each count also goes to the process's metrics (the `metrics` facade; a
//! no-op until the binary installs a recorder): [`HITS_METRIC`],
//! [`MISSES_METRIC`], [`FALLBACKS_METRIC`] and [`INVALIDATIONS_METRIC`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lookups answered from the cache, across every caching store of the process.
pub const HITS_METRIC: &str = "vitte_cache_hits_total";
/// Lookups that went to the store.
pub const MISSES_METRIC: &str = "vitte_cache_misses_total";
/// Cache operations that failed and were answered from the store instead,
/// labelled `op` with the operation: `get`, `set` or `delete` (the cache
/// failed, or refused at once while Redis cools down), `decode` (cached
/// bytes that no longer decode) or `encode` (a value that would not encode).
pub const FALLBACKS_METRIC: &str = "vitte_cache_fallbacks_total";
/// Keys deleted because a write changed what they held.
pub const INVALIDATIONS_METRIC: &str = "vitte_cache_invalidations_total";

/// Describes the cache's metrics for the exporter; call once the recorder is
/// in place.
pub fn describe_metrics() {
    metrics::describe_counter!(HITS_METRIC, "Cache lookups answered from the cache.");
    metrics::describe_counter!(
        MISSES_METRIC,
        "Cache lookups that went to the database (absent, expired, or the cache failed)."
    );
    metrics::describe_counter!(
        FALLBACKS_METRIC,
        "Cache operations that failed (unreachable, timed out, undecodable) and fell back to the database, by operation (op)."
    );
    metrics::describe_counter!(
        INVALIDATIONS_METRIC,
        "Cache keys deleted because a write changed what they held."
    );
}

/// What the caching store has done since it was built; tests read them to
/// tell a hit from a miss, metrics carry the same counts for the process.
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
        metrics::counter!(HITS_METRIC).increment(1);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(MISSES_METRIC).increment(1);
    }

    /// The cache operation `op` failed; the store answers instead.
    pub(crate) fn error(&self, op: &'static str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(FALLBACKS_METRIC, "op" => op).increment(1);
    }

    pub(crate) fn invalidated(&self, keys: usize) {
        let keys = u64::try_from(keys).unwrap_or(u64::MAX);
        self.invalidations.fetch_add(keys, Ordering::Relaxed);
        metrics::counter!(INVALIDATIONS_METRIC).increment(keys);
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
    fn counts_reach_the_metrics() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let counters = Counters::default();
        metrics::with_local_recorder(&recorder, || {
            counters.hit();
            counters.hit();
            counters.miss();
            counters.error("get");
            counters.error("get");
            counters.error("delete");
            counters.invalidated(3);
        });
        let rendered = handle.render();
        for line in [
            "vitte_cache_hits_total 2",
            "vitte_cache_misses_total 1",
            r#"vitte_cache_fallbacks_total{op="get"} 2"#,
            r#"vitte_cache_fallbacks_total{op="delete"} 1"#,
            "vitte_cache_invalidations_total 3",
        ] {
            assert!(rendered.lines().any(|l| l == line), "{line} in {rendered}");
        }
        assert!(
            !rendered.contains(r#"op="set""#),
            "no series for an operation that never failed: {rendered}"
        );
        assert_eq!(
            counters.snapshot(),
            CacheStats {
                hits: 2,
                misses: 1,
                errors: 3,
                invalidations: 3
            }
        );
    }

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
