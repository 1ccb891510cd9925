//! PostgreSQL adapter of Vitte's storage ports: [`PgStore`] implements
//! [`Store`] and every repository trait on one connection pool, and carries
//! the engine's reversible migrations (see [`migrator`] and [`schema`]).
//!
//! The pool keeps no state that dies with a connection (no session settings,
//! no session locks), so it recovers by itself when PostgreSQL restarts.

mod broadcasts;
mod dialogs;
mod entitlements;
mod error;
mod memories;
mod messages;
mod payments;
mod personas;
pub mod schema;
pub mod testing;
mod updates;
mod users;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use vitte_domain::ports::{PoolSettings, Store, StoreError};

use crate::error::db;

/// The migrations of this engine, embedded at build time, for the `migrate`
/// command and for tests that build their own migrator from them.
pub fn migrator() -> &'static Migrator {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    &MIGRATOR
}

/// The PostgreSQL store: a connection pool plus the options to open the
/// dedicated connections migrations run on. Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    options: Arc<PgConnectOptions>,
}

impl fmt::Debug for PgStore {
    // The connect options hold the password; show only the pool.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Opens a pool sized by `pool` against the database at `url` and makes
    /// one round trip. A server that cannot be reached is
    /// [`StoreError::Unavailable`] carrying the cause.
    pub async fn connect(url: &str, pool: &PoolSettings) -> Result<PgStore, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Backend(Box::new(e)))?;

        // One direct connection first: the pool retries a refused connection
        // until its acquire timeout and then reports only "timed out".
        let mut probe = PgConnection::connect_with(&options)
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        probe
            .ping()
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        if let Err(error) = probe.close().await {
            tracing::debug!(%error, "closing the probe connection failed");
        }

        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .min_connections(pool.min_connections)
            .acquire_timeout(pool.acquire_timeout)
            .idle_timeout(pool.idle_timeout)
            .max_lifetime(pool.max_lifetime)
            .test_before_acquire(pool.test_before_acquire)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;

        Ok(PgStore {
            pool,
            options: Arc::new(options),
        })
    }

    /// The connection pool, for components that share it (the job queue).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where migrations connect: the same database as the pool, on a
    /// connection of their own.
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.options
    }
}

#[async_trait]
impl Store for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
