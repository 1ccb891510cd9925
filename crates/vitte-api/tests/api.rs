//! The API over a real SQLite store and the in-process limiter: the persona
//! list, and per-client limits that answer 429 with `Retry-After`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use common::{App, assert_limited, get, json, quota, seeded_store, send, status};
use serde_json::json;
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};
use vitte_limits::MemoryLimiter;
use vitte_runtime::health::{self, Readiness};

/// Three requests at once, then one every 3.334 s (GCRA, 3 per 10 s).
fn three_per_ten_seconds() -> Vec<Quota> {
    vec![quota(3, 10)]
}

async fn memory_app(quotas: Vec<Quota>, trust_forwarded: bool) -> App {
    App::new(
        seeded_store().await,
        Arc::new(MemoryLimiter::new()),
        quotas,
        trust_forwarded,
    )
}

const ALICE: Option<&str> = Some("203.0.113.7:50000");
const BOB: Option<&str> = Some("198.51.100.2:50000");

#[tokio::test]
async fn the_listed_personas_are_served_within_the_limit() {
    let app = memory_app(three_per_ten_seconds(), false).await;
    let router = app.router();
    for _ in 0..3 {
        let response = send(&router, get("/v1/personas", ALICE, None)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            json(response).await,
            json!({"personas": [
                {
                    "slug": "elias",
                    "name": "Elias",
                    "tagline": "Elias is Elias.",
                    "tags": ["jazz"],
                    "picture": null
                },
                {
                    "slug": "mira",
                    "name": "Mira",
                    "tagline": "A cosy tea-shop owner.",
                    "tags": ["cozy", "english"],
                    "picture": "/v1/personas/mira/picture"
                }
            ]})
        );
    }
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_in_whole_seconds() {
    let app = memory_app(three_per_ten_seconds(), false).await;
    let router = app.router();
    for _ in 0..3 {
        assert_eq!(
            status(&router, get("/v1/personas", ALICE, None)).await,
            StatusCode::OK
        );
    }
    // The next slot opens 3.334 s later: rounded up, 4.
    assert_limited(send(&router, get("/v1/personas", ALICE, None)).await, 4).await;
    // A refused request costs nothing: 0.334 s are left after 3 s, said as 1.
    app.advance(Duration::from_secs(3));
    assert_limited(send(&router, get("/v1/personas", ALICE, None)).await, 1).await;
    // Waiting as told is enough.
    app.advance(Duration::from_millis(334));
    assert_eq!(
        status(&router, get("/v1/personas", ALICE, None)).await,
        StatusCode::OK
    );
    assert_limited(send(&router, get("/v1/personas", ALICE, None)).await, 4).await;
}

#[tokio::test]
async fn other_clients_keep_their_own_budget() {
    let app = memory_app(three_per_ten_seconds(), false).await;
    let router = app.router();
    for _ in 0..3 {
        send(&router, get("/v1/personas", ALICE, None)).await;
    }
    assert_limited(send(&router, get("/v1/personas", ALICE, None)).await, 4).await;
    // Alice's port does not matter; her address does.
    let alice_again = Some("203.0.113.7:60000");
    assert_limited(
        send(&router, get("/v1/personas", alice_again, None)).await,
        4,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            status(&router, get("/v1/personas", BOB, None)).await,
            StatusCode::OK
        );
    }
    assert_limited(send(&router, get("/v1/personas", BOB, None)).await, 4).await;
    // Every route counts against the same budget.
    assert_limited(
        send(&router, get("/v1/personas/mira/picture", BOB, None)).await,
        4,
    )
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_in_its_last_forwarded_entry() {
    let proxy = Some("10.0.0.1:40000");
    let app = memory_app(three_per_ten_seconds(), true).await;
    let router = app.router();
    for _ in 0..3 {
        let request = get("/v1/personas", proxy, Some("203.0.113.7"));
        assert_eq!(status(&router, request).await, StatusCode::OK);
    }
    // Entries a client writes itself land left of the proxy's and are ignored.
    let spoofed = get("/v1/personas", proxy, Some("192.0.2.99, 203.0.113.7"));
    assert_limited(send(&router, spoofed).await, 4).await;
    // Another client behind the same proxy has its own budget.
    let other = get("/v1/personas", proxy, Some("198.51.100.2"));
    assert_eq!(status(&router, other).await, StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_trusted() {
    let app = memory_app(three_per_ten_seconds(), false).await;
    let router = app.router();
    for i in 0..3 {
        let request = get("/v1/personas", ALICE, Some(&format!("192.0.2.{i}")));
        assert_eq!(status(&router, request).await, StatusCode::OK);
    }
    let request = get("/v1/personas", ALICE, Some("192.0.2.200"));
    assert_limited(send(&router, request).await, 4).await;
}

#[tokio::test]
async fn clients_without_a_known_address_share_one_budget() {
    // No peer address (the server did not record it) and no trusted proxy.
    let app = memory_app(three_per_ten_seconds(), false).await;
    let router = app.router();
    for _ in 0..3 {
        assert_eq!(
            status(&router, get("/v1/personas", None, None)).await,
            StatusCode::OK
        );
    }
    assert_limited(
        send(&router, get("/v1/personas", None, Some("192.0.2.1"))).await,
        4,
    )
    .await;
    // Clients whose address is known are not affected.
    assert_eq!(
        status(&router, get("/v1/personas", ALICE, None)).await,
        StatusCode::OK
    );
}

/// A limiter that counts its calls and fails each one, as an unreachable
/// Redis does.
#[derive(Default)]
struct BrokenLimiter {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl RateLimiter for BrokenLimiter {
    async fn acquire(
        &self,
        _key: &str,
        _quotas: &[Quota],
        _now: DateTime<Utc>,
    ) -> Result<RateDecision, LimitError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(LimitError(Box::new(std::io::Error::other(
            "connection refused",
        ))))
    }
}

#[tokio::test]
async fn an_unreachable_limiter_lets_requests_through() {
    let limiter = Arc::new(BrokenLimiter::default());
    let app = App::new(
        seeded_store().await,
        limiter.clone(),
        vec![quota(1, 60)],
        false,
    );
    let router = app.router();
    for _ in 0..5 {
        assert_eq!(
            status(&router, get("/v1/personas", ALICE, None)).await,
            StatusCode::OK
        );
    }
    assert_eq!(limiter.calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn no_quotas_means_no_limit() {
    let limiter = Arc::new(BrokenLimiter::default());
    let app = App::new(seeded_store().await, limiter.clone(), Vec::new(), false);
    let router = app.router();
    for _ in 0..20 {
        assert_eq!(
            status(&router, get("/v1/personas", ALICE, None)).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        limiter.calls.load(Ordering::SeqCst),
        0,
        "the limiter is never asked"
    );
}

#[tokio::test]
async fn probes_are_not_api_routes_and_never_limited() {
    let app = memory_app(vec![quota(1, 60)], false).await;
    let router = app.router();
    // The probes come from the runtime, not from this router.
    assert_eq!(
        status(&router, get("/healthz", ALICE, None)).await,
        StatusCode::NOT_FOUND
    );
    // Unknown paths do not count either: the one allowed request is still there.
    assert_eq!(
        status(&router, get("/v1/nothing", ALICE, None)).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(&router, get("/v1/personas", ALICE, None)).await,
        StatusCode::OK
    );
    assert_limited(send(&router, get("/v1/personas", ALICE, None)).await, 60).await;

    // Merged as the runtime serves it, probes answer a client over its limit.
    let served = health::router(Readiness::new(app.ctx.store.clone())).merge(router);
    assert_limited(send(&served, get("/v1/personas", ALICE, None)).await, 60).await;
    for _ in 0..5 {
        assert_eq!(
            status(&served, get("/healthz", ALICE, None)).await,
            StatusCode::OK
        );
    }
    // And so does the role's router as `parts` hands it over.
    let parts = vitte_api::parts(&app.ctx);
    assert_eq!(parts.name, "api");
    assert_limited(
        send(&parts.router, get("/v1/personas", ALICE, None)).await,
        60,
    )
    .await;
}

#[tokio::test]
async fn pictures_are_served_for_listed_personas_only() {
    let app = memory_app(vec![quota(100, 60)], false).await;
    let router = app.router();
    let response = send(&router, get("/v1/personas/mira/picture", ALICE, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    assert_eq!(&bytes[..], common::MIRA_PICTURE);

    // Hidden (though it has a picture), without a picture, unknown, invalid.
    for path in [
        "/v1/personas/hidden/picture",
        "/v1/personas/elias/picture",
        "/v1/personas/nobody/picture",
        "/v1/personas/NOT%20A%20SLUG/picture",
    ] {
        let response = send(&router, get(path, ALICE, None)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            json(response).await,
            json!({"error": "not_found"}),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_failing_store_is_a_503_that_says_nothing_of_it() {
    let store = vitte_store_sqlite::testing::temp_store()
        .await
        .expect("a store");
    // Closing the read pool makes every read fail.
    store.pool().close().await;
    let app = App::new(
        Arc::new(store),
        Arc::new(MemoryLimiter::new()),
        vec![quota(100, 60)],
        false,
    );
    let router = app.router();
    for path in ["/v1/personas", "/v1/personas/mira/picture"] {
        let response = send(&router, get(path, ALICE, None)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            json(response).await,
            json!({"error": "unavailable"}),
            "{path}"
        );
    }
}
