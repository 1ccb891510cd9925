//! Finding the card inside a PNG: a walk over the chunk list that reads the
//! `chara` (V1/V2) and `ccv3` (V3) text chunks and decodes their base64.
//!
//! The walk is written by hand rather than with the `png` crate: that crate
//! hands out text chunks that follow the image data only after decoding the
//! whole image, and card writers conventionally put the card just before
//! `IEND`. Decoding pixels would cost a buffer of width x height x channels
//! for nothing; here only chunk headers are read, every chunk's CRC is
//! checked, and only the card chunk's own text is copied out.

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::CardError;

/// The eight bytes every PNG starts with.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Largest card text we accept from one chunk, after inflating zTXt/iTXt
/// and before base64 decoding. Real cards are tens of kilobytes; big
/// lorebooks reach a few megabytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// Most chunks we walk before giving up. Encoders split image data into
/// chunks of 8-64 KiB, so a 20 MiB picture needs a few thousand at most;
/// the limit only stops files made of millions of empty chunks.
pub const MAX_CHUNKS: usize = 65_536;

/// PNG forbids chunk lengths of 2^31 and above.
const MAX_CHUNK_LEN: usize = 0x7fff_ffff;

/// The text-chunk keywords that carry a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKeyword {
    /// `chara`: V1 or V2 JSON (V3 writers also put a V2 copy here).
    Chara,
    /// `ccv3`: V3 JSON; preferred when both are present.
    Ccv3,
}

impl CardKeyword {
    fn from_keyword(keyword: &[u8]) -> Option<Self> {
        // Readers in the wild compare case-insensitively, so writers vary.
        if keyword.eq_ignore_ascii_case(b"chara") {
            Some(Self::Chara)
        } else if keyword.eq_ignore_ascii_case(b"ccv3") {
            Some(Self::Ccv3)
        } else {
            None
        }
    }
}

impl fmt::Display for CardKeyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Chara => "chara",
            Self::Ccv3 => "ccv3",
        })
    }
}

/// Whether `bytes` start with the PNG signature.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&PNG_SIGNATURE)
}

/// A text chunk that carries a card, not yet decoded.
struct CardChunk<'a> {
    keyword: CardKeyword,
    kind: TextKind,
    /// The chunk's data, keyword included.
    data: &'a [u8],
}

/// The first `chara` and the first `ccv3` chunk of a PNG.
#[derive(Default)]
struct CardChunks<'a> {
    chara: Option<CardChunk<'a>>,
    ccv3: Option<CardChunk<'a>>,
}

/// One chunk as found in the file, CRC already checked.
struct RawChunk<'a> {
    chunk_type: [u8; 4],
    data: &'a [u8],
}

#[derive(Clone, Copy)]
enum TextKind {
    Text,
    Compressed,
    International,
}

/// Walks the PNG's chunks and returns the card's JSON bytes (base64
/// decoded), preferring `ccv3` over `chara`.
pub fn extract_card_json(png: &[u8]) -> Result<(CardKeyword, Vec<u8>), CardError> {
    let found = find_card_chunks(png)?;
    let chunk = found.ccv3.or(found.chara).ok_or(CardError::NoCardChunk)?;
    let text = chunk_text(&chunk)?;
    let json = decode_base64(chunk.keyword, &text)?;
    Ok((chunk.keyword, json))
}

/// Validates the chunk list up to `IEND` and returns the first `chara` and
/// the first `ccv3` text chunk.
fn find_card_chunks(png: &[u8]) -> Result<CardChunks<'_>, CardError> {
    let mut rest = png
        .strip_prefix(&PNG_SIGNATURE)
        .ok_or_else(|| malformed("missing PNG signature"))?;
    let mut found = CardChunks::default();
    for index in 0..MAX_CHUNKS {
        let (RawChunk { chunk_type, data }, after) = next_chunk(rest)?;
        rest = after;
        if index == 0 && &chunk_type != b"IHDR" {
            return Err(malformed("the first chunk is not IHDR"));
        }
        let kind = match &chunk_type {
            b"IEND" => return Ok(found),
            b"tEXt" => TextKind::Text,
            b"zTXt" => TextKind::Compressed,
            b"iTXt" => TextKind::International,
            _ => continue,
        };
        let keyword_bytes = data.split(|&b| b == 0).next().unwrap_or_default();
        let Some(keyword) = CardKeyword::from_keyword(keyword_bytes) else {
            continue;
        };
        let slot = match keyword {
            CardKeyword::Chara => &mut found.chara,
            CardKeyword::Ccv3 => &mut found.ccv3,
        };
        if slot.is_none() {
            *slot = Some(CardChunk {
                keyword,
                kind,
                data,
            });
        }
    }
    Err(malformed(format!("more than {MAX_CHUNKS} chunks")))
}

/// Splits one chunk off the front of `rest`, returning it and what follows
/// it. Checks the length against the file and the CRC.
fn next_chunk(rest: &[u8]) -> Result<(RawChunk<'_>, &[u8]), CardError> {
    let (header, body) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| malformed("the file ends before IEND"))?;
    let [l0, l1, l2, l3, t0, t1, t2, t3] = *header;
    let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
    let chunk_type = [t0, t1, t2, t3];
    if len > MAX_CHUNK_LEN {
        return Err(malformed("a chunk claims an impossible length"));
    }
    if !chunk_type.iter().all(u8::is_ascii_alphabetic) {
        return Err(malformed("a chunk has an invalid type"));
    }
    if body.len() < len.saturating_add(4) {
        return Err(malformed(format!(
            "the file ends inside a {} chunk",
            String::from_utf8_lossy(&chunk_type)
        )));
    }
    let (data, after_data) = body.split_at(len);
    let (crc_bytes, after) = after_data
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("the file ends inside a chunk"))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&chunk_type);
    hasher.update(data);
    if hasher.finalize() != u32::from_be_bytes(*crc_bytes) {
        return Err(malformed(format!(
            "CRC mismatch in a {} chunk",
            String::from_utf8_lossy(&chunk_type)
        )));
    }
    Ok((RawChunk { chunk_type, data }, after))
}

/// The text of a card chunk, inflated when compressed.
fn chunk_text(chunk: &CardChunk<'_>) -> Result<Vec<u8>, CardError> {
    let keyword = chunk.keyword;
    // Every kind starts with "keyword NUL"; the keyword was matched already.
    let after_keyword = match chunk.data.iter().position(|&b| b == 0) {
        Some(nul) => &chunk.data[nul + 1..],
        None => return Err(malformed(format!("the `{keyword}` chunk has no text"))),
    };
    match chunk.kind {
        TextKind::Text => bounded_copy(keyword, after_keyword),
        TextKind::Compressed => match after_keyword.split_first() {
            Some((0, compressed)) => inflate(keyword, compressed),
            _ => Err(malformed(format!(
                "the `{keyword}` zTXt chunk uses an unknown compression method"
            ))),
        },
        TextKind::International => {
            // compression flag, compression method, language tag NUL,
            // translated keyword NUL, text.
            let [flag, method, tail @ ..] = after_keyword else {
                return Err(malformed(format!(
                    "the `{keyword}` iTXt chunk is cut short"
                )));
            };
            let text = skip_nul_terminated(tail)
                .and_then(skip_nul_terminated)
                .ok_or_else(|| malformed(format!("the `{keyword}` iTXt chunk is cut short")))?;
            match (flag, method) {
                (0, _) => bounded_copy(keyword, text),
                (1, 0) => inflate(keyword, text),
                _ => Err(malformed(format!(
                    "the `{keyword}` iTXt chunk uses an unknown compression method"
                ))),
            }
        }
    }
}

fn skip_nul_terminated(bytes: &[u8]) -> Option<&[u8]> {
    let nul = bytes.iter().position(|&b| b == 0)?;
    Some(&bytes[nul + 1..])
}

fn bounded_copy(keyword: CardKeyword, text: &[u8]) -> Result<Vec<u8>, CardError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(CardError::TextTooLarge {
            keyword,
            limit: MAX_TEXT_BYTES,
        });
    }
    Ok(text.to_vec())
}

fn inflate(keyword: CardKeyword, compressed: &[u8]) -> Result<Vec<u8>, CardError> {
    use miniz_oxide::inflate::{TINFLStatus, decompress_to_vec_zlib_with_limit};
    decompress_to_vec_zlib_with_limit(compressed, MAX_TEXT_BYTES).map_err(|e| match e.status {
        TINFLStatus::HasMoreOutput => CardError::TextTooLarge {
            keyword,
            limit: MAX_TEXT_BYTES,
        },
        _ => malformed(format!(
            "the `{keyword}` chunk's compressed text is corrupt"
        )),
    })
}

/// Decodes the base64 text of a card chunk. Padding is optional and ASCII
/// whitespace is skipped, as some writers wrap long lines.
fn decode_base64(keyword: CardKeyword, text: &[u8]) -> Result<Vec<u8>, CardError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    LENIENT
        .decode(&compact)
        .map_err(|source| CardError::BadBase64 { keyword, source })
}

fn malformed(reason: impl Into<String>) -> CardError {
    CardError::MalformedPng(reason.into())
}
