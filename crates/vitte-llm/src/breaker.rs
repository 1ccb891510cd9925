//! A circuit breaker per model, so a dead model is skipped without a request
//! instead of costing every reply its timeouts and retries.
//!
//! Closed: requests pass, consecutive failures are counted. Open (after
//! `threshold` failures in a row): requests are refused until the cooldown
//! ends. Half-open: one probe request passes; its success closes the
//! breaker, its failure opens it for another cooldown. Time comes from the
//! injected clock, so tests step through the states exactly.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// What a breaker currently does with requests, for health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests are refused until `until`.
    Open {
        /// When a probe will be allowed.
        until: DateTime<Utc>,
    },
    /// One probe is in flight; other requests are refused until it reports.
    HalfOpen,
}

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead.
    Pass,
    /// Go ahead; this request decides whether the breaker closes.
    Probe,
    /// Skip this model.
    Refuse,
}

/// One model's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: TimeDelta,
    consecutive_failures: u32,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: DateTime<Utc> },
    HalfOpen { probe_since: DateTime<Utc> },
}

impl Breaker {
    /// A closed breaker. A threshold of 0 is read as 1.
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown: TimeDelta::from_std(cooldown).unwrap_or(TimeDelta::MAX),
            consecutive_failures: 0,
            state: State::Closed,
        }
    }

    /// Decides whether a request may go to the model now.
    pub(crate) fn admit(&mut self, now: DateTime<Utc>) -> Admission {
        match self.state {
            State::Closed => Admission::Pass,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probe_since: now };
                Admission::Probe
            }
            State::Open { .. } => Admission::Refuse,
            // A probe whose caller was cancelled never reports back; after a
            // cooldown another one is allowed rather than refusing forever.
            State::HalfOpen { probe_since } if now >= probe_since + self.cooldown => {
                self.state = State::HalfOpen { probe_since: now };
                Admission::Probe
            }
            State::HalfOpen { .. } => Admission::Refuse,
        }
    }

    /// The model answered.
    pub(crate) fn success(&mut self) {
        self.consecutive_failures = 0;
        self.state = State::Closed;
    }

    /// The model failed; returns true when this failure opened the breaker.
    pub(crate) fn failure(&mut self, now: DateTime<Utc>) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            State::HalfOpen { .. } => true,
            State::Closed => self.consecutive_failures >= self.threshold,
            // Another reply's request, admitted before the breaker opened.
            State::Open { .. } => false,
        };
        if open {
            self.state = State::Open {
                until: now + self.cooldown,
            };
        }
        open
    }

    /// The state, for health reports.
    pub(crate) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } => BreakerState::Open { until },
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid")
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let mut b = Breaker::new(3, Duration::from_secs(30));
        assert!(!b.failure(t(0)));
        assert!(!b.failure(t(1)));
        b.success();
        assert!(!b.failure(t(2)));
        assert!(!b.failure(t(3)));
        assert_eq!(b.admit(t(3)), Admission::Pass);
        assert!(b.failure(t(4)));
        assert_eq!(b.state(), BreakerState::Open { until: t(34) });
        assert_eq!(b.admit(t(5)), Admission::Refuse);
        assert_eq!(b.admit(t(33)), Admission::Refuse);
    }

    #[test]
    fn after_the_cooldown_one_probe_passes_and_its_success_closes() {
        let mut b = Breaker::new(1, Duration::from_secs(30));
        assert!(b.failure(t(0)));
        assert_eq!(b.admit(t(30)), Admission::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.admit(t(31)),
            Admission::Refuse,
            "only one probe at a time"
        );
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(t(31)), Admission::Pass);
    }

    #[test]
    fn a_failed_probe_opens_for_another_cooldown() {
        let mut b = Breaker::new(5, Duration::from_secs(10));
        for i in 0..5 {
            b.failure(t(i));
        }
        assert_eq!(b.admit(t(14)), Admission::Probe);
        assert!(b.failure(t(15)), "one failed probe is enough");
        assert_eq!(b.state(), BreakerState::Open { until: t(25) });
        assert_eq!(b.admit(t(24)), Admission::Refuse);
        assert_eq!(b.admit(t(25)), Admission::Probe);
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_a_cooldown() {
        let mut b = Breaker::new(1, Duration::from_secs(10));
        b.failure(t(0));
        assert_eq!(b.admit(t(10)), Admission::Probe);
        assert_eq!(b.admit(t(19)), Admission::Refuse);
        assert_eq!(b.admit(t(20)), Admission::Probe);
    }

    #[test]
    fn late_failures_do_not_extend_an_open_breaker() {
        let mut b = Breaker::new(1, Duration::from_secs(10));
        assert!(b.failure(t(0)));
        assert!(!b.failure(t(5)));
        assert_eq!(b.state(), BreakerState::Open { until: t(10) });
    }
}
