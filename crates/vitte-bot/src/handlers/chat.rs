//! A chat message: stored as pending in the user's active dialog, then the
//! reply generator is woken. Nothing slow happens here: the reply is written
//! off this path, and a crash before it is recovered from the stored message.

use vitte_domain::ids::UpdateId;
use vitte_domain::model::{MessageState, NewMessage, Role};

use vitte_domain::services::escape_html;

use super::{Caller, HandleError, Handled, start};
use crate::context::{BotContext, ReplyJob};
use crate::middlewares::limits::{self, Verdict};

/// Longest message we keep; Telegram's own limit is 4096 characters.
const MAX_TEXT_CHARS: usize = 4096;

pub(super) async fn on_text(
    ctx: &BotContext,
    caller: Caller,
    update: UpdateId,
    telegram_message_id: i32,
    text: &str,
) -> Result<Handled, HandleError> {
    let persona = match caller.user.current_persona_id {
        Some(id) => ctx.store.persona(id).await?,
        None => None,
    };
    let Some(persona) = persona else {
        return start::show_personas(ctx, &caller, "chat.no_persona")
            .await
            .map(|()| Handled::Open);
    };
    let now = ctx.clock.now();
    let subscribed = ctx
        .store
        .active_subscription(caller.user.id, now)
        .await?
        .is_some();
    match limits::message(ctx, &caller.user, subscribed).await {
        Verdict::Allowed => {}
        Verdict::Silent => return Ok(Handled::Open),
        Verdict::Tell(wait) => {
            let text = ctx.texts.get(
                caller.lang,
                "limit.slow_down",
                &[
                    ("name", &escape_html(&persona.card.name)),
                    ("wait", &limits::human_wait(wait)),
                ],
            );
            ctx.telegram.send_html(caller.chat, &text, None).await?;
            return Ok(Handled::Open);
        }
    }
    let dialog = ctx
        .store
        .open_dialog(caller.user.id, persona.id, now)
        .await?;
    let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
    let message = NewMessage {
        dialog_id: dialog.id,
        role: Role::User,
        text,
        state: MessageState::Pending,
        telegram_message_id: Some(i64::from(telegram_message_id)),
        update_id: Some(update),
        reply_to: None,
        usage: None,
    };
    // The message and the update's end are one write: nothing is left to
    // do for the update once the message is stored.
    ctx.store.append_from_update(&message, now).await?;
    // The generator may live in another process; then its recovery sweep
    // picks the message up. Here it is woken at once.
    let _ = ctx.replies.send(ReplyJob {
        dialog: dialog.id,
        chat: caller.chat,
    });
    Ok(Handled::Finished)
}
