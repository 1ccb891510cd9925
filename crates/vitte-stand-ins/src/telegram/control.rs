//! The control API: the side of the conversation Telegram's users play, plus
//! what a test needs to see. Served by the stand-in under `/control`:
//!
//! | request | what it does |
//! |---|---|
//! | `POST /control/messages` [`UserMessage`] → [`Injected`] | a user writes to the bot |
//! | `POST /control/callbacks` [`ButtonPress`] → [`CallbackInjected`] | a user presses an inline button |
//! | `GET /control/callbacks/{id}` → [`CallbackAnswer`] | how the bot answered it |
//! | `POST /control/pre_checkout` [`PreCheckoutRequest`] → [`PreCheckoutInjected`] | a user confirms an invoice |
//! | `GET /control/pre_checkout/{id}` → [`PreCheckoutStatus`] | the bot's answer, whether paid |
//! | `POST /control/payments` [`PaymentRequest`] → [`Paid`] | the payment arrives (when not automatic) |
//! | `POST /control/users/{id}/block`, `/unblock` → [`BlockChange`] | a user blocks or unblocks the bot |
//! | `POST /control/updates` (an Update object) → [`RawInjected`] | queue any update as given |
//! | `GET /control/chats/{id}/messages?after=&wait_ms=&include_user=` → [`ChatLog`] | what the bot shows in a chat, long-polled |
//! | `GET /control/counters` → [`Counters`] | activity counters |
//! | `GET /control/bot?chat_id=&language_code=` → [`BotProfile`] | the bot's name and the command menu a client would show |
//! | `GET /control/files/{file_id}` → the file's bytes | a photo, voice note or document the bot sent, as a client downloads it |
//!
//! Errors are `{"error": "..."}` with 400, 404 or 409.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Shared;
use super::markup::bot_commands;
use super::media::mime_type;
use super::methods::payments::record_payment;
use super::state::{CallbackRecord, InvoiceSpec, PreCheckoutRecord, State};
use super::types::{Chat, Message, User, to_json};
use crate::stable_hash::mix;

/// A refused control request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The request itself is malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No user with this id has talked to the bot.
    #[error("unknown user {0}")]
    UnknownUser(i64),
    /// The message does not exist in that chat (or was forgotten).
    #[error("message {message_id} not found in chat {chat_id}")]
    UnknownMessage {
        /// The chat searched.
        chat_id: i64,
        /// The message looked for.
        message_id: i64,
    },
    /// The message has no inline button with this callback data.
    #[error("message {0} has no inline button with this callback_data")]
    NoSuchButton(i64),
    /// No invoice matches the request.
    #[error("no such invoice")]
    UnknownInvoice,
    /// No query with this id.
    #[error("unknown query {0}")]
    UnknownQuery(String),
    /// The bot has not approved the pre-checkout query (yet).
    #[error("the pre-checkout query was not approved by the bot")]
    NotApproved,
    /// The query was already paid.
    #[error("the pre-checkout query was already paid")]
    AlreadyPaid,
    /// No file with this `file_id` was ever sent.
    #[error("unknown file {0}")]
    UnknownFile(String),
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::UnknownUser(_)
            | Self::UnknownMessage { .. }
            | Self::NoSuchButton(_)
            | Self::UnknownInvoice
            | Self::UnknownQuery(_)
            | Self::UnknownFile(_) => StatusCode::NOT_FOUND,
            Self::NotApproved | Self::AlreadyPaid => StatusCode::CONFLICT,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// A user writing to the bot in their private chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMessage {
    /// The user's Telegram id (also the private chat's id); positive.
    pub user_id: i64,
    /// Shown as the user's name.
    #[serde(default = "default_first_name")]
    pub first_name: String,
    /// Optional surname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Optional `@username`, without the `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The client's language (IETF tag such as `ru`), which bots use to pick
    /// a locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    /// What the user typed; `/commands` get `bot_command` entities.
    pub text: String,
}

fn default_first_name() -> String {
    "User".into()
}

/// Where an injected message landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    /// The update's id, as the bot will see it.
    pub update_id: i64,
    /// The chat it was written in.
    pub chat_id: i64,
    /// The new message's id in that chat.
    pub message_id: i64,
}

/// A press on an inline button of one of the bot's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonPress {
    /// Who presses (the button must be in their private chat).
    pub user_id: i64,
    /// The bot's message carrying the keyboard.
    pub message_id: i64,
    /// The button's `callback_data`; a button with it must exist.
    pub data: String,
}

/// The callback query a press produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackInjected {
    /// The update's id.
    pub update_id: i64,
    /// The query's id, which the bot must answer with answerCallbackQuery.
    pub callback_query_id: String,
}

/// How the bot answered a callback query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackAnswer {
    /// Whether answerCallbackQuery was called.
    pub answered: bool,
    /// The notification text, if any.
    pub text: Option<String>,
    /// Whether it was an alert rather than a toast.
    pub show_alert: bool,
    /// A URL to open, if any.
    pub url: Option<String>,
}

/// A user confirming an invoice. Name the invoice by the bot's invoice
/// message (`message_id`), by its link (`invoice_link`), or spell it out
/// (`currency`, `total_amount`, `invoice_payload`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PreCheckoutRequest {
    /// The paying user.
    pub user_id: i64,
    /// An invoice message the bot sent to this user.
    #[serde(default)]
    pub message_id: Option<i64>,
    /// A link made by createInvoiceLink.
    #[serde(default)]
    pub invoice_link: Option<String>,
    /// Explicit currency, e.g. `XTR`.
    #[serde(default)]
    pub currency: Option<String>,
    /// Explicit amount in the currency's smallest units.
    #[serde(default)]
    pub total_amount: Option<i64>,
    /// Explicit bot-defined payload.
    #[serde(default)]
    pub invoice_payload: Option<String>,
    /// Send the successful payment as soon as the bot approves (Telegram's
    /// behaviour). Default true; false leaves it to `POST /control/payments`.
    #[serde(default)]
    pub auto_pay: Option<bool>,
}

/// The pre-checkout query sent to the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCheckoutInjected {
    /// The update's id.
    pub update_id: i64,
    /// The query's id, for answerPreCheckoutQuery.
    pub pre_checkout_query_id: String,
}

/// The state of a pre-checkout query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCheckoutStatus {
    /// Whether the bot answered.
    pub answered: bool,
    /// The bot's verdict, once answered.
    pub ok: Option<bool>,
    /// The bot's refusal text, if it refused.
    pub error_message: Option<String>,
    /// Whether the successful payment was sent.
    pub paid: bool,
}

/// Completing an approved payment by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The approved pre-checkout query.
    pub pre_checkout_query_id: String,
}

/// The `successful_payment` message that was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    /// The update's id.
    pub update_id: i64,
    /// The service message's id in the user's chat.
    pub message_id: i64,
    /// The charge id, as refundStarPayment expects it.
    pub telegram_payment_charge_id: String,
}

/// The `my_chat_member` update a block or unblock produced, if the state
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockChange {
    /// The update's id; `None` when the user was already in that state.
    pub update_id: Option<i64>,
}

/// A raw update that was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawInjected {
    /// Its id (as given, or assigned).
    pub update_id: i64,
    /// False when the bot's `allowed_updates` filtered it out.
    pub accepted: bool,
}

/// The last chat action the bot sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatActionSeen {
    /// E.g. `typing` or `upload_photo`.
    pub action: String,
    /// Unix time it was sent, on the stand-in's clock.
    pub date: i64,
}

/// What changed in a chat since a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLog {
    /// Messages sent or edited since `after`, as Message objects in their
    /// current state (edits carry `edit_date`), ordered by `message_id`.
    pub messages: Vec<Value>,
    /// Messages deleted since `after`.
    pub deleted_message_ids: Vec<i64>,
    /// The chat's current revision: pass it as `after` to get only news.
    pub revision: u64,
    /// The most recent chat action, if it happened since `after`.
    pub last_action: Option<ChatActionSeen>,
    /// Chat actions received in this chat in total.
    pub actions_seen: u64,
}

impl ChatLog {
    fn has_news(&self) -> bool {
        !self.messages.is_empty()
            || !self.deleted_message_ids.is_empty()
            || self.last_action.is_some()
    }
}

/// Activity counters since start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Bot API calls received (with a valid token).
    pub bot_api_calls: u64,
    /// The same, by method name as called.
    pub calls_by_method: BTreeMap<String, u64>,
    /// Updates created (injected, raw or produced by the stand-in).
    pub updates_created: u64,
    /// Updates dropped because of the bot's `allowed_updates`.
    pub updates_filtered: u64,
    /// Updates handed over for good: confirmed through getUpdates or
    /// acknowledged by the webhook.
    pub updates_delivered: u64,
    /// Of those, confirmed through a getUpdates offset.
    pub updates_confirmed: u64,
    /// Updates returned by getUpdates calls (a redelivery counts again).
    pub updates_returned: u64,
    /// Updates waiting now.
    pub pending_updates: u64,
    /// Webhook POSTs answered with 2xx.
    pub webhook_deliveries: u64,
    /// Webhook POSTs that failed and will be retried.
    pub webhook_failures: u64,
    /// Messages the bot sent.
    pub messages_sent: u64,
    /// Messages the bot edited.
    pub messages_edited: u64,
    /// Chat actions the bot sent.
    pub chat_actions: u64,
    /// 429 answers given.
    pub too_many_requests_issued: u64,
    /// 403 answers given (blocked users).
    pub forbidden_issued: u64,
}

/// The bot as a client shows it: its name in the chat header and the command
/// menu next to the text box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotProfile {
    /// The bot's user id.
    pub id: i64,
    /// The display name, shown as the chat's title.
    pub first_name: String,
    /// The `@username`, without the `@`.
    pub username: String,
    /// The menu for the asked chat and language, chosen among the bot's
    /// `setMyCommands` lists the way Telegram clients choose; empty when the
    /// bot set none.
    pub commands: Vec<BotCommand>,
}

/// One entry of the bot's command menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotCommand {
    /// The command without the slash, e.g. `help`.
    pub command: String,
    /// What the menu says about it.
    pub description: String,
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/control/messages", post(post_message))
        .route("/control/callbacks", post(post_callback))
        .route("/control/callbacks/{id}", get(get_callback))
        .route("/control/pre_checkout", post(post_pre_checkout))
        .route("/control/pre_checkout/{id}", get(get_pre_checkout))
        .route("/control/payments", post(post_payment))
        .route("/control/users/{user_id}/block", post(post_block))
        .route("/control/users/{user_id}/unblock", post(post_unblock))
        .route("/control/updates", post(post_update))
        .route("/control/chats/{chat_id}/messages", get(get_chat_messages))
        .route("/control/counters", get(get_counters))
        .route("/control/bot", get(get_bot))
        .route("/control/files/{file_id}", get(get_file))
}

type Ctl<T> = Result<Json<T>, ControlError>;

async fn post_message(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<UserMessage>,
) -> Ctl<Injected> {
    inject_message(&shared, &body).map(Json)
}

async fn post_callback(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<ButtonPress>,
) -> Ctl<CallbackInjected> {
    press_button(&shared, &body).map(Json)
}

async fn get_callback(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
) -> Ctl<CallbackAnswer> {
    callback_answer(&shared, &id).map(Json)
}

async fn post_pre_checkout(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<PreCheckoutRequest>,
) -> Ctl<PreCheckoutInjected> {
    pre_checkout(&shared, &body).map(Json)
}

async fn get_pre_checkout(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(id): Path<String>,
) -> Ctl<PreCheckoutStatus> {
    pre_checkout_status(&shared, &id).map(Json)
}

async fn post_payment(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<PaymentRequest>,
) -> Ctl<Paid> {
    complete_payment(&shared, &body).map(Json)
}

async fn post_block(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(user_id): Path<i64>,
) -> Ctl<BlockChange> {
    set_blocked(&shared, user_id, true).map(Json)
}

async fn post_unblock(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(user_id): Path<i64>,
) -> Ctl<BlockChange> {
    set_blocked(&shared, user_id, false).map(Json)
}

async fn post_update(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(body): Json<Value>,
) -> Ctl<RawInjected> {
    inject_update(&shared, body).map(Json)
}

/// Query of the chat listing.
#[derive(Debug, Deserialize)]
struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    include_user: bool,
}

async fn get_chat_messages(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(chat_id): Path<i64>,
    Query(query): Query<LogQuery>,
) -> Json<ChatLog> {
    let wait = Duration::from_millis(query.wait_ms.min(120_000));
    Json(wait_chat_log(&shared, chat_id, query.after, query.include_user, wait).await)
}

async fn get_counters(AxumState(shared): AxumState<Arc<Shared>>) -> Json<Counters> {
    Json(counters(&shared))
}

/// Query of the bot profile: whose menu, in which language.
#[derive(Debug, Deserialize)]
struct ProfileQuery {
    #[serde(default)]
    chat_id: Option<i64>,
    #[serde(default)]
    language_code: Option<String>,
}

async fn get_bot(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(query): Query<ProfileQuery>,
) -> Json<BotProfile> {
    Json(bot_profile(
        &shared,
        query.chat_id,
        query.language_code.as_deref(),
    ))
}

async fn get_file(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(file_id): Path<String>,
) -> Result<Response, ControlError> {
    let state = shared.lock();
    let file = state
        .files
        .get(&file_id)
        .ok_or(ControlError::UnknownFile(file_id))?;
    let content_type = mime_type(&file.bytes, &file.file_path);
    Ok((
        [
            (CONTENT_TYPE, content_type),
            // A file_id always names the same bytes.
            (CACHE_CONTROL, "private, max-age=86400, immutable"),
        ],
        Body::from(file.bytes.clone()),
    )
        .into_response())
}

fn known_user(state: &State, user_id: i64) -> Result<User, ControlError> {
    state
        .users
        .get(&user_id)
        .map(|r| r.user.clone())
        .ok_or(ControlError::UnknownUser(user_id))
}

/// The `my_chat_member` update Telegram sends when a user blocks or unblocks
/// the bot.
fn membership_update(shared: &Shared, user: &User, blocked: bool) -> Value {
    let (old, new) = if blocked {
        ("member", "kicked")
    } else {
        ("kicked", "member")
    };
    let mut new_member = json!({ "user": to_json(&shared.bot), "status": new });
    if blocked {
        new_member["until_date"] = Value::from(0);
    }
    json!({
        "my_chat_member": {
            "chat": to_json(&Chat::private(user)),
            "from": to_json(user),
            "date": shared.now_unix(),
            "old_chat_member": { "user": to_json(&shared.bot), "status": old },
            "new_chat_member": new_member,
        }
    })
}

pub(crate) fn inject_message(
    shared: &Shared,
    request: &UserMessage,
) -> Result<Injected, ControlError> {
    if request.user_id <= 0 {
        return Err(ControlError::Invalid("user_id must be positive".into()));
    }
    if request.text.trim().is_empty() {
        return Err(ControlError::Invalid("text is empty".into()));
    }
    let user = User {
        id: request.user_id,
        is_bot: false,
        first_name: request.first_name.clone(),
        last_name: request.last_name.clone(),
        username: request.username.clone(),
        language_code: request.language_code.clone(),
    };
    let now = shared.now_unix();
    let max_kept = shared.config.max_messages_per_chat;
    let injected = {
        let mut state = shared.lock();
        let was_blocked = state.users.get(&user.id).is_some_and(|u| u.blocked);
        state.remember_user(user.clone());
        if was_blocked {
            // Writing to a bot you blocked means restarting it first.
            if let Some(record) = state.users.get_mut(&user.id) {
                record.blocked = false;
            }
            state.enqueue(membership_update(shared, &user, false));
        }
        let text = request.text.clone();
        let entities: Vec<Value> = bot_commands(&text).iter().map(to_json).collect();
        let message = state
            .chat_entry(Chat::private(&user))
            .push(false, max_kept, |id, chat| {
                let mut message = Message::new(id, Some(user.clone()), chat.clone(), now);
                message.text = Some(text);
                message.entities = entities;
                message
            });
        let (update_id, _) = state.enqueue(json!({ "message": message.to_json() }));
        Injected {
            update_id,
            chat_id: user.id,
            message_id: message.message_id,
        }
    };
    shared.notify_updates();
    Ok(injected)
}

fn has_button(markup: Option<&Value>, data: &str) -> bool {
    markup
        .and_then(|m| m["inline_keyboard"].as_array())
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .any(|button| button["callback_data"].as_str() == Some(data))
}

pub(crate) fn press_button(
    shared: &Shared,
    press: &ButtonPress,
) -> Result<CallbackInjected, ControlError> {
    let injected = {
        let mut state = shared.lock();
        let user = known_user(&state, press.user_id)?;
        let unknown = ControlError::UnknownMessage {
            chat_id: press.user_id,
            message_id: press.message_id,
        };
        let stored = state
            .chats
            .get(&press.user_id)
            .and_then(|chat| chat.find(press.message_id))
            .filter(|stored| stored.from_bot)
            .ok_or(unknown)?;
        if !has_button(stored.message.reply_markup.as_ref(), &press.data) {
            return Err(ControlError::NoSuchButton(press.message_id));
        }
        let message = stored.message.to_json();
        let serial = state.serial();
        let bot = shared.bot_id().unsigned_abs();
        let id = (mix(bot, serial) >> 1).to_string();
        let chat_instance = (-((mix(bot, press.user_id.unsigned_abs()) >> 2) as i64)).to_string();
        state
            .callbacks
            .insert(id.clone(), CallbackRecord::default());
        let (update_id, _) = state.enqueue(json!({
            "callback_query": {
                "id": id,
                "from": to_json(&user),
                "message": message,
                "chat_instance": chat_instance,
                "data": press.data,
            }
        }));
        CallbackInjected {
            update_id,
            callback_query_id: id,
        }
    };
    shared.notify_updates();
    Ok(injected)
}

pub(crate) fn callback_answer(shared: &Shared, id: &str) -> Result<CallbackAnswer, ControlError> {
    let state = shared.lock();
    let record = state
        .callbacks
        .get(id)
        .ok_or_else(|| ControlError::UnknownQuery(id.to_owned()))?;
    Ok(CallbackAnswer {
        answered: record.answered,
        text: record.text.clone(),
        show_alert: record.show_alert,
        url: record.url.clone(),
    })
}

fn requested_invoice(
    state: &State,
    request: &PreCheckoutRequest,
) -> Result<InvoiceSpec, ControlError> {
    if let Some(message_id) = request.message_id {
        return state
            .invoices_by_message
            .get(&(request.user_id, message_id))
            .cloned()
            .ok_or(ControlError::UnknownInvoice);
    }
    if let Some(link) = &request.invoice_link {
        return state
            .invoice_links
            .get(link)
            .cloned()
            .ok_or(ControlError::UnknownInvoice);
    }
    match (&request.currency, request.total_amount, &request.invoice_payload) {
        (Some(currency), Some(total_amount), Some(payload)) => Ok(InvoiceSpec {
            title: String::new(),
            payload: payload.clone(),
            currency: currency.clone(),
            total_amount,
            subscription_period: None,
        }),
        _ => Err(ControlError::Invalid(
            "name the invoice by message_id, invoice_link, or currency + total_amount + invoice_payload"
                .into(),
        )),
    }
}

pub(crate) fn pre_checkout(
    shared: &Shared,
    request: &PreCheckoutRequest,
) -> Result<PreCheckoutInjected, ControlError> {
    let injected = {
        let mut state = shared.lock();
        let user = known_user(&state, request.user_id)?;
        let invoice = requested_invoice(&state, request)?;
        let serial = state.serial();
        let id = (mix(shared.bot_id().unsigned_abs(), serial) >> 1).to_string();
        let query = json!({
            "pre_checkout_query": {
                "id": id,
                "from": to_json(&user),
                "currency": invoice.currency,
                "total_amount": invoice.total_amount,
                "invoice_payload": invoice.payload,
            }
        });
        state.pre_checkouts.insert(
            id.clone(),
            PreCheckoutRecord {
                user_id: user.id,
                invoice,
                created: shared.config.clock.now(),
                answer: None,
                auto_pay: request.auto_pay.unwrap_or(true),
                paid: false,
            },
        );
        let (update_id, _) = state.enqueue(query);
        PreCheckoutInjected {
            update_id,
            pre_checkout_query_id: id,
        }
    };
    shared.notify_updates();
    Ok(injected)
}

pub(crate) fn pre_checkout_status(
    shared: &Shared,
    id: &str,
) -> Result<PreCheckoutStatus, ControlError> {
    let state = shared.lock();
    let record = state
        .pre_checkouts
        .get(id)
        .ok_or_else(|| ControlError::UnknownQuery(id.to_owned()))?;
    Ok(PreCheckoutStatus {
        answered: record.answer.is_some(),
        ok: record.answer.as_ref().map(Result::is_ok),
        error_message: record.answer.clone().and_then(Result::err),
        paid: record.paid,
    })
}

pub(crate) fn complete_payment(
    shared: &Shared,
    request: &PaymentRequest,
) -> Result<Paid, ControlError> {
    let id = &request.pre_checkout_query_id;
    let paid = {
        let mut state = shared.lock();
        let record = state
            .pre_checkouts
            .get(id)
            .ok_or_else(|| ControlError::UnknownQuery(id.clone()))?;
        if record.paid {
            return Err(ControlError::AlreadyPaid);
        }
        if record.answer != Some(Ok(())) {
            return Err(ControlError::NotApproved);
        }
        let (update_id, message_id, charge_id) =
            record_payment(shared, &mut state, id).ok_or(ControlError::NotApproved)?;
        Paid {
            update_id,
            message_id,
            telegram_payment_charge_id: charge_id,
        }
    };
    shared.notify_updates();
    Ok(paid)
}

pub(crate) fn set_blocked(
    shared: &Shared,
    user_id: i64,
    blocked: bool,
) -> Result<BlockChange, ControlError> {
    let change = {
        let mut state = shared.lock();
        let user = known_user(&state, user_id)?;
        let record = state
            .users
            .get_mut(&user_id)
            .ok_or(ControlError::UnknownUser(user_id))?;
        if record.blocked == blocked {
            return Ok(BlockChange { update_id: None });
        }
        record.blocked = blocked;
        let (update_id, _) = state.enqueue(membership_update(shared, &user, blocked));
        BlockChange {
            update_id: Some(update_id),
        }
    };
    shared.notify_updates();
    Ok(change)
}

pub(crate) fn inject_update(shared: &Shared, update: Value) -> Result<RawInjected, ControlError> {
    let Some(object) = update.as_object() else {
        return Err(ControlError::Invalid(
            "an Update must be a JSON object".into(),
        ));
    };
    let kinds = object.keys().filter(|k| *k != "update_id").count();
    if kinds != 1 {
        return Err(ControlError::Invalid(
            "an Update has exactly one field besides update_id".into(),
        ));
    }
    if object.get("update_id").is_some_and(|id| !id.is_i64()) {
        return Err(ControlError::Invalid("update_id must be an integer".into()));
    }
    let (update_id, accepted) = shared.lock().enqueue(update);
    shared.notify_updates();
    Ok(RawInjected {
        update_id,
        accepted,
    })
}

fn chat_log(state: &State, chat_id: i64, after: u64, include_user: bool) -> ChatLog {
    let Some(chat) = state.chats.get(&chat_id) else {
        return ChatLog {
            messages: Vec::new(),
            deleted_message_ids: Vec::new(),
            revision: 0,
            last_action: None,
            actions_seen: 0,
        };
    };
    ChatLog {
        messages: chat
            .messages
            .iter()
            .filter(|m| m.revision > after && (m.from_bot || include_user))
            .map(|m| m.message.to_json())
            .collect(),
        deleted_message_ids: chat
            .deleted
            .iter()
            .filter(|(revision, _)| *revision > after)
            .map(|(_, id)| *id)
            .collect(),
        revision: chat.revision,
        last_action: chat
            .last_action
            .as_ref()
            .filter(|a| a.revision > after)
            .map(|a| ChatActionSeen {
                action: a.action.clone(),
                date: a.date,
            }),
        actions_seen: chat.actions_seen,
    }
}

pub(crate) async fn wait_chat_log(
    shared: &Shared,
    chat_id: i64,
    after: u64,
    include_user: bool,
    wait: Duration,
) -> ChatLog {
    let mut changes = shared.lock().chat_signal(chat_id).subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changes.borrow_and_update();
        let log = chat_log(&shared.lock(), chat_id, after, include_user);
        if log.has_news() || tokio::time::Instant::now() >= deadline {
            return log;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return log;
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            () = shared.closing.cancelled() => return log,
        }
    }
}

/// How closely a `setMyCommands` scope fits a private chat, Telegram's order:
/// the chat itself, then all private chats, then the default. `None` when the
/// scope does not cover the chat at all (groups, another chat).
fn scope_rank(scope: &Value, chat_id: Option<i64>) -> Option<u8> {
    let same_chat = |id: &Value| {
        let id = id
            .as_i64()
            .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()));
        id.is_some() && id == chat_id
    };
    match scope["type"].as_str() {
        Some("chat") if same_chat(&scope["chat_id"]) => Some(0),
        Some("all_private_chats") => Some(1),
        Some("default") => Some(2),
        _ => None,
    }
}

/// The command list a client in `chat_id` with `language` would show: the
/// closest scope wins, and within a scope the list for the language before
/// the one for every language.
fn menu_for(state: &State, chat_id: Option<i64>, language: Option<&str>) -> Vec<BotCommand> {
    let language = language.unwrap_or_default();
    let best = state
        .commands
        .iter()
        .filter_map(|(key, commands)| {
            let (scope, lang) = key.rsplit_once('|')?;
            let scope: Value = serde_json::from_str(scope).ok()?;
            let lang_rank = match lang {
                "" => 1,
                lang if !language.is_empty() && lang == language => 0,
                _ => return None,
            };
            Some(((scope_rank(&scope, chat_id)?, lang_rank), commands))
        })
        .min_by_key(|(rank, _)| *rank);
    best.and_then(|(_, commands)| commands.as_array())
        .into_iter()
        .flatten()
        .map(|c| BotCommand {
            command: c["command"].as_str().unwrap_or_default().to_owned(),
            description: c["description"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

pub(crate) fn bot_profile(
    shared: &Shared,
    chat_id: Option<i64>,
    language: Option<&str>,
) -> BotProfile {
    let commands = menu_for(&shared.lock(), chat_id, language);
    BotProfile {
        id: shared.bot.id,
        first_name: shared.bot.first_name.clone(),
        username: shared.bot.username.clone().unwrap_or_default(),
        commands,
    }
}

pub(crate) fn counters(shared: &Shared) -> Counters {
    let state = shared.lock();
    let mut counters = state.counters.clone();
    counters.pending_updates = state.pending.len() as u64;
    counters
}
