//! The cache conformance cases against both engines, and how the Redis
//! engine behaves when Redis is slow, gone, or back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vitte_cache::{RedisCache, RedisCacheError, RedisSettings};
use vitte_domain::ports::{Cache, CacheError};
use vitte_redis::testing::HangingRedis;

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

fn timed_out(e: &CacheError) -> bool {
    matches!(redis_error(e), RedisCacheError::TimedOut(_))
}

fn cooling_down(e: &CacheError) -> bool {
    matches!(redis_error(e), RedisCacheError::CoolingDown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_cooling_down_no_call_reaches_redis() {
    let redis = HangingRedis::start().await;
    let hour = Duration::from_secs(3600);
    let settings = RedisSettings {
        op_timeout: Duration::from_millis(150),
        connect_timeout: Duration::from_secs(5),
        cool_down: hour,
        max_cool_down: hour,
    };
    let cache = RedisCache::connect_with(&redis.url, settings)
        .await
        .expect("the handshake succeeds");

    let err = cache.get("k").await.expect_err("no answer");
    assert!(timed_out(&err), "{err}");
    let after_first = redis
        .wait_for("the first call", |s| s.commands.len() == 1)
        .await;

    // Every kind of call fails at once, deletes included.
    let key = ["k".to_owned()];
    for _ in 0..10 {
        let err = cache.get("k").await.expect_err("cooling down");
        assert!(cooling_down(&err), "{err}");
        let err = cache
            .set("k", b"v", Duration::from_secs(1))
            .await
            .expect_err("cooling down");
        assert!(cooling_down(&err), "{err}");
        let err = cache.delete(&key).await.expect_err("cooling down");
        assert!(cooling_down(&err), "{err}");
    }

    // Closing the connections flushes whatever was sent on them: once the
    // server has read to their end, it has seen everything.
    drop(cache);
    let end = redis
        .wait_for("every connection closed", |s| s.open == 0)
        .await;
    assert_eq!(end.accepted, 1, "no new connection");
    assert_eq!(end.commands, ["GET"], "only the first call's command");
    assert_eq!(end.bytes, after_first.bytes, "no byte after the first call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cool_down_one_call_probes_while_the_others_fail_fast() {
    let redis = HangingRedis::start().await;
    let settings = RedisSettings {
        // Ample for connecting to a local socket, so the probe gets as far
        // as sending its command.
        op_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        cool_down: Duration::from_millis(100),
        max_cool_down: Duration::from_secs(3600),
    };
    let cache = RedisCache::connect_with(&redis.url, settings)
        .await
        .expect("the handshake succeeds");

    let err = cache.get("k").await.expect_err("no answer");
    assert!(timed_out(&err), "{err}");
    redis
        .wait_for("the first call", |s| s.commands.len() == 1)
        .await;

    // Sleeping at least the cool-down leaves the breaker ready to probe.
    tokio::time::sleep(settings.cool_down).await;
    let key = ["k".to_owned()];
    let ttl = Duration::from_secs(1);
    // All polled together in this task, so all are asked while the first
    // one's probe waits on Redis.
    let (a, b, c, d, e, f) = tokio::join!(
        cache.get("k"),
        cache.get("k"),
        cache.set("k", b"v", ttl),
        cache.set("k", b"v", ttl),
        cache.delete(&key),
        cache.delete(&key),
    );
    let errors = [
        a.map(drop).expect_err("hangs"),
        b.map(drop).expect_err("hangs"),
        c.expect_err("hangs"),
        d.expect_err("hangs"),
        e.expect_err("hangs"),
        f.expect_err("hangs"),
    ];
    let probes = errors.iter().filter(|e| timed_out(e)).count();
    let refused = errors.iter().filter(|e| cooling_down(e)).count();
    assert_eq!((probes, refused), (1, 5), "{errors:?}");

    // The failed connection was dropped: the probe connected afresh.
    drop(cache);
    let end = redis
        .wait_for("every connection closed", |s| s.open == 0)
        .await;
    assert_eq!(end.accepted, 2, "the first connection and the probe's");
    assert_eq!(end.commands, ["GET", "GET"], "the first call and the probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_redis_replies_with_does_not_open_the_breaker() {
    let hour = Duration::from_secs(3600);
    let settings = RedisSettings {
        cool_down: hour,
        max_cool_down: hour,
        ..support::redis_settings()
    };
    let url = support::redis_url();
    let cache = RedisCache::connect_with(&url, settings)
        .await
        .unwrap_or_else(|e| panic!("the test Redis at {url} is unreachable ({e})"));
    let namespace = support::unique_namespace();
    let (hash, plain) = (format!("{namespace}:hash"), format!("{namespace}:plain"));
    let mut redis = ::redis::Client::open(url.as_str())
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis is reachable");
    let _: () = ::redis::cmd("HSET")
        .arg(&hash)
        .arg("f")
        .arg("v")
        .query_async(&mut redis)
        .await
        .expect("HSET");
    let _: () = ::redis::cmd("PEXPIRE")
        .arg(&hash)
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .expect("PEXPIRE");

    for _ in 0..3 {
        let err = cache.get(&hash).await.expect_err("GET on a hash");
        assert!(
            matches!(redis_error(&err), RedisCacheError::Redis(_)),
            "{err}"
        );
    }
    // Were the breaker open, these would fail for an hour.
    cache
        .set(&plain, b"v", Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(
        cache.get(&plain).await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    cache.delete(&[plain, hash]).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_when_redis_is_unreachable_but_open_does_not() {
    let err = RedisCache::connect_with("redis://127.0.0.1:1", support::redis_settings())
        .await
        .expect_err("nothing listens on port 1");
    assert!(!err.to_string().is_empty());

    let hour = Duration::from_secs(3600);
    let settings = RedisSettings {
        cool_down: hour,
        max_cool_down: hour,
        ..RedisSettings::default()
    };
    let cache = RedisCache::open("redis://127.0.0.1:1", settings).expect("lazy");
    let err = cache.get("k").await.expect_err("refused");
    assert!(
        matches!(redis_error(&err), RedisCacheError::Connect(_)),
        "{err}"
    );
    // No further connection attempt while the breaker cools down.
    for _ in 0..20 {
        let err = cache.get("k").await.expect_err("cooling down");
        assert!(cooling_down(&err), "{err}");
    }
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
        max_cool_down: Duration::from_millis(50),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_missed_redis_is_done_before_anything_is_read_again() {
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
        max_cool_down: Duration::from_millis(50),
    };
    let cache = RedisCache::connect_with(&proxy.url, settings)
        .await
        .expect("connect through the proxy");
    let key = format!("{}:k", support::unique_namespace());
    cache
        .set(&key, b"old", Duration::from_secs(60))
        .await
        .expect("set");

    // A write invalidates the key while Redis is out of reach: the delete
    // fails, and Redis still holds the old value.
    proxy.cut();
    let mut missed = false;
    for _ in 0..5 {
        missed |= cache.delete(std::slice::from_ref(&key)).await.is_err();
    }
    assert!(missed, "deletes kept working with Redis cut off");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.get(&key).await {
            Ok(value) => {
                assert_eq!(value, None, "the invalidated value was read back");
                break;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
