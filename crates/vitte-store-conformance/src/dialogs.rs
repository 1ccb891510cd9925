//! Cases about dialogs.

use std::sync::Arc;

use vitte_domain::ids::DialogId;
use vitte_domain::ports::{Store, StoreError};

use crate::fixtures::{at, persona, t0, user};

/// Many concurrent opens of the same user and persona end in one dialog.
pub async fn concurrent_opens_share_one_dialog(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let p = persona(&*store, "Mira").await;
    assert_eq!(store.active_dialog(u.id, p.id).await.expect("active"), None);
    let opens = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.open_dialog(u.id, p.id, t0()).await })
    });
    let dialogs = futures::future::join_all(opens).await;
    let ids: Vec<_> = dialogs
        .into_iter()
        .map(|r| r.expect("task").expect("open").id)
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "different dialogs opened: {ids:?}"
    );
    let active = store
        .active_dialog(u.id, p.id)
        .await
        .expect("active")
        .expect("some");
    assert_eq!(active.id, ids[0]);
    assert!(active.active);
    assert_eq!(active.intimacy_score, 0);
}

/// A reset closes the active dialog and opens a new one.
pub async fn reset_deactivates_and_opens_new(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let p = persona(&*store, "Mira").await;
    let old = store.open_dialog(u.id, p.id, t0()).await.expect("open");
    let new = store.reset_dialog(u.id, p.id, at(30)).await.expect("reset");
    assert_ne!(old.id, new.id);
    assert!(new.active);
    assert_eq!(new.created_at, at(30));
    let old = store.dialog(old.id).await.expect("get").expect("kept");
    assert!(!old.active, "old dialog still active");
    assert_eq!(
        store.active_dialog(u.id, p.id).await.expect("active"),
        Some(new.clone())
    );
    assert_eq!(
        store
            .open_dialog(u.id, p.id, at(40))
            .await
            .expect("open")
            .id,
        new.id
    );
    // A reset with no active dialog simply opens one.
    let q = persona(&*store, "Zoe").await;
    let fresh = store.reset_dialog(u.id, q.id, at(50)).await.expect("reset");
    assert!(fresh.active);
}

/// Intimacy deltas add up; a missing dialog is `NotFound`.
pub async fn intimacy_accumulates(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let p = persona(&*store, "Mira").await;
    let d = store.open_dialog(u.id, p.id, t0()).await.expect("open");
    assert_eq!(store.add_intimacy(d.id, 5, at(1)).await.expect("add"), 5);
    assert_eq!(store.add_intimacy(d.id, -2, at(2)).await.expect("add"), 3);
    let got = store.dialog(d.id).await.expect("get").expect("exists");
    assert_eq!(got.intimacy_score, 3);
    assert_eq!(got.updated_at, at(2));
    assert!(matches!(
        store.add_intimacy(DialogId(d.id.0 + 1000), 1, at(3)).await,
        Err(StoreError::NotFound(_))
    ));
}
