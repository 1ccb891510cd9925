//! The entities the product stores: users, personas, dialogs, messages,
//! memories, inbound updates, entitlements, payments and broadcasts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{
    BroadcastId, DialogId, MemoryId, MessageId, Money, ParseError, PaymentId, PersonaId,
    PersonaSlug, SubscriptionId, TelegramUserId, UpdateId, UserId,
};

/// Declares a fieldless enum stored as text, with `as_str` and `parse`.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// The stored text of this value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the stored text.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(ParseError {
                        what: stringify!($name),
                        reason: format!("unknown value {other:?}"),
                    }),
                }
            }
        }
    };
}

/// What Telegram tells us about a person; the input of a user upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramProfile {
    /// Telegram's id of the person.
    pub telegram_id: TelegramUserId,
    /// First name as Telegram gives it (may be empty for deleted accounts).
    pub first_name: String,
    /// Last name, if set.
    pub last_name: Option<String>,
    /// `@username` without the `@`, if set.
    pub username: Option<String>,
    /// IETF language tag from Telegram's client, used to pick a UI language.
    pub language_code: Option<String>,
}

/// A person using the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Our key.
    pub id: UserId,
    /// Telegram's key.
    pub telegram_id: TelegramUserId,
    /// First name, refreshed on every contact.
    pub first_name: String,
    /// Last name, refreshed on every contact.
    pub last_name: Option<String>,
    /// Username, refreshed on every contact.
    pub username: Option<String>,
    /// The UI language the person chose, or Telegram's guess until they choose.
    pub language: Option<String>,
    /// Version of the terms the person accepted; a newer version asks again.
    pub terms_version: Option<i32>,
    /// When they accepted `terms_version`.
    pub terms_accepted_at: Option<DateTime<Utc>>,
    /// Whether they confirmed being of age.
    pub age_confirmed: bool,
    /// The persona the person talks to now; chat messages go to the active
    /// dialog with it.
    pub current_persona_id: Option<PersonaId>,
    /// Set when Telegram answered 403 (the person blocked the bot); cleared on
    /// their next message. Broadcasts and reminders skip such users.
    pub blocked_bot: bool,
    /// First contact.
    pub first_seen: DateTime<Utc>,
    /// Latest contact.
    pub last_seen: DateTime<Utc>,
}

/// One lorebook ("world info") entry of a character card: text inserted into
/// the prompt when one of its keys appears in recent messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LoreEntry {
    /// Words that trigger the entry.
    pub keys: Vec<String>,
    /// Text inserted when triggered.
    pub content: String,
    /// Disabled entries are kept but never inserted.
    pub enabled: bool,
    /// Whether keys match case-sensitively.
    pub case_sensitive: bool,
    /// Always inserted, whatever the keys.
    pub constant: bool,
    /// Lower goes first when entries compete for the token budget.
    pub insertion_order: i32,
}

/// The writable part of a persona, as a Character Card V2/V3 describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonaCard {
    /// Display name.
    pub name: String,
    /// Who the persona is.
    pub description: String,
    /// Personality summary.
    pub personality: String,
    /// Circumstances of the conversation.
    pub scenario: String,
    /// The greeting sent when a dialog starts.
    pub first_message: String,
    /// Example dialog in the card's `<START>` format.
    pub example_messages: String,
    /// Overrides the default system prompt when not empty.
    pub system_prompt: String,
    /// Instructions placed after the chat history ("jailbreak" slot in card terms).
    pub post_history_instructions: String,
    /// Other greetings to pick from.
    pub alternate_greetings: Vec<String>,
    /// The card's lorebook.
    pub lorebook: Vec<LoreEntry>,
    /// Tags for the persona list.
    pub tags: Vec<String>,
    /// Who made the card.
    pub creator: String,
    /// Notes from the card's author; never sent to the model.
    pub creator_notes: String,
}

/// A persona's picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// MIME type, e.g. `image/png`.
    pub mime: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A character people can talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persona {
    /// Our key.
    pub id: PersonaId,
    /// Stable name used in deep links (`/start <slug>`).
    pub slug: PersonaSlug,
    /// Everything the card says.
    pub card: PersonaCard,
    /// Hidden personas stay in the store for existing dialogs but are not offered.
    pub listed: bool,
    /// Whether a picture is stored (fetched separately: it can be large).
    pub has_picture: bool,
    /// First import.
    pub created_at: DateTime<Utc>,
    /// Latest import or edit.
    pub updated_at: DateTime<Utc>,
}

/// A conversation between one user and one persona. Each user has at most one
/// active dialog per persona; `/reset` deactivates it and starts another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Our key.
    pub id: DialogId,
    /// Who talks.
    pub user_id: UserId,
    /// With whom.
    pub persona_id: PersonaId,
    /// Whether this is the user's current dialog with the persona.
    pub active: bool,
    /// Relationship score; levels are derived from it.
    pub intimacy_score: i64,
    /// Start of the dialog.
    pub created_at: DateTime<Utc>,
    /// Latest message in either direction.
    pub updated_at: DateTime<Utc>,
}

text_enum!(
    /// Who wrote a message.
    Role {
        /// The person.
        User => "user",
        /// The persona (the model's reply).
        Assistant => "assistant",
        /// A note we inserted (e.g. a level-up), never sent by a person.
        System => "system",
    }
);

text_enum!(
    /// Where a message is in its life.
    MessageState {
        /// A user message not yet answered; recovery picks these up.
        Pending => "pending",
        /// A user message that has its reply.
        Answered => "answered",
        /// A user message whose reply failed for good; `/retry` re-queues it.
        Failed => "failed",
        /// A user message that was refused (safety, limits) and needs no reply,
        /// or an assistant message superseded by `/retry`; never sent to the model again.
        Dropped => "dropped",
        /// An assistant or system message that was delivered.
        Sent => "sent",
    }
);

/// Tokens a reply cost, for spend accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Model that produced the reply (after fallbacks).
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: i32,
    /// Completion tokens.
    pub completion_tokens: i32,
}

/// Tokens spent with one model over a period, summed; what spend caps are
/// computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUsage {
    /// The model that produced the replies; prices are per model.
    pub model: String,
    /// Prompt tokens, summed.
    pub prompt_tokens: i64,
    /// Completion tokens, summed (usually priced higher than prompt tokens).
    pub completion_tokens: i64,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The dialog it belongs to.
    pub dialog_id: DialogId,
    /// Author.
    pub role: Role,
    /// Text.
    pub text: String,
    /// Initial state.
    pub state: MessageState,
    /// Telegram's id of the message in the chat, when known.
    pub telegram_message_id: Option<i64>,
    /// The update it came from, for user messages.
    pub update_id: Option<UpdateId>,
    /// For an assistant message, the last user message it answers.
    pub reply_to: Option<MessageId>,
    /// Tokens spent, for assistant messages.
    pub usage: Option<TokenUsage>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Our key; orders the dialog.
    pub id: MessageId,
    /// The dialog.
    pub dialog_id: DialogId,
    /// Author.
    pub role: Role,
    /// Text.
    pub text: String,
    /// Life-cycle state.
    pub state: MessageState,
    /// Telegram's id of the message in the chat.
    pub telegram_message_id: Option<i64>,
    /// The update it came from.
    pub update_id: Option<UpdateId>,
    /// What it answers.
    pub reply_to: Option<MessageId>,
    /// Tokens spent.
    pub usage: Option<TokenUsage>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

text_enum!(
    /// Kinds of long-term memory.
    MemoryKind {
        /// The rolling summary of messages older than the context window (one per dialog).
        Summary => "summary",
        /// A fact worth keeping ("her cat is called Tom").
        Fact => "fact",
    }
);

/// A piece of long-term memory of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Our key.
    pub id: MemoryId,
    /// The dialog.
    pub dialog_id: DialogId,
    /// Summary or fact.
    pub kind: MemoryKind,
    /// The text.
    pub text: String,
    /// For a summary: the newest message it covers.
    pub covers_until: Option<MessageId>,
    /// Latest change.
    pub updated_at: DateTime<Utc>,
}

text_enum!(
    /// Processing state of an inbound Telegram update.
    UpdateState {
        /// Stored, not yet handled (or its handler died and the lease ran out).
        Pending => "pending",
        /// Handled.
        Done => "done",
        /// Handling failed too often; kept for inspection.
        Failed => "failed",
    }
);

/// A Telegram update as received, kept until handled so that an acknowledged
/// update is never lost.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundUpdate {
    /// Telegram's id; unique.
    pub update_id: UpdateId,
    /// The update's JSON as received.
    pub payload: serde_json::Value,
    /// Processing state.
    pub state: UpdateState,
    /// How many times a handler has claimed it.
    pub attempts: i32,
    /// Arrival.
    pub received_at: DateTime<Utc>,
}

impl InboundUpdate {
    /// Who sent this update: the `from.id` of its message, edit, button press
    /// or pre-checkout query. Updates of one sender are handed out in order;
    /// updates without one (channel posts, unknown kinds) are ordered by nobody.
    pub fn sender(&self) -> Option<i64> {
        sender_of(&self.payload)
    }
}

/// The sender of a Telegram update's JSON, as [`InboundUpdate::sender`].
pub fn sender_of(payload: &serde_json::Value) -> Option<i64> {
    [
        "message",
        "edited_message",
        "callback_query",
        "pre_checkout_query",
    ]
    .iter()
    .find_map(|k| payload.get(k)?.get("from")?.get("id")?.as_i64())
}

/// A paid subscription period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Our key.
    pub id: SubscriptionId,
    /// Subscriber.
    pub user_id: UserId,
    /// Plan name (e.g. `premium`); plans themselves live in configuration.
    pub plan: String,
    /// Start of the period.
    pub starts_at: DateTime<Utc>,
    /// End of the period (exclusive).
    pub ends_at: DateTime<Utc>,
    /// The payment that bought it.
    pub payment_id: Option<PaymentId>,
}

/// A feature unlocked for a user (optionally for one persona only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlock {
    /// Who.
    pub user_id: UserId,
    /// Feature name (e.g. `intimacy_level_3`, `voice`).
    pub feature: String,
    /// Limited to this persona, or every persona when `None`.
    pub persona_id: Option<PersonaId>,
    /// When granted.
    pub granted_at: DateTime<Utc>,
    /// When it lapses; never when `None`.
    pub expires_at: Option<DateTime<Utc>>,
}

text_enum!(
    /// Consumable credits.
    CreditKind {
        /// One voice reply each.
        Voice => "voice",
        /// One picture each.
        Image => "image",
    }
);

text_enum!(
    /// Who took the money.
    PaymentProvider {
        /// Telegram Stars (in-app currency `XTR`).
        TelegramStars => "telegram_stars",
        /// YooKassa (cards, SBP) in roubles.
        YooKassa => "yookassa",
    }
);

text_enum!(
    /// Life-cycle of a payment.
    PaymentState {
        /// Created; money not yet confirmed.
        Pending => "pending",
        /// Money received and the purchase granted.
        Succeeded => "succeeded",
        /// Abandoned or declined.
        Canceled => "canceled",
        /// Money returned; the grant is revoked by the billing service.
        Refunded => "refunded",
    }
);

/// A payment to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// Payer.
    pub user_id: UserId,
    /// Provider.
    pub provider: PaymentProvider,
    /// The provider's id of the payment; unique per provider, so a repeated
    /// notification maps to the same row.
    pub provider_payment_id: String,
    /// Amount.
    pub amount: Money,
    /// What was bought (a product code from configuration).
    pub product: String,
}

/// A stored payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Our key.
    pub id: PaymentId,
    /// Payer.
    pub user_id: UserId,
    /// Provider.
    pub provider: PaymentProvider,
    /// Provider's id.
    pub provider_payment_id: String,
    /// Amount.
    pub amount: Money,
    /// Product code.
    pub product: String,
    /// State.
    pub state: PaymentState,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Latest state change.
    pub updated_at: DateTime<Utc>,
}

/// What a settled payment grants; applied in the same transaction that marks
/// the payment succeeded, so money and goods never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Extends (or starts) a subscription by `days`.
    Subscription {
        /// Plan name.
        plan: String,
        /// Length of the period.
        days: i64,
    },
    /// Unlocks a feature.
    Unlock {
        /// Feature name.
        feature: String,
        /// Persona it is limited to.
        persona_id: Option<PersonaId>,
        /// Lifetime in days; forever when `None`.
        days: Option<i64>,
    },
    /// Adds credits.
    Credits {
        /// Which credits.
        kind: CreditKind,
        /// How many.
        amount: i64,
    },
}

text_enum!(
    /// Life-cycle of a broadcast.
    BroadcastState {
        /// Being written.
        Draft => "draft",
        /// Waiting for its time.
        Scheduled => "scheduled",
        /// Being delivered.
        Running => "running",
        /// Delivered to everyone it could reach.
        Done => "done",
        /// Stopped by an operator.
        Canceled => "canceled",
    }
);

/// A message sent to many users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// Our key.
    pub id: BroadcastId,
    /// Text (Telegram HTML).
    pub text: String,
    /// State.
    pub state: BroadcastState,
    /// When to start; at once when `None`.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Recipients reached.
    pub sent: i64,
    /// Recipients that could not be reached.
    pub failed: i64,
    /// Creation.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_enums_round_trip() {
        for s in [
            MessageState::Pending,
            MessageState::Answered,
            MessageState::Failed,
            MessageState::Dropped,
            MessageState::Sent,
        ] {
            assert_eq!(MessageState::parse(s.as_str()), Ok(s));
        }
        assert_eq!(
            PaymentProvider::parse("yookassa"),
            Ok(PaymentProvider::YooKassa)
        );
        assert!(Role::parse("robot").is_err());
    }
}
