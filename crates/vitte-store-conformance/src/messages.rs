//! Cases about chat messages and long-term memory.

use std::sync::Arc;

use vitte_domain::ids::{DialogId, MessageId};
use vitte_domain::model::{MemoryKind, MessageState, Role};
use vitte_domain::ports::{Store, StoreError};

use crate::fixtures::{at, dialog, persona, plain, reply, t0, user, user_message};

/// `recent_messages` returns the newest messages in chronological order.
pub async fn recent_returns_newest_oldest_first(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let mut stored = Vec::new();
    for i in 1..=5 {
        let m = store
            .append_message(&user_message(d.id, &format!("m{i}"), i), at(i))
            .await
            .expect("append");
        assert_eq!(m.text, format!("m{i}"));
        assert_eq!(m.created_at, at(i));
        assert_eq!(m.state, MessageState::Pending);
        stored.push(m);
    }
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "ids do not increase"
    );
    let recent = store.recent_messages(d.id, 3).await.expect("recent");
    let texts: Vec<_> = recent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m3", "m4", "m5"]);
    assert_eq!(recent[2], stored[4]);
    assert_eq!(
        store.message(stored[0].id).await.expect("get"),
        Some(stored[0].clone())
    );
    assert_eq!(store.recent_messages(d.id, 0).await.expect("recent"), []);
}

/// A reply answers every pending message it covers, in one write.
pub async fn complete_reply_answers_pending_messages(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let a = store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("a");
    let b = store
        .append_message(&user_message(d.id, "there", 2), at(2))
        .await
        .expect("b");
    let pending = store.pending_messages(d.id).await.expect("pending");
    assert_eq!(
        pending.iter().map(|m| m.id).collect::<Vec<_>>(),
        [a.id, b.id]
    );

    let r = store
        .complete_reply(&plain(&[a.id, b.id], &reply(d.id, "Hello!", b.id)), at(3))
        .await
        .map(|c| c.message)
        .expect("complete");
    assert_eq!(r.role, Role::Assistant);
    assert_eq!(r.reply_to, Some(b.id));
    assert_eq!(r.usage.as_ref().map(|u| u.completion_tokens), Some(30));
    assert!(r.id > b.id);
    assert_eq!(store.pending_messages(d.id).await.expect("pending"), []);
    for id in [a.id, b.id] {
        let m = store.message(id).await.expect("get").expect("exists");
        assert_eq!(m.state, MessageState::Answered);
    }
    assert_eq!(store.message(r.id).await.expect("get"), Some(r));
}

/// When storing the reply fails, the user messages stay pending.
pub async fn complete_reply_is_atomic(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let a = store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("a");
    // The reply names a dialog that does not exist, so its insert must fail.
    let broken = reply(DialogId(d.id.0 + 1000), "lost", a.id);
    let result = store
        .complete_reply(&plain(&[a.id], &broken), at(2))
        .await
        .map(|c| c.message);
    assert!(result.is_err(), "reply to a missing dialog was stored");
    let m = store.message(a.id).await.expect("get").expect("exists");
    assert_eq!(
        m.state,
        MessageState::Pending,
        "half of a failed reply was written"
    );
    assert_eq!(
        store.recent_messages(d.id, 10).await.expect("recent").len(),
        1
    );
}

/// The recovery sweep finds dialogs with old unanswered messages only.
pub async fn recovery_lists_only_old_pending(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let p1 = persona(&*store, "Anna").await;
    let p2 = persona(&*store, "Zoe").await;
    let p3 = persona(&*store, "Mark").await;
    let old = store.open_dialog(u.id, p1.id, t0()).await.expect("d1");
    let fresh = store.open_dialog(u.id, p2.id, t0()).await.expect("d2");
    let answered = store.open_dialog(u.id, p3.id, t0()).await.expect("d3");
    store
        .append_message(&user_message(old.id, "a", 1), at(1))
        .await
        .expect("a");
    store
        .append_message(&user_message(old.id, "b", 2), at(2))
        .await
        .expect("b");
    store
        .append_message(&user_message(fresh.id, "c", 3), at(100))
        .await
        .expect("c");
    let done = store
        .append_message(&user_message(answered.id, "d", 4), at(1))
        .await
        .expect("d");
    store
        .set_message_state(&[done.id], MessageState::Answered)
        .await
        .expect("answer");

    let due = store.dialogs_with_pending(at(50), 10).await.expect("due");
    assert_eq!(due, [old.id]);
    let all = store.dialogs_with_pending(at(200), 10).await.expect("due");
    assert_eq!(all, [old.id, fresh.id]);
    assert_eq!(
        store.dialogs_with_pending(at(200), 1).await.expect("due"),
        [old.id]
    );
}

/// `set_message_state` accepts an empty list and refuses unknown ids.
pub async fn set_state_checks_ids(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let a = store
        .append_message(&user_message(d.id, "a", 1), at(1))
        .await
        .expect("a");
    store
        .set_message_state(&[], MessageState::Failed)
        .await
        .expect("empty");
    store
        .set_message_state(&[a.id], MessageState::Failed)
        .await
        .expect("set");
    assert_eq!(
        store
            .message(a.id)
            .await
            .expect("get")
            .expect("exists")
            .state,
        MessageState::Failed
    );
    assert!(matches!(
        store
            .set_message_state(&[MessageId(a.id.0 + 1000)], MessageState::Failed)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A dialog has one rolling summary, replaced in place, and any number of facts.
pub async fn summary_is_one_row_and_facts_accumulate(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert_eq!(store.summary(d.id).await.expect("summary"), None);
    let m = store
        .append_message(&user_message(d.id, "a", 1), at(1))
        .await
        .expect("a");
    let first = store
        .put_summary(d.id, "They met.", m.id, at(2))
        .await
        .expect("put");
    assert_eq!(first.kind, MemoryKind::Summary);
    let second = store
        .put_summary(d.id, "They met twice.", m.id, at(3))
        .await
        .expect("put");
    assert_eq!(
        second.id, first.id,
        "summary duplicated instead of replaced"
    );
    let got = store.summary(d.id).await.expect("summary").expect("some");
    assert_eq!(got.text, "They met twice.");
    assert_eq!(got.covers_until, Some(m.id));
    assert_eq!(got.updated_at, at(3));

    let cat = store
        .add_fact(d.id, "Her cat is Tom.", at(4))
        .await
        .expect("fact");
    let city = store
        .add_fact(d.id, "Lives in Kazan.", at(5))
        .await
        .expect("fact");
    let facts = store.facts(d.id).await.expect("facts");
    assert_eq!(
        facts.iter().map(|f| f.text.as_str()).collect::<Vec<_>>(),
        ["Her cat is Tom.", "Lives in Kazan."]
    );
    assert!(facts.iter().all(|f| f.kind == MemoryKind::Fact));
    store.delete_memory(cat.id).await.expect("delete");
    assert_eq!(store.facts(d.id).await.expect("facts"), [city]);
}
