//! The inbox processor: claims stored updates (a lease, so a crashed process
//! leaves them to others), hands each to its handler, and marks it done.
//! Updates of one user run in order; different users run concurrently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures::future::join_all;
use vitte_domain::model::{InboundUpdate, UpdateState};
use vitte_runtime::Shutdown;

use crate::context::BotContext;
use crate::handlers;

/// Updates claimed per round.
const BATCH: u32 = 64;
/// How long a claimed update is ours; handling is quick (replies are
/// generated elsewhere), so a minute is ample.
const LEASE: TimeDelta = TimeDelta::seconds(60);
/// How often to look for updates stored by other processes.
const POLL: Duration = Duration::from_millis(200);
/// Attempts before an update that keeps failing is set aside.
const MAX_ATTEMPTS: i32 = 5;

/// Runs until shutdown; the update in hand is finished first.
pub async fn run(ctx: Arc<BotContext>, shutdown: Shutdown) {
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let now = ctx.clock.now();
        let batch = match ctx.store.claim_updates(BATCH, now, now + LEASE).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim updates; retrying");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = shutdown.wait() => return,
                () = ctx.inbox_signal.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        process(&ctx, batch).await;
    }
}

/// The key that orders updates: the sender, so one person's updates stay in order.
fn sender(update: &InboundUpdate) -> i64 {
    let p = &update.payload;
    [
        "message",
        "edited_message",
        "callback_query",
        "pre_checkout_query",
    ]
    .iter()
    .find_map(|k| p.get(k)?.get("from")?.get("id")?.as_i64())
    .unwrap_or(0)
}

async fn process(ctx: &Arc<BotContext>, batch: Vec<InboundUpdate>) {
    let mut by_sender: BTreeMap<i64, Vec<InboundUpdate>> = BTreeMap::new();
    for update in batch {
        by_sender.entry(sender(&update)).or_default().push(update);
    }
    join_all(by_sender.into_values().map(|updates| {
        let ctx = ctx.clone();
        async move {
            for update in updates {
                // A failed update is retried when its lease runs out; the
                // user's later updates wait for it, so their order holds.
                if !handle_one(&ctx, update).await {
                    break;
                }
            }
        }
    }))
    .await;
}

#[tracing::instrument(name = "update", skip_all, fields(update_id = update.update_id.get()))]
async fn handle_one(ctx: &BotContext, update: InboundUpdate) -> bool {
    let outcome = handlers::handle(ctx, update.update_id, &update.payload).await;
    let state = match outcome {
        Ok(()) => UpdateState::Done,
        Err(e) if update.attempts >= MAX_ATTEMPTS => {
            tracing::error!(error = %e, attempts = update.attempts, "update set aside after repeated failures");
            UpdateState::Failed
        }
        Err(e) => {
            // Left pending: claimed again when the lease runs out.
            tracing::warn!(error = %e, attempts = update.attempts, "update failed; will retry");
            return false;
        }
    };
    if let Err(e) = ctx
        .store
        .finish_update(update.update_id, state, ctx.clock.now())
        .await
    {
        tracing::warn!(error = %e, "could not mark update finished; it may be handled again");
    }
    true
}
