//! Shared fixtures of the cases: a fixed clock origin, a user, a persona, a
//! dialog and the messages exchanged in it.

use chrono::{DateTime, TimeDelta, Utc};
use vitte_domain::ids::{DialogId, MessageId, PersonaSlug, TelegramUserId, UpdateId};
use vitte_domain::model::{
    Dialog, LoreEntry, MessageState, NewMessage, Persona, PersonaCard, Role, TelegramProfile,
    TokenUsage, User,
};
use vitte_domain::ports::{ReplyCompletion, Store};

/// The instant every case starts at (whole seconds: exact on every engine).
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
}

/// `t0` plus `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(secs)
}

/// A Telegram profile with the given id.
pub fn profile(telegram_id: i64) -> TelegramProfile {
    TelegramProfile {
        telegram_id: TelegramUserId::try_from(telegram_id).expect("positive id"),
        first_name: format!("User{telegram_id}"),
        last_name: None,
        username: Some(format!("user{telegram_id}")),
        language_code: Some("ru".to_owned()),
    }
}

/// Creates a user.
pub async fn user(store: &dyn Store, telegram_id: i64) -> User {
    store
        .upsert_user(&profile(telegram_id), t0())
        .await
        .expect("upsert user")
}

/// A card with every field set, so round trips check every column.
pub fn card(name: &str) -> PersonaCard {
    PersonaCard {
        name: name.to_owned(),
        description: format!("{name} is a lighthouse keeper."),
        personality: "calm, curious".to_owned(),
        scenario: "A stormy evening.".to_owned(),
        first_message: format!("Hello, I am {name}."),
        example_messages: "<START>\n{{user}}: Hi\n{{char}}: Hello there.".to_owned(),
        system_prompt: "Stay in character.".to_owned(),
        post_history_instructions: "Keep replies short.".to_owned(),
        alternate_greetings: vec!["Hi!".to_owned(), "Welcome back.".to_owned()],
        lorebook: vec![LoreEntry {
            keys: vec!["lighthouse".to_owned(), "lamp".to_owned()],
            content: "The lamp was lit in 1890.".to_owned(),
            enabled: true,
            case_sensitive: false,
            constant: false,
            insertion_order: 10,
        }],
        tags: vec!["calm".to_owned(), "sea".to_owned()],
        creator: "vitte".to_owned(),
        creator_notes: "Example card.".to_owned(),
    }
}

/// Creates a persona named `name`.
pub async fn persona(store: &dyn Store, name: &str) -> Persona {
    store
        .upsert_persona(&PersonaSlug::from_name(name), &card(name), None, t0())
        .await
        .expect("upsert persona")
}

/// Opens the dialog of user 1 with persona "Mira", creating both.
pub async fn dialog(store: &dyn Store) -> Dialog {
    let u = user(store, 1).await;
    let p = persona(store, "Mira").await;
    store.open_dialog(u.id, p.id, t0()).await.expect("open")
}

/// A pending user message that arrived in update `update`.
pub fn user_message(dialog: DialogId, text: &str, update: i64) -> NewMessage {
    NewMessage {
        dialog_id: dialog,
        role: Role::User,
        text: text.to_owned(),
        state: MessageState::Pending,
        telegram_message_id: Some(update * 10),
        update_id: Some(UpdateId::try_from(update).expect("update id")),
        reply_to: None,
        usage: None,
    }
}

/// A delivered assistant reply to `to`, with token usage.
pub fn reply(dialog: DialogId, text: &str, to: MessageId) -> NewMessage {
    NewMessage {
        dialog_id: dialog,
        role: Role::Assistant,
        text: text.to_owned(),
        state: MessageState::Sent,
        telegram_message_id: None,
        update_id: None,
        reply_to: Some(to),
        usage: Some(TokenUsage {
            model: "deepseek/deepseek-chat".to_owned(),
            prompt_tokens: 120,
            completion_tokens: 30,
        }),
    }
}

/// A reply that answers `answered` and changes nothing else: no intimacy,
/// no lease to release.
pub fn plain<'a>(answered: &'a [MessageId], reply: &'a NewMessage) -> ReplyCompletion<'a> {
    ReplyCompletion {
        answered,
        reply,
        intimacy: 0,
        lease_owner: None,
    }
}
