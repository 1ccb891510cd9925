//! `/healthz` (the process is alive) and `/readyz` (it can do its work: the
//! database answers and the schema is the one this build expects). Every
//! role serves both, so orchestrators and load balancers treat them alike.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
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

/// The two probe routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
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
