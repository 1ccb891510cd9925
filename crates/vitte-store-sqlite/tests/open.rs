//! Opening databases: URL forms, the settings every connection gets, data
//! that outlives the store, and clear errors for what cannot be opened.

use chrono::DateTime;
use vitte_domain::ids::TelegramUserId;
use vitte_domain::model::TelegramProfile;
use vitte_domain::ports::{SchemaControl, Store, StoreError, UserRepo};
use vitte_store_sqlite::SqliteStore;
use vitte_store_sqlite::testing::pool_settings;

fn profile(id: i64) -> TelegramProfile {
    TelegramProfile {
        telegram_id: TelegramUserId::try_from(id).expect("positive"),
        first_name: "Anna".to_owned(),
        last_name: None,
        username: None,
        language_code: None,
    }
}

async fn pragma<T>(store: &SqliteStore, statement: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
{
    sqlx::query_scalar(statement)
        .fetch_one(store.pool())
        .await
        .expect("pragma")
}

#[tokio::test]
async fn a_url_creates_directories_and_a_wal_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a").join("b").join("vitte.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url, &pool_settings())
        .await
        .expect("open");
    assert!(path.is_file(), "database file not created");
    assert_eq!(pragma::<String>(&store, "PRAGMA journal_mode").await, "wal");
    assert_eq!(pragma::<i64>(&store, "PRAGMA foreign_keys").await, 1);
    assert_eq!(
        pragma::<i64>(&store, "PRAGMA synchronous").await,
        1,
        "NORMAL"
    );
    assert_eq!(pragma::<i64>(&store, "PRAGMA busy_timeout").await, 5000);
    assert_eq!(store.engine(), "sqlite");
}

#[tokio::test]
async fn data_outlives_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("vitte.db").display());
    let now = DateTime::from_timestamp(1_800_000_000, 123_456_000).expect("valid");
    {
        let store = SqliteStore::open(&url, &pool_settings())
            .await
            .expect("open");
        store.up().await.expect("up");
        store.upsert_user(&profile(5), now).await.expect("upsert");
        store.pool().close().await;
    }
    let store = SqliteStore::open(&url, &pool_settings())
        .await
        .expect("reopen");
    assert!(store.status().await.expect("status").is_current());
    let user = store
        .user_by_telegram_id(TelegramUserId::try_from(5).expect("id"))
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(user.first_seen, now, "microseconds survive the round trip");
}

#[tokio::test]
async fn memory_databases_are_private_to_their_store() {
    let settings = pool_settings();
    let a = SqliteStore::open("sqlite::memory:", &settings)
        .await
        .expect("open a");
    let b = SqliteStore::open("sqlite::memory:", &settings)
        .await
        .expect("open b");
    a.up().await.expect("up a");
    b.up().await.expect("up b");
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
    let created = a.upsert_user(&profile(1), now).await.expect("upsert");
    assert_eq!(
        a.user(created.id).await.expect("read"),
        Some(created.clone())
    );
    assert_eq!(b.user(created.id).await.expect("read"), None);
}

#[tokio::test]
async fn bad_urls_are_refused_clearly() {
    for url in ["postgres://localhost/vitte", "vitte.db", "sqlite://"] {
        match SqliteStore::open(url, &pool_settings()).await {
            Err(StoreError::Backend(e)) => {
                assert!(e.to_string().contains("invalid SQLite URL"), "{url}: {e}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn unopenable_files_are_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write");

    let under_file = file.join("vitte.db");
    match SqliteStore::open_file(&under_file, &pool_settings()).await {
        Err(StoreError::Unavailable(e)) => {
            assert!(e.to_string().contains("cannot create the directory"), "{e}");
        }
        other => panic!("opened a database under a file: {other:?}"),
    }

    match SqliteStore::open_file(dir.path(), &pool_settings()).await {
        Err(StoreError::Unavailable(e)) => {
            assert!(
                e.to_string().contains("cannot open the SQLite database"),
                "{e}"
            );
        }
        other => panic!("opened a directory as a database: {other:?}"),
    }
}
