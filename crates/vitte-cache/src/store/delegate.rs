//! The repositories nothing is cached for: every call goes straight to the
//! wrapped store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{BroadcastId, UpdateId, UserId};
use vitte_domain::model::{Broadcast, BroadcastState, InboundUpdate, UpdateState};
use vitte_domain::ports::{
    BroadcastRepo, DownTarget, MigrationInfo, SchemaControl, SchemaStatus, StoreError, UpdateInbox,
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
