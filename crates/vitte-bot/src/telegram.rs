//! Outbound Telegram calls. Every send goes through one limiter (about 30
//! messages a second overall by default, `VITTE_TELEGRAM_SEND_RATE`; one a
//! second per chat and twenty a minute per group, as Telegram asks) and honours `retry_after` when Telegram still
//! says "too many requests". The limiter is the shared one when Redis is
//! configured, so the budget holds across every bot process. A user who
//! blocked the bot is reported as such so callers can mark them.

use std::time::Duration;

use teloxide_core::Bot;
use teloxide_core::errors::{ApiError, RequestError};
use teloxide_core::payloads::{EditMessageTextSetters, SendMessageSetters, SendPhotoSetters};
use teloxide_core::prelude::Requester;
use teloxide_core::types::{
    BotCommand, CallbackQueryId, ChatAction, ChatId, InlineKeyboardMarkup, InputFile, MessageId,
    ParseMode,
};
use vitte_domain::Clock;
use vitte_domain::ports::{Quota, RateDecision, RateLimiter};

/// Why a Telegram call did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The person blocked the bot (403); they get nothing until they write again.
    #[error("the user blocked the bot")]
    Blocked,
    /// Editing with the same text; harmless.
    #[error("message not modified")]
    NotModified,
    /// Telegram refused the request for good (bad markup, chat not found...).
    #[error("Telegram refused the request: {0}")]
    Refused(String),
    /// Network trouble or Telegram errors that persisted through retries.
    #[error("Telegram unreachable: {0}")]
    Unavailable(String),
}

/// How many times a "retry after" answer is waited out before giving up.
const MAX_RETRY_AFTER: u32 = 5;

/// About one message a second in a private chat, with a short burst.
const PER_CHAT: Quota = Quota {
    count: 3,
    period: Duration::from_secs(3),
};
/// Twenty messages a minute in a group.
const PER_GROUP: Quota = Quota {
    count: 20,
    period: Duration::from_secs(60),
};

/// The bot's outbound side.
pub struct Telegram {
    bot: Bot,
    limiter: std::sync::Arc<dyn RateLimiter>,
    clock: std::sync::Arc<dyn Clock>,
    /// Sends a second across all chats (Telegram's broadcast limit).
    global: Quota,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bot holds the token: never print it.
        f.debug_struct("Telegram").finish_non_exhaustive()
    }
}

impl Telegram {
    /// A client for the bot with `token`, calling `{api_url}/bot{token}/{method}`,
    /// with its send budget kept in `limiter` and at most `per_second`
    /// sends a second overall.
    pub fn new(
        token: &str,
        api_url: url::Url,
        limiter: std::sync::Arc<dyn RateLimiter>,
        clock: std::sync::Arc<dyn Clock>,
        per_second: u32,
    ) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(70))
            .build()
            .unwrap_or_default();
        let bot = Bot::with_client(token, client).set_api_url(api_url);
        Self {
            bot,
            limiter,
            clock,
            global: Quota {
                count: per_second.max(1),
                period: Duration::from_secs(1),
            },
        }
    }

    /// Waits until the budget allows one more message to `chat`. A limiter
    /// that cannot be reached does not hold sends back: Telegram's own
    /// "retry after" answers still pace them.
    async fn budget(&self, chat: i64) {
        let (key, quota) = if chat < 0 {
            (format!("tg:group:{chat}"), PER_GROUP)
        } else {
            (format!("tg:chat:{chat}"), PER_CHAT)
        };
        for (key, quota) in [(key, quota), ("tg:global".to_owned(), self.global)] {
            loop {
                match self.limiter.acquire(&key, &[quota], self.clock.now()).await {
                    Ok(RateDecision::Allowed) => break,
                    Ok(RateDecision::Limited { retry_after }) => {
                        tokio::time::sleep(retry_after).await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "send budget unavailable; sending anyway");
                        break;
                    }
                }
            }
        }
    }

    /// The underlying Bot API client, for calls that are not sends (getUpdates, setWebhook).
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    async fn call<T, F, Fut>(&self, chat: Option<i64>, f: F) -> Result<T, SendError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut waits = 0;
        loop {
            if let Some(chat) = chat {
                self.budget(chat).await;
            }
            match f().await {
                Ok(v) => return Ok(v),
                Err(RequestError::RetryAfter(after)) if waits < MAX_RETRY_AFTER => {
                    waits += 1;
                    let after = after.duration().min(Duration::from_secs(60));
                    tracing::warn!(?after, chat, "Telegram asked to slow down");
                    tokio::time::sleep(after).await;
                }
                Err(RequestError::Api(ApiError::BotBlocked | ApiError::UserDeactivated)) => {
                    return Err(SendError::Blocked);
                }
                Err(RequestError::Api(ApiError::MessageNotModified)) => {
                    return Err(SendError::NotModified);
                }
                Err(RequestError::Api(e)) => return Err(SendError::Refused(e.to_string())),
                Err(e) => return Err(SendError::Unavailable(e.to_string())),
            }
        }
    }

    /// Sends an HTML message, optionally with buttons; returns its message id.
    pub async fn send_html(
        &self,
        chat: i64,
        html: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<i32, SendError> {
        let message = self
            .call(Some(chat), || {
                let mut req = self
                    .bot
                    .send_message(ChatId(chat), html)
                    .parse_mode(ParseMode::Html);
                if let Some(k) = &keyboard {
                    req = req.reply_markup(k.clone());
                }
                async move { req.await }
            })
            .await?;
        Ok(message.id.0)
    }

    /// Replaces the text of a message the bot sent.
    pub async fn edit_html(&self, chat: i64, message: i32, html: &str) -> Result<(), SendError> {
        self.call(Some(chat), || {
            let req = self
                .bot
                .edit_message_text(ChatId(chat), MessageId(message), html)
                .parse_mode(ParseMode::Html);
            async move { req.await }
        })
        .await
        .map(|_| ())
    }

    /// Shows "typing…" in the chat (for about five seconds, or until a message is sent).
    pub async fn typing(&self, chat: i64) -> Result<(), SendError> {
        // Chat actions are not messages: they do not count against the send budget.
        self.call(None, || {
            let req = self.bot.send_chat_action(ChatId(chat), ChatAction::Typing);
            async move { req.await }
        })
        .await
        .map(|_| ())
    }

    /// Answers a button press so the client stops its spinner.
    pub async fn answer_callback(&self, id: &str) -> Result<(), SendError> {
        self.call(None, || {
            let req = self
                .bot
                .answer_callback_query(CallbackQueryId(id.to_owned()));
            async move { req.await }
        })
        .await
        .map(|_| ())
    }

    /// Publishes the command menu for clients in `language` (`None`: everyone else).
    pub async fn set_commands(
        &self,
        commands: Vec<(&str, String)>,
        language: Option<&str>,
    ) -> Result<(), SendError> {
        use teloxide_core::payloads::SetMyCommandsSetters;
        let commands: Vec<BotCommand> = commands
            .into_iter()
            .map(|(name, description)| BotCommand::new(name, description))
            .collect();
        self.call(None, || {
            let mut req = self.bot.set_my_commands(commands.clone());
            if let Some(language) = language {
                req = req.language_code(language);
            }
            async move { req.await }
        })
        .await
        .map(|_| ())
    }

    /// Sends a picture with an HTML caption and optional buttons.
    pub async fn send_photo(
        &self,
        chat: i64,
        bytes: Vec<u8>,
        caption: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<i32, SendError> {
        let message = self
            .call(Some(chat), || {
                let mut req = self
                    .bot
                    .send_photo(
                        ChatId(chat),
                        InputFile::memory(bytes.clone()).file_name("persona.png"),
                    )
                    .caption(caption)
                    .parse_mode(ParseMode::Html);
                if let Some(k) = &keyboard {
                    req = req.reply_markup(k.clone());
                }
                async move { req.await }
            })
            .await?;
        Ok(message.id.0)
    }
}
