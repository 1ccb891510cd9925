//! Runs the shared rate limiter conformance suite against the in-process
//! engine.

use std::sync::Arc;

use vitte_domain::ports::RateLimiter;
use vitte_limits::MemoryLimiter;

async fn fresh() -> Arc<dyn RateLimiter> {
    Arc::new(MemoryLimiter::new())
}

vitte_limits::conformance_suite!(fresh);
