//! What the bot's handlers and tasks share, built once per process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use vitte_domain::Clock;
use vitte_domain::ids::DialogId;
use vitte_domain::ports::{Quota, RateLimiter, Store};
use vitte_domain::services::SpendService;

use crate::i18n::Texts;
use crate::telegram::Telegram;

/// Version of the terms in the locale files; bump it when their wording
/// changes and everyone is asked to accept again.
pub const TERMS_VERSION: i32 = 1;

/// A request to generate the next reply of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyJob {
    /// The dialog with pending messages.
    pub dialog: DialogId,
    /// The private chat to answer in (the user's Telegram id).
    pub chat: i64,
}

/// Dependencies of the bot role.
pub struct BotContext {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// Outbound Telegram calls.
    pub telegram: Arc<Telegram>,
    /// User-facing texts.
    pub texts: Texts,
    /// Wakes this process's reply generator.
    pub replies: mpsc::UnboundedSender<ReplyJob>,
    /// Wakes the inbox processor when the webhook stored an update.
    pub inbox_signal: Arc<Notify>,
    /// Per-user limits, shared by every process when Redis is configured.
    pub limiter: Arc<dyn RateLimiter>,
    /// The quotas it enforces.
    pub quotas: Quotas,
    /// When a user counts as flooding, and how long they are then ignored.
    pub flood: FloodLimits,
    /// Daily budgets of model spend.
    pub spend: SpendLimits,
}

/// How much the model may be used per UTC day, so one abuser (or a bug)
/// cannot run up the bill.
#[derive(Debug, Clone)]
pub struct SpendLimits {
    /// Prices replies.
    pub service: SpendService,
    /// Tokens a user on the free plan may spend a day.
    pub free_tokens: u64,
    /// Tokens a subscriber may spend a day.
    pub premium_tokens: u64,
    /// What all replies of a day may cost, in micro-dollars, before the free
    /// tier is paused.
    pub daily_cap: u64,
}

/// Flood protection: a person who sends updates faster than this is paused,
/// whatever their plan.
#[derive(Debug, Clone)]
pub struct FloodLimits {
    /// Updates (messages and button presses together) a user may send;
    /// empty turns flood protection off.
    pub quotas: Vec<Quota>,
    /// How long a user who crossed them is ignored. Zero pauses nobody: only
    /// the updates over the quotas are dropped.
    pub pause: Duration,
}

/// How often users may do things.
#[derive(Debug, Clone)]
pub struct Quotas {
    /// Chat messages on the free plan.
    pub free: Vec<Quota>,
    /// Chat messages with a subscription.
    pub premium: Vec<Quota>,
    /// Button presses.
    pub buttons: Vec<Quota>,
}
