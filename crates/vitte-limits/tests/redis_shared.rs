//! What only the Redis engine promises: processes share one budget, keys
//! vanish when idle, and Redis failures surface as errors callers can act on.

mod common;

use std::error::Error as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use vitte_domain::ports::{Quota, RateDecision, RateLimiter};
use vitte_limits::{LimiterError, RedisLimiter};

const TEN_A_MINUTE: [Quota; 1] = [Quota {
    count: 10,
    period: Duration::from_secs(60),
}];

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant")
}

async fn raw_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(common::redis_url())
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis is reachable")
}

#[tokio::test]
async fn two_processes_share_one_budget() {
    // Two limiters with their own connections stand for two processes.
    let namespace = common::unique_namespace();
    let first = common::limiter_in(&namespace).await;
    let second = common::limiter_in(&namespace).await;
    let mut allowed = [0, 0];
    for i in 0..20 {
        let limiter = if i % 2 == 0 { &first } else { &second };
        if limiter
            .acquire("user:1", &TEN_A_MINUTE, t0())
            .await
            .unwrap()
            == RateDecision::Allowed
        {
            allowed[i % 2] += 1;
        }
    }
    assert_eq!(allowed, [5, 5]);
    let refused = RateDecision::Limited {
        retry_after: Duration::from_secs(6),
    };
    assert_eq!(
        second.acquire("user:1", &TEN_A_MINUTE, t0()).await.unwrap(),
        refused
    );

    // Another namespace is another world.
    let other = common::limiter_in(&common::unique_namespace()).await;
    assert_eq!(
        other.acquire("user:1", &TEN_A_MINUTE, t0()).await.unwrap(),
        RateDecision::Allowed
    );
}

#[tokio::test]
async fn keys_hold_the_tat_and_expire_with_it() {
    let namespace = common::unique_namespace();
    let limiter = common::limiter_in(&namespace).await;
    for _ in 0..10 {
        let decision = limiter.acquire("user:1", &TEN_A_MINUTE, t0()).await;
        assert_eq!(decision.unwrap(), RateDecision::Allowed);
    }
    let key = format!("{namespace}:{{user:1}}:10:60000");
    let mut redis = raw_connection().await;
    let tat: i64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(tat, t0().timestamp_millis() + 60_000);
    // The key lives as long as the TAT is ahead of now: a minute.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((55_000..=60_000).contains(&ttl), "PTTL {ttl}");
    // A refused call writes nothing, so it does not extend the key's life.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(30_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    let decision = limiter
        .acquire("user:1", &TEN_A_MINUTE, t0())
        .await
        .unwrap();
    assert!(matches!(decision, RateDecision::Limited { .. }));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((25_000..=30_000).contains(&ttl), "PTTL {ttl}");
}

#[tokio::test]
async fn a_failing_script_is_a_limit_error() {
    // A key of the wrong type makes the script's GET fail inside Redis.
    let namespace = common::unique_namespace();
    // A cool-down no test outlasts: were the breaker to open, the calls
    // below would fail at once.
    let hour = Duration::from_secs(3600);
    let limiter = common::limiter_in(&namespace)
        .await
        .with_cool_down(hour, hour);
    let key = format!("{namespace}:{{user:1}}:10:60000");
    let mut redis = raw_connection().await;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .unwrap();

    let error = limiter
        .acquire("user:1", &TEN_A_MINUTE, t0())
        .await
        .expect_err("the script should have failed");
    let cause = error
        .source()
        .and_then(|e| e.downcast_ref::<LimiterError>());
    assert!(matches!(cause, Some(LimiterError::Redis(_))), "{error:?}");

    // An error Redis replies with is no outage: the breaker stays closed
    // and the next calls still reach Redis.
    let again = limiter
        .acquire("user:1", &TEN_A_MINUTE, t0())
        .await
        .expect_err("the key still has the wrong type");
    let cause = again
        .source()
        .and_then(|e| e.downcast_ref::<LimiterError>());
    assert!(matches!(cause, Some(LimiterError::Redis(_))), "{again:?}");
    assert_eq!(
        limiter
            .acquire("user:2", &TEN_A_MINUTE, t0())
            .await
            .expect("a decision"),
        RateDecision::Allowed
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_a_limit_error() {
    // A port that was just free and is closed again refuses connections.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let result = RedisLimiter::connect(&format!("redis://127.0.0.1:{port}")).await;
    let error = result.expect_err("nothing listens there");
    let cause = error
        .source()
        .and_then(|e| e.downcast_ref::<LimiterError>());
    assert!(matches!(cause, Some(LimiterError::Redis(_))), "{error:?}");

    let malformed = RedisLimiter::connect("not a url").await;
    assert!(malformed.is_err());
}
