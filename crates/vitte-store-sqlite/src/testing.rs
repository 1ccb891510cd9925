//! For tests (this crate's, the conformance suite's, other crates'): a fresh
//! database file per call, in its own temporary directory that lives exactly
//! as long as the store (and its clones) and is deleted after.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use vitte_domain::ports::{PoolSettings, SchemaControl, Store, StoreError};

use crate::SqliteStore;
use crate::error::OpenError;

/// Pool settings for a test database: small, since many tests run at once.
pub fn pool_settings() -> PoolSettings {
    PoolSettings {
        max_connections: 8,
        min_connections: 1,
        acquire_timeout: Duration::from_secs(10),
        ..PoolSettings::default()
    }
}

/// A brand-new, fully migrated store on a temporary file, as the
/// conformance suite wants it.
///
/// # Panics
/// When the temporary database cannot be created or migrated: a test cannot
/// go on without it.
pub async fn fresh_store() -> Arc<dyn Store> {
    match temp_store().await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("cannot create a temporary SQLite store: {e}"),
    }
}

/// A brand-new, fully migrated store on a temporary file.
pub async fn temp_store() -> Result<SqliteStore, StoreError> {
    let store = unmigrated_temp_store().await?;
    store.up().await?;
    Ok(store)
}

/// A brand-new store on a temporary file, with no migration applied.
pub async fn unmigrated_temp_store() -> Result<SqliteStore, StoreError> {
    let dir = tempfile::Builder::new()
        .prefix("vitte-sqlite-")
        .tempdir()
        .map_err(|e| StoreError::Unavailable(Box::new(OpenError::TempDir(e))))?;
    let path = dir.path().join("vitte.db");
    SqliteStore::open_file_with(
        SqliteConnectOptions::new(),
        path,
        &pool_settings(),
        Some(Arc::new(dir)),
    )
    .await
}
