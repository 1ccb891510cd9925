//! Why a file could not be imported as a character card. Every message is
//! meant to be shown to the operator who picked the file, so it names the
//! problem in the file rather than in this crate.

use crate::png::CardKeyword;

/// A file was refused as a character card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// Neither a PNG signature nor a JSON object at the start of the file.
    #[error("not a character card: expected a PNG image or a JSON object")]
    NotACard,

    /// The file is larger than we are willing to read.
    #[error("the file is {size} bytes; character cards over {limit} bytes are refused")]
    TooLarge {
        /// Size of the offered file.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },

    /// The PNG's chunk structure is broken (truncated, bad CRC, oversized chunk...).
    #[error("damaged PNG: {0}")]
    MalformedPng(String),

    /// A sound PNG that carries no `chara` or `ccv3` text chunk: an ordinary
    /// picture rather than a character card.
    #[error("the PNG holds no character card (no `chara` or `ccv3` text chunk)")]
    NoCardChunk,

    /// The card's text chunk is bigger than we are willing to inflate or decode.
    #[error("the `{keyword}` text chunk exceeds {limit} bytes")]
    TextTooLarge {
        /// The chunk's keyword.
        keyword: CardKeyword,
        /// The limit it broke.
        limit: usize,
    },

    /// The card's text chunk is not base64.
    #[error("the `{keyword}` text chunk is not valid base64: {source}")]
    BadBase64 {
        /// The chunk's keyword.
        keyword: CardKeyword,
        /// What the decoder objected to.
        source: base64::DecodeError,
    },

    /// The card (from a file or from a PNG chunk) is not valid JSON, or not
    /// shaped like a card at all.
    #[error("the card is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),

    /// The `spec` field names a format we do not know.
    #[error("unknown card spec {0:?}; expected chara_card_v2 or chara_card_v3")]
    UnknownSpec(String),

    /// The card has an empty or missing `name`, which every spec requires and
    /// which the persona's slug is made from.
    #[error("the card has no name")]
    MissingName,
}
