//! The one context built at start-up and handed to every role.

use std::sync::Arc;

use vitte_domain::Clock;
use vitte_domain::ports::{RateLimiter, Store};

use crate::config::Settings;
use crate::shutdown::Shutdown;

/// Everything a role needs, built once in the binary. No globals: tests build
/// their own.
#[derive(Clone)]
pub struct AppContext {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The storage engine chosen by `DATABASE_URL`.
    pub store: Arc<dyn Store>,
    /// Rate limits: in-process, or shared through Redis when `REDIS_URL` is set.
    pub limiter: Arc<dyn RateLimiter>,
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// Trips when the process is asked to stop.
    pub shutdown: Shutdown,
}
