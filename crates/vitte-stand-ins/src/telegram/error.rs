//! The Bot API's error envelope, with Telegram's own codes and wording.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error as the Bot API reports it: the HTTP status equals `error_code`
/// and `description` carries Telegram's text, which clients match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BotApiError {
    /// 400: a parameter is missing or wrong; the text follows Telegram's.
    #[error("Bad Request: {0}")]
    BadRequest(String),
    /// 401: the token in the path is not this bot's.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the user blocked the bot (or similar).
    #[error("Forbidden: {0}")]
    Forbidden(String),
    /// 404: unknown method or file.
    #[error("Not Found")]
    NotFound,
    /// 409: getUpdates collides with a webhook or another poller.
    #[error("Conflict: {0}")]
    Conflict(String),
    /// 429: flood control; the client must wait `retry_after` seconds.
    #[error("Too Many Requests: retry after {retry_after}")]
    TooManyRequests {
        /// Whole seconds until a retry can succeed.
        retry_after: u64,
    },
}

impl BotApiError {
    pub(crate) fn bad_request(text: impl Into<String>) -> Self {
        Self::BadRequest(text.into())
    }

    pub(crate) fn blocked() -> Self {
        Self::Forbidden("bot was blocked by the user".into())
    }

    pub(crate) fn chat_not_found() -> Self {
        Self::bad_request("chat not found")
    }

    pub(crate) fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound => 404,
            Self::Conflict(_) => 409,
            Self::TooManyRequests { .. } => 429,
        }
    }
}

impl IntoResponse for BotApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut body = json!({
            "ok": false,
            "error_code": code,
            "description": self.to_string(),
        });
        if let Self::TooManyRequests { retry_after } = self {
            body["parameters"] = json!({ "retry_after": retry_after });
        }
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(body)).into_response()
    }
}

/// What every Bot API method returns.
pub(crate) type BotResult<T = serde_json::Value> = Result<T, BotApiError>;
