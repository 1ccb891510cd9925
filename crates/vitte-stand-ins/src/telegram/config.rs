//! How a Telegram stand-in behaves: which bot it is, its limits and timing.

use std::sync::Arc;
use std::time::Duration;

use vitte_domain::{Clock, SystemClock};

/// Settings of one Telegram stand-in. [`Config::default`] is a bot with
/// Telegram's real limits and no artificial latency.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bot token clients must put in `/bot{token}/...`; its numeric part
    /// before the colon is the bot's user id, as with real tokens.
    pub token: String,
    /// The bot's `@username` (without `@`), returned by `getMe`.
    pub bot_username: String,
    /// The bot's display name, returned by `getMe` and in `from` of its messages.
    pub bot_first_name: String,
    /// Flood limits; [`RateLimits::disabled`] turns them off for load tests of
    /// our own side.
    pub rate_limits: RateLimits,
    /// Delay added to every Bot API call, to imitate network distance.
    pub call_latency: Duration,
    /// Webhook delivery behaviour.
    pub webhook: WebhookSettings,
    /// Real Telegram answers "chat not found" for a chat that never talked to
    /// the bot; a demo restarted over an old database may prefer to accept
    /// such chats as fresh private chats.
    pub accept_unknown_chats: bool,
    /// Whether `sendPhoto`/`sendVoice` with an HTTP URL download it (as
    /// Telegram does). When off, the URL is accepted without fetching and the
    /// stored file is empty.
    pub fetch_file_urls: bool,
    /// Messages kept per chat for the control listing and for edits; older
    /// ones are forgotten so a long load test stays within memory.
    pub max_messages_per_chat: usize,
    /// The `update_id` given to the first update.
    pub first_update_id: i64,
    /// The source of `date` fields and of time for rate limits and query
    /// expiry; inject a manual clock to test limits exactly.
    pub clock: Arc<dyn Clock>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token: "123456789:STAND-IN-TOKEN".into(),
            bot_username: "vitte_stand_in_bot".into(),
            bot_first_name: "Vitte".into(),
            rate_limits: RateLimits::telegram(),
            call_latency: Duration::ZERO,
            webhook: WebhookSettings::default(),
            accept_unknown_chats: false,
            fetch_file_urls: true,
            max_messages_per_chat: 1000,
            first_update_id: 1,
            clock: Arc::new(SystemClock),
        }
    }
}

/// A wrong configuration, found when the stand-in is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The token does not look like `<bot id>:<secret>`.
    #[error("the bot token must look like `<numeric bot id>:<secret>`")]
    InvalidToken,
    /// The username is empty or has characters Telegram does not allow.
    #[error("the bot username must be 1-32 letters, digits or underscores")]
    InvalidUsername,
}

impl Config {
    /// Checks the token and username and returns the bot's user id.
    pub(crate) fn validate(&self) -> Result<i64, ConfigError> {
        let (id, secret) = self
            .token
            .split_once(':')
            .ok_or(ConfigError::InvalidToken)?;
        let id: i64 = id.parse().map_err(|_| ConfigError::InvalidToken)?;
        if id <= 0 || secret.is_empty() || secret.contains('/') {
            return Err(ConfigError::InvalidToken);
        }
        let name_ok = (1..=32).contains(&self.bot_username.len())
            && self
                .bot_username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(ConfigError::InvalidUsername);
        }
        Ok(id)
    }
}

/// A generic cell rate: at most one event per `interval` on average, with up
/// to `burst` events back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The average spacing between events.
    pub interval: Duration,
    /// How many events may arrive at once before spacing is enforced.
    pub burst: u32,
}

impl Rate {
    /// `count` events per `period`, all of which may come at once.
    pub fn per(count: u32, period: Duration) -> Self {
        Self {
            interval: period / count.max(1),
            burst: count.max(1),
        }
    }
}

/// Telegram's flood limits on sending. Each is optional so tests can isolate
/// one; they apply to messages sent (`sendMessage`, `sendPhoto`, `sendVoice`,
/// `sendInvoice`), which is what Telegram documents them for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per private chat: about one message per second, with a short burst.
    pub per_chat: Option<Rate>,
    /// Per group chat (negative chat id): 20 messages per minute.
    pub per_group: Option<Rate>,
    /// Across all chats: about 30 messages per second.
    pub global: Option<Rate>,
}

impl RateLimits {
    /// The limits Telegram documents: ~1/s per chat (burst 3), 20/min per
    /// group, 30/s overall.
    pub fn telegram() -> Self {
        Self {
            per_chat: Some(Rate {
                interval: Duration::from_secs(1),
                burst: 3,
            }),
            per_group: Some(Rate::per(20, Duration::from_secs(60))),
            global: Some(Rate::per(30, Duration::from_secs(1))),
        }
    }

    /// No limits at all.
    pub fn disabled() -> Self {
        Self {
            per_chat: None,
            per_group: None,
            global: None,
        }
    }
}

/// How updates are pushed to a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Wait before the first retry of a failed delivery; doubled each time.
    pub retry_initial: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// How long one delivery may take before it counts as failed.
    pub timeout: Duration,
    /// Real Telegram only accepts `https://` webhooks on ports 443, 80, 88 and
    /// 8443; a local stand-in accepts plain HTTP unless this is set.
    pub require_https: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            require_https: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_username_are_checked() {
        let mut config = Config::default();
        assert_eq!(config.validate(), Ok(123_456_789));
        config.token = "abc".into();
        assert_eq!(config.validate(), Err(ConfigError::InvalidToken));
        config.token = "12:x".into();
        config.bot_username = "bad name".into();
        assert_eq!(config.validate(), Err(ConfigError::InvalidUsername));
    }

    #[test]
    fn rate_per_period() {
        let rate = Rate::per(30, Duration::from_secs(1));
        assert_eq!(rate.burst, 30);
        assert_eq!(rate.interval, Duration::from_nanos(33_333_333));
    }
}
