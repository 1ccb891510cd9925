//! The one error type of the API's handlers and how each kind is answered.
//! Bodies are JSON objects with a machine-readable `error`; internals (store
//! errors and the like) are logged in full and never sent to clients.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vitte_domain::ports::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such resource (or it is not public).
    #[error("not found")]
    NotFound,
    /// The client is over its rate limit.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// When the request would be allowed, from now.
        retry_after: Duration,
    },
    /// The store failed; the client may try again later.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    /// What went wrong, in a word a client can branch on.
    error: &'static str,
    /// For `rate_limited`: whole seconds to wait, as in `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl ErrorBody {
    fn new(error: &'static str) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// `Retry-After` counts whole seconds: round up, so a client that waits that
/// long is allowed, and never say 0, which would invite an instant retry.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => {
                (StatusCode::NOT_FOUND, Json(ErrorBody::new("not_found"))).into_response()
            }
            Self::RateLimited { retry_after } => {
                let secs = retry_after_secs(retry_after);
                let body = ErrorBody {
                    error: "rate_limited",
                    retry_after: Some(secs),
                };
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
            Self::Store(error) => {
                tracing::error!(error = %error, "store unavailable; answering 503");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(ErrorBody::new("unavailable")),
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(3_334)), 4);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
    }
}
