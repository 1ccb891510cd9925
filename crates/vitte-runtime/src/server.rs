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
    // The peer address reaches handlers (the API's per-client limits).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.wait_owned())
    .await
}
