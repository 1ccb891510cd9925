//! Cases about broadcasts.

use std::sync::Arc;

use vitte_domain::ids::BroadcastId;
use vitte_domain::model::BroadcastState;
use vitte_domain::ports::{Store, StoreError};

use crate::fixtures::{at, t0, user};

/// Each recipient counts once, whatever the retries.
pub async fn deliveries_count_once(store: Arc<dyn Store>) {
    let a = user(&*store, 1).await;
    let b = user(&*store, 2).await;
    let draft = store
        .create_broadcast("<b>News</b>", None, t0())
        .await
        .expect("create");
    assert_eq!(draft.state, BroadcastState::Draft);
    let later = store
        .create_broadcast("Later", Some(at(3600)), t0())
        .await
        .expect("create");
    assert_eq!(later.state, BroadcastState::Scheduled);
    assert_eq!(later.scheduled_at, Some(at(3600)));

    store
        .set_broadcast_state(draft.id, BroadcastState::Running)
        .await
        .expect("run");
    assert!(
        store
            .record_delivery(draft.id, a.id, true, at(1))
            .await
            .expect("a")
    );
    assert!(
        !store
            .record_delivery(draft.id, a.id, true, at(2))
            .await
            .expect("a again")
    );
    assert!(
        store
            .record_delivery(draft.id, b.id, false, at(3))
            .await
            .expect("b")
    );
    let got = store
        .broadcast(draft.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((got.sent, got.failed), (1, 1));
    assert_eq!(got.state, BroadcastState::Running);
    assert_eq!(got.text, "<b>News</b>");
    assert!(matches!(
        store
            .set_broadcast_state(BroadcastId(later.id.0 + 1000), BroadcastState::Done)
            .await,
        Err(StoreError::NotFound(_))
    ));
}
