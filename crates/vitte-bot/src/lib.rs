//! The bot role: where Telegram updates enter the system and replies leave.
//!
//! The path of a message: the webhook (or the long-polling loop) stores the
//! update durably and acknowledges it; the inbox processor claims it and runs
//! its handler, which stores the user's message as pending and wakes the
//! responder; the responder generates the reply (one at a time per dialog,
//! across processes) and sends it. Nothing slow runs on the webhook path, and
//! a crash at any point leaves a stored update or a pending message that is
//! picked up again.

pub mod context;
pub mod handlers;
pub mod i18n;
pub mod inbox;
pub mod keyboards;
pub mod memory;
pub mod menu;
pub mod middlewares;
pub mod polling;
pub mod responder;
pub mod telegram;
pub mod webhook;

use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::sync::{Notify, mpsc};
use vitte_runtime::{AppContext, ConfigError, RoleParts};

use crate::context::BotContext;
use crate::i18n::Texts;
use crate::telegram::Telegram;

/// The bot role's routes and tasks. Without `TELEGRAM_BOT_TOKEN` the role
/// has nothing to talk to and contributes nothing (so `vitte all` still runs).
pub fn parts(ctx: &AppContext) -> Result<RoleParts, ConfigError> {
    let settings = &ctx.settings;
    let mut parts = RoleParts::new("bot");
    let Some(token) = settings.telegram_bot_token.clone() else {
        tracing::warn!("TELEGRAM_BOT_TOKEN is not set: Telegram ingress is off");
        return Ok(parts);
    };
    let texts = Texts::load().map_err(|e| ConfigError::new("locales", e.to_string()))?;
    let telegram = Arc::new(Telegram::new(
        token.expose_secret(),
        settings.telegram_api_url.clone(),
        ctx.limiter.clone(),
        ctx.clock.clone(),
        settings.telegram_send_rate,
    ));
    let llm = responder::llm_from_settings(settings)?;
    let (replies, jobs) = mpsc::unbounded_channel();
    let signal = Arc::new(Notify::new());
    middlewares::flood::describe_metrics();
    let bot = Arc::new(BotContext {
        store: ctx.store.clone(),
        clock: ctx.clock.clone(),
        telegram: telegram.clone(),
        texts,
        replies,
        inbox_signal: signal.clone(),
        limiter: ctx.limiter.clone(),
        quotas: context::Quotas {
            free: settings.rate_free.0.clone(),
            premium: settings.rate_premium.0.clone(),
            buttons: settings.rate_buttons.0.clone(),
        },
        flood: context::FloodLimits {
            quotas: settings.flood.0.clone(),
            pause: settings.flood_block,
        },
        spend: context::SpendLimits {
            service: vitte_domain::services::SpendService::new(
                settings.model_prices.0.iter().cloned(),
                settings.default_model_price,
            ),
            free_tokens: settings.daily_tokens_free,
            premium_tokens: settings.daily_tokens_premium,
            daily_cap: settings.daily_spend_cap,
        },
    });

    match (
        &settings.telegram_webhook_url,
        &settings.telegram_webhook_secret,
    ) {
        (Some(url), Some(secret)) => {
            parts = parts.with_router(webhook::router(webhook::Ingress::new(
                ctx.store.clone(),
                ctx.clock.clone(),
                secret.clone(),
                signal.clone(),
            )));
            parts = parts.with_task(webhook::register(
                telegram.clone(),
                url.clone(),
                secret.clone(),
                ctx.shutdown.clone(),
            ));
        }
        _ => {
            let poller = polling::Poller {
                inbox: ctx.store.clone(),
                clock: ctx.clock.clone(),
                signal: signal.clone(),
                token,
                api_url: settings.telegram_api_url.clone(),
            };
            parts = parts.with_task(poller.run(ctx.shutdown.clone()));
        }
    }
    let (summaries, summary_jobs) = mpsc::unbounded_channel();
    let summarizer = memory::Summarizer {
        store: ctx.store.clone(),
        clock: ctx.clock.clone(),
        llm: llm.clone(),
        planner: vitte_domain::services::SummaryPlanner::default(),
    };
    parts = parts
        .with_task(summarizer.run(summary_jobs, ctx.shutdown.clone()))
        .with_task(menu::publish(telegram.clone(), bot.texts.clone()));
    let responder =
        responder::Responder::new(bot.clone(), llm, settings.reply_streaming, summaries);
    Ok(parts
        .with_task(inbox::run(bot.clone(), ctx.shutdown.clone()))
        .with_task(responder.clone().run(jobs, ctx.shutdown.clone()))
        .with_task(responder.recover(ctx.shutdown.clone())))
}
