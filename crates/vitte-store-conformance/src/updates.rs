//! Cases about the inbound update inbox: durability, deduplication, leases.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use vitte_domain::ids::UpdateId;
use vitte_domain::model::UpdateState;
use vitte_domain::ports::Store;

use crate::fixtures::{at, t0};

fn uid(n: i64) -> UpdateId {
    UpdateId::try_from(n).expect("update id")
}

/// A redelivered update is stored once; its payload is kept as received.
pub async fn duplicates_are_recorded_once(store: Arc<dyn Store>) {
    let payload = json!({"update_id": 7, "message": {"text": "привет", "chat": {"id": 1}}});
    assert!(
        store
            .record_update(uid(7), &payload, t0())
            .await
            .expect("first")
    );
    assert!(
        !store
            .record_update(uid(7), &json!({"other": 1}), at(1))
            .await
            .expect("again")
    );
    let claimed = store.claim_updates(10, at(2), at(62)).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].update_id, uid(7));
    assert_eq!(
        claimed[0].payload, payload,
        "payload replaced by the redelivery"
    );
    assert_eq!(claimed[0].state, UpdateState::Pending);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].received_at, t0());
}

/// Concurrent deliveries of one update: exactly one is new.
pub async fn concurrent_duplicates_are_recorded_once(store: Arc<dyn Store>) {
    let tasks = (0..10).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .record_update(uid(1), &json!({"update_id": 1}), t0())
                .await
        })
    });
    let results = futures::future::join_all(tasks).await;
    let new = results
        .into_iter()
        .filter(|r| *r.as_ref().expect("task").as_ref().expect("record"))
        .count();
    assert_eq!(new, 1);
}

/// Claims lease updates; a lease that runs out makes the update claimable
/// again, a finished update never is.
pub async fn claims_lease_and_expire(store: Arc<dyn Store>) {
    for n in [3, 1, 2] {
        store
            .record_update(uid(n), &json!({"update_id": n}), t0())
            .await
            .expect("record");
    }
    let first = store.claim_updates(2, at(1), at(31)).await.expect("claim");
    assert_eq!(
        first.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        [uid(1), uid(2)]
    );
    let second = store.claim_updates(10, at(2), at(32)).await.expect("claim");
    assert_eq!(
        second.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        [uid(3)]
    );
    assert_eq!(
        store.claim_updates(10, at(3), at(33)).await.expect("claim"),
        []
    );

    store
        .finish_update(uid(1), UpdateState::Done, at(4))
        .await
        .expect("finish");
    // Update 2's handler died: after its lease runs out it comes back.
    let again = store
        .claim_updates(10, at(31), at(61))
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|u| u.update_id).collect::<Vec<_>>(),
        [uid(2)]
    );
    assert_eq!(again[0].attempts, 2);
    store
        .finish_update(uid(2), UpdateState::Failed, at(32))
        .await
        .expect("finish");
    store
        .finish_update(uid(3), UpdateState::Done, at(32))
        .await
        .expect("finish");
    assert_eq!(
        store
            .claim_updates(10, at(1000), at(1030))
            .await
            .expect("claim"),
        []
    );
}

/// Concurrent claimers split the work without overlap.
pub async fn concurrent_claims_never_overlap(store: Arc<dyn Store>) {
    for n in 0..40 {
        store
            .record_update(uid(n), &json!({"update_id": n}), t0())
            .await
            .expect("record");
    }
    let claimers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_updates(3, at(1), at(60)).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|u| u.update_id));
            }
        })
    });
    let mut seen = HashSet::new();
    let mut total = 0;
    for ids in futures::future::join_all(claimers).await {
        for id in ids.expect("task") {
            total += 1;
            assert!(seen.insert(id), "update {id:?} claimed twice");
        }
    }
    assert_eq!(total, 40);
}

fn from(sender: i64, n: i64) -> serde_json::Value {
    json!({"update_id": n, "message": {"text": format!("m{n}"), "from": {"id": sender}}})
}

/// Of each sender only the oldest pending update is handed out, whoever
/// holds it and whether or not its lease ran out; updates without a sender
/// (or with one that is not a number) are not held back.
pub async fn a_senders_updates_are_claimed_one_at_a_time(store: Arc<dyn Store>) {
    let payloads = [
        (1, from(7, 1)),
        (2, from(7, 2)),
        (
            3,
            json!({"update_id": 3, "callback_query": {"id": "q", "from": {"id": 7}}}),
        ),
        (4, from(8, 4)),
        (5, json!({"update_id": 5, "channel_post": {"text": "x"}})),
        (
            6,
            json!({"update_id": 6, "message": {"from": {"id": "not a number"}}}),
        ),
        (
            7,
            json!({"update_id": 7, "message": {"from": {"id": "not a number"}}}),
        ),
    ];
    for (n, payload) in &payloads {
        store
            .record_update(uid(*n), payload, t0())
            .await
            .expect("record");
    }
    let ids = |batch: Vec<vitte_domain::model::InboundUpdate>| {
        batch.into_iter().map(|u| u.update_id).collect::<Vec<_>>()
    };
    let first = store.claim_updates(10, at(1), at(31)).await.expect("claim");
    assert_eq!(ids(first), [uid(1), uid(4), uid(5), uid(6), uid(7)]);
    assert_eq!(
        ids(store.claim_updates(10, at(2), at(32)).await.expect("claim")),
        []
    );
    for n in 4..=7 {
        store
            .finish_update(uid(n), UpdateState::Done, at(2))
            .await
            .expect("finish");
    }
    store
        .finish_update(uid(1), UpdateState::Done, at(3))
        .await
        .expect("finish");
    assert_eq!(
        ids(store.claim_updates(10, at(4), at(34)).await.expect("claim")),
        [uid(2)]
    );
    // Update 2's handler died: when its lease runs out 2 comes back, not 3.
    assert_eq!(
        ids(store
            .claim_updates(10, at(40), at(70))
            .await
            .expect("claim")),
        [uid(2)]
    );
    store
        .finish_update(uid(2), UpdateState::Failed, at(41))
        .await
        .expect("finish");
    assert_eq!(
        ids(store
            .claim_updates(10, at(42), at(72))
            .await
            .expect("claim")),
        [uid(3)]
    );
}

/// Concurrent claimers never hold two updates of one sender at once.
pub async fn concurrent_claims_keep_each_senders_order(store: Arc<dyn Store>) {
    let senders = 5;
    let per_sender = 6;
    for n in 0..senders * per_sender {
        store
            .record_update(uid(n), &from(100 + n % senders, n), t0())
            .await
            .expect("record");
    }
    let held = Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::<i64, i64>::new(),
    ));
    let handled = Arc::new(std::sync::Mutex::new(Vec::<(i64, i64)>::new()));
    let claimers = (0..4).map(|_| {
        let (store, held, handled) = (store.clone(), held.clone(), handled.clone());
        tokio::spawn(async move {
            let mut idle = 0;
            while idle < 50 {
                let batch = store.claim_updates(4, at(1), at(600)).await.expect("claim");
                if batch.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for update in &batch {
                    let sender = update.sender().expect("sender");
                    let n = update.update_id.get();
                    let before = held.lock().expect("lock").insert(sender, n);
                    assert_eq!(before, None, "two updates of sender {sender} held at once");
                }
                tokio::task::yield_now().await;
                for update in batch {
                    let sender = update.sender().expect("sender");
                    let n = update.update_id.get();
                    handled.lock().expect("lock").push((sender, n));
                    held.lock().expect("lock").remove(&sender);
                    store
                        .finish_update(update.update_id, UpdateState::Done, at(2))
                        .await
                        .expect("finish");
                }
            }
        })
    });
    for claimer in futures::future::join_all(claimers).await {
        claimer.expect("claimer");
    }
    let handled = handled.lock().expect("lock").clone();
    assert_eq!(
        handled.len(),
        usize::try_from(senders * per_sender).expect("count")
    );
    for sender in 100..100 + senders {
        let order: Vec<i64> = handled
            .iter()
            .filter(|(s, _)| *s == sender)
            .map(|(_, n)| *n)
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "sender {sender} handled out of order");
    }
}

/// Pruning deletes old finished updates and keeps pending ones.
pub async fn prune_keeps_pending(store: Arc<dyn Store>) {
    for n in 1..=3 {
        store
            .record_update(uid(n), &json!({}), at(n))
            .await
            .expect("record");
    }
    store.claim_updates(10, at(5), at(6)).await.expect("claim");
    store
        .finish_update(uid(1), UpdateState::Done, at(7))
        .await
        .expect("finish");
    store
        .finish_update(uid(3), UpdateState::Done, at(7))
        .await
        .expect("finish");
    // Update 3 arrived at t0+3, after the cut-off: kept.
    assert_eq!(store.prune_updates(at(3)).await.expect("prune"), 1);
    // Pruned ids are forgotten; kept ones still deduplicate.
    assert!(
        store
            .record_update(uid(1), &json!({}), at(8))
            .await
            .expect("record")
    );
    assert!(
        !store
            .record_update(uid(2), &json!({}), at(8))
            .await
            .expect("record")
    );
    assert!(
        !store
            .record_update(uid(3), &json!({}), at(8))
            .await
            .expect("record")
    );
}
