//! Cases about the token usage that spend caps are computed from.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use vitte_domain::ids::{DialogId, UserId};
use vitte_domain::model::{MessageState, ModelUsage, NewMessage, Role, TokenUsage};
use vitte_domain::ports::Store;

use crate::fixtures::{at, dialog, persona, plain, t0, user, user_message};

/// Stores user message `update` and a reply to it by `model` at `when`.
async fn exchange(
    store: &dyn Store,
    d: DialogId,
    update: i64,
    model: &str,
    tokens: (i32, i32),
    when: DateTime<Utc>,
) {
    let asked = store
        .append_message(&user_message(d, "hello", update), when)
        .await
        .expect("append");
    let reply = NewMessage {
        dialog_id: d,
        role: Role::Assistant,
        text: "hi".to_owned(),
        state: MessageState::Sent,
        telegram_message_id: None,
        update_id: None,
        reply_to: Some(asked.id),
        usage: Some(TokenUsage {
            model: model.to_owned(),
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
        }),
    };
    store
        .complete_reply(&plain(&[asked.id], &reply), when)
        .await
        .map(|c| c.message)
        .expect("reply");
}

fn usage(model: &str, prompt_tokens: i64, completion_tokens: i64) -> ModelUsage {
    ModelUsage {
        model: model.to_owned(),
        prompt_tokens,
        completion_tokens,
    }
}

async fn used(store: &dyn Store, user: Option<UserId>, since: i64) -> Vec<ModelUsage> {
    store.usage_since(user, at(since)).await.expect("usage")
}

/// Without replies carrying usage, nothing was spent: user messages and
/// greetings (assistant messages without a model) cost nothing.
pub async fn no_usage_is_empty(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    assert_eq!(used(&*store, Some(d.user_id), 0).await, []);
    assert_eq!(used(&*store, None, 0).await, []);
    store
        .append_message(&user_message(d.id, "hi", 1), at(1))
        .await
        .expect("append");
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
    store
        .append_message(&greeting, at(2))
        .await
        .expect("greeting");
    assert_eq!(used(&*store, Some(d.user_id), 0).await, []);
    assert_eq!(used(&*store, None, 0).await, []);
    // A person with no dialogs at all.
    let stranger = user(&*store, 2).await;
    assert_eq!(used(&*store, Some(stranger.id), 0).await, []);
}

/// Usage is summed per model, ordered by model; per user across all their
/// dialogs (a reset one too), or for everyone.
pub async fn usage_sums_per_user_and_globally_by_model(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    let anna = d.user_id;
    let zoe = persona(&*store, "Zoe").await;
    let other = store.open_dialog(anna, zoe.id, t0()).await.expect("open");
    exchange(&*store, d.id, 1, "b/model", (100, 10), at(1)).await;
    exchange(&*store, d.id, 2, "a/model", (7, 3), at(2)).await;
    exchange(&*store, other.id, 3, "b/model", (50, 5), at(3)).await;
    // Reset: the old dialog is inactive but its replies were still paid for.
    store
        .reset_dialog(anna, d.persona_id, at(4))
        .await
        .expect("reset");

    let bob = user(&*store, 2).await;
    let bobs = store
        .open_dialog(bob.id, d.persona_id, t0())
        .await
        .expect("open");
    exchange(&*store, bobs.id, 4, "b/model", (1000, 200), at(5)).await;
    exchange(&*store, bobs.id, 5, "c/model", (1, 1), at(6)).await;

    assert_eq!(
        used(&*store, Some(anna), 0).await,
        [usage("a/model", 7, 3), usage("b/model", 150, 15)]
    );
    assert_eq!(
        used(&*store, Some(bob.id), 0).await,
        [usage("b/model", 1000, 200), usage("c/model", 1, 1)]
    );
    assert_eq!(
        used(&*store, None, 0).await,
        [
            usage("a/model", 7, 3),
            usage("b/model", 1150, 215),
            usage("c/model", 1, 1)
        ]
    );

    // A reply superseded by /retry still counts.
    let reopened = store.reopen_last_exchange(bobs.id).await.expect("reopen");
    assert_eq!(reopened.len(), 1);
    assert_eq!(
        used(&*store, Some(bob.id), 0).await,
        [usage("b/model", 1000, 200), usage("c/model", 1, 1)]
    );
}

/// Replies created exactly at `since` count; earlier ones do not.
pub async fn usage_counts_from_since_on(store: Arc<dyn Store>) {
    let d = dialog(&*store).await;
    exchange(&*store, d.id, 1, "m", (10, 1), at(10)).await;
    exchange(&*store, d.id, 2, "m", (20, 2), at(20)).await;
    for user in [Some(d.user_id), None] {
        assert_eq!(used(&*store, user, 10).await, [usage("m", 30, 3)]);
        assert_eq!(used(&*store, user, 11).await, [usage("m", 20, 2)]);
        assert_eq!(used(&*store, user, 20).await, [usage("m", 20, 2)]);
        assert_eq!(used(&*store, user, 21).await, []);
    }
}
