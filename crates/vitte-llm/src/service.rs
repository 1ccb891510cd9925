//! [`LlmService`]: one reply, whatever it takes within the [`LlmPolicy`] —
//! per-attempt timeouts, retries with backoff, the fallback models in order,
//! and a circuit breaker per model.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, timeout_at};
use vitte_domain::Clock;
use vitte_domain::model::TokenUsage;

use crate::breaker::{Admission, Breaker, BreakerState};
use crate::chat::{ChatRequest, Delta, FinishReason, StreamEnd};
use crate::error::{ConfigError, LlmError, TimeoutPhase};
use crate::policy::{Backoff, LlmPolicy};
use crate::provider::ChatProvider;

/// The models to ask, in order: the primary first, then the fallbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChain {
    models: Vec<String>,
}

impl ModelChain {
    /// The first model is the primary. Names are trimmed; a repeated name is
    /// dropped, since one model has one breaker and one set of retries.
    pub fn new<I, S>(models: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut chain: Vec<String> = Vec::new();
        for model in models {
            let model = model.into().trim().to_owned();
            if model.is_empty() {
                return Err(ConfigError::EmptyModel);
            }
            if !chain.contains(&model) {
                chain.push(model);
            }
        }
        if chain.is_empty() {
            return Err(ConfigError::EmptyModel);
        }
        Ok(Self { models: chain })
    }

    /// Reads a comma-separated list such as `primary,fallback-1,fallback-2`,
    /// the form it takes in an environment variable.
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        Self::new(list.split(','))
    }

    /// The models, primary first.
    pub fn models(&self) -> &[String] {
        &self.models
    }
}

/// What a progressive display (a Telegram message being edited, a web page)
/// learns while the reply is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyEvent<'a> {
    /// The next piece of the reply text.
    Text(&'a str),
    /// An attempt failed after some text was shown and a new attempt starts
    /// from scratch: discard everything shown so far.
    Restart {
        /// The model of the new attempt.
        model: &'a str,
        /// Its number, counting from 1 over the whole reply.
        attempt: u32,
    },
}

/// A finished reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The whole text (the concatenation of the [`ReplyEvent::Text`] pieces
    /// since the last [`ReplyEvent::Restart`]).
    pub text: String,
    /// Tokens spent by the successful attempt, under the model that wrote
    /// the reply; zeros when the provider did not report usage.
    pub usage: TokenUsage,
    /// Why generation stopped, when the provider said; `Length` means the
    /// text was cut by `max_tokens`.
    pub finish_reason: Option<FinishReason>,
    /// Requests made, including the successful one.
    pub attempts: u32,
}

/// The LLM side of the chat pipeline: asks the models of a [`ModelChain`]
/// through one [`ChatProvider`], within an [`LlmPolicy`].
///
/// One service is shared by every dialog of a process; its breakers then see
/// the failures of all of them.
pub struct LlmService {
    provider: Arc<dyn ChatProvider>,
    models: Vec<ModelSlot>,
    policy: LlmPolicy,
    clock: Arc<dyn Clock>,
    rng: Mutex<fastrand::Rng>,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService")
            .field("models", &self.models)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ModelSlot {
    name: String,
    breaker: Mutex<Breaker>,
}

impl ModelSlot {
    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        // The breaker is plain data; a panic elsewhere cannot leave it torn.
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one successful attempt produced.
struct Attempt {
    text: String,
    end: StreamEnd,
    first_token: Option<Duration>,
}

impl LlmService {
    /// A service with jitter drawn from a random seed; see
    /// [`LlmService::with_jitter_seed`] for reproducible pauses.
    pub fn new(
        provider: Arc<dyn ChatProvider>,
        models: ModelChain,
        policy: LlmPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let models = models
            .models
            .into_iter()
            .map(|name| ModelSlot {
                name,
                breaker: Mutex::new(Breaker::new(
                    policy.breaker_threshold,
                    policy.breaker_cooldown,
                )),
            })
            .collect();
        Self {
            provider,
            models,
            policy,
            clock,
            rng: Mutex::new(fastrand::Rng::new()),
        }
    }

    /// Seeds the backoff jitter, so tests see the same pauses every run.
    pub fn with_jitter_seed(self, seed: u64) -> Self {
        Self {
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            ..self
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &LlmPolicy {
        &self.policy
    }

    /// Each model, primary first, with the state of its breaker; for health
    /// and readiness reports.
    pub fn breakers(&self) -> Vec<(String, BreakerState)> {
        self.models
            .iter()
            .map(|slot| (slot.name.clone(), slot.breaker().state()))
            .collect()
    }

    /// Generates a reply to `request`, calling `on_event` with each piece of
    /// text as it arrives (and with [`ReplyEvent::Restart`] when a retry
    /// starts over after text was shown).
    ///
    /// Models are tried in order; each gets up to
    /// [`LlmPolicy::retries_per_model`] retries after transient failures,
    /// none after a permanent refusal, and none at all while its breaker is
    /// open. Fails with [`LlmError::Exhausted`] when no model answered
    /// within the policy.
    #[tracing::instrument(name = "llm_reply", skip_all)]
    pub async fn reply(
        &self,
        request: &ChatRequest,
        mut on_event: impl FnMut(ReplyEvent<'_>),
    ) -> Result<Completion, LlmError> {
        let deadline = Instant::now() + self.policy.reply_deadline;
        let mut attempts = 0u32;
        let mut last_error: Option<LlmError> = None;
        // Text was shown since the last restart, so the next attempt must
        // announce that it starts over.
        let mut shown = false;

        'models: for slot in &self.models {
            let model = slot.name.as_str();
            let mut backoff = Backoff::new(&self.policy);
            loop {
                if Instant::now() >= deadline {
                    break 'models;
                }
                let admission = slot.breaker().admit(self.clock.now());
                if admission == Admission::Refuse {
                    tracing::debug!(model, "skipping model: circuit breaker open");
                    last_error.get_or_insert(LlmError::CircuitOpen {
                        model: model.to_owned(),
                    });
                    continue 'models;
                }
                attempts += 1;
                if std::mem::take(&mut shown) {
                    on_event(ReplyEvent::Restart {
                        model,
                        attempt: attempts,
                    });
                }
                let started = Instant::now();
                let result = self
                    .attempt(model, request, deadline, &mut on_event, &mut shown)
                    .await;
                let latency_ms = millis(started.elapsed());
                let error = match result {
                    Ok(done) => {
                        slot.breaker().success();
                        tracing::info!(
                            model,
                            attempt = attempts,
                            latency_ms,
                            first_token_ms = done.first_token.map(millis),
                            probe = admission == Admission::Probe,
                            "reply generated"
                        );
                        return Ok(completion(model, done, attempts));
                    }
                    Err(error) => error,
                };
                let opened =
                    error.counts_against_model() && slot.breaker().failure(self.clock.now());
                tracing::warn!(
                    model,
                    attempt = attempts,
                    kind = error.kind(),
                    latency_ms,
                    breaker_opened = opened,
                    error = %error,
                    "attempt failed"
                );
                let retry_after = match &error {
                    LlmError::RateLimited { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let retryable = error.is_retryable();
                last_error = Some(error);
                if !retryable || opened {
                    continue 'models;
                }
                if retry_after.is_some_and(|wait| wait > self.policy.max_retry_after) {
                    // Waiting that long is worse than another model now.
                    continue 'models;
                }
                let Some(pause) = backoff.next_delay(&mut self.rng(), retry_after) else {
                    continue 'models;
                };
                if Instant::now() + pause >= deadline {
                    // No time to wait for this model; another may answer at once.
                    continue 'models;
                }
                tokio::time::sleep(pause).await;
            }
        }

        let last = last_error.unwrap_or(LlmError::Timeout {
            phase: TimeoutPhase::Total,
            after: self.policy.reply_deadline,
        });
        tracing::warn!(attempts, last = %last, "no model could reply");
        Err(LlmError::Exhausted {
            attempts,
            last: Box::new(last),
        })
    }

    /// One request to one model, within the per-attempt limits.
    async fn attempt(
        &self,
        model: &str,
        request: &ChatRequest,
        reply_deadline: Instant,
        on_event: &mut impl FnMut(ReplyEvent<'_>),
        shown: &mut bool,
    ) -> Result<Attempt, LlmError> {
        let policy = &self.policy;
        let started = Instant::now();
        let total = (started + policy.attempt_timeout).min(reply_deadline);
        // The earlier of a phase's own limit and the attempt's total, with
        // the error that names the one that fired.
        let limit = |phase_end: Instant, phase: TimeoutPhase, after: Duration| {
            if phase_end < total {
                (phase_end, LlmError::Timeout { phase, after })
            } else {
                (
                    total,
                    LlmError::Timeout {
                        phase: TimeoutPhase::Total,
                        after: total - started,
                    },
                )
            }
        };
        let first_token = limit(
            started + policy.first_token_timeout,
            TimeoutPhase::FirstToken,
            policy.first_token_timeout,
        );

        let (until, timed_out) = first_token.clone();
        let mut stream = match timeout_at(until, self.provider.stream(model, request)).await {
            Ok(stream) => stream?,
            Err(_) => return Err(timed_out),
        };
        let mut text = String::new();
        let mut first_token_after = None;
        let mut last_piece = started;
        loop {
            let (until, timed_out) = if text.is_empty() {
                first_token.clone()
            } else {
                limit(
                    last_piece + policy.idle_timeout,
                    TimeoutPhase::Idle,
                    policy.idle_timeout,
                )
            };
            let item = match timeout_at(until, stream.next()).await {
                Ok(item) => item,
                Err(_) => return Err(timed_out),
            };
            match item {
                Some(Ok(Delta::Text(piece))) => {
                    if piece.is_empty() {
                        continue;
                    }
                    last_piece = Instant::now();
                    first_token_after.get_or_insert(last_piece - started);
                    on_event(ReplyEvent::Text(&piece));
                    *shown = true;
                    text.push_str(&piece);
                }
                Some(Ok(Delta::Done(end))) => {
                    if text.trim().is_empty() {
                        return Err(LlmError::EmptyReply);
                    }
                    return Ok(Attempt {
                        text,
                        end,
                        first_token: first_token_after,
                    });
                }
                Some(Err(error)) => return Err(error),
                None => {
                    return Err(LlmError::Unavailable {
                        status: None,
                        detail: "the provider's stream ended without finishing the reply".into(),
                    });
                }
            }
        }
    }

    fn rng(&self) -> MutexGuard<'_, fastrand::Rng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn completion(model: &str, done: Attempt, attempts: u32) -> Completion {
    let usage = done.end.usage.unwrap_or_default();
    Completion {
        text: done.text,
        usage: TokenUsage {
            model: model.to_owned(),
            prompt_tokens: i32::try_from(usage.prompt_tokens).unwrap_or(i32::MAX),
            completion_tokens: i32::try_from(usage.completion_tokens).unwrap_or(i32::MAX),
        },
        finish_reason: done.end.finish_reason,
        attempts,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
