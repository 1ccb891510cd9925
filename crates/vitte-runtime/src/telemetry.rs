//! Logging through `tracing`: human-readable lines by default, one JSON
//! object per line with `--log-format json`. Metrics through the `metrics`
//! facade, kept by a Prometheus recorder the binary installs once and read
//! at `GET /metrics` (see [`crate::health`]).
//!
//! The recorder is the one process-wide value here: the facade's macros
//! find it globally, wherever a counter is incremented, so the handle that
//! renders it is kept beside it rather than threaded through every role.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat, filter: &str) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| ConfigError::new("VITTE_LOG", format!("invalid log filter: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    // A subscriber already installed (tests, embedding) is fine: keep it.
    let _ = result;
    Ok(())
}

/// Renders what the installed recorder holds; set at most once.
static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder behind the `metrics` facade, with no
/// listener of its own: every role's server renders it at `/metrics`. Call
/// once, first thing in `main`; returns `false` (and changes nothing) when a
/// recorder is already installed.
pub fn install_metrics() -> bool {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return false;
    }
    let _ = METRICS.set(handle);
    vitte_cache::describe_metrics();
    vitte_limits::RedisLimiter::describe_metrics();
    true
}

/// The handle of the recorder [`install_metrics`] installed, if it ran.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS.get().cloned()
}
