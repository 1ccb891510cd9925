//! Import of personas from Character Card files, the format character
//! editors (SillyTavern, RisuAI, chub.ai and others) exchange characters in.
//!
//! [`parse_card`] takes the bytes of a file and accepts:
//!
//! - a JSON card: V1 (flat `name`, `description`, `personality`, `scenario`,
//!   `first_mes`, `mes_example`), V2 (`"spec": "chara_card_v2"`, fields under
//!   `data`) or V3 (`"spec": "chara_card_v3"`);
//! - a PNG with the card's JSON, base64-encoded, in a `tEXt`, `zTXt` or
//!   `iTXt` chunk with keyword `chara` (V1/V2) or `ccv3` (V3; preferred when
//!   both are present). The PNG itself becomes the persona's picture.
//!
//! Placeholders stay in the card: `{{char}}` and `{{user}}` are substituted
//! when a prompt is built, because the user's name is only known then. The
//! older spellings the specs also accept (`<BOT>`, `<CHAR>`, `<USER>`, any
//! letter case) are rewritten on import to [`CHAR_PLACEHOLDER`] and
//! [`USER_PLACEHOLDER`], so prompt building needs to know only one spelling.
//!
//! Files are untrusted: sizes are capped ([`MAX_FILE_BYTES`],
//! [`MAX_TEXT_BYTES`], [`MAX_CHUNKS`]) and no input makes the parser panic.

mod card;
mod error;
mod lenient;
mod png;
mod slug;

use vitte_domain::ids::PersonaSlug;
use vitte_domain::model::{PersonaCard, Picture};

pub use error::CardError;
pub use png::{CardKeyword, MAX_CHUNKS, MAX_TEXT_BYTES};

/// Largest file we read: big enough for a high-resolution portrait with a
/// large lorebook, small enough that a hostile upload cannot hog memory.
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;

/// How cards name the character in their texts; replaced by the persona's
/// name when a prompt is built.
pub const CHAR_PLACEHOLDER: &str = "{{char}}";

/// How cards name the person chatting; replaced by the user's name when a
/// prompt is built.
pub const USER_PLACEHOLDER: &str = "{{user}}";

/// Which version of the format a card was written in; kept so an import
/// report can say what was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardSpec {
    /// The original flat format (no `spec` field).
    V1,
    /// `chara_card_v2`.
    V2,
    /// `chara_card_v3`.
    V3,
}

impl CardSpec {
    /// The spec's name as cards write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "chara_card_v1",
            Self::V2 => "chara_card_v2",
            Self::V3 => "chara_card_v3",
        }
    }
}

/// A card read from a file, ready to be stored as a persona.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedCard {
    /// Everything the card says that the product uses.
    pub card: PersonaCard,
    /// The PNG the card came in, unchanged, to use as the persona's picture;
    /// `None` for JSON cards.
    pub picture: Option<Picture>,
    /// A slug made from the card's name (transliterated when Cyrillic), for
    /// the importer to use unless the operator picks another or it is taken.
    pub suggested_slug: PersonaSlug,
    /// The format version the card was written in.
    pub spec: CardSpec,
}

/// Reads a character card from the bytes of a PNG or JSON file.
///
/// A PNG is recognised by its signature; anything else must be a JSON object
/// (an optional UTF-8 byte order mark and leading whitespace are allowed).
pub fn parse_card(bytes: &[u8]) -> Result<ImportedCard, CardError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(CardError::TooLarge {
            size: bytes.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let (card, spec, picture) = if png::is_png(bytes) {
        let (_keyword, json) = png::extract_card_json(bytes)?;
        let (card, spec) = card::parse_json(&json)?;
        let picture = Picture {
            mime: "image/png".to_owned(),
            bytes: bytes.to_vec(),
        };
        (card, spec, Some(picture))
    } else if card::looks_like_json_object(bytes) {
        let (card, spec) = card::parse_json(bytes)?;
        (card, spec, None)
    } else {
        return Err(CardError::NotACard);
    };
    Ok(ImportedCard {
        suggested_slug: slug::suggest(&card.name),
        card,
        picture,
        spec,
    })
}
