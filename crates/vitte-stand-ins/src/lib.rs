//! Faithful local stand-ins of the external HTTP systems Vitte talks to: the
//! Telegram Bot API ([`telegram`]) and an OpenAI-compatible chat-completions
//! API ([`llm`]).
//!
//! They follow the public wire protocols (paths, JSON shapes, error texts,
//! limits), not the habits of our own client, so a test that passes against a
//! stand-in says something about production. Everything lives in memory and is
//! cheap enough for thousands of simulated chats; each stand-in also exposes a
//! `/control/...` API so tests, `vitte demo` and the load generator can play the
//! other side (users pressing buttons, a model going down).
//!
//! Both stand-ins are started the same way: bind a [`tokio::net::TcpListener`]
//! (port 0 in tests), then either `serve(listener, shutdown)` or
//! `spawn(listener)` for a [`Handle`].

pub mod llm;
mod server;
mod stable_hash;
pub mod telegram;

pub use server::{Handle, ServeError};
