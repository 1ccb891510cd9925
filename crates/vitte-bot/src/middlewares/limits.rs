//! Per-user rate limits. Over the limit, a message never reaches the model;
//! the person is told once when they can write again, not once per dropped
//! message. A limiter that cannot be reached lets messages through (the
//! spend caps still bound the cost) rather than silence every user.

use std::time::Duration;

use vitte_domain::model::User;
use vitte_domain::ports::{Quota, RateDecision};

use crate::context::BotContext;

/// How often a limited user is told to slow down, at most.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// What the limiter says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// Refused; tell the person (this is the first refusal in a while).
    Tell(Duration),
    /// Refused; they were already told.
    Silent,
}

async fn check(ctx: &BotContext, key: &str, quotas: &[Quota], user: &User) -> Verdict {
    if quotas.is_empty() {
        return Verdict::Allowed;
    }
    let now = ctx.clock.now();
    match ctx.limiter.acquire(key, quotas, now).await {
        Ok(RateDecision::Allowed) => Verdict::Allowed,
        Ok(RateDecision::Limited { retry_after }) => {
            // The notice itself is limited, to one a minute: a fixed quota,
            // since quotas with different periods count separately.
            let notice = Quota {
                count: 1,
                period: NOTICE_EVERY,
            };
            let told = format!("told:{key}");
            match ctx.limiter.acquire(&told, &[notice], now).await {
                Ok(RateDecision::Allowed) => Verdict::Tell(retry_after),
                _ => Verdict::Silent,
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, user = user.id.0, "rate limiter unavailable; letting the message through");
            Verdict::Allowed
        }
    }
}

/// Checks a chat message against the user's plan.
pub async fn message(ctx: &BotContext, user: &User, subscribed: bool) -> Verdict {
    let quotas = if subscribed {
        &ctx.quotas.premium
    } else {
        &ctx.quotas.free
    };
    check(ctx, &format!("msg:{}", user.telegram_id), quotas, user).await
}

/// Checks a button press.
pub async fn button(ctx: &BotContext, user: &User) -> Verdict {
    check(
        ctx,
        &format!("btn:{}", user.telegram_id),
        &ctx.quotas.buttons,
        user,
    )
    .await
}

/// "in 42 s", "in 3 min": how long to wait, for people.
pub fn human_wait(wait: Duration) -> String {
    let secs = wait.as_secs().max(1);
    if secs < 90 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_naturally() {
        assert_eq!(human_wait(Duration::from_millis(300)), "1 s");
        assert_eq!(human_wait(Duration::from_secs(6)), "6 s");
        assert_eq!(human_wait(Duration::from_secs(200)), "4 min");
    }
}
