//! The JSON shapes of the OpenAI chat-completions API and the mapping of its
//! failures (status codes, `Retry-After`, error bodies) onto [`LlmError`].
//!
//! Only the fields we use are declared; providers add many more.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::{ChatMessage, Delta, FinishReason, StreamEnd, Usage};
use crate::error::LlmError;

/// Provider texts quoted in errors are cut to this many characters, so one
/// verbose error page cannot flood the logs.
const MAX_DETAIL_CHARS: usize = 300;

/// The body of `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub(crate) struct CompletionRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: &'a [ChatMessage],
    pub(crate) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<f32>,
}

/// Asks for a last chunk carrying the token usage.
#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub(crate) include_usage: bool,
}

/// A streamed chunk, or a whole non-streamed completion: the two differ only
/// in `delta` versus `message`.
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
    #[serde(default)]
    pub(crate) error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub(crate) delta: Option<WireMessage>,
    #[serde(default)]
    pub(crate) message: Option<WireMessage>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMessage {
    #[serde(default)]
    pub(crate) content: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u32,
    #[serde(default)]
    pub(crate) completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// `{"error": {...}}`, in an error response or in the middle of a stream.
/// `code` is a number (OpenRouter: the HTTP status) or a string (OpenAI:
/// `"model_not_found"`, `"rate_limit_exceeded"`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) code: Option<Value>,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
}

impl WireError {
    fn numeric_code(&self) -> Option<u16> {
        match &self.code {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    fn text_code(&self) -> &str {
        match &self.code {
            Some(Value::String(s)) => s,
            _ => "",
        }
    }

    fn says_rate_limited(&self) -> bool {
        let code = self.text_code();
        let kind = self.kind.as_deref().unwrap_or("");
        code.contains("rate_limit") || kind.contains("rate_limit")
    }

    fn says_model_not_found(&self) -> bool {
        self.text_code() == "model_not_found"
    }

    fn detail(&self) -> String {
        shorten(self.message.as_deref().unwrap_or("no message"))
    }
}

/// Maps a non-2xx response. `body` is whatever the server sent: usually
/// `{"error": {...}}`, sometimes `{"detail": ...}` or plain text.
pub(crate) fn error_from_status(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> LlmError {
    let parsed = parse_error_body(body);
    let detail = parsed
        .as_ref()
        .map(WireError::detail)
        .unwrap_or_else(|| shorten(body.trim()));
    let model_not_found = parsed.as_ref().is_some_and(WireError::says_model_not_found);
    match status {
        429 => LlmError::RateLimited {
            retry_after,
            detail,
        },
        408 | 500..=599 => LlmError::Unavailable {
            status: Some(status),
            detail,
        },
        404 if model_not_found || detail.to_lowercase().contains("model") => {
            LlmError::ModelNotFound { detail }
        }
        400..=499 if model_not_found => LlmError::ModelNotFound { detail },
        400..=499 => LlmError::Refused { status, detail },
        _ => LlmError::Protocol {
            detail: format!("unexpected HTTP {status}: {detail}"),
        },
    }
}

/// Maps an error reported inside a 200 response (mid-stream, or in a
/// non-streamed body). The request was accepted, so unless the error says
/// otherwise it is the provider failing, which is worth a retry.
pub(crate) fn error_in_body(error: &WireError) -> LlmError {
    if error.says_rate_limited() {
        return LlmError::RateLimited {
            retry_after: None,
            detail: error.detail(),
        };
    }
    if error.says_model_not_found() {
        return LlmError::ModelNotFound {
            detail: error.detail(),
        };
    }
    match error.numeric_code() {
        Some(status @ 400..=599) => error_from_status(status, None, &error_json(error)),
        _ => LlmError::Unavailable {
            status: None,
            detail: error.detail(),
        },
    }
}

fn error_json(error: &WireError) -> String {
    serde_json::json!({ "error": { "message": error.message, "code": error.code, "type": error.kind } })
        .to_string()
}

fn parse_error_body(body: &str) -> Option<WireError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        error: Option<Value>,
        #[serde(default)]
        detail: Option<Value>,
        #[serde(default)]
        message: Option<String>,
    }
    let envelope: Envelope = serde_json::from_str(body).ok()?;
    match envelope.error {
        Some(Value::String(message)) => Some(WireError {
            message: Some(message),
            ..WireError::default()
        }),
        Some(error) => serde_json::from_value(error).ok(),
        None => {
            let message = match envelope.detail {
                Some(Value::String(s)) => Some(s),
                Some(other) => Some(other.to_string()),
                None => envelope.message,
            };
            message.map(|message| WireError {
                message: Some(message),
                ..WireError::default()
            })
        }
    }
}

/// Reads `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
/// A date in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // Not in the RFC, but some proxies send fractional seconds.
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The deltas of a non-streamed completion, for servers that ignore
/// `stream: true`.
pub(crate) fn whole_completion(body: &[u8]) -> Result<Vec<Delta>, LlmError> {
    let chunk: Chunk = serde_json::from_slice(body).map_err(|e| LlmError::Protocol {
        detail: format!("the completion is not valid JSON: {e}"),
    })?;
    if let Some(error) = &chunk.error {
        return Err(error_in_body(error));
    }
    let choice = chunk.choices.into_iter().next().ok_or(LlmError::Protocol {
        detail: "the completion has no choices".into(),
    })?;
    let text = choice
        .message
        .or(choice.delta)
        .and_then(|m| m.content)
        .unwrap_or_default();
    let mut deltas = Vec::with_capacity(2);
    if !text.is_empty() {
        deltas.push(Delta::Text(text));
    }
    deltas.push(Delta::Done(StreamEnd {
        finish_reason: choice.finish_reason.as_deref().map(FinishReason::parse),
        usage: chunk.usage.map(Usage::from),
    }));
    Ok(deltas)
}

/// Cuts a provider text for an error message.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_what_the_service_does_next() {
        let e = error_from_status(429, Some(Duration::from_secs(3)), "{}");
        assert_eq!(
            e,
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
                detail: "{}".into()
            }
        );
        for status in [500, 502, 503, 504, 408] {
            let e = error_from_status(status, None, "oops");
            assert_eq!(
                e,
                LlmError::Unavailable {
                    status: Some(status),
                    detail: "oops".into()
                }
            );
        }
        for status in [400, 401, 402, 403] {
            let e = error_from_status(status, None, r#"{"error":{"message":"no"}}"#);
            assert_eq!(
                e,
                LlmError::Refused {
                    status,
                    detail: "no".into()
                }
            );
        }
    }

    #[test]
    fn model_not_found_is_recognised_by_code_or_text() {
        let openai = r#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#;
        assert!(matches!(
            error_from_status(404, None, openai),
            LlmError::ModelNotFound { .. }
        ));
        assert!(matches!(
            error_from_status(400, None, openai),
            LlmError::ModelNotFound { .. }
        ));
        let openrouter = r#"{"error":{"message":"No endpoints found for model x","code":404}}"#;
        assert!(matches!(
            error_from_status(404, None, openrouter),
            LlmError::ModelNotFound { .. }
        ));
        assert!(matches!(
            error_from_status(404, None, "Not Found"),
            LlmError::Refused { status: 404, .. }
        ));
    }

    #[test]
    fn error_bodies_of_other_servers_give_their_message() {
        let e = error_from_status(400, None, r#"{"detail":"context too long"}"#);
        assert_eq!(
            e,
            LlmError::Refused {
                status: 400,
                detail: "context too long".into()
            }
        );
        let e = error_from_status(400, None, r#"{"error":"bad things"}"#);
        assert_eq!(
            e,
            LlmError::Refused {
                status: 400,
                detail: "bad things".into()
            }
        );
    }

    #[test]
    fn long_error_pages_are_shortened() {
        let page = "x".repeat(5000);
        let LlmError::Unavailable { detail, .. } = error_from_status(502, None, &page) else {
            panic!("502 is transient");
        };
        assert_eq!(detail.chars().count(), MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn errors_inside_a_stream_are_classified() {
        let parse = |s: &str| -> WireError { serde_json::from_str(s).expect("json") };
        assert!(matches!(
            error_in_body(&parse(
                r#"{"message":"Provider disconnected","code":"server_error"}"#
            )),
            LlmError::Unavailable { status: None, .. }
        ));
        assert!(matches!(
            error_in_body(&parse(r#"{"message":"busy","code":502}"#)),
            LlmError::Unavailable {
                status: Some(502),
                ..
            }
        ));
        assert!(matches!(
            error_in_body(&parse(r#"{"message":"slow down","code":429}"#)),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            error_in_body(&parse(
                r#"{"message":"slow down","type":"rate_limit_error"}"#
            )),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            error_in_body(&parse(r#"{"message":"gone","code":"model_not_found"}"#)),
            LlmError::ModelNotFound { .. }
        ));
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn a_whole_completion_becomes_text_then_done() {
        let body = br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(
            whole_completion(body).expect("parses"),
            vec![
                Delta::Text("Hi!".into()),
                Delta::Done(StreamEnd {
                    finish_reason: Some(FinishReason::Stop),
                    usage: Some(Usage {
                        prompt_tokens: 5,
                        completion_tokens: 2
                    }),
                })
            ]
        );
        assert!(matches!(
            whole_completion(br#"{"error":{"message":"down","code":503}}"#),
            Err(LlmError::Unavailable {
                status: Some(503),
                ..
            })
        ));
        assert!(matches!(
            whole_completion(b"<html>"),
            Err(LlmError::Protocol { .. })
        ));
    }

    #[test]
    fn the_request_body_asks_for_streamed_usage() {
        let messages = [ChatMessage::user("hi")];
        let body = CompletionRequest {
            model: "m",
            messages: &messages,
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            max_tokens: Some(10),
            temperature: None,
        };
        assert_eq!(
            serde_json::to_value(&body).expect("serialises"),
            serde_json::json!({
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 10
            })
        );
    }
}
