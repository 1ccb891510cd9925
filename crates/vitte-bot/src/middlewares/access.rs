//! Who may talk to the bot: people (not bots) in private chats. Everything
//! else is acknowledged and ignored.

use teloxide_core::types::{Chat, User as TgUser};
use vitte_domain::ids::TelegramUserId;
use vitte_domain::model::TelegramProfile;

/// The profile of a person allowed to use the bot in `chat`, or `None`.
pub fn admit(from: Option<&TgUser>, chat: &Chat) -> Option<TelegramProfile> {
    let from = from?;
    if from.is_bot || !chat.is_private() || i64::try_from(from.id.0).ok() != Some(chat.id.0) {
        return None;
    }
    profile(from)
}

/// Telegram's user as our profile; `None` for ids that are not valid user ids.
pub fn profile(from: &TgUser) -> Option<TelegramProfile> {
    let telegram_id = TelegramUserId::try_from(i64::try_from(from.id.0).ok()?).ok()?;
    Some(TelegramProfile {
        telegram_id,
        first_name: from.first_name.clone(),
        last_name: from.last_name.clone(),
        username: from.username.clone(),
        language_code: from.language_code.clone(),
    })
}
