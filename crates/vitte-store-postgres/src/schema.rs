//! Applying and reverting migrations, for any [`Migrator`] (the embedded one
//! from [`crate::migrator`], or one a test builds).
//!
//! Each call opens a connection of its own and closes it at the end. sqlx
//! serialises migrators with a session-level `pg_advisory_lock` that it does
//! not release when a migration fails; on a pooled connection that lock would
//! outlive the call and block every later migration. Closing the session
//! always releases it.
//!
//! The steps mirror sqlx's `Migrator::run`/`undo`, but decide what is
//! pending only after taking the lock, so concurrent callers each report
//! exactly what they themselves applied.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use vitte_domain::ports::{DownTarget, MigrationInfo, SchemaControl, SchemaStatus, StoreError};

use crate::PgStore;
use crate::error::{db, migrate};

/// sqlx's default bookkeeping table, which `migrate!` migrators use.
const TABLE: &str = "_sqlx_migrations";

/// Applied, pending and unknown migrations of the database at `options`.
/// Works on an empty database (everything pending).
pub async fn status(
    options: &PgConnectOptions,
    migrator: &Migrator,
) -> Result<SchemaStatus, StoreError> {
    let mut conn = open(options).await?;
    let result = read_status(&mut conn, migrator).await;
    close(conn).await;
    result
}

/// Applies every pending migration of `migrator`, each in its own
/// transaction; returns those this call applied, oldest first.
pub async fn up(
    options: &PgConnectOptions,
    migrator: &Migrator,
) -> Result<Vec<MigrationInfo>, StoreError> {
    let mut conn = open(options).await?;
    let result = apply_pending(&mut conn, migrator).await;
    close(conn).await;
    result.map_err(migrate)
}

/// Reverts applied migrations, newest first; returns those it reverted.
pub async fn down(
    options: &PgConnectOptions,
    migrator: &Migrator,
    target: DownTarget,
) -> Result<Vec<MigrationInfo>, StoreError> {
    let mut conn = open(options).await?;
    let result = revert(&mut conn, migrator, target).await;
    close(conn).await;
    result.map_err(migrate)
}

#[async_trait]
impl SchemaControl for PgStore {
    async fn status(&self) -> Result<SchemaStatus, StoreError> {
        status(self.connect_options(), crate::migrator()).await
    }

    async fn up(&self) -> Result<Vec<MigrationInfo>, StoreError> {
        up(self.connect_options(), crate::migrator()).await
    }

    async fn down(&self, target: DownTarget) -> Result<Vec<MigrationInfo>, StoreError> {
        down(self.connect_options(), crate::migrator(), target).await
    }
}

async fn open(options: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    PgConnection::connect_with(options).await.map_err(db)
}

async fn close(conn: PgConnection) {
    // Ending the session is what releases the advisory lock on failure;
    // if even the goodbye fails the server drops the session with the socket.
    if let Err(error) = conn.close().await {
        tracing::warn!(%error, "closing the migration connection failed");
    }
}

fn info(migration: &Migration) -> MigrationInfo {
    MigrationInfo {
        version: migration.version,
        description: migration.description.to_string(),
    }
}

fn up_migrations(migrator: &Migrator) -> impl Iterator<Item = &Migration> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

async fn read_status(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<SchemaStatus, StoreError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let applied: Vec<i64> = if exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
    } else {
        Vec::new()
    };

    let known: HashMap<i64, &Migration> = up_migrations(migrator).map(|m| (m.version, m)).collect();
    let mut status = SchemaStatus {
        applied: Vec::new(),
        pending: Vec::new(),
        unknown: Vec::new(),
    };
    for version in &applied {
        match known.get(version) {
            Some(m) => status.applied.push(info(m)),
            None => status.unknown.push(*version),
        }
    }
    status.pending = up_migrations(migrator)
        .filter(|m| !applied.contains(&m.version))
        .map(info)
        .collect();
    Ok(status)
}

/// Takes the lock and checks the bookkeeping table, as sqlx does before any
/// run: refuses a dirty schema and applied versions this build does not know.
async fn lock_and_check(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<HashMap<i64, Vec<u8>>, MigrateError> {
    conn.lock().await?;
    conn.ensure_migrations_table(TABLE).await?;
    if let Some(version) = conn.dirty_version(TABLE).await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied = conn.list_applied_migrations(TABLE).await?;
    for m in &applied {
        if !migrator.version_exists(m.version) {
            return Err(MigrateError::VersionMissing(m.version));
        }
    }
    Ok(applied
        .into_iter()
        .map(|m| (m.version, m.checksum.into_owned()))
        .collect())
}

async fn apply_pending(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<Vec<MigrationInfo>, MigrateError> {
    let applied = lock_and_check(conn, migrator).await?;
    let mut done = Vec::new();
    for migration in up_migrations(migrator) {
        match applied.get(&migration.version) {
            Some(checksum) if **checksum != *migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            Some(_) => {}
            None => {
                conn.apply(TABLE, migration).await?;
                tracing::info!(version = migration.version, description = %migration.description, "migration applied");
                done.push(info(migration));
            }
        }
    }
    conn.unlock().await?;
    Ok(done)
}

async fn revert(
    conn: &mut PgConnection,
    migrator: &Migrator,
    target: DownTarget,
) -> Result<Vec<MigrationInfo>, MigrateError> {
    let applied = lock_and_check(conn, migrator).await?;
    let mut newest_first: Vec<i64> = applied.into_keys().collect();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    if let DownTarget::Steps(n) = target {
        newest_first.truncate(n);
    }

    // Resolve every down script before running any, so a missing one
    // refuses the whole call instead of stopping halfway.
    let migrations = newest_first
        .into_iter()
        .map(|version| {
            migrator
                .iter()
                .find(|m| m.version == version && m.migration_type.is_down_migration())
                .ok_or(MigrateError::VersionNotPresent(version))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut done = Vec::new();
    for migration in migrations {
        conn.revert(TABLE, migration).await?;
        tracing::info!(version = migration.version, description = %migration.description, "migration reverted");
        done.push(info(migration));
    }
    conn.unlock().await?;
    Ok(done)
}
