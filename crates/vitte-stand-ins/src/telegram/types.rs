//! The Bot API objects the stand-in produces, with Telegram's field names.
//! Optional fields are omitted when absent, as Telegram does.

use serde::Serialize;
use serde_json::Value;

/// A Telegram user or bot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) is_bot: bool,
    pub(crate) first_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) language_code: Option<String>,
}

/// A chat. Users talk to the bot in private chats whose id is the user's id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Chat {
    pub(crate) id: i64,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<String>,
}

impl Chat {
    /// The private chat with `user`.
    pub(crate) fn private(user: &User) -> Self {
        Self {
            id: user.id,
            kind: "private".into(),
            title: None,
            first_name: Some(user.first_name.clone()),
            last_name: user.last_name.clone(),
            username: user.username.clone(),
        }
    }
}

/// One size of a photo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PhotoSize {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) file_size: u64,
}

/// A voice note.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Voice {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: String,
    pub(crate) duration: u64,
    pub(crate) mime_type: String,
    pub(crate) file_size: u64,
}

/// A general file, which is what Telegram sends audio it cannot play as voice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Document {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file_name: Option<String>,
    pub(crate) mime_type: String,
    pub(crate) file_size: u64,
}

/// An invoice shown in a chat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Invoice {
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) start_parameter: String,
    pub(crate) currency: String,
    pub(crate) total_amount: i64,
}

/// The service part of a message confirming a payment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SuccessfulPayment {
    pub(crate) currency: String,
    pub(crate) total_amount: i64,
    pub(crate) invoice_payload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subscription_expiration_date: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) is_recurring: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) is_first_recurring: Option<bool>,
    pub(crate) telegram_payment_charge_id: String,
    pub(crate) provider_payment_charge_id: String,
}

/// A message, sent by the bot or by a user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Message {
    pub(crate) message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<User>,
    pub(crate) chat: Chat,
    pub(crate) date: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) edit_date: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) entities: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) caption: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) caption_entities: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) photo: Option<Vec<PhotoSize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) voice: Option<Voice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) document: Option<Document>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) invoice: Option<Invoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) successful_payment: Option<SuccessfulPayment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply_markup: Option<Value>,
}

impl Message {
    /// An empty message shell; callers fill in the content.
    pub(crate) fn new(message_id: i64, from: Option<User>, chat: Chat, date: i64) -> Self {
        Self {
            message_id,
            from,
            chat,
            date,
            edit_date: None,
            text: None,
            entities: Vec::new(),
            caption: None,
            caption_entities: Vec::new(),
            photo: None,
            voice: None,
            document: None,
            invoice: None,
            successful_payment: None,
            reply_markup: None,
        }
    }

    /// The message as JSON; serializing these plain structs cannot fail.
    pub(crate) fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Serializes any of the plain wire structs above.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
