//! A running role survives a PostgreSQL restart: readiness goes 503 while the
//! server is down and back to 200 when it returns, with no restart of the
//! role. Uses a private PostgreSQL instance so the shared server is untouched.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, eventually, run, text, vitte};

/// A throw-away PostgreSQL cluster in a temporary directory.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

fn as_postgres_user(bin: &Path, args: &[&str]) -> Command {
    // PostgreSQL refuses to run as root; CI runs as root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin).args(args);
        cmd
    } else {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        cmd
    }
}

impl PrivatePostgres {
    fn create() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql (run scripts/services)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb binary");
        let dir = tempfile::Builder::new()
            .prefix("vitte-pg")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let out = as_postgres_user(
            &bin.join("initdb"),
            &["-A", "trust", "-U", "postgres", "-D"],
        )
        .arg(&data)
        .output()
        .expect("initdb");
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let pg = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        pg.start();
        pg
    }

    fn ctl(&self, args: &[&str]) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.data.display()
        );
        let out = as_postgres_user(&self.bin.join("pg_ctl"), args)
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &opts, "-w", "-t", "60"])
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}",
            text(&out)
        );
    }

    fn start(&self) {
        self.ctl(&["start", "-l", "/dev/null"]);
    }

    fn stop(&self) {
        self.ctl(&["stop", "-m", "fast"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres_user(&self.bin.join("pg_ctl"), &["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
    }
}

#[tokio::test]
async fn readiness_recovers_after_postgres_restarts() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::create)
        .await
        .expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let up = run(vitte(dir.path())
        .env("DATABASE_URL", pg.url())
        .args(["migrate", "up"]));
    assert!(up.status.success(), "{}", text(&up));

    let server = Server::start(
        vitte(dir.path())
            .env("DATABASE_URL", pg.url())
            .env("VITTE_DB_ACQUIRE_TIMEOUT", "1s")
            .arg("api"),
    );
    assert_eq!(server.get("/readyz").await, 200);

    pg.stop();
    assert!(
        eventually(&server, "/readyz", 503, Duration::from_secs(15)).await,
        "readyz never reported the database down"
    );
    assert_eq!(
        server.get("/healthz").await,
        200,
        "the process itself stays alive"
    );

    pg.start();
    assert!(
        eventually(&server, "/readyz", 200, Duration::from_secs(30)).await,
        "readyz did not recover after PostgreSQL came back"
    );
    assert_eq!(server.terminate().code(), Some(0));
}
