//! Reading a card's JSON (V1 flat fields, or V2/V3 under `data`) into a
//! [`PersonaCard`].
//!
//! What is kept: the V2 fields the product uses, and the lorebook entries'
//! keys, content and switches. What is read but not kept: `character_version`,
//! `extensions`, V3's `assets`, `nickname`, `group_only_greetings`, `source`
//! and dates, and lorebook entries' `secondary_keys`/`selective` (an entry
//! then triggers on its primary keys alone). V3 entries with `use_regex` keep
//! their patterns as plain keys, which match only literally, and lose
//! `constant`, as the V3 spec asks.

use std::collections::BTreeMap;

use serde::Deserialize;
use vitte_domain::model::{LoreEntry, PersonaCard};

use crate::CardSpec;
use crate::error::CardError;
use crate::lenient::{Flag, Number, Object, ObjectList, Text, TextList};

/// The top level of a card file. V1 cards keep their fields here; V2/V3
/// cards put them under `data` (and often mirror the V1 ones here too).
#[derive(Deserialize, Default)]
#[serde(default, expecting = "a character card (a JSON object)")]
struct RawCard {
    spec: Option<Text>,
    data: Object<RawData>,
    name: Text,
    description: Text,
    personality: Text,
    scenario: Text,
    first_mes: Text,
    mes_example: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawData {
    name: Text,
    description: Text,
    personality: Text,
    scenario: Text,
    first_mes: Text,
    mes_example: Text,
    creator_notes: Text,
    creator_notes_multilingual: Object<BTreeMap<String, Text>>,
    system_prompt: Text,
    post_history_instructions: Text,
    alternate_greetings: TextList,
    character_book: Object<RawBook>,
    tags: TextList,
    creator: Text,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBook {
    entries: ObjectList<RawEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEntry {
    keys: TextList,
    content: Text,
    enabled: Flag,
    insertion_order: Number,
    case_sensitive: Flag,
    constant: Flag,
    use_regex: Flag,
}

/// Parses card JSON and maps it onto the domain's card.
pub fn parse_json(json: &[u8]) -> Result<(PersonaCard, CardSpec), CardError> {
    let json = without_bom(json);
    // Derived structs also accept a JSON array (fields by position); a card
    // is always an object.
    if !looks_like_json_object(json) {
        return Err(CardError::InvalidJson(serde::de::Error::custom(
            "a card must be a JSON object",
        )));
    }
    let raw: RawCard = serde_json::from_slice(json)?;
    let spec = match raw.spec.as_ref().map(|t| t.0.trim()) {
        None | Some("chara_card_v1") => CardSpec::V1,
        Some("chara_card_v2") => CardSpec::V2,
        Some("chara_card_v3") => CardSpec::V3,
        Some(other) => return Err(CardError::UnknownSpec(other.chars().take(64).collect())),
    };
    let data = match (spec, raw.data.0) {
        (CardSpec::V2 | CardSpec::V3, Some(data)) => data,
        // V1, or a V2/V3 card whose `data` is missing: the flat fields are
        // all there is.
        _ => RawData {
            name: raw.name,
            description: raw.description,
            personality: raw.personality,
            scenario: raw.scenario,
            first_mes: raw.first_mes,
            mes_example: raw.mes_example,
            ..RawData::default()
        },
    };
    Ok((to_persona_card(data)?, spec))
}

/// Whether the text, after an optional byte order mark and whitespace,
/// opens a JSON object.
pub fn looks_like_json_object(bytes: &[u8]) -> bool {
    without_bom(bytes).iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

fn to_persona_card(data: RawData) -> Result<PersonaCard, CardError> {
    let name = plain(&data.name.0);
    if name.is_empty() {
        return Err(CardError::MissingName);
    }
    let creator_notes = if data.creator_notes.0.trim().is_empty() {
        multilingual_notes(data.creator_notes_multilingual.0.unwrap_or_default())
    } else {
        data.creator_notes.0
    };
    Ok(PersonaCard {
        name,
        description: prompt_text(&data.description.0),
        personality: prompt_text(&data.personality.0),
        scenario: prompt_text(&data.scenario.0),
        first_message: prompt_text(&data.first_mes.0),
        example_messages: prompt_text(&data.mes_example.0),
        system_prompt: prompt_text(&data.system_prompt.0),
        post_history_instructions: prompt_text(&data.post_history_instructions.0),
        alternate_greetings: data
            .alternate_greetings
            .0
            .iter()
            .map(|g| prompt_text(g))
            .filter(|g| !g.is_empty())
            .collect(),
        lorebook: data
            .character_book
            .0
            .map(|book| {
                book.entries
                    .0
                    .into_iter()
                    .filter_map(to_lore_entry)
                    .collect()
            })
            .unwrap_or_default(),
        tags: tags(data.tags.0),
        creator: plain(&data.creator.0),
        creator_notes: plain(&creator_notes),
    })
}

/// V3 lets notes come per language; we show one text, preferring English
/// as the spec's fallback language, else the first language by code.
fn multilingual_notes(mut notes: BTreeMap<String, Text>) -> String {
    match notes.remove("en") {
        Some(en) => en.0,
        None => notes.into_values().next().map(|t| t.0).unwrap_or_default(),
    }
}

fn to_lore_entry(raw: RawEntry) -> Option<LoreEntry> {
    let content = prompt_text(strip_decorators(&raw.content.0));
    // An entry with nothing to insert can never matter.
    if content.is_empty() {
        return None;
    }
    let use_regex = raw.use_regex.0.unwrap_or(false);
    Some(LoreEntry {
        keys: raw
            .keys
            .0
            .iter()
            .map(|k| plain(k))
            .filter(|k| !k.is_empty())
            .collect(),
        content,
        enabled: raw.enabled.0.unwrap_or(true),
        case_sensitive: raw.case_sensitive.0.unwrap_or(false),
        constant: raw.constant.0.unwrap_or(false) && !use_regex,
        insertion_order: raw.insertion_order.to_i32_or(0),
    })
}

/// Tags trimmed, empty ones dropped, and repeats (ignoring case) removed.
fn tags(raw: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    raw.iter()
        .map(|t| plain(t))
        .filter(|t| !t.is_empty() && seen.insert(t.to_lowercase()))
        .collect()
}

/// V3 decorators (`@@depth 4` lines opening an entry's content) steer
/// features we do not implement; the spec asks that they never reach the prompt.
fn strip_decorators(content: &str) -> &str {
    let mut rest = content.trim_start();
    while rest.starts_with("@@") {
        rest = rest
            .split_once('\n')
            .map_or("", |(_, after)| after)
            .trim_start();
    }
    rest
}

/// Trimmed, without NUL characters (PostgreSQL's `text` cannot hold them).
fn plain(s: &str) -> String {
    s.trim().replace('\0', "")
}

/// A text that goes into prompts: [`plain`], with every spelling of the
/// card placeholders rewritten to the canonical [`crate::CHAR_PLACEHOLDER`]
/// and [`crate::USER_PLACEHOLDER`].
fn prompt_text(s: &str) -> String {
    normalize_placeholders(&plain(s))
}

/// Spellings the specs accept, matched without regard to case.
const PLACEHOLDER_SPELLINGS: [(&str, &str); 5] = [
    ("{{char}}", crate::CHAR_PLACEHOLDER),
    ("{{user}}", crate::USER_PLACEHOLDER),
    ("<bot>", crate::CHAR_PLACEHOLDER),
    ("<char>", crate::CHAR_PLACEHOLDER),
    ("<user>", crate::USER_PLACEHOLDER),
];

fn normalize_placeholders(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(['{', '<']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // Spellings are ASCII, so a byte-prefix match ends on a char boundary.
        let hit = PLACEHOLDER_SPELLINGS.iter().find(|(spelling, _)| {
            rest.as_bytes()
                .get(..spelling.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(spelling.as_bytes()))
        });
        match hit {
            Some((spelling, canonical)) => {
                out.push_str(canonical);
                rest = &rest[spelling.len()..];
            }
            None => {
                out.push_str(&rest[..1]);
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_normalized_case_insensitively() {
        assert_eq!(
            normalize_placeholders("<BOT> greets <User>; {{Char}} and {{USER}} <START> {x} <"),
            "{{char}} greets {{user}}; {{char}} and {{user}} <START> {x} <"
        );
        assert_eq!(
            normalize_placeholders("Привет, {{user}}! {"),
            "Привет, {{user}}! {"
        );
    }

    #[test]
    fn leading_decorators_are_stripped() {
        assert_eq!(
            strip_decorators("@@depth 4\n@@@instruct_depth 4\n\nText @@ stays"),
            "Text @@ stays"
        );
        assert_eq!(strip_decorators("@@only_decorator"), "");
        assert_eq!(strip_decorators("plain"), "plain");
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated() {
        let raw = vec![
            " Cozy".to_owned(),
            "cozy ".to_owned(),
            "".to_owned(),
            "Slice of life".to_owned(),
        ];
        assert_eq!(tags(raw), ["Cozy", "Slice of life"]);
    }

    #[test]
    fn nul_characters_are_removed() {
        assert_eq!(plain(" a\0b "), "ab");
    }
}
