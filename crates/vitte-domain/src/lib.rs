//! Vitte's domain: the types the whole product speaks in, the ports (traits)
//! that storage adapters implement, and the services built on them.
//!
//! Nothing here knows about HTTP, Telegram's wire format, SQL or Redis: that
//! keeps every service testable alone and lets the engine be chosen once, at
//! start-up, by the binary.

pub mod clock;
pub mod ids;
pub mod model;
pub mod ports;
pub mod services;

pub use clock::{Clock, ManualClock, SystemClock};
