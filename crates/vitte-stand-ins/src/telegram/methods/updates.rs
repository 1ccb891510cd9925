//! Getting updates: `getUpdates` long polling and the webhook methods
//! (`setWebhook`, `deleteWebhook`, `getWebhookInfo`).

use std::time::Duration;

use serde_json::{Value, json};

use super::Reply;
use crate::telegram::Shared;
use crate::telegram::error::{BotApiError, BotResult};
use crate::telegram::params::Params;
use crate::telegram::state::Webhook;

const WEBHOOK_ACTIVE: &str = "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const SUPERSEDED: &str =
    "terminated by other getUpdates request; make sure that only one bot instance is running";

fn allowed_updates(params: &Params) -> BotResult<Option<Vec<String>>> {
    match params.json("allowed_updates", "allowed_updates")? {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        )),
        Some(_) => Err(BotApiError::bad_request(
            "can't parse allowed_updates JSON object",
        )),
    }
}

/// `getUpdates`: confirms updates below `offset`, returns up to `limit`, and
/// waits up to `timeout` seconds for the first one. A newer call ends an
/// older waiting one with 409, as on Telegram.
pub(crate) async fn get_updates(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let offset = params.i64("offset")?.unwrap_or(0);
    let limit = usize::try_from(params.i64("limit")?.unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let timeout = params.i64("timeout")?.unwrap_or(0).clamp(0, 3600);
    let allowed = allowed_updates(params)?;
    let mut changes = shared.watch_updates();
    let generation = {
        let mut state = shared.lock();
        if state.webhook.is_some() {
            return Err(BotApiError::Conflict(WEBHOOK_ACTIVE.into()));
        }
        state.confirm(offset);
        if let Some(allowed) = allowed {
            state.allowed_updates = allowed;
        }
        state.poll_generation += 1;
        state.poll_generation
    };
    shared.notify_updates();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(u64::try_from(timeout).unwrap_or(0));
    loop {
        changes.borrow_and_update();
        {
            let mut state = shared.lock();
            if state.poll_generation != generation {
                return Err(BotApiError::Conflict(SUPERSEDED.into()));
            }
            if state.webhook.is_some() {
                return Err(BotApiError::Conflict(WEBHOOK_ACTIVE.into()));
            }
            let batch: Vec<Value> = state
                .pending
                .iter()
                .take(limit)
                .map(|u| (*u.body).clone())
                .collect();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                state.counters.updates_returned += batch.len() as u64;
                return Ok(Value::Array(batch).into());
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(Value::Array(Vec::new()).into());
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            () = shared.closing.cancelled() => return Ok(Value::Array(Vec::new()).into()),
        }
    }
}

fn valid_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_webhook_url(shared: &Shared, raw: &str) -> BotResult<()> {
    let url = url::Url::parse(raw)
        .map_err(|_| BotApiError::bad_request("invalid webhook URL specified"))?;
    let require_https = shared.config.webhook.require_https;
    match url.scheme() {
        "https" => {}
        "http" if !require_https => {}
        _ => {
            return Err(BotApiError::bad_request(
                "bad webhook: An HTTPS URL must be provided for webhook",
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BotApiError::bad_request("invalid webhook URL specified"));
    }
    if require_https && !matches!(url.port_or_known_default(), Some(443 | 80 | 88 | 8443)) {
        return Err(BotApiError::bad_request(
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ));
    }
    Ok(())
}

/// `setWebhook`: an empty `url` removes the webhook.
pub(crate) fn set_webhook(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let url = params.str("url").unwrap_or_default();
    if url.is_empty() {
        return delete_webhook(shared, params);
    }
    check_webhook_url(shared, &url)?;
    let secret_token = params.str("secret_token").filter(|s| !s.is_empty());
    if let Some(secret) = &secret_token
        && !valid_secret(secret)
    {
        return Err(BotApiError::bad_request(
            "secret token contains unallowed characters",
        ));
    }
    let max_connections = params.i64("max_connections")?.unwrap_or(40).clamp(1, 100);
    let allowed = allowed_updates(params)?;
    let webhook = Webhook {
        url,
        secret_token,
        max_connections: usize::try_from(max_connections).unwrap_or(40),
        ip_address: params.str("ip_address"),
    };
    let description = {
        let mut state = shared.lock();
        if params.bool("drop_pending_updates") {
            state.pending.clear();
        }
        if let Some(allowed) = allowed {
            state.allowed_updates = allowed;
        }
        let unchanged = state.webhook.as_ref().is_some_and(|w| {
            w.url == webhook.url
                && w.secret_token == webhook.secret_token
                && w.max_connections == webhook.max_connections
        });
        state.webhook = Some(webhook);
        if unchanged {
            "Webhook is already set"
        } else {
            state.last_webhook_error = None;
            "Webhook was set"
        }
    };
    shared.notify_updates();
    Ok(Reply::with_description(Value::Bool(true), description))
}

/// `deleteWebhook`: switches back to getUpdates.
pub(crate) fn delete_webhook(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let description = {
        let mut state = shared.lock();
        if params.bool("drop_pending_updates") {
            state.pending.clear();
        }
        match state.webhook.take() {
            Some(_) => "Webhook was deleted",
            None => "Webhook is already deleted",
        }
    };
    shared.notify_updates();
    Ok(Reply::with_description(Value::Bool(true), description))
}

/// `getWebhookInfo`.
pub(crate) fn get_webhook_info(shared: &Shared) -> BotResult<Reply> {
    let state = shared.lock();
    let mut info = json!({
        "url": state.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
        "has_custom_certificate": false,
        "pending_update_count": state.pending.len(),
    });
    if let Some(webhook) = &state.webhook {
        info["max_connections"] = Value::from(webhook.max_connections);
        if let Some(ip) = &webhook.ip_address {
            info["ip_address"] = Value::from(ip.clone());
        }
        if let Some((date, message)) = &state.last_webhook_error {
            info["last_error_date"] = Value::from(*date);
            info["last_error_message"] = Value::from(message.clone());
        }
    }
    if !state.allowed_updates.is_empty() {
        info["allowed_updates"] = Value::from(state.allowed_updates.clone());
    }
    Ok(info.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_token_characters() {
        assert!(valid_secret("abc_DEF-123"));
        assert!(!valid_secret("with space"));
        assert!(!valid_secret(""));
        assert!(!valid_secret(&"a".repeat(257)));
    }
}
