//! [`OpenAiCompatible`]: a [`ChatProvider`] for any server that speaks the
//! OpenAI chat-completions protocol (OpenRouter, DeepSeek, OpenAI, vLLM,
//! llama.cpp, Ollama, …).
//!
//! One call is one `POST {base}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`, read as server-sent events. A server that
//! ignores `stream` and answers with one JSON completion is accepted too.

mod sse;
mod wire;

use std::collections::VecDeque;
use std::error::Error as _;
use std::time::{Duration, SystemTime};

use futures::stream::{self, BoxStream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::chat::{ChatRequest, Delta, FinishReason, StreamEnd, Usage};
use crate::error::{ConfigError, LlmError};
use crate::provider::{ChatProvider, DeltaStream};
use sse::{SseEvent, SseParser};
use wire::{Chunk, CompletionRequest, StreamOptions, WireError};

/// Error bodies longer than this are not read further; the start says enough.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Where and how to reach an OpenAI-compatible API.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API root that `/chat/completions` is appended to, e.g.
    /// `https://openrouter.ai/api/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; `None` for local servers that need
    /// no key.
    pub api_key: Option<SecretString>,
    /// Headers sent with every request, such as OpenRouter's `HTTP-Referer`
    /// and `X-Title` that attribute traffic to the app.
    pub extra_headers: Vec<(String, String)>,
    /// How long to wait for a TCP (and TLS) connection before the attempt
    /// counts as failed; the service's first-token timeout bounds the rest.
    pub connect_timeout: Duration,
}

impl OpenAiConfig {
    /// Default connect timeout: a healthy API connects in well under a
    /// second, so 5 s only trips on a network that is really down.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A configuration with no key, no extra headers and the default connect
    /// timeout.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            extra_headers: Vec::new(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: SecretString) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }
}

/// A client of one OpenAI-compatible API. Cheap to share: it holds one
/// connection pool.
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<SecretString>,
}

impl OpenAiCompatible {
    /// Checks the configuration and builds the HTTP client.
    pub fn new(config: OpenAiConfig) -> Result<Self, ConfigError> {
        let endpoint = endpoint(&config.base_url)?;
        if let Some(key) = &config.api_key {
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| ConfigError::ApiKey)?;
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.extra_headers {
            let invalid = || ConfigError::Header { name: name.clone() };
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            headers.append(header_name, header_value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .default_headers(headers)
            .build()
            .map_err(ConfigError::Client)?;
        Ok(Self {
            http,
            endpoint,
            api_key: config.api_key,
        })
    }
}

#[async_trait::async_trait]
impl ChatProvider for OpenAiCompatible {
    async fn stream(&self, model: &str, request: &ChatRequest) -> Result<DeltaStream, LlmError> {
        let body = CompletionRequest {
            model,
            messages: &request.messages,
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        };
        let mut call = self
            .http
            .post(self.endpoint.clone())
            .header(header::ACCEPT, "text/event-stream, application/json")
            .json(&body);
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key.expose_secret());
        }
        let response = call.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| wire::parse_retry_after(v, SystemTime::now()));
            let body = read_capped(response).await;
            return Err(wire::error_from_status(status.as_u16(), retry_after, &body));
        }
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if is_json {
            // The server ignored `stream`: the whole reply is in the body.
            let body = response.bytes().await.map_err(transport_error)?;
            let deltas = wire::whole_completion(&body)?;
            return Ok(stream::iter(deltas.into_iter().map(Ok)).boxed());
        }
        Ok(delta_stream(response.bytes_stream().boxed()))
    }
}

fn endpoint(base_url: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::BaseUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "a query or fragment cannot be extended with a path",
        ));
    }
    let path = format!("{}/chat/completions", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

/// Describes a transport failure with its causes ("error sending request"
/// alone says nothing). reqwest never puts headers in its errors, so the key
/// cannot leak here.
fn transport_error(e: reqwest::Error) -> LlmError {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    LlmError::Unavailable {
        status: None,
        detail,
    }
}

/// The start of an error body; a body that cannot be read is reported as
/// empty, since the status already says what matters.
async fn read_capped(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ERROR_BODY_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

/// A response body as reqwest hands it out, piece by piece; generic over
/// the piece type so tests can feed plain strings.
type ByteStream<B> = BoxStream<'static, reqwest::Result<B>>;

/// Turns an event-stream body into deltas.
fn delta_stream<B: AsRef<[u8]> + Send + 'static>(body: ByteStream<B>) -> DeltaStream {
    let state = SseReader {
        body,
        parser: SseParser::default(),
        ready: VecDeque::new(),
        finish_reason: None,
        usage: None,
        ended: false,
    };
    stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

/// The state of [`delta_stream`] between two polls.
struct SseReader<B> {
    body: ByteStream<B>,
    parser: SseParser,
    /// Items decoded from the last piece of body, not yet handed out.
    ready: VecDeque<Result<Delta, LlmError>>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    /// `[DONE]`, an error or the end of the body was seen: hand out what is
    /// ready, then stop.
    ended: bool,
}

impl<B: AsRef<[u8]>> SseReader<B> {
    async fn next(&mut self) -> Option<Result<Delta, LlmError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(bytes)) => match self.parser.push(bytes.as_ref()) {
                    Ok(events) => events.into_iter().for_each(|e| self.event(e)),
                    Err(e) => self.fail(e),
                },
                Some(Err(e)) => self.fail(transport_error(e)),
                None => {
                    if let Some(event) = self.parser.finish() {
                        self.event(event);
                    }
                    self.body_ended();
                }
            }
        }
    }

    fn event(&mut self, event: SseEvent) {
        if self.ended {
            return;
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done();
            return;
        }
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) if event.event.as_deref() == Some("error") => {
                return self.fail(LlmError::Unavailable {
                    status: None,
                    detail: wire::shorten(&format!("error event: {data} ({e})")),
                });
            }
            Err(e) => {
                return self.fail(LlmError::Protocol {
                    detail: wire::shorten(&format!("a chunk is not valid JSON ({e}): {data}")),
                });
            }
        };
        if let Some(error) = &chunk.error {
            return self.fail(wire::error_in_body(error));
        }
        if event.event.as_deref() == Some("error") {
            return self.fail(wire::error_in_body(&WireError::default()));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return;
        };
        let text = choice.delta.or(choice.message).and_then(|m| m.content);
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            self.ready.push_back(Ok(Delta::Text(text)));
        }
        match choice.finish_reason.as_deref() {
            // OpenRouter ends a stream whose upstream failed this way.
            Some("error") => self.fail(LlmError::Unavailable {
                status: None,
                detail: "the provider stopped the reply with finish_reason \"error\"".into(),
            }),
            Some(reason) => self.finish_reason = Some(FinishReason::parse(reason)),
            None => {}
        }
    }

    fn body_ended(&mut self) {
        if self.ended {
            return;
        }
        if self.finish_reason.is_some() {
            // Some servers close the body without `[DONE]`; a finish reason
            // already says the reply is whole.
            self.done();
        } else {
            self.fail(LlmError::Unavailable {
                status: None,
                detail: "the stream ended before the reply was complete".into(),
            });
        }
    }

    fn done(&mut self) {
        self.ready.push_back(Ok(Delta::Done(StreamEnd {
            finish_reason: self.finish_reason.take(),
            usage: self.usage.take(),
        })));
        self.ended = true;
    }

    fn fail(&mut self, error: LlmError) {
        if !self.ended {
            self.ready.push_back(Err(error));
            self.ended = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(pieces: &[&str]) -> ByteStream<String> {
        let pieces: Vec<reqwest::Result<String>> =
            pieces.iter().map(|p| Ok(p.to_string())).collect();
        stream::iter(pieces).boxed()
    }

    async fn collect(pieces: &[&str]) -> Vec<Result<Delta, LlmError>> {
        delta_stream(body_of(pieces)).collect().await
    }

    fn text(s: &str) -> Result<Delta, LlmError> {
        Ok(Delta::Text(s.into()))
    }

    #[tokio::test]
    async fn a_streamed_reply_yields_text_then_usage() {
        let items = collect(&[
            ": OPENROUTER PROCESSING\n\n",
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"del",
            "ta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        ])
        .await;
        assert_eq!(
            items,
            vec![
                text("Hel"),
                text("lo"),
                Ok(Delta::Done(StreamEnd {
                    finish_reason: Some(FinishReason::Stop),
                    usage: Some(Usage {
                        prompt_tokens: 9,
                        completion_tokens: 2
                    })
                }))
            ]
        );
    }

    #[tokio::test]
    async fn a_stream_cut_before_the_finish_is_an_error() {
        let items = collect(&["data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"]).await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], text("Hel"));
        assert!(matches!(items[1], Err(LlmError::Unavailable { .. })));
    }

    #[tokio::test]
    async fn a_finish_reason_without_done_completes_the_stream() {
        let items = collect(&[
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"length\"}]}\n\n",
        ])
        .await;
        assert_eq!(
            items,
            vec![
                text("Hi"),
                Ok(Delta::Done(StreamEnd {
                    finish_reason: Some(FinishReason::Length),
                    usage: None
                }))
            ]
        );
    }

    #[tokio::test]
    async fn an_error_mid_stream_ends_it_with_that_error() {
        let items = collect(&[
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"Provider disconnected\",\"code\":502},\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"ignored\"}}]}\n\n",
        ])
        .await;
        assert_eq!(items.len(), 2);
        assert!(matches!(
            &items[1],
            Err(LlmError::Unavailable {
                status: Some(502),
                detail
            }) if detail == "Provider disconnected"
        ));
    }

    #[tokio::test]
    async fn a_named_error_event_and_garbage_are_failures() {
        let items = collect(&["event: error\ndata: upstream exploded\n\n"]).await;
        assert!(matches!(items[..], [Err(LlmError::Unavailable { .. })]));
        let items = collect(&["data: {not json\n\n"]).await;
        assert!(matches!(items[..], [Err(LlmError::Protocol { .. })]));
    }

    #[test]
    fn the_endpoint_extends_the_base_path() {
        let cases = [
            (
                "https://openrouter.ai/api/v1",
                "https://openrouter.ai/api/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:8080/v1/",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            ("http://localhost:9", "http://localhost:9/chat/completions"),
        ];
        for (base, expected) in cases {
            assert_eq!(endpoint(base).expect(base).as_str(), expected);
        }
        for bad in ["ftp://x/v1", "not a url", "https://x/v1?key=1"] {
            assert!(
                matches!(endpoint(bad), Err(ConfigError::BaseUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_headers_and_keys_are_refused_at_start_up() {
        let config = OpenAiConfig::new("http://localhost:1").with_header("X Title", "v");
        assert!(matches!(
            OpenAiCompatible::new(config),
            Err(ConfigError::Header { .. })
        ));
        let config =
            OpenAiConfig::new("http://localhost:1").with_api_key(SecretString::from("line\nbreak"));
        assert!(matches!(
            OpenAiCompatible::new(config),
            Err(ConfigError::ApiKey)
        ));
        let config = OpenAiConfig::new("http://localhost:1")
            .with_api_key(SecretString::from("sk-secret"))
            .with_header("X-Title", "Vitte");
        let provider = OpenAiCompatible::new(config).expect("valid");
        assert!(!format!("{provider:?}").contains("sk-secret"));
    }
}
