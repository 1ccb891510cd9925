//! The worker role: everything slow or periodic runs here, never on a
//! request path. Each job family lives in its own module.

pub mod maintenance;

use vitte_runtime::{AppContext, RoleParts};

/// The worker role's tasks.
pub fn parts(ctx: &AppContext) -> RoleParts {
    let sweep = maintenance::InboxPruning::new(ctx.store.clone(), ctx.clock.clone());
    RoleParts::new("worker").with_task(sweep.run(ctx.shutdown.clone()))
}
