//! Ports: what the domain needs from storage, as traits. Each engine
//! (PostgreSQL, SQLite) has an adapter crate implementing all of them, and one
//! conformance suite holds every adapter to the same behaviour.
//!
//! Methods that write take `now` from the caller's [`Clock`](crate::Clock) so
//! that stores never read the wall clock themselves.

mod cache;
mod error;
mod limits;
mod pool;
mod schema;
mod store;

pub use cache::{Cache, CacheError};
pub use error::{BoxError, StoreError};
pub use limits::{LimitError, Quota, RateDecision, RateLimiter};
pub use pool::PoolSettings;
pub use schema::{DownTarget, MigrationInfo, SchemaControl, SchemaStatus};
pub use store::{
    BroadcastRepo, CompletedReply, DialogRepo, EntitlementRepo, MemoryRepo, MessageRepo,
    PaymentRepo, PersonaRepo, ReplyCompletion, SettleOutcome, Store, UpdateInbox, UserRepo,
};
