//! Running a stand-in on a listener the caller bound, and stopping it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why a stand-in stopped serving other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener or a connection failed at the socket level.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
    /// The serving task panicked or was aborted.
    #[error("the serving task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A stand-in running on a background task. Dropping the handle stops it too,
/// so a test that forgets to call [`Handle::shutdown`] does not leak a server.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Handle {
    /// Spawns `serve`, handing it a future that resolves when the handle is
    /// shut down or dropped.
    pub(crate) fn spawn<F>(addr: SocketAddr, serve: impl FnOnce(ShutdownSignal) -> F) -> Self
    where
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let signal = async move {
            // A dropped sender means the handle is gone: stop as well.
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(Box::pin(signal)));
        Self {
            addr,
            base_url: base_url(addr),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The address the stand-in listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port` with no trailing slash; an unspecified bind address
    /// (`0.0.0.0`) is replaced by loopback so the URL is usable as is.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops accepting, ends long polls and waits for the server to finish.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

/// The future a spawned server waits on before shutting down.
pub(crate) type ShutdownSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn base_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// `listener` with TCP_NODELAY on every accepted socket, so small writes (a
/// stream's pieces) go out at once: otherwise Nagle's algorithm holds each
/// one until the previous is acknowledged, which a delayed ACK makes 40 ms.
pub(crate) fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Addr = SocketAddr> {
    axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_replaces_unspecified_addresses() {
        assert_eq!(
            base_url("0.0.0.0:8080".parse().expect("addr")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("[::]:81".parse().expect("addr")),
            "http://[::1]:81"
        );
        assert_eq!(
            base_url("10.1.2.3:9".parse().expect("addr")),
            "http://10.1.2.3:9"
        );
    }
}
