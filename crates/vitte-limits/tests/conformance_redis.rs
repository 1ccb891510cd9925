//! Runs the shared rate limiter conformance suite against the Redis engine,
//! each case under a namespace of its own.

mod common;

use std::sync::Arc;

use vitte_domain::ports::RateLimiter;

async fn fresh() -> Arc<dyn RateLimiter> {
    Arc::new(common::limiter_in(&common::unique_namespace()).await)
}

vitte_limits::conformance_suite!(fresh);
