//! The repository traits of `vitte_domain::ports`, one file per aggregate,
//! each of the same shape: its column list, its row mapping, its trait impl.
//!
//! Reads go to the reader pool; writes to the writer, and every write of
//! more than one statement runs in one `BEGIN IMMEDIATE` transaction.

mod broadcasts;
mod dialogs;
mod entitlements;
mod memory;
mod messages;
mod payments;
mod personas;
mod updates;
mod users;
