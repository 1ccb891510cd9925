//! Repository traits, one per aggregate, and [`Store`], the bundle an engine
//! adapter provides.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SchemaControl, StoreError};
use crate::ids::{
    BroadcastId, DialogId, MemoryId, MessageId, PaymentId, PersonaId, PersonaSlug, TelegramUserId,
    UpdateId, UserId,
};
use crate::model::{
    Broadcast, BroadcastState, CreditKind, Dialog, Grant, InboundUpdate, Memory, Message,
    MessageState, ModelUsage, NewMessage, NewPayment, Payment, PaymentProvider, PaymentState,
    Persona, PersonaCard, Picture, Subscription, TelegramProfile, Unlock, UpdateState, User,
};

type Result<T> = std::result::Result<T, StoreError>;

/// People.
#[async_trait]
pub trait UserRepo: Send + Sync {
    /// Creates the user on first contact, or refreshes names and `last_seen`
    /// and clears `blocked_bot` (they wrote, so they unblocked us). The
    /// chosen language is set from `language_code` only on creation.
    async fn upsert_user(&self, profile: &TelegramProfile, now: DateTime<Utc>) -> Result<User>;
    /// By our key.
    async fn user(&self, id: UserId) -> Result<Option<User>>;
    /// By Telegram's key.
    async fn user_by_telegram_id(&self, id: TelegramUserId) -> Result<Option<User>>;
    /// Records acceptance of terms `version` (and the age confirmation).
    async fn accept_terms(
        &self,
        id: UserId,
        version: i32,
        age_confirmed: bool,
        now: DateTime<Utc>,
    ) -> Result<User>;
    /// Sets the UI language.
    async fn set_language(&self, id: UserId, language: &str) -> Result<()>;
    /// Sets or clears the blocked-the-bot flag.
    async fn set_blocked_bot(&self, id: UserId, blocked: bool) -> Result<()>;
    /// Sets the persona the user talks to.
    async fn set_current_persona(&self, id: UserId, persona: PersonaId) -> Result<()>;
}

/// Personas.
#[async_trait]
pub trait PersonaRepo: Send + Sync {
    /// Imports a card: creates the persona, or replaces the card (and the
    /// picture, when one is given) of the persona with that slug.
    async fn upsert_persona(
        &self,
        slug: &PersonaSlug,
        card: &PersonaCard,
        picture: Option<&Picture>,
        now: DateTime<Utc>,
    ) -> Result<Persona>;
    /// By key.
    async fn persona(&self, id: PersonaId) -> Result<Option<Persona>>;
    /// By slug.
    async fn persona_by_slug(&self, slug: &PersonaSlug) -> Result<Option<Persona>>;
    /// All personas (only listed ones when `listed_only`), by name.
    async fn list_personas(&self, listed_only: bool) -> Result<Vec<Persona>>;
    /// The picture, if any.
    async fn persona_picture(&self, id: PersonaId) -> Result<Option<Picture>>;
    /// Shows or hides a persona in the list.
    async fn set_persona_listed(&self, id: PersonaId, listed: bool) -> Result<()>;
}

/// Dialogs.
#[async_trait]
pub trait DialogRepo: Send + Sync {
    /// The user's active dialog with the persona, if any.
    async fn active_dialog(&self, user: UserId, persona: PersonaId) -> Result<Option<Dialog>>;
    /// The active dialog, created if there is none; concurrent callers get the same one.
    async fn open_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog>;
    /// Deactivates the active dialog (if any) and opens a new one, atomically.
    async fn reset_dialog(
        &self,
        user: UserId,
        persona: PersonaId,
        now: DateTime<Utc>,
    ) -> Result<Dialog>;
    /// By key.
    async fn dialog(&self, id: DialogId) -> Result<Option<Dialog>>;
    /// Adds `delta` to the intimacy score; returns the new score.
    async fn add_intimacy(&self, id: DialogId, delta: i64, now: DateTime<Utc>) -> Result<i64>;
    /// Takes the right to generate the dialog's next reply until `until`,
    /// unless another owner holds an unexpired lease; renewing one's own lease
    /// succeeds. This is how "one reply at a time per dialog" holds across
    /// processes; a crashed owner's lease simply runs out. When another owner
    /// holds it, a request for one more reply is left on the dialog instead
    /// (`false`): its owner learns of it from [`release_reply`](Self::release_reply)
    /// or [`complete_reply`](MessageRepo::complete_reply) and answers again,
    /// so nobody polls for the lease. Taking the lease clears the request;
    /// renewing it keeps it. `NotFound` for a missing dialog.
    async fn lease_reply(
        &self,
        id: DialogId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives the lease up if `owner` holds it (otherwise does nothing).
    /// `true` when another reply was requested (see
    /// [`lease_reply`](Self::lease_reply)) while `owner` held it, or is still
    /// requested; the caller should answer the dialog again.
    async fn release_reply(&self, id: DialogId, owner: &str) -> Result<bool>;
}

/// What a finished reply changes, stored at once by
/// [`MessageRepo::complete_reply`].
#[derive(Debug, Clone, Copy)]
pub struct ReplyCompletion<'a> {
    /// The user messages the reply answers.
    pub answered: &'a [MessageId],
    /// The reply itself.
    pub reply: &'a NewMessage,
    /// Added to the dialog's intimacy score (may be zero or negative).
    pub intimacy: i64,
    /// The dialog's reply lease is released if this owner holds it.
    pub lease_owner: Option<&'a str>,
}

/// What [`MessageRepo::complete_reply`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedReply {
    /// The stored reply.
    pub message: Message,
    /// The dialog's intimacy score after the reply.
    pub intimacy: i64,
    /// Another reply was requested while the lease was held (see
    /// [`DialogRepo::lease_reply`]): the dialog should be answered again.
    pub reply_wanted: bool,
}

/// Chat messages.
#[async_trait]
pub trait MessageRepo: Send + Sync {
    /// Stores a message. Idempotent by `update_id`: when a message from the
    /// same update is already stored (a handler re-ran after a crash), that
    /// message is returned and nothing is written.
    async fn append_message(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Message>;
    /// By key.
    async fn message(&self, id: MessageId) -> Result<Option<Message>>;
    /// The newest `limit` messages of the dialog, oldest first.
    async fn recent_messages(&self, dialog: DialogId, limit: u32) -> Result<Vec<Message>>;
    /// Unanswered user messages of the dialog, oldest first.
    async fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>>;
    /// Sets the state of user messages.
    async fn set_message_state(&self, ids: &[MessageId], state: MessageState) -> Result<()>;
    /// Stores a user's message that came from an inbox update
    /// (`message.update_id` must be set) and marks that update `Done`, in
    /// one transaction: the handler's only durable step finishes the update
    /// with it. Idempotent like [`append_message`](Self::append_message).
    /// `Conflict` (and nothing stored) without an update id.
    async fn append_from_update(&self, message: &NewMessage, now: DateTime<Utc>)
    -> Result<Message>;
    /// Stores the reply, marks the user messages it answers `answered`, adds
    /// the reply's intimacy to the dialog and gives the dialog's reply lease
    /// up (when `lease_owner` holds it), in one transaction: a crash leaves
    /// all of it or none. `Conflict` when a message from the reply's update
    /// is already stored; `NotFound` when the dialog is missing.
    async fn complete_reply(
        &self,
        completion: &ReplyCompletion<'_>,
        now: DateTime<Utc>,
    ) -> Result<CompletedReply>;
    /// Reopens the latest exchange for `/retry`, in one transaction. If the
    /// dialog has `Failed` user messages, they go back to `Pending`. Otherwise
    /// the newest `Sent` assistant message becomes `Dropped` (superseded) and
    /// the `Answered` user messages after the previous `Sent` assistant
    /// message go back to `Pending`. Returns the reopened user messages' ids,
    /// oldest first; empty when there is nothing to retry.
    async fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>>;
    /// Dialogs with a user message pending since before `older_than`: the
    /// recovery sweep's work list.
    async fn dialogs_with_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DialogId>>;
    /// Token usage of assistant messages created at or after `since`, summed
    /// per model and ordered by model name: one user's (across all their
    /// dialogs, active or not) or everyone's when `user` is `None`. Messages
    /// later superseded by `/retry` still count: their tokens were paid for.
    /// Empty when nothing was spent.
    async fn usage_since(
        &self,
        user: Option<UserId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ModelUsage>>;
}

/// Long-term memory.
#[async_trait]
pub trait MemoryRepo: Send + Sync {
    /// The dialog's rolling summary.
    async fn summary(&self, dialog: DialogId) -> Result<Option<Memory>>;
    /// Replaces the rolling summary.
    async fn put_summary(
        &self,
        dialog: DialogId,
        text: &str,
        covers_until: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Memory>;
    /// Pins a fact.
    async fn add_fact(&self, dialog: DialogId, text: &str, now: DateTime<Utc>) -> Result<Memory>;
    /// Pinned facts, oldest first.
    async fn facts(&self, dialog: DialogId) -> Result<Vec<Memory>>;
    /// Forgets a memory.
    async fn delete_memory(&self, id: MemoryId) -> Result<()>;
}

/// The durable inbox of Telegram updates: stored before Telegram gets its 200.
#[async_trait]
pub trait UpdateInbox: Send + Sync {
    /// Stores an update; `false` when that `update_id` is already stored (a redelivery).
    async fn record_update(
        &self,
        id: UpdateId,
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Claims up to `limit` pending updates whose lease is free or expired,
    /// oldest first, leasing them until `lease_until`. Concurrent claimers
    /// never get the same update while its lease holds. Of each sender
    /// ([`InboundUpdate::sender`](crate::model::InboundUpdate::sender)) only
    /// the oldest pending update is claimable, so one person's updates are
    /// handled one after another even across processes.
    async fn claim_updates(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboundUpdate>>;
    /// Marks a claimed update handled (`Done`) or given up (`Failed`).
    async fn finish_update(
        &self,
        id: UpdateId,
        state: UpdateState,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Deletes finished updates received before `before`; returns how many.
    /// Their ids stop deduplicating, so keep well past Telegram's redelivery window.
    async fn prune_updates(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// Subscriptions, unlocks and credits.
#[async_trait]
pub trait EntitlementRepo: Send + Sync {
    /// The subscription period covering `now`, if any (the one ending last).
    async fn active_subscription(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>>;
    /// Unlocks in force at `now`.
    async fn unlocks(&self, user: UserId, now: DateTime<Utc>) -> Result<Vec<Unlock>>;
    /// Credits left.
    async fn credit_balance(&self, user: UserId, kind: CreditKind) -> Result<i64>;
    /// Takes `amount` credits; fails with `InsufficientCredits` rather than go below zero.
    async fn spend_credits(
        &self,
        user: UserId,
        kind: CreditKind,
        amount: i64,
        now: DateTime<Utc>,
    ) -> Result<i64>;
    /// Applies a grant outside any payment (gifts, support).
    async fn apply_grant(&self, user: UserId, grant: &Grant, now: DateTime<Utc>) -> Result<()>;
}

/// What `settle_payment` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// The payment went from pending to succeeded and its grant was applied.
    Settled(Payment),
    /// It had already succeeded: nothing was applied again.
    AlreadySettled(Payment),
}

/// Payments.
#[async_trait]
pub trait PaymentRepo: Send + Sync {
    /// Records a payment, or returns the existing one with the same provider
    /// id; the flag says whether it was created.
    async fn record_payment(
        &self,
        payment: &NewPayment,
        now: DateTime<Utc>,
    ) -> Result<(Payment, bool)>;
    /// By key.
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>>;
    /// By the provider's id.
    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>>;
    /// Marks a pending payment succeeded and applies its grant in one
    /// transaction; idempotent. A canceled or refunded payment is a `Conflict`.
    async fn settle_payment(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome>;
    /// Moves a payment from `from` to `to`; `false` when it was not in `from`.
    async fn transition_payment(
        &self,
        id: PaymentId,
        from: PaymentState,
        to: PaymentState,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

/// Broadcasts.
#[async_trait]
pub trait BroadcastRepo: Send + Sync {
    /// Creates a draft (or scheduled, when `scheduled_at` is set) broadcast.
    async fn create_broadcast(
        &self,
        text: &str,
        scheduled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast>;
    /// By key.
    async fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>>;
    /// Sets the state.
    async fn set_broadcast_state(&self, id: BroadcastId, state: BroadcastState) -> Result<()>;
    /// Records the outcome for one recipient once; `false` when already recorded.
    async fn record_delivery(
        &self,
        id: BroadcastId,
        user: UserId,
        delivered: bool,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

/// Everything an engine provides. Services take the narrower traits; the
/// binary builds one `Arc<dyn Store>` and hands out views of it.
#[async_trait]
pub trait Store:
    UserRepo
    + PersonaRepo
    + DialogRepo
    + MessageRepo
    + MemoryRepo
    + UpdateInbox
    + EntitlementRepo
    + PaymentRepo
    + BroadcastRepo
    + SchemaControl
{
    /// The engine's name, for logs and `config check`.
    fn engine(&self) -> &'static str;
    /// A cheap round trip to the engine.
    async fn ping(&self) -> Result<()>;
}
