//! The test-database helper drops databases left behind by test processes
//! that no longer run, and only those. A binary of its own, so this test's
//! call is the process's first.

use sqlx::AssertSqlSafe;
use sqlx::Connection;
use sqlx::Executor;
use sqlx::postgres::PgConnection;
use vitte_store_postgres::testing;

async fn exists(admin: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut *admin)
        .await
        .expect("pg_database")
}

#[tokio::test]
async fn the_first_fresh_database_sweeps_leftovers_of_dead_processes() {
    let server = std::env::var("VITTE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| testing::DEFAULT_SERVER_URL.to_owned());
    let mut admin = PgConnection::connect(&server)
        .await
        .expect("admin connection");

    // Above the kernel's largest pid, so its process is surely gone; pid 1
    // always runs.
    let dead = "vitte_t_4294967295_0";
    let alive = "vitte_t_1_4294967295";
    for name in [dead, alive] {
        admin
            .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\"")))
            .await
            .expect("drop");
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create");
    }
    // A session inside the dead one: WITH (FORCE) must still drop it.
    let mut inside = PgConnection::connect(&format!(
        "{}/{dead}",
        server.rsplit_once('/').expect("a URL with a path").0
    ))
    .await
    .expect("connect to the leftover");
    sqlx::query("SELECT 1")
        .execute(&mut inside)
        .await
        .expect("inside");

    let url = testing::fresh_database_url().await;

    assert!(
        !exists(&mut admin, dead).await,
        "the dead process's database is gone"
    );
    assert!(
        exists(&mut admin, alive).await,
        "a running process's database stays"
    );
    let fresh = url.rsplit_once('/').expect("path").1.to_owned();
    assert!(fresh.starts_with(&format!("vitte_t_{}_", std::process::id())));
    assert!(exists(&mut admin, &fresh).await);

    admin
        .execute(AssertSqlSafe(format!("DROP DATABASE \"{alive}\"")))
        .await
        .expect("clean up");
}
