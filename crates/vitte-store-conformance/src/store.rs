//! Cases about the store as a whole.

use std::sync::Arc;

use vitte_domain::ports::Store;

/// A fresh store answers pings and reports its schema current.
pub async fn ping_and_schema_are_current(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    assert!(!store.engine().is_empty());
    let status = store.status().await.expect("status");
    assert!(status.is_current(), "fresh store not current: {status:?}");
    assert!(status.version() > 0);
    assert!(
        store.up().await.expect("up").is_empty(),
        "up on a current schema applied something"
    );
}
