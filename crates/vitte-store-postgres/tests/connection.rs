//! Connecting: a server that refuses is `Unavailable` with its cause, and a
//! pool whose connections the server killed (as a restart does) recovers.

use std::net::TcpListener;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use vitte_domain::ids::TelegramUserId;
use vitte_domain::model::TelegramProfile;
use vitte_domain::ports::{PoolSettings, SchemaControl, Store, StoreError, UserRepo};
use vitte_store_postgres::{PgStore, testing};

#[tokio::test]
async fn a_refused_connection_is_unavailable_with_its_cause() {
    // A port nothing listens on any more.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");

    let error = PgStore::connect(&url, &PoolSettings::default())
        .await
        .expect_err("nothing listens there");
    let StoreError::Unavailable(cause) = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    match cause.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Io(io)) => {
            assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected the refused connection as the cause, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_when_the_server_kills_its_connections() {
    let url = testing::fresh_database_url().await;
    let settings = PoolSettings {
        min_connections: 3,
        ..testing::pool_settings()
    };
    let store = PgStore::connect(&url, &settings).await.expect("connect");
    store.up().await.expect("migrate");
    store.ping().await.expect("ping");

    // What a server restart does to every open session, waiting (up to 5 s)
    // until each backend is really gone.
    let mut admin = PgConnection::connect(&url).await.expect("admin");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    admin.close().await.expect("close admin");
    assert!(
        killed.len() >= 3 && killed.iter().all(|k| *k),
        "the pool's idle connections were terminated: {killed:?}"
    );

    store.ping().await.expect("ping after the kill");
    let profile = TelegramProfile {
        telegram_id: TelegramUserId::try_from(5).expect("positive"),
        first_name: "Ann".to_owned(),
        last_name: None,
        username: None,
        language_code: None,
    };
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("instant");
    store
        .upsert_user(&profile, now)
        .await
        .expect("write after the kill");
}
