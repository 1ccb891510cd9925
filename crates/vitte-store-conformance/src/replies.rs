//! Cases about the reply pipeline: the per-dialog reply lease, storing a user
//! message once per Telegram update, and reopening the last exchange for
//! `/retry`.

use std::sync::Arc;

use vitte_domain::ids::{DialogId, MessageId};
use vitte_domain::model::{Dialog, Message, MessageState, NewMessage, Role};
use vitte_domain::ports::{ReplyCompletion, Store, StoreError};

use crate::fixtures::{at, dialog, persona, plain, reply, t0, user_message};

/// A second dialog of the same user, with another persona.
async fn other_dialog(store: &dyn Store, of: &Dialog) -> Dialog {
    let p = persona(store, "Zoe").await;
    store
        .open_dialog(of.user_id, p.id, t0())
        .await
        .expect("open")
}

async fn lease(store: &dyn Store, d: DialogId, owner: &str, now: i64, until: i64) -> bool {
    store
        .lease_reply(d, owner, at(now), at(until))
        .await
        .expect("lease")
}

async fn state(store: &dyn Store, id: MessageId) -> MessageState {
    store.message(id).await.expect("get").expect("exists").state
}

fn ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id).collect()
}

/// A lease keeps other owners out of that dialog until it expires.
pub async fn lease_is_exclusive_until_it_expires(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert!(lease(&*store, d.id, "a", 0, 30).await, "free lease refused");
    assert!(!lease(&*store, d.id, "b", 1, 31).await);
    assert!(!lease(&*store, d.id, "b", 29, 59).await);
    // Expired at exactly its end.
    assert!(
        lease(&*store, d.id, "b", 30, 60).await,
        "expired lease held"
    );
    assert!(
        !lease(&*store, d.id, "a", 31, 61).await,
        "b's lease ignored"
    );

    let other = other_dialog(&*store, &d).await;
    assert!(
        lease(&*store, other.id, "a", 31, 61).await,
        "a lease spilled over to another dialog"
    );
    assert!(matches!(
        store
            .lease_reply(DialogId(d.id.0 + 1000), "a", t0(), at(30))
            .await,
        Err(StoreError::NotFound("dialog"))
    ));
}

/// The owner extends its lease; others wait for the extended end.
pub async fn lease_is_renewed_by_its_owner(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert!(lease(&*store, d.id, "a", 0, 10).await);
    assert!(lease(&*store, d.id, "a", 5, 20).await, "renewal refused");
    assert!(
        !lease(&*store, d.id, "b", 15, 45).await,
        "the renewal did not extend the lease"
    );
    assert!(lease(&*store, d.id, "a", 25, 40).await);
    assert!(!lease(&*store, d.id, "b", 39, 69).await);
    assert!(lease(&*store, d.id, "b", 40, 70).await);
}

/// Only the holder gives a lease up; releasing what one does not hold is a no-op.
pub async fn lease_is_released_only_by_its_owner(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert!(lease(&*store, d.id, "a", 0, 60).await);
    store.release_reply(d.id, "b").await.expect("release by b");
    assert!(
        !lease(&*store, d.id, "b", 1, 61).await,
        "a non-owner released the lease"
    );
    store.release_reply(d.id, "a").await.expect("release by a");
    assert!(
        lease(&*store, d.id, "b", 2, 62).await,
        "released lease still held"
    );
    store.release_reply(d.id, "a").await.expect("release again");
    assert!(
        !lease(&*store, d.id, "a", 3, 63).await,
        "a stale release freed b's lease"
    );
    store
        .release_reply(DialogId(d.id.0 + 1000), "a")
        .await
        .expect("release on a missing dialog");
}

/// Of many owners racing for a free lease, exactly one gets it.
pub async fn concurrent_leases_have_one_winner(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let owner = format!("worker-{i}");
            let taken = store
                .lease_reply(d.id, &owner, t0(), at(60))
                .await
                .expect("lease");
            (owner, taken)
        })
    });
    let winners: Vec<String> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .filter(|(_, taken)| *taken)
        .map(|(owner, _)| owner)
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert!(lease(&*store, d.id, &winners[0], 1, 61).await);
    let loser = if winners[0] == "worker-0" {
        "worker-1"
    } else {
        "worker-0"
    };
    assert!(!lease(&*store, d.id, loser, 1, 61).await);
}

/// Storing a message from an update that is already stored returns the
/// stored message and writes nothing; messages without an update are never
/// merged.
pub async fn append_is_idempotent_by_update(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let first = store
        .append_message(&user_message(d.id, "hi", 7), at(1))
        .await
        .expect("first");
    let again = store
        .append_message(&user_message(d.id, "hi, re-run", 7), at(5))
        .await
        .expect("again");
    assert_eq!(again, first);
    assert_eq!(
        store.recent_messages(d.id, 10).await.expect("recent"),
        std::slice::from_ref(&first)
    );
    let got = store.dialog(d.id).await.expect("get").expect("exists");
    assert_eq!(got.updated_at, at(1), "a duplicate moved updated_at");

    let other = other_dialog(&*store, &d).await;
    let elsewhere = store
        .append_message(&user_message(other.id, "hi", 7), at(6))
        .await
        .expect("same update, other dialog");
    assert_eq!(elsewhere, first);
    assert_eq!(
        store.recent_messages(other.id, 10).await.expect("recent"),
        []
    );

    let r1 = store
        .append_message(&reply(d.id, "Hello!", first.id), at(7))
        .await
        .expect("reply");
    let r2 = store
        .append_message(&reply(d.id, "Hello!", first.id), at(8))
        .await
        .expect("same reply again");
    assert_ne!(r1.id, r2.id, "messages without an update were merged");
    assert_eq!(
        ids(&store.recent_messages(d.id, 10).await.expect("recent")),
        [first.id, r1.id, r2.id]
    );
}

/// Concurrent handlers storing the same update's message store it once.
pub async fn concurrent_appends_of_one_update_store_one(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let appends = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append_message(&user_message(d.id, "hi", 3), at(i))
                .await
        })
    });
    let stored: Vec<_> = futures::future::join_all(appends)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("append"))
        .collect();
    assert!(
        stored.iter().all(|m| *m == stored[0]),
        "different messages returned: {stored:?}"
    );
    assert_eq!(
        store.recent_messages(d.id, 10).await.expect("recent"),
        std::slice::from_ref(&stored[0])
    );
}

/// Failed user messages go back to pending; the rest is untouched.
pub async fn reopen_requeues_failed_messages(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let u1 = store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("u1");
    let a1 = store
        .complete_reply(&plain(&[u1.id], &reply(d.id, "Hello!", u1.id)), at(2))
        .await
        .map(|c| c.message)
        .expect("a1");
    let u2 = store
        .append_message(&user_message(d.id, "how are you?", 2), at(3))
        .await
        .expect("u2");
    let u3 = store
        .append_message(&user_message(d.id, "hello?", 3), at(4))
        .await
        .expect("u3");
    store
        .set_message_state(&[u2.id, u3.id], MessageState::Failed)
        .await
        .expect("fail");
    let other = other_dialog(&*store, &d).await;
    let elsewhere = store
        .append_message(&user_message(other.id, "hi", 4), at(5))
        .await
        .expect("elsewhere");
    store
        .set_message_state(&[elsewhere.id], MessageState::Failed)
        .await
        .expect("fail");

    let reopened = store.reopen_last_exchange(d.id).await.expect("reopen");
    assert_eq!(reopened, [u2.id, u3.id]);
    assert_eq!(
        ids(&store.pending_messages(d.id).await.expect("pending")),
        [u2.id, u3.id]
    );
    assert_eq!(state(&*store, u1.id).await, MessageState::Answered);
    assert_eq!(state(&*store, a1.id).await, MessageState::Sent);
    assert_eq!(state(&*store, elsewhere.id).await, MessageState::Failed);
}

/// With nothing failed, the last reply is superseded and the messages it
/// answered are pending again.
pub async fn reopen_supersedes_a_successful_exchange(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let u1 = store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("u1");
    let u2 = store
        .append_message(&user_message(d.id, "there", 2), at(2))
        .await
        .expect("u2");
    let a1 = store
        .complete_reply(
            &plain(&[u1.id, u2.id], &reply(d.id, "Hello!", u2.id)),
            at(3),
        )
        .await
        .map(|c| c.message)
        .expect("a1");

    let reopened = store.reopen_last_exchange(d.id).await.expect("reopen");
    assert_eq!(reopened, [u1.id, u2.id]);
    assert_eq!(state(&*store, a1.id).await, MessageState::Dropped);
    let pending = store.pending_messages(d.id).await.expect("pending");
    assert_eq!(ids(&pending), [u1.id, u2.id]);
    assert!(pending.iter().all(|m| m.state == MessageState::Pending));
}

/// Only the newest exchange is reopened; a superseded reply no longer
/// counts, so retrying the retry reopens the same exchange again.
pub async fn reopen_only_the_last_exchange(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let u1 = store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("u1");
    let a1 = store
        .complete_reply(&plain(&[u1.id], &reply(d.id, "Hello!", u1.id)), at(2))
        .await
        .map(|c| c.message)
        .expect("a1");
    let u2 = store
        .append_message(&user_message(d.id, "tell me a story", 2), at(3))
        .await
        .expect("u2");
    let refused = store
        .append_message(&user_message(d.id, "something refused", 3), at(4))
        .await
        .expect("refused");
    store
        .set_message_state(&[refused.id], MessageState::Dropped)
        .await
        .expect("drop");
    let a2 = store
        .complete_reply(
            &plain(&[u2.id], &reply(d.id, "Once upon a time", u2.id)),
            at(5),
        )
        .await
        .map(|c| c.message)
        .expect("a2");

    assert_eq!(
        store.reopen_last_exchange(d.id).await.expect("reopen"),
        [u2.id]
    );
    assert_eq!(state(&*store, a2.id).await, MessageState::Dropped);
    assert_eq!(state(&*store, refused.id).await, MessageState::Dropped);
    assert_eq!(state(&*store, a1.id).await, MessageState::Sent);
    assert_eq!(state(&*store, u1.id).await, MessageState::Answered);

    let a2b = store
        .complete_reply(&plain(&[u2.id], &reply(d.id, "Long ago", u2.id)), at(6))
        .await
        .map(|c| c.message)
        .expect("a2b");
    assert_eq!(
        store
            .reopen_last_exchange(d.id)
            .await
            .expect("reopen again"),
        [u2.id]
    );
    assert_eq!(state(&*store, a2b.id).await, MessageState::Dropped);
    assert_eq!(state(&*store, a1.id).await, MessageState::Sent);
    assert_eq!(state(&*store, u1.id).await, MessageState::Answered);
}

/// Nothing to retry (no reply yet, or a greeting that answered nothing, or
/// no such dialog): empty, and nothing changes.
pub async fn reopen_with_nothing_to_retry_is_empty(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert_eq!(store.reopen_last_exchange(d.id).await.expect("reopen"), []);

    let greeting = NewMessage {
        dialog_id: d.id,
        role: Role::Assistant,
        text: "Hello, I am Mira.".to_owned(),
        state: MessageState::Sent,
        telegram_message_id: None,
        update_id: None,
        reply_to: None,
        usage: None,
    };
    let greeting = store
        .append_message(&greeting, at(1))
        .await
        .expect("greeting");
    let waiting = store
        .append_message(&user_message(d.id, "hi", 1), at(2))
        .await
        .expect("waiting");
    assert_eq!(store.reopen_last_exchange(d.id).await.expect("reopen"), []);
    assert_eq!(state(&*store, greeting.id).await, MessageState::Sent);
    assert_eq!(state(&*store, waiting.id).await, MessageState::Pending);

    assert_eq!(
        store
            .reopen_last_exchange(DialogId(d.id.0 + 1000))
            .await
            .expect("reopen a missing dialog"),
        []
    );
}

/// A user's message stored with its update finishes that update in the same
/// write; storing it again returns the same message, and a message without
/// an update is refused.
pub async fn append_from_update_finishes_its_update(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let update = vitte_domain::ids::UpdateId::try_from(7).expect("a valid id");
    store
        .record_update(update, &serde_json::json!({"update_id": 7}), t0())
        .await
        .expect("record");
    let claimed = store.claim_updates(10, at(1), at(31)).await.expect("claim");
    assert_eq!(claimed.len(), 1);

    let stored = store
        .append_from_update(&user_message(d.id, "hi", 7), at(2))
        .await
        .expect("append");
    assert_eq!(stored.state, MessageState::Pending);
    assert_eq!(stored.update_id, Some(update));
    assert_eq!(
        store
            .claim_updates(10, at(1000), at(1030))
            .await
            .expect("claim"),
        [],
        "the update was not finished with its message"
    );

    let again = store
        .append_from_update(&user_message(d.id, "hi", 7), at(3))
        .await
        .expect("append again");
    assert_eq!(again.id, stored.id, "a second message for one update");
    assert_eq!(
        store.recent_messages(d.id, 10).await.expect("recent").len(),
        1
    );

    let mut loose = user_message(d.id, "no update", 8);
    loose.update_id = None;
    assert!(matches!(
        store.append_from_update(&loose, at(4)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.recent_messages(d.id, 10).await.expect("recent").len(),
        1,
        "a refused message was stored"
    );
}

/// A reply's write also adds its intimacy and gives up its owner's lease,
/// and only its owner's.
pub async fn complete_reply_adds_intimacy_and_releases_the_lease(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert!(lease(&*store, d.id, "a", 0, 30).await);
    let asked = store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("append");
    let answer = reply(d.id, "Hello!", asked.id);
    let done = store
        .complete_reply(
            &ReplyCompletion {
                answered: &[asked.id],
                reply: &answer,
                intimacy: 3,
                lease_owner: Some("a"),
            },
            at(2),
        )
        .await
        .expect("complete");
    assert_eq!(done.intimacy, 3);
    assert!(!done.reply_wanted);
    assert_eq!(done.message.text, "Hello!");
    assert_eq!(state(&*store, asked.id).await, MessageState::Answered);
    let stored = store.dialog(d.id).await.expect("get").expect("exists");
    assert_eq!(stored.intimacy_score, 3);
    assert!(
        lease(&*store, d.id, "b", 3, 33).await,
        "the lease was not released with the reply"
    );

    // Someone else's lease stays where it is.
    let next = store
        .append_message(&user_message(d.id, "more", 2), at(4))
        .await
        .expect("append");
    let answer = reply(d.id, "More!", next.id);
    let done = store
        .complete_reply(
            &ReplyCompletion {
                answered: &[next.id],
                reply: &answer,
                intimacy: -1,
                lease_owner: Some("a"),
            },
            at(5),
        )
        .await
        .expect("complete");
    assert_eq!(done.intimacy, 2);
    assert!(
        !lease(&*store, d.id, "a", 6, 36).await,
        "a reply released a lease its writer did not hold"
    );
}

/// A refused lease leaves a request for another reply: renewing keeps it,
/// the holder learns of it when it releases the lease or stores its reply,
/// and whoever takes the lease next clears it.
pub async fn a_refused_lease_leaves_a_request(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert!(lease(&*store, d.id, "a", 0, 30).await);
    assert!(
        !store.release_reply(d.id, "a").await.expect("release"),
        "a request nobody made"
    );

    assert!(lease(&*store, d.id, "a", 1, 31).await);
    assert!(!lease(&*store, d.id, "b", 2, 32).await);
    assert!(lease(&*store, d.id, "a", 3, 33).await, "renewal refused");
    assert!(
        store.release_reply(d.id, "a").await.expect("release"),
        "the request was lost"
    );
    assert!(lease(&*store, d.id, "b", 4, 34).await);
    assert!(
        !store.release_reply(d.id, "b").await.expect("release"),
        "taking the lease did not clear the request"
    );

    // Seen by the reply's own write too.
    assert!(lease(&*store, d.id, "a", 5, 35).await);
    let asked = store
        .append_message(&user_message(d.id, "hi", 1), at(5))
        .await
        .expect("append");
    assert!(!lease(&*store, d.id, "b", 6, 36).await);
    let answer = reply(d.id, "Hello!", asked.id);
    let done = store
        .complete_reply(
            &ReplyCompletion {
                answered: &[asked.id],
                reply: &answer,
                intimacy: 0,
                lease_owner: Some("a"),
            },
            at(7),
        )
        .await
        .expect("complete");
    assert!(done.reply_wanted, "the reply did not report the request");

    // A release by someone who does not hold the lease reports nothing.
    assert!(lease(&*store, d.id, "b", 8, 38).await);
    assert!(!lease(&*store, d.id, "a", 9, 39).await);
    assert!(!store.release_reply(d.id, "a").await.expect("release"));
}
