//! Builders for test inputs: small PNGs with arbitrary chunks (valid CRCs),
//! card JSON, and a seeded random generator for the fuzz loop.

#![allow(dead_code)] // each test binary uses a different part

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// One chunk with its length and CRC.
pub fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(
        &u32::try_from(data.len())
            .expect("test chunk fits")
            .to_be_bytes(),
    );
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

pub fn b64(data: &[u8]) -> Vec<u8> {
    STANDARD.encode(data).into_bytes()
}

/// `tEXt`: keyword NUL text.
pub fn text_chunk(keyword: &str, text: &[u8]) -> Vec<u8> {
    chunk(b"tEXt", &[keyword.as_bytes(), b"\0", text].concat())
}

/// `zTXt`: keyword NUL method(0) zlib(text).
pub fn ztxt_chunk(keyword: &str, text: &[u8]) -> Vec<u8> {
    chunk(
        b"zTXt",
        &[keyword.as_bytes(), b"\0\0", &zlib(text)].concat(),
    )
}

/// `iTXt`: keyword NUL flag method language NUL translated NUL text.
pub fn itxt_chunk(keyword: &str, text: &[u8], compressed: bool) -> Vec<u8> {
    let body = if compressed {
        zlib(text)
    } else {
        text.to_vec()
    };
    let flag: &[u8] = if compressed { b"\x01\x00" } else { b"\x00\x00" };
    chunk(
        b"iTXt",
        &[keyword.as_bytes(), b"\0", flag, b"en\0", b"\0", &body].concat(),
    )
}

/// A 1x1 grey PNG with `extra` chunks placed after the image data, where
/// card writers put them.
pub fn png_with(extra: &[Vec<u8>]) -> Vec<u8> {
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0];
    let mut out = SIGNATURE.to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &zlib(&[0, 0x80])));
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend(chunk(b"IEND", b""));
    out
}

/// A PNG carrying `json` base64-encoded in a `tEXt` chunk named `keyword`.
pub fn png_card(keyword: &str, json: &str) -> Vec<u8> {
    png_with(&[text_chunk(keyword, &b64(json.as_bytes()))])
}

pub fn v2_card(name: &str) -> String {
    serde_json::json!({
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": name,
            "description": "{{char}} keeps a lighthouse.",
            "personality": "calm",
            "scenario": "A stormy night.",
            "first_mes": "Welcome, {{user}}.",
            "mes_example": "<START>\n{{user}}: hi\n{{char}}: hello",
            "creator_notes": "",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": ["Oh, it's you."],
            "character_book": {"extensions": {}, "entries": [
                {"keys": ["lamp"], "content": "The lamp is old.", "extensions": {},
                 "enabled": true, "insertion_order": 1}
            ]},
            "tags": ["sea"],
            "creator": "tests",
            "character_version": "1",
            "extensions": {}
        }
    })
    .to_string()
}

pub fn v3_card(name: &str) -> String {
    serde_json::json!({
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            "name": name,
            "description": "A V3 character.",
            "personality": "", "scenario": "", "first_mes": "Hello.", "mes_example": "",
            "creator_notes": "", "system_prompt": "", "post_history_instructions": "",
            "alternate_greetings": [], "tags": [], "creator": "", "character_version": "",
            "extensions": {},
            "group_only_greetings": ["Hello, everyone."],
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]
        }
    })
    .to_string()
}

/// SplitMix64: a tiny, seeded, reproducible generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` for test purposes; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
