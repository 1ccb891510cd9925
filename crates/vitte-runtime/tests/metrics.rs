//! The process-wide metrics recorder: installed once, and rendered at
//! `/metrics` by the same router that answers the probes. Its own test
//! binary, since the recorder cannot be uninstalled.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use vitte_runtime::health::{self, Readiness};
use vitte_runtime::telemetry;

async fn get(router: &axum::Router, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_probe_router_serves_the_installed_recorder() {
    assert!(telemetry::metrics_handle().is_none());
    assert!(telemetry::install_metrics(), "the first install takes");
    assert!(
        !telemetry::install_metrics(),
        "a second one changes nothing"
    );

    let store = vitte_store_sqlite::testing::fresh_store().await;
    let router = health::router(Readiness::new(store));
    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);

    metrics::counter!(vitte_limits::RedisLimiter::UNAVAILABLE_METRIC).increment(2);
    let (status, body) = get(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.lines()
            .any(|l| l == "vitte_limiter_unavailable_total 2"),
        "{body}"
    );
    // Descriptions were registered at install time.
    assert!(
        body.contains("# HELP vitte_limiter_unavailable_total "),
        "{body}"
    );
}
