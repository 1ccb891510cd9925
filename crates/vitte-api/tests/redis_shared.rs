//! Two API processes on one Redis limiter share each client's budget: a
//! client cannot double its allowance by being balanced across processes.
//!
//! Needs the test Redis (`VITTE_TEST_REDIS_URL`, else `REDIS_URL`, else
//! `redis://127.0.0.1:6379`). Without one the test fails when `CI=true` and
//! is skipped with a note otherwise.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use common::{App, assert_limited, get, quota, seeded_store, send, status};
use vitte_limits::RedisLimiter;

fn redis_url() -> String {
    ["VITTE_TEST_REDIS_URL", "REDIS_URL"]
        .into_iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test run uses.
fn unique_namespace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("vitte:rl:test-api:{}:{nanos}", std::process::id())
}

/// A limiter on the test Redis, or `None` (after saying why) when there is
/// none outside CI.
async fn redis_limiter(namespace: &str) -> Option<RedisLimiter> {
    let url = redis_url();
    match RedisLimiter::connect(&url).await {
        Ok(limiter) => Some(limiter.with_namespace(namespace)),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and the test Redis at {url} is unreachable: {error}")
        }
        Err(error) => {
            eprintln!("note: skipping, the test Redis at {url} is unreachable: {error}");
            None
        }
    }
}

#[tokio::test]
async fn two_processes_share_one_budget() {
    let namespace = unique_namespace();
    // Each "process" has its own connection and router, over one database.
    let Some(first) = redis_limiter(&namespace).await else {
        return;
    };
    let Some(second) = redis_limiter(&namespace).await else {
        return;
    };
    let store = seeded_store().await;
    let four_a_minute = vec![quota(4, 60)];
    let first = App::new(store.clone(), Arc::new(first), four_a_minute.clone(), false);
    let second = App::new(store, Arc::new(second), four_a_minute, false);
    let routers = [first.router(), second.router()];

    let alice = Some("203.0.113.7:50000");
    for i in 0..4 {
        let router = &routers[i % 2];
        assert_eq!(
            status(router, get("/v1/personas", alice, None)).await,
            StatusCode::OK,
            "request {i}"
        );
    }
    // Two requests each: the shared budget of four is spent on both.
    for router in &routers {
        assert_limited(send(router, get("/v1/personas", alice, None)).await, 15).await;
    }
    // Another client is untouched, on either process.
    let bob = Some("198.51.100.2:50000");
    for router in &routers {
        assert_eq!(
            status(router, get("/v1/personas", bob, None)).await,
            StatusCode::OK
        );
    }
}
