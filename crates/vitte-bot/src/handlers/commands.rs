//! Slash commands: `/help`, `/persona`, `/reset`, `/retry`, `/language`
//! (`/start` is onboarding's).

use vitte_domain::services::escape_html;

use super::{Caller, HandleError, start};
use crate::context::{BotContext, ReplyJob};

/// A command the bot understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `/start [payload]`.
    Start(Option<String>),
    /// `/help`.
    Help,
    /// `/persona`: choose another persona.
    Persona,
    /// `/reset`: new dialog with the same persona.
    Reset,
    /// `/retry`: regenerate the last reply.
    Retry,
    /// `/language`.
    Language,
    /// Something that looks like a command but is not ours.
    Unknown,
}

impl Command {
    /// Parses `/name[@bot] [args]`; `None` when the text is not a command.
    pub(crate) fn parse(text: &str) -> Option<Command> {
        let rest = text.strip_prefix('/')?;
        let (head, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let name = head
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        let args = args.trim();
        Some(match name.as_str() {
            "start" => Command::Start((!args.is_empty()).then(|| args.to_owned())),
            "help" => Command::Help,
            "persona" => Command::Persona,
            "reset" => Command::Reset,
            "retry" => Command::Retry,
            "language" => Command::Language,
            _ => Command::Unknown,
        })
    }
}

/// Runs a command for a user past the terms gate.
pub(super) async fn run(
    ctx: &BotContext,
    caller: Caller,
    command: Command,
) -> Result<(), HandleError> {
    match command {
        Command::Start(payload) => start::on_start(ctx, caller, payload).await,
        Command::Help | Command::Unknown => {
            let text = ctx.texts.get(caller.lang, "help", &[]);
            ctx.telegram.send_html(caller.chat, &text, None).await?;
            Ok(())
        }
        Command::Persona => start::show_personas(ctx, &caller, "persona.choose").await,
        Command::Language => start::ask_language(ctx, &caller).await,
        Command::Reset => {
            let Some(persona_id) = caller.user.current_persona_id else {
                return start::show_personas(ctx, &caller, "chat.no_persona").await;
            };
            let Some(persona) = ctx.store.persona(persona_id).await? else {
                return start::show_personas(ctx, &caller, "chat.no_persona").await;
            };
            let dialog = ctx
                .store
                .reset_dialog(caller.user.id, persona_id, ctx.clock.now())
                .await?;
            let intro = ctx.texts.get(
                caller.lang,
                "reset.done",
                &[("name", &escape_html(&persona.card.name))],
            );
            start::greet(ctx, &caller, &persona, dialog.id, &intro).await
        }
        Command::Retry => {
            let dialog = match caller.user.current_persona_id {
                Some(p) => ctx.store.active_dialog(caller.user.id, p).await?,
                None => None,
            };
            // While messages are still waiting for their reply, there is
            // nothing to redo yet: reopening the exchange before them would
            // get it answered after them, out of order.
            if let Some(d) = &dialog
                && !ctx.store.pending_messages(d.id).await?.is_empty()
            {
                let _ = ctx.replies.send(ReplyJob {
                    dialog: d.id,
                    chat: caller.chat,
                });
                return Ok(());
            }
            let reopened = match &dialog {
                Some(d) => ctx.store.reopen_last_exchange(d.id).await?,
                None => Vec::new(),
            };
            match dialog {
                Some(d) if !reopened.is_empty() => {
                    let _ = ctx.replies.send(ReplyJob {
                        dialog: d.id,
                        chat: caller.chat,
                    });
                    Ok(())
                }
                _ => {
                    let text = ctx.texts.get(caller.lang, "retry.nothing", &[]);
                    ctx.telegram.send_html(caller.chat, &text, None).await?;
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_bot_names_and_payloads() {
        assert_eq!(Command::parse("/start"), Some(Command::Start(None)));
        assert_eq!(
            Command::parse("/start mira"),
            Some(Command::Start(Some("mira".into())))
        );
        assert_eq!(
            Command::parse("/START@VitteBot  mira "),
            Some(Command::Start(Some("mira".into())))
        );
        assert_eq!(Command::parse("/retry"), Some(Command::Retry));
        assert_eq!(Command::parse("/nope"), Some(Command::Unknown));
        assert_eq!(Command::parse("hello /start"), None);
        assert_eq!(Command::parse("/"), None);
        assert_eq!(Command::parse("/ start"), None);
    }
}
