//! The generic cell rate algorithm, on the injected clock: each limiter keeps
//! one "theoretical arrival time" and an event fits if it is not too far
//! ahead of now.

use chrono::{DateTime, TimeDelta, Utc};

use super::config::Rate;

/// One limiter's state: when the next event would be due if events came
/// exactly at the average rate.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gcra {
    tat: Option<DateTime<Utc>>,
}

impl Gcra {
    /// Whether an event at `now` fits `rate`. `Ok` carries the state to commit
    /// if the event is accepted; `Err` is the wait until it would fit.
    pub(crate) fn check(&self, rate: Rate, now: DateTime<Utc>) -> Result<Gcra, TimeDelta> {
        let interval = TimeDelta::from_std(rate.interval).unwrap_or(TimeDelta::MAX);
        let tolerance = interval * (i32::try_from(rate.burst.max(1)).unwrap_or(i32::MAX) - 1);
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let ahead = tat - now;
        if ahead > tolerance {
            Err(ahead - tolerance)
        } else {
            Ok(Gcra {
                tat: Some(tat + interval),
            })
        }
    }
}

/// Telegram's `retry_after`: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: TimeDelta) -> u64 {
    let millis = wait.num_milliseconds().max(0);
    u64::try_from((millis + 999) / 1000).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allows_a_burst_then_spaces_events() {
        let rate = Rate {
            interval: Duration::from_secs(1),
            burst: 3,
        };
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let mut gcra = Gcra::default();
        for _ in 0..3 {
            gcra = gcra.check(rate, t0).expect("within burst");
        }
        let wait = gcra.check(rate, t0).expect_err("over burst");
        assert_eq!(wait, TimeDelta::seconds(1));
        assert_eq!(retry_after_secs(wait), 1);
        assert!(gcra.check(rate, t0 + TimeDelta::milliseconds(999)).is_err());
        assert!(gcra.check(rate, t0 + TimeDelta::seconds(1)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(TimeDelta::milliseconds(1)), 1);
        assert_eq!(retry_after_secs(TimeDelta::milliseconds(2001)), 3);
    }
}
