//! Routing of a stored update to its handler. Handlers are thin: they turn
//! the update into domain calls and render the answer. Each is safe to run
//! twice for the same update (after a crash the update is handled again):
//! writes are idempotent or harmless to repeat.

mod chat;
mod commands;
mod start;

use teloxide_core::types::{Message, Update, UpdateKind};
use vitte_domain::ids::UpdateId;
use vitte_domain::model::{TelegramProfile, User};
use vitte_domain::ports::StoreError;

use crate::context::BotContext;
use crate::i18n::Lang;
use crate::keyboards::Callback;
use crate::middlewares::flood::{self, Flood};
use crate::middlewares::{access, limits, terms_gate};
use crate::telegram::SendError;

/// Why handling failed; the update is retried later (its lease runs out).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Telegram could not be reached.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// How a handled update is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handled {
    /// The inbox marks it done.
    #[default]
    Open,
    /// The handler's own write marked it done (a chat message is stored
    /// together with its update's end).
    Finished,
}

/// A person in their private chat with the bot, as handlers see them.
pub(crate) struct Caller {
    pub user: User,
    pub lang: Lang,
    pub chat: i64,
}

/// Handles one update. Unknown or unparseable updates are acknowledged and
/// ignored: Telegram must never be asked to redeliver something we cannot use.
pub async fn handle(
    ctx: &BotContext,
    id: UpdateId,
    payload: &serde_json::Value,
) -> Result<Handled, HandleError> {
    // teloxide's Update only deserializes from text (its flattened update
    // kind does not survive serde_json::Value), so go through the text form.
    let update: Update = match serde_json::from_str(&payload.to_string()) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(update_id = id.get(), error = %e, "unparseable update ignored");
            return Ok(Handled::Open);
        }
    };
    match &update.kind {
        UpdateKind::Message(m) => on_message(ctx, id, m).await,
        UpdateKind::CallbackQuery(q) => on_callback(ctx, q).await.map(|()| Handled::Open),
        _ => Ok(Handled::Open),
    }
}

/// A button press.
async fn on_callback(
    ctx: &BotContext,
    q: &teloxide_core::types::CallbackQuery,
) -> Result<(), HandleError> {
    // Stop the client's spinner first, whatever happens next.
    if let Err(e) = ctx.telegram.answer_callback(&q.id.0).await {
        tracing::debug!(error = %e, "callback answer failed");
    }
    let Some(message) = q.regular_message() else {
        return Ok(());
    };
    let Some(profile) = access::admit(Some(&q.from), &message.chat) else {
        return Ok(());
    };
    if !flood_gate(ctx, &profile, message.chat.id.0).await {
        return Ok(());
    }
    let Some(callback) = q.data.as_deref().and_then(Callback::parse) else {
        return Ok(());
    };
    let caller = caller(ctx, &profile, message.chat.id.0).await?;
    if limits::button(ctx, &caller.user).await != limits::Verdict::Allowed {
        return Ok(());
    }
    let user = caller.user.id;
    settle(ctx, user, start::on_callback(ctx, caller, callback).await).await
}

/// Counts the update against the flood quota, before anything else touches
/// the store; `false` when it must be dropped. The update that starts a pause
/// tells the person, in their language, when they can write again.
async fn flood_gate(ctx: &BotContext, profile: &TelegramProfile, chat: i64) -> bool {
    let now = ctx.clock.now();
    let pause = match flood::check(ctx.limiter.as_ref(), &ctx.flood, profile.telegram_id, now).await
    {
        Flood::Clear => return true,
        Flood::Dropped => return false,
        Flood::Paused(pause) => pause,
    };
    // The language they chose, else their client's: the notice is best
    // effort, and a store error must not bring the dropped update back.
    let chosen = match ctx.store.user_by_telegram_id(profile.telegram_id).await {
        Ok(user) => user.and_then(|u| u.language),
        Err(e) => {
            tracing::debug!(error = %e, "user unreadable; flood notice in the client's language");
            None
        }
    };
    let lang = Lang::from_code(chosen.as_deref().or(profile.language_code.as_deref()));
    let text = flood::notice(&ctx.texts, lang, pause, now);
    if let Err(e) = ctx.telegram.send_html(chat, &text, None).await {
        tracing::warn!(error = %e, user = profile.telegram_id.get(), "flood notice not sent");
    }
    false
}

async fn caller(
    ctx: &BotContext,
    profile: &vitte_domain::model::TelegramProfile,
    chat: i64,
) -> Result<Caller, StoreError> {
    let now = ctx.clock.now();
    // The user row is read from the cache on the hot path; it is written only
    // when something changed, so most messages cost no user write at all.
    let known = ctx.store.user_by_telegram_id(profile.telegram_id).await?;
    let user = match known {
        Some(user) if !needs_refresh(&user, profile, now) => user,
        _ => ctx.store.upsert_user(profile, now).await?,
    };
    let lang = Lang::from_code(user.language.as_deref());
    Ok(Caller { user, lang, chat })
}

/// `last_seen` is kept to the hour; names and the blocked flag exactly.
const LAST_SEEN_PRECISION: chrono::TimeDelta = chrono::TimeDelta::hours(1);

fn needs_refresh(
    user: &User,
    profile: &vitte_domain::model::TelegramProfile,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    user.blocked_bot
        || user.first_name != profile.first_name
        || user.last_name != profile.last_name
        || user.username != profile.username
        || now - user.last_seen >= LAST_SEEN_PRECISION
}

/// A person who blocked the bot cannot be answered: the update is done, and
/// the flag keeps broadcasts and reminders away until they write again.
async fn settle<T: Default>(
    ctx: &BotContext,
    user: vitte_domain::ids::UserId,
    result: Result<T, HandleError>,
) -> Result<T, HandleError> {
    match result {
        Err(HandleError::Send(SendError::Blocked)) => {
            ctx.store.set_blocked_bot(user, true).await?;
            Ok(T::default())
        }
        other => other,
    }
}

async fn on_message(ctx: &BotContext, id: UpdateId, m: &Message) -> Result<Handled, HandleError> {
    let Some(profile) = access::admit(m.from.as_ref(), &m.chat) else {
        return Ok(Handled::Open);
    };
    if !flood_gate(ctx, &profile, m.chat.id.0).await {
        return Ok(Handled::Open);
    }
    let caller = caller(ctx, &profile, m.chat.id.0).await?;
    let user = caller.user.id;
    settle(ctx, user, route_message(ctx, caller, id, m).await).await
}

async fn route_message(
    ctx: &BotContext,
    caller: Caller,
    id: UpdateId,
    m: &Message,
) -> Result<Handled, HandleError> {
    let Some(text) = m.text() else {
        let reply = ctx.texts.get(caller.lang, "chat.text_only", &[]);
        ctx.telegram.send_html(caller.chat, &reply, None).await?;
        return Ok(Handled::Open);
    };
    if let Some(command) = commands::Command::parse(text) {
        let done = if let commands::Command::Start(payload) = command {
            start::on_start(ctx, caller, payload).await
        } else if terms_gate::check(&caller.user) != terms_gate::Gate::Open {
            start::ask_terms(ctx, &caller, None).await
        } else {
            commands::run(ctx, caller, command).await
        };
        return done.map(|()| Handled::Open);
    }
    if terms_gate::check(&caller.user) != terms_gate::Gate::Open {
        return start::ask_terms(ctx, &caller, None)
            .await
            .map(|()| Handled::Open);
    }
    chat::on_text(ctx, caller, id, m.id.0, text).await
}
