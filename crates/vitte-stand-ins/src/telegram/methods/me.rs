//! `getMe`: the bot's own user object.

use serde_json::json;

use super::Reply;
use crate::telegram::Shared;
use crate::telegram::error::BotResult;

pub(crate) fn get_me(shared: &Shared) -> BotResult<Reply> {
    let bot = &shared.bot;
    Ok(json!({
        "id": bot.id,
        "is_bot": true,
        "first_name": bot.first_name,
        "username": bot.username,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false,
    })
    .into())
}
