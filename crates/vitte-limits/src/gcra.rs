//! The GCRA both engines run, in integer milliseconds.
//!
//! A quota of `count` events per `period` has an emission interval
//! `T = period / count` and a burst tolerance `tau = (count - 1) * T` (which
//! is `period - T` whenever `T` divides the period): `count` events may come
//! at once, then one every `T`. Each (key, quota) keeps one number, the
//! theoretical arrival time (TAT). An event at `now` is allowed when
//! `max(TAT, now) - tau <= now`, and then the TAT becomes `max(TAT, now) + T`;
//! otherwise it may come `max(TAT, now) - tau - now` later.
//!
//! Over several quotas the decision is all-or-nothing: every quota must allow
//! the event, and only then are all the new TATs stored. A refused event
//! changes nothing, and its wait is the longest among the quotas that refused.
//!
//! Milliseconds are integers so the in-process engine and the Lua script in
//! Redis (whose numbers are doubles, exact up to 2^53) compute bit for bit the
//! same: every instant chrono can represent, plus [`MAX_PERIOD`], stays far
//! below 2^53 ms. Periods count in whole milliseconds (at least one); `T` is
//! rounded up to a whole millisecond (at least 1 ms),
//! so rounding can only make a quota stricter, never let more through; a
//! quota of more than one event per millisecond is thus held to one per
//! millisecond after its burst.

use std::time::Duration;

use chrono::{DateTime, Utc};
use vitte_domain::ports::Quota;

use crate::LimiterError;

/// The longest period a quota is held to; longer ones are treated as this
/// (a century), which keeps every TAT within exact integer range.
pub const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Checks that a quota can be enforced, so configuration can be refused at
/// start-up instead of failing every `acquire`.
///
/// # Errors
/// [`LimiterError::InvalidQuota`] when `count` or `period` is zero.
pub fn check_quota(quota: &Quota) -> Result<(), LimiterError> {
    Params::new(quota).map(|_| ())
}

/// One quota turned into the numbers the algorithm runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// The quota's count, part of its identity under a key.
    pub count: u32,
    /// The period in milliseconds (clamped to [`MAX_PERIOD`], at least 1),
    /// the other part of its identity.
    pub period_ms: i64,
    /// `T`: the steady spacing between events.
    pub interval_ms: i64,
    /// `tau`: how far ahead of `now` the TAT may be and still admit.
    pub tolerance_ms: i64,
}

impl Params {
    /// Validates and converts one quota.
    pub fn new(quota: &Quota) -> Result<Self, LimiterError> {
        if quota.count == 0 || quota.period.is_zero() {
            return Err(LimiterError::InvalidQuota(*quota));
        }
        // Both fit easily: MAX_PERIOD is about 3.2e12 ms.
        let period_ms = quota.period.min(MAX_PERIOD).as_millis().max(1) as u64;
        let interval_ms = period_ms.div_ceil(u64::from(quota.count));
        // interval * (count - 1) < period + count, so no overflow either.
        let tolerance_ms = interval_ms * u64::from(quota.count - 1);
        Ok(Self {
            count: quota.count,
            period_ms: period_ms as i64,
            interval_ms: interval_ms as i64,
            tolerance_ms: tolerance_ms as i64,
        })
    }

    /// Validates and converts every quota of a call, before any state is
    /// touched, so an invalid one leaves the others unconsumed.
    pub fn all(quotas: &[Quota]) -> Result<Vec<Self>, LimiterError> {
        quotas.iter().map(Self::new).collect()
    }

    /// One quota's verdict on an event at `now` given its stored TAT: the
    /// new TAT if allowed, else how many milliseconds to wait.
    pub fn check(&self, stored_tat: Option<i64>, now: i64) -> Result<i64, i64> {
        let tat = stored_tat.map_or(now, |tat| tat.max(now));
        let wait = tat - self.tolerance_ms - now;
        if wait > 0 {
            Err(wait)
        } else {
            Ok(tat + self.interval_ms)
        }
    }
}

/// The verdict over all quotas of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every quota allows: store these TATs, one per quota, in order.
    Allowed(Vec<i64>),
    /// Some quota refuses: store nothing, wait this many milliseconds.
    Limited(i64),
}

/// Decides one event against every quota, `stored[i]` being quota `i`'s TAT.
pub(crate) fn decide(params: &[Params], stored: &[Option<i64>], now: i64) -> Verdict {
    let mut new_tats = Vec::with_capacity(params.len());
    let mut wait = 0;
    for (quota, tat) in params.iter().zip(stored) {
        match quota.check(*tat, now) {
            Ok(new_tat) => new_tats.push(new_tat),
            Err(quota_wait) => wait = wait.max(quota_wait),
        }
    }
    if wait > 0 {
        Verdict::Limited(wait)
    } else {
        Verdict::Allowed(new_tats)
    }
}

/// `now` in the unit the algorithm counts in. Sub-millisecond parts are
/// dropped; every instant chrono represents fits.
pub(crate) fn millis(now: DateTime<Utc>) -> i64 {
    now.timestamp_millis()
}

/// A wait in milliseconds as the port's `retry_after`.
pub(crate) fn wait_duration(wait_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(count: u32, secs: u64) -> Quota {
        Quota {
            count,
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn params_spread_the_period() {
        let p = Params::new(&quota(10, 60)).unwrap();
        assert_eq!((p.interval_ms, p.tolerance_ms), (6_000, 54_000));
        // 1000/3 ms does not divide: T rounds up, tau still admits 3 at once.
        let p = Params::new(&Quota {
            count: 3,
            period: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!((p.interval_ms, p.tolerance_ms), (334, 668));
    }

    #[test]
    fn zero_count_or_period_is_invalid() {
        assert!(matches!(
            Params::new(&quota(0, 60)),
            Err(LimiterError::InvalidQuota(_))
        ));
        assert!(matches!(
            Params::new(&quota(5, 0)),
            Err(LimiterError::InvalidQuota(_))
        ));
    }

    #[test]
    fn huge_values_are_clamped_not_overflowed() {
        let p = Params::new(&Quota {
            count: u32::MAX,
            period: Duration::MAX,
        })
        .unwrap();
        assert_eq!(p.period_ms, MAX_PERIOD.as_millis() as i64);
        assert!(p.tolerance_ms < p.period_ms + i64::from(u32::MAX));
        // A sub-millisecond period counts as one millisecond.
        let p = Params::new(&Quota {
            count: 1,
            period: Duration::from_micros(10),
        })
        .unwrap();
        assert_eq!(p.interval_ms, 1);
    }

    #[test]
    fn burst_then_steady_rate() {
        let p = [Params::new(&quota(2, 10)).unwrap()];
        let mut tat = None;
        for _ in 0..2 {
            match decide(&p, &[tat], 0) {
                Verdict::Allowed(t) => tat = Some(t[0]),
                Verdict::Limited(w) => panic!("refused within the burst, wait {w}"),
            }
        }
        assert_eq!(decide(&p, &[tat], 0), Verdict::Limited(5_000));
        assert_eq!(decide(&p, &[tat], 4_999), Verdict::Limited(1));
        assert_eq!(decide(&p, &[tat], 5_000), Verdict::Allowed(vec![15_000]));
    }

    #[test]
    fn the_longest_wait_wins() {
        let p = [
            Params::new(&quota(1, 10)).unwrap(),
            Params::new(&quota(1, 60)).unwrap(),
        ];
        assert_eq!(
            decide(&p, &[Some(10_000), Some(60_000)], 0),
            Verdict::Limited(60_000)
        );
    }
}
