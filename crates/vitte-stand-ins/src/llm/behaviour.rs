//! How the model behaves right now: latency and injected faults, changeable at
//! runtime through `POST /control/llm`. Faults are decided deterministically
//! (a seeded schedule over a request counter), so tests know exactly which
//! request fails.

use serde::{Deserialize, Deserializer, Serialize};

use crate::stable_hash::mix;

/// What a failing request looks like to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// 429 with a `Retry-After` header, as when the provider throttles.
    RateLimited,
    /// 500 `server_error`.
    ServerError,
    /// 503, the provider is overloaded.
    Unavailable,
    /// No answer for `hang_ms` (longer than any sane client timeout), then 504.
    Timeout,
    /// 200 with a body that is not valid JSON (or an SSE event that is not).
    BadJson,
    /// The stream (or body) stops half-way without `finish_reason` or `[DONE]`.
    TruncatedStream,
}

/// The model's current behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// Milliseconds before the first token (before the response starts).
    pub first_token_ms: u64,
    /// Milliseconds between streamed pieces (and added per piece to a
    /// non-streamed answer).
    pub per_token_ms: u64,
    /// Fraction of requests, 0.0-1.0, that fail with `fault`, chosen by a
    /// hash of `error_seed` and the request counter.
    pub error_rate: f64,
    /// Seed of the failure schedule.
    pub error_seed: u64,
    /// How requests fail.
    pub fault: Fault,
    /// The `Retry-After` of a rate-limited answer, in seconds.
    pub retry_after_secs: u64,
    /// Fail exactly the next N requests, then behave normally.
    pub fail_next: u32,
    /// Fail every request until set back to false.
    pub down: bool,
    /// How long a `timeout` fault hangs.
    pub hang_ms: u64,
    /// Models that exist; others get 404 `model_not_found`. `None` accepts
    /// any model name.
    pub known_models: Option<Vec<String>>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            first_token_ms: 0,
            per_token_ms: 0,
            error_rate: 0.0,
            error_seed: 0,
            fault: Fault::ServerError,
            retry_after_secs: 1,
            fail_next: 0,
            down: false,
            hang_ms: 600_000,
            known_models: None,
        }
    }
}

/// A partial change of [`Behaviour`]: absent fields stay as they are;
/// `"known_models": null` accepts any model again. Setting `error_rate` or
/// `error_seed` restarts the failure schedule at request 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BehaviourPatch {
    /// See [`Behaviour::first_token_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    /// See [`Behaviour::per_token_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_token_ms: Option<u64>,
    /// See [`Behaviour::error_rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// See [`Behaviour::error_seed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_seed: Option<u64>,
    /// See [`Behaviour::fault`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// See [`Behaviour::retry_after_secs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// See [`Behaviour::fail_next`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<u32>,
    /// See [`Behaviour::down`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    /// See [`Behaviour::hang_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_ms: Option<u64>,
    /// See [`Behaviour::known_models`]; the outer `None` leaves it unchanged.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub known_models: Option<Option<Vec<String>>>,
}

/// Distinguishes a field given as `null` (`Some(None)`) from an absent one.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A patch that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// `error_rate` outside 0.0-1.0.
    #[error("error_rate must be between 0.0 and 1.0")]
    ErrorRate,
}

impl Behaviour {
    /// Applies `patch`; returns whether the failure schedule restarts.
    pub(crate) fn apply(&mut self, patch: BehaviourPatch) -> Result<bool, PatchError> {
        if patch
            .error_rate
            .is_some_and(|rate| !(0.0..=1.0).contains(&rate))
        {
            return Err(PatchError::ErrorRate);
        }
        let restart = patch.error_rate.is_some() || patch.error_seed.is_some();
        let BehaviourPatch {
            first_token_ms,
            per_token_ms,
            error_rate,
            error_seed,
            fault,
            retry_after_secs,
            fail_next,
            down,
            hang_ms,
            known_models,
        } = patch;
        set(&mut self.first_token_ms, first_token_ms);
        set(&mut self.per_token_ms, per_token_ms);
        set(&mut self.error_rate, error_rate);
        set(&mut self.error_seed, error_seed);
        set(&mut self.fault, fault);
        set(&mut self.retry_after_secs, retry_after_secs);
        set(&mut self.fail_next, fail_next);
        set(&mut self.down, down);
        set(&mut self.hang_ms, hang_ms);
        set(&mut self.known_models, known_models);
        Ok(restart)
    }

    /// Whether request number `n` of the schedule fails, consuming one of
    /// `fail_next` if so.
    pub(crate) fn decide(&mut self, n: u64) -> Option<Fault> {
        if self.down {
            return Some(self.fault);
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Some(self.fault);
        }
        if self.error_rate > 0.0 && unit(mix(self.error_seed, n)) < self.error_rate {
            return Some(self.fault);
        }
        None
    }

    /// Whether `model` exists.
    pub(crate) fn knows(&self, model: &str) -> bool {
        self.known_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// A hash mapped uniformly onto [0, 1).
fn unit(hash: u64) -> f64 {
    // 53 bits fit a double's mantissa exactly.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_and_fail_next_take_precedence() {
        let mut b = Behaviour {
            fail_next: 2,
            ..Behaviour::default()
        };
        assert_eq!(b.decide(0), Some(Fault::ServerError));
        assert_eq!(b.decide(1), Some(Fault::ServerError));
        assert_eq!(b.decide(2), None);
        b.down = true;
        assert_eq!(b.decide(3), Some(Fault::ServerError));
    }

    #[test]
    fn error_rate_schedule_is_seeded_and_roughly_proportional() {
        let mut b = Behaviour {
            error_rate: 0.25,
            error_seed: 7,
            ..Behaviour::default()
        };
        let first: Vec<bool> = (0..400).map(|n| b.decide(n).is_some()).collect();
        let again: Vec<bool> = (0..400).map(|n| b.decide(n).is_some()).collect();
        assert_eq!(first, again);
        let failures = first.iter().filter(|f| **f).count();
        assert!((60..=140).contains(&failures), "{failures} of 400");
        b.error_seed = 8;
        let other: Vec<bool> = (0..400).map(|n| b.decide(n).is_some()).collect();
        assert_ne!(first, other);
    }

    #[test]
    fn patches_apply_partially() {
        let mut b = Behaviour::default();
        let patch: BehaviourPatch =
            serde_json::from_str(r#"{"fault":"rate_limited","known_models":["a"]}"#).expect("json");
        assert_eq!(b.apply(patch), Ok(false));
        assert_eq!(b.fault, Fault::RateLimited);
        assert!(b.knows("a") && !b.knows("b"));
        let patch: BehaviourPatch = serde_json::from_str(r#"{"known_models":null}"#).expect("json");
        b.apply(patch).expect("valid");
        assert!(b.knows("b"));
        let patch: BehaviourPatch = serde_json::from_str(r#"{"error_rate":1.5}"#).expect("json");
        assert_eq!(b.apply(patch), Err(PatchError::ErrorRate));
        let patch: BehaviourPatch = serde_json::from_str(r#"{"error_seed":3}"#).expect("json");
        assert_eq!(b.apply(patch), Ok(true));
    }
}
