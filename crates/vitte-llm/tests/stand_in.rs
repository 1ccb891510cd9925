//! `OpenAiCompatible` and `LlmService` over real HTTP against the
//! chat-completions stand-in, with its faults switched on and off.
//!
//! Real time is used here (the stand-in's sockets do not live in virtual
//! time), so every limit is small; the exact timing rules are checked in
//! virtual time in `tests/service.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use vitte_domain::ManualClock;
use vitte_llm::{
    BreakerState, ChatMessage, ChatRequest, Completion, LlmError, LlmPolicy, LlmService,
    ModelChain, OpenAiCompatible, OpenAiConfig, ReplyEvent,
};
use vitte_stand_ins::Handle;
use vitte_stand_ins::llm::{BehaviourPatch, Config, Fault, LlmStandIn, Outcome};

struct Harness {
    stand_in: LlmStandIn,
    handle: Handle,
}

async fn start(config: Config) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stand_in = LlmStandIn::new(config);
    let handle = stand_in.clone().spawn(listener).expect("spawn");
    Harness { stand_in, handle }
}

/// Pauses short enough for a test, timeouts long enough for a loaded CI
/// machine.
fn fast_policy() -> LlmPolicy {
    LlmPolicy {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        first_token_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(10),
        ..LlmPolicy::default()
    }
}

impl Harness {
    fn api_base(&self) -> String {
        format!("{}/v1", self.handle.base_url())
    }

    fn service(&self, models: &[&str], policy: LlmPolicy) -> LlmService {
        self.service_with(OpenAiConfig::new(self.api_base()), models, policy)
    }

    fn service_with(&self, config: OpenAiConfig, models: &[&str], policy: LlmPolicy) -> LlmService {
        let provider = OpenAiCompatible::new(config).expect("provider");
        let clock = ManualClock::new(DateTime::from_timestamp(1_700_000_000, 0).expect("valid"));
        LlmService::new(
            Arc::new(provider),
            ModelChain::new(models.iter().copied()).expect("models"),
            policy,
            Arc::new(clock),
        )
        .with_jitter_seed(7)
    }

    fn configure(&self, patch: BehaviourPatch) {
        self.stand_in.configure(patch).expect("valid patch");
    }

    fn outcomes(&self) -> Vec<(String, Outcome)> {
        self.stand_in
            .stats()
            .recent
            .into_iter()
            .map(|r| (r.model, r.outcome))
            .collect()
    }
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![
        ChatMessage::system("You are Mira, a warm companion."),
        ChatMessage::user("Hi Mira!"),
        ChatMessage::assistant("Hi! How are you?"),
        ChatMessage::user("Do you like rainy days?"),
    ])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Text(String),
    Restart,
}

async fn reply(service: &LlmService) -> (Result<Completion, LlmError>, Vec<Event>) {
    let mut events = Vec::new();
    let result = service
        .reply(&request(), |e| {
            events.push(match e {
                ReplyEvent::Text(t) => Event::Text(t.to_owned()),
                ReplyEvent::Restart { .. } => Event::Restart,
            })
        })
        .await;
    (result, events)
}

/// The text shown after the last restart, as a progressive display would
/// end up with.
fn displayed(events: &[Event]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            Event::Text(t) => text.push_str(t),
            Event::Restart => text.clear(),
        }
    }
    text
}

/// The same conversation asked without streaming, straight over HTTP.
async fn non_streamed(harness: &Harness, model: &str) -> Value {
    let messages: Vec<Value> = request()
        .messages
        .iter()
        .map(|m| serde_json::to_value(m).expect("serialises"))
        .collect();
    reqwest::Client::new()
        .post(format!("{}/chat/completions", harness.api_base()))
        .json(&json!({ "model": model, "messages": messages }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_streamed_reply_equals_the_non_streamed_one_with_its_usage() {
    let harness = start(Config::default()).await;
    let service = harness.service(&["vitte-stand-in"], fast_policy());
    let (result, events) = reply(&service).await;
    let completion = result.expect("reply");

    let plain = non_streamed(&harness, "vitte-stand-in").await;
    assert_eq!(
        completion.text,
        plain["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
    assert_eq!(completion.usage.model, "vitte-stand-in");
    assert_eq!(
        i64::from(completion.usage.prompt_tokens),
        plain["usage"]["prompt_tokens"].as_i64().expect("prompt")
    );
    assert_eq!(
        i64::from(completion.usage.completion_tokens),
        plain["usage"]["completion_tokens"]
            .as_i64()
            .expect("completion")
    );
    assert_eq!(completion.attempts, 1);
    assert!(events.len() > 2, "the text arrived in pieces: {events:?}");
    assert_eq!(displayed(&events), completion.text);

    let sent = &harness.stand_in.stats().recent[0];
    assert!(sent.stream);
    assert_eq!(
        sent.request["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_the_model_answers() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        fault: Some(Fault::ServerError),
        fail_next: Some(3),
        ..BehaviourPatch::default()
    });
    let policy = LlmPolicy {
        retries_per_model: 3,
        ..fast_policy()
    };
    let service = harness.service(&["m"], policy);
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.attempts, 4);
    let outcomes: Vec<Outcome> = harness.outcomes().into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::ServerError,
            Outcome::ServerError,
            Outcome::ServerError,
            Outcome::Ok
        ]
    );
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_for_its_retry_after() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        fault: Some(Fault::RateLimited),
        retry_after_secs: Some(1),
        fail_next: Some(1),
        ..BehaviourPatch::default()
    });
    let service = harness.service(&["m"], fast_policy());
    let started = Instant::now();
    let completion = reply(&service).await.0.expect("reply");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(completion.attempts, 2);
    assert_eq!(
        harness.outcomes(),
        [
            ("m".into(), Outcome::RateLimited),
            ("m".into(), Outcome::Ok)
        ]
    );
}

#[tokio::test]
async fn an_unknown_primary_falls_back_to_the_next_model_without_retrying() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        known_models: Some(Some(vec!["fallback".into()])),
        ..BehaviourPatch::default()
    });
    let service = harness.service(&["retired", "fallback"], fast_policy());
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.usage.model, "fallback");
    assert_eq!(completion.attempts, 2);
    assert_eq!(
        harness.stand_in.stats().models_requested,
        ["retired", "fallback"]
    );
}

#[tokio::test]
async fn when_everything_is_down_the_reply_fails_fast_and_breakers_then_skip() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        fault: Some(Fault::Unavailable),
        down: Some(true),
        ..BehaviourPatch::default()
    });
    let policy = LlmPolicy {
        retries_per_model: 1,
        breaker_threshold: 2,
        ..fast_policy()
    };
    let service = harness.service(&["a", "b"], policy);
    let started = Instant::now();
    let error = reply(&service).await.0.expect_err("down");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let LlmError::Exhausted { attempts, last } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*attempts, 4);
    assert!(
        matches!(
            **last,
            LlmError::Unavailable {
                status: Some(503),
                ..
            }
        ),
        "{last:?}"
    );
    assert_eq!(
        harness.stand_in.stats().models_requested,
        ["a", "a", "b", "b"]
    );
    assert!(
        service
            .breakers()
            .iter()
            .all(|(_, state)| matches!(state, BreakerState::Open { .. }))
    );

    let error = reply(&service).await.0.expect_err("skipped");
    assert!(
        matches!(error, LlmError::Exhausted { attempts: 0, .. }),
        "{error:?}"
    );
    assert_eq!(harness.stand_in.stats().requests, 4, "no request was made");
}

#[tokio::test]
async fn a_stream_cut_midway_restarts_and_then_completes() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        fault: Some(Fault::TruncatedStream),
        fail_next: Some(1),
        ..BehaviourPatch::default()
    });
    let service = harness.service(&["m"], fast_policy());
    let (result, events) = reply(&service).await;
    let completion = result.expect("reply");
    assert_eq!(completion.attempts, 2);

    let restart = events
        .iter()
        .position(|e| *e == Event::Restart)
        .expect("a restart was announced");
    assert_eq!(events.iter().filter(|e| **e == Event::Restart).count(), 1);
    let before = displayed(&events[..restart]);
    assert!(!before.is_empty());
    assert!(completion.text.starts_with(&before) && before.len() < completion.text.len());
    assert_eq!(displayed(&events), completion.text);
    let plain = non_streamed(&harness, "m").await;
    assert_eq!(
        completion.text,
        plain["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
}

#[tokio::test]
async fn a_hanging_request_is_abandoned_at_the_first_token_timeout_and_retried() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        fault: Some(Fault::Timeout),
        hang_ms: Some(30_000),
        fail_next: Some(1),
        ..BehaviourPatch::default()
    });
    let policy = LlmPolicy {
        first_token_timeout: Duration::from_millis(400),
        ..fast_policy()
    };
    let service = harness.service(&["m"], policy);
    let started = Instant::now();
    let completion = reply(&service).await.0.expect("reply");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(completion.attempts, 2);
    assert_eq!(
        harness.outcomes(),
        [("m".into(), Outcome::Timeout), ("m".into(), Outcome::Ok)]
    );
}

#[tokio::test]
async fn broken_json_is_retried() {
    let harness = start(Config::default()).await;
    harness.configure(BehaviourPatch {
        fault: Some(Fault::BadJson),
        fail_next: Some(1),
        ..BehaviourPatch::default()
    });
    let service = harness.service(&["m"], fast_policy());
    let completion = reply(&service).await.0.expect("reply");
    assert_eq!(completion.attempts, 2);
}

#[tokio::test]
async fn the_api_key_is_sent_and_never_appears_in_errors() {
    let harness = start(Config {
        api_key: Some("sk-right-key-0123456789".into()),
        ..Config::default()
    })
    .await;
    let config = OpenAiConfig::new(harness.api_base())
        .with_api_key(SecretString::from("sk-right-key-0123456789"));
    let service = harness.service_with(config, &["m"], fast_policy());
    assert_eq!(reply(&service).await.0.expect("reply").attempts, 1);

    let wrong = "sk-wrong-key-9876543210";
    let config = OpenAiConfig::new(harness.api_base()).with_api_key(SecretString::from(wrong));
    let service = harness.service_with(config, &["m", "n"], fast_policy());
    let error = reply(&service).await.0.expect_err("unauthorised");
    let LlmError::Exhausted { attempts, last } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*attempts, 2, "a refusal is not retried");
    assert!(
        matches!(**last, LlmError::Refused { status: 401, .. }),
        "{last:?}"
    );
    let logged = format!("{error} {error:?} {service:?}");
    assert!(!logged.contains(wrong), "{logged}");
}
