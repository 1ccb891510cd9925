//! The api role: the HTTP API that is not Telegram's webhook. Today it serves
//! the probes every role has (`/healthz`, `/readyz`); payment notifications
//! and the admin API mount here.

use vitte_runtime::{AppContext, RoleParts};

/// The api role's routes and tasks.
pub fn parts(_ctx: &AppContext) -> RoleParts {
    RoleParts::new("api")
}
