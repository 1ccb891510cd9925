//! Injected time, so that services and tests agree on "now" exactly.

use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

/// A source of the current time. Services take one instead of calling
/// `Utc::now()` so tests can pin and advance time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant, truncated to microseconds (the precision every
    /// store keeps, so a value read back equals the value written).
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_to_micros(Utc::now())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(truncate_to_micros(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops sub-microsecond precision, which PostgreSQL would drop on write.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid");
        let clock = ManualClock::new(start);
        assert_eq!(clock.now().timestamp_subsec_nanos(), 123_456_000);
        clock.advance(TimeDelta::seconds(5));
        assert_eq!(clock.now().timestamp(), 1_700_000_005);
    }
}
