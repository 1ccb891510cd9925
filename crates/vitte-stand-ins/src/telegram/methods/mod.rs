//! The Bot API methods, one module per family, all of the same shape: read
//! [`Params`], check them in Telegram's order, change the state, answer with
//! a [`Reply`] or a [`BotApiError`].

mod commands;
mod me;
pub(crate) mod media;
mod messages;
pub(crate) mod payments;
mod updates;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::error::{BotApiError, BotResult};
use super::markup::{self, ParseMode};
use super::params::Params;
use super::types::{Message, to_json};

/// A successful answer: `{"ok":true,"result":...}`, with the optional
/// `description` some methods (setWebhook, deleteWebhook) add.
#[derive(Debug)]
pub(crate) struct Reply {
    result: Value,
    description: Option<&'static str>,
}

impl Reply {
    fn with_description(result: Value, description: &'static str) -> Self {
        Self {
            result,
            description: Some(description),
        }
    }
}

impl From<Value> for Reply {
    fn from(result: Value) -> Self {
        Self {
            result,
            description: None,
        }
    }
}

impl From<bool> for Reply {
    fn from(result: bool) -> Self {
        Value::Bool(result).into()
    }
}

impl From<&Message> for Reply {
    fn from(message: &Message) -> Self {
        message.to_json().into()
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut body = json!({ "ok": true, "result": self.result });
        if let Some(description) = self.description {
            body["description"] = Value::from(description);
        }
        Json(body).into_response()
    }
}

/// Runs `method` (matched case-insensitively, as Telegram does).
pub(crate) async fn call(shared: &Shared, method: &str, params: Params) -> BotResult<Reply> {
    let name = method.to_ascii_lowercase();
    {
        let mut state = shared.lock();
        state.counters.bot_api_calls += 1;
        *state
            .counters
            .calls_by_method
            .entry(method.to_owned())
            .or_default() += 1;
    }
    match name.as_str() {
        "getme" => me::get_me(shared),
        "logout" | "close" => Ok(true.into()),
        "getupdates" => updates::get_updates(shared, &params).await,
        "setwebhook" => updates::set_webhook(shared, &params),
        "deletewebhook" => updates::delete_webhook(shared, &params),
        "getwebhookinfo" => updates::get_webhook_info(shared),
        "sendmessage" => messages::send_message(shared, &params),
        "editmessagetext" => messages::edit_message_text(shared, &params),
        "editmessagereplymarkup" => messages::edit_message_reply_markup(shared, &params),
        "deletemessage" => messages::delete_message(shared, &params),
        "sendchataction" => messages::send_chat_action(shared, &params),
        "answercallbackquery" => messages::answer_callback_query(shared, &params),
        "sendphoto" => media::send_photo(shared, &params).await,
        "sendvoice" => media::send_voice(shared, &params).await,
        "getfile" => media::get_file(shared, &params),
        "sendinvoice" => payments::send_invoice(shared, &params),
        "createinvoicelink" => payments::create_invoice_link(shared, &params),
        "answerprecheckoutquery" => payments::answer_pre_checkout_query(shared, &params),
        "refundstarpayment" => payments::refund_star_payment(shared, &params),
        "setmycommands" => commands::set_my_commands(shared, &params),
        "getmycommands" => commands::get_my_commands(shared, &params),
        "deletemycommands" => commands::delete_my_commands(shared, &params),
        _ => Err(BotApiError::NotFound),
    }
}

/// The `chat_id` every sending method needs. Usernames (`@channel`) are not
/// modelled, so they are chats the stand-in cannot find.
fn chat_id(params: &Params) -> BotResult<i64> {
    match params.str("chat_id") {
        None => Err(BotApiError::bad_request("chat_id is empty")),
        Some(raw) if raw.trim().is_empty() => Err(BotApiError::bad_request("chat_id is empty")),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| BotApiError::chat_not_found()),
    }
}

fn message_id(params: &Params) -> BotResult<i64> {
    params
        .i64("message_id")
        .ok()
        .flatten()
        .ok_or_else(|| BotApiError::bad_request("message identifier is not specified"))
}

/// Limits on one formatted field.
struct TextField {
    name: &'static str,
    entities: &'static str,
    max_chars: usize,
    required: bool,
    empty: &'static str,
    too_long: &'static str,
}

const MESSAGE_TEXT: TextField = TextField {
    name: "text",
    entities: "entities",
    max_chars: 4096,
    required: true,
    empty: "message text is empty",
    too_long: "message is too long",
};

const CAPTION: TextField = TextField {
    name: "caption",
    entities: "caption_entities",
    max_chars: 1024,
    required: false,
    empty: "",
    too_long: "message caption is too long",
};

/// Parses a text or caption with `parse_mode` (or explicit entities) and
/// applies Telegram's emptiness and length rules. `None` is an absent
/// optional caption.
fn formatted(params: &Params, field: &TextField) -> BotResult<Option<(String, Vec<Value>)>> {
    let raw = params.str(field.name).unwrap_or_default();
    if raw.is_empty() && !field.required {
        return Ok(None);
    }
    let explicit = params.json(field.entities, "entities")?;
    let (text, entities) = match explicit {
        Some(Value::Array(entities)) => (raw.trim().to_owned(), entities),
        Some(_) => return Err(BotApiError::bad_request("can't parse entities JSON object")),
        None => {
            let mode = ParseMode::from_param(params.str("parse_mode").as_deref())
                .map_err(BotApiError::BadRequest)?;
            let parsed = markup::parse(&raw, mode).map_err(|error| {
                BotApiError::bad_request(format!("can't parse entities: {error}"))
            })?;
            (parsed.text, parsed.entities.iter().map(to_json).collect())
        }
    };
    if text.is_empty() {
        return if field.required {
            Err(BotApiError::bad_request(field.empty))
        } else {
            Ok(None)
        };
    }
    if markup::char_len(&text) > field.max_chars {
        return Err(BotApiError::bad_request(field.too_long));
    }
    Ok(Some((text, entities)))
}

/// Reads `reply_markup`. Returns the markup to keep on the message: inline
/// keyboards only, since reply keyboards are not part of a Message.
fn reply_markup(params: &Params) -> BotResult<Option<Value>> {
    let Some(markup) = params.json("reply_markup", "reply keyboard markup")? else {
        return Ok(None);
    };
    let Some(object) = markup.as_object() else {
        return Err(BotApiError::bad_request(
            "can't parse reply keyboard markup JSON object",
        ));
    };
    if let Some(rows) = object.get("inline_keyboard") {
        validate_inline_keyboard(rows)?;
        return Ok(Some(json!({ "inline_keyboard": rows })));
    }
    let known = ["keyboard", "remove_keyboard", "force_reply"];
    if known.iter().any(|k| object.contains_key(*k)) {
        Ok(None)
    } else {
        Err(BotApiError::bad_request(
            "can't parse reply keyboard markup JSON object",
        ))
    }
}

fn validate_inline_keyboard(rows: &Value) -> BotResult<()> {
    let rows = rows.as_array().filter(|rows| rows.iter().all(Value::is_array)).ok_or_else(|| {
        BotApiError::bad_request(
            "field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays",
        )
    })?;
    const ACTIONS: &[&str] = &[
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ];
    for button in rows.iter().filter_map(Value::as_array).flatten() {
        let Some(button) = button.as_object() else {
            return Err(BotApiError::bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object",
            ));
        };
        if !button.get("text").is_some_and(Value::is_string) {
            return Err(BotApiError::bad_request(
                "can't parse inline keyboard button: Field \"text\" must be of type String",
            ));
        }
        if !ACTIONS.iter().any(|a| button.contains_key(*a)) {
            return Err(BotApiError::bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
            ));
        }
        if let Some(data) = button.get("callback_data") {
            let ok = data.as_str().is_some_and(|d| (1..=64).contains(&d.len()));
            if !ok {
                return Err(BotApiError::bad_request("BUTTON_DATA_INVALID"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_keyboards_are_validated_and_kept() {
        let ok = Params::from_json(json!({
            "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "x"}]]}
        }));
        assert!(reply_markup(&ok).expect("valid").is_some());
        let reply_keyboard = Params::from_json(json!({
            "reply_markup": "{\"keyboard\": [[{\"text\": \"a\"}]]}"
        }));
        assert_eq!(reply_markup(&reply_keyboard), Ok(None));
        let text_button = Params::from_json(json!({
            "reply_markup": {"inline_keyboard": [[{"text": "a"}]]}
        }));
        assert!(reply_markup(&text_button).is_err());
        let long_data = Params::from_json(json!({
            "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "x".repeat(65)}]]}
        }));
        assert_eq!(
            reply_markup(&long_data),
            Err(BotApiError::bad_request("BUTTON_DATA_INVALID"))
        );
    }

    #[test]
    fn text_rules() {
        let empty = Params::from_json(json!({"text": "  "}));
        assert_eq!(
            formatted(&empty, &MESSAGE_TEXT),
            Err(BotApiError::bad_request("message text is empty"))
        );
        let long = Params::from_json(
            json!({"text": format!("<b>{}</b>", "я".repeat(4096)), "parse_mode": "HTML"}),
        );
        assert!(formatted(&long, &MESSAGE_TEXT).expect("fits").is_some());
        let too_long = Params::from_json(json!({"text": "я".repeat(4097)}));
        assert_eq!(
            formatted(&too_long, &MESSAGE_TEXT),
            Err(BotApiError::bad_request("message is too long"))
        );
        let bad_mode = Params::from_json(json!({"text": "x", "parse_mode": "bbcode"}));
        assert_eq!(
            formatted(&bad_mode, &MESSAGE_TEXT),
            Err(BotApiError::bad_request("unsupported parse_mode"))
        );
        assert_eq!(formatted(&Params::default(), &CAPTION), Ok(None));
    }
}
