//! The behaviour every [`RateLimiter`] engine must show, as one case per
//! function, so the in-process and the Redis engine cannot drift apart.
//!
//! An engine runs it from an integration test:
//!
//! ```ignore
//! async fn fresh() -> Arc<dyn RateLimiter> { /* a limiter with no state */ }
//! vitte_limits::conformance_suite!(fresh);
//! ```
//!
//! Each case gets a limiter of its own (for Redis: its own namespace), so
//! cases run in parallel. Time is simulated through `now`; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use vitte_domain::ports::{Quota, RateDecision, RateLimiter};

use crate::gcra::MAX_PERIOD;

/// Expands to one multi-threaded `#[tokio::test]` per case. `$fresh` is an
/// `async fn() -> Arc<dyn RateLimiter>` returning a limiter with no state.
#[macro_export]
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::__conformance_cases! { $fresh;
            burst_then_refuses_with_retry_after,
            one_more_after_the_interval,
            full_burst_after_a_full_period,
            hour_quota_caps_the_minute_bursts,
            refused_event_consumes_no_quota,
            keys_are_independent,
            quotas_are_told_apart_by_count_and_period,
            concurrent_acquires_admit_exactly_the_quota,
            invalid_quotas_are_refused,
            large_values_do_not_overflow,
        }
    };
}

/// Implementation detail of [`conformance_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::conformance::$case($fresh().await).await;
            }
        )*
    };
}

/// 2025-01-01T00:00:00Z: an arbitrary, fixed start of simulated time.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant")
}

fn after(ms: i64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms)
}

fn per(count: u32, period: Duration) -> Quota {
    Quota { count, period }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn limited(secs: u64) -> RateDecision {
    RateDecision::Limited {
        retry_after: Duration::from_secs(secs),
    }
}

async fn acquire(
    limiter: &dyn RateLimiter,
    key: &str,
    quotas: &[Quota],
    now: DateTime<Utc>,
) -> RateDecision {
    limiter
        .acquire(key, quotas, now)
        .await
        .expect("the limiter failed")
}

/// How many of `attempts` events at `now` are allowed.
async fn admitted(
    limiter: &dyn RateLimiter,
    key: &str,
    quotas: &[Quota],
    now: DateTime<Utc>,
    attempts: u32,
) -> u32 {
    let mut allowed = 0;
    for _ in 0..attempts {
        if acquire(limiter, key, quotas, now).await == RateDecision::Allowed {
            allowed += 1;
        }
    }
    allowed
}

/// 10/min admits 10 at once, then refuses with the wait for the next slot,
/// and keeps giving the same wait: refusals are not counted.
pub async fn burst_then_refuses_with_retry_after(limiter: Arc<dyn RateLimiter>) {
    let q = [per(10, MINUTE)];
    assert_eq!(admitted(&*limiter, "user:1", &q, t0(), 10).await, 10);
    for _ in 0..3 {
        assert_eq!(acquire(&*limiter, "user:1", &q, t0()).await, limited(6));
    }
}

/// After the burst, one event per interval: not a millisecond early, and
/// exactly one when the interval has passed.
pub async fn one_more_after_the_interval(limiter: Arc<dyn RateLimiter>) {
    let q = [per(10, MINUTE)];
    assert_eq!(admitted(&*limiter, "user:1", &q, t0(), 10).await, 10);
    assert_eq!(
        acquire(&*limiter, "user:1", &q, after(5_999)).await,
        RateDecision::Limited {
            retry_after: Duration::from_millis(1)
        }
    );
    assert_eq!(
        acquire(&*limiter, "user:1", &q, after(6_000)).await,
        RateDecision::Allowed
    );
    assert_eq!(
        acquire(&*limiter, "user:1", &q, after(6_000)).await,
        limited(6)
    );
    assert_eq!(
        acquire(&*limiter, "user:1", &q, after(12_000)).await,
        RateDecision::Allowed
    );
}

/// A key left alone for a whole period gets its whole burst back.
pub async fn full_burst_after_a_full_period(limiter: Arc<dyn RateLimiter>) {
    let q = [per(10, MINUTE)];
    assert_eq!(admitted(&*limiter, "user:1", &q, t0(), 10).await, 10);
    assert_eq!(
        admitted(&*limiter, "user:1", &q, after(60_000), 15).await,
        10
    );
    assert_eq!(
        acquire(&*limiter, "user:1", &q, after(60_000)).await,
        limited(6)
    );
}

/// 10/min + 100/hour with ten attempts at every minute mark for an hour.
///
/// The hour quota allows a burst of 100 and then one event per 36 s, so by
/// minute `m` at most `100 + floor(60m / 36)` events in total get through;
/// the minute quota allows `10(m + 1)`. For the first 11 minutes the minute
/// quota binds (10 each); from minute 11 the hour's burst is spent and only
/// its refill passes (5 events every 3 minutes).
pub async fn hour_quota_caps_the_minute_bursts(limiter: Arc<dyn RateLimiter>) {
    let q = [per(10, MINUTE), per(100, HOUR)];
    let cap = |m: i64| (10 * m + 10).min(100 + 60 * m / 36);
    let mut total = 0;
    for m in 0..60 {
        let now = after(m * 60_000);
        let got = admitted(&*limiter, "user:1", &q, now, 10).await;
        let expected = cap(m) - if m == 0 { 0 } else { cap(m - 1) };
        assert_eq!(i64::from(got), expected, "minute {m}");
        total += i64::from(got);
        if m == 11 {
            // 118 counted; the next fits the minute quota but waits for the
            // hour's: TAT 118 * 36 s, minus tolerance 3564 s, minus now 660 s.
            assert_eq!(acquire(&*limiter, "user:1", &q, now).await, limited(24));
        }
    }
    assert_eq!(&[cap(10), cap(11), cap(12)], &[110, 118, 120]);
    assert_eq!(total, 198);
}

/// All-or-nothing: an event refused by one quota is not counted against the
/// others, whichever quota is the full one.
pub async fn refused_event_consumes_no_quota(limiter: Arc<dyn RateLimiter>) {
    // The hour quota is full: refusals leave the minute quota untouched.
    let minute = per(10, MINUTE);
    let both = [minute, per(3, HOUR)];
    assert_eq!(admitted(&*limiter, "a", &both, t0(), 3).await, 3);
    for _ in 0..5 {
        assert_eq!(acquire(&*limiter, "a", &both, t0()).await, limited(1200));
    }
    assert_eq!(admitted(&*limiter, "a", &[minute], t0(), 10).await, 7);

    // The minute quota is full: refusals leave the hour quota untouched.
    // 12/hour is one per 300 s with a tolerance of 3300 s.
    let both = [minute, per(12, HOUR)];
    assert_eq!(admitted(&*limiter, "b", &both, t0(), 10).await, 10);
    for _ in 0..5 {
        assert_eq!(acquire(&*limiter, "b", &both, t0()).await, limited(6));
    }
    assert_eq!(admitted(&*limiter, "b", &both, after(60_000), 2).await, 2);
    assert_eq!(
        acquire(&*limiter, "b", &both, after(60_000)).await,
        limited(240)
    );
}

/// Filling one key's quota leaves every other key alone, including keys
/// that only differ by characters with a meaning in storage key layouts.
pub async fn keys_are_independent(limiter: Arc<dyn RateLimiter>) {
    let q = [per(10, MINUTE)];
    let keys = ["user:1", "user:2", "user:1:x", "chat:{42}", "chat:{42", ""];
    for key in keys {
        assert_eq!(admitted(&*limiter, key, &q, t0(), 12).await, 10, "{key:?}");
    }
}

/// Under one key a quota is its `(count, period)`: 5/min and 10/min are two
/// budgets, while the same quota named in different calls is one.
pub async fn quotas_are_told_apart_by_count_and_period(limiter: Arc<dyn RateLimiter>) {
    let five = per(5, MINUTE);
    let ten = per(10, MINUTE);
    assert_eq!(admitted(&*limiter, "k", &[five], t0(), 6).await, 5);
    assert_eq!(admitted(&*limiter, "k", &[ten], t0(), 11).await, 10);
    // `five` is full whether named alone or next to another quota.
    assert_eq!(
        acquire(&*limiter, "k", &[per(1, HOUR), five], t0()).await,
        limited(12)
    );
}

/// 50 tasks racing on one key with 10/min: exactly 10 get through.
pub async fn concurrent_acquires_admit_exactly_the_quota(limiter: Arc<dyn RateLimiter>) {
    let q = [per(10, MINUTE)];
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { acquire(&*limiter, "hot", &q, t0()).await })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        match task.await.expect("the task panicked") {
            RateDecision::Allowed => allowed += 1,
            refused => assert_eq!(refused, limited(6)),
        }
    }
    assert_eq!(allowed, 10);
}

/// A quota of zero events or over zero time is refused as an error (a
/// configuration mistake), and the call counts nothing in its other quotas.
/// No quota at all means no limit.
pub async fn invalid_quotas_are_refused(limiter: Arc<dyn RateLimiter>) {
    let valid = per(10, MINUTE);
    for invalid in [per(0, MINUTE), per(10, Duration::ZERO)] {
        for _ in 0..3 {
            let result = limiter.acquire("k", &[valid, invalid], t0()).await;
            assert!(result.is_err(), "{invalid:?} was accepted");
        }
    }
    assert_eq!(admitted(&*limiter, "k", &[valid], t0(), 11).await, 10);
    assert_eq!(admitted(&*limiter, "free", &[], t0(), 100).await, 100);
}

/// Periods up to `Duration::MAX`, counts up to `u32::MAX` and instants at
/// the ends of chrono's range neither panic nor lose precision.
pub async fn large_values_do_not_overflow(limiter: Arc<dyn RateLimiter>) {
    // Longer than a century counts as a century.
    let forever = [per(1, Duration::MAX)];
    assert_eq!(admitted(&*limiter, "a", &forever, t0(), 1).await, 1);
    assert_eq!(
        acquire(&*limiter, "a", &forever, t0()).await,
        RateDecision::Limited {
            retry_after: MAX_PERIOD
        }
    );

    // 3 a year: one every 365 days / 3, exactly.
    let year = [per(3, Duration::from_secs(365 * 86_400))];
    assert_eq!(admitted(&*limiter, "b", &year, t0(), 3).await, 3);
    assert_eq!(
        acquire(&*limiter, "b", &year, t0()).await,
        limited(10_512_000)
    );

    let huge = [per(u32::MAX, Duration::from_secs(1))];
    assert_eq!(admitted(&*limiter, "c", &huge, t0(), 3).await, 3);

    let q = [per(10, MINUTE)];
    for (key, now) in [
        ("max", DateTime::<Utc>::MAX_UTC),
        ("min", DateTime::<Utc>::MIN_UTC),
    ] {
        assert_eq!(admitted(&*limiter, key, &q, now, 10).await, 10, "{key}");
        assert_eq!(acquire(&*limiter, key, &q, now).await, limited(6), "{key}");
    }
}
