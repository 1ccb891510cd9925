//! A stand-in of the Telegram Bot API (<https://core.telegram.org/bots/api>).
//!
//! One bot, everything in memory. The Bot API is served at
//! `/bot{token}/{method}` and files at `/file/bot{token}/{file_path}`, with
//! Telegram's envelope, error texts, flood limits and update delivery (a
//! webhook with retries, or `getUpdates` long polling). The other side of the
//! conversation — users writing, pressing buttons, paying, blocking the bot —
//! is played through the control API under `/control/...` (see [`control`]),
//! or in-process through the same-named methods of [`TelegramStandIn`].
//! `GET /` serves a web page that plays a Telegram client over that control
//! API, so a person can chat with a bot that only knows the Bot API.
//!
//! Not modelled: groups beyond echoing raw updates, inline mode, games,
//! business connections, and method calls returned in a webhook response.

mod config;
pub mod control;
mod demo;
mod error;
mod markup;
mod media;
mod methods;
mod observe;
mod params;
mod rate_limit;
mod state;
mod types;
mod webhook;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError, Rate, RateLimits, WebhookSettings};
pub use control::{
    BlockChange, BotCommand, BotProfile, ButtonPress, CallbackAnswer, CallbackInjected,
    ChatActionSeen, ChatLog, ControlError, Counters, Injected, Paid, PaymentRequest,
    PreCheckoutInjected, PreCheckoutRequest, PreCheckoutStatus, RawInjected, UserMessage,
};
pub use observe::{ActivityKind, BotActivity, UpdateSink};

use crate::server::{Handle, ServeError};
use error::BotApiError;
use params::{MAX_BODY_BYTES, Params};
use state::State;
use types::User;

/// What handlers, the webhook pusher and the control API share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) bot: User,
    state: Mutex<State>,
    /// Bumped whenever the update queue or webhook changes, to wake long
    /// polls and the webhook pusher.
    updates_changed: watch::Sender<u64>,
    pub(crate) closing: CancellationToken,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    /// The state; a panic while holding the lock leaves plain data behind, so
    /// a poisoned lock is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unix seconds on the configured clock, for `date` fields.
    pub(crate) fn now_unix(&self) -> i64 {
        self.config.clock.now().timestamp()
    }

    pub(crate) fn notify_updates(&self) {
        self.updates_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn watch_updates(&self) -> watch::Receiver<u64> {
        self.updates_changed.subscribe()
    }

    /// The bot's numeric id.
    pub(crate) fn bot_id(&self) -> i64 {
        self.bot.id
    }
}

/// A Telegram Bot API stand-in. Cheap to clone; clones share one memory.
#[derive(Debug, Clone)]
pub struct TelegramStandIn {
    shared: Arc<Shared>,
}

impl TelegramStandIn {
    /// Builds a stand-in with empty memory.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let bot_id = config.validate()?;
        let bot = User {
            id: bot_id,
            is_bot: true,
            first_name: config.bot_first_name.clone(),
            last_name: None,
            username: Some(config.bot_username.clone()),
            language_code: None,
        };
        // Without TLS support an https URL simply fails, as an unreachable
        // host would; proxies from the environment must not see local traffic.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let state = State::new(&config);
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                bot,
                state: Mutex::new(state),
                updates_changed: watch::Sender::new(0),
                closing: CancellationToken::new(),
                http,
            }),
        })
    }

    /// The Bot API, file downloads, the control API and the chat page as one
    /// router. Whoever serves it without [`TelegramStandIn::serve`] must also drive
    /// [`TelegramStandIn::deliver_webhooks`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{bot}/{method}", any(bot_api))
            .route("/file/{bot}/{*path}", get(methods::media::download))
            .merge(control::router())
            .merge(demo::router())
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.shared.clone())
    }

    /// Pushes queued updates to the webhook, when one is set, until the
    /// stand-in shuts down.
    pub async fn deliver_webhooks(&self) {
        webhook::run(self.shared.clone()).await;
    }

    /// Serves on `listener` until `shutdown` resolves; then ends long polls,
    /// stops webhook delivery and waits for open requests to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let closing = self.shared.closing.clone();
        let pusher = tokio::spawn(webhook::run(self.shared.clone()));
        let stop = closing.clone();
        let result = axum::serve(crate::server::no_delay(listener), self.router())
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {}
                    () = stop.cancelled() => {}
                }
                stop.cancel();
            })
            .await;
        closing.cancel();
        pusher.await?;
        Ok(result?)
    }

    /// Serves on `listener` in a background task.
    pub fn spawn(self, listener: TcpListener) -> Result<Handle, ServeError> {
        let addr = listener.local_addr()?;
        Ok(Handle::spawn(addr, move |signal| {
            self.serve(listener, signal)
        }))
    }

    /// The bot token clients must use.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// A user writes `text` to the bot (see [`UserMessage`]).
    pub fn send_user_message(&self, message: &UserMessage) -> Result<Injected, ControlError> {
        control::inject_message(&self.shared, message)
    }

    /// A user presses an inline button under one of the bot's messages.
    pub fn press_button(&self, press: &ButtonPress) -> Result<CallbackInjected, ControlError> {
        control::press_button(&self.shared, press)
    }

    /// How the bot answered a callback query.
    pub fn callback_answer(&self, callback_query_id: &str) -> Result<CallbackAnswer, ControlError> {
        control::callback_answer(&self.shared, callback_query_id)
    }

    /// A user confirms an invoice: Telegram asks the bot with a
    /// `pre_checkout_query`.
    pub fn pre_checkout(
        &self,
        request: &PreCheckoutRequest,
    ) -> Result<PreCheckoutInjected, ControlError> {
        control::pre_checkout(&self.shared, request)
    }

    /// How the bot answered a pre-checkout query, and whether it was paid.
    pub fn pre_checkout_status(&self, query_id: &str) -> Result<PreCheckoutStatus, ControlError> {
        control::pre_checkout_status(&self.shared, query_id)
    }

    /// Completes an approved payment with a `successful_payment` message.
    pub fn complete_payment(&self, request: &PaymentRequest) -> Result<Paid, ControlError> {
        control::complete_payment(&self.shared, request)
    }

    /// Marks a user as having blocked (or unblocked) the bot.
    pub fn set_blocked(&self, user_id: i64, blocked: bool) -> Result<BlockChange, ControlError> {
        control::set_blocked(&self.shared, user_id, blocked)
    }

    /// Queues a complete Update object as given.
    pub fn inject_update(&self, update: Value) -> Result<RawInjected, ControlError> {
        control::inject_update(&self.shared, update)
    }

    /// What the bot has shown in a chat since revision `after`, waiting up to
    /// `wait` for something new.
    pub async fn chat_log(
        &self,
        chat_id: i64,
        after: u64,
        include_user: bool,
        wait: Duration,
    ) -> ChatLog {
        control::wait_chat_log(&self.shared, chat_id, after, include_user, wait).await
    }

    /// The bot's name and the command menu a client in `chat_id` with
    /// `language_code` would show.
    pub fn bot_profile(&self, chat_id: Option<i64>, language_code: Option<&str>) -> BotProfile {
        control::bot_profile(&self.shared, chat_id, language_code)
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        control::counters(&self.shared)
    }

    /// Hands every update created from now on to `sink` instead of the
    /// webhook or getUpdates: the caller delivers them (a load generator
    /// that spreads them over several receivers and times each call).
    pub fn deliver_to(&self, sink: UpdateSink) {
        self.shared.lock().sink = Some(observe::Sink(sink));
    }

    /// Reports everything the bot shows in any chat from now on (messages
    /// sent and edited, chat actions), as it happens. One observer at a
    /// time; a new call replaces the previous one.
    pub fn observe(&self) -> tokio::sync::mpsc::UnboundedReceiver<BotActivity> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.shared.lock().observer = Some(observe::Observer(tx));
        rx
    }
}

/// `/bot{token}/{method}`, any HTTP method, any parameter encoding.
#[tracing::instrument(name = "bot_api", skip_all, fields(method = %method))]
async fn bot_api(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return BotApiError::NotFound.into_response();
    };
    if token != shared.config.token {
        return BotApiError::Unauthorized.into_response();
    }
    if !shared.config.call_latency.is_zero() {
        tokio::time::sleep(shared.config.call_latency).await;
    }
    let params = match Params::from_request(request).await {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let result = methods::call(&shared, &method, params).await;
    if let Err(error) = &result {
        tracing::debug!(%error, "bot api call refused");
    }
    match result {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    }
}
