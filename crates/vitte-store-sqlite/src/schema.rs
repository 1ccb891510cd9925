//! Versioned, reversible migrations, applied once even when many processes
//! run `migrate up` at the same moment.
//!
//! sqlx's migrator takes no lock on SQLite, so for a file database every
//! status, up and down holds an exclusive OS lock on `<db file>.migrate.lock`
//! (an in-memory database lives in one process: a mutex does). Migration
//! bookkeeping stays in sqlx's own `_sqlx_migrations` table, and each
//! migration runs with its bookkeeping row in one transaction, so a failing
//! one leaves the schema at the previous version.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::migrate::{Migrate, Migration, Migrator};
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{Mutex, OwnedMutexGuard};
use vitte_domain::ports::{DownTarget, MigrationInfo, SchemaControl, SchemaStatus, StoreError};

use crate::SqliteStore;
use crate::codec::col;
use crate::error::{OpenError, db_err, migrate_err};

/// sqlx's bookkeeping table (its default name).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What makes concurrent migrators take turns.
#[derive(Debug, Clone)]
pub(crate) enum MigrationLock {
    /// An OS lock on a file beside the database, which other processes honour.
    File(Arc<PathBuf>),
    /// A mutex shared by the clones of a store on an in-memory database.
    InProcess(Arc<Mutex<()>>),
}

/// Held while migrating; dropping it releases the lock.
pub(crate) enum LockGuard {
    /// Closing the file releases the OS lock.
    File { _file: File },
    /// Dropping the guard unlocks the mutex.
    InProcess { _guard: OwnedMutexGuard<()> },
}

impl MigrationLock {
    /// The lock for the database file at `db_path`: `<db file>.migrate.lock`.
    pub(crate) fn next_to(db_path: &Path) -> Self {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".migrate.lock");
        Self::File(Arc::new(PathBuf::from(name)))
    }

    /// A lock for a database only this process can see.
    pub(crate) fn in_process() -> Self {
        Self::InProcess(Arc::new(Mutex::new(())))
    }

    /// Waits for the lock.
    pub(crate) async fn acquire(&self) -> Result<LockGuard, StoreError> {
        match self {
            Self::File(path) => {
                let lock_path = Arc::clone(path);
                let locked = tokio::task::spawn_blocking(move || {
                    let file = OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&*lock_path)?;
                    file.lock()?;
                    Ok(file)
                })
                .await
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
                match locked {
                    Ok(file) => Ok(LockGuard::File { _file: file }),
                    Err(source) => Err(StoreError::Unavailable(Box::new(OpenError::Lock {
                        path: path.to_path_buf(),
                        source,
                    }))),
                }
            }
            Self::InProcess(mutex) => Ok(LockGuard::InProcess {
                _guard: Arc::clone(mutex).lock_owned().await,
            }),
        }
    }
}

/// One row of the bookkeeping table.
struct Applied {
    description: String,
    success: bool,
    checksum: Vec<u8>,
}

fn info(m: &Migration) -> MigrationInfo {
    MigrationInfo {
        version: m.version,
        description: m.description.to_string(),
    }
}

/// The forward migrations of `migrator`, oldest first.
fn forward(migrator: &Migrator) -> impl Iterator<Item = &Migration> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

/// Applied migrations by version, without creating the bookkeeping table
/// (status must not write to a database nobody has migrated yet).
async fn applied(conn: &mut SqliteConnection) -> Result<BTreeMap<i64, Applied>, StoreError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    if !exists {
        return Ok(BTreeMap::new());
    }
    let rows = sqlx::query(
        "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            Ok((
                col(row, "version")?,
                Applied {
                    description: col(row, "description")?,
                    success: col(row, "success")?,
                    checksum: col(row, "checksum")?,
                },
            ))
        })
        .collect()
}

fn status_of(migrator: &Migrator, applied: &BTreeMap<i64, Applied>) -> SchemaStatus {
    let known: BTreeMap<i64, &Migration> = forward(migrator).map(|m| (m.version, m)).collect();
    SchemaStatus {
        applied: applied
            .iter()
            .map(|(&version, a)| MigrationInfo {
                version,
                description: known
                    .get(&version)
                    .map_or_else(|| a.description.clone(), |m| m.description.to_string()),
            })
            .collect(),
        pending: known
            .values()
            .filter(|m| !applied.contains_key(&m.version))
            .map(|m| info(m))
            .collect(),
        unknown: applied
            .keys()
            .copied()
            .filter(|v| !known.contains_key(v))
            .collect(),
    }
}

/// Refuses to touch a schema that an interrupted or different migration left behind.
fn check_applied(migrator: &Migrator, applied: &BTreeMap<i64, Applied>) -> Result<(), StoreError> {
    if let Some((version, _)) = applied.iter().find(|(_, a)| !a.success) {
        return Err(StoreError::Conflict(format!(
            "migration {version} is marked as failed in {MIGRATIONS_TABLE}"
        )));
    }
    let known: HashSet<i64> = forward(migrator).map(|m| m.version).collect();
    if let Some(version) = applied.keys().find(|v| !known.contains(v)) {
        return Err(StoreError::Conflict(format!(
            "the database has migration {version}, which this build does not know; \
             run a newer build"
        )));
    }
    for m in forward(migrator) {
        if applied
            .get(&m.version)
            .is_some_and(|a| a.checksum != *m.checksum)
        {
            return Err(StoreError::Conflict(format!(
                "migration {} was changed after it was applied",
                m.version
            )));
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Applied and pending migrations of `migrator` (this build's are
    /// [`migrator()`](crate::migrator)).
    pub async fn status_with(&self, migrator: &Migrator) -> Result<SchemaStatus, StoreError> {
        let _lock = self.migration_lock.acquire().await?;
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        let applied = applied(&mut conn).await?;
        Ok(status_of(migrator, &applied))
    }

    /// Applies every pending migration of `migrator`, oldest first; returns
    /// those it applied.
    pub async fn up_with(&self, migrator: &Migrator) -> Result<Vec<MigrationInfo>, StoreError> {
        let _lock = self.migration_lock.acquire().await?;
        let mut conn = self.writer.acquire().await.map_err(db_err)?;
        conn.ensure_migrations_table(MIGRATIONS_TABLE)
            .await
            .map_err(migrate_err)?;
        let applied = applied(&mut conn).await?;
        check_applied(migrator, &applied)?;
        let mut done = Vec::new();
        for m in forward(migrator).filter(|m| !applied.contains_key(&m.version)) {
            conn.apply(MIGRATIONS_TABLE, m).await.map_err(migrate_err)?;
            tracing::info!(version = m.version, description = %m.description, "applied migration");
            done.push(info(m));
        }
        Ok(done)
    }

    /// Reverts applied migrations of `migrator`, newest first; returns those
    /// it reverted. Checks that every one has a down script before reverting
    /// any.
    pub async fn down_with(
        &self,
        migrator: &Migrator,
        target: DownTarget,
    ) -> Result<Vec<MigrationInfo>, StoreError> {
        let steps = match target {
            DownTarget::Steps(0) => return Ok(Vec::new()),
            DownTarget::Steps(n) => n,
            DownTarget::All => usize::MAX,
        };
        let _lock = self.migration_lock.acquire().await?;
        let mut conn = self.writer.acquire().await.map_err(db_err)?;
        let applied = applied(&mut conn).await?;
        check_applied(migrator, &applied)?;
        let downs: BTreeMap<i64, &Migration> = migrator
            .iter()
            .filter(|m| m.migration_type.is_down_migration())
            .map(|m| (m.version, m))
            .collect();
        let plan = applied
            .keys()
            .rev()
            .take(steps)
            .map(|version| {
                downs.get(version).copied().ok_or_else(|| {
                    StoreError::Conflict(format!("migration {version} has no down script"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut done = Vec::new();
        for m in plan {
            conn.revert(MIGRATIONS_TABLE, m)
                .await
                .map_err(migrate_err)?;
            tracing::info!(version = m.version, description = %m.description, "reverted migration");
            done.push(info(m));
        }
        Ok(done)
    }
}

#[async_trait]
impl SchemaControl for SqliteStore {
    async fn status(&self) -> Result<SchemaStatus, StoreError> {
        self.status_with(crate::migrator()).await
    }

    async fn up(&self) -> Result<Vec<MigrationInfo>, StoreError> {
        self.up_with(crate::migrator()).await
    }

    async fn down(&self, target: DownTarget) -> Result<Vec<MigrationInfo>, StoreError> {
        self.down_with(crate::migrator(), target).await
    }
}
