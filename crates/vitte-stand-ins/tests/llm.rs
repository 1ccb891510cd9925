//! The chat-completions stand-in over real HTTP, as an OpenAI client sees it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use vitte_stand_ins::Handle;
use vitte_stand_ins::llm::{Behaviour, Config, LlmStandIn};

struct Llm {
    stand_in: LlmStandIn,
    handle: Handle,
    http: reqwest::Client,
}

async fn start(config: Config) -> Llm {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stand_in = LlmStandIn::new(config);
    let handle = stand_in.clone().spawn(listener).expect("spawn");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    Llm {
        stand_in,
        handle,
        http,
    }
}

fn conversation(last: &str) -> Value {
    json!([
        {"role": "system", "content": "You are Mira, a warm companion."},
        {"role": "user", "content": "Hi Mira!"},
        {"role": "assistant", "content": "Hi! How are you?"},
        {"role": "user", "content": last},
    ])
}

impl Llm {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    async fn complete(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    async fn complete_json(&self, body: Value) -> (StatusCode, Value) {
        let response = self.complete(body).await;
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    async fn configure(&self, patch: Value) -> Value {
        let response = self
            .http
            .post(self.url("/control/llm"))
            .json(&patch)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    async fn stats(&self) -> Value {
        self.http
            .get(self.url("/control/llm/stats"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }
}

/// The `data:` payloads of an SSE body, in order.
fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn non_streaming_completion_has_openai_shape() {
    let llm = start(Config::default()).await;
    let (status, body) = llm
        .complete_json(
            json!({"model": "gpt-4o-mini", "messages": conversation("I adopted a kitten")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert!(body["created"].is_i64());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().expect("content");
    assert!(content.contains("I adopted a kitten"), "{content}");
    let usage = &body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt");
    let completion = usage["completion_tokens"].as_u64().expect("completion");
    assert!(prompt > 0 && completion > 0);
    assert_eq!(usage["total_tokens"], prompt + completion);
    assert_eq!(completion, (content.chars().count() as u64).div_ceil(4));
}

#[tokio::test]
async fn replies_are_deterministic() {
    let llm = start(Config::default()).await;
    let ask = |last: &'static str| json!({"model": "m", "messages": conversation(last)});
    let (_, a) = llm.complete_json(ask("Tell me a secret")).await;
    let (_, b) = llm.complete_json(ask("Tell me a secret")).await;
    let (_, c) = llm.complete_json(ask("Tell me a story")).await;
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_owned()
    };
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    assert_eq!(a["usage"], b["usage"]);

    // Another stand-in instance answers the same.
    let other = start(Config::default()).await;
    let (_, d) = other.complete_json(ask("Tell me a secret")).await;
    assert_eq!(text(&a), text(&d));
}

#[tokio::test]
async fn streaming_matches_the_non_streaming_reply() {
    let llm = start(Config::default()).await;
    let messages = conversation("Do you like rainy days?");
    let (_, plain) = llm
        .complete_json(json!({"model": "m", "messages": messages}))
        .await;
    let response = llm
        .complete(json!({"model": "m", "messages": messages, "stream": true, "stream_options": {"include_usage": true}}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = sse_events(&response.text().await.expect("body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().expect("usage chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], plain["usage"]);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed,
        plain["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
    assert!(chunks.len() > 4, "content comes in several pieces");

    // Without include_usage there is no usage chunk.
    let response = llm
        .complete(json!({"model": "m", "messages": messages, "stream": true}))
        .await;
    let events = sse_events(&response.text().await.expect("body"));
    let last_chunk: Value = serde_json::from_str(&events[events.len() - 2]).expect("json");
    assert_eq!(last_chunk["choices"][0]["finish_reason"], "stop");
    assert!(last_chunk.get("usage").is_none());
}

#[tokio::test]
async fn api_key_models_and_request_errors() {
    let llm = start(Config {
        api_key: Some("sk-test-0123456789".into()),
        behaviour: Behaviour {
            known_models: Some(vec!["main".into(), "fallback".into()]),
            ..Behaviour::default()
        },
        ..Config::default()
    })
    .await;
    let body = json!({"model": "main", "messages": conversation("hi")});
    let response = llm.complete(body.clone()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("didn't provide an API key")
    );

    let send = |key: &str, body: Value| {
        llm.http
            .post(llm.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let response = send("sk-wrong-key-9999", body.clone())
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "invalid_api_key");
    assert!(
        error["error"]
            .as_object()
            .expect("object")
            .contains_key("param")
    );

    let response = send("sk-test-0123456789", body).await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    let response = send(
        "sk-test-0123456789",
        json!({"model": "gpt-5", "messages": conversation("hi")}),
    )
    .await
    .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(
        error["error"]["message"],
        "The model `gpt-5` does not exist or you do not have access to it."
    );

    let response = send(
        "sk-test-0123456789",
        json!({"model": "main", "messages": []}),
    )
    .await
    .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["param"], "messages");

    let response = llm
        .http
        .post(llm.url("/v1/chat/completions"))
        .bearer_auth("sk-test-0123456789")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let models: Value = llm
        .http
        .get(llm.url("/v1/models"))
        .bearer_auth("sk-test-0123456789")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["main", "fallback"]);
    assert_eq!(models["object"], "list");
}

#[tokio::test]
async fn fail_next_and_down_with_each_fault_kind() {
    let llm = start(Config::default()).await;
    let body = json!({"model": "m", "messages": conversation("hello")});

    llm.configure(json!({"fault": "rate_limited", "retry_after_secs": 7, "fail_next": 2}))
        .await;
    for _ in 0..2 {
        let response = llm.complete(body.clone()).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    }
    assert_eq!(llm.complete(body.clone()).await.status(), StatusCode::OK);

    llm.configure(json!({"fault": "unavailable", "down": true}))
        .await;
    for _ in 0..3 {
        assert_eq!(
            llm.complete(body.clone()).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    llm.configure(json!({"fault": "server_error"})).await;
    let response = llm.complete(body.clone()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["type"], "server_error");
    llm.configure(json!({"down": false})).await;
    assert_eq!(llm.complete(body.clone()).await.status(), StatusCode::OK);

    llm.configure(json!({"fault": "bad_json", "fail_next": 1}))
        .await;
    let response = llm.complete(body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    llm.configure(json!({"fault": "bad_json", "fail_next": 1}))
        .await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = llm
        .complete(streamed.clone())
        .await
        .text()
        .await
        .expect("body");
    let events = sse_events(&text);
    assert!(serde_json::from_str::<Value>(&events[0]).is_err());

    llm.configure(json!({"fault": "truncated_stream", "fail_next": 1}))
        .await;
    let text = llm
        .complete(streamed.clone())
        .await
        .text()
        .await
        .expect("body");
    let events = sse_events(&text);
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e != "[DONE]"));
    assert!(events.iter().all(|e| {
        let chunk: Value = serde_json::from_str(e).expect("chunks themselves are valid");
        chunk["choices"][0]["finish_reason"].is_null()
    }));

    let stats = llm.stats().await;
    assert_eq!(stats["by_outcome"]["rate_limited"], 2);
    assert_eq!(stats["by_outcome"]["unavailable"], 3);
    assert_eq!(stats["by_outcome"]["server_error"], 1);
    assert_eq!(stats["by_outcome"]["bad_json"], 2);
    assert_eq!(stats["by_outcome"]["truncated_stream"], 1);
    assert_eq!(stats["by_outcome"]["ok"], 2);
}

#[tokio::test]
async fn timeout_fault_hangs_past_the_client_timeout_and_shutdown_ends_it() {
    let llm = start(Config::default()).await;
    llm.configure(json!({"fault": "timeout", "fail_next": 2}))
        .await;
    let started = Instant::now();
    let error = llm
        .http
        .post(llm.url("/v1/chat/completions"))
        .timeout(Duration::from_millis(300))
        .json(&json!({"model": "m", "messages": conversation("are you there?")}))
        .send()
        .await
        .expect_err("the client gives up");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A hanging request does not hold up shutdown: it ends with 504.
    let Llm {
        stand_in,
        handle,
        http,
    } = llm;
    let url = format!("{}/v1/chat/completions", handle.base_url());
    let hanging = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while stand_in
            .stats()
            .by_outcome
            .get("timeout")
            .copied()
            .unwrap_or(0)
            < 2
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the second request arrives");
    tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("shutdown is prompt")
        .expect("clean");
    let response = hanging.await.expect("task").expect("answered");
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn error_rate_is_deterministic_for_a_seed() {
    let llm = start(Config::default()).await;
    let body = json!({"model": "m", "messages": conversation("ping")});
    let mut runs = Vec::new();
    for _ in 0..2 {
        llm.configure(json!({"error_rate": 0.5, "error_seed": 42, "fault": "server_error"}))
            .await;
        let mut pattern = Vec::new();
        for _ in 0..24 {
            pattern.push(llm.complete(body.clone()).await.status() == StatusCode::OK);
        }
        runs.push(pattern);
    }
    assert_eq!(runs[0], runs[1]);
    let successes = runs[0].iter().filter(|ok| **ok).count();
    assert!((4..=20).contains(&successes), "{successes} of 24");

    llm.configure(json!({"error_seed": 43})).await;
    let mut other = Vec::new();
    for _ in 0..24 {
        other.push(llm.complete(body.clone()).await.status() == StatusCode::OK);
    }
    assert_ne!(runs[0], other);
    llm.configure(json!({"error_rate": 0.0})).await;
    assert_eq!(llm.complete(body).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn stats_show_which_models_were_asked_in_order() {
    let llm = start(Config::default()).await;
    llm.configure(json!({"fault": "unavailable", "fail_next": 2}))
        .await;
    for model in ["primary", "primary", "fallback"] {
        llm.complete(json!({"model": model, "messages": conversation("hi")}))
            .await;
    }
    let stats = llm.stats().await;
    assert_eq!(stats["requests"], 3);
    assert_eq!(
        stats["models_requested"],
        json!(["primary", "primary", "fallback"])
    );
    assert_eq!(stats["by_model"]["primary"]["unavailable"], 2);
    assert_eq!(stats["by_model"]["fallback"]["ok"], 1);
    assert_eq!(
        stats["recent"][2]["request"]["messages"][3]["content"],
        "hi"
    );

    let reset: Value = llm
        .http
        .post(llm.url("/control/llm/reset"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(reset["fail_next"], 0);
    assert_eq!(llm.stand_in.stats().requests, 0);
}

#[tokio::test]
async fn max_tokens_response_format_and_latency() {
    let llm = start(Config::default()).await;
    let (_, body) = llm
        .complete_json(
            json!({"model": "m", "messages": conversation("Tell me everything"), "max_tokens": 3}),
        )
        .await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .chars()
            .count(),
        12
    );

    let schema = json!({"type": "object", "properties": {"summary": {"type": "string"}, "facts": {"type": "array"}}});
    let (_, body) = llm
        .complete_json(json!({
            "model": "m",
            "messages": conversation("Summarise us"),
            "response_format": {"type": "json_schema", "json_schema": {"name": "memory", "schema": schema}}
        }))
        .await;
    let content: Value = serde_json::from_str(
        body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content"),
    )
    .expect("structured output is JSON");
    assert!(content["summary"].is_string());
    assert_eq!(content["facts"], json!([]));

    llm.configure(json!({"first_token_ms": 150})).await;
    let started = Instant::now();
    let (status, _) = llm
        .complete_json(json!({"model": "m", "messages": conversation("slow?")}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}
