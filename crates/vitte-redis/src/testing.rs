//! Test support for the Redis engines: a fake Redis that completes the
//! connection handshake and then never answers, and counts what reaches
//! it, so a test can tell from the server's side whether a client touched
//! the network.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long a test waits for the other end of a socket to catch up before
/// it gives up; only a bound against hanging, never an expectation.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What the hanging Redis has seen.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Connections accepted.
    pub accepted: usize,
    /// Connections not yet closed by the client.
    pub open: usize,
    /// Names of the commands received, the connection handshake aside.
    pub commands: Vec<String>,
    /// Bytes received, the handshake included.
    pub bytes: usize,
}

/// Reads one RESP command (an array of bulk strings) and how many bytes it
/// took; `None` at end of stream.
async fn read_command(reader: &mut BufReader<TcpStream>) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut line = String::new();
    let mut bytes = reader.read_line(&mut line).await.ok()?;
    if bytes == 0 {
        return None;
    }
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        bytes += reader.read_line(&mut line).await.ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).await.ok()?;
        bytes += arg.len();
        arg.truncate(len);
        args.push(arg);
    }
    Some((args, bytes))
}

/// A server that completes Redis' connection handshake and then never
/// answers: a Redis that hangs. It counts what reaches it.
pub struct HangingRedis {
    /// Where it listens, as a Redis URL.
    pub url: String,
    seen: watch::Receiver<Seen>,
}

impl HangingRedis {
    /// Starts listening on a free local port.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("redis://{}", listener.local_addr().expect("addr"));
        let (record, seen) = watch::channel(Seen::default());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                record.send_modify(|s| {
                    s.accepted += 1;
                    s.open += 1;
                });
                let record = record.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(socket);
                    while let Some((args, bytes)) = read_command(&mut reader).await {
                        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                        let handshake =
                            matches!(name.as_str(), "CLIENT" | "HELLO" | "SELECT" | "AUTH");
                        record.send_modify(|s| {
                            s.bytes += bytes;
                            if !handshake {
                                s.commands.push(name);
                            }
                        });
                        if handshake {
                            let _ = reader.get_mut().write_all(b"+OK\r\n").await;
                        }
                    }
                    record.send_modify(|s| s.open -= 1);
                });
            }
        });
        Self { url, seen }
    }

    /// Waits until what the server has seen satisfies `done`.
    ///
    /// # Panics
    /// When that takes longer than [`PATIENCE`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) -> Seen {
        let mut seen = self.seen.clone();
        match tokio::time::timeout(PATIENCE, seen.wait_for(|s| done(s))).await {
            Ok(Ok(s)) => s.clone(),
            _ => panic!("never saw {what}: {:?}", *self.seen.borrow()),
        }
    }
}
