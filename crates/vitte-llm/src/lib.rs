//! The LLM side of Vitte's chat pipeline.
//!
//! [`LlmService`] produces one persona reply: it streams text pieces to the
//! caller as they arrive and returns the whole [`Completion`] with its token
//! usage. Behind it, a [`ChatProvider`] makes single requests —
//! [`OpenAiCompatible`] speaks the OpenAI chat-completions protocol that
//! OpenRouter, DeepSeek, OpenAI and local servers share — and the service
//! adds what a chat needs from an unreliable API: per-attempt timeouts,
//! retries with jittered exponential backoff on 429/5xx/timeouts (honouring
//! `Retry-After`), fallback models in order, and a circuit breaker per model,
//! all set by one [`LlmPolicy`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use vitte_domain::SystemClock;
//! use vitte_llm::{ChatMessage, ChatRequest, LlmPolicy, LlmService, ModelChain};
//! use vitte_llm::{OpenAiCompatible, OpenAiConfig, ReplyEvent};
//!
//! let provider = OpenAiCompatible::new(
//!     OpenAiConfig::new("https://openrouter.ai/api/v1")
//!         .with_api_key(std::env::var("LLM_API_KEY")?.into())
//!         .with_header("X-Title", "Vitte"),
//! )?;
//! let models = ModelChain::parse("deepseek/deepseek-chat,openai/gpt-4o-mini")?;
//! let llm = LlmService::new(Arc::new(provider), models, LlmPolicy::default(), Arc::new(SystemClock));
//!
//! let request = ChatRequest::new(vec![ChatMessage::user("Hi!")]);
//! let completion = llm
//!     .reply(&request, |event| match event {
//!         ReplyEvent::Text(piece) => print!("{piece}"),
//!         ReplyEvent::Restart { .. } => println!("\n(starting over)"),
//!     })
//!     .await?;
//! println!("\n{} tokens", completion.usage.completion_tokens);
//! # Ok(())
//! # }
//! ```

mod breaker;
mod chat;
mod error;
mod openai;
mod policy;
mod provider;
mod service;

pub use breaker::BreakerState;
pub use chat::{ChatMessage, ChatRequest, ChatRole, Delta, FinishReason, StreamEnd, Usage};
pub use error::{ConfigError, LlmError, TimeoutPhase};
pub use openai::{OpenAiCompatible, OpenAiConfig};
pub use policy::LlmPolicy;
pub use provider::{ChatProvider, DeltaStream};
pub use service::{Completion, LlmService, ModelChain, ReplyEvent};
