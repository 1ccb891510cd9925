//! A Redis that fails a call is counted in `vitte_limiter_unavailable_total`,
//! so an outage shows on the dashboards even though callers fail open.

mod common;

use std::time::Duration;

use chrono::DateTime;
use metrics_exporter_prometheus::PrometheusBuilder;
use vitte_domain::ports::{Quota, RateDecision, RateLimiter};
use vitte_limits::RedisLimiter;

const TEN_A_MINUTE: [Quota; 1] = [Quota {
    count: 10,
    period: Duration::from_secs(60),
}];

fn unavailable(rendered: &str) -> Option<u64> {
    rendered.lines().find_map(|l| {
        l.strip_prefix(RedisLimiter::UNAVAILABLE_METRIC)?
            .trim()
            .parse()
            .ok()
    })
}

// One thread, so the recorder set for it sees every call of the test.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_call_is_counted_and_a_decision_is_not() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let namespace = common::unique_namespace();
    let limiter = common::limiter_in(&namespace).await;
    let t0 = DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant");
    for _ in 0..11 {
        limiter
            .acquire("user:1", &TEN_A_MINUTE, t0)
            .await
            .expect("a decision");
    }
    assert!(matches!(
        limiter.acquire("user:1", &TEN_A_MINUTE, t0).await,
        Ok(RateDecision::Limited { .. })
    ));
    assert_eq!(unavailable(&handle.render()), None, "nothing failed yet");

    // A key of the wrong type makes the script fail inside Redis.
    let key = format!("{namespace}:{{user:2}}:10:60000");
    let mut redis = redis::Client::open(common::redis_url())
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis is reachable");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("f")
        .arg("v")
        .query_async(&mut redis)
        .await
        .expect("HSET");
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .expect("PEXPIRE");
    for _ in 0..2 {
        assert!(limiter.acquire("user:2", &TEN_A_MINUTE, t0).await.is_err());
    }
    assert_eq!(unavailable(&handle.render()), Some(2));
}
