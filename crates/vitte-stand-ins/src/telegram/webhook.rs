//! Pushing updates to the webhook, as Telegram does: each update is POSTed as
//! JSON (with `X-Telegram-Bot-Api-Secret-Token` when a secret was set) and
//! kept until the receiver answers 2xx; failures are retried with growing
//! pauses. Updates of one chat go strictly one after another; different chats
//! proceed in parallel up to the webhook's `max_connections`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::time::Instant;

use super::Shared;
use super::config::WebhookSettings;
use super::state::Webhook;

/// The header carrying the webhook's secret token.
pub(crate) const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Runs until the stand-in closes.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut changes = shared.watch_updates();
    loop {
        changes.borrow_and_update();
        let next_due = start_ready_deliveries(&shared);
        tokio::select! {
            () = shared.closing.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_until(next_due) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts every delivery that may start now; returns when the next waiting
/// retry falls due.
fn start_ready_deliveries(shared: &Arc<Shared>) -> Option<Instant> {
    let now = Instant::now();
    let mut state = shared.lock();
    let webhook = state.webhook.clone()?;
    let mut in_flight = state.pending.iter().filter(|u| u.in_flight).count();
    let mut chats_seen = HashSet::new();
    let mut next_due: Option<Instant> = None;
    let mut started = Vec::new();
    for update in state.pending.iter_mut() {
        if in_flight >= webhook.max_connections {
            break;
        }
        // Only the oldest update of each chat may be on its way.
        if let Some(chat) = update.chat_key
            && !chats_seen.insert(chat)
        {
            continue;
        }
        if update.in_flight {
            continue;
        }
        if let Some(due) = update.not_before.filter(|due| *due > now) {
            next_due = Some(next_due.map_or(due, |d| d.min(due)));
            continue;
        }
        update.in_flight = true;
        update.attempts += 1;
        in_flight += 1;
        started.push((update.id, update.body.clone()));
    }
    drop(state);
    for (id, body) in started {
        tokio::spawn(deliver(shared.clone(), webhook.clone(), id, body));
    }
    next_due
}

/// One POST of one update, and its consequence for the queue.
async fn deliver(shared: Arc<Shared>, webhook: Webhook, id: i64, body: Arc<Value>) {
    let mut request = shared
        .http
        .post(&webhook.url)
        .timeout(shared.config.webhook.timeout)
        .header(CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&*body).unwrap_or_default());
    if let Some(secret) = &webhook.secret_token {
        request = request.header(SECRET_HEADER, secret);
    }
    let outcome = tokio::select! {
        response = request.send() => classify(response),
        () = shared.closing.cancelled() => return,
    };
    let now_unix = shared.now_unix();
    {
        let mut state = shared.lock();
        match &outcome {
            Ok(()) => {
                if let Some(index) = state.pending.iter().position(|u| u.id == id) {
                    state.pending.remove(index);
                    state.counters.updates_delivered += 1;
                }
                state.counters.webhook_deliveries += 1;
            }
            Err(reason) => {
                let settings = shared.config.webhook;
                if let Some(update) = state.pending.iter_mut().find(|u| u.id == id) {
                    update.in_flight = false;
                    update.not_before = Some(Instant::now() + backoff(settings, update.attempts));
                }
                state.counters.webhook_failures += 1;
                state.last_webhook_error = Some((now_unix, reason.clone()));
            }
        }
    }
    if let Err(reason) = outcome {
        tracing::debug!(update_id = id, %reason, "webhook delivery failed; will retry");
    }
    shared.notify_updates();
}

/// The pause after the `attempts`-th failed attempt: doubling from the
/// initial wait, capped.
fn backoff(settings: WebhookSettings, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.max(1) - 1);
    settings
        .retry_initial
        .saturating_mul(factor)
        .min(settings.retry_max)
}

/// Telegram's `last_error_message` wording for a failed delivery.
fn classify(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    match response {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            Err(format!(
                "Wrong response from the webhook: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_owned())
        }
        Err(error) if error.is_timeout() => Err("Read timeout expired".into()),
        Err(error) if error.is_connect() => Err("Connection refused".into()),
        Err(_) => Err("Connection error".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = WebhookSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            ..WebhookSettings::default()
        };
        let waits: Vec<u64> = (1..=5).map(|n| backoff(settings, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(backoff(settings, 100).as_secs(), 5);
    }
}
