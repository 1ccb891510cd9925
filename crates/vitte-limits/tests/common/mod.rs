//! Access to the test Redis, shared by the Redis test files.

use vitte_limits::RedisLimiter;

/// Where the test Redis listens (`VITTE_TEST_REDIS_URL`, else the local
/// default).
pub fn redis_url() -> String {
    std::env::var("VITTE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A namespace no other test uses, so tests share one Redis in parallel.
pub fn unique_namespace() -> String {
    format!("vitte:rl:test:{:016x}", rand::random::<u64>())
}

/// A limiter on the test Redis under a fresh namespace. Fails loudly when
/// Redis is not there: these tests are never skipped.
pub async fn limiter_in(namespace: &str) -> RedisLimiter {
    let url = redis_url();
    match RedisLimiter::connect(&url).await {
        Ok(limiter) => limiter.with_namespace(namespace),
        Err(error) => {
            panic!("the Redis tests need a Redis at {url} (set VITTE_TEST_REDIS_URL): {error}")
        }
    }
}
