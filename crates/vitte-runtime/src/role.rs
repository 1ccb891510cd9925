//! Running roles: each role contributes HTTP routes and background tasks;
//! one process serves any set of roles behind one listener (`vitte all` runs
//! them all, `vitte bot` one), and stops them together.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::AppContext;
use crate::health::{self, Readiness};
use crate::server::serve;

/// A background task of a role; it must return soon after shutdown trips.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What one role adds to a process.
pub struct RoleParts {
    /// The role's name, for logs.
    pub name: &'static str,
    /// Its HTTP routes (merged with every other role's and the probes).
    pub router: Router,
    /// Its background tasks.
    pub tasks: Vec<Task>,
}

impl RoleParts {
    /// A role with no routes and no tasks yet.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            router: Router::new(),
            tasks: Vec::new(),
        }
    }

    /// Adds routes.
    pub fn with_router(mut self, router: Router) -> Self {
        self.router = self.router.merge(router);
        self
    }

    /// Adds a background task.
    pub fn with_task(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.tasks.push(Box::pin(task));
        self
    }
}

/// Serves the roles until shutdown trips, then gives in-flight work up to
/// `shutdown_timeout` to finish. Returns an error only if the server fails.
pub async fn run_roles(
    ctx: &AppContext,
    listener: TcpListener,
    roles: Vec<RoleParts>,
) -> std::io::Result<()> {
    let mut router = health::router(Readiness::new(ctx.store.clone()));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let names: Vec<&str> = roles.iter().map(|r| r.name).collect();
    for role in roles {
        router = router.merge(role.router);
        for task in role.tasks {
            tasks.spawn(task);
        }
    }
    let addr = listener.local_addr()?;
    tracing::info!(roles = ?names, %addr, engine = ctx.store.engine(), "serving");

    let shutdown = ctx.shutdown.clone();
    let mut server = tokio::spawn(serve(listener, router, shutdown.clone()));
    let server_result = tokio::select! {
        () = shutdown.wait() => None,
        result = &mut server => {
            // The server stopped by itself: stop everything else too.
            shutdown.trigger();
            Some(result)
        }
    };
    let deadline = ctx.settings.shutdown_timeout;
    let drained = drain(&mut server, server_result.is_some(), &mut tasks, deadline).await;
    if !drained {
        tracing::warn!(
            ?deadline,
            "in-flight work did not finish before the deadline; abandoning it"
        );
        tasks.abort_all();
        server.abort();
    }
    match server_result {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(std::io::Error::other(join)),
        None => Ok(()),
    }
}

async fn drain(
    server: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    server_done: bool,
    tasks: &mut JoinSet<()>,
    deadline: Duration,
) -> bool {
    tokio::time::timeout(deadline, async {
        if !server_done && let Ok(Err(e)) = server.await {
            tracing::error!(error = %e, "server failed while stopping");
        }
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}
