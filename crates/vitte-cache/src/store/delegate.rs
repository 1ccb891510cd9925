//! The repositories nothing is cached for: every call goes straight to the
//! wrapped store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{BroadcastId, DialogId, MemoryId, MessageId, UpdateId, UserId};
use vitte_domain::model::{
    Broadcast, BroadcastState, InboundUpdate, Memory, Message, MessageState, ModelUsage,
    NewMessage, UpdateState,
};
use vitte_domain::ports::{
    BroadcastRepo, DownTarget, MemoryRepo, MessageRepo, MigrationInfo, SchemaControl, SchemaStatus,
    StoreError, UpdateInbox,
};

use super::CachedStore;

type Result<T> = std::result::Result<T, StoreError>;

/// Implements `$trait` for [`CachedStore`] by forwarding each listed method
/// to the wrapped store.
macro_rules! delegate {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)* }) => {
        #[async_trait]
        impl $trait for CachedStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

delegate!(MessageRepo {
    fn append_message(&self, message: &NewMessage, now: DateTime<Utc>) -> Result<Message>;
    fn message(&self, id: MessageId) -> Result<Option<Message>>;
    fn recent_messages(&self, dialog: DialogId, limit: u32) -> Result<Vec<Message>>;
    fn pending_messages(&self, dialog: DialogId) -> Result<Vec<Message>>;
    fn set_message_state(&self, ids: &[MessageId], state: MessageState) -> Result<()>;
    fn complete_reply(
        &self,
        answered: &[MessageId],
        reply: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Message>;
    fn reopen_last_exchange(&self, dialog: DialogId) -> Result<Vec<MessageId>>;
    fn dialogs_with_pending(&self, older_than: DateTime<Utc>, limit: u32)
    -> Result<Vec<DialogId>>;
    // Spend figures must be exact: a cached sum would let spending run past a cap.
    fn usage_since(&self, user: Option<UserId>, since: DateTime<Utc>) -> Result<Vec<ModelUsage>>;
});

delegate!(MemoryRepo {
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
});

delegate!(UpdateInbox {
    fn record_update(
        &self,
        id: UpdateId,
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    fn claim_updates(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<InboundUpdate>>;
    fn finish_update(&self, id: UpdateId, state: UpdateState, now: DateTime<Utc>) -> Result<()>;
    fn prune_updates(&self, before: DateTime<Utc>) -> Result<u64>;
});

delegate!(BroadcastRepo {
    fn create_broadcast(
        &self,
        text: &str,
        scheduled_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast>;
    fn broadcast(&self, id: BroadcastId) -> Result<Option<Broadcast>>;
    fn set_broadcast_state(&self, id: BroadcastId, state: BroadcastState) -> Result<()>;
    fn record_delivery(
        &self,
        id: BroadcastId,
        user: UserId,
        delivered: bool,
        now: DateTime<Utc>,
    ) -> Result<bool>;
});

delegate!(SchemaControl {
    fn status(&self) -> Result<SchemaStatus>;
    fn up(&self) -> Result<Vec<MigrationInfo>>;
    fn down(&self, target: DownTarget) -> Result<Vec<MigrationInfo>>;
});
