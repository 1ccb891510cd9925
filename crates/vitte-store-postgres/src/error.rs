//! Maps sqlx and PostgreSQL errors onto [`StoreError`], so services can
//! retry, answer 409 or report unreadiness without knowing the engine.

use sqlx::error::ErrorKind;
use sqlx::migrate::MigrateError;
use vitte_domain::ids::ParseError;
use vitte_domain::ports::StoreError;

/// SQLSTATEs that mean the server is going away or not accepting work yet:
/// admin/crash shutdown, "cannot connect now" and too many connections.
const UNAVAILABLE_STATES: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];

/// Maps an error of a query.
pub(crate) fn db(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(error)),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(error.to_string())
        }
        sqlx::Error::Database(ref e) => {
            // Class 08 is "connection exception".
            let unavailable = e
                .code()
                .is_some_and(|code| code.starts_with("08") || UNAVAILABLE_STATES.contains(&&*code));
            if unavailable {
                return StoreError::Unavailable(Box::new(error));
            }
            match e.kind() {
                ErrorKind::UniqueViolation | ErrorKind::CheckViolation => {
                    StoreError::Conflict(e.message().to_owned())
                }
                ErrorKind::ForeignKeyViolation => match e.constraint().and_then(referenced) {
                    Some(entity) => StoreError::NotFound(entity),
                    None => StoreError::Conflict(e.message().to_owned()),
                },
                _ => StoreError::Backend(Box::new(error)),
            }
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

/// The entity a foreign key points at, from PostgreSQL's default constraint
/// name `<table>_<column>_fkey`: a violated key means the call named a row
/// that does not exist.
fn referenced(constraint: &str) -> Option<&'static str> {
    let column = constraint.strip_suffix("_fkey")?;
    [
        ("persona_id", "persona"),
        ("user_id", "user"),
        ("dialog_id", "dialog"),
        ("reply_to", "message"),
        ("payment_id", "payment"),
        ("broadcast_id", "broadcast"),
    ]
    .into_iter()
    .find(|(suffix, _)| column.ends_with(suffix))
    .map(|(_, entity)| entity)
}

/// A stored value that does not parse into its domain type.
pub(crate) fn corrupt(error: ParseError) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

/// Maps an error of the migration machinery.
pub(crate) fn migrate(error: MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(e) => db(e),
        MigrateError::VersionMissing(_)
        | MigrateError::VersionMismatch(_)
        | MigrateError::VersionNotPresent(_)
        | MigrateError::Dirty(_) => StoreError::Conflict(error.to_string()),
        other => StoreError::Backend(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_name_the_missing_entity() {
        assert_eq!(referenced("dialogs_user_id_fkey"), Some("user"));
        assert_eq!(referenced("users_current_persona_id_fkey"), Some("persona"));
        assert_eq!(referenced("messages_reply_to_fkey"), Some("message"));
        assert_eq!(
            referenced("broadcast_deliveries_broadcast_id_fkey"),
            Some("broadcast")
        );
        assert_eq!(referenced("dialogs_one_active"), None);
        assert_eq!(referenced("something_else_fkey"), None);
    }

    #[test]
    fn transport_failures_are_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            db(sqlx::Error::Io(refused)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            db(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            db(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
    }
}
