//! One module per family of subcommands.

pub mod config;
pub mod demo;
pub mod migrate;
pub mod persona;
pub mod roles;
