//! The migrations and their runner against a real PostgreSQL: status on an
//! empty database, up/down round trips that restore an identical schema,
//! concurrent `up` calls, and a failing migration that must leave nothing
//! behind (no table, no record, no held lock).

use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, SqlSafeStr};
use vitte_domain::ports::{DownTarget, MigrationInfo, SchemaControl, StoreError};
use vitte_store_postgres::{PgStore, migrator, schema, testing};

/// A store on a fresh database with no migration applied.
async fn unmigrated() -> PgStore {
    let url = testing::fresh_database_url().await;
    PgStore::connect(&url, &testing::pool_settings())
        .await
        .expect("connect to the fresh database")
}

fn versions(infos: &[MigrationInfo]) -> Vec<i64> {
    infos.iter().map(|m| m.version).collect()
}

/// Columns, indexes and constraints of schema `public`, one line each, sorted.
async fn schema_dump(pool: &PgPool) -> Vec<String> {
    let columns: Vec<(String, String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, \
                column_default::text, COALESCE(identity_generation::text, '') \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(pool)
    .await
    .expect("columns");
    let indexes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes \
         WHERE schemaname = 'public'",
    )
    .fetch_all(pool)
    .await
    .expect("indexes");
    let constraints: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid) \
         FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE n.nspname = 'public'",
    )
    .fetch_all(pool)
    .await
    .expect("constraints");

    let mut dump: Vec<String> = columns
        .into_iter()
        .map(|(t, c, ty, null, default, identity)| {
            format!("column {t}.{c} {ty} nullable={null} default={default:?} identity={identity}")
        })
        .chain(
            indexes
                .into_iter()
                .map(|(t, i, def)| format!("index {t}.{i} {def}")),
        )
        .chain(
            constraints
                .into_iter()
                .map(|(t, c, def)| format!("constraint {t}.{c} {def}")),
        )
        .collect();
    dump.sort();
    dump
}

async fn public_tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("tables")
}

async fn recorded_versions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .expect("bookkeeping rows")
}

async fn table_exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("to_regclass")
}

/// The real migrations plus `extra` (an up and a down script at `version`).
fn with_extra(version: i64, up: &'static str, down: &'static str) -> Migrator {
    let mut migrations: Vec<Migration> = migrator().iter().cloned().collect();
    migrations.push(Migration::new(
        version,
        "extra".into(),
        MigrationType::ReversibleUp,
        up.into_sql_str(),
        false,
    ));
    migrations.push(Migration::new(
        version,
        "extra".into(),
        MigrationType::ReversibleDown,
        down.into_sql_str(),
        false,
    ));
    Migrator::with_migrations(migrations)
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

async fn column_exists(pool: &PgPool, table: &str, column: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)",
    )
    .bind(table)
    .bind(column)
    .fetch_one(pool)
    .await
    .expect("information_schema")
}

/// Fails the test instead of hanging if a migration lock is never released.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish: is a migration lock still held?"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_round_trip_to_an_identical_schema() {
    let store = unmigrated().await;

    let status = store.status().await.expect("status on an empty database");
    assert!(status.applied.is_empty());
    assert_eq!(versions(&status.pending), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(status.pending[0].description, "core");
    assert_eq!(status.pending[3].description, "reply pipeline");
    assert_eq!(status.pending[4].description, "spend caps");
    assert_eq!(status.pending[5].description, "inbox senders");
    assert_eq!(status.pending[6].description, "reply requests");
    assert!(status.unknown.is_empty());
    assert!(!status.is_current());
    assert_eq!(status.version(), 0);

    // The schema one and two versions back, to compare single steps down against.
    let options = store.connect_options();
    assert_eq!(
        versions(&schema::up(options, &up_to(5)).await.expect("up to 5")),
        [1, 2, 3, 4, 5]
    );
    let at_five = schema_dump(store.pool()).await;
    assert_eq!(
        versions(&schema::up(options, &up_to(6)).await.expect("up to 6")),
        [6]
    );
    let at_six = schema_dump(store.pool()).await;

    assert_eq!(versions(&store.up().await.expect("up")), [7]);
    let status = store.status().await.expect("status");
    assert!(status.is_current());
    assert_eq!(status.version(), 7);
    assert_eq!(versions(&status.applied), [1, 2, 3, 4, 5, 6, 7]);
    assert!(column_exists(store.pool(), "inbound_updates", "sender").await);
    assert!(column_exists(store.pool(), "dialogs", "reply_wanted").await);
    assert!(store.up().await.expect("second up").is_empty());
    let migrated = schema_dump(store.pool()).await;
    assert!(migrated.iter().any(|l| l.contains("dialogs_one_active")));
    assert!(
        migrated
            .iter()
            .any(|l| l.contains("messages_one_per_update"))
    );
    assert!(column_exists(store.pool(), "dialogs", "reply_lease_until").await);
    for index in [
        "messages_usage_by_time",
        "messages_usage_by_dialog",
        "dialogs_by_user",
    ] {
        assert!(
            migrated.iter().any(|l| l.contains(index)),
            "{index} missing"
        );
    }

    assert!(
        store
            .down(DownTarget::Steps(0))
            .await
            .expect("no-op down")
            .is_empty()
    );
    assert_eq!(schema_dump(store.pool()).await, migrated);

    let reverted = store.down(DownTarget::Steps(1)).await.expect("down 1");
    assert_eq!(versions(&reverted), [7]);
    assert_eq!(schema_dump(store.pool()).await, at_six);
    let status = store.status().await.expect("status");
    assert_eq!(status.version(), 6);
    assert_eq!(versions(&status.pending), [7]);
    assert!(!column_exists(store.pool(), "dialogs", "reply_wanted").await);
    assert!(column_exists(store.pool(), "inbound_updates", "sender").await);

    let reverted = store.down(DownTarget::Steps(1)).await.expect("down 6");
    assert_eq!(versions(&reverted), [6]);
    assert_eq!(schema_dump(store.pool()).await, at_five);
    let status = store.status().await.expect("status");
    assert_eq!(status.version(), 5);
    assert_eq!(versions(&status.pending), [6, 7]);
    assert!(!column_exists(store.pool(), "inbound_updates", "sender").await);

    let reverted = store.down(DownTarget::Steps(1)).await.expect("down 5");
    assert_eq!(versions(&reverted), [5]);
    assert_eq!(store.status().await.expect("status").version(), 4);

    let reverted = store.down(DownTarget::Steps(1)).await.expect("down 2");
    assert_eq!(versions(&reverted), [4]);
    assert!(!column_exists(store.pool(), "dialogs", "reply_owner").await);
    assert!(!column_exists(store.pool(), "dialogs", "reply_lease_until").await);
    assert_eq!(store.status().await.expect("status").version(), 3);

    let reverted = store.down(DownTarget::Steps(1)).await.expect("down 1 more");
    assert_eq!(versions(&reverted), [3]);
    assert!(!table_exists(store.pool(), "broadcasts").await);
    assert!(!table_exists(store.pool(), "broadcast_deliveries").await);
    assert!(table_exists(store.pool(), "payments").await);
    assert_eq!(store.status().await.expect("status").version(), 2);

    assert_eq!(
        versions(&store.up().await.expect("up again")),
        [3, 4, 5, 6, 7]
    );
    assert_eq!(schema_dump(store.pool()).await, migrated);

    let reverted = store.down(DownTarget::All).await.expect("down all");
    assert_eq!(versions(&reverted), [7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(public_tables(store.pool()).await, ["_sqlx_migrations"]);
    assert!(recorded_versions(store.pool()).await.is_empty());
    assert_eq!(
        versions(&store.status().await.expect("status").pending),
        [1, 2, 3, 4, 5, 6, 7]
    );

    assert_eq!(
        versions(&store.up().await.expect("up from scratch")),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(schema_dump(store.pool()).await, migrated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stored_twice_from_one_update_keep_the_oldest_link() {
    let store = unmigrated().await;
    schema::up(store.connect_options(), &up_to(3))
        .await
        .expect("up to 3");
    // Before the index, a handler that re-ran could store an update's message twice.
    sqlx::raw_sql(
        "INSERT INTO users (telegram_id, first_name, first_seen, last_seen) \
             VALUES (1, 'Ann', now(), now()); \
         INSERT INTO personas (slug, name, created_at, updated_at) \
             VALUES ('lisa', 'Lisa', now(), now()); \
         INSERT INTO dialogs (user_id, persona_id, active, created_at, updated_at) \
             SELECT u.id, p.id, TRUE, now(), now() FROM users u, personas p; \
         INSERT INTO messages (dialog_id, role, text, state, update_id, created_at) \
             SELECT d.id, 'user', t.text, 'pending', t.update_id, now() \
             FROM dialogs d, (VALUES ('a', 7), ('again', 7), ('b', 8), ('c', NULL)) \
                 AS t (text, update_id);",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_past_the_first_migration_reverts_what_is_there() {
    let store = unmigrated().await;
    assert!(
        store
            .down(DownTarget::All)
            .await
            .expect("down on empty")
            .is_empty()
    );
    store.up().await.expect("up");
    let reverted = store.down(DownTarget::Steps(10)).await.expect("down 10");
    assert_eq!(versions(&reverted), [7, 6, 5, 4, 3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ups_apply_each_migration_once() {
    let url = testing::fresh_database_url().await;
    let mut stores = Vec::new();
    for _ in 0..10 {
        stores.push(
            PgStore::connect(&url, &testing::pool_settings())
                .await
                .expect("connect"),
        );
    }
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .map(|store| tokio::spawn(async move { store.up().await }))
        .collect();

    let mut applied = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let infos = task.expect("task").expect("every concurrent up succeeds");
        applied.extend(versions(&infos));
    }
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6, 7],
        "each migration reported by exactly one caller"
    );
    assert_eq!(
        recorded_versions(stores[0].pool()).await,
        [1, 2, 3, 4, 5, 6, 7]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_leaves_the_previous_version() {
    let store = unmigrated().await;
    let broken = with_extra(
        9999,
        "CREATE TABLE half_done (id BIGINT); SELECT no_such_column FROM no_such_table;",
        "DROP TABLE half_done;",
    );
    let options: &PgConnectOptions = store.connect_options();

    let error = within("the failing up", schema::up(options, &broken))
        .await
        .expect_err("the broken migration fails");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");

    assert!(!table_exists(store.pool(), "half_done").await);
    assert_eq!(recorded_versions(store.pool()).await, [1, 2, 3, 4, 5, 6, 7]);
    let status = store.status().await.expect("status");
    assert_eq!(status.version(), 7);
    assert!(status.is_current());

    // The lock went with the failed call's session: later runs proceed.
    assert!(
        within("a later up", store.up())
            .await
            .expect("up")
            .is_empty()
    );
    within("a second failing up", schema::up(options, &broken))
        .await
        .expect_err("still broken");
    assert_eq!(
        versions(
            &within("down", store.down(DownTarget::Steps(1)))
                .await
                .expect("down")
        ),
        [7]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_from_a_newer_build_are_reported_and_refused() {
    let store = unmigrated().await;
    let newer = with_extra(
        4000,
        "CREATE TABLE from_the_future (id BIGINT);",
        "DROP TABLE from_the_future;",
    );
    let applied = schema::up(store.connect_options(), &newer)
        .await
        .expect("newer build migrates");
    assert_eq!(versions(&applied), [1, 2, 3, 4, 5, 6, 7, 4000]);

    let status = store.status().await.expect("status");
    assert_eq!(status.unknown, [4000]);
    assert!(status.pending.is_empty());
    assert!(!status.is_current());
    assert!(matches!(store.up().await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        store.down(DownTarget::Steps(1)).await,
        Err(StoreError::Conflict(_))
    ));

    // The newer build itself can still go back.
    let reverted = schema::down(store.connect_options(), &newer, DownTarget::Steps(1))
        .await
        .expect("newer build reverts");
    assert_eq!(versions(&reverted), [4000]);
    assert!(store.status().await.expect("status").is_current());
}
