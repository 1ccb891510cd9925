//! End-to-end tests of the `vitte` binary: start-up on the embedded default,
//! configuration errors, migrations on both engines, and the schema gate.

mod common;

use std::time::Duration;

use common::{Server, eventually, run, stdout, text, vitte};

#[tokio::test]
async fn all_starts_with_no_configuration_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(vitte(dir.path()).arg("all"));
    assert_eq!(server.get("/healthz").await, 200);
    assert_eq!(server.get("/readyz").await, 200);
    assert!(
        dir.path().join("data/vitte.db").exists(),
        "embedded store not under ./data/"
    );
    let status = server.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}

#[test]
fn an_invalid_database_url_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(vitte(dir.path()).env("DATABASE_URL", "nonsense").arg("all"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("DATABASE_URL"), "{}", text(&out));
}

#[test]
fn config_check_prints_settings_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(vitte(dir.path())
        .env("TELEGRAM_BOT_TOKEN", "123456:TOPSECRET")
        .env("DATABASE_URL", "postgres://vitte:hunter2@db.internal/vitte")
        .args(["config", "check"]));
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(printed.contains("TELEGRAM_BOT_TOKEN"), "{printed}");
    assert!(!printed.contains("TOPSECRET"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(
        printed.contains("postgres://vitte:***@db.internal/vitte"),
        "{printed}"
    );

    let bad = run(vitte(dir.path())
        .env(
            "TELEGRAM_WEBHOOK_URL",
            "https://bot.example/telegram/webhook",
        )
        .args(["config", "check"]));
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("TELEGRAM_WEBHOOK_SECRET"),
        "{}",
        text(&bad)
    );

    let file = dir.path().join("vitte.env");
    std::fs::write(&file, "LLM_MODEL=from/file\nVITTE_LISTEN=127.0.0.1:9\n").expect("write");
    let from_file = run(vitte(dir.path()).args(["--config", "vitte.env", "config", "check"]));
    assert_eq!(from_file.status.code(), Some(0), "{}", text(&from_file));
    assert!(
        text(&from_file).contains("from/file"),
        "{}",
        text(&from_file)
    );
    // The environment still wins over the file.
    assert!(
        text(&from_file).contains("127.0.0.1:0"),
        "{}",
        text(&from_file)
    );
    std::fs::write(&file, "NO_SUCH_SETTING=1\n").expect("write");
    let typo = run(vitte(dir.path()).args(["--config", "vitte.env", "config", "check"]));
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    assert!(text(&typo).contains("NO_SUCH_SETTING"), "{}", text(&typo));
}

fn migrate_round_trip(url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = |args: &[&str]| run(vitte(dir.path()).env("DATABASE_URL", url).args(args));
    let status = cmd(&["migrate", "status"]);
    assert_eq!(
        status.status.code(),
        Some(1),
        "fresh schema reported current: {}",
        text(&status)
    );
    assert_eq!(
        text(&status).matches("pending").count(),
        7,
        "{}",
        text(&status)
    );

    let up = cmd(&["migrate", "up"]);
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(
        stdout(&up).matches("applied 000").count(),
        7,
        "{}",
        text(&up)
    );
    let current = cmd(&["migrate", "status"]);
    assert!(current.status.success(), "{}", text(&current));

    let one = cmd(&["migrate", "down"]);
    assert!(one.status.success(), "{}", text(&one));
    assert!(text(&one).contains("reverted 0007"), "{}", text(&one));
    assert!(text(&one).contains("schema at version 6"), "{}", text(&one));

    let all = cmd(&["migrate", "down", "--all"]);
    assert!(all.status.success(), "{}", text(&all));
    assert!(text(&all).contains("schema at version 0"), "{}", text(&all));
    let again = cmd(&["migrate", "up"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("schema at version 7"),
        "{}",
        text(&again)
    );
    let bad = cmd(&["migrate", "down", "2", "--all"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

fn concurrent_migrate_up(url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let children: Vec<_> = (0..10)
        .map(|_| {
            vitte(dir.path())
                .env("DATABASE_URL", url)
                .args(["migrate", "up"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a concurrent `migrate up` failed: {}",
            text(&out)
        );
        applied += stdout(&out).matches("applied 000").count();
    }
    assert_eq!(
        applied, 7,
        "each migration must be applied exactly once in total"
    );
    let status = run(vitte(dir.path())
        .env("DATABASE_URL", url)
        .args(["migrate", "status"]));
    assert!(status.status.success(), "{}", text(&status));
}

#[test]
fn sqlite_migrations_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("rt.db").display());
    migrate_round_trip(&url);
}

#[tokio::test]
async fn postgres_migrations_round_trip() {
    let url = vitte_store_postgres::testing::fresh_database_url().await;
    tokio::task::spawn_blocking(move || migrate_round_trip(&url))
        .await
        .expect("test");
}

#[test]
fn ten_concurrent_migrate_up_on_sqlite_apply_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("many.db").display());
    concurrent_migrate_up(&url);
}

#[tokio::test]
async fn ten_concurrent_migrate_up_on_postgres_apply_each_once() {
    let url = vitte_store_postgres::testing::fresh_database_url().await;
    tokio::task::spawn_blocking(move || concurrent_migrate_up(&url))
        .await
        .expect("test");
}

#[tokio::test]
async fn roles_refuse_a_schema_that_is_behind_unless_told_to_migrate() {
    let url = vitte_store_postgres::testing::fresh_database_url().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for role in ["bot", "api", "worker"] {
        let out = run(vitte(dir.path())
            .env("DATABASE_URL", &url)
            .env("TELEGRAM_BOT_TOKEN", "1:test")
            .arg(role));
        assert_eq!(out.status.code(), Some(1), "{role}: {}", text(&out));
        assert!(
            text(&out).contains("vitte migrate up"),
            "{role}: {}",
            text(&out)
        );
    }
    let server = Server::start(
        vitte(dir.path())
            .env("DATABASE_URL", &url)
            .args(["api", "--migrate"]),
    );
    assert!(eventually(&server, "/readyz", 200, Duration::from_secs(10)).await);
    assert_eq!(server.terminate().code(), Some(0));
    // Now current, every role starts without the flag.
    let server = Server::start(vitte(dir.path()).env("DATABASE_URL", &url).arg("worker"));
    assert_eq!(server.get("/readyz").await, 200);
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn the_bot_role_alone_needs_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(vitte(dir.path()).arg("bot"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("TELEGRAM_BOT_TOKEN"), "{}", text(&out));
}

#[test]
fn personas_import_from_card_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let personas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../personas");
    let up = run(vitte(dir.path())
        .env("DATABASE_URL", &url)
        .args(["migrate", "up"]));
    assert!(up.status.success(), "{}", text(&up));
    let out = run(vitte(dir.path())
        .env("DATABASE_URL", &url)
        .args(["persona", "import"])
        .arg(personas.join("mira.json"))
        .arg(personas.join("vera.png")));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("imported Mira as /start mira"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("/start vera"), "{}", text(&out));

    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"not\": \"a card\"}").expect("write");
    let bad = run(vitte(dir.path())
        .env("DATABASE_URL", &url)
        .args(["persona", "import"])
        .arg(&junk));
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("junk.json"), "{}", text(&bad));
}

#[test]
fn help_explains_every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(vitte(dir.path()).arg("--help"));
    assert!(out.status.success());
    let help = text(&out);
    for word in [
        "bot",
        "api",
        "worker",
        "all",
        "migrate",
        "config",
        "DATABASE_URL",
    ] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = run(vitte(dir.path()).args(["migrate", "down", "--help"]));
    assert!(text(&out).contains("--all"), "{}", text(&out));
}
