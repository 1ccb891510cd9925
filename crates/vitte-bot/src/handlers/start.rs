//! Onboarding: `/start` (with an optional persona deep link), the terms and
//! age gate, persona choice, the greeting, and the language picker.

use vitte_domain::ids::PersonaSlug;
use vitte_domain::model::{MessageState, NewMessage, Persona, Role};
use vitte_domain::services::{escape_html, fill_placeholders};

use super::{Caller, HandleError};
use crate::context::{BotContext, TERMS_VERSION};
use crate::keyboards::{self, Callback};
use crate::middlewares::terms_gate::{self, Gate};

/// `/start [payload]`: the gate first, then the persona the link names or the list.
pub(super) async fn on_start(
    ctx: &BotContext,
    caller: Caller,
    payload: Option<String>,
) -> Result<(), HandleError> {
    let wanted = payload
        .as_deref()
        .and_then(|p| PersonaSlug::parse(&p.to_lowercase()).ok());
    if terms_gate::check(&caller.user) != Gate::Open {
        return ask_terms(ctx, &caller, wanted).await;
    }
    match wanted {
        Some(slug) => choose_persona(ctx, &caller, &slug).await,
        None => show_personas(ctx, &caller, "persona.choose").await,
    }
}

/// Shows the terms with the accept button.
pub(super) async fn ask_terms(
    ctx: &BotContext,
    caller: &Caller,
    then: Option<PersonaSlug>,
) -> Result<(), HandleError> {
    let mut text = String::new();
    if terms_gate::check(&caller.user) == Gate::Updated {
        text.push_str(&ctx.texts.get(caller.lang, "terms.updated", &[]));
        text.push_str("\n\n");
    }
    text.push_str(&ctx.texts.get(caller.lang, "terms.prompt", &[]));
    let keyboard = keyboards::accept_terms(&ctx.texts, caller.lang, then);
    ctx.telegram
        .send_html(caller.chat, &text, Some(keyboard))
        .await?;
    Ok(())
}

/// Button presses.
pub(super) async fn on_callback(
    ctx: &BotContext,
    mut caller: Caller,
    callback: Callback,
) -> Result<(), HandleError> {
    match callback {
        Callback::AcceptTerms(then) => {
            caller.user = ctx
                .store
                .accept_terms(caller.user.id, TERMS_VERSION, true, ctx.clock.now())
                .await?;
            match then {
                Some(slug) => choose_persona(ctx, &caller, &slug).await,
                None => show_personas(ctx, &caller, "terms.accepted").await,
            }
        }
        _ if terms_gate::check(&caller.user) != Gate::Open => ask_terms(ctx, &caller, None).await,
        Callback::Persona(slug) => choose_persona(ctx, &caller, &slug).await,
        Callback::Language(lang) => {
            ctx.store.set_language(caller.user.id, lang.code()).await?;
            let text = ctx.texts.get(lang, "language.set", &[]);
            ctx.telegram.send_html(caller.chat, &text, None).await?;
            Ok(())
        }
    }
}

/// The list of personas with a button each, under the text `key`.
pub(super) async fn show_personas(
    ctx: &BotContext,
    caller: &Caller,
    key: &str,
) -> Result<(), HandleError> {
    let list = ctx.store.list_personas(true).await?;
    if list.is_empty() {
        let text = ctx.texts.get(caller.lang, "persona.none", &[]);
        ctx.telegram.send_html(caller.chat, &text, None).await?;
        return Ok(());
    }
    let text = ctx.texts.get(caller.lang, key, &[]);
    ctx.telegram
        .send_html(caller.chat, &text, Some(keyboards::personas(&list)))
        .await?;
    Ok(())
}

/// Makes `slug` the current persona and, for a dialog that has not started,
/// sends the persona's picture and greeting.
pub(super) async fn choose_persona(
    ctx: &BotContext,
    caller: &Caller,
    slug: &PersonaSlug,
) -> Result<(), HandleError> {
    let Some(persona) = ctx.store.persona_by_slug(slug).await?.filter(|p| p.listed) else {
        return show_personas(ctx, caller, "persona.unknown").await;
    };
    ctx.store
        .set_current_persona(caller.user.id, persona.id)
        .await?;
    let dialog = ctx
        .store
        .open_dialog(caller.user.id, persona.id, ctx.clock.now())
        .await?;
    let started = !ctx.store.recent_messages(dialog.id, 1).await?.is_empty();
    let chosen = ctx.texts.get(
        caller.lang,
        "persona.chosen",
        &[("name", &escape_html(&persona.card.name))],
    );
    if started {
        ctx.telegram.send_html(caller.chat, &chosen, None).await?;
        return Ok(());
    }
    greet(ctx, caller, &persona, dialog.id, &chosen).await
}

/// Sends the persona's picture (if any) and greeting, and stores the greeting
/// as the dialog's first message so the model sees it.
pub(super) async fn greet(
    ctx: &BotContext,
    caller: &Caller,
    persona: &Persona,
    dialog: vitte_domain::ids::DialogId,
    intro: &str,
) -> Result<(), HandleError> {
    let greeting = fill_placeholders(
        &persona.card.first_message,
        &persona.card.name,
        &caller.user.first_name,
    );
    if let Some(picture) = ctx.store.persona_picture(persona.id).await? {
        ctx.telegram
            .send_photo(caller.chat, picture.bytes, intro, None)
            .await?;
    } else {
        ctx.telegram.send_html(caller.chat, intro, None).await?;
    }
    if greeting.trim().is_empty() {
        return Ok(());
    }
    let sent = ctx
        .telegram
        .send_html(
            caller.chat,
            &vitte_domain::services::format_reply(&greeting),
            None,
        )
        .await?;
    let message = NewMessage {
        dialog_id: dialog,
        role: Role::Assistant,
        text: greeting,
        state: MessageState::Sent,
        telegram_message_id: Some(i64::from(sent)),
        update_id: None,
        reply_to: None,
        usage: None,
    };
    ctx.store.append_message(&message, ctx.clock.now()).await?;
    Ok(())
}

/// The language picker.
pub(super) async fn ask_language(ctx: &BotContext, caller: &Caller) -> Result<(), HandleError> {
    let text = ctx.texts.get(caller.lang, "language.choose", &[]);
    ctx.telegram
        .send_html(caller.chat, &text, Some(keyboards::languages(&ctx.texts)))
        .await?;
    Ok(())
}
