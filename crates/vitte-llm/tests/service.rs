//! The retry, timeout, fallback and breaker rules of `LlmService`, against a
//! scripted provider in virtual time: every pause and timeout is exact and
//! the tests take no real time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta};
use futures::StreamExt;
use futures::stream;
use tokio::time::Instant;
use vitte_domain::{Clock, ManualClock};
use vitte_llm::{
    BreakerState, ChatMessage, ChatProvider, ChatRequest, Completion, ConfigError, Delta,
    DeltaStream, FinishReason, LlmError, LlmPolicy, LlmService, ModelChain, ReplyEvent, StreamEnd,
    TimeoutPhase, Usage,
};

/// What the provider does for one call.
#[derive(Debug, Clone)]
enum Step {
    /// `stream()` fails at once.
    Refuse(LlmError),
    /// `stream()` never resolves.
    Hang,
    /// `stream()` succeeds; the stream plays these pieces, then ends.
    Play(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum Piece {
    /// Wait this long before the next piece.
    Wait(Duration),
    /// Yield an item.
    Yield(Result<Delta, LlmError>),
    /// Never yield again.
    Stall,
}

fn reply_steps(text: &str) -> Step {
    let mut pieces: Vec<Piece> = text
        .split_inclusive(' ')
        .map(|w| Piece::Yield(Ok(Delta::Text(w.to_owned()))))
        .collect();
    pieces.push(Piece::Yield(Ok(Delta::Done(StreamEnd {
        finish_reason: Some(FinishReason::Stop),
        usage: Some(Usage {
            prompt_tokens: 11,
            completion_tokens: 3,
        }),
    }))));
    Step::Play(pieces)
}

fn unavailable() -> LlmError {
    LlmError::Unavailable {
        status: Some(503),
        detail: "overloaded".into(),
    }
}

/// A provider that plays a script per model and answers `ANSWER` once the
/// script of a model is used up. Records when each model was called.
#[derive(Default)]
struct Scripted {
    scripts: Mutex<HashMap<String, VecDeque<Step>>>,
    always: Mutex<HashMap<String, Step>>,
    calls: Mutex<Vec<(String, Instant)>>,
}

const ANSWER: &str = "Hello there, friend";

impl Scripted {
    fn then(self, model: &str, step: Step) -> Self {
        self.lock_scripts()
            .entry(model.to_owned())
            .or_default()
            .push_back(step);
        self
    }

    fn always(self, model: &str, step: Step) -> Self {
        self.always
            .lock()
            .expect("lock")
            .insert(model.to_owned(), step);
        self
    }

    fn heal(&self, model: &str) {
        self.always.lock().expect("lock").remove(model);
    }

    fn lock_scripts(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Step>>> {
        self.scripts.lock().expect("lock")
    }

    fn calls(&self) -> Vec<String> {
        let calls = self.calls.lock().expect("lock");
        calls.iter().map(|(m, _)| m.clone()).collect()
    }

    /// The pauses between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().expect("lock");
        calls.windows(2).map(|w| w[1].1 - w[0].1).collect()
    }
}

#[async_trait::async_trait]
impl ChatProvider for Scripted {
    async fn stream(&self, model: &str, _: &ChatRequest) -> Result<DeltaStream, LlmError> {
        self.calls
            .lock()
            .expect("lock")
            .push((model.to_owned(), Instant::now()));
        let scripted = self
            .lock_scripts()
            .get_mut(model)
            .and_then(VecDeque::pop_front);
        let always = self.always.lock().expect("lock").get(model).cloned();
        let step = scripted.or(always).unwrap_or_else(|| reply_steps(ANSWER));
        match step {
            Step::Refuse(error) => Err(error),
            Step::Hang => std::future::pending().await,
            Step::Play(pieces) => Ok(play(pieces)),
        }
    }
}

fn play(pieces: Vec<Piece>) -> DeltaStream {
    stream::unfold(VecDeque::from(pieces), |mut pieces| async move {
        loop {
            match pieces.pop_front()? {
                Piece::Wait(d) => tokio::time::sleep(d).await,
                Piece::Yield(item) => return Some((item, pieces)),
                Piece::Stall => std::future::pending::<()>().await,
            }
        }
    })
    .boxed()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
    ))
}

fn service(provider: &Arc<Scripted>, models: &[&str], policy: LlmPolicy) -> LlmService {
    service_with_clock(provider, models, policy, clock())
}

fn service_with_clock(
    provider: &Arc<Scripted>,
    models: &[&str],
    policy: LlmPolicy,
    clock: Arc<dyn Clock>,
) -> LlmService {
    let chain = ModelChain::new(models.iter().copied()).expect("models");
    LlmService::new(provider.clone(), chain, policy, clock).with_jitter_seed(42)
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::user("hi")])
}

/// Runs a reply and returns it with the events it emitted, owned.
async fn reply(service: &LlmService) -> (Result<Completion, LlmError>, Vec<Event>) {
    let mut events = Vec::new();
    let result = service
        .reply(&request(), |e| {
            events.push(match e {
                ReplyEvent::Text(t) => Event::Text(t.to_owned()),
                ReplyEvent::Restart { model, attempt } => Event::Restart(model.to_owned(), attempt),
            })
        })
        .await;
    (result, events)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Text(String),
    Restart(String, u32),
}

fn texts(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| match e {
            Event::Text(t) => t.as_str(),
            Event::Restart(..) => "|",
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_healthy_model_answers_in_one_attempt_with_its_usage() {
    let provider = Arc::new(Scripted::default());
    let service = service(&provider, &["primary", "fallback"], LlmPolicy::default());
    let (result, events) = reply(&service).await;
    let completion = result.expect("reply");
    assert_eq!(completion.text, ANSWER);
    assert_eq!(completion.attempts, 1);
    assert_eq!(completion.finish_reason, Some(FinishReason::Stop));
    assert_eq!(completion.usage.model, "primary");
    assert_eq!(completion.usage.prompt_tokens, 11);
    assert_eq!(completion.usage.completion_tokens, 3);
    assert_eq!(texts(&events), ANSWER);
    assert_eq!(provider.calls(), ["primary"]);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_after_jittered_doubling_pauses() {
    let provider = Arc::new(
        Scripted::default()
            .then("m", Step::Refuse(unavailable()))
            .then("m", Step::Refuse(unavailable()))
            .then("m", Step::Refuse(unavailable())),
    );
    let policy = LlmPolicy {
        retries_per_model: 3,
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(3),
        ..LlmPolicy::default()
    };
    let service = service(&provider, &["m"], policy.clone());
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.attempts, 4);
    let gaps = provider.gaps();
    let ceilings = [1, 2, 3].map(Duration::from_secs);
    assert_eq!(gaps.len(), 3);
    for (gap, ceiling) in gaps.iter().zip(ceilings) {
        assert!(*gap <= ceiling, "{gap:?} > {ceiling:?}");
    }
    assert!(gaps.iter().any(|g| !g.is_zero()), "pauses happened");

    // The same seed gives the same pauses.
    let again = Arc::new(
        Scripted::default()
            .then("m", Step::Refuse(unavailable()))
            .then("m", Step::Refuse(unavailable()))
            .then("m", Step::Refuse(unavailable())),
    );
    reply(&self::service(&again, &["m"], policy))
        .await
        .0
        .expect("reply");
    assert_eq!(again.gaps(), gaps);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_out_before_the_next_attempt() {
    let provider = Arc::new(Scripted::default().then(
        "m",
        Step::Refuse(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            detail: "slow down".into(),
        }),
    ));
    let service = service(&provider, &["m", "other"], LlmPolicy::default());
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.attempts, 2);
    assert_eq!(provider.calls(), ["m", "m"]);
    let gap = provider.gaps()[0];
    assert!(
        gap >= Duration::from_secs(7) && gap < Duration::from_millis(7_100),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_moves_to_the_next_model_at_once() {
    let provider = Arc::new(Scripted::default().then(
        "m",
        Step::Refuse(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
            detail: "daily quota".into(),
        }),
    ));
    let service = service(&provider, &["m", "other"], LlmPolicy::default());
    let started = Instant::now();
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.usage.model, "other");
    assert_eq!(provider.calls(), ["m", "other"]);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_is_not_retried_on_the_same_model() {
    let refused = LlmError::Refused {
        status: 400,
        detail: "context too long".into(),
    };
    let provider = Arc::new(Scripted::default().always("m", Step::Refuse(refused)));
    let service = service(&provider, &["m", "other"], LlmPolicy::default());
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.usage.model, "other");
    assert_eq!(completion.attempts, 2);
    assert_eq!(provider.calls(), ["m", "other"]);
    assert_eq!(
        service.breakers()[0].1,
        BreakerState::Closed,
        "a refusal says nothing about the model's health"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_model_times_out_at_the_first_token_limit() {
    let provider = Arc::new(Scripted::default().always("m", Step::Hang));
    let policy = LlmPolicy {
        retries_per_model: 0,
        first_token_timeout: Duration::from_secs(20),
        ..LlmPolicy::default()
    };
    let service = service(&provider, &["m", "other"], policy);
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.usage.model, "other");
    assert_eq!(provider.gaps(), [Duration::from_secs(20)]);

    // Alone, the timeout is what the caller is told.
    let service = self::service(&provider, &["m"], service.policy().clone());
    let error = reply(&service).await.0.expect_err("times out");
    assert_eq!(
        error,
        LlmError::Exhausted {
            attempts: 1,
            last: Box::new(LlmError::Timeout {
                phase: TimeoutPhase::FirstToken,
                after: Duration::from_secs(20)
            })
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_times_out_and_the_retry_restarts_the_display() {
    let stalls = Step::Play(vec![
        Piece::Yield(Ok(Delta::Text("Hel".into()))),
        Piece::Stall,
    ]);
    let provider = Arc::new(Scripted::default().then("m", stalls));
    let policy = LlmPolicy {
        idle_timeout: Duration::from_secs(4),
        backoff_initial: Duration::from_millis(1),
        ..LlmPolicy::default()
    };
    let service = service(&provider, &["m"], policy);
    let (result, events) = reply(&service).await;
    let completion = result.expect("reply");
    assert_eq!(completion.text, ANSWER);
    assert_eq!(completion.attempts, 2);
    assert_eq!(texts(&events), format!("Hel|{ANSWER}"));
    assert_eq!(events[1], Event::Restart("m".into(), 2));
    let gap = provider.gaps()[0];
    assert!(
        gap >= Duration::from_secs(4) && gap <= Duration::from_millis(4_001),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_trickling_stream_is_cut_at_the_attempt_limit() {
    let mut pieces = Vec::new();
    for _ in 0..100 {
        pieces.push(Piece::Wait(Duration::from_secs(1)));
        pieces.push(Piece::Yield(Ok(Delta::Text("la ".into()))));
    }
    let provider = Arc::new(Scripted::default().always("m", Step::Play(pieces)));
    let policy = LlmPolicy {
        attempt_timeout: Duration::from_millis(4_500),
        idle_timeout: Duration::from_secs(2),
        retries_per_model: 0,
        ..LlmPolicy::default()
    };
    let service = service(&provider, &["m"], policy);
    let started = Instant::now();
    let (result, events) = reply(&service).await;
    assert_eq!(started.elapsed(), Duration::from_millis(4_500));
    assert_eq!(
        result,
        Err(LlmError::Exhausted {
            attempts: 1,
            last: Box::new(LlmError::Timeout {
                phase: TimeoutPhase::Total,
                after: Duration::from_millis(4_500)
            })
        })
    );
    assert_eq!(texts(&events), "la la la la ");
}

#[tokio::test(start_paused = true)]
async fn the_reply_deadline_bounds_every_attempt_and_pause() {
    let provider = Arc::new(
        Scripted::default()
            .always("a", Step::Hang)
            .always("b", Step::Hang),
    );
    let policy = LlmPolicy {
        first_token_timeout: Duration::from_secs(20),
        reply_deadline: Duration::from_secs(30),
        ..LlmPolicy::default()
    };
    let service = service(&provider, &["a", "b"], policy);
    let started = Instant::now();
    let error = reply(&service).await.0.expect_err("nothing answers");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    let LlmError::Exhausted { last, .. } = error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(
            *last,
            LlmError::Timeout {
                phase: TimeoutPhase::Total,
                ..
            }
        ),
        "{last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_skips_a_dead_model_until_a_probe_succeeds() {
    let provider = Arc::new(Scripted::default().always("m", Step::Refuse(unavailable())));
    let clock = clock();
    let policy = LlmPolicy {
        retries_per_model: 1,
        breaker_threshold: 2,
        breaker_cooldown: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(10),
        ..LlmPolicy::default()
    };
    let service = service_with_clock(&provider, &["m"], policy, clock.clone());

    let error = reply(&service).await.0.expect_err("down");
    assert!(
        matches!(&error, LlmError::Exhausted { attempts: 2, last } if **last == unavailable()),
        "{error:?}"
    );
    assert!(matches!(service.breakers()[0].1, BreakerState::Open { .. }));

    // Open: no request at all.
    let error = reply(&service).await.0.expect_err("skipped");
    assert_eq!(
        error,
        LlmError::Exhausted {
            attempts: 0,
            last: Box::new(LlmError::CircuitOpen { model: "m".into() })
        }
    );
    assert_eq!(provider.calls().len(), 2);

    // After the cooldown one probe goes through; it fails, so it stays open.
    clock.advance(TimeDelta::seconds(30));
    let error = reply(&service).await.0.expect_err("still down");
    assert!(matches!(error, LlmError::Exhausted { attempts: 1, .. }));
    assert_eq!(provider.calls().len(), 3);
    assert!(matches!(service.breakers()[0].1, BreakerState::Open { .. }));

    // The model recovers: the next probe closes the breaker.
    provider.heal("m");
    clock.advance(TimeDelta::seconds(30));
    let completion = reply(&service).await.0.expect("recovered");
    assert_eq!(completion.attempts, 1);
    assert_eq!(service.breakers()[0].1, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_sends_replies_straight_to_the_fallback() {
    let provider = Arc::new(Scripted::default().always("a", Step::Refuse(unavailable())));
    let policy = LlmPolicy {
        retries_per_model: 0,
        breaker_threshold: 1,
        ..LlmPolicy::default()
    };
    let service = service(&provider, &["a", "b"], policy);
    assert_eq!(reply(&service).await.0.expect("reply").attempts, 2);
    assert_eq!(reply(&service).await.0.expect("reply").attempts, 1);
    assert_eq!(provider.calls(), ["a", "b", "b"]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_reply_is_retried() {
    let empty = Step::Play(vec![Piece::Yield(Ok(Delta::Done(StreamEnd::default())))]);
    let provider = Arc::new(Scripted::default().then("m", empty));
    let service = service(&provider, &["m"], LlmPolicy::default());
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.attempts, 2);
    assert_eq!(completion.text, ANSWER);
}

#[tokio::test(start_paused = true)]
async fn failures_before_any_text_need_no_restart() {
    let provider = Arc::new(
        Scripted::default()
            .then("m", Step::Refuse(unavailable()))
            .then("m", Step::Play(vec![Piece::Yield(Err(unavailable()))])),
    );
    let service = service(&provider, &["m"], LlmPolicy::default());
    let (result, events) = reply(&service).await;
    assert_eq!(result.expect("reply").attempts, 3);
    assert!(
        events.iter().all(|e| matches!(e, Event::Text(_))),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_without_done_is_a_failure() {
    let cut = Step::Play(vec![Piece::Yield(Ok(Delta::Text("Hel".into())))]);
    let provider = Arc::new(Scripted::default().then("m", cut));
    let service = service(&provider, &["m"], LlmPolicy::default());
    let (result, events) = reply(&service).await;
    assert_eq!(result.expect("reply").attempts, 2);
    assert_eq!(texts(&events), format!("Hel|{ANSWER}"));
}

#[test]
fn a_reply_can_run_on_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let provider = Arc::new(Scripted::default());
    let service = service(&provider, &["m"], LlmPolicy::default());
    let request = request();
    let mut shown = String::new();
    let reply = service.reply(&request, |e| {
        if let ReplyEvent::Text(t) = e {
            shown.push_str(t);
        }
    });
    assert_send(&reply);
}

#[test]
fn model_chains_are_checked() {
    assert!(matches!(
        ModelChain::new(Vec::<String>::new()),
        Err(ConfigError::EmptyModel)
    ));
    assert!(matches!(
        ModelChain::parse("a,,b"),
        Err(ConfigError::EmptyModel)
    ));
    let chain =
        ModelChain::parse("deepseek/deepseek-chat, openai/gpt-4o-mini,deepseek/deepseek-chat")
            .expect("valid");
    assert_eq!(
        chain.models(),
        ["deepseek/deepseek-chat", "openai/gpt-4o-mini"]
    );
}
