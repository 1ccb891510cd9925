//! One module per family of subcommands.

pub mod config;
pub mod migrate;
pub mod roles;
