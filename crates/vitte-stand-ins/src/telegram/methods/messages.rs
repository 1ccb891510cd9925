//! Text messages and what happens around them: `sendMessage`,
//! `editMessageText`, `editMessageReplyMarkup`, `deleteMessage`,
//! `sendChatAction` and `answerCallbackQuery`.

use serde_json::Value;

use super::{MESSAGE_TEXT, Reply, chat_id, formatted, message_id, reply_markup};
use crate::telegram::Shared;
use crate::telegram::error::{BotApiError, BotResult};
use crate::telegram::observe::ActivityKind;
use crate::telegram::params::Params;
use crate::telegram::state::State;
use crate::telegram::types::Message;

const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply \
     markup are exactly the same as a current content and reply markup of the message";

const QUERY_TOO_OLD: &str = "query is too old and response timeout expired or query ID is invalid";

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// Stores a message from the bot in `chat_id` after the chat, block and flood
/// checks, filling its content with `fill`.
pub(crate) fn send_from_bot(
    shared: &Shared,
    state: &mut State,
    chat_id: i64,
    fill: impl FnOnce(&mut Message),
) -> BotResult<Message> {
    let config = &shared.config;
    state.writable_chat(config, chat_id)?;
    state.admit_send(config, chat_id)?;
    let now = shared.now_unix();
    let bot = shared.bot.clone();
    let chat = state.writable_chat(config, chat_id)?;
    let message = chat.push(true, config.max_messages_per_chat, |id, chat| {
        let mut message = Message::new(id, Some(bot), chat.clone(), now);
        fill(&mut message);
        message
    });
    state.counters.messages_sent += 1;
    if let Some(observer) = &state.observer {
        observer.message(ActivityKind::Sent, &message);
    }
    Ok(message)
}

/// `sendMessage`.
pub(crate) fn send_message(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let chat_id = chat_id(params)?;
    let (text, entities) = formatted(params, &MESSAGE_TEXT)?.unwrap_or_default();
    let markup = reply_markup(params)?;
    let mut state = shared.lock();
    let message = send_from_bot(shared, &mut state, chat_id, |m| {
        m.text = Some(text);
        m.entities = entities;
        m.reply_markup = markup;
    })?;
    Ok((&message).into())
}

/// Finds a bot message to edit, with Telegram's errors for the ways it can
/// be missing.
fn editable(
    state: &mut State,
    shared: &Shared,
    chat_id: i64,
    message_id: i64,
) -> BotResult<Message> {
    let chat = state.writable_chat(&shared.config, chat_id)?;
    let stored = chat
        .find(message_id)
        .ok_or_else(|| BotApiError::bad_request("message to edit not found"))?;
    if !stored.from_bot {
        return Err(BotApiError::bad_request("message can't be edited"));
    }
    Ok(stored.message.clone())
}

fn edit(
    shared: &Shared,
    state: &mut State,
    chat_id: i64,
    message_id: i64,
    change: impl FnOnce(&mut Message),
) -> BotResult<Message> {
    let now = shared.now_unix();
    let chat = state.writable_chat(&shared.config, chat_id)?;
    let edited = chat
        .update(message_id, |m| {
            change(m);
            m.edit_date = Some(now);
        })
        .ok_or_else(|| BotApiError::bad_request("message to edit not found"))?;
    state.counters.messages_edited += 1;
    if let Some(observer) = &state.observer {
        observer.message(ActivityKind::Edited, &edited);
    }
    Ok(edited)
}

/// `editMessageText`. As on Telegram, leaving out `reply_markup` removes an
/// inline keyboard.
pub(crate) fn edit_message_text(shared: &Shared, params: &Params) -> BotResult<Reply> {
    if params.str("inline_message_id").is_some() {
        return Err(BotApiError::bad_request("message to edit not found"));
    }
    let chat_id = chat_id(params)?;
    let message_id = message_id(params)?;
    let (text, entities) = formatted(params, &MESSAGE_TEXT)?.unwrap_or_default();
    let markup = reply_markup(params)?;
    let mut state = shared.lock();
    let current = editable(&mut state, shared, chat_id, message_id)?;
    if current.text.is_none() {
        return Err(BotApiError::bad_request(
            "there is no text in the message to edit",
        ));
    }
    if current.text.as_deref() == Some(text.as_str())
        && current.entities == entities
        && current.reply_markup == markup
    {
        return Err(BotApiError::bad_request(NOT_MODIFIED));
    }
    let edited = edit(shared, &mut state, chat_id, message_id, |m| {
        m.text = Some(text);
        m.entities = entities;
        m.reply_markup = markup;
    })?;
    Ok((&edited).into())
}

/// `editMessageReplyMarkup`: replaces or (without `reply_markup`) removes the
/// inline keyboard.
pub(crate) fn edit_message_reply_markup(shared: &Shared, params: &Params) -> BotResult<Reply> {
    if params.str("inline_message_id").is_some() {
        return Err(BotApiError::bad_request("message to edit not found"));
    }
    let chat_id = chat_id(params)?;
    let message_id = message_id(params)?;
    let markup = reply_markup(params)?;
    let mut state = shared.lock();
    let current = editable(&mut state, shared, chat_id, message_id)?;
    if current.reply_markup == markup {
        return Err(BotApiError::bad_request(NOT_MODIFIED));
    }
    let edited = edit(shared, &mut state, chat_id, message_id, |m| {
        m.reply_markup = markup;
    })?;
    Ok((&edited).into())
}

/// `deleteMessage`.
pub(crate) fn delete_message(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let chat_id = chat_id(params)?;
    let message_id = message_id(params)?;
    let mut state = shared.lock();
    let chat = state
        .chats
        .get_mut(&chat_id)
        .ok_or_else(BotApiError::chat_not_found)?;
    if !chat.delete(message_id) {
        return Err(BotApiError::bad_request("message to delete not found"));
    }
    Ok(true.into())
}

/// `sendChatAction`: recorded so tests and the demo page can see "typing…".
pub(crate) fn send_chat_action(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let chat_id = chat_id(params)?;
    let action = params.str("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return Err(BotApiError::bad_request(
            "wrong parameter action in request",
        ));
    }
    let now = shared.now_unix();
    let mut state = shared.lock();
    if let Some(observer) = &state.observer {
        observer.action(chat_id, &action);
    }
    state
        .writable_chat(&shared.config, chat_id)?
        .record_action(action, now);
    state.counters.chat_actions += 1;
    Ok(true.into())
}

/// `answerCallbackQuery`: each query can be answered once.
pub(crate) fn answer_callback_query(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let id = params.str("callback_query_id").unwrap_or_default();
    let mut state = shared.lock();
    let record = state
        .callbacks
        .get_mut(&id)
        .filter(|r| !r.answered)
        .ok_or_else(|| BotApiError::bad_request(QUERY_TOO_OLD))?;
    record.answered = true;
    record.text = params.str("text").filter(|t| !t.is_empty());
    record.show_alert = params.bool("show_alert");
    record.url = params.str("url");
    Ok(Value::Bool(true).into())
}
