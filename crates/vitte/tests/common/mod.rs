//! Helpers of the end-to-end tests: run the real `vitte` binary in a
//! temporary directory with a clean environment, find the address it bound,
//! and stop it with a signal.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A `vitte` command with only PATH from the outer environment, JSON logs,
/// port 0, and `dir` as its working directory.
pub fn vitte(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitte"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VITTE_LISTEN", "127.0.0.1:0")
        .env("VITTE_LOG_FORMAT", "json")
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

/// Runs to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("vitte runs")
}

/// Text of stdout and stderr together, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the command printed on stdout (its report; logs go to stderr).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running server process.
pub struct Server {
    /// The child.
    pub child: Child,
    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    /// Every log line so far (also those before "serving").
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `cmd` and waits (up to 60 s) for its "serving" log line.
    pub fn start(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let all = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut all) = all.lock() {
                    all.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Ok((message, addr)) = serde_json_line(&line)
                        && message == "serving"
                    {
                        return Server {
                            child,
                            base: format!("http://{addr}"),
                            logs,
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server never reported its address; output:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// GET `path`, returning the status code (0 when the request failed).
    pub async fn get(&self, path: &str) -> u16 {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        match client.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not stop within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Log lines received so far, one per line.
    pub fn log_text(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Extracts `(message, addr)` from a JSON log line.
fn serde_json_line(line: &str) -> Result<(String, String), ()> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| ())?;
    let message = v
        .get("message")
        .and_then(|m| m.as_str())
        .ok_or(())?
        .to_owned();
    let addr = v
        .get("addr")
        .and_then(|a| a.as_str())
        .unwrap_or_default()
        .to_owned();
    Ok((message, addr))
}

/// Polls `probe` until it returns `want` or `within` passes.
pub async fn eventually(server: &Server, path: &str, want: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if server.get(path).await == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
