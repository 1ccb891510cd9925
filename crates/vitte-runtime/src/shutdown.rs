//! Graceful shutdown: one token every task watches, tripped by SIGTERM or
//! SIGINT (or by a test).

use tokio_util::sync::CancellationToken;

/// A shared "stop now" signal. Cloning is cheap; all clones trip together.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that has not tripped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trips the signal: servers stop accepting, loops finish their current item.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has tripped.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the signal trips.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// An owned future resolving once the signal trips, for APIs that need `'static`.
    pub fn wait_owned(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// Trips the signal on the first SIGTERM or SIGINT.
    pub fn trip_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let reason = wait_for_signal().await;
            tracing::info!(signal = reason, "stopping: finishing in-flight work");
            this.trigger();
        });
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            tracing::warn!("cannot install signal handlers; falling back to Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clones_trip_together() {
        let a = Shutdown::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait().await }
        });
        a.trigger();
        waiter.await.expect("waiter finished");
        assert!(b.is_triggered());
    }
}
