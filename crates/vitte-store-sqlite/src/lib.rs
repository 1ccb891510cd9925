//! The SQLite adapter of Vitte's storage ports: the embedded engine `vitte all`
//! runs on with no setup, one file in WAL mode.
//!
//! SQLite lets many connections read at once but only one write at a time.
//! The store therefore keeps two pools: readers, sized from
//! [`PoolSettings`], and a single writer connection, so that writes of this
//! process queue in order instead of racing for the file's write lock. Write
//! transactions start with `BEGIN IMMEDIATE`, which takes the write lock up
//! front: a transaction that read first and then tried to write could fail
//! at once (SQLite does not wait when a lock upgrade would deadlock), whereas
//! an immediate one just waits, up to the busy timeout, for writers of other
//! processes.
//!
//! Timestamps are stored as integer microseconds since the Unix epoch, JSON
//! as text, booleans as 0/1; see `migrations/`.

mod codec;
mod error;
mod repo;
mod schema;
pub mod testing;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, Transaction};
use vitte_domain::ports::{PoolSettings, Store, StoreError};

pub use error::OpenError;

use error::db_err;
use schema::MigrationLock;

/// How long a statement waits for another connection's lock before failing:
/// long enough to ride out a burst of writers from other processes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The migrations this build carries (`migrations/`), for `vitte migrate` and
/// for tests that extend them.
pub fn migrator() -> &'static Migrator {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    &MIGRATOR
}

/// Vitte's storage on one SQLite database. Cloning is cheap: clones share
/// the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    migration_lock: MigrationLock,
    /// Keeps a temporary database's directory alive as long as any clone of
    /// the store (see [`testing`]); declared last so the pools drop first.
    _temp_dir: Option<Arc<tempfile::TempDir>>,
}

/// Where a URL points.
enum Target {
    /// A private in-memory database.
    Memory(SqliteConnectOptions),
    /// A database file.
    File(SqliteConnectOptions, PathBuf),
}

impl SqliteStore {
    /// Opens (creating when missing, with its parent directories) the
    /// database named by `url`: `sqlite://relative/path.db`,
    /// `sqlite:///absolute/path.db`, `sqlite:path.db` or `sqlite::memory:`.
    /// Does not migrate; see [`SchemaControl`](vitte_domain::ports::SchemaControl).
    pub async fn open(url: &str, pool: &PoolSettings) -> Result<Self, StoreError> {
        match parse_url(url)? {
            Target::Memory(options) => Self::open_memory(options, pool).await,
            Target::File(options, path) => Self::open_file_with(options, path, pool, None).await,
        }
    }

    /// Opens (creating when missing) the database file at `path`, bypassing
    /// URL syntax (paths holding `?` or `%`).
    pub async fn open_file(path: &Path, pool: &PoolSettings) -> Result<Self, StoreError> {
        Self::open_file_with(SqliteConnectOptions::new(), path.to_path_buf(), pool, None).await
    }

    /// The pool for reads, and for other components that share the database
    /// (e.g. a job queue). The store's own writes use a separate
    /// single-connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.reader
    }

    async fn open_memory(
        options: SqliteConnectOptions,
        settings: &PoolSettings,
    ) -> Result<Self, StoreError> {
        // Every connection to a shared in-memory database sees the same data,
        // but concurrent connections to it fail on table locks instead of
        // waiting, and the data vanishes when the last connection closes: one
        // connection that never expires serves both reads and writes.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(connect_options(options))
            .await
            .map_err(|source| open_failed(Path::new(":memory:"), source))?;
        Ok(Self {
            reader: pool.clone(),
            writer: pool,
            migration_lock: MigrationLock::in_process(),
            _temp_dir: None,
        })
    }

    pub(crate) async fn open_file_with(
        options: SqliteConnectOptions,
        path: PathBuf,
        settings: &PoolSettings,
        temp_dir: Option<Arc<tempfile::TempDir>>,
    ) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|source| {
                StoreError::Unavailable(Box::new(OpenError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                }))
            })?;
        }
        let options = connect_options(options.filename(&path).create_if_missing(true));
        let open_failed = |source| open_failed(&path, source);
        let migration_lock = MigrationLock::next_to(&path);
        enable_wal(&options, &migration_lock, &path).await?;

        let idle_timeout = settings.idle_timeout;
        let max_lifetime = settings.max_lifetime;
        let max_readers = settings.max_connections.max(1);
        // An embedded connection cannot be cut by a server restart, so
        // pinging it before each use would only cost a round trip.
        let reader = SqlitePoolOptions::new()
            .max_connections(max_readers)
            .min_connections(settings.min_connections.min(max_readers))
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(idle_timeout)
            .max_lifetime(max_lifetime)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(open_failed)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(settings.min_connections.min(1))
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(idle_timeout)
            .max_lifetime(max_lifetime)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(open_failed)?;
        Ok(Self {
            reader,
            writer,
            migration_lock,
            _temp_dir: temp_dir,
        })
    }

    /// Starts a write transaction holding SQLite's write lock from its first
    /// statement (see the crate docs for why).
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

/// Settings every connection gets, whatever the URL said.
fn connect_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
}

/// Splits a `sqlite:` URL into connect options and, for a file, its path.
fn parse_url(url: &str) -> Result<Target, StoreError> {
    let bad = |reason: &str| {
        StoreError::Backend(Box::new(OpenError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        }))
    };
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(bad("expected the scheme sqlite:"));
    };
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    let options = SqliteConnectOptions::from_str(url).map_err(|e| bad(&e.to_string()))?;
    let in_memory = database == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
    if in_memory {
        return Ok(Target::Memory(options));
    }
    if database.is_empty() {
        return Err(bad("no database file path"));
    }
    let path = options.get_filename().to_path_buf();
    Ok(Target::File(options, path))
}

/// The database at `path` could not be opened.
fn open_failed(path: &Path, source: sqlx::Error) -> StoreError {
    StoreError::Unavailable(Box::new(OpenError::Open {
        path: path.to_path_buf(),
        source,
    }))
}

/// Puts the database file in WAL mode (readers never wait for the writer).
/// The mode is stored in the file, so this is done once per file; the switch
/// needs an exclusive lock that SQLite will not wait for, so concurrent
/// first opens take turns under the migration lock.
async fn enable_wal(
    options: &SqliteConnectOptions,
    migration_lock: &MigrationLock,
    path: &Path,
) -> Result<(), StoreError> {
    let failed = |source| open_failed(path, source);
    let mut conn = SqliteConnection::connect_with(options)
        .await
        .map_err(failed)?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .map_err(failed)?;
    if !mode.eq_ignore_ascii_case("wal") {
        let _guard = migration_lock.acquire().await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(&mut conn)
            .await
            .map_err(failed)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite database is not in WAL mode");
        }
    }
    conn.close().await.map_err(failed)
}

#[async_trait]
impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(drop)
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_files_or_memory() {
        let Ok(Target::File(_, path)) = parse_url("sqlite://data/vitte.db") else {
            panic!("relative path")
        };
        assert_eq!(path, Path::new("data/vitte.db"));
        let Ok(Target::File(_, path)) = parse_url("sqlite:///var/lib/vitte.db") else {
            panic!("absolute path")
        };
        assert_eq!(path, Path::new("/var/lib/vitte.db"));
        let Ok(Target::File(_, path)) = parse_url("sqlite:vitte.db?mode=rwc") else {
            panic!("short form")
        };
        assert_eq!(path, Path::new("vitte.db"));
        assert!(matches!(
            parse_url("sqlite::memory:"),
            Ok(Target::Memory(_))
        ));
        assert!(matches!(
            parse_url("sqlite://?mode=memory"),
            Ok(Target::Memory(_))
        ));
    }

    #[test]
    fn other_urls_are_refused() {
        for url in [
            "postgres://localhost/vitte",
            "vitte.db",
            "sqlite://",
            "sqlite://a.db?mode=bogus",
        ] {
            let Err(StoreError::Backend(e)) = parse_url(url) else {
                panic!("{url} was accepted")
            };
            assert!(e.to_string().contains("invalid SQLite URL"), "{e}");
        }
    }
}
