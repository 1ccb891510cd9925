//! [`LlmPolicy`]: every time limit, retry and breaker setting of the
//! service in one place, and the backoff schedule built from it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// How patient the service is with a model, and when it gives up on one.
///
/// The defaults aim at a chat reply: the person is watching a "typing…"
/// indicator, so a stuck model is abandoned within seconds and the whole
/// reply gives up after two minutes (the message stays pending and recovery
/// or `/retry` tries again later).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmPolicy {
    /// Longest wait from sending the request to the first piece of text
    /// (connecting, queueing at the provider, reading the prompt). Default
    /// 20 s: hosted models usually start within 1–5 s; a long prompt on a
    /// busy free model can take 10+. A server that does not stream delivers
    /// the whole reply at once, so this also bounds its generation.
    pub first_token_timeout: Duration,
    /// Longest pause between two pieces of text once the reply has started.
    /// Default 15 s: a streaming model sends something every few hundred
    /// milliseconds; 15 s of silence is a stalled stream.
    pub idle_timeout: Duration,
    /// Longest single attempt, start to finish. Default 60 s: a few hundred
    /// tokens of chat reply take 5–20 s even on slow models.
    pub attempt_timeout: Duration,
    /// Overall budget of one reply, over every attempt, model and pause; no
    /// attempt runs past it. Default 120 s.
    pub reply_deadline: Duration,
    /// Retries of one model after a transient failure before moving to the
    /// next model. Default 2 (three attempts per model).
    pub retries_per_model: u32,
    /// Ceiling of the first backoff pause; each retry doubles it. Default
    /// 500 ms.
    pub backoff_initial: Duration,
    /// Largest backoff ceiling. Default 8 s. The actual pause is drawn
    /// uniformly below the ceiling ("full jitter"), so many dialogs hit by
    /// the same outage do not retry in lockstep.
    pub backoff_max: Duration,
    /// Longest `Retry-After` the service waits out on the same model. A
    /// longer one moves to the next model at once instead. Default 20 s.
    pub max_retry_after: Duration,
    /// Consecutive failures of a model (over all replies) that open its
    /// circuit breaker. Default 5.
    pub breaker_threshold: u32,
    /// How long an open breaker skips its model before one probe request is
    /// let through. Default 30 s.
    pub breaker_cooldown: Duration,
}

impl Default for LlmPolicy {
    fn default() -> Self {
        Self {
            first_token_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(60),
            reply_deadline: Duration::from_secs(120),
            retries_per_model: 2,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(20),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// The pauses between attempts on one model.
///
/// The exponential schedule (doubling, capped, a limited number of times)
/// comes from `backon`. Its retry driver does not fit here: one reply moves
/// across models, consults a breaker before each attempt, streams events to
/// a caller-owned callback and may wait out a `Retry-After`; and its own
/// jitter adds up to one extra delay on top, where full jitter draws below
/// the ceiling. So the loop lives in the service and the jitter here, from
/// an injected (seedable) generator.
#[derive(Debug)]
pub(crate) struct Backoff {
    schedule: ExponentialBackoff,
}

impl Backoff {
    pub(crate) fn new(policy: &LlmPolicy) -> Self {
        let schedule = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(policy.backoff_initial)
            .with_max_delay(policy.backoff_max)
            .with_max_times(usize::try_from(policy.retries_per_model).unwrap_or(usize::MAX))
            .build();
        Self { schedule }
    }

    /// The pause before the next retry, or `None` when the retries are used
    /// up. A `Retry-After` is a floor: never retry sooner than asked.
    pub(crate) fn next_delay(
        &mut self,
        rng: &mut fastrand::Rng,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let ceiling = self.schedule.next()?;
        let jittered = ceiling.mul_f64(rng.f64());
        Some(retry_after.map_or(jittered, |floor| floor.max(jittered)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LlmPolicy {
        LlmPolicy {
            retries_per_model: 5,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..LlmPolicy::default()
        }
    }

    #[test]
    fn pauses_stay_below_a_doubling_capped_ceiling_then_stop() {
        let ceilings = [100, 200, 400, 500, 500].map(Duration::from_millis);
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut backoff = Backoff::new(&policy());
            for ceiling in ceilings {
                let delay = backoff.next_delay(&mut rng, None).expect("a retry is left");
                assert!(delay <= ceiling, "seed {seed}: {delay:?} > {ceiling:?}");
            }
            assert_eq!(backoff.next_delay(&mut rng, None), None);
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range_and_is_reproducible() {
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            Backoff::new(&policy())
                .next_delay(&mut rng, None)
                .expect("a retry is left")
        };
        assert_eq!(draw(7), draw(7));
        let delays: Vec<Duration> = (0..500).map(draw).collect();
        let below_a_quarter = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(25))
            .count();
        let above_three_quarters = delays
            .iter()
            .filter(|d| **d > Duration::from_millis(75))
            .count();
        // Uniform on [0, 100 ms): about 125 of 500 in each quarter.
        assert!((80..170).contains(&below_a_quarter), "{below_a_quarter}");
        assert!(
            (80..170).contains(&above_three_quarters),
            "{above_three_quarters}"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut backoff = Backoff::new(&policy());
        let floor = Duration::from_secs(3);
        assert_eq!(backoff.next_delay(&mut rng, Some(floor)), Some(floor));
    }

    #[test]
    fn no_retries_means_no_pause() {
        let mut rng = fastrand::Rng::with_seed(1);
        let policy = LlmPolicy {
            retries_per_model: 0,
            ..LlmPolicy::default()
        };
        assert_eq!(Backoff::new(&policy).next_delay(&mut rng, None), None);
    }
}
