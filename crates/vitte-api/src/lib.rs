//! The api role: the HTTP API that is not Telegram's webhook.
//!
//! Routes (all JSON unless noted):
//!
//! - `GET /v1/personas`: the personas people can talk to (see [`personas`]).
//! - `GET /v1/personas/{slug}/picture`: a listed persona's picture (image bytes).
//!
//! Every route here is rate limited per client address (see [`rate_limit`]):
//! `VITTE_RATE_API` quotas under the key `api:<client>`, shared by every
//! process when the limiter is Redis. Over the limit a client gets `429 Too
//! Many Requests` with `Retry-After`. The probes (`/healthz`, `/readyz`) are
//! added by the runtime for every role, outside this router, so they are
//! never limited. Payment notifications and the admin API mount here too.

pub mod error;
pub mod personas;
pub mod rate_limit;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use vitte_domain::ports::Store;
use vitte_runtime::{AppContext, RoleParts};

pub use error::ApiError;
pub use rate_limit::ApiRateLimit;

/// What the API's handlers read.
#[derive(Clone)]
pub struct ApiState {
    /// Where personas live.
    pub store: Arc<dyn Store>,
}

/// The api role's routes and tasks.
pub fn parts(ctx: &AppContext) -> RoleParts {
    RoleParts::new("api").with_router(router(ctx))
}

/// The API's routes, rate limited by `VITTE_RATE_API` (not limited when it is
/// empty). Only matched routes count against the limit: unknown paths answer
/// 404 without touching the limiter.
pub fn router(ctx: &AppContext) -> Router {
    let state = ApiState {
        store: ctx.store.clone(),
    };
    let routes = Router::new()
        .route("/v1/personas", get(personas::list))
        .route("/v1/personas/{slug}/picture", get(personas::picture))
        .with_state(state);
    match ApiRateLimit::from_context(ctx) {
        Some(limit) => routes.route_layer(axum::middleware::from_fn_with_state(
            limit,
            rate_limit::enforce,
        )),
        None => routes,
    }
}
