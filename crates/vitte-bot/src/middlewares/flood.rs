//! Flood protection. Every update a person sends, messages and button presses
//! together, counts against the flood quota before any plan limit; the update
//! that crosses it pauses them for the configured time. While paused, their
//! updates are acknowledged and dropped: no handler runs, nothing reaches the
//! model, and only the update that started the pause is answered (with when
//! they can write again).
//!
//! The pause lives in the rate limiter, so every bot process sharing a Redis
//! limiter honours it. It is one event under the quota "1 per pause" on the
//! key `flood-pause:<telegram id>`: while it stands, a second event under that
//! quota is refused until the pause ends, and only one process can start it.
//!
//! Reading the pause must not start one, but the port only has `acquire`,
//! which counts when it admits. So the read asks as of one pause length ago
//! (`pause_left`): a pause ending after `now` refuses that early event with
//! a wait longer than a pause, and the excess is what is left of it; with no
//! pause standing, the early event is admitted and recorded as a pause that
//! ended at `now`, which holds nothing back. Reads thus never block anyone.
//! (Across processes whose clocks differ by a few milliseconds, such a record
//! can refuse a pause for that long; the update that crossed the quota is
//! dropped all the same, and the next one starts the pause.)
//!
//! A limiter that cannot be reached lets updates through, as the plan limits
//! do: the spend caps still bound the cost.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use vitte_domain::ids::TelegramUserId;
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};

use crate::context::FloodLimits;
use crate::i18n::{Lang, Texts};
use crate::middlewares::limits::human_wait;

/// Counts the pauses started, across the process.
pub const PAUSES_METRIC: &str = "vitte_flood_blocks_total";

/// What flood protection says about one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// Not flooding: go on to the handlers (and the plan limits).
    Clear,
    /// This update crossed the quota and started a pause of this length:
    /// tell the person, once, and drop the update.
    Paused(Duration),
    /// Paused already, or over the quota with pauses off: drop the update
    /// without a word.
    Dropped,
}

/// Describes the metric for the exporter; call once the recorder is in place.
pub fn describe_metrics() {
    metrics::describe_counter!(
        PAUSES_METRIC,
        "Users paused for flooding (too many updates in a short time)."
    );
}

/// Counts one update from `user` at `now` and says what to do with it.
pub async fn check(
    limiter: &dyn RateLimiter,
    limits: &FloodLimits,
    user: TelegramUserId,
    now: DateTime<Utc>,
) -> Flood {
    if limits.quotas.is_empty() {
        return Flood::Clear;
    }
    let pause_key = format!("flood-pause:{user}");
    if !limits.pause.is_zero() {
        match pause_left(limiter, &pause_key, limits.pause, now).await {
            Ok(Some(_)) => return Flood::Dropped,
            Ok(None) => {}
            Err(e) => {
                // The counting below would only wait for the same timeout.
                tracing::warn!(error = %e, user = user.get(), "rate limiter unavailable; flood check skipped");
                return Flood::Clear;
            }
        }
    }
    match limiter
        .acquire(&format!("flood:{user}"), &limits.quotas, now)
        .await
    {
        Ok(RateDecision::Allowed) => Flood::Clear,
        Ok(RateDecision::Limited { .. }) if limits.pause.is_zero() => Flood::Dropped,
        Ok(RateDecision::Limited { .. }) => start_pause(limiter, &pause_key, limits.pause, now)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, user = user.get(), "rate limiter unavailable; flooding user not paused");
                Flood::Dropped
            }),
        Err(e) => {
            tracing::warn!(error = %e, user = user.get(), "rate limiter unavailable; flood check skipped");
            Flood::Clear
        }
    }
}

/// The notice for someone paused for `pause` from `now`: how long, and until
/// when (with the date for pauses of a day or more).
pub fn notice(texts: &Texts, lang: Lang, pause: Duration, now: DateTime<Utc>) -> String {
    let until = TimeDelta::from_std(pause)
        .ok()
        .and_then(|pause| now.checked_add_signed(pause))
        .map_or_else(String::new, |until| {
            let format = if pause < Duration::from_secs(24 * 60 * 60) {
                "%H:%M"
            } else {
                "%Y-%m-%d %H:%M"
            };
            until.format(format).to_string()
        });
    texts.get(
        lang,
        "limit.flood",
        &[("wait", &human_wait(pause)), ("until", &until)],
    )
}

/// The quota a pause is an event of.
fn pause_quota(pause: Duration) -> Quota {
    Quota {
        count: 1,
        period: pause,
    }
}

/// Starts a pause at `now`, unless another update (in any process) started
/// one a moment ago.
async fn start_pause(
    limiter: &dyn RateLimiter,
    key: &str,
    pause: Duration,
    now: DateTime<Utc>,
) -> Result<Flood, LimitError> {
    Ok(
        match limiter.acquire(key, &[pause_quota(pause)], now).await? {
            RateDecision::Allowed => {
                metrics::counter!(PAUSES_METRIC).increment(1);
                Flood::Paused(pause)
            }
            RateDecision::Limited { .. } => Flood::Dropped,
        },
    )
}

/// How much of the pause under `key` is left at `now`; `None` when there is
/// none. Never starts one (see the module documentation for why asking as of
/// one pause ago reads without counting).
async fn pause_left(
    limiter: &dyn RateLimiter,
    key: &str,
    pause: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, LimitError> {
    let Some(asked_at) = TimeDelta::from_std(pause)
        .ok()
        .and_then(|pause| now.checked_sub_signed(pause))
    else {
        // A pause longer than the calendar: none could have been started.
        return Ok(None);
    };
    Ok(
        match limiter
            .acquire(key, &[pause_quota(pause)], asked_at)
            .await?
        {
            RateDecision::Allowed => None,
            RateDecision::Limited { retry_after } => retry_after
                .checked_sub(pause)
                .filter(|left| !left.is_zero()),
        },
    )
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use vitte_limits::MemoryLimiter;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn limits(count: u32, pause: Duration) -> FloodLimits {
        FloodLimits {
            quotas: vec![Quota {
                count,
                period: MINUTE,
            }],
            pause,
        }
    }

    fn user(id: i64) -> TelegramUserId {
        TelegramUserId::try_from(id).expect("a valid id")
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(secs)
    }

    #[tokio::test]
    async fn crossing_the_quota_pauses_until_the_pause_ends() {
        let limiter = MemoryLimiter::new();
        let limits = limits(3, Duration::from_secs(600));
        let u = user(7);
        for _ in 0..3 {
            assert_eq!(check(&limiter, &limits, u, t0()).await, Flood::Clear);
        }
        assert_eq!(
            check(&limiter, &limits, u, t0()).await,
            Flood::Paused(Duration::from_secs(600))
        );
        // The flood quota refills after a minute; the pause still holds,
        // and is never started (nor announced) a second time.
        for secs in [0, 1, 60, 300, 599] {
            assert_eq!(check(&limiter, &limits, u, at(secs)).await, Flood::Dropped);
        }
        assert_eq!(check(&limiter, &limits, u, at(600)).await, Flood::Clear);
        // Someone else was never paused.
        assert_eq!(check(&limiter, &limits, user(8), at(1)).await, Flood::Clear);
    }

    #[tokio::test]
    async fn reading_the_pause_never_pauses_anyone() {
        // One update every 30 s for two hours: under the quota all along,
        // though each one reads the pause key.
        let limiter = MemoryLimiter::new();
        let limits = limits(3, Duration::from_secs(600));
        for step in 0..240 {
            assert_eq!(
                check(&limiter, &limits, user(7), at(step * 30)).await,
                Flood::Clear,
                "update {step}"
            );
        }
        // A pause read right before one starts does not stand in its way.
        for _ in 0..3 {
            assert_eq!(check(&limiter, &limits, user(9), t0()).await, Flood::Clear);
        }
        assert!(matches!(
            check(&limiter, &limits, user(9), t0()).await,
            Flood::Paused(_)
        ));
    }

    #[tokio::test]
    async fn a_second_flood_after_the_pause_pauses_again() {
        let limiter = MemoryLimiter::new();
        let limits = limits(2, Duration::from_secs(120));
        let u = user(7);
        let mut paused = Vec::new();
        for start in [0, 120] {
            for _ in 0..3 {
                if let Flood::Paused(_) = check(&limiter, &limits, u, at(start)).await {
                    paused.push(start);
                }
            }
        }
        assert_eq!(paused, [0, 120]);
    }

    #[tokio::test]
    async fn without_quotas_nothing_is_counted() {
        let limiter = MemoryLimiter::new();
        let off = FloodLimits {
            quotas: Vec::new(),
            pause: Duration::from_secs(600),
        };
        for _ in 0..100 {
            assert_eq!(check(&limiter, &off, user(7), t0()).await, Flood::Clear);
        }
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[tokio::test]
    async fn a_zero_pause_only_drops_what_is_over_the_quota() {
        let limiter = MemoryLimiter::new();
        let limits = limits(2, Duration::ZERO);
        let u = user(7);
        assert_eq!(check(&limiter, &limits, u, t0()).await, Flood::Clear);
        assert_eq!(check(&limiter, &limits, u, t0()).await, Flood::Clear);
        assert_eq!(check(&limiter, &limits, u, t0()).await, Flood::Dropped);
        // One slot comes back every 30 s.
        assert_eq!(check(&limiter, &limits, u, at(30)).await, Flood::Clear);
    }

    /// A limiter whose engine is down.
    struct Down;

    #[async_trait]
    impl RateLimiter for Down {
        async fn acquire(
            &self,
            _: &str,
            _: &[Quota],
            _: DateTime<Utc>,
        ) -> Result<RateDecision, LimitError> {
            Err(LimitError("connection refused".into()))
        }
    }

    #[tokio::test]
    async fn an_unreachable_limiter_lets_updates_through() {
        let limits = limits(1, Duration::from_secs(600));
        for _ in 0..5 {
            assert_eq!(check(&Down, &limits, user(7), t0()).await, Flood::Clear);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_pause_is_counted_once() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // The test runs on this one thread, so the recorder sees every call.
        let _local = metrics::set_default_local_recorder(&recorder);
        let limiter = MemoryLimiter::new();
        let limits = limits(1, Duration::from_secs(600));
        for u in [1, 2] {
            for _ in 0..10 {
                check(&limiter, &limits, user(u), t0()).await;
            }
        }
        let rendered = handle.render();
        assert!(
            rendered.contains(&format!("{PAUSES_METRIC} 2")),
            "{rendered}"
        );
    }

    #[test]
    fn the_notice_says_how_long_and_until_when() {
        let texts = Texts::load().expect("locales parse");
        let at_noon = DateTime::from_timestamp(1_735_732_800, 0).expect("a valid instant");
        let en = notice(&texts, Lang::En, Duration::from_secs(600), at_noon);
        assert!(en.contains("10 min") && en.contains("12:10 UTC"), "{en}");
        let ru = notice(&texts, Lang::Ru, Duration::from_secs(600), at_noon);
        assert!(
            ru.contains("приостановлен") && ru.contains("12:10 UTC"),
            "{ru}"
        );
        let long = notice(&texts, Lang::En, Duration::from_secs(2 * 86_400), at_noon);
        assert!(long.contains("2025-01-03 12:00 UTC"), "{long}");
    }
}
