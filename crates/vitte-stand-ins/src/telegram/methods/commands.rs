//! The bot's command menu: `setMyCommands`, `getMyCommands`,
//! `deleteMyCommands`, kept per scope and language as Telegram does.

use serde_json::{Value, json};

use super::Reply;
use crate::telegram::Shared;
use crate::telegram::error::{BotApiError, BotResult};
use crate::telegram::params::Params;

fn key(params: &Params) -> BotResult<String> {
    let scope = params
        .json("scope", "BotCommandScope")?
        .unwrap_or_else(|| json!({"type": "default"}));
    let language = params.str("language_code").unwrap_or_default();
    Ok(format!("{scope}|{language}"))
}

/// `setMyCommands`.
pub(crate) fn set_my_commands(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let commands = match params.json("commands", "commands")? {
        Some(Value::Array(commands)) => commands,
        _ => return Err(BotApiError::bad_request("can't parse commands JSON object")),
    };
    if commands.len() > 100 {
        return Err(BotApiError::bad_request("BOT_COMMANDS_TOO_MUCH"));
    }
    for command in &commands {
        let name = command["command"].as_str().unwrap_or_default();
        let name_ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(BotApiError::bad_request("BOT_COMMAND_INVALID"));
        }
        let description = command["description"].as_str().unwrap_or_default();
        if !(1..=256).contains(&description.chars().count()) {
            return Err(BotApiError::bad_request("BOT_COMMAND_DESCRIPTION_INVALID"));
        }
    }
    let key = key(params)?;
    let mut state = shared.lock();
    if commands.is_empty() {
        state.commands.remove(&key);
    } else {
        state.commands.insert(key, Value::Array(commands));
    }
    Ok(true.into())
}

/// `getMyCommands`.
pub(crate) fn get_my_commands(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let key = key(params)?;
    let state = shared.lock();
    Ok(state
        .commands
        .get(&key)
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()))
        .into())
}

/// `deleteMyCommands`.
pub(crate) fn delete_my_commands(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let key = key(params)?;
    shared.lock().commands.remove(&key);
    Ok(true.into())
}
