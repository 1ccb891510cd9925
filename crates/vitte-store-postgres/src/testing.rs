//! For tests only: fresh, empty PostgreSQL databases, one per call, so tests
//! never share state. Always compiled so other crates' tests can use it.
//!
//! The server is the one at `VITTE_TEST_POSTGRES_URL` (default
//! [`DEFAULT_SERVER_URL`]). If it cannot be reached the call panics with a
//! message saying so: a test that needs PostgreSQL never silently skips.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};
use vitte_domain::ports::{PoolSettings, SchemaControl, Store};

use crate::PgStore;

/// The server tests use when `VITTE_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Prefix of every database this module creates; the full name is
/// `vitte_t_{pid}_{n}`, so leftovers of dead processes can be recognised.
const PREFIX: &str = "vitte_t_";

static SWEPT: AtomicBool = AtomicBool::new(false);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Creates a new empty database and returns its URL. The first call in a
/// process first drops the databases left by test processes that are gone.
pub async fn fresh_database_url() -> String {
    let server =
        std::env::var("VITTE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
    fresh_database_on(&server).await
}

/// A fresh, migrated database behind a [`PgStore`] with a small pool.
pub async fn fresh_pg_store() -> PgStore {
    let url = fresh_database_url().await;
    let store = PgStore::connect(&url, &pool_settings())
        .await
        .unwrap_or_else(|e| panic!("connecting to the fresh test database {url}: {e}"));
    store
        .up()
        .await
        .unwrap_or_else(|e| panic!("migrating the fresh test database {url}: {e}"));
    store
}

/// A fresh, migrated store, as the conformance suite wants it.
pub async fn fresh_store() -> Arc<dyn Store> {
    Arc::new(fresh_pg_store().await)
}

/// Small enough that many tests running at once stay under the server's
/// connection limit; connections are opened on demand.
pub fn pool_settings() -> PoolSettings {
    PoolSettings {
        max_connections: 8,
        min_connections: 0,
        acquire_timeout: Duration::from_secs(30),
        ..PoolSettings::default()
    }
}

async fn fresh_database_on(server: &str) -> String {
    let mut admin = PgConnection::connect(server).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the test PostgreSQL server at {server}: {e}. \
             Start PostgreSQL there (e.g. `pg_ctlcluster 15 main start`) \
             or point VITTE_TEST_POSTGRES_URL at a running server."
        )
    });
    if !SWEPT.swap(true, Ordering::SeqCst) {
        drop_leftovers(&mut admin).await;
    }

    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    // The name is built here from digits; nothing outside reaches the SQL.
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap_or_else(|e| panic!("creating test database {name} on {server}: {e}"));
    let _ = admin.close().await;

    let mut url = url::Url::parse(server)
        .unwrap_or_else(|e| panic!("VITTE_TEST_POSTGRES_URL {server} is not a URL: {e}"));
    url.set_path(&name);
    url.into()
}

/// Drops `vitte_t_{pid}_*` databases whose process no longer runs.
async fn drop_leftovers(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_else(|e| panic!("listing leftover test databases: {e}"));
    for name in names {
        if owner_is_alive(&name) {
            continue;
        }
        let dropped = admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                name.replace('"', "\"\"")
            )))
            .await;
        if let Err(error) = dropped {
            tracing::warn!(%error, database = %name, "could not drop leftover test database");
        }
    }
}

/// Whether the process that created the database still runs. Names that do
/// not carry a pid are not ours to judge, so they count as alive.
fn owner_is_alive(name: &str) -> bool {
    let pid = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    match pid {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_with_a_dead_pid_are_leftovers() {
        let me = std::process::id();
        assert!(owner_is_alive(&format!("vitte_t_{me}_3")));
        assert!(owner_is_alive("vitte_t_1_0"), "pid 1 always runs");
        // Above the kernel's largest pid (2^22), so never running.
        assert!(!owner_is_alive("vitte_t_4294967295_0"));
        assert!(owner_is_alive("vitte_t_template"));
    }

    #[tokio::test]
    async fn an_unreachable_server_panics_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");

        let outcome = tokio::spawn({
            let url = url.clone();
            async move { fresh_database_on(&url).await }
        })
        .await;

        let panic = outcome.expect_err("must panic").into_panic();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains(&url), "{message}");
        assert!(message.contains("Start PostgreSQL"), "{message}");
    }
}
