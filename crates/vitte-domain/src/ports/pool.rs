//! Connection-pool settings shared by the relational adapters.

use std::time::Duration;

/// How a relational adapter sizes and checks its connection pool. The
/// defaults hold 100+ concurrent requests per process (the old service had 5
/// connections and failed at 10 concurrent users).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_connections: u32,
    /// Connections kept open even when idle, so a burst does not pay for connects.
    pub min_connections: u32,
    /// How long a request waits for a free connection before failing with
    /// `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long, so a database failover or a
    /// restarted server is picked up.
    pub max_lifetime: Option<Duration>,
    /// Ping a pooled connection before handing it out, so connections killed
    /// by a database restart are dropped instead of failing a request.
    pub test_before_acquire: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 60,
            min_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            test_before_acquire: true,
        }
    }
}
