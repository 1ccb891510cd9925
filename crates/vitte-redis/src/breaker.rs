//! A circuit breaker in front of Redis: once Redis has failed, calls fail at
//! once for a cool-down instead of each waiting out its own timeout, and then
//! a single call probes Redis again.
//!
//! - Closed: calls go to Redis. A failure that says Redis is unwell (see
//!   [`is_outage`]; an error Redis replied with is not one) opens the
//!   breaker for the first cool-down.
//! - Open: calls are refused without touching the network until the
//!   cool-down is over.
//! - Half-open: the first call after the cool-down is the probe, and every
//!   other call is refused while it runs. Its success closes the breaker;
//!   its failure opens it again for twice the last cool-down, at most the
//!   maximum (with the defaults 1 s, 2 s, 4 s, 8 s, 10 s, 10 s…). A probe
//!   that ends without a verdict (cancelled, or it never reached Redis)
//!   leaves the probe to the next call.
//!
//! The breaker logs one warning when it opens and one info line when it
//! closes again, whatever the number of calls in between.
//!
//! Written here rather than taken from a crate: `failsafe` lets every call
//! through while half-open and reads its own clock; this is a small state
//! machine under a mutex, with the instants passed in so tests step
//! through time exactly.

use std::fmt::Display;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::RedisError;

/// The first cool-down after Redis fails.
pub const FIRST_COOL_DOWN: Duration = Duration::from_secs(1);
/// The longest cool-down, reached by doubling after failed probes.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(10);

/// Whether `error` says Redis is unreachable or unwell (I/O, timeout,
/// connection refused or dropped) rather than refusing one command.
pub fn is_outage(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go to Redis.
    Closed,
    /// Calls are refused for a while.
    Open {
        /// When the next call may probe.
        until: Instant,
        /// How long this cool-down is.
        cool_down: Duration,
    },
    /// One probe is running; the others are refused until it reports.
    HalfOpen {
        /// The cool-down that ended, doubled if the probe fails.
        cool_down: Duration,
    },
}

/// What a report changed, for the log (and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    None,
    /// Closed to open: Redis just failed.
    Opened,
    /// The probe failed; open again, for longer.
    Reopened,
    /// The probe succeeded: closed.
    Closed,
}

struct Inner {
    state: State,
    /// How many times the breaker has opened, so that a late failure of a
    /// call let through before the last opening does not open it again.
    openings: u64,
}

/// One breaker per connection to Redis, shared by every call on it.
pub struct Breaker {
    /// Names the engine in the log.
    engine: &'static str,
    first: Duration,
    max: Duration,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &self.lock().state)
            .field("first", &self.first)
            .field("max", &self.max)
            .finish()
    }
}

impl Breaker {
    /// A closed breaker whose cool-down starts at `first` and doubles after
    /// each failed probe up to `max` (raised to `first` if below it).
    pub fn new(engine: &'static str, first: Duration, max: Duration) -> Self {
        Self {
            engine,
            first,
            max: max.max(first),
            inner: Mutex::new(Inner {
                state: State::Closed,
                openings: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is a plain assignment made under the lock: a
        // poisoned lock still holds a valid state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call at `now` may go to Redis: `None` means fail at once.
    pub fn admit(&self, now: Instant) -> Option<Permit<'_>> {
        let mut inner = self.lock();
        let probe = match inner.state {
            State::Closed => false,
            State::Open { until, cool_down } if now >= until => {
                inner.state = State::HalfOpen { cool_down };
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => return None,
        };
        Some(Permit {
            breaker: self,
            probe,
            openings: inner.openings,
            admitted_at: now,
            settled: false,
        })
    }

    /// The state, for tests.
    #[cfg(test)]
    pub fn state(&self) -> State {
        self.lock().state
    }

    fn succeeded(&self, probe: bool) -> Transition {
        // The common case, a call let through while closed, takes no lock.
        if !probe {
            return Transition::None;
        }
        let mut inner = self.lock();
        if !matches!(inner.state, State::HalfOpen { .. }) {
            // A call let through while closed proves nothing new; one that
            // ends while open or half-open does not decide for the probe.
            return Transition::None;
        }
        inner.state = State::Closed;
        drop(inner);
        tracing::info!(
            engine = self.engine,
            "Redis answered again; calls go to it again"
        );
        Transition::Closed
    }

    fn failed(&self, probe: bool, openings: u64, now: Instant, error: &dyn Display) -> Transition {
        let mut inner = self.lock();
        match inner.state {
            State::Closed if !probe && openings == inner.openings => {
                inner.openings += 1;
                inner.state = State::Open {
                    until: now + self.first,
                    cool_down: self.first,
                };
                drop(inner);
                tracing::warn!(
                    engine = self.engine,
                    error = %error,
                    cool_down = ?self.first,
                    "Redis failed; calls fail at once until a probe finds it back"
                );
                Transition::Opened
            }
            State::HalfOpen { cool_down } if probe => {
                let cool_down = cool_down.saturating_mul(2).min(self.max);
                inner.state = State::Open {
                    until: now + cool_down,
                    cool_down,
                };
                drop(inner);
                tracing::debug!(
                    engine = self.engine,
                    error = %error,
                    cool_down = ?cool_down,
                    "Redis probe failed"
                );
                Transition::Reopened
            }
            // A late failure of a call let through before the breaker
            // opened: that outage is already known.
            _ => Transition::None,
        }
    }

    /// The probe ended without a verdict: the next call probes instead.
    fn abandoned(&self, admitted_at: Instant) {
        let mut inner = self.lock();
        if let State::HalfOpen { cool_down } = inner.state {
            inner.state = State::Open {
                until: admitted_at,
                cool_down,
            };
        }
    }
}

/// Leave for one call to go to Redis; report how it went with
/// [`Permit::succeeded`] or [`Permit::failed`]. Dropped without a report,
/// it gives no verdict (a probe then passes to the next call).
#[must_use = "report how the call went"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    openings: u64,
    admitted_at: Instant,
    settled: bool,
}

impl Permit<'_> {
    /// Whether this call is the probe of a half-open breaker.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Redis answered (an error it replied with counts as an answer).
    pub fn succeeded(mut self) -> Transition {
        self.settled = true;
        self.breaker.succeeded(self.probe)
    }

    /// Redis failed at `now` in a way [`is_outage`] accepts.
    pub fn failed(mut self, now: Instant, error: &dyn Display) -> Transition {
        self.settled = true;
        self.breaker.failed(self.probe, self.openings, now, error)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.abandoned(self.admitted_at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(10);

    fn breaker() -> Breaker {
        Breaker::new("test", FIRST, MAX)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Opens `b`, closed, with a failure at `at`.
    fn open_at(b: &Breaker, at: Instant) {
        let permit = b.admit(at).expect("closed");
        assert_eq!(permit.failed(at, &"refused"), Transition::Opened);
    }

    #[test]
    fn a_failure_opens_it_and_calls_are_refused_until_the_cool_down_ends() {
        let b = breaker();
        let t0 = Instant::now();
        let ok = b.admit(t0).expect("closed");
        assert_eq!(ok.succeeded(), Transition::None);
        assert_eq!(b.state(), State::Closed);

        open_at(&b, t0);
        assert_eq!(
            b.state(),
            State::Open {
                until: t0 + FIRST,
                cool_down: FIRST
            }
        );
        for at in [t0, t0 + ms(1), t0 + ms(999)] {
            assert!(b.admit(at).is_none(), "refused at {:?}", at - t0);
        }
        assert_eq!(
            b.state(),
            State::Open {
                until: t0 + FIRST,
                cool_down: FIRST
            }
        );
    }

    #[test]
    fn after_the_cool_down_one_probe_runs_and_its_success_closes_it() {
        let b = breaker();
        let t0 = Instant::now();
        open_at(&b, t0);

        let probe = b.admit(t0 + FIRST).expect("the probe");
        assert_eq!(b.state(), State::HalfOpen { cool_down: FIRST });
        // Only one probe at a time: everyone else fails fast meanwhile.
        for later in [FIRST, FIRST + ms(500), FIRST * 30] {
            assert!(b.admit(t0 + later).is_none());
        }
        assert_eq!(probe.succeeded(), Transition::Closed);
        assert_eq!(b.state(), State::Closed);
        let after = b.admit(t0 + FIRST + ms(1));
        assert!(after.is_some(), "closed again");
        drop(after);

        // The next outage starts again from the first cool-down.
        let t1 = t0 + Duration::from_secs(60);
        open_at(&b, t1);
        assert_eq!(
            b.state(),
            State::Open {
                until: t1 + FIRST,
                cool_down: FIRST
            }
        );
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_maximum() {
        let b = breaker();
        let t0 = Instant::now();
        open_at(&b, t0);

        let mut at = t0 + FIRST;
        for expected in [2, 4, 8, 10, 10] {
            let cool_down = Duration::from_secs(expected);
            let probe = b.admit(at).expect("the probe");
            let failed_at = at + ms(300);
            assert_eq!(probe.failed(failed_at, &"timed out"), Transition::Reopened);
            assert_eq!(
                b.state(),
                State::Open {
                    until: failed_at + cool_down,
                    cool_down
                }
            );
            assert!(b.admit(failed_at + cool_down - ms(1)).is_none());
            at = failed_at + cool_down;
        }
        let probe = b.admit(at).expect("the probe");
        assert_eq!(probe.succeeded(), Transition::Closed);
    }

    #[test]
    fn concurrent_failures_open_it_once_and_late_ones_change_nothing() {
        let b = breaker();
        let t0 = Instant::now();
        // Three calls let through while closed, all failing.
        let calls: Vec<_> = (0..3).map(|_| b.admit(t0).expect("closed")).collect();
        let transitions: Vec<_> = calls
            .into_iter()
            .map(|c| c.failed(t0 + ms(200), &"timed out"))
            .collect();
        assert_eq!(
            transitions,
            [Transition::Opened, Transition::None, Transition::None]
        );

        // A call let through before the opening, failing after a probe
        // closed the breaker again, does not reopen it.
        let b = breaker();
        let straggler = b.admit(t0).expect("closed");
        open_at(&b, t0);
        let probe = b.admit(t0 + FIRST).expect("the probe");
        assert_eq!(probe.succeeded(), Transition::Closed);
        assert_eq!(straggler.failed(t0 + FIRST, &"late"), Transition::None);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn only_the_probe_decides_while_half_open() {
        let b = breaker();
        let t0 = Instant::now();
        let straggler = b.admit(t0).expect("closed");
        open_at(&b, t0);
        let probe = b.admit(t0 + FIRST).expect("the probe");
        // A call let through while closed that answers late is no verdict.
        assert_eq!(straggler.succeeded(), Transition::None);
        assert_eq!(b.state(), State::HalfOpen { cool_down: FIRST });
        assert_eq!(probe.failed(t0 + FIRST, &"refused"), Transition::Reopened);
    }

    #[test]
    fn an_abandoned_probe_leaves_the_probe_to_the_next_call() {
        let b = breaker();
        let t0 = Instant::now();
        open_at(&b, t0);
        let probe = b.admit(t0 + FIRST).expect("the probe");
        assert!(b.admit(t0 + FIRST).is_none());
        drop(probe);
        assert_eq!(
            b.state(),
            State::Open {
                until: t0 + FIRST,
                cool_down: FIRST
            }
        );
        let next = b.admit(t0 + FIRST + ms(5)).expect("the next probe");
        assert_eq!(
            next.failed(t0 + FIRST + ms(5), &"refused"),
            Transition::Reopened
        );
        assert_eq!(
            b.state(),
            State::Open {
                until: t0 + FIRST + ms(5) + 2 * FIRST,
                cool_down: 2 * FIRST
            }
        );
    }

    #[test]
    fn outages_are_io_errors_not_replies() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let dropped = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        for e in [&refused, &timed_out, &dropped] {
            assert!(is_outage(e), "{e}");
        }
        let wrong_type = RedisError::from((
            redis::ErrorKind::TypeError,
            "WRONGTYPE",
            "Operation against a key holding the wrong kind of value".to_owned(),
        ));
        let script = RedisError::from((redis::ErrorKind::ResponseError, "ERR script failed"));
        for e in [&wrong_type, &script] {
            assert!(!is_outage(e), "{e}");
        }
    }
}
