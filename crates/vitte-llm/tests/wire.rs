//! Wire behaviours the stand-in does not produce, played by a canned HTTP
//! server: a server that ignores `stream`, OpenRouter's keep-alive comments
//! and mid-stream errors, an HTTP-date `Retry-After`, and what the request
//! carries (key, extra headers, streaming options).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::DateTime;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vitte_domain::ManualClock;
use vitte_llm::{
    ChatMessage, ChatRequest, Completion, FinishReason, LlmError, LlmPolicy, LlmService,
    ModelChain, OpenAiCompatible, OpenAiConfig, ReplyEvent,
};

/// A server that answers its n-th connection with `responses[n]` (the last
/// one again when they run out), then closes it; requests come out of
/// `requests` as text.
struct Canned {
    base_url: String,
    requests: mpsc::UnboundedReceiver<String>,
}

async fn canned(responses: Vec<String>) -> Canned {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}/api/v1", listener.local_addr().expect("addr"));
    let (tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let request = read_request(&mut socket).await;
            let _ = tx.send(request);
            let response = &responses[n.min(responses.len() - 1)];
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    Canned { base_url, requests }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn http(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    response
}

fn sse(body: &str) -> String {
    http("200 OK", &[("content-type", "text/event-stream")], body)
}

fn chunk(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    )
}

const FINISH: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";

fn service(config: OpenAiConfig, policy: LlmPolicy) -> LlmService {
    let clock = ManualClock::new(DateTime::from_timestamp(1_700_000_000, 0).expect("valid"));
    LlmService::new(
        Arc::new(OpenAiCompatible::new(config).expect("provider")),
        ModelChain::new(["some/model"]).expect("models"),
        policy,
        Arc::new(clock),
    )
    .with_jitter_seed(3)
}

fn fast() -> LlmPolicy {
    LlmPolicy {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..LlmPolicy::default()
    }
}

async fn reply(service: &LlmService) -> (Result<Completion, LlmError>, Vec<String>) {
    let mut events = Vec::new();
    let request = ChatRequest {
        max_tokens: Some(200),
        temperature: Some(0.8),
        ..ChatRequest::new(vec![ChatMessage::user("hi")])
    };
    let result = service
        .reply(&request, |e| {
            events.push(match e {
                ReplyEvent::Text(t) => t.to_owned(),
                ReplyEvent::Restart { .. } => "<restart>".to_owned(),
            })
        })
        .await;
    (result, events)
}

#[tokio::test]
async fn a_server_that_ignores_stream_is_read_whole_and_the_request_carries_key_and_headers() {
    let body = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
    let mut server = canned(vec![http(
        "200 OK",
        &[("content-type", "application/json")],
        body,
    )])
    .await;
    let config = OpenAiConfig::new(server.base_url.clone())
        .with_api_key(SecretString::from("sk-or-abc"))
        .with_header("HTTP-Referer", "https://vitte.example")
        .with_header("X-Title", "Vitte");
    let service = service(config, fast());
    let (result, events) = reply(&service).await;
    let completion = result.expect("reply");
    assert_eq!(completion.text, "Hi there");
    assert_eq!(events, ["Hi there"]);
    assert_eq!(completion.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        (
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens
        ),
        (5, 2)
    );

    let request = server.requests.recv().await.expect("a request");
    let (head, body) = request.split_once("\r\n\r\n").expect("http request");
    let head = head.to_lowercase();
    assert!(head.starts_with("post /api/v1/chat/completions "), "{head}");
    for line in [
        "authorization: bearer sk-or-abc",
        "http-referer: https://vitte.example",
        "x-title: vitte",
        "content-type: application/json",
    ] {
        assert!(head.lines().any(|l| l == line), "{line} missing in {head}");
    }
    let body: serde_json::Value = serde_json::from_str(body).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({
            "model": "some/model",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 200,
            "temperature": 0.8,
        })
    );
}

#[tokio::test]
async fn keep_alive_comments_are_skipped_and_an_error_mid_stream_restarts() {
    let failing = format!(
        ": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n{}data: {}\n\n",
        chunk("Hel"),
        r#"{"error":{"message":"Provider disconnected","code":502},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#
    );
    let healthy = format!(
        ": OPENROUTER PROCESSING\n\n{}{}{FINISH}",
        chunk("Hello"),
        chunk(" you")
    );
    let server = canned(vec![sse(&failing), sse(&healthy)]).await;
    let service = service(OpenAiConfig::new(server.base_url.clone()), fast());
    let (result, events) = reply(&service).await;
    let completion = result.expect("reply");
    assert_eq!(events, ["Hel", "<restart>", "Hello", " you"]);
    assert_eq!(completion.text, "Hello you");
    assert_eq!(completion.attempts, 2);
    assert_eq!(completion.usage.prompt_tokens, 12);
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_honoured() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let limited = http(
        "429 Too Many Requests",
        &[("retry-after", &at), ("content-type", "application/json")],
        r#"{"error":{"message":"Rate limit exceeded: free-models-per-min","code":429}}"#,
    );
    let healthy = sse(&format!("{}{FINISH}", chunk("ok")));
    let server = canned(vec![limited, healthy]).await;
    let service = service(OpenAiConfig::new(server.base_url.clone()), fast());
    let started = Instant::now();
    let completion = reply(&service).await.0.expect("reply");
    // The date has a resolution of one second, so the wait is over one.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(completion.attempts, 2);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_failure() {
    // Bind then drop: the port is very likely closed afterwards.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    drop(listener);
    let policy = LlmPolicy {
        retries_per_model: 1,
        ..fast()
    };
    let service = service(OpenAiConfig::new(base), policy);
    let error = reply(&service).await.0.expect_err("nothing listens");
    let LlmError::Exhausted { attempts, last } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*attempts, 2, "connection failures are retried");
    assert!(
        matches!(**last, LlmError::Unavailable { status: None, .. }),
        "{last:?}"
    );
}
