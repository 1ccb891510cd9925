//! The errors of this crate: [`LlmError`] for a reply that could not be had,
//! [`ConfigError`] for settings rejected at start-up.
//!
//! Every message is safe to log: it carries status codes, provider error
//! texts (shortened) and URLs, never request headers, so never the API key.

use std::fmt;
use std::time::Duration;

/// Why a reply (or one attempt at it) failed.
///
/// The variants are grouped by what the service does next: retry the same
/// model after a backoff ([`LlmError::is_retryable`]), or give up on the model
/// at once and move to the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// HTTP 429 or a rate-limit error inside the stream: retry later, no
    /// sooner than `retry_after` when the provider said.
    #[error("rate limited{}: {detail}", RetryAfter(*retry_after))]
    RateLimited {
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// The provider's explanation.
        detail: String,
    },
    /// A transient failure: 5xx, a connection that could not be made or
    /// broke, an error event in the middle of the stream, a stream cut short.
    #[error("provider unavailable{}: {detail}", Status(*status))]
    Unavailable {
        /// HTTP status, when the failure had one.
        status: Option<u16>,
        /// What went wrong.
        detail: String,
    },
    /// The attempt took longer than the policy allows.
    #[error("timed out: {phase} within {after:?}")]
    Timeout {
        /// Which limit was hit.
        phase: TimeoutPhase,
        /// The limit.
        after: Duration,
    },
    /// The provider does not know the model: it will not start working by
    /// retrying, but another model may.
    #[error("model not found: {detail}")]
    ModelNotFound {
        /// The provider's explanation.
        detail: String,
    },
    /// The provider refused the request for good (400, 401, 402, 403, …):
    /// retrying the same request on the same model cannot help.
    #[error("request refused (HTTP {status}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The provider's explanation.
        detail: String,
    },
    /// The provider answered something that is not the chat-completions
    /// protocol (bad JSON, unexpected content type).
    #[error("malformed response: {detail}")]
    Protocol {
        /// What was wrong with it.
        detail: String,
    },
    /// The model finished without writing anything; there is nothing to send
    /// to the person, so it is retried like a transient failure.
    #[error("the model returned an empty reply")]
    EmptyReply,
    /// The model's circuit breaker is open after repeated failures, so it was
    /// skipped without a request.
    #[error("model {model} skipped: its circuit breaker is open")]
    CircuitOpen {
        /// The skipped model.
        model: String,
    },
    /// Every model failed or was skipped; `last` is the last failure seen.
    #[error("no model could reply after {attempts} attempts; last error: {last}")]
    Exhausted {
        /// Requests made in total, over all models.
        attempts: u32,
        /// The last failure (or the last open breaker), for the logs.
        last: Box<LlmError>,
    },
}

impl LlmError {
    /// True when the same model may succeed if asked again after a pause.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Unavailable { .. }
                | Self::Timeout { .. }
                | Self::Protocol { .. }
                | Self::EmptyReply
        )
    }

    /// True when the failure says something about the model's health, so it
    /// counts towards opening its circuit breaker. A refused request says
    /// more about the request (or the account) than about the model.
    pub fn counts_against_model(&self) -> bool {
        self.is_retryable() || matches!(self, Self::ModelNotFound { .. })
    }

    /// A short, stable name of the variant, for log fields and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::Refused { .. } => "refused",
            Self::Protocol { .. } => "protocol",
            Self::EmptyReply => "empty_reply",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Exhausted { .. } => "exhausted",
        }
    }
}

/// Which of the per-attempt time limits was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Nothing of the reply arrived in time (covers connecting, queueing at
    /// the provider and reading the prompt).
    FirstToken,
    /// The reply had started, then stalled between two pieces.
    Idle,
    /// The whole attempt ran past its budget, or the reply's overall
    /// deadline came.
    Total,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstToken => "no first token",
            Self::Idle => "no next token",
            Self::Total => "reply not complete",
        })
    }
}

/// Settings rejected when a provider or service is built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL does not parse or is not http(s).
    #[error("invalid LLM base URL {url:?}: {reason}")]
    BaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An extra header has an invalid name or value.
    #[error("invalid extra header {name:?}")]
    Header {
        /// The header name as given.
        name: String,
    },
    /// The API key contains characters a header cannot carry.
    #[error("the API key contains characters that cannot be sent in a header")]
    ApiKey,
    /// A model name is empty.
    #[error("model names must not be empty")]
    EmptyModel,
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Formats an optional `Retry-After` as ` (retry after 2s)`.
struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " (retry after {d:?})"),
            None => Ok(()),
        }
    }
}

/// Formats an optional status as ` (HTTP 503)`.
struct Status(Option<u16>);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, " (HTTP {s})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let retryable = [
            LlmError::RateLimited {
                retry_after: None,
                detail: String::new(),
            },
            LlmError::Unavailable {
                status: Some(503),
                detail: String::new(),
            },
            LlmError::Timeout {
                phase: TimeoutPhase::Idle,
                after: Duration::from_secs(1),
            },
            LlmError::Protocol {
                detail: String::new(),
            },
            LlmError::EmptyReply,
        ];
        for e in &retryable {
            assert!(e.is_retryable(), "{e}");
            assert!(e.counts_against_model(), "{e}");
        }
        let not_found = LlmError::ModelNotFound {
            detail: String::new(),
        };
        assert!(!not_found.is_retryable());
        assert!(not_found.counts_against_model());
        let refused = LlmError::Refused {
            status: 401,
            detail: String::new(),
        };
        assert!(!refused.is_retryable());
        assert!(!refused.counts_against_model());
    }

    #[test]
    fn messages_read_well() {
        let e = LlmError::Exhausted {
            attempts: 3,
            last: Box::new(LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
                detail: "slow down".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "no model could reply after 3 attempts; last error: rate limited (retry after 2s): slow down"
        );
        let e = LlmError::Unavailable {
            status: Some(502),
            detail: "bad gateway".into(),
        };
        assert_eq!(
            e.to_string(),
            "provider unavailable (HTTP 502): bad gateway"
        );
    }
}
