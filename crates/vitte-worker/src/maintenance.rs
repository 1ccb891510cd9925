//! Housekeeping sweeps. The inbox of Telegram updates keeps handled updates
//! for a week so redeliveries are still recognised, then forgets them so the
//! table stays small.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use vitte_domain::Clock;
use vitte_domain::ports::UpdateInbox;
use vitte_runtime::Shutdown;

/// Prunes handled updates older than `keep`, every `every`.
pub struct InboxPruning {
    inbox: Arc<dyn UpdateInbox>,
    clock: Arc<dyn Clock>,
    /// Telegram redelivers for at most 24 hours; a week leaves ample margin.
    pub keep: TimeDelta,
    /// Pruning is cheap; hourly keeps each delete small.
    pub every: Duration,
}

impl InboxPruning {
    /// The sweep with its default schedule.
    pub fn new(inbox: Arc<dyn UpdateInbox>, clock: Arc<dyn Clock>) -> Self {
        Self {
            inbox,
            clock,
            keep: TimeDelta::days(7),
            every: Duration::from_secs(3600),
        }
    }

    /// Runs until `shutdown` trips; the first sweep happens at once.
    pub async fn run(self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                _ = tick.tick() => self.sweep_once().await,
            }
        }
    }

    async fn sweep_once(&self) {
        let before = self.clock.now() - self.keep;
        match self.inbox.prune_updates(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "handled updates pruned"),
            Err(e) => tracing::warn!(error = %e, "update pruning failed; will retry next sweep"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::json;
    use vitte_domain::ManualClock;
    use vitte_domain::ids::UpdateId;
    use vitte_domain::model::UpdateState;

    use super::*;

    #[tokio::test]
    async fn a_sweep_forgets_only_old_handled_updates() {
        let store = vitte_store_sqlite::testing::fresh_store().await;
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let clock = Arc::new(ManualClock::new(start));
        let (old, pending) = (
            UpdateId::try_from(1).expect("id"),
            UpdateId::try_from(2).expect("id"),
        );
        store
            .record_update(old, &json!({}), start)
            .await
            .expect("record");
        store
            .record_update(pending, &json!({}), start)
            .await
            .expect("record");
        store.claim_updates(1, start, start).await.expect("claim");
        store
            .finish_update(old, UpdateState::Done, start)
            .await
            .expect("finish");
        let sweep = InboxPruning::new(store.clone(), clock.clone());

        sweep.sweep_once().await;
        assert!(
            !store
                .record_update(old, &json!({}), start)
                .await
                .expect("record"),
            "pruned too early"
        );

        clock.advance(TimeDelta::days(8));
        sweep.sweep_once().await;
        assert!(
            store
                .record_update(old, &json!({}), clock.now())
                .await
                .expect("record"),
            "not pruned"
        );
        assert!(
            !store
                .record_update(pending, &json!({}), clock.now())
                .await
                .expect("record"),
            "pending update pruned"
        );
    }

    #[tokio::test]
    async fn the_loop_stops_when_shutdown_trips() {
        let store = vitte_store_sqlite::testing::fresh_store().await;
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(0, 0).expect("time"),
        ));
        let shutdown = Shutdown::new();
        let task = tokio::spawn(InboxPruning::new(store, clock).run(shutdown.clone()));
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("sweep stopped on shutdown")
            .expect("no panic");
    }
}
