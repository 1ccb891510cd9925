//! The OpenAI chat-completions wire format: the request fields the stand-in
//! reads, the response and chunk objects it writes, and errors in OpenAI's
//! `{"error": {message, type, param, code}}` shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::reply::Turn;

/// The parts of a chat-completions request that matter here; other fields
/// (temperature, tools, …) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u32>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub(crate) response_format: Option<Value>,
}

/// One input message.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatMessage {
    #[serde(default)]
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<Value>,
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

impl ChatMessage {
    /// The text of the message: a string, or the text parts of an array of
    /// content parts.
    pub(crate) fn text(&self) -> String {
        match &self.content {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|part| part["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

impl ChatRequest {
    pub(crate) fn turns(&self) -> Vec<Turn> {
        self.messages
            .iter()
            .flatten()
            .map(|m| Turn {
                role: m.role.clone(),
                text: m.text(),
            })
            .collect()
    }

    pub(crate) fn max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// Token usage, as in the final object or chunk.
pub(crate) fn usage(prompt: u32, completion: u32) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt.saturating_add(completion),
        "prompt_tokens_details": { "cached_tokens": 0 },
        "completion_tokens_details": { "reasoning_tokens": 0 },
    })
}

/// An error as the OpenAI API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenAiError {
    #[error(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys."
    )]
    MissingKey,
    #[error(
        "Incorrect API key provided: {0}. You can find your API key at https://platform.openai.com/account/api-keys."
    )]
    WrongKey(String),
    #[error(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
    )]
    InvalidJson,
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
        code: Option<&'static str>,
    },
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("Rate limit reached for requests. Please try again in {retry_after}s.")]
    RateLimited { retry_after: u64 },
    #[error("The server had an error while processing your request. Sorry about that!")]
    Server,
    #[error("The server is overloaded or not ready yet.")]
    Unavailable,
    #[error("The request timed out.")]
    GatewayTimeout,
}

impl OpenAiError {
    fn parts(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ) {
        match self {
            Self::MissingKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                None,
            ),
            Self::WrongKey(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
            Self::InvalidJson => (StatusCode::BAD_REQUEST, "invalid_request_error", None, None),
            Self::InvalidRequest { param, code, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                *param,
                *code,
            ),
            Self::ModelNotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
            Self::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                None,
                Some("rate_limit_exceeded"),
            ),
            Self::Server => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_error", None, None),
            Self::GatewayTimeout => (StatusCode::GATEWAY_TIMEOUT, "server_error", None, None),
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let (status, kind, param, code) = self.parts();
        let body = json!({
            "error": {
                "message": self.to_string(),
                "type": kind,
                "param": param,
                "code": code,
            }
        });
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after } = self {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after));
        }
        response
    }
}

/// How OpenAI shows a wrong key back: the start and end, starred in between.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_parts_and_masking() {
        let message: ChatMessage = serde_json::from_value(json!({
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]
        }))
        .expect("json");
        assert_eq!(message.text(), "a\nb");
        assert_eq!(mask_key("sk-abcdefgh1234"), "sk-********1234");
        assert_eq!(mask_key("short"), "*****");
    }
}
