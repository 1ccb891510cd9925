//! `/healthz` (the process is alive) and `/readyz` (it can do its work: the
//! database answers and the schema is the one this build expects). Every
//! role serves both, so orchestrators and load balancers treat them alike.
//!
//! Beside them, `/metrics`: the Prometheus text exposition of the recorder
//! the binary installed ([`crate::telemetry::install_metrics`]). A process
//! without one (tests, a library embedding the roles) has no such route and
//! answers 404, so a scraper pointed at it reports a broken target rather
//! than an empty one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;
use vitte_domain::ports::Store;

/// How long a good schema check is trusted. Pings happen on every probe;
/// the schema only changes by a deliberate `migrate`, so it is re-read less often.
const SCHEMA_RECHECK: Duration = Duration::from_secs(30);
/// A probe must answer quickly even when the database hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What readiness needs.
#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn Store>,
    schema_ok_at: Arc<Mutex<Option<Instant>>>,
}

impl Readiness {
    /// Readiness of a process using `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            schema_ok_at: Arc::new(Mutex::new(None)),
        }
    }

    /// `Ok` when ready, else the reason.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
            Err(_) => return Err("database did not answer within 2s".to_owned()),
            Ok(Err(e)) => return Err(format!("database unreachable: {e}")),
            Ok(Ok(())) => {}
        }
        let mut ok_at = self.schema_ok_at.lock().await;
        if ok_at.is_some_and(|t| t.elapsed() < SCHEMA_RECHECK) {
            return Ok(());
        }
        let status = tokio::time::timeout(PING_TIMEOUT, self.store.status())
            .await
            .map_err(|_| "schema check timed out".to_owned())?
            .map_err(|e| format!("schema check failed: {e}"))?;
        if !status.is_current() {
            *ok_at = None;
            return Err(format!(
                "schema not current (version {}, {} pending, {} unknown): run `vitte migrate up`",
                status.version(),
                status.pending.len(),
                status.unknown.len()
            ));
        }
        *ok_at = Some(Instant::now());
        Ok(())
    }
}

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two probe routes, and `/metrics` when the process installed a recorder.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .merge(metrics_router(crate::telemetry::metrics_handle()))
}

/// `GET /metrics` rendering `handle`; no route at all without one.
pub fn metrics_router(handle: Option<PrometheusHandle>) -> Router {
    match handle {
        Some(handle) => Router::new()
            .route("/metrics", get(metrics))
            .with_state(handle),
        None => Router::new(),
    }
}

async fn metrics(State(handle): State<PrometheusHandle>) -> Response {
    // With no listener of the exporter's own, nothing else runs its upkeep
    // (which keeps histograms from growing without bound).
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], handle.render()).into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({"status": "alive"}))).into_response()
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.check().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": reason})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt;

    use super::*;

    async fn get_metrics(router: Router) -> (StatusCode, Option<String>, String) {
        let request = Request::get("/metrics")
            .body(Body::empty())
            .expect("request");
        let response = router.oneshot(request).await.expect("response");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn metrics_render_a_counter_once_it_is_incremented() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let router = metrics_router(Some(recorder.handle()));
        let (status, _, body) = get_metrics(router.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.contains("vitte_test_events_total"), "{body}");

        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!("vitte_test_events_total", "Events of the test.");
            metrics::counter!("vitte_test_events_total", "kind" => "a").increment(3);
        });
        let (status, content_type, body) = get_metrics(router).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(PROMETHEUS_TEXT));
        assert!(
            body.lines()
                .any(|l| l == "vitte_test_events_total{kind=\"a\"} 3"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE vitte_test_events_total counter"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn without_a_recorder_there_is_no_metrics_route() {
        let (status, _, _) = get_metrics(metrics_router(None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
