//! The `vitte` command line: parses configuration, picks the storage engine
//! and runs the requested roles or maintenance commands.

pub mod cli;
mod commands;
