//! Checks that run before handlers. They only read: writes happen in the
//! handlers, where they are visible.

pub mod access;
pub mod flood;
pub mod limits;
pub mod terms_gate;
