//! The one error type of the storage boundary.

use crate::model::CreditKind;

/// Any error, boxed, for causes the domain does not inspect.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store. Adapters map engine errors onto these so
/// services can react (retry, 409, 503) without knowing the engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row the call names does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The write contradicts what is stored (a state transition that is not
    /// allowed, a unique value taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A spend would take a credit balance below zero.
    #[error("not enough {kind:?} credits: {balance} left, {wanted} wanted")]
    InsufficientCredits {
        /// Which credits.
        kind: CreditKind,
        /// What is left.
        balance: i64,
        /// What the spend asked for.
        wanted: i64,
    },
    /// The engine cannot be reached now (connection refused, pool timed out);
    /// worth retrying, and what readiness reports.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A stored value did not parse into its domain type.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Anything else the engine reported.
    #[error("store failed: {0}")]
    Backend(#[source] BoxError),
}
