//! What goes to a chat model and what comes back from one attempt: the
//! request, and the events of a streamed reply.

use serde::Serialize;

/// Who wrote a message of the prompt, in the roles every chat API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions the model follows (persona, rules, memory).
    System,
    /// What the person wrote.
    User,
    /// What the model (the persona) answered earlier.
    Assistant,
}

/// One message of the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Author, which tells the model how to read the text.
    pub role: ChatRole,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }
}

/// A prompt and its sampling settings; the model is chosen per attempt by
/// the service, so it is not part of the request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens, so a runaway reply cannot cost more
    /// than planned; `None` leaves the provider's default.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None` leaves the provider's default.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request with the given messages and provider defaults for the rest.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            max_tokens: None,
            temperature: None,
        }
    }
}

/// One event of a streamed reply, as a provider yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// The next piece of the reply text (never empty).
    Text(String),
    /// The reply is complete; always the last event of a successful stream.
    /// A stream that ends without it was cut off.
    Done(StreamEnd),
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamEnd {
    /// Why generation stopped, when the provider said.
    pub finish_reason: Option<FinishReason>,
    /// Tokens spent, when the provider reported them.
    pub usage: Option<Usage>,
}

/// Why the model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end of the reply.
    Stop,
    /// The `max_tokens` limit cut the reply; the text may end mid-sentence.
    Length,
    /// The provider's moderation removed or stopped the reply.
    ContentFilter,
    /// Anything else the provider reported, kept verbatim for the logs.
    Other(String),
}

impl FinishReason {
    /// Reads the `finish_reason` of the OpenAI wire format.
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" | "eos" | "end_turn" => Self::Stop,
            "length" | "max_tokens" => Self::Length,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Token counts as a provider reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}
