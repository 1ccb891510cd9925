//! What the model stand-in has been asked, for tests that check retries and
//! fallbacks ("was the fallback model called after two 503s?").

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::behaviour::Fault;

/// Requests remembered in full, newest last.
const RECENT_KEPT: usize = 200;
/// Model names remembered in order.
const MODELS_KEPT: usize = 10_000;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered normally.
    Ok,
    /// Missing or wrong API key.
    Unauthorized,
    /// Malformed request.
    InvalidRequest,
    /// Unknown model.
    ModelNotFound,
    /// Injected 429.
    RateLimited,
    /// Injected 500.
    ServerError,
    /// Injected 503.
    Unavailable,
    /// Injected hang.
    Timeout,
    /// Injected invalid JSON.
    BadJson,
    /// Injected cut-off.
    TruncatedStream,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::InvalidRequest => "invalid_request",
            Self::ModelNotFound => "model_not_found",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::BadJson => "bad_json",
            Self::TruncatedStream => "truncated_stream",
        }
    }
}

impl From<Fault> for Outcome {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::RateLimited => Self::RateLimited,
            Fault::ServerError => Self::ServerError,
            Fault::Unavailable => Self::Unavailable,
            Fault::Timeout => Self::Timeout,
            Fault::BadJson => Self::BadJson,
            Fault::TruncatedStream => Self::TruncatedStream,
        }
    }
}

/// One remembered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The model asked for (empty if none was given).
    pub model: String,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// The request body as received (null if it was not JSON).
    pub request: Value,
}

/// Counts since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Chat-completion requests received.
    pub requests: u64,
    /// Requests by outcome name (`ok`, `rate_limited`, …).
    pub by_outcome: BTreeMap<String, u64>,
    /// Requests by model, then by outcome name.
    pub by_model: BTreeMap<String, BTreeMap<String, u64>>,
    /// The model of each request, in arrival order (the last 10,000).
    pub models_requested: Vec<String>,
    /// The last 200 requests in full.
    pub recent: Vec<RecordedRequest>,
}

/// The mutable counterpart of [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    requests: u64,
    by_outcome: BTreeMap<String, u64>,
    by_model: BTreeMap<String, BTreeMap<String, u64>>,
    models: VecDeque<String>,
    recent: VecDeque<RecordedRequest>,
}

impl Recorder {
    pub(crate) fn record(&mut self, entry: RecordedRequest) {
        let outcome = entry.outcome.name().to_owned();
        self.requests += 1;
        *self.by_outcome.entry(outcome.clone()).or_default() += 1;
        *self
            .by_model
            .entry(entry.model.clone())
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        self.models.push_back(entry.model.clone());
        if self.models.len() > MODELS_KEPT {
            self.models.pop_front();
        }
        self.recent.push_back(entry);
        if self.recent.len() > RECENT_KEPT {
            self.recent.pop_front();
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests,
            by_outcome: self.by_outcome.clone(),
            by_model: self.by_model.clone(),
            models_requested: self.models.iter().cloned().collect(),
            recent: self.recent.iter().cloned().collect(),
        }
    }
}
