//! Schema control on SQLite: the full up/down cycle, concurrent `up` from
//! many stores on one file, and a failing migration leaving no trace.

use std::path::Path;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use vitte_domain::ports::{DownTarget, MigrationInfo, SchemaControl, StoreError};
use vitte_store_sqlite::testing::{pool_settings, unmigrated_temp_store};
use vitte_store_sqlite::{SqliteStore, migrator};

fn versions(migrations: &[MigrationInfo]) -> Vec<i64> {
    migrations.iter().map(|m| m.version).collect()
}

/// Every schema object except the bookkeeping table, in a stable order.
async fn schema(store: &SqliteStore) -> Vec<(String, String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT type, name, tbl_name, sql FROM sqlite_master \
         WHERE tbl_name <> '_sqlx_migrations' ORDER BY type, name",
    )
    .fetch_all(store.pool())
    .await
    .expect("read sqlite_master")
}

async fn tables(store: &SqliteStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .expect("list tables")
}

async fn recorded_versions(store: &SqliteStore) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .expect("read _sqlx_migrations")
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open_file(path, &pool_settings())
        .await
        .expect("open")
}

#[tokio::test]
async fn up_and_down_cycle_restores_an_identical_schema() {
    let store = unmigrated_temp_store().await.expect("store");

    let fresh = store.status().await.expect("status");
    assert!(fresh.applied.is_empty() && fresh.unknown.is_empty());
    assert_eq!(versions(&fresh.pending), [1, 2, 3]);
    assert!(!fresh.is_current());
    assert_eq!(fresh.version(), 0);
    assert!(
        tables(&store).await.is_empty(),
        "status wrote to an unmigrated database"
    );

    let applied = store.up().await.expect("up");
    assert_eq!(versions(&applied), [1, 2, 3]);
    assert_eq!(
        applied
            .iter()
            .map(|m| m.description.as_str())
            .collect::<Vec<_>>(),
        ["core", "billing", "broadcasts"]
    );
    let current = store.status().await.expect("status");
    assert!(current.is_current());
    assert_eq!(current.version(), 3);
    assert_eq!(current.applied, applied);
    assert_eq!(store.up().await.expect("up again"), []);
    let migrated = schema(&store).await;
    assert!(
        migrated
            .iter()
            .any(|(kind, name, _, _)| kind == "index" && name == "dialogs_one_active")
    );

    let reverted = store.down(DownTarget::All).await.expect("down all");
    assert_eq!(versions(&reverted), [3, 2, 1]);
    assert_eq!(tables(&store).await, ["_sqlx_migrations"]);
    let empty = store.status().await.expect("status");
    assert!(empty.applied.is_empty());
    assert_eq!(versions(&empty.pending), [1, 2, 3]);
    assert_eq!(store.down(DownTarget::All).await.expect("down again"), []);

    assert_eq!(versions(&store.up().await.expect("up")), [1, 2, 3]);
    assert_eq!(schema(&store).await, migrated);

    assert_eq!(store.down(DownTarget::Steps(0)).await.expect("down 0"), []);
    assert_eq!(
        versions(&store.down(DownTarget::Steps(1)).await.expect("down 1")),
        [3]
    );
    let after_one = store.status().await.expect("status");
    assert_eq!(after_one.version(), 2);
    assert_eq!(versions(&after_one.pending), [3]);
    let left = tables(&store).await;
    assert!(left.contains(&"payments".to_owned()));
    assert!(!left.contains(&"broadcasts".to_owned()));
    assert!(!left.contains(&"broadcast_deliveries".to_owned()));
    assert_eq!(recorded_versions(&store).await, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_ups_apply_each_migration_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");
    // Opened at once as well: the first open of a new file switches it to WAL.
    let stores = futures::future::join_all((0..10).map(|_| open(&path))).await;
    let results = futures::future::join_all(stores.iter().map(|store| store.up())).await;
    let mut applied = Vec::new();
    for result in results {
        applied.extend(versions(&result.expect("every up succeeds")));
    }
    applied.sort_unstable();
    assert_eq!(applied, [1, 2, 3], "each migration applied exactly once");
    assert_eq!(recorded_versions(&stores[0]).await, [1, 2, 3]);
    for store in &stores {
        assert!(store.status().await.expect("status").is_current());
    }
}

/// The real migrations plus a fourth whose script fails half-way.
fn with_broken_fourth() -> Migrator {
    let mut migrations: Vec<Migration> = migrator().iter().cloned().collect();
    migrations.push(Migration::new(
        4,
        "broken".into(),
        MigrationType::ReversibleUp,
        "CREATE TABLE half_done (id INTEGER PRIMARY KEY); THIS IS NOT SQL;".into_sql_str(),
        false,
    ));
    migrations.push(Migration::new(
        4,
        "broken".into(),
        MigrationType::ReversibleDown,
        "DROP TABLE half_done;".into_sql_str(),
        false,
    ));
    Migrator::with_migrations(migrations)
}

#[tokio::test]
async fn a_failing_migration_leaves_no_trace() {
    let store = unmigrated_temp_store().await.expect("store");
    let broken = with_broken_fourth();
    let err = store.up_with(&broken).await.expect_err("broken migration");
    assert!(
        err.to_string().contains('4'),
        "error does not name the migration: {err}"
    );

    let status = store.status_with(&broken).await.expect("status");
    assert_eq!(status.version(), 3);
    assert_eq!(versions(&status.pending), [4]);
    assert!(!tables(&store).await.contains(&"half_done".to_owned()));
    assert_eq!(recorded_versions(&store).await, [1, 2, 3]);
    assert!(store.status().await.expect("status").is_current());
}

#[tokio::test]
async fn a_newer_schema_is_reported_and_refused() {
    let store = unmigrated_temp_store().await.expect("store");
    let mut migrations: Vec<Migration> = migrator().iter().cloned().collect();
    for kind in [MigrationType::ReversibleUp, MigrationType::ReversibleDown] {
        let sql = match kind {
            MigrationType::ReversibleUp => "CREATE TABLE later (id INTEGER PRIMARY KEY);",
            _ => "DROP TABLE later;",
        };
        migrations.push(Migration::new(
            9,
            "later".into(),
            kind,
            sql.into_sql_str(),
            false,
        ));
    }
    let newer = Migrator::with_migrations(migrations);
    assert_eq!(
        versions(&store.up_with(&newer).await.expect("up")),
        [1, 2, 3, 9]
    );

    // This build does not know migration 9.
    let status = store.status().await.expect("status");
    assert_eq!(status.unknown, [9]);
    assert!(!status.is_current());
    assert!(matches!(store.up().await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        store.down(DownTarget::Steps(1)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(recorded_versions(&store).await, [1, 2, 3, 9]);
}
