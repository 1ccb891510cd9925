//! `POST /telegram/webhook`: checks Telegram's secret header in constant
//! time, stores the update (a redelivery is recognised by its `update_id`),
//! and answers 200. Malformed bodies get 400; a store that cannot take the
//! update gets a 5xx so Telegram delivers it again later.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use vitte_domain::Clock;
use vitte_domain::ids::UpdateId;
use vitte_domain::ports::{StoreError, UpdateInbox};

/// Header Telegram sets to the secret given in `setWebhook`.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Telegram updates are a few KiB; anything far larger is not one.
const MAX_BODY: usize = 1024 * 1024;

/// What the webhook needs.
#[derive(Clone)]
pub struct Ingress {
    inbox: Arc<dyn UpdateInbox>,
    clock: Arc<dyn Clock>,
    secret: SecretString,
    stored: Arc<Notify>,
}

impl Ingress {
    /// An ingress storing into `inbox` and accepting only `secret`; `stored`
    /// is notified after each new update so the processor starts at once.
    pub fn new(
        inbox: Arc<dyn UpdateInbox>,
        clock: Arc<dyn Clock>,
        secret: SecretString,
        stored: Arc<Notify>,
    ) -> Self {
        Self {
            inbox,
            clock,
            secret,
            stored,
        }
    }
}

/// The webhook route.
pub fn router(ingress: Ingress) -> Router {
    Router::new()
        .route("/telegram/webhook", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ingress)
}

fn reply(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "ok": status.is_success(), "description": message })),
    )
        .into_response()
}

#[tracing::instrument(name = "webhook", skip_all, fields(update_id))]
async fn receive(State(ingress): State<Ingress>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = ingress.secret.expose_secret().as_bytes();
    if !bool::from(given.ct_eq(expected)) {
        return reply(StatusCode::UNAUTHORIZED, "wrong or missing secret token");
    }
    let update: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return reply(StatusCode::BAD_REQUEST, "an update must be a JSON object"),
        Err(e) => return reply(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")),
    };
    let Some(id) = update
        .get("update_id")
        .and_then(Value::as_i64)
        .and_then(|n| UpdateId::try_from(n).ok())
    else {
        return reply(
            StatusCode::BAD_REQUEST,
            "update_id missing or not a non-negative integer",
        );
    };
    tracing::Span::current().record("update_id", id.get());
    match ingress
        .inbox
        .record_update(id, &update, ingress.clock.now())
        .await
    {
        Ok(true) => {
            ingress.stored.notify_one();
            reply(StatusCode::OK, "stored")
        }
        Ok(false) => reply(StatusCode::OK, "duplicate"),
        Err(StoreError::Unavailable(e)) => {
            tracing::warn!(error = %e, "update not stored: database unavailable");
            reply(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
        Err(e) => {
            tracing::error!(error = %e, "update not stored");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Tells Telegram where to deliver updates (retrying until it works, since
/// without it no update arrives), with the secret it must send back.
pub async fn register(
    telegram: Arc<crate::telegram::Telegram>,
    url: url::Url,
    secret: SecretString,
    shutdown: vitte_runtime::Shutdown,
) {
    use teloxide_core::payloads::SetWebhookSetters;
    use teloxide_core::prelude::Requester;
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        let request = telegram
            .bot()
            .set_webhook(url.clone())
            .secret_token(secret.expose_secret().to_owned())
            .max_connections(100);
        match request.await {
            Ok(_) => {
                tracing::info!(%url, "webhook registered");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "setWebhook failed; retrying");
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use vitte_domain::SystemClock;

    use super::*;

    async fn app() -> (Router, Arc<dyn vitte_domain::ports::Store>) {
        let store = vitte_store_sqlite::testing::fresh_store().await;
        let ingress = Ingress::new(
            store.clone(),
            Arc::new(SystemClock),
            SecretString::from("s3cret".to_owned()),
            Arc::new(Notify::new()),
        );
        (router(ingress), store)
    }

    async fn post(app: &Router, secret: Option<&str>, body: &str) -> StatusCode {
        let mut req = Request::post("/telegram/webhook").header("content-type", "application/json");
        if let Some(s) = secret {
            req = req.header(SECRET_HEADER, s);
        }
        let req = req.body(Body::from(body.to_owned())).expect("request");
        app.clone().oneshot(req).await.expect("response").status()
    }

    #[tokio::test]
    async fn stores_each_update_once_and_refuses_wrong_secrets() {
        let (app, store) = app().await;
        let update = r#"{"update_id": 5, "message": {"text": "hi"}}"#;
        assert_eq!(post(&app, None, update).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            post(&app, Some("s3cre"), update).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(&app, Some("s3cret!"), update).await,
            StatusCode::UNAUTHORIZED
        );
        let now = SystemClock.now();
        assert_eq!(store.claim_updates(10, now, now).await.expect("claim"), []);

        assert_eq!(post(&app, Some("s3cret"), update).await, StatusCode::OK);
        assert_eq!(post(&app, Some("s3cret"), update).await, StatusCode::OK);
        let claimed = store.claim_updates(10, now, now).await.expect("claim");
        assert_eq!(claimed.len(), 1, "redelivery stored twice");
        assert_eq!(claimed[0].payload["message"]["text"], "hi");
    }

    #[tokio::test]
    async fn malformed_bodies_get_400() {
        let (app, _) = app().await;
        for body in [
            "",
            "not json",
            "[]",
            "42",
            r#"{"message": {}}"#,
            r#"{"update_id": -1}"#,
            r#"{"update_id": "7"}"#,
            r#"{"update_id": 1.5}"#,
            "{\"update_id\": 1, \"x\": \"\u{0}",
        ] {
            assert_eq!(
                post(&app, Some("s3cret"), body).await,
                StatusCode::BAD_REQUEST,
                "{body:?}"
            );
        }
    }
}
