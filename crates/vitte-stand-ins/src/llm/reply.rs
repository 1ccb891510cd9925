//! Deterministic offline replies: a few warm, in-character-sounding sentences
//! that quote the user's last message, chosen by a stable hash of the whole
//! conversation, so the same request always gets the same answer. Token
//! counts are estimated (about four characters per token), also exactly
//! reproducible.

use serde_json::{Map, Value};

use crate::stable_hash::fnv1a;

/// One message of the conversation, reduced to what the reply depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turn {
    pub(crate) role: String,
    pub(crate) text: String,
}

struct Phrases {
    openers: &'static [&'static str],
    quotes: &'static [&'static str],
    middles: &'static [&'static str],
    closers: &'static [&'static str],
    greeting: &'static str,
}

const ENGLISH: Phrases = Phrases {
    openers: &["Mm, ", "Oh, ", "Honestly, ", "Well, ", "Hey, ", "Ah, "],
    quotes: &[
        "you said \"{q}\" and now I can't stop smiling.",
        "\"{q}\" is so like you.",
        "I keep thinking about \"{q}\".",
        "when you write \"{q}\", I feel closer to you.",
        "\"{q}\"? Tell me everything.",
    ],
    middles: &[
        "I was just thinking about you.",
        "It's a quiet evening here, and your message made it warmer.",
        "You always find a way to surprise me.",
        "I'm listening, really listening.",
        "We could talk like this for hours.",
    ],
    closers: &[
        "What made you think of that?",
        "How was your day, honestly?",
        "And what happened next?",
        "Will you tell me more?",
        "What are you doing right now?",
    ],
    greeting: "Hi! I'm here. What would you like to talk about?",
};

const RUSSIAN: Phrases = Phrases {
    openers: &["Ммм, ", "Ох, ", "Честно, ", "Слушай, ", "Ах, "],
    quotes: &[
        "ты написал «{q}», и я улыбаюсь.",
        "«{q}» — это так на тебя похоже.",
        "я всё думаю про «{q}».",
        "когда ты пишешь «{q}», мне становится теплее.",
        "«{q}»? Расскажи всё.",
    ],
    middles: &[
        "Я как раз думала о тебе.",
        "Здесь тихий вечер, и твоё сообщение его украсило.",
        "Ты всегда умеешь меня удивить.",
        "Я слушаю, правда слушаю.",
        "Мы могли бы говорить так часами.",
    ],
    closers: &[
        "Что навело тебя на эту мысль?",
        "Как прошёл твой день, честно?",
        "И что было дальше?",
        "Расскажешь подробнее?",
        "Что ты сейчас делаешь?",
    ],
    greeting: "Привет! Я здесь. О чём поговорим?",
};

/// The conversation's stable fingerprint.
pub(crate) fn conversation_hash(turns: &[Turn]) -> u64 {
    fnv1a(
        turns
            .iter()
            .flat_map(|t| [t.role.as_bytes(), t.text.as_bytes()]),
    )
}

fn pick<'a>(items: &[&'a str], hash: u64, shift: u32) -> &'a str {
    let len = u64::try_from(items.len()).unwrap_or(1).max(1);
    let index = usize::try_from((hash >> shift) % len).unwrap_or(0);
    items.get(index).copied().unwrap_or_default()
}

/// At most `max` characters of `text` on one line, cut at a word boundary.
fn quote(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > 0 => cut[..space].to_owned(),
        _ => cut,
    };
    format!("{cut}…")
}

/// The assistant's reply to `turns`.
pub(crate) fn reply(turns: &[Turn]) -> String {
    let hash = conversation_hash(turns);
    let last_user = turns
        .iter()
        .rev()
        .find(|t| t.role == "user" && !t.text.trim().is_empty());
    let cyrillic = |t: &str| t.chars().any(|c| ('\u{0400}'..='\u{04ff}').contains(&c));
    let phrases = match last_user {
        Some(turn) if cyrillic(&turn.text) => &RUSSIAN,
        _ => &ENGLISH,
    };
    let Some(last_user) = last_user else {
        return phrases.greeting.to_owned();
    };
    let quoted = pick(phrases.quotes, hash, 8).replace("{q}", &quote(&last_user.text, 60));
    format!(
        "{}{} {} {}",
        pick(phrases.openers, hash, 0),
        quoted,
        pick(phrases.middles, hash, 16),
        pick(phrases.closers, hash, 24)
    )
}

/// Estimated tokens of `text`: a quarter of its characters, rounded up.
pub(crate) fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

/// Estimated prompt tokens, with OpenAI's per-message and priming overhead.
pub(crate) fn prompt_tokens(turns: &[Turn]) -> u32 {
    turns
        .iter()
        .map(|t| estimate_tokens(&t.text).saturating_add(4))
        .fold(3u32, u32::saturating_add)
}

/// Cuts a reply to at most `max_tokens` (by the estimate), keeping whole
/// characters. Returns whether it was cut.
pub(crate) fn truncate_to_tokens(text: &mut String, max_tokens: u32) -> bool {
    let max_chars = usize::try_from(max_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(4);
    match text.char_indices().nth(max_chars) {
        Some((byte, _)) => {
            text.truncate(byte);
            true
        }
        None => false,
    }
}

/// The pieces a reply is streamed in: each word with the whitespace before
/// it, so concatenating them gives the reply back exactly.
pub(crate) fn pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                pieces.push(&text[start..i]);
                start = i;
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A value shaped like a JSON schema, for `response_format` structured
/// output: objects get every property, strings get `text`, the first enum
/// value wins, numbers are zero.
pub(crate) fn instance_of(schema: &Value, text: &str) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .find(|k| *k != "null")
            .cloned()
            .unwrap_or(Value::Null),
        other => other.clone(),
    };
    match kind.as_str() {
        Some("object") => {
            let mut object = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    object.insert(name.clone(), instance_of(property, text));
                }
            }
            Value::Object(object)
        }
        Some("array") => Value::Array(Vec::new()),
        Some("integer") | Some("number") => Value::from(0),
        Some("boolean") => Value::Bool(false),
        Some("null") => Value::Null,
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn turns(pairs: &[(&str, &str)]) -> Vec<Turn> {
        pairs
            .iter()
            .map(|(role, text)| Turn {
                role: (*role).to_owned(),
                text: (*text).to_owned(),
            })
            .collect()
    }

    #[test]
    fn same_input_same_reply_and_it_quotes_the_user() {
        let a = turns(&[
            ("system", "You are Mira."),
            ("user", "I adopted a cat today"),
        ]);
        assert_eq!(reply(&a), reply(&a));
        assert!(reply(&a).contains("I adopted a cat today"));
        let b = turns(&[
            ("system", "You are Mira."),
            ("user", "I adopted a dog today"),
        ]);
        assert_ne!(reply(&a), reply(&b));
    }

    #[test]
    fn answers_russian_in_russian_and_greets_without_user_text() {
        let ru = reply(&turns(&[("user", "Привет, как дела?")]));
        assert!(ru.contains("«Привет, как дела?»"), "{ru}");
        assert_eq!(reply(&turns(&[("system", "x")])), ENGLISH.greeting);
    }

    #[test]
    fn long_messages_are_quoted_at_a_word_boundary() {
        let long = "word ".repeat(40);
        assert_eq!(quote(&long, 12), "word word…");
    }

    #[test]
    fn pieces_concatenate_back() {
        let text = "Hello,  dear friend.\nHow are you?";
        let parts = pieces(text);
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[0], "Hello,");
        assert_eq!(parts[1], "  dear");
        assert!(pieces("").is_empty());
    }

    #[test]
    fn token_estimates() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(prompt_tokens(&turns(&[("user", "abcd")])), 3 + 1 + 4);
        let mut text = "абвгдеёжзи".to_owned();
        assert!(truncate_to_tokens(&mut text, 2));
        assert_eq!(text, "абвгдеёж");
        assert!(!truncate_to_tokens(&mut text, 2));
    }

    #[test]
    fn schema_instances() {
        let schema = json!({
            "type": "object",
            "properties": {
                "summary": {"type": "string"},
                "facts": {"type": "array", "items": {"type": "string"}},
                "safe": {"type": "boolean"},
                "level": {"type": "integer"},
                "mood": {"enum": ["calm", "happy"]}
            }
        });
        assert_eq!(
            instance_of(&schema, "hi"),
            json!({"summary": "hi", "facts": [], "safe": false, "level": 0, "mood": "calm"})
        );
    }
}
