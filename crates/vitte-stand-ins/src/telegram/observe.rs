//! Hooks for a load generator that plays Telegram at scale: every update the
//! stand-in creates can be handed to the caller instead of being pushed or
//! polled (the caller delivers it, timing each webhook call itself), and
//! everything the bot shows in a chat is reported the moment it happens.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Receives each new update (with its `update_id`) in place of the
/// stand-in's own delivery. Called under the stand-in's lock: keep it short.
pub type UpdateSink = Arc<dyn Fn(Value) + Send + Sync>;

/// The sink, printable.
#[derive(Clone)]
pub(crate) struct Sink(pub(crate) UpdateSink);

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpdateSink")
    }
}

/// What the bot did in a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    /// A new message (text, photo, voice...).
    Sent,
    /// A message's text or keyboard changed.
    Edited,
    /// A chat action such as "typing".
    ChatAction,
}

/// One thing the bot did, as seen by the chat's user.
#[derive(Debug, Clone)]
pub struct BotActivity {
    /// When the stand-in accepted the call.
    pub at: Instant,
    /// The chat.
    pub chat_id: i64,
    /// What happened.
    pub kind: ActivityKind,
    /// The message concerned (0 for chat actions).
    pub message_id: i64,
    /// The message's text or caption, or the chat action's name.
    pub text: String,
    /// `callback_data` of the message's inline buttons.
    pub buttons: Vec<String>,
}

/// The observer channel, printable.
#[derive(Debug, Clone)]
pub(crate) struct Observer(pub(crate) mpsc::UnboundedSender<BotActivity>);

impl Observer {
    pub(crate) fn message(&self, kind: ActivityKind, message: &super::types::Message) {
        let buttons = message
            .reply_markup
            .as_ref()
            .and_then(|m| m["inline_keyboard"].as_array())
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
            .collect();
        let json = message.to_json();
        let text = json["text"]
            .as_str()
            .or(json["caption"].as_str())
            .unwrap_or_default()
            .to_owned();
        let _ = self.0.send(BotActivity {
            at: Instant::now(),
            chat_id: message.chat.id,
            kind,
            message_id: message.message_id,
            text,
            buttons,
        });
    }

    pub(crate) fn action(&self, chat_id: i64, action: &str) {
        let _ = self.0.send(BotActivity {
            at: Instant::now(),
            chat_id,
            kind: ActivityKind::ChatAction,
            message_id: 0,
            text: action.to_owned(),
            buttons: Vec::new(),
        });
    }
}
