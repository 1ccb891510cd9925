//! Schema versioning, as the `migrate` command and readiness see it.

use async_trait::async_trait;

use super::StoreError;

/// One migration, as listed by `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Version number (the file's prefix).
    pub version: i64,
    /// What it does (from the file name).
    pub description: String,
}

/// Where the schema stands against the migrations this build carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Applied, oldest first.
    pub applied: Vec<MigrationInfo>,
    /// Known to this build but not applied, oldest first.
    pub pending: Vec<MigrationInfo>,
    /// Applied versions this build does not know (a newer build ran); this
    /// build must not run against them.
    pub unknown: Vec<i64>,
}

impl SchemaStatus {
    /// True when the schema is exactly what this build expects.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }

    /// Newest applied version, 0 when none.
    pub fn version(&self) -> i64 {
        self.applied.last().map_or(0, |m| m.version)
    }
}

/// How far `migrate down` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownTarget {
    /// Revert this many of the newest migrations.
    Steps(usize),
    /// Revert everything.
    All,
}

/// Applies and reverts the versioned, reversible migrations of an engine.
/// Each migration runs in its own transaction, under a lock that makes
/// concurrent callers apply it exactly once.
#[async_trait]
pub trait SchemaControl: Send + Sync {
    /// Applied and pending migrations.
    async fn status(&self) -> Result<SchemaStatus, StoreError>;
    /// Applies every pending migration; returns those it applied.
    async fn up(&self) -> Result<Vec<MigrationInfo>, StoreError>;
    /// Reverts migrations, newest first; returns those it reverted.
    async fn down(&self, target: DownTarget) -> Result<Vec<MigrationInfo>, StoreError>;
}
