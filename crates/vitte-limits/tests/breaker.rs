//! The breaker in front of Redis, seen from the network: once Redis has
//! failed, calls fail at once and nothing reaches Redis while the breaker
//! cools down; then one call probes it, and when Redis is back the limiter
//! decides through it again.
//!
//! Every check counts events (connections, commands, bytes, errors); none
//! measures how long anything took.

mod common;

use std::error::Error as _;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::DateTime;
use metrics_exporter_prometheus::PrometheusBuilder;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};
use vitte_limits::{LimiterError, RedisLimiter};
use vitte_redis::testing::{HangingRedis, PATIENCE};

const TEN_A_MINUTE: [Quota; 1] = [Quota {
    count: 10,
    period: Duration::from_secs(60),
}];

/// The response timeout of the limiters on the hanging Redis.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(200);

fn t0() -> DateTime<chrono::Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).expect("a valid instant")
}

/// The engine's own error inside a port error.
fn cause(error: &LimitError) -> &LimiterError {
    error
        .source()
        .and_then(|e| e.downcast_ref::<LimiterError>())
        .expect("a limiter error")
}

fn timed_out(error: &LimitError) -> bool {
    matches!(cause(error), LimiterError::Redis(e) if e.is_timeout())
}

fn cooling_down(error: &LimitError) -> bool {
    matches!(cause(error), LimiterError::CoolingDown)
}

fn unavailable(rendered: &str) -> Option<u64> {
    rendered.lines().find_map(|l| {
        l.strip_prefix(RedisLimiter::UNAVAILABLE_METRIC)?
            .trim()
            .parse()
            .ok()
    })
}

/// A connection to `url` like the one [`RedisLimiter::connect`] makes, with
/// a shorter response timeout.
async fn manager(url: &str) -> ConnectionManager {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_number_of_retries(0);
    let client = redis::Client::open(url).expect("a valid URL");
    ConnectionManager::new_with_config(client, config)
        .await
        .expect("the handshake succeeds")
}

// One thread, so the recorder set for it sees every call of the test.
#[tokio::test(flavor = "current_thread")]
async fn while_cooling_down_no_call_reaches_redis() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let redis = HangingRedis::start().await;
    let hour = Duration::from_secs(3600);
    let limiter = RedisLimiter::new(manager(&redis.url).await)
        .with_namespace(common::unique_namespace())
        .with_cool_down(hour, hour);

    let first = limiter
        .acquire("user:1", &TEN_A_MINUTE, t0())
        .await
        .expect_err("no answer");
    assert!(timed_out(&first), "{first:?}");
    let after_first = redis
        .wait_for("the first call", |s| s.commands.len() == 1)
        .await;

    let calls = 20;
    for i in 0..calls {
        let error = limiter
            .acquire(&format!("user:{i}"), &TEN_A_MINUTE, t0())
            .await
            .expect_err("cooling down");
        assert!(cooling_down(&error), "{error:?}");
    }

    // Closing the connection flushes whatever was sent on it: once the
    // server has read to its end, it has seen everything.
    drop(limiter);
    let end = redis
        .wait_for("the connection closed", |s| s.open == 0)
        .await;
    assert_eq!(end.accepted, 1, "no new connection");
    assert_eq!(end.commands, ["EVALSHA"], "only the first call's script");
    assert_eq!(end.bytes, after_first.bytes, "no byte after the first call");
    // Every failure is counted, the fast ones included.
    assert_eq!(unavailable(&handle.render()), Some(calls + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cool_down_one_call_probes_while_the_others_fail_fast() {
    let redis = HangingRedis::start().await;
    let cool_down = Duration::from_millis(100);
    let limiter = RedisLimiter::new(manager(&redis.url).await)
        .with_namespace(common::unique_namespace())
        .with_cool_down(cool_down, Duration::from_secs(3600));

    let first = limiter
        .acquire("user:1", &TEN_A_MINUTE, t0())
        .await
        .expect_err("no answer");
    assert!(timed_out(&first), "{first:?}");
    redis
        .wait_for("the first call", |s| s.commands.len() == 1)
        .await;

    // Sleeping at least the cool-down leaves the breaker ready to probe.
    tokio::time::sleep(cool_down).await;
    let call = || limiter.acquire("user:1", &TEN_A_MINUTE, t0());
    // All polled together in this task, so all are asked while the first
    // one's probe waits on Redis.
    let results = tokio::join!(
        call(),
        call(),
        call(),
        call(),
        call(),
        call(),
        call(),
        call()
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
    ];
    let errors: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().expect_err("Redis hangs"))
        .collect();
    let probes = errors.iter().filter(|e| timed_out(e)).count();
    let refused = errors.iter().filter(|e| cooling_down(e)).count();
    assert_eq!((probes, refused), (1, 7), "{errors:?}");

    drop(limiter);
    let end = redis
        .wait_for("the connection closed", |s| s.open == 0)
        .await;
    assert_eq!(end.accepted, 1);
    assert_eq!(
        end.commands,
        ["EVALSHA", "EVALSHA"],
        "the first call and the probe"
    );
}

/// A TCP proxy to the test Redis that can stop (its connections cut and
/// its port closed, so connecting is refused as with a Redis that is down)
/// and listen again on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    accept: Option<JoinHandle<()>>,
    cuts: watch::Sender<u64>,
    live: watch::Sender<usize>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut proxy = Self {
            addr: listener.local_addr().expect("addr"),
            upstream,
            accept: None,
            cuts: watch::channel(0).0,
            live: watch::channel(0).0,
        };
        proxy.serve(listener);
        proxy
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, cuts, live) = (self.upstream.clone(), self.cuts.clone(), self.live.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                let (upstream, live) = (upstream.clone(), live.clone());
                live.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    }
                    drop(client);
                    live.send_modify(|n| *n -= 1);
                });
            }
        }));
    }

    /// Closes the port and cuts every connection, returning once all are closed.
    async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        self.cuts.send_modify(|n| *n += 1);
        let mut live = self.live.subscribe();
        tokio::time::timeout(PATIENCE, live.wait_for(|n| *n == 0))
            .await
            .expect("the proxy's connections close")
            .expect("the proxy is alive");
    }

    /// Listens again on the same port.
    async fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("the port again");
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_decides_through_redis_again_once_it_is_back() {
    let upstream = common::redis_url()
        .strip_prefix("redis://")
        .and_then(|rest| rest.split('/').next())
        .expect("a redis:// URL with host:port")
        .to_owned();
    let mut proxy = Proxy::start(upstream).await;
    let cool_down = Duration::from_millis(100);
    let namespace = common::unique_namespace();
    let url = proxy.url();
    let limiter = match RedisLimiter::connect(&url).await {
        Ok(limiter) => limiter,
        Err(e) => panic!(
            "the Redis tests need a Redis at {}: {e}",
            common::redis_url()
        ),
    }
    .with_namespace(&namespace)
    .with_cool_down(cool_down, cool_down);
    let allowed = || async {
        limiter
            .acquire("user:1", &TEN_A_MINUTE, t0())
            .await
            .expect("a decision")
    };
    assert_eq!(allowed().await, RateDecision::Allowed);

    proxy.stop().await;
    let error = limiter
        .acquire("user:1", &TEN_A_MINUTE, t0())
        .await
        .expect_err("Redis is gone");
    assert!(
        matches!(cause(&error), LimiterError::Redis(e) if e.is_io_error()),
        "{error:?}"
    );

    // The connection manager reconnects in the background at once after
    // that failure and finds the port closed. (Were it slower than this
    // pause, it would find Redis back and the probe would pass all the same.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.resume().await;
    tokio::time::sleep(cool_down).await;
    // The first call after the cool-down probes, finds Redis back and
    // closes the breaker; the budget continues where it stopped.
    assert_eq!(allowed().await, RateDecision::Allowed);
    for _ in 0..8 {
        assert_eq!(allowed().await, RateDecision::Allowed);
    }
    assert!(matches!(
        limiter.acquire("user:1", &TEN_A_MINUTE, t0()).await,
        Ok(RateDecision::Limited { .. })
    ));
    // Those decisions were Redis's: a limiter on it directly agrees.
    let direct = common::limiter_in(&namespace).await;
    assert!(matches!(
        direct.acquire("user:1", &TEN_A_MINUTE, t0()).await,
        Ok(RateDecision::Limited { .. })
    ));
}
