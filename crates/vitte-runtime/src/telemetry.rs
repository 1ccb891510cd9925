//! Logging through `tracing`: human-readable lines by default, one JSON
//! object per line with `--log-format json`.

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
