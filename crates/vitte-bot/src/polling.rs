//! Long polling, for bots without a public URL: `getUpdates` in a loop, each
//! update stored in the inbox before the offset moves past it, so an update
//! is confirmed to Telegram only once it is durable (the same guarantee the
//! webhook gives). Raw JSON is read, so an update kind this build does not
//! know is stored as it came instead of breaking the loop.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Notify;
use vitte_domain::Clock;
use vitte_domain::ids::UpdateId;
use vitte_domain::ports::UpdateInbox;
use vitte_runtime::Shutdown;

/// Seconds Telegram holds a `getUpdates` call open when there is nothing new.
const LONG_POLL_SECS: u64 = 25;

/// The poller.
pub struct Poller {
    /// Where updates go.
    pub inbox: Arc<dyn UpdateInbox>,
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// Wakes the inbox processor.
    pub signal: Arc<Notify>,
    /// Bot token.
    pub token: SecretString,
    /// Bot API base URL.
    pub api_url: url::Url,
}

impl Poller {
    fn method_url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.api_url.as_str().trim_end_matches('/'),
            self.token.expose_secret()
        )
    }

    /// Polls until shutdown. Errors back off and retry; they never end the loop.
    pub async fn run(self, shutdown: Shutdown) {
        let http = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(LONG_POLL_SECS + 10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client; long polling is off");
                return;
            }
        };
        // A webhook left from an earlier deployment would make getUpdates fail.
        let _ = http.post(self.method_url("deleteWebhook")).send().await;
        let mut offset: Option<i64> = None;
        let mut backoff = Duration::from_millis(500);
        loop {
            let body = json!({ "offset": offset, "timeout": LONG_POLL_SECS });
            let call = http.post(self.method_url("getUpdates")).json(&body).send();
            let response = tokio::select! {
                () = shutdown.wait() => return,
                r = call => r,
            };
            match self.take(response).await {
                Ok(Some(next)) => {
                    offset = Some(next);
                    backoff = Duration::from_millis(500);
                }
                Ok(None) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "getUpdates failed; retrying");
                    tokio::select! {
                        () = shutdown.wait() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Stores the updates of one response; returns the next offset.
    async fn take(
        &self,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<Option<i64>, String> {
        let response = response.map_err(|e| e.without_url().to_string())?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if body.get("ok") != Some(&Value::Bool(true)) {
            return Err(format!(
                "Telegram said: {}",
                body.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("no description")
            ));
        }
        let updates = body
            .get("result")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut next = None;
        for update in updates {
            let Some(id) = update.get("update_id").and_then(Value::as_i64) else {
                continue;
            };
            let Ok(uid) = UpdateId::try_from(id) else {
                // Never stored but confirmed, so it cannot stall the loop.
                next = Some(next.unwrap_or(0).max(id.saturating_add(1)));
                continue;
            };
            self.inbox
                .record_update(uid, &update, self.clock.now())
                .await
                .map_err(|e| format!("update {id} not stored: {e}"))?;
            next = Some(id + 1);
        }
        if next.is_some() {
            self.signal.notify_one();
        }
        Ok(next)
    }
}
