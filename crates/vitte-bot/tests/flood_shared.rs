//! A pause started by one bot process holds in every other one sharing the
//! Redis limiter. Needs the test Redis (`VITTE_TEST_REDIS_URL`, else the
//! local default) and fails without it: it is never skipped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta, Utc};
use vitte_bot::context::FloodLimits;
use vitte_bot::middlewares::flood::{self, Flood};
use vitte_domain::ids::TelegramUserId;
use vitte_domain::ports::Quota;
use vitte_limits::RedisLimiter;

/// A limiter on the test Redis with its own connection (one "process"),
/// under `namespace`.
async fn process(namespace: &str) -> RedisLimiter {
    let url = std::env::var("VITTE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match RedisLimiter::connect(&url).await {
        Ok(limiter) => limiter.with_namespace(namespace),
        Err(e) => panic!("the flood tests need a Redis at {url} (set VITTE_TEST_REDIS_URL): {e}"),
    }
}

/// A namespace no other run uses, so runs share one Redis.
fn unique_namespace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("vitte:rl:test:flood:{}:{nanos}", std::process::id())
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant") + TimeDelta::seconds(secs)
}

#[tokio::test]
async fn a_pause_holds_across_processes_and_ends_for_all() {
    let namespace = unique_namespace();
    let (first, second) = (process(&namespace).await, process(&namespace).await);
    let limits = FloodLimits {
        quotas: vec![Quota {
            count: 4,
            period: Duration::from_secs(60),
        }],
        pause: Duration::from_secs(600),
    };
    let user = TelegramUserId::try_from(6001).expect("a valid id");

    // Updates land on either process; they count against one quota.
    let mut verdicts = Vec::new();
    for i in 0..8 {
        let limiter = if i % 2 == 0 { &first } else { &second };
        verdicts.push(flood::check(limiter, &limits, user, at(0)).await);
    }
    let paused = Flood::Paused(limits.pause);
    assert_eq!(
        verdicts,
        [
            Flood::Clear,
            Flood::Clear,
            Flood::Clear,
            Flood::Clear,
            paused,
            Flood::Dropped,
            Flood::Dropped,
            Flood::Dropped
        ]
    );
    // Both see the pause to its last second, and neither starts another.
    for secs in [1, 300, 599] {
        assert_eq!(
            flood::check(&first, &limits, user, at(secs)).await,
            Flood::Dropped
        );
        assert_eq!(
            flood::check(&second, &limits, user, at(secs)).await,
            Flood::Dropped
        );
    }
    assert_eq!(
        flood::check(&second, &limits, user, at(600)).await,
        Flood::Clear
    );
    assert_eq!(
        flood::check(&first, &limits, user, at(601)).await,
        Flood::Clear
    );

    // Reading the pause key on every update never pauses a calm user.
    let calm = TelegramUserId::try_from(6002).expect("a valid id");
    for step in 0..40 {
        let limiter = if step % 2 == 0 { &first } else { &second };
        assert_eq!(
            flood::check(limiter, &limits, calm, at(step * 20)).await,
            Flood::Clear,
            "update {step}"
        );
    }
}
