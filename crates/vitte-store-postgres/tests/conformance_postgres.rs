//! Runs the shared storage conformance suite against PostgreSQL.
use std::sync::Arc;
use vitte_domain::ports::Store;

async fn fresh_store() -> Arc<dyn Store> {
    // A brand-new database on the test server, fully migrated.
    vitte_store_postgres::testing::fresh_store().await
}

vitte_store_conformance::conformance_suite!(fresh_store);
