//! A store wrapper that counts the calls reaching the real store, so tests
//! can tell what the cache saved; its `user` reads can be held at a gate to
//! make concurrent callers pile up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use vitte_domain::ids::{
    BroadcastId, DialogId, MemoryId, MessageId, PaymentId, PersonaId, PersonaSlug, TelegramUserId,
    UpdateId, UserId,
};
use vitte_domain::model::{
    Broadcast, BroadcastState, CreditKind, Dialog, Grant, InboundUpdate, Memory, Message,
    MessageState, ModelUsage, NewMessage, NewPayment, Payment, PaymentProvider, PaymentState,
    Persona, PersonaCard, Picture, Subscription, TelegramProfile, Unlock, UpdateState, User,
};
use vitte_domain::ports::{
    BroadcastRepo, CompletedReply, DialogRepo, DownTarget, EntitlementRepo, MemoryRepo,
    MessageRepo, MigrationInfo, PaymentRepo, PersonaRepo, ReplyCompletion, SchemaControl,
    SchemaStatus, SettleOutcome, Store, StoreError, UpdateInbox, UserRepo,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Counts every call by method name, then passes it on.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    /// While `false`, `user` reads wait (after being counted).
    gate: watch::Sender<bool>,
}

impl CountingStore {
    /// Wraps `inner`, with the gate open.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(BTreeMap::new()),
            gate: watch::Sender::new(true),
        })
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().expect("lock").entry(method).or_default() += 1;
    }

    /// Calls of `method` so far.
    pub fn calls(&self, method: &str) -> u64 {
        self.calls
            .lock()
            .expect("lock")
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// Calls of every method so far, by name.
    pub fn all_calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().expect("lock").clone()
    }

    /// Total calls so far.
    pub fn total(&self) -> u64 {
        self.calls.lock().expect("lock").values().sum()
    }

    /// Makes `user` reads wait until [`CountingStore::open_gate`].
    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    /// Lets waiting and later `user` reads through.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }
}

/// Implements each listed trait for [`CountingStore`] by counting and forwarding.
macro_rules! counted {
    ($($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)* })*) => {
        $(
            #[async_trait]
            impl $trait for CountingStore {
                $(
                    async fn $name(&self $(, $arg: $ty)*) -> $ret {
                        self.count(stringify!($name));
                        self.inner.$name($($arg),*).await
                    }
                )*
            }
        )*
    };
}

counted! {
    PersonaRepo {
        fn upsert_persona(
            &self,
            slug: &PersonaSlug,
            card: &PersonaCard,
            picture: Option<&Picture>,
            now: DateTime<Utc>,
        ) -> Result<Persona>;
        fn persona(&self, id: PersonaId) -> Result<Option<Persona>>;
        fn persona_by_slug(&self, slug: &PersonaSlug) -> Result<Option<Persona>>;
        fn list_personas(&self, listed_only: bool) -> Result<Vec<Persona>>;
        fn persona_picture(&self, id: PersonaId) -> Result<Option<Picture>>;
        fn set_persona_listed(&self, id: PersonaId, listed: bool) -> Result<()>;
    }
    DialogRepo {
        fn active_dialog(&self, user: UserId, persona: PersonaId) -> Result<Option<Dialog>>;
        fn open_dialog(&self, user: UserId, persona: PersonaId, now: DateTime<Utc>) -> Result<Dialog>;
        fn reset_dialog(&self, user: UserId, persona: PersonaId, now: DateTime<Utc>) -> Result<Dialog>;
        fn dialog(&self, id: DialogId) -> Result<Option<Dialog>>;
        fn add_intimacy(&self, id: DialogId, delta: i64, now: DateTime<Utc>) -> Result<i64>;
        fn lease_reply(
            &self,
            id: DialogId,
            owner: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<bool>;
        fn release_reply(&self, id: DialogId, owner: &str) -> Result<bool>;
    }
    MessageRepo {
        fn append_message(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Message>;
        fn message(&self, id: MessageId) -> Result<Option<Message>>;
        fn recent_messages(&self, dialog: DialogId, limit: u32) -> Result<Vec<Message>>;
        fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>>;
        fn set_message_state(&self, ids: &[MessageId], state: MessageState) -> Result<()>;
        fn append_from_update(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Message>;
        fn complete_reply(
            &self,
            completion: &ReplyCompletion<'_>,
            now: DateTime<Utc>,
        ) -> Result<CompletedReply>;
        fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>>;
        fn dialogs_with_pending(&self, older_than: DateTime<Utc>, limit: u32) -> Result<Vec<DialogId>>;
        fn usage_since(&self, user: Option<UserId>, since: DateTime<Utc>) -> Result<Vec<ModelUsage>>;
    }
    MemoryRepo {
        fn summary(&self, dialog: DialogId) -> Result<Option<Memory>>;
        fn put_summary(
            &self,
            dialog: DialogId,
            text: &str,
            covers_until: MessageId,
            now: DateTime<Utc>,
        ) -> Result<Memory>;
        fn add_fact(&self, dialog: DialogId, text: &str, now: DateTime<Utc>) -> Result<Memory>;
        fn facts(&self, dialog: DialogId) -> Result<Vec<Memory>>;
        fn delete_memory(&self, id: MemoryId) -> Result<()>;
    }
    UpdateInbox {
        fn record_update(&self, id: UpdateId, payload: &serde_json::Value, now: DateTime<Utc>) -> Result<bool>;
        fn claim_updates(
            &self,
            limit: u32,
            now: DateTime<Utc>,
            lease_until: DateTime<Utc>,
        ) -> Result<Vec<InboundUpdate>>;
        fn finish_update(&self, id: UpdateId, state: UpdateState, now: DateTime<Utc>) -> Result<()>;
        fn prune_updates(&self, before: DateTime<Utc>) -> Result<u64>;
    }
    EntitlementRepo {
        fn active_subscription(&self, user: UserId, now: DateTime<Utc>) -> Result<Option<Subscription>>;
        fn unlocks(&self, user: UserId, now: DateTime<Utc>) -> Result<Vec<Unlock>>;
        fn credit_balance(&self, user: UserId, kind: CreditKind) -> Result<i64>;
        fn spend_credits(&self, user: UserId, kind: CreditKind, amount: i64, now: DateTime<Utc>) -> Result<i64>;
        fn apply_grant(&self, user: UserId, grant: &Grant, now: DateTime<Utc>) -> Result<()>;
    }
    PaymentRepo {
        fn record_payment(&self, payment: &NewPayment, now: DateTime<Utc>) -> Result<(Payment, bool)>;
        fn payment(&self, id: PaymentId) -> Result<Option<Payment>>;
        fn payment_by_provider_id(&self, provider: PaymentProvider, id: &str) -> Result<Option<Payment>>;
        fn settle_payment(
            &self,
            provider: PaymentProvider,
            id: &str,
            grant: &Grant,
            now: DateTime<Utc>,
        ) -> Result<SettleOutcome>;
        fn transition_payment(
            &self,
            id: PaymentId,
            from: PaymentState,
            to: PaymentState,
            now: DateTime<Utc>,
        ) -> Result<bool>;
    }
    BroadcastRepo {
        fn create_broadcast(
            &self,
            text: &str,
            scheduled_at: Option<DateTime<Utc>>,
            now: DateTime<Utc>,
        ) -> Result<Broadcast>;
        fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>>;
        fn set_broadcast_state(&self, id: BroadcastId, state: BroadcastState) -> Result<()>;
        fn record_delivery(&self, id: BroadcastId, user: UserId, delivered: bool, now: DateTime<Utc>) -> Result<bool>;
    }
    SchemaControl {
        fn status(&self) -> Result<SchemaStatus>;
        fn up(&self) -> Result<Vec<MigrationInfo>>;
        fn down(&self, target: DownTarget) -> Result<Vec<MigrationInfo>>;
    }
}

// Written out because `user` waits at the gate.
#[async_trait]
impl UserRepo for CountingStore {
    async fn upsert_user(&self, profile: &TelegramProfile, now: DateTime<Utc>) -> Result<User> {
        self.count("upsert_user");
        self.inner.upsert_user(profile, now).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.count("user");
        let mut gate = self.gate.subscribe();
        gate.wait_for(|open| *open).await.expect("gate");
        self.inner.user(id).await
    }

    async fn user_by_telegram_id(&self, id: TelegramUserId) -> Result<Option<User>> {
        self.count("user_by_telegram_id");
        self.inner.user_by_telegram_id(id).await
    }

    async fn accept_terms(
        &self,
        id: UserId,
        version: i32,
        age_confirmed: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        self.count("accept_terms");
        self.inner
            .accept_terms(id, version, age_confirmed, now)
            .await
    }

    async fn set_language(&self, id: UserId, language: &str) -> Result<()> {
        self.count("set_language");
        self.inner.set_language(id, language).await
    }

    async fn set_blocked_bot(&self, id: UserId, blocked: bool) -> Result<()> {
        self.count("set_blocked_bot");
        self.inner.set_blocked_bot(id, blocked).await
    }

    async fn set_current_persona(&self, id: UserId, persona: PersonaId) -> Result<()> {
        self.count("set_current_persona");
        self.inner.set_current_persona(id, persona).await
    }
}

#[async_trait]
impl Store for CountingStore {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn ping(&self) -> Result<()> {
        self.count("ping");
        self.inner.ping().await
    }
}
