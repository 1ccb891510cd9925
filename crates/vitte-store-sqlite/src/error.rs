//! How SQLite and sqlx errors become [`StoreError`]s, so services can react
//! (retry, 409, 503) without knowing the engine.

use std::io;
use std::path::PathBuf;

use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;
use vitte_domain::ports::StoreError;

/// Why a database could not be opened; the cause inside the [`StoreError`]
/// that [`SqliteStore::open`](crate::SqliteStore::open) returns.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is not one this adapter understands.
    #[error("invalid SQLite URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database's directory did not exist and could not be created.
    #[error("cannot create the directory {} for the SQLite database: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// SQLite refused to open or set up the file.
    #[error("cannot open the SQLite database {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: sqlx::Error,
    },
    /// The lock file that serialises migrations could not be taken.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// A temporary directory for a test database could not be created.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[source] io::Error),
}

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_NOTADB: i64 = 26;
/// Codes that mean "the file cannot be used right now": busy or locked past
/// the busy timeout, an I/O error, a full disk, a file that cannot be opened.
const UNAVAILABLE_CODES: [i64; 5] = [5, 6, 10, 13, 14];

/// Maps an engine error onto the store's error kinds.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let kind = db.kind();
        let code = db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map_or(0, |c| c & 0xff);
        let message = db.message().to_owned();
        return match kind {
            ErrorKind::UniqueViolation
            | ErrorKind::CheckViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::ForeignKeyViolation => StoreError::Conflict(message),
            _ if UNAVAILABLE_CODES.contains(&code) => StoreError::Unavailable(Box::new(e)),
            _ if code == SQLITE_CORRUPT || code == SQLITE_NOTADB => StoreError::Corrupt(message),
            _ => StoreError::Backend(Box::new(e)),
        };
    }
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Backend(Box::new(other)),
    }
}

/// Like [`db_err`], but a foreign-key violation means the row the call
/// refers to does not exist: `NotFound(entity)`.
pub(crate) fn or_missing(entity: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation => {
            StoreError::NotFound(entity)
        }
        _ => db_err(e),
    }
}

/// Maps a migration failure; a failing migration script is reported whole
/// (it names the version).
pub(crate) fn migrate_err(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => db_err(e),
        other => StoreError::Backend(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_are_worth_retrying() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(io::Error::other("disk gone")),
        ] {
            assert!(matches!(db_err(e), StoreError::Unavailable(_)));
        }
    }

    #[test]
    fn decode_failures_are_corrupt_data() {
        let e = sqlx::Error::ColumnNotFound("slug".into());
        assert!(matches!(db_err(e), StoreError::Corrupt(_)));
    }
}
