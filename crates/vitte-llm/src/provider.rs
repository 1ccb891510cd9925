//! The port to a chat-model API: one streamed attempt, no retries.

use futures::stream::BoxStream;

use crate::chat::{ChatRequest, Delta};
use crate::error::LlmError;

/// The stream of one attempt: text pieces, then [`Delta::Done`]; an `Err` item
/// or an end without `Done` means the attempt failed.
pub type DeltaStream = BoxStream<'static, Result<Delta, LlmError>>;

/// A chat-model API. Implementations make exactly one request per call and
/// classify failures into [`LlmError`]; timeouts, retries and fallbacks are
/// the job of [`crate::LlmService`], so they are written once.
#[async_trait::async_trait]
pub trait ChatProvider: Send + Sync {
    /// Starts generating a reply with `model`. Resolves once the provider has
    /// accepted the request (or refused it); the reply then arrives on the
    /// returned stream.
    async fn stream(&self, model: &str, request: &ChatRequest) -> Result<DeltaStream, LlmError>;
}
