//! A store wrapper for end-to-end tests of the bot role in this process: it
//! records every call that reaches the database (underneath the cache, as
//! `vitte` assembles it), and can stop this "process" from claiming inbox
//! updates, so a test decides which of several bot roles handles a message.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
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

/// How long a wait for store calls may take.
const WAIT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, StoreError>;

/// What a call to the store is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Reads rows.
    Read,
    /// Writes rows (claiming an update or a lease is a write).
    Write,
    /// Made on a timer whatever the traffic, not by a message: the inbox
    /// finding nothing to claim, the recovery sweep, and the responder's
    /// refresh of everyone's spend (at most once per 30 seconds).
    Periodic,
}

/// The kind of the call recorded under `label`.
pub fn kind(label: &str) -> Kind {
    match label {
        "claim_updates (none)" | "dialogs_with_pending" | "usage_since (everyone)" => {
            Kind::Periodic
        }
        "user"
        | "user_by_telegram_id"
        | "persona"
        | "persona_by_slug"
        | "list_personas"
        | "persona_picture"
        | "active_dialog"
        // Get-or-create: counted as the read it is once the dialog exists.
        | "open_dialog"
        | "dialog"
        | "message"
        | "recent_messages"
        | "pending_messages"
        | "usage_since"
        | "summary"
        | "facts"
        | "active_subscription"
        | "unlocks"
        | "credit_balance"
        | "payment"
        | "payment_by_provider_id"
        | "broadcast"
        | "status"
        | "ping" => Kind::Read,
        _ => Kind::Write,
    }
}

/// Records every call that reaches the wrapped store, in order.
pub struct Recorder {
    inner: Arc<dyn Store>,
    calls: Mutex<Vec<&'static str>>,
    /// How many calls so far, for waiting on them.
    count: watch::Sender<usize>,
    /// While `false`, claiming inbox updates finds none.
    claiming: AtomicBool,
    /// How many more `complete_reply` calls fail.
    failing_replies: AtomicUsize,
}

impl Recorder {
    /// Wraps `inner`, claiming updates.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            claiming: AtomicBool::new(true),
            failing_replies: AtomicUsize::new(0),
        })
    }

    /// Makes the next `n` calls of `complete_reply` fail as an exhausted
    /// pool does (`Unavailable`) without reaching the store; they are
    /// recorded as `complete_reply (unavailable)`.
    pub fn fail_replies(&self, n: usize) {
        self.failing_replies.store(n, Ordering::SeqCst);
    }

    /// Lets this "process" claim inbox updates, or not.
    pub fn claim(&self, claiming: bool) {
        self.claiming.store(claiming, Ordering::SeqCst);
    }

    fn record(&self, label: &'static str) {
        let len = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(label);
            calls.len()
        };
        // Not under the log's lock: a waiter reads the log while holding the
        // watch's.
        self.count.send_replace(len);
    }

    /// Where the log is now.
    pub fn mark(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }

    /// The calls since `mark`.
    pub fn since(&self, mark: usize) -> Vec<&'static str> {
        self.calls.lock().expect("lock")[mark..].to_vec()
    }

    /// Waits until the calls since `mark` include each of `labels` at least once.
    pub async fn wait_for(&self, mark: usize, labels: &[&str]) {
        let mut count = self.count.subscribe();
        let done = tokio::time::timeout(
            WAIT,
            count.wait_for(|_| {
                let calls = self.since(mark);
                labels.iter().all(|l| calls.contains(l))
            }),
        )
        .await;
        assert!(
            matches!(done, Ok(Ok(_))),
            "the store never saw {labels:?}; calls since: {:?}",
            self.since(mark)
        );
    }
}

/// Implements each listed trait for [`Recorder`] by recording and forwarding.
macro_rules! recorded {
    ($($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)* })*) => {
        $(
            #[async_trait]
            impl $trait for Recorder {
                $(
                    async fn $name(&self $(, $arg: $ty)*) -> $ret {
                        self.record(stringify!($name));
                        self.inner.$name($($arg),*).await
                    }
                )*
            }
        )*
    };
}

recorded! {
    UserRepo {
        fn upsert_user(&self, profile: &TelegramProfile, now: DateTime<Utc>) -> Result<User>;
        fn user(&self, id: UserId) -> Result<Option<User>>;
        fn user_by_telegram_id(&self, id: TelegramUserId) -> Result<Option<User>>;
        fn accept_terms(&self, id: UserId, version: i32, age_confirmed: bool, now: DateTime<Utc>) -> Result<User>;
        fn set_language(&self, id: UserId, language: &str) -> Result<()>;
        fn set_blocked_bot(&self, id: UserId, blocked: bool) -> Result<()>;
        fn set_current_persona(&self, id: UserId, persona: PersonaId) -> Result<()>;
    }
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
        fn lease_reply(&self, id: DialogId, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool>;
        fn release_reply(&self, id: DialogId, owner: &str) -> Result<bool>;
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

// Written out: two calls are labelled by what they were asked or found.
#[async_trait]
impl MessageRepo for Recorder {
    async fn append_message(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Message> {
        self.record("append_message");
        self.inner.append_message(message, now).await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>> {
        self.record("message");
        self.inner.message(id).await
    }

    async fn recent_messages(&self, dialog: DialogId, limit: u32) -> Result<Vec<Message>> {
        self.record("recent_messages");
        self.inner.recent_messages(dialog, limit).await
    }

    async fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>> {
        self.record("pending_messages");
        self.inner.pending_messages(dialog).await
    }

    async fn set_message_state(&self, ids: &[MessageId], state: MessageState) -> Result<()> {
        self.record("set_message_state");
        self.inner.set_message_state(ids, state).await
    }

    async fn append_from_update(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message> {
        self.record("append_from_update");
        self.inner.append_from_update(message, now).await
    }

    async fn complete_reply(
        &self,
        completion: &ReplyCompletion<'_>,
        now: DateTime<Utc>,
    ) -> Result<CompletedReply> {
        let failing = self
            .failing_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            self.record("complete_reply (unavailable)");
            return Err(StoreError::Unavailable("pool timed out".into()));
        }
        self.record("complete_reply");
        self.inner.complete_reply(completion, now).await
    }

    async fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>> {
        self.record("reopen_last_exchange");
        self.inner.reopen_last_exchange(dialog).await
    }

    async fn dialogs_with_pending(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DialogId>> {
        self.record("dialogs_with_pending");
        self.inner.dialogs_with_pending(older_than, limit).await
    }

    async fn usage_since(
        &self,
        user: Option<UserId>,
        since: DateTime<Utc>,
    ) -> Result<Vec<ModelUsage>> {
        self.record(if user.is_some() {
            "usage_since"
        } else {
            "usage_since (everyone)"
        });
        self.inner.usage_since(user, since).await
    }
}

#[async_trait]
impl UpdateInbox for Recorder {
    async fn record_update(
        &self,
        id: UpdateId,
        payload: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.record("record_update");
        self.inner.record_update(id, payload, now).await
    }

    async fn claim_updates(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboundUpdate>> {
        let claimed = if self.claiming.load(Ordering::SeqCst) {
            self.inner.claim_updates(limit, now, lease_until).await
        } else {
            Ok(Vec::new())
        };
        self.record(match &claimed {
            Ok(updates) if updates.is_empty() => "claim_updates (none)",
            _ => "claim_updates",
        });
        claimed
    }

    async fn finish_update(
        &self,
        id: UpdateId,
        state: UpdateState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.record("finish_update");
        self.inner.finish_update(id, state, now).await
    }

    async fn prune_updates(&self, before: DateTime<Utc>) -> Result<u64> {
        self.record("prune_updates");
        self.inner.prune_updates(before).await
    }
}

#[async_trait]
impl Store for Recorder {
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }

    async fn ping(&self) -> Result<()> {
        self.record("ping");
        self.inner.ping().await
    }
}

/// The calls of one message, grouped by kind.
#[derive(Debug, Default)]
pub struct Cost {
    /// Reads, by method.
    pub reads: BTreeMap<&'static str, usize>,
    /// Writes, by method.
    pub writes: BTreeMap<&'static str, usize>,
    /// Calls made on timers meanwhile, by method.
    pub periodic: BTreeMap<&'static str, usize>,
}

impl Cost {
    /// `calls`, sorted by kind.
    pub fn of(calls: &[&'static str]) -> Self {
        let mut cost = Self::default();
        for &label in calls {
            let bucket = match kind(label) {
                Kind::Read => &mut cost.reads,
                Kind::Write => &mut cost.writes,
                Kind::Periodic => &mut cost.periodic,
            };
            *bucket.entry(label).or_default() += 1;
        }
        cost
    }

    /// How many reads.
    pub fn reads(&self) -> usize {
        self.reads.values().sum()
    }

    /// How many writes.
    pub fn writes(&self) -> usize {
        self.writes.values().sum()
    }
}
