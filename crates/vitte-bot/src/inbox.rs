//! The inbox processor: claims stored updates (a lease, so a crashed process
//! leaves them to others), hands each to its handler, and marks it done.
//! The store hands out only each sender's oldest pending update, so one
//! person's updates run in order even across processes; different people's
//! run concurrently, and a slow one holds back nobody else.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::task::JoinSet;
use vitte_domain::model::{InboundUpdate, UpdateState};
use vitte_runtime::Shutdown;

use crate::context::BotContext;
use crate::handlers;

/// Most updates handled at once by this process.
const MAX_IN_FLIGHT: usize = 256;
/// How long a claimed update is ours.
const LEASE: TimeDelta = TimeDelta::seconds(60);
/// A handler still running after this long is given up (its update is
/// claimed again when the lease runs out), so it never outlives its lease
/// and races another process for the same update. Handling is quick
/// (replies are generated elsewhere); only long "retry after" waits of
/// Telegram come near it.
const HANDLER_LIMIT: Duration = Duration::from_secs(45);
/// How often to look for updates stored by other processes.
const POLL: Duration = Duration::from_millis(200);
/// Attempts before an update that keeps failing is set aside.
const MAX_ATTEMPTS: i32 = 5;

/// Runs until shutdown; updates in hand are finished first.
pub async fn run(ctx: Arc<BotContext>, shutdown: Shutdown) {
    let mut running = JoinSet::new();
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let room = MAX_IN_FLIGHT.saturating_sub(running.len());
        if room > 0 {
            let now = ctx.clock.now();
            let limit = u32::try_from(room).unwrap_or(u32::MAX);
            match ctx.store.claim_updates(limit, now, now + LEASE).await {
                Ok(batch) => {
                    for update in batch {
                        running.spawn(handle_in_time(ctx.clone(), update));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim updates; retrying"),
            }
        }
        // Claim again when an update arrives, when one in hand is finished
        // (its sender's next update is claimable now), or on the next poll.
        tokio::select! {
            () = shutdown.wait() => break,
            () = ctx.inbox_signal.notified() => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                log_panic(done);
                while let Some(done) = running.try_join_next() {
                    log_panic(done);
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
    while let Some(done) = running.join_next().await {
        log_panic(done);
    }
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        // The update stays pending and is claimed again after its lease.
        tracing::error!(error = %e, "an update handler panicked");
    }
}

async fn handle_in_time(ctx: Arc<BotContext>, update: InboundUpdate) {
    let id = update.update_id;
    if tokio::time::timeout(HANDLER_LIMIT, handle_one(&ctx, update))
        .await
        .is_err()
    {
        tracing::warn!(
            update_id = id.get(),
            "update handler took too long; it will be retried"
        );
    }
}

#[tracing::instrument(name = "update", skip_all, fields(update_id = update.update_id.get()))]
async fn handle_one(ctx: &BotContext, update: InboundUpdate) {
    let outcome = handlers::handle(ctx, update.update_id, &update.payload).await;
    let state = match outcome {
        Ok(handlers::Handled::Finished) => return,
        Ok(handlers::Handled::Open) => UpdateState::Done,
        Err(e) if update.attempts >= MAX_ATTEMPTS => {
            tracing::error!(error = %e, attempts = update.attempts, "update set aside after repeated failures");
            UpdateState::Failed
        }
        Err(e) => {
            // Left pending: claimed again when the lease runs out; the
            // sender's later updates wait for it, so their order holds.
            tracing::warn!(error = %e, attempts = update.attempts, "update failed; will retry");
            return;
        }
    };
    if let Err(e) = ctx
        .store
        .finish_update(update.update_id, state, ctx.clock.now())
        .await
    {
        tracing::warn!(error = %e, "could not mark update finished; it may be handled again");
    }
}
