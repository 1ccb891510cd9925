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

/// The real migrations up to and including `version`.
fn up_to(version: i64) -> Migrator {
    Migrator::with_migrations(
        migrator()
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect(),
    )
}

async fn columns(store: &SqliteStore, table: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .bind(table)
        .fetch_all(store.pool())
        .await
        .expect("table info")
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
    assert_eq!(versions(&fresh.pending), [1, 2, 3, 4, 5, 6, 7]);
    assert!(!fresh.is_current());
    assert_eq!(fresh.version(), 0);
    assert!(
        tables(&store).await.is_empty(),
        "status wrote to an unmigrated database"
    );

    // The schema one and two versions back, to compare single steps down against.
    assert_eq!(
        versions(&store.up_with(&up_to(5)).await.expect("up to 5")),
        [1, 2, 3, 4, 5]
    );
    let at_five = schema(&store).await;
    assert_eq!(
        versions(&store.up_with(&up_to(6)).await.expect("up to 6")),
        [6]
    );
    let at_six = schema(&store).await;
    assert_eq!(
        versions(&store.down(DownTarget::All).await.expect("down all")),
        [6, 5, 4, 3, 2, 1]
    );

    let applied = store.up().await.expect("up");
    assert_eq!(versions(&applied), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        applied
            .iter()
            .map(|m| m.description.as_str())
            .collect::<Vec<_>>(),
        [
            "core",
            "billing",
            "broadcasts",
            "reply pipeline",
            "spend caps",
            "inbox senders",
            "reply requests"
        ]
    );
    let current = store.status().await.expect("status");
    assert!(current.is_current());
    assert_eq!(current.version(), 7);
    assert_eq!(current.applied, applied);
    assert_eq!(store.up().await.expect("up again"), []);
    let migrated = schema(&store).await;
    for index in [
        "dialogs_one_active",
        "messages_one_per_update",
        "messages_usage_by_time",
        "messages_usage_by_dialog",
        "dialogs_by_user",
        "inbound_updates_pending_by_sender",
    ] {
        assert!(
            migrated
                .iter()
                .any(|(kind, name, _, _)| kind == "index" && name == index),
            "{index} missing"
        );
    }
    assert!(columns(&store, "dialogs").await.ends_with(&[
        "reply_owner".to_owned(),
        "reply_lease_until".to_owned(),
        "reply_wanted".to_owned()
    ]));

    let reverted = store.down(DownTarget::All).await.expect("down all");
    assert_eq!(versions(&reverted), [7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(tables(&store).await, ["_sqlx_migrations"]);
    let empty = store.status().await.expect("status");
    assert!(empty.applied.is_empty());
    assert_eq!(versions(&empty.pending), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(store.down(DownTarget::All).await.expect("down again"), []);

    assert_eq!(
        versions(&store.up().await.expect("up")),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(schema(&store).await, migrated);

    assert_eq!(store.down(DownTarget::Steps(0)).await.expect("down 0"), []);
    assert_eq!(
        versions(&store.down(DownTarget::Steps(1)).await.expect("down 1")),
        [7]
    );
    let after_one = store.status().await.expect("status");
    assert_eq!(after_one.version(), 6);
    assert_eq!(versions(&after_one.pending), [7]);
    assert_eq!(schema(&store).await, at_six);
    assert_eq!(recorded_versions(&store).await, [1, 2, 3, 4, 5, 6]);
    assert!(
        columns(&store, "dialogs")
            .await
            .ends_with(&["reply_owner".to_owned(), "reply_lease_until".to_owned()])
    );
    assert!(
        columns(&store, "inbound_updates")
            .await
            .contains(&"sender".to_owned())
    );

    assert_eq!(
        versions(&store.down(DownTarget::Steps(1)).await.expect("down 6")),
        [6]
    );
    let after_two = store.status().await.expect("status");
    assert_eq!(after_two.version(), 5);
    assert_eq!(versions(&after_two.pending), [6, 7]);
    assert_eq!(schema(&store).await, at_five);
    assert_eq!(recorded_versions(&store).await, [1, 2, 3, 4, 5]);
    assert!(
        !columns(&store, "inbound_updates")
            .await
            .contains(&"sender".to_owned())
    );

    assert_eq!(
        versions(&store.down(DownTarget::Steps(1)).await.expect("down 5")),
        [5]
    );
    assert_eq!(recorded_versions(&store).await, [1, 2, 3, 4]);

    assert_eq!(
        versions(&store.down(DownTarget::Steps(1)).await.expect("down 2")),
        [4]
    );
    assert!(
        !columns(&store, "dialogs")
            .await
            .iter()
            .any(|c| c.starts_with("reply_"))
    );
    assert_eq!(recorded_versions(&store).await, [1, 2, 3]);

    assert_eq!(
        versions(&store.down(DownTarget::Steps(1)).await.expect("down 1 more")),
        [3]
    );
    let left = tables(&store).await;
    assert!(left.contains(&"payments".to_owned()));
    assert!(!left.contains(&"broadcasts".to_owned()));
    assert!(!left.contains(&"broadcast_deliveries".to_owned()));
    assert_eq!(recorded_versions(&store).await, [1, 2]);

    assert_eq!(
        versions(&store.up().await.expect("up again")),
        [3, 4, 5, 6, 7]
    );
    assert_eq!(schema(&store).await, migrated);
}

#[tokio::test]
async fn messages_stored_twice_from_one_update_keep_the_oldest_link() {
    let store = unmigrated_temp_store().await.expect("store");
    store.up_with(&up_to(3)).await.expect("up to 3");
    // Before the index, a handler that re-ran could store an update's message twice.
    sqlx::raw_sql(
        "INSERT INTO users (telegram_id, first_name, first_seen, last_seen) VALUES (1, 'Ann', 0, 0); \
         INSERT INTO personas (slug, name, created_at, updated_at) VALUES ('lisa', 'Lisa', 0, 0); \
         INSERT INTO dialogs (user_id, persona_id, active, created_at, updated_at) \
             SELECT u.id, p.id, 1, 0, 0 FROM users u, personas p; \
         INSERT INTO messages (dialog_id, role, text, state, update_id, created_at) \
             SELECT d.id, 'user', t.column1, 'pending', t.column2, 0 \
             FROM dialogs d, (VALUES ('a', 7), ('again', 7), ('b', 8), ('c', NULL)) AS t;",
    )
    .execute(store.pool())
    .await
    .expect("seed");

    assert_eq!(versions(&store.up().await.expect("up")), [4, 5, 6, 7]);
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT text, update_id FROM messages ORDER BY id")
            .fetch_all(store.pool())
            .await
            .expect("messages");
    assert_eq!(
        rows,
        [
            ("a".to_owned(), Some(7)),
            ("again".to_owned(), None),
            ("b".to_owned(), Some(8)),
            ("c".to_owned(), None),
        ]
    );
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
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6, 7],
        "each migration applied exactly once"
    );
    assert_eq!(recorded_versions(&stores[0]).await, [1, 2, 3, 4, 5, 6, 7]);
    for store in &stores {
        assert!(store.status().await.expect("status").is_current());
    }
}

/// The real migrations plus an eighth whose script fails half-way.
fn with_broken_eighth() -> Migrator {
    let mut migrations: Vec<Migration> = migrator().iter().cloned().collect();
    migrations.push(Migration::new(
        8,
        "broken".into(),
        MigrationType::ReversibleUp,
        "CREATE TABLE half_done (id INTEGER PRIMARY KEY); THIS IS NOT SQL;".into_sql_str(),
        false,
    ));
    migrations.push(Migration::new(
        8,
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
    let broken = with_broken_eighth();
    let err = store.up_with(&broken).await.expect_err("broken migration");
    assert!(
        err.to_string().contains('8'),
        "error does not name the migration: {err}"
    );

    let status = store.status_with(&broken).await.expect("status");
    assert_eq!(status.version(), 7);
    assert_eq!(versions(&status.pending), [8]);
    assert!(!tables(&store).await.contains(&"half_done".to_owned()));
    assert_eq!(recorded_versions(&store).await, [1, 2, 3, 4, 5, 6, 7]);
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
        [1, 2, 3, 4, 5, 6, 7, 9]
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
    assert_eq!(recorded_versions(&store).await, [1, 2, 3, 4, 5, 6, 7, 9]);
}
