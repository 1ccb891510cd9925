//! The HTTP server every role runs: it takes a listener bound by the caller
//! (port 0 in tests) and stops accepting when shutdown trips, letting
//! requests in flight finish.

use axum::Router;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Serves `router` on `listener` until `shutdown` trips and in-flight
/// requests are done.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    // Small writes go out at once: without TCP_NODELAY, Nagle's algorithm
    // holds a response's second write until the first is acknowledged,
    // which a delayed ACK makes 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    // The peer address reaches handlers (the API's per-client limits).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.wait_owned())
    .await
}
