//! What every Vitte role shares: configuration, the choice of storage engine,
//! logging, the HTTP server with `/healthz` and `/readyz`, and graceful
//! shutdown. Roles (bot, api, worker) build on this; the binary wires them.

pub mod config;
pub mod context;
pub mod engine;
pub mod health;
pub mod role;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, DatabaseUrl, LogFormat, Settings};
pub use context::AppContext;
pub use role::{RoleParts, Task, run_roles};
pub use shutdown::Shutdown;
