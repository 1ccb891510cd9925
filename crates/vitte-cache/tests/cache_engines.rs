//! The cache conformance cases against both engines, and how the Redis
//! engine behaves when Redis is slow, gone, or back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vitte_cache::{RedisCache, RedisCacheError, RedisSettings};
use vitte_domain::ports::{Cache, CacheError};

use support::cache_cases::{self, Subject};

/// One `#[tokio::test]` per cache case, each with a fresh subject from `$fresh`.
macro_rules! cache_suite {
    ($fresh:path) => {
        cache_suite!(@cases $fresh;
            set_get_delete,
            delete_removes_every_key_given,
            entries_expire_after_their_ttl,
            overwriting_replaces_the_ttl,
            a_zero_ttl_stores_nothing,
            values_are_binary_safe,
            large_values_round_trip,
            keys_are_unicode_and_exact,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                crate::cache_cases::$case($fresh().await).await;
            }
        )*
    };
}

mod memory {
    use super::*;

    async fn fresh() -> Subject {
        Subject {
            cache: Arc::new(vitte_cache::MemoryCache::default()),
            namespace: support::unique_namespace(),
        }
    }

    cache_suite!(fresh);
}

mod redis {
    use super::*;

    async fn fresh() -> Subject {
        Subject {
            cache: Arc::new(support::redis_cache().await),
            namespace: support::unique_namespace(),
        }
    }

    cache_suite!(fresh);
}

/// The engine's own error inside a port error.
fn redis_error(e: &CacheError) -> &RedisCacheError {
    e.0.downcast_ref::<RedisCacheError>()
        .expect("a Redis cache error")
}

/// Reads one RESP command (an array of bulk strings); `None` at end of stream.
async fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).await.ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

/// A server that completes Redis' connection handshake and then never
/// answers: a Redis that hangs.
async fn hanging_redis() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(socket);
                while let Some(args) = read_command(&mut reader).await {
                    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                    if matches!(name.as_str(), "CLIENT" | "HELLO" | "SELECT" | "AUTH") {
                        let _ = reader.get_mut().write_all(b"+OK\r\n").await;
                    }
                }
            });
        }
    });
    format!("redis://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_costs_one_timeout_then_fails_fast() {
    let settings = RedisSettings {
        op_timeout: Duration::from_millis(150),
        connect_timeout: Duration::from_secs(5),
        cool_down: Duration::from_secs(30),
    };
    let cache = RedisCache::connect_with(&hanging_redis().await, settings)
        .await
        .expect("the handshake succeeds");

    let started = Instant::now();
    let err = cache.get("k").await.expect_err("no answer");
    let waited = started.elapsed();
    assert!(
        matches!(redis_error(&err), RedisCacheError::TimedOut(_)),
        "{err}"
    );
    assert!(waited >= settings.op_timeout, "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // Cooling down: the next calls do not wait at all.
    let started = Instant::now();
    let err = cache.get("k").await.expect_err("cooling down");
    assert!(
        matches!(redis_error(&err), RedisCacheError::CoolingDown),
        "{err}"
    );
    let err = cache
        .set("k", b"v", Duration::from_secs(1))
        .await
        .expect_err("cooling down");
    assert!(
        matches!(redis_error(&err), RedisCacheError::CoolingDown),
        "{err}"
    );
    assert!(
        started.elapsed() < settings.op_timeout,
        "waited while cooling down"
    );

    // Deletes are still attempted (a missed invalidation would leave stale
    // data), bounded by the timeout.
    let err = cache
        .delete(&["k".to_owned()])
        .await
        .expect_err("no answer");
    assert!(
        matches!(redis_error(&err), RedisCacheError::TimedOut(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_when_redis_is_unreachable_but_open_does_not() {
    let err = RedisCache::connect_with("redis://127.0.0.1:1", support::redis_settings())
        .await
        .expect_err("nothing listens on port 1");
    assert!(!err.to_string().is_empty());

    let cache = RedisCache::open("redis://127.0.0.1:1", RedisSettings::default()).expect("lazy");
    let started = Instant::now();
    for _ in 0..20 {
        assert!(cache.get("k").await.is_err());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A TCP proxy to the test Redis that can be cut (every connection dropped
/// and new ones refused) and restored.
struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("redis://{}", listener.local_addr().expect("addr"));
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (accept_up, accept_cuts) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let mut cut = accept_cuts.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { url, up, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_recovers_by_itself_when_redis_comes_back() {
    let url = support::redis_url();
    let upstream = url
        .strip_prefix("redis://")
        .and_then(|rest| rest.split('/').next())
        .expect("a redis:// URL with host:port")
        .to_owned();
    let proxy = Proxy::start(upstream).await;
    let settings = RedisSettings {
        op_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        cool_down: Duration::from_millis(50),
    };
    let cache = RedisCache::connect_with(&proxy.url, settings)
        .await
        .expect("connect through the proxy");
    let key = format!("{}:k", support::unique_namespace());
    cache
        .set(&key, b"v", Duration::from_secs(60))
        .await
        .expect("set");

    proxy.cut();
    let mut failed = false;
    for _ in 0..5 {
        failed |= cache.get(&key).await.is_err();
    }
    assert!(failed, "reads kept working with Redis cut off");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(value) = cache.get(&key).await {
            assert_eq!(value.as_deref(), Some(&b"v"[..]));
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
