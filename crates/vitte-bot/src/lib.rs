//! The bot role: where Telegram updates enter the system.
//!
//! The webhook path does only what makes an update durable (check the
//! secret, store it deduplicated by `update_id`) and answers; all handling
//! happens later, off the request path, so a slow model or a crash never
//! loses a message Telegram was told we accepted.

pub mod webhook;

use vitte_runtime::{AppContext, RoleParts};

/// The bot role's routes and tasks.
pub fn parts(ctx: &AppContext) -> RoleParts {
    let mut parts = RoleParts::new("bot");
    match &ctx.settings.telegram_webhook_secret {
        Some(secret) => {
            parts = parts.with_router(webhook::router(webhook::Ingress::new(
                ctx.store.clone(),
                ctx.clock.clone(),
                secret.clone(),
            )));
        }
        None => tracing::info!("TELEGRAM_WEBHOOK_SECRET is not set: the webhook endpoint is off"),
    }
    parts
}
