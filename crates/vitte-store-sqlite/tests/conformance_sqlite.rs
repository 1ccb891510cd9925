//! Runs the shared storage conformance suite against SQLite.
use std::sync::Arc;
use vitte_domain::ports::Store;

async fn fresh_store() -> Arc<dyn Store> {
    // A brand-new database file in its own temporary directory, fully migrated.
    vitte_store_sqlite::testing::fresh_store().await
}

vitte_store_conformance::conformance_suite!(fresh_store);
