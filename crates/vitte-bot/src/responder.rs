//! The responder: writes the persona's replies, off the webhook path.
//!
//! One reply at a time per dialog, across processes: a reply starts only
//! under the dialog's reply lease. Messages that arrive while the persona is
//! "typing" stay pending and are answered together, in order, by the next
//! reply. A recovery sweep finds pending messages whose reply never came (a
//! crash, a lost wake-up) and starts them again. When the model cannot
//! answer, the messages are marked failed, the person is told, and `/retry`
//! brings them back. The same happens when the day's budget is spent: the
//! person's own token allowance, or (for the free tier) the global cap on
//! what the day's replies cost.
//!
//! A reply woken by a new message reads the store once: the dialog's newest
//! messages, which hold both the history shown to the model and the pending
//! messages it answers (everything else it needs is served by the caching
//! store). Pending messages that might lie before that window are read on
//! their own, and so are those the recovery sweep finds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use vitte_domain::ids::{DialogId, UserId};
use vitte_domain::model::{Message, MessageState, NewMessage, Role};
use vitte_domain::ports::{CompletedReply, ReplyCompletion, StoreError};
use vitte_domain::services::{
    IntimacyDecision, IntimacyInput, IntimacyService, LevelUp, PromptBudget, PromptBuilder,
    PromptRole, SafetyService, SafetyVerdict, SpendDecision, SpendService, SummaryPlanner,
    escape_html, format_usd, shape_reply, start_of_day,
};
use vitte_llm::{
    ChatMessage, ChatRequest, LlmPolicy, LlmService, ModelChain, OpenAiCompatible, OpenAiConfig,
    ReplyEvent,
};
use vitte_runtime::{ConfigError, Settings, Shutdown};

use crate::context::{BotContext, ReplyJob};
use crate::i18n::Lang;
use crate::telegram::SendError;

/// How long a reply lease lasts without renewal. Short, so the dialogs of a
/// crashed process are taken over within seconds; a live generation renews
/// it every `RENEW_EVERY`.
const LEASE: TimeDelta = TimeDelta::seconds(LEASE_SECS);
/// `LEASE` in seconds.
const LEASE_SECS: i64 = 15;
/// How often a generation in progress renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(4);
/// A reply is shown without confirming its lease first when the lease was
/// written less than this long ago (by this process's monotonic clock, so a
/// stalled process sees its stall): at least `LEASE - FRESH_LEASE` of it is
/// left, far more than a send takes, and the send renews it meanwhile.
const FRESH_LEASE: Duration = Duration::from_secs(5);
/// `LEASE` as a duration.
const LEASE_STD: Duration = Duration::from_secs(LEASE_SECS.unsigned_abs());
/// What is left of the lease, at least, when a reply has just been shown:
/// it was written within `FRESH_LEASE` before sending began and renewed
/// every `RENEW_EVERY` while sending.
const SHOWN_LEASE_LEFT: Duration = LEASE_STD
    .saturating_sub(FRESH_LEASE)
    .saturating_sub(RENEW_EVERY);
/// While storing a shown reply is retried, the lease is renewed once less
/// than this is left of it…
const LEASE_RENEW_BELOW: Duration = Duration::from_secs(10);
/// …and the attempts stop this long before it would end.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// Pending messages older than this with no reply in progress are recovered.
const STALE: TimeDelta = TimeDelta::seconds(10);
/// How often the recovery sweep looks.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Messages of history read for the prompt (the builder keeps what fits).
const HISTORY: u32 = 60;
/// Telegram's message length limit, in UTF-16 code units.
const TELEGRAM_LIMIT: usize = 4096;
/// Progressive display: the first partial text appears after this much text…
const FIRST_SHOW_CHARS: usize = 40;
/// …and is edited at most this often (Telegram allows about one edit a second per chat).
const EDIT_EVERY: Duration = Duration::from_millis(1500);
/// "typing…" fades after about five seconds; it is renewed before that.
const TYPING_EVERY: Duration = Duration::from_millis(4500);
/// Everyone's spend of the day is re-read this often, not on every message;
/// the cap may be overshot by what is spent meanwhile.
const GLOBAL_SPEND_TTL: TimeDelta = TimeDelta::seconds(30);
/// The spend-cap alert is logged at most this often.
const CAP_ALERT_EVERY: TimeDelta = TimeDelta::minutes(1);

/// Builds the LLM service the settings describe.
pub fn llm_from_settings(settings: &Settings) -> Result<Arc<LlmService>, ConfigError> {
    let mut config = OpenAiConfig::new(settings.llm_base_url.as_str().trim_end_matches('/'));
    if let Some(key) = &settings.llm_api_key {
        config = config.with_api_key(key.clone());
    }
    let provider = OpenAiCompatible::new(config)
        .map_err(|e| ConfigError::new("LLM_BASE_URL", e.to_string()))?;
    let models = ModelChain::new(
        std::iter::once(settings.llm_model.clone())
            .chain(settings.llm_fallback_models.0.iter().cloned()),
    )
    .map_err(|e| ConfigError::new("LLM_MODEL", e.to_string()))?;
    Ok(Arc::new(LlmService::new(
        Arc::new(provider),
        models,
        LlmPolicy::default(),
        Arc::new(vitte_domain::SystemClock),
    )))
}

/// Reply generation for this process.
pub struct Responder {
    ctx: Arc<BotContext>,
    llm: Arc<LlmService>,
    prompt: PromptBuilder,
    /// Tells when a summary refresh is due; the same rules as the summarizer's.
    planner: SummaryPlanner,
    safety: SafetyService,
    intimacy: IntimacyService,
    /// Identifies this process's leases.
    owner: String,
    /// Dialogs being answered here, with the work that arrived meanwhile.
    running: Mutex<HashMap<DialogId, Wanted>>,
    tasks: TaskTracker,
    /// Edit one message as text arrives, instead of sending the reply whole.
    progressive: bool,
    /// Asks for the dialog's summary to be refreshed.
    summaries: mpsc::UnboundedSender<crate::memory::SummaryJob>,
    /// Everyone's spend of the day, as last read.
    global_spend: Mutex<Option<GlobalSpend>>,
    /// When the spend-cap alert was last logged.
    cap_alerted: Mutex<Option<DateTime<Utc>>>,
}

/// Where a reply finds the pending messages it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// In the history window it reads anyway, when the window shows them
    /// all: a new message is always in it.
    Window,
    /// Read on their own, however old: the recovery sweep's case, where a
    /// message may have been left behind.
    All,
}

/// A dialog being answered here: whether to answer it again when the
/// current reply ends, because a job arrived meanwhile, and how.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    again: bool,
    scope: Scope,
}

/// What all replies of a day cost, read at `read_at`.
#[derive(Debug, Clone, Copy)]
struct GlobalSpend {
    /// Start of the day it covers.
    day: DateTime<Utc>,
    read_at: DateTime<Utc>,
    /// Micro-dollars.
    cost: u64,
}

impl Responder {
    /// A responder using `llm`.
    pub fn new(
        ctx: Arc<BotContext>,
        llm: Arc<LlmService>,
        progressive: bool,
        summaries: mpsc::UnboundedSender<crate::memory::SummaryJob>,
    ) -> Arc<Self> {
        let owner = format!("{}-{}", std::process::id(), rand_suffix());
        Arc::new(Self {
            ctx,
            llm,
            prompt: PromptBuilder::new(PromptBudget::default()),
            planner: SummaryPlanner::default(),
            safety: SafetyService::default(),
            intimacy: IntimacyService::default(),
            owner,
            running: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            progressive,
            summaries,
            global_spend: Mutex::new(None),
            cap_alerted: Mutex::new(None),
        })
    }

    /// Takes reply jobs until shutdown, then lets replies in progress finish.
    pub async fn run(
        self: Arc<Self>,
        mut jobs: mpsc::UnboundedReceiver<ReplyJob>,
        shutdown: Shutdown,
    ) {
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                job = jobs.recv() => match job {
                    Some(job) => self.start(job, Scope::Window),
                    None => break,
                },
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Finds pending messages nobody is answering and answers them.
    pub async fn recover(self: Arc<Self>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "recovery sweep failed; retrying");
            }
        }
    }

    async fn sweep(self: &Arc<Self>) -> Result<(), StoreError> {
        let store = &self.ctx.store;
        let stale = store
            .dialogs_with_pending(self.ctx.clock.now() - STALE, 100)
            .await?;
        for dialog in stale {
            let Some(d) = store.dialog(dialog).await? else {
                continue;
            };
            let Some(user) = store.user(d.user_id).await? else {
                continue;
            };
            tracing::info!(dialog = dialog.0, "recovering unanswered messages");
            self.start(
                ReplyJob {
                    dialog,
                    chat: user.telegram_id.get(),
                },
                Scope::All,
            );
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DialogId, Wanted>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers the dialog of `job`, or, when a reply to it is under way
    /// here, answers it again once that reply ends: each job is answered by
    /// a reply that starts after it arrived.
    fn start(self: &Arc<Self>, job: ReplyJob, scope: Scope) {
        {
            let mut running = self.lock();
            if let Some(wanted) = running.get_mut(&job.dialog) {
                wanted.scope = if wanted.again {
                    wanted.scope.max(scope)
                } else {
                    scope
                };
                wanted.again = true;
                return;
            }
            running.insert(
                job.dialog,
                Wanted {
                    again: false,
                    scope,
                },
            );
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            // Even if answering panics, the dialog must not stay marked as
            // being answered here, or it would never be answered again.
            let mut guard = Running {
                responder: this.clone(),
                dialog: job.dialog,
                armed: true,
            };
            let mut scope = scope;
            loop {
                let requested = this.answer(job, scope).await;
                let mut running = this.lock();
                match running.get_mut(&job.dialog) {
                    Some(wanted) if wanted.again => {
                        wanted.again = false;
                        scope = wanted.scope;
                    }
                    // Another process asked for a reply while this one ran:
                    // its message is new, so in the window.
                    Some(_) if requested => scope = Scope::Window,
                    _ => {
                        // Removed under the lock, so a wake-up racing with
                        // the end of this task starts a new one.
                        running.remove(&job.dialog);
                        guard.armed = false;
                        return;
                    }
                }
            }
        });
    }

    /// Runs `work` while renewing the dialog's reply lease.
    async fn renewing<T>(
        &self,
        job: ReplyJob,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, ReplyError> {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = renew.tick() => {
                    if self.lease(job.dialog).await?.is_none() {
                        return Err(ReplyError::LeaseLost);
                    }
                }
            }
        }
    }

    /// A reply that can never succeed (Telegram refuses it, the persona is
    /// gone): the messages are marked failed and the person is told, instead
    /// of the recovery sweep paying for the same reply again and again.
    async fn give_up_failed(&self, job: ReplyJob) -> Result<(), ReplyError> {
        let store = &self.ctx.store;
        let pending: Vec<_> = store
            .pending_messages(job.dialog)
            .await?
            .iter()
            .map(|m| m.id)
            .collect();
        store
            .set_message_state(&pending, MessageState::Failed)
            .await?;
        let Some(dialog) = store.dialog(job.dialog).await? else {
            return Ok(());
        };
        let user = store.user(dialog.user_id).await?;
        let persona = store.persona(dialog.persona_id).await?;
        let lang = Lang::from_code(user.as_ref().and_then(|u| u.language.as_deref()));
        let name = persona
            .map(|p| escape_html(&p.card.name))
            .unwrap_or_default();
        let text = self.ctx.texts.get(lang, "chat.failed", &[("name", &name)]);
        self.ctx.telegram.send_html(job.chat, &text, None).await?;
        Ok(())
    }

    /// Takes or renews the dialog's reply lease for a full term; when taken,
    /// the instant just before it was asked for (the lease lasts `LEASE`
    /// from at least then). When another process holds it, the store leaves
    /// that process a request to answer again.
    async fn lease(&self, dialog: DialogId) -> Result<Option<Instant>, StoreError> {
        let asked = Instant::now();
        let now = self.ctx.clock.now();
        let taken = self
            .ctx
            .store
            .lease_reply(dialog, &self.owner, now, now + LEASE)
            .await?;
        Ok(taken.then_some(asked))
    }

    /// Takes the dialog's reply lease; when another process holds it, the
    /// store leaves that process a request to answer again once its reply
    /// ends (the messages that woke this reply may have come after it read
    /// its history). When the lease was taken, the instant just before it
    /// was asked for (the lease lasts `LEASE` from at least then).
    async fn take_lease(&self, dialog: DialogId) -> Option<Instant> {
        match self.lease(dialog).await {
            Ok(leased) => leased,
            Err(e) => {
                tracing::warn!(error = %e, "cannot lease the dialog; recovery will retry");
                None
            }
        }
    }

    /// Answers the dialog's pending messages with one reply. Messages that
    /// arrive meanwhile wake their own reply: in this process through
    /// [`Responder::start`], from another through the request it leaves on
    /// the dialog. `true` when such a request came, so the dialog is to be
    /// answered again.
    #[tracing::instrument(name = "reply", skip_all, fields(dialog = job.dialog.0))]
    async fn answer(&self, job: ReplyJob, scope: Scope) -> bool {
        let Some(leased_at) = self.take_lease(job.dialog).await else {
            return false;
        };
        let outcome = self.answer_once(job, scope, leased_at).await;
        let wanted = match outcome {
            Ok(Lease::Released { wanted }) => wanted,
            _ => match self.ctx.store.release_reply(job.dialog, &self.owner).await {
                Ok(wanted) => wanted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release the reply lease; it will expire");
                    false
                }
            },
        };
        match outcome {
            Ok(_) => {}
            Err(ReplyError::Send(SendError::Blocked)) => {
                // Nobody to answer: stop retrying, and keep broadcasts
                // away until the person writes again.
                if let Err(e) = self.give_up_blocked(job).await {
                    tracing::warn!(error = %e, "cannot record that the user blocked the bot");
                }
            }
            Err(e @ (ReplyError::Send(SendError::Refused(_)) | ReplyError::Gone)) => {
                tracing::error!(error = %e, "reply can never be delivered; messages marked failed");
                if let Err(e) = self.give_up_failed(job).await {
                    tracing::warn!(error = %e, "could not tell the user their reply failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reply failed; recovery will retry"),
        }
        wanted
    }

    /// The person blocked the bot: their pending messages are dropped (they
    /// cannot be answered) and the user is flagged.
    async fn give_up_blocked(&self, job: ReplyJob) -> Result<(), StoreError> {
        let store = &self.ctx.store;
        let pending: Vec<_> = store
            .pending_messages(job.dialog)
            .await?
            .iter()
            .map(|m| m.id)
            .collect();
        store
            .set_message_state(&pending, MessageState::Dropped)
            .await?;
        if let Some(dialog) = store.dialog(job.dialog).await? {
            store.set_blocked_bot(dialog.user_id, true).await?;
        }
        tracing::info!(
            dialog = job.dialog.0,
            "user blocked the bot; pending messages dropped"
        );
        Ok(())
    }

    /// The messages a reply answers and the history it shows the model;
    /// `None` when nothing is pending. With [`Scope::Window`] one read gives
    /// both, unless the window may not hold every pending message.
    async fn conversation(
        &self,
        dialog: DialogId,
        scope: Scope,
    ) -> Result<Option<(Vec<Message>, Vec<Message>)>, StoreError> {
        let store = &self.ctx.store;
        if scope == Scope::Window {
            let history = store.recent_messages(dialog, HISTORY).await?;
            if !may_miss_pending(&history, HISTORY) {
                let pending: Vec<Message> = history
                    .iter()
                    .filter(|m| m.role == Role::User && m.state == MessageState::Pending)
                    .cloned()
                    .collect();
                return Ok((!pending.is_empty()).then_some((pending, history)));
            }
        }
        // Pending first, so that none of them is newer than the history.
        let pending = store.pending_messages(dialog).await?;
        if pending.is_empty() {
            return Ok(None);
        }
        let history = store.recent_messages(dialog, HISTORY).await?;
        Ok(Some((pending, history)))
    }

    /// One reply to everything pending (nothing when nothing is), under the
    /// lease taken at `leased_at`.
    async fn answer_once(
        &self,
        job: ReplyJob,
        scope: Scope,
        mut leased_at: Instant,
    ) -> Result<Lease, ReplyError> {
        let store = &self.ctx.store;
        let Some((pending, mut history)) = self.conversation(job.dialog, scope).await? else {
            return Ok(Lease::Held);
        };
        let dialog = store.dialog(job.dialog).await?.ok_or(ReplyError::Gone)?;
        let user = store.user(dialog.user_id).await?.ok_or(ReplyError::Gone)?;
        let persona = store
            .persona(dialog.persona_id)
            .await?
            .ok_or(ReplyError::Gone)?;
        let lang = Lang::from_code(user.language.as_deref());
        let ids: Vec<_> = pending.iter().map(|m| m.id).collect();
        let name = escape_html(&persona.card.name);

        // Refused input never reaches the model; the messages are dropped so
        // it never sees them later either.
        let said: Vec<&str> = pending.iter().map(|m| m.text.as_str()).collect();
        let notice = match self.safety.check_input(&said.join("\n")) {
            SafetyVerdict::Allow => None,
            SafetyVerdict::Support { category } => Some((category, "chat.support")),
            SafetyVerdict::Refuse { category } | SafetyVerdict::Block { category } => {
                Some((category, "chat.refusal"))
            }
        };
        if let Some((category, key)) = notice {
            tracing::info!(
                category = category.as_str(),
                "input refused by the safety rules"
            );
            store.set_message_state(&ids, MessageState::Dropped).await?;
            let text = self.ctx.texts.get(lang, key, &[("name", &name)]);
            self.ctx.telegram.send_html(job.chat, &text, None).await?;
            return Ok(Lease::Held);
        }

        // Past the day's budget the model is not asked; the messages wait,
        // failed, for `/retry` after the reset.
        let notice = match self.spend_check(user.id, self.ctx.clock.now()).await? {
            SpendDecision::Allow => None,
            SpendDecision::UserBudgetSpent => Some("limit.daily"),
            SpendDecision::GlobalCapReached => Some("limit.spend_cap"),
        };
        if let Some(key) = notice {
            tracing::info!(
                user = user.id.0,
                notice = key,
                "daily budget spent; messages marked failed"
            );
            store.set_message_state(&ids, MessageState::Failed).await?;
            let text = self.ctx.texts.get(lang, key, &[("name", &name)]);
            self.ctx.telegram.send_html(job.chat, &text, None).await?;
            return Ok(Lease::Held);
        }

        // Messages that arrived after `pending` was read wait for the next
        // reply: this one answers exactly `ids`, so the model must not see more.
        let newest = ids.last().copied();
        // Older messages than these may exist (and may need summarising).
        let window_start = (history.len() >= HISTORY as usize)
            .then(|| history.first().map(|m| m.id))
            .flatten();
        history.retain(|m| Some(m.id) <= newest || m.role != Role::User);
        conversation_order(&mut history);
        let mut memories = Vec::new();
        let summary = store.summary(job.dialog).await?;
        let covered = summary.as_ref().and_then(|s| s.covers_until);
        memories.extend(summary);
        memories.extend(store.facts(job.dialog).await?);
        let now = self.ctx.clock.now();
        let unlocked = store
            .unlocks(user.id, now)
            .await?
            .into_iter()
            .filter(|u| u.persona_id.is_none_or(|p| p == persona.id))
            .map(|u| u.feature)
            .collect();
        let closeness = self.closeness(&dialog, &history, &pending, &unlocked, now);
        let built = self.prompt.build(&vitte_domain::services::PromptInput {
            card: &persona.card,
            user_name: &user.first_name,
            memories: &memories,
            intimacy_instruction: &closeness.instruction,
            history: &history,
        });
        let request = ChatRequest::new(built.messages.iter().map(to_chat).collect());
        let outside = &history[..history.len() - built.history_used];
        if self.summary_due(outside, window_start, covered) {
            let _ = self.summaries.send(crate::memory::SummaryJob {
                dialog: job.dialog,
                window: built.history_used,
            });
        }

        let mut display = Display::new(&self.ctx, job.chat, self.progressive);
        display.typing().await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Piece>();
        let generation = self.llm.reply(&request, |event| {
            let _ = tx.send(match event {
                ReplyEvent::Text(t) => Piece::Text(t.to_owned()),
                ReplyEvent::Restart { .. } => Piece::Restart,
            });
        });
        tokio::pin!(generation);
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.tick().await;
        // A steady tick: a fresh timer per loop pass would never fire while
        // pieces stream in faster than it.
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let result = loop {
            tokio::select! {
                result = &mut generation => break result,
                Some(piece) = rx.recv() => display.take(piece).await?,
                _ = tick.tick() => display.refresh().await?,
                _ = renew.tick() => {
                    // Lost: another process took over (we stalled past the
                    // lease); stop rather than answer the same messages twice.
                    leased_at = self.lease(job.dialog).await?.ok_or(ReplyError::LeaseLost)?;
                }
            }
        };
        let completion = match result {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the model could not answer; messages marked failed");
                store.set_message_state(&ids, MessageState::Failed).await?;
                let text = self.ctx.texts.get(
                    lang,
                    "chat.failed",
                    &[("name", &escape_html(&persona.card.name))],
                );
                display.notice(&text).await?;
                return Ok(Lease::Held);
            }
        };
        if let SafetyVerdict::Block { category } = self.safety.check_output(&completion.text) {
            tracing::warn!(
                category = category.as_str(),
                "model output blocked by the safety rules"
            );
            store.set_message_state(&ids, MessageState::Dropped).await?;
            let text = self.ctx.texts.get(lang, "chat.refusal", &[("name", &name)]);
            display.notice(&text).await?;
            return Ok(Lease::Held);
        }
        let parts = shape_reply(&completion.text, TELEGRAM_LIMIT);
        // A process held up (a stalled machine) past its lease may have been
        // overtaken: unless the lease is fresh, confirm it, for a full term,
        // before anything is shown, so a reply taken over elsewhere is not
        // sent twice.
        if leased_at.elapsed() >= FRESH_LEASE && self.lease(job.dialog).await?.is_none() {
            return Err(ReplyError::LeaseLost);
        }
        // Sending can wait out Telegram's "retry after" for a while: keep the
        // lease meanwhile, or another process would answer these messages too.
        let last_sent = self.renewing(job, display.finish(&parts)).await??;
        let reply = NewMessage {
            dialog_id: job.dialog,
            role: Role::Assistant,
            text: completion.text,
            state: MessageState::Sent,
            telegram_message_id: last_sent.map(i64::from),
            update_id: None,
            reply_to: ids.last().copied(),
            usage: Some(completion.usage),
        };
        // The reply, its intimacy and the lease's release in one write.
        let completed = self
            .store_shown_reply(
                job,
                &ReplyCompletion {
                    answered: &ids,
                    reply: &reply,
                    intimacy: closeness.delta,
                    lease_owner: Some(&self.owner),
                },
            )
            .await?;
        if closeness.level_up.is_some() {
            let text = self.ctx.texts.get(
                lang,
                "chat.level_up",
                &[
                    ("name", &name),
                    ("level", &escape_html(&closeness.level_name)),
                ],
            );
            self.ctx.telegram.send_html(job.chat, &text, None).await?;
        }
        Ok(Lease::Released {
            wanted: completed.reply_wanted,
        })
    }

    /// Stores a reply that has been shown. It cannot be taken back, so a
    /// store that is briefly unavailable (its pool exhausted under load) is
    /// tried again, with backoff, while the lease is known to hold: given up,
    /// the messages would stay pending and the recovery sweep would show the
    /// reply a second time. The lease is renewed meanwhile when the store
    /// allows; a lease lost to another process ends the attempts.
    async fn store_shown_reply(
        &self,
        job: ReplyJob,
        completion: &ReplyCompletion<'_>,
    ) -> Result<CompletedReply, ReplyError> {
        use backon::BackoffBuilder;

        let store = &self.ctx.store;
        let mut lease_ends = Instant::now() + SHOWN_LEASE_LEFT;
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let error = match store.complete_reply(completion, self.ctx.clock.now()).await {
                Err(StoreError::Unavailable(e)) => StoreError::Unavailable(e),
                other => return Ok(other?),
            };
            if lease_ends.saturating_duration_since(Instant::now()) < LEASE_RENEW_BELOW {
                match self.lease(job.dialog).await {
                    Ok(Some(asked)) => lease_ends = asked + LEASE_STD,
                    Ok(None) => return Err(ReplyError::LeaseLost),
                    Err(StoreError::Unavailable(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            if Instant::now() + delay + LEASE_MARGIN >= lease_ends {
                tracing::error!(error = %error, "a shown reply could not be stored; it may be shown again");
                return Err(error.into());
            }
            tracing::warn!(error = %error, ?delay, "storing a shown reply failed; trying again");
            tokio::time::sleep(delay).await;
        }
    }

    /// Whether the day's budgets allow one more reply to `user`: their own
    /// tokens of the UTC day against their plan's allowance, and what
    /// everyone's replies cost against the global cap.
    async fn spend_check(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<SpendDecision, StoreError> {
        let store = &self.ctx.store;
        let limits = &self.ctx.spend;
        let day = start_of_day(now);
        let subscribed = store.active_subscription(user, now).await?.is_some();
        let allowance = if subscribed {
            limits.premium_tokens
        } else {
            limits.free_tokens
        };
        let spent = SpendService::tokens(&store.usage_since(Some(user), day).await?);
        let global = self.global_cost(day, now).await?;
        let decision = SpendService::decide(spent, allowance, global, limits.daily_cap, subscribed);
        if decision == SpendDecision::GlobalCapReached {
            self.alert_cap(global, now);
        }
        Ok(decision)
    }

    /// What all replies of the day starting at `day` cost, in micro-dollars;
    /// read from the store at most every `GLOBAL_SPEND_TTL`.
    async fn global_cost(&self, day: DateTime<Utc>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let cached = *self.global_spend.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached
            && c.day == day
            && c.read_at <= now
            && now - c.read_at < GLOBAL_SPEND_TTL
        {
            return Ok(c.cost);
        }
        let usage = self.ctx.store.usage_since(None, day).await?;
        let cost = self.ctx.spend.service.cost(&usage);
        *self.global_spend.lock().unwrap_or_else(|e| e.into_inner()) = Some(GlobalSpend {
            day,
            read_at: now,
            cost,
        });
        Ok(cost)
    }

    /// Logs that the cap stopped the free tier: the operators' alert. Once a
    /// minute at most, however many messages it stops.
    fn alert_cap(&self, cost: u64, now: DateTime<Utc>) {
        let mut last = self.cap_alerted.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t <= now && now - t < CAP_ALERT_EVERY) {
            return;
        }
        *last = Some(now);
        let cap = self.ctx.spend.daily_cap;
        tracing::error!(
            spent_usd = %format_usd(cost),
            cap_usd = %format_usd(cap),
            spent_micros = cost,
            cap_micros = cap,
            "daily LLM spend cap reached"
        );
    }

    /// Whether the summarizer would find something to fold into the summary
    /// (which ends at `covered`): enough of the messages `outside` the
    /// prompt are not in it yet, or some may lie before the history window
    /// (which starts at `window_start` when the dialog is longer) without
    /// the summary reaching them. Asking only then spares the summarizer a
    /// read of the dialog on every reply of a long conversation.
    fn summary_due(
        &self,
        outside: &[Message],
        window_start: Option<vitte_domain::ids::MessageId>,
        covered: Option<vitte_domain::ids::MessageId>,
    ) -> bool {
        if outside.is_empty() {
            return false;
        }
        let before_window =
            window_start.is_some_and(|start| covered.is_none_or(|until| until < start));
        before_window || self.planner.plan(outside, covered).is_some()
    }

    /// How the pending messages move the relationship: each message is
    /// scored in turn, and the result carries the tone for the prompt.
    fn closeness(
        &self,
        dialog: &vitte_domain::model::Dialog,
        history: &[vitte_domain::model::Message],
        pending: &[vitte_domain::model::Message],
        unlocked: &std::collections::HashSet<String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> IntimacyDecision {
        let today = now.date_naive();
        let first_pending = pending.first().map(|m| m.id);
        let mut earlier: Vec<usize> = history
            .iter()
            .filter(|m| m.role == Role::User && Some(m.id) < first_pending)
            .filter(|m| m.created_at.date_naive() == today)
            .map(|m| m.text.chars().count())
            .collect();
        let mut score = dialog.intimacy_score;
        let mut total = 0;
        let mut level_before = None;
        let mut last = None;
        for message in pending {
            let d = self.intimacy.decide(&IntimacyInput {
                score,
                message: &message.text,
                earlier_today: &earlier,
                dialog_started: dialog.created_at,
                now,
                unlocked,
            });
            level_before.get_or_insert(d.level_up.map_or(d.level, |l| l.from));
            score = d.score;
            total += d.delta;
            earlier.push(message.text.chars().count());
            last = Some(d);
        }
        let mut decision = last.unwrap_or_else(|| {
            self.intimacy.decide(&IntimacyInput {
                score,
                message: "",
                earlier_today: &earlier,
                dialog_started: dialog.created_at,
                now,
                unlocked,
            })
        });
        decision.delta = total;
        // Several messages in one reply: a level-up is any rise over the batch.
        if let Some(from) = level_before
            && decision.level > from
        {
            decision.level_up = Some(LevelUp {
                from,
                to: decision.level,
            });
        }
        decision
    }
}

/// Whether a reply left its dialog's reply lease held, to be released, or
/// released it with the write that stored the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Held,
    /// `wanted`: another reply was requested meanwhile.
    Released {
        wanted: bool,
    },
}

/// Why one reply could not be completed.
#[derive(Debug, thiserror::Error)]
enum ReplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("the dialog, its user or its persona is gone")]
    Gone,
    #[error("the reply lease was lost to another process")]
    LeaseLost,
}

/// Whether pending messages may lie before `history`, the newest `limit`
/// messages of a dialog. Not when it holds the whole dialog. Otherwise only
/// when its first user message is still pending (or it has none): every
/// reply settles all the messages pending when it started, so a settled
/// user message has none pending before it, while a pending one may be the
/// tail of a run that started before the window. (`/retry` reopening
/// failures older than the window is the exception; the recovery sweep,
/// which reads pending messages on their own, answers those.)
fn may_miss_pending(history: &[Message], limit: u32) -> bool {
    if history.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
        return false;
    }
    history
        .iter()
        .find(|m| m.role == Role::User)
        .is_none_or(|m| m.state == MessageState::Pending)
}

/// Puts each reply right after the message it answers. Storage orders by
/// arrival, and messages written while the persona was typing arrived before
/// the reply to the earlier ones; the model must see the conversation as it
/// happened, or it would take the newest messages as already answered.
pub(crate) fn conversation_order(history: &mut [vitte_domain::model::Message]) {
    history.sort_by_key(|m| match (m.role, m.reply_to) {
        (Role::Assistant, Some(answered)) if answered < m.id => (answered.0, 1, m.id.0),
        _ => (m.id.0, 0, m.id.0),
    });
}

fn to_chat(m: &vitte_domain::services::PromptMessage) -> ChatMessage {
    match m.role {
        PromptRole::System => ChatMessage::system(m.content.clone()),
        PromptRole::User => ChatMessage::user(m.content.clone()),
        PromptRole::Assistant => ChatMessage::assistant(m.content.clone()),
    }
}

fn rand_suffix() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{:x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

enum Piece {
    Text(String),
    Restart,
}

/// What the person sees while a reply is written: "typing…", then (when
/// progressive) one message edited as text arrives, then the final parts.
struct Display<'a> {
    ctx: &'a BotContext,
    chat: i64,
    progressive: bool,
    text: String,
    shown: String,
    message: Option<i32>,
    last_edit: Instant,
    last_typing: Instant,
}

impl<'a> Display<'a> {
    fn new(ctx: &'a BotContext, chat: i64, progressive: bool) -> Self {
        let now = Instant::now();
        Self {
            ctx,
            chat,
            progressive,
            text: String::new(),
            shown: String::new(),
            message: None,
            last_edit: now,
            last_typing: now,
        }
    }

    async fn typing(&mut self) -> Result<(), SendError> {
        self.last_typing = Instant::now();
        match self.ctx.telegram.typing(self.chat).await {
            Err(SendError::Blocked) => Err(SendError::Blocked),
            _ => Ok(()),
        }
    }

    async fn take(&mut self, piece: Piece) -> Result<(), SendError> {
        match piece {
            Piece::Text(t) => self.text.push_str(&t),
            Piece::Restart => self.text.clear(),
        }
        Ok(())
    }

    async fn refresh(&mut self) -> Result<(), SendError> {
        if self.message.is_none() && self.last_typing.elapsed() >= TYPING_EVERY {
            self.typing().await?;
        }
        if !self.progressive || self.last_edit.elapsed() < EDIT_EVERY {
            return Ok(());
        }
        // One character is kept for the "…" that marks a reply in progress.
        let preview = shape_reply(&self.text, TELEGRAM_LIMIT - 1)
            .into_iter()
            .next()
            .unwrap_or_default();
        if preview == self.shown
            || (self.message.is_none() && self.text.chars().count() < FIRST_SHOW_CHARS)
        {
            return Ok(());
        }
        let html = format!("{preview}…");
        self.last_edit = Instant::now();
        match self.message {
            None => self.message = Some(self.ctx.telegram.send_html(self.chat, &html, None).await?),
            Some(id) => match self.ctx.telegram.edit_html(self.chat, id, &html).await {
                Ok(()) | Err(SendError::NotModified) => {}
                Err(e) => return Err(e),
            },
        }
        self.shown = preview;
        Ok(())
    }

    /// Shows a ready-made HTML notice in place of the reply.
    async fn notice(&mut self, html: &str) -> Result<(), SendError> {
        match self.message {
            Some(id) => match self.ctx.telegram.edit_html(self.chat, id, html).await {
                Ok(()) | Err(SendError::NotModified) => Ok(()),
                Err(e) => Err(e),
            },
            None => self
                .ctx
                .telegram
                .send_html(self.chat, html, None)
                .await
                .map(|_| ()),
        }
    }

    /// Shows the final parts, already HTML (from `shape_reply`). Returns the
    /// id of the last message.
    async fn finish(&mut self, parts: &[String]) -> Result<Option<i32>, SendError> {
        let mut last = None;
        for (i, html) in parts.iter().enumerate() {
            if i == 0
                && let Some(id) = self.message
            {
                match self.ctx.telegram.edit_html(self.chat, id, html).await {
                    Ok(()) | Err(SendError::NotModified) => last = Some(id),
                    Err(e) => return Err(e),
                }
                continue;
            }
            last = Some(self.ctx.telegram.send_html(self.chat, html, None).await?);
        }
        Ok(last)
    }
}

/// Clears a dialog's "being answered here" mark when its task ends, however it ends.
struct Running {
    responder: Arc<Responder>,
    dialog: DialogId,
    /// Cleared when the task removed the mark itself.
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.armed {
            self.responder.lock().remove(&self.dialog);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use vitte_domain::ids::{DialogId, MessageId};
    use vitte_domain::model::Message;

    use super::*;

    fn message(id: i64, role: Role, reply_to: Option<i64>) -> Message {
        Message {
            id: MessageId(id),
            dialog_id: DialogId(1),
            role,
            text: format!("m{id}"),
            state: MessageState::Sent,
            telegram_message_id: None,
            update_id: None,
            reply_to: reply_to.map(MessageId),
            usage: None,
            created_at: DateTime::from_timestamp(0, 0).expect("time"),
        }
    }

    #[test]
    fn replies_follow_the_message_they_answer() {
        // Greeting 1; user 2; users 3 and 4 arrive while 2 is answered by 5;
        // then 6 answers 3 and 4.
        let mut history = vec![
            message(1, Role::Assistant, None),
            message(2, Role::User, None),
            message(3, Role::User, None),
            message(4, Role::User, None),
            message(5, Role::Assistant, Some(2)),
            message(6, Role::Assistant, Some(4)),
        ];
        conversation_order(&mut history);
        let ids: Vec<i64> = history.iter().map(|m| m.id.0).collect();
        assert_eq!(ids, [1, 2, 5, 3, 4, 6]);
    }

    fn user(id: i64, state: MessageState) -> Message {
        Message {
            state,
            ..message(id, Role::User, None)
        }
    }

    #[test]
    fn the_window_shows_every_pending_message_unless_a_run_reaches_its_start() {
        use MessageState::{Answered, Failed, Pending};
        // The whole dialog: nothing can be before it.
        let short = [user(1, Pending), message(2, Role::Assistant, None)];
        assert!(!may_miss_pending(&short, 3));
        // Full, and its first user message was answered: every message
        // pending before it was settled by that reply.
        let settled = [
            message(1, Role::Assistant, None),
            user(2, Answered),
            message(3, Role::Assistant, Some(2)),
            user(4, Pending),
        ];
        assert!(!may_miss_pending(&settled, 4));
        let failed = [user(1, Failed), user(2, Pending)];
        assert!(!may_miss_pending(&failed, 2));
        // Full, and it starts inside a run of pending messages (a reply to
        // an earlier message may sit among them).
        let run = [
            message(1, Role::Assistant, Some(0)),
            user(2, Pending),
            user(3, Pending),
        ];
        assert!(may_miss_pending(&run, 3));
        // Full of replies: nothing tells.
        let replies = [
            message(1, Role::Assistant, None),
            message(2, Role::Assistant, None),
        ];
        assert!(may_miss_pending(&replies, 2));
    }
}
