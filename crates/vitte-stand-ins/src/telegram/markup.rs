//! Formatted text the way Telegram parses it: `parse_mode` HTML, MarkdownV2
//! and legacy Markdown, producing the plain text and its entities (offsets in
//! UTF-16 code units), or the exact error text the Bot API returns after
//! "Bad Request: can't parse entities: ".
//!
//! The parsers follow the published behaviour of Telegram's own parser
//! (TDLib), including its leniencies: a bare `&` that starts no entity is kept
//! as is, while any `<` that does not open a supported tag is an error.

use serde::Serialize;

/// One formatting span of a message, as the Bot API's `MessageEntity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MessageEntity {
    #[serde(rename = "type")]
    pub(crate) kind: EntityKind,
    pub(crate) offset: usize,
    pub(crate) length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) custom_emoji_id: Option<String>,
}

/// The entity types the parsers can produce, with their Bot API names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntityKind {
    Blockquote,
    Pre,
    Code,
    TextLink,
    BotCommand,
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    CustomEmoji,
}

impl MessageEntity {
    fn new(kind: EntityKind, offset: usize, length: usize) -> Self {
        Self {
            kind,
            offset,
            length,
            url: None,
            language: None,
            custom_emoji_id: None,
        }
    }
}

/// Text after parsing, ready to be stored in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Formatted {
    pub(crate) text: String,
    pub(crate) entities: Vec<MessageEntity>,
}

/// The `parse_mode` values the Bot API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseMode {
    Html,
    MarkdownV2,
    Markdown,
}

impl ParseMode {
    /// Telegram matches the mode name case-insensitively; `None` is plain text.
    pub(crate) fn from_param(raw: Option<&str>) -> Result<Option<Self>, String> {
        match raw.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(None),
            Some("html") => Ok(Some(Self::Html)),
            Some("markdownv2") => Ok(Some(Self::MarkdownV2)),
            Some("markdown") => Ok(Some(Self::Markdown)),
            Some(_) => Err("unsupported parse_mode".into()),
        }
    }
}

/// Parses `raw` in `mode`, then trims surrounding whitespace as Telegram does.
/// The error is the text that follows "can't parse entities: ".
pub(crate) fn parse(raw: &str, mode: Option<ParseMode>) -> Result<Formatted, String> {
    let parsed = match mode {
        None => Formatted {
            text: raw.to_owned(),
            entities: Vec::new(),
        },
        Some(ParseMode::Html) => parse_html(raw)?,
        Some(ParseMode::MarkdownV2) => parse_markdown_v2(raw)?,
        Some(ParseMode::Markdown) => parse_markdown(raw)?,
    };
    Ok(trim(parsed))
}

/// Length as Telegram limits it: in Unicode code points.
pub(crate) fn char_len(text: &str) -> usize {
    text.chars().count()
}

fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

fn trim(formatted: Formatted) -> Formatted {
    let Formatted { text, entities } = formatted;
    let trimmed_start = text.trim_start();
    let removed_before = utf16_len(&text[..text.len() - trimmed_start.len()]);
    let kept = trimmed_start.trim_end();
    let kept_len = utf16_len(kept);
    let entities = entities
        .into_iter()
        .filter_map(|mut e| {
            let start = e.offset.saturating_sub(removed_before);
            let end = (e.offset + e.length)
                .saturating_sub(removed_before)
                .min(kept_len);
            (end > start).then(|| {
                e.offset = start;
                e.length = end - start;
                e
            })
        })
        .collect();
    Formatted {
        text: kept.to_owned(),
        entities,
    }
}

fn sort_entities(entities: &mut [MessageEntity]) {
    entities.sort_by(|a, b| {
        a.offset
            .cmp(&b.offset)
            .then(b.length.cmp(&a.length))
            .then(a.kind.cmp(&b.kind))
    });
}

/// A byte of `s` at `i`, or 0 past the end (the parsers were written against
/// NUL-terminated strings and rely on it).
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0x0b)
}

/// Accounts for one byte of UTF-8 text in a UTF-16 offset.
fn utf16_step(c: u8) -> usize {
    match c {
        0x80..=0xbf => 0,
        0xf0..=0xff => 2,
        _ => 1,
    }
}

/// Checks a link the way Telegram does before making it a `text_link`;
/// `None` drops the entity (Telegram silently ignores bad links).
fn checked_link(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    let candidate = if url.contains("://") || url.starts_with("tg:") || url.starts_with("ton:") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let parsed = url::Url::parse(&candidate).ok()?;
    match parsed.scheme() {
        "http" | "https" => parsed.host_str().filter(|h| !h.is_empty())?,
        "tg" | "ton" => "",
        _ => return None,
    };
    Some(candidate)
}

/// Decodes an HTML character reference starting at `pos` (`&`). Returns the
/// character and the position after it, or `None` when it is not one and the
/// `&` stays literal.
fn decode_html_entity(s: &[u8], pos: usize) -> Option<Result<(char, usize), String>> {
    let mut end = pos + 1;
    let code: u64;
    if at(s, end) == b'#' {
        end += 1;
        let mut value: u64 = 0;
        if at(s, end) == b'x' {
            end += 1;
            while at(s, end).is_ascii_hexdigit() {
                value = value.saturating_mul(16) + u64::from((at(s, end) as char).to_digit(16)?);
                end += 1;
            }
        } else {
            while at(s, end).is_ascii_digit() {
                value = value.saturating_mul(10) + u64::from(at(s, end) - b'0');
                end += 1;
            }
        }
        if value == 0 || value >= 0x10ffff || end - pos >= 10 {
            return None;
        }
        code = value;
    } else {
        while at(s, end).is_ascii_alphabetic() {
            end += 1;
        }
        code = match &s[pos + 1..end] {
            b"lt" => u64::from(b'<'),
            b"gt" => u64::from(b'>'),
            b"amp" => u64::from(b'&'),
            b"quot" => u64::from(b'"'),
            _ => return None,
        };
    }
    if at(s, end) == b';' {
        end += 1;
    }
    let decoded = u32::try_from(code)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| {
            "Text contains invalid Unicode characters after decoding HTML entities, check for \
         unmatched surrogate code units"
                .to_owned()
        });
    Some(decoded.map(|c| (c, end)))
}

const HTML_TAGS: &[&str] = &[
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
];

struct OpenTag {
    name: String,
    argument: String,
    offset: usize,
    text_pos: usize,
}

/// Parses `parse_mode=HTML`.
pub(crate) fn parse_html(input: &str) -> Result<Formatted, String> {
    let s = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut entities: Vec<MessageEntity> = Vec::new();
    let mut open: Vec<OpenTag> = Vec::new();
    let mut offset = 0usize;
    let mut i = 0usize;
    while i < s.len() {
        let c = s[i];
        if c == b'&'
            && let Some(decoded) = decode_html_entity(s, i)
        {
            let (ch, next) = decoded?;
            offset += ch.len_utf16();
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            i = next;
            continue;
        }
        if c != b'<' {
            offset += utf16_step(c);
            out.push(c);
            i += 1;
            continue;
        }
        let begin = i;
        i += 1;
        if at(s, i) != b'/' {
            while !is_space(at(s, i)) && at(s, i) != b'>' {
                i += 1;
            }
            if at(s, i) == 0 {
                return Err(format!("Unclosed start tag at byte offset {begin}"));
            }
            let name = String::from_utf8_lossy(&s[begin + 1..i]).to_lowercase();
            if !HTML_TAGS.contains(&name.as_str()) {
                return Err(format!(
                    "Unsupported start tag \"{name}\" at byte offset {begin}"
                ));
            }
            let mut argument = String::new();
            while at(s, i) != b'>' {
                while at(s, i) != 0 && is_space(at(s, i)) {
                    i += 1;
                }
                if at(s, i) == b'>' {
                    break;
                }
                let attr_begin = i;
                while !is_space(at(s, i)) && at(s, i) != b'=' {
                    i += 1;
                }
                let attr_name = String::from_utf8_lossy(&s[attr_begin..i]).into_owned();
                if attr_name.is_empty() {
                    return Err(format!(
                        "Empty attribute name in the tag \"{name}\" at byte offset {begin}"
                    ));
                }
                while at(s, i) != 0 && is_space(at(s, i)) {
                    i += 1;
                }
                if at(s, i) != b'=' {
                    return Err(format!(
                        "Expected equal sign in declaration of an attribute of the tag \
                         \"{name}\" at byte offset {begin}"
                    ));
                }
                i += 1;
                while at(s, i) != 0 && is_space(at(s, i)) {
                    i += 1;
                }
                if at(s, i) == 0 {
                    return Err(format!(
                        "Unclosed start tag \"{name}\" at byte offset {begin}"
                    ));
                }
                let value = if at(s, i) != b'\'' && at(s, i) != b'"' {
                    let token_begin = i;
                    while at(s, i).is_ascii_alphanumeric() || matches!(at(s, i), b'.' | b'-') {
                        i += 1;
                    }
                    if !is_space(at(s, i)) && at(s, i) != b'>' {
                        return Err(format!(
                            "Unexpected end of name token at byte offset {token_begin}"
                        ));
                    }
                    String::from_utf8_lossy(&s[token_begin..i]).to_lowercase()
                } else {
                    let quote = at(s, i);
                    i += 1;
                    let mut value: Vec<u8> = Vec::new();
                    while at(s, i) != quote && at(s, i) != 0 {
                        if at(s, i) == b'&'
                            && let Some(decoded) = decode_html_entity(s, i)
                        {
                            let (ch, next) = decoded?;
                            let mut buf = [0u8; 4];
                            value.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            i = next;
                            continue;
                        }
                        value.push(at(s, i));
                        i += 1;
                    }
                    if at(s, i) == quote {
                        i += 1;
                    }
                    String::from_utf8_lossy(&value).into_owned()
                };
                if at(s, i) == 0 {
                    return Err(format!("Unclosed start tag at byte offset {begin}"));
                }
                match (name.as_str(), attr_name.as_str()) {
                    ("a", "href") | ("tg-emoji", "emoji-id") => argument = value,
                    ("code", "class") if value.starts_with("language-") => {
                        argument = value["language-".len()..].to_owned();
                    }
                    ("span", "class") if value.starts_with("tg-") => {
                        argument = value["tg-".len()..].to_owned();
                    }
                    _ => {}
                }
            }
            if name == "span" && argument != "spoiler" {
                return Err(format!(
                    "Tag \"span\" must have class \"tg-spoiler\" at byte offset {begin}"
                ));
            }
            open.push(OpenTag {
                name,
                argument,
                offset,
                text_pos: out.len(),
            });
            i += 1;
        } else {
            let Some(top) = open.pop() else {
                return Err(format!("Unexpected end tag at byte offset {begin}"));
            };
            while !is_space(at(s, i)) && at(s, i) != b'>' {
                i += 1;
            }
            let end_name = String::from_utf8_lossy(&s[begin + 2..i]).to_lowercase();
            while is_space(at(s, i)) && at(s, i) != 0 {
                i += 1;
            }
            if at(s, i) != b'>' {
                return Err(format!("Unclosed end tag at byte offset {begin}"));
            }
            if !end_name.is_empty() && end_name != top.name {
                return Err(format!(
                    "Unmatched end tag at byte offset {begin}, expected \"</{}>\", found \"</{end_name}>\"",
                    top.name
                ));
            }
            i += 1;
            if offset > top.offset {
                close_html_entity(&mut entities, top, offset, &out)?;
            }
        }
    }
    if let Some(top) = open.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag {}",
            top.name
        ));
    }
    for entity in &mut entities {
        if entity.kind == EntityKind::Code {
            entity.language = None;
        }
    }
    sort_entities(&mut entities);
    let text = String::from_utf8(out).map_err(|_| "Strings must be encoded in UTF-8".to_owned())?;
    Ok(Formatted { text, entities })
}

fn close_html_entity(
    entities: &mut Vec<MessageEntity>,
    tag: OpenTag,
    offset: usize,
    out: &[u8],
) -> Result<(), String> {
    let length = offset - tag.offset;
    let entity = |kind| MessageEntity::new(kind, tag.offset, length);
    match tag.name.as_str() {
        "i" | "em" => entities.push(entity(EntityKind::Italic)),
        "b" | "strong" => entities.push(entity(EntityKind::Bold)),
        "s" | "strike" | "del" => entities.push(entity(EntityKind::Strikethrough)),
        "u" | "ins" => entities.push(entity(EntityKind::Underline)),
        "tg-spoiler" | "span" => entities.push(entity(EntityKind::Spoiler)),
        "blockquote" => entities.push(entity(EntityKind::Blockquote)),
        "tg-emoji" => {
            let id = tag.argument.parse::<i64>().ok().filter(|id| *id != 0);
            let Some(id) = id else {
                return Err("Invalid custom emoji identifier specified".into());
            };
            let mut e = entity(EntityKind::CustomEmoji);
            e.custom_emoji_id = Some(id.to_string());
            entities.push(e);
        }
        "a" => {
            let url = if tag.argument.is_empty() {
                String::from_utf8_lossy(&out[tag.text_pos..]).into_owned()
            } else {
                tag.argument
            };
            if let Some(url) = checked_link(&url) {
                let mut e = entity(EntityKind::TextLink);
                e.url = Some(url);
                entities.push(e);
            }
        }
        "pre" => match entities.last_mut() {
            // <pre><code class="language-x">…</code></pre> is one pre block.
            Some(last)
                if last.kind == EntityKind::Code
                    && last.offset == tag.offset
                    && last.length == length
                    && last.language.is_some() =>
            {
                last.kind = EntityKind::Pre;
            }
            _ => entities.push(entity(EntityKind::Pre)),
        },
        "code" => {
            let language = (!tag.argument.is_empty()).then_some(tag.argument);
            match entities.last_mut() {
                Some(last)
                    if last.kind == EntityKind::Pre
                        && last.offset == tag.offset
                        && last.length == length
                        && language.is_some() =>
                {
                    last.language = language;
                }
                _ => {
                    let mut e = entity(EntityKind::Code);
                    e.language = language;
                    entities.push(e);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Entity kinds of MarkdownV2 while open, named as Telegram's errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MdKind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Code,
    Pre,
    PreCode,
    TextUrl,
    CustomEmoji,
    BlockQuote,
}

impl MdKind {
    fn name(self) -> &'static str {
        match self {
            Self::Bold => "Bold",
            Self::Italic => "Italic",
            Self::Underline => "Underline",
            Self::Strikethrough => "Strikethrough",
            Self::Spoiler => "Spoiler",
            Self::Code => "Code",
            Self::Pre => "Pre",
            Self::PreCode => "PreCode",
            Self::TextUrl => "TextUrl",
            Self::CustomEmoji => "CustomEmoji",
            Self::BlockQuote => "BlockQuote",
        }
    }
}

struct OpenMd {
    kind: MdKind,
    argument: String,
    offset: usize,
    byte_offset: usize,
    text_pos: usize,
}

fn reserved(c: u8) -> String {
    format!(
        "Character '{}' is reserved and must be escaped with the preceding '\\'",
        c as char
    )
}

/// Reads a `(url)` after a closing `]`, honouring backslash escapes; `i` is at
/// the `]` and is left at the `)`.
fn markdown_v2_url(s: &[u8], i: &mut usize) -> Option<String> {
    *i += 2;
    let mut url = Vec::new();
    while *i < s.len() && s[*i] != b')' {
        if s[*i] == b'\\' && (1..=126).contains(&at(s, *i + 1)) {
            url.push(s[*i + 1]);
            *i += 2;
            continue;
        }
        url.push(s[*i]);
        *i += 1;
    }
    (at(s, *i) == b')').then(|| String::from_utf8_lossy(&url).into_owned())
}

/// Parses `parse_mode=MarkdownV2`.
pub(crate) fn parse_markdown_v2(input: &str) -> Result<Formatted, String> {
    let s = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut entities: Vec<MessageEntity> = Vec::new();
    let mut open: Vec<OpenMd> = Vec::new();
    let mut offset = 0usize;
    let mut have_blockquote = false;
    let mut i = 0usize;
    while i < s.len() {
        let c = s[i];
        if c == b'\\' && (1..=126).contains(&at(s, i + 1)) {
            i += 1;
            offset += 1;
            out.push(s[i]);
            i += 1;
            continue;
        }
        let in_code = matches!(
            open.last().map(|o| o.kind),
            Some(MdKind::Code | MdKind::Pre | MdKind::PreCode)
        );
        let is_reserved = if in_code {
            c == b'`'
        } else {
            b"_*[]()~`>#+-=|{}.!\n".contains(&c)
        };
        if !is_reserved {
            offset += utf16_step(c);
            out.push(c);
            i += 1;
            continue;
        }
        let is_end = open.last().is_some_and(|top| {
            if have_blockquote && c == b'\n' && (i + 1 == s.len() || s[i + 1] != b'>') {
                return true;
            }
            match top.kind {
                MdKind::Bold => c == b'*',
                MdKind::Italic => c == b'_' && at(s, i + 1) != b'_',
                MdKind::Code => c == b'`',
                MdKind::Pre | MdKind::PreCode => {
                    c == b'`' && at(s, i + 1) == b'`' && at(s, i + 2) == b'`'
                }
                MdKind::TextUrl | MdKind::CustomEmoji => c == b']',
                MdKind::Underline => c == b'_' && at(s, i + 1) == b'_',
                MdKind::Strikethrough => c == b'~',
                MdKind::Spoiler => c == b'|' && at(s, i + 1) == b'|',
                MdKind::BlockQuote => false,
            }
        });
        if !is_end {
            let byte_offset = i;
            let mut argument = String::new();
            let kind = match c {
                b'_' if at(s, i + 1) == b'_' => {
                    i += 1;
                    MdKind::Underline
                }
                b'_' => MdKind::Italic,
                b'*' => MdKind::Bold,
                b'~' => MdKind::Strikethrough,
                b'|' if at(s, i + 1) == b'|' => {
                    i += 1;
                    MdKind::Spoiler
                }
                b'[' => MdKind::TextUrl,
                b'`' if at(s, i + 1) == b'`' && at(s, i + 2) == b'`' => {
                    i += 3;
                    let mut kind = MdKind::Pre;
                    let mut language_end = i;
                    while !is_space(at(s, language_end)) && at(s, language_end) != b'`' {
                        language_end += 1;
                    }
                    if i != language_end && language_end < s.len() && s[language_end] != b'`' {
                        kind = MdKind::PreCode;
                        argument = String::from_utf8_lossy(&s[i..language_end]).into_owned();
                        i = language_end;
                    }
                    if matches!(at(s, i), b'\n' | b'\r') {
                        if matches!(at(s, i + 1), b'\n' | b'\r') && at(s, i) != at(s, i + 1) {
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    i -= 1;
                    kind
                }
                b'`' => MdKind::Code,
                b'!' if at(s, i + 1) == b'[' => {
                    i += 1;
                    MdKind::CustomEmoji
                }
                b'\n' => {
                    offset += 1;
                    out.push(b'\n');
                    let mut starts_quote = false;
                    if i + 1 < s.len() && s[i + 1] == b'>' {
                        i += 1;
                        if !have_blockquote {
                            have_blockquote = true;
                            starts_quote = true;
                        }
                    }
                    if !starts_quote {
                        i += 1;
                        continue;
                    }
                    MdKind::BlockQuote
                }
                b'>' if i == 0 => {
                    have_blockquote = true;
                    MdKind::BlockQuote
                }
                other => return Err(reserved(other)),
            };
            open.push(OpenMd {
                kind,
                argument,
                offset,
                byte_offset,
                text_pos: out.len(),
            });
            i += 1;
            continue;
        }
        let Some(top) = open.pop() else {
            return Err(reserved(c));
        };
        if c == b'\n' && top.kind != MdKind::BlockQuote {
            return Err(format!(
                "Can't find end of {} entity at byte offset {}",
                top.kind.name(),
                top.byte_offset
            ));
        }
        let mut skip = offset == top.offset;
        let mut entity = MessageEntity::new(EntityKind::Bold, top.offset, 0);
        match top.kind {
            MdKind::Bold => entity.kind = EntityKind::Bold,
            MdKind::Italic => entity.kind = EntityKind::Italic,
            MdKind::Code => entity.kind = EntityKind::Code,
            MdKind::Strikethrough => entity.kind = EntityKind::Strikethrough,
            MdKind::Underline => {
                entity.kind = EntityKind::Underline;
                i += 1;
            }
            MdKind::Spoiler => {
                entity.kind = EntityKind::Spoiler;
                i += 1;
            }
            MdKind::Pre | MdKind::PreCode => {
                entity.kind = EntityKind::Pre;
                if top.kind == MdKind::PreCode {
                    entity.language = Some(top.argument.clone());
                }
                i += 2;
            }
            MdKind::TextUrl => {
                entity.kind = EntityKind::TextLink;
                let url = if at(s, i + 1) != b'(' {
                    String::from_utf8_lossy(&out[top.text_pos..]).into_owned()
                } else {
                    let url_begin = i + 2;
                    markdown_v2_url(s, &mut i).ok_or_else(|| {
                        format!("Can't find end of a URL at byte offset {url_begin}")
                    })?
                };
                match checked_link(&url) {
                    Some(url) => entity.url = Some(url),
                    None => skip = true,
                }
            }
            MdKind::CustomEmoji => {
                entity.kind = EntityKind::CustomEmoji;
                if at(s, i + 1) != b'(' {
                    return Err("Custom emoji entity must contain a tg://emoji URL".into());
                }
                let url_begin = i + 2;
                let url = markdown_v2_url(s, &mut i).ok_or_else(|| {
                    format!("Can't find end of a custom emoji URL at byte offset {url_begin}")
                })?;
                let id = url
                    .strip_prefix("tg://emoji?id=")
                    .and_then(|id| id.parse::<i64>().ok())
                    .filter(|id| *id != 0)
                    .ok_or_else(|| "Invalid custom emoji identifier specified".to_owned())?;
                entity.custom_emoji_id = Some(id.to_string());
            }
            MdKind::BlockQuote => {
                entity.kind = EntityKind::Blockquote;
                have_blockquote = false;
                out.push(c);
                offset += 1;
            }
        }
        if !skip {
            entity.length = offset - top.offset;
            entities.push(entity);
        }
        i += 1;
    }
    if have_blockquote
        && open.last().is_some_and(|o| o.kind == MdKind::BlockQuote)
        && let Some(top) = open.pop()
        && offset > top.offset
    {
        entities.push(MessageEntity::new(
            EntityKind::Blockquote,
            top.offset,
            offset - top.offset,
        ));
    }
    if let Some(top) = open.last() {
        return Err(format!(
            "Can't find end of {} entity at byte offset {}",
            top.kind.name(),
            top.byte_offset
        ));
    }
    sort_entities(&mut entities);
    let text = String::from_utf8(out).map_err(|_| "Strings must be encoded in UTF-8".to_owned())?;
    Ok(Formatted { text, entities })
}

/// Parses the legacy `parse_mode=Markdown`.
pub(crate) fn parse_markdown(input: &str) -> Result<Formatted, String> {
    let s = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut entities = Vec::new();
    let mut offset = 0usize;
    let mut i = 0usize;
    while i < s.len() {
        let c = s[i];
        if c == b'\\' && matches!(at(s, i + 1), b'_' | b'*' | b'`' | b'[') {
            out.push(s[i + 1]);
            offset += 1;
            i += 2;
            continue;
        }
        if !matches!(c, b'_' | b'*' | b'`' | b'[') {
            offset += utf16_step(c);
            out.push(c);
            i += 1;
            continue;
        }
        let begin = i;
        let end_char = if c == b'[' { b']' } else { c };
        let mut is_pre = false;
        let mut language = String::new();
        i += 1;
        if c == b'`' && at(s, i) == b'`' && at(s, i + 1) == b'`' {
            i += 2;
            is_pre = true;
            let mut language_end = i;
            while !is_space(at(s, language_end)) && at(s, language_end) != b'`' {
                language_end += 1;
            }
            if i != language_end && language_end < s.len() && s[language_end] != b'`' {
                language = String::from_utf8_lossy(&s[i..language_end]).into_owned();
                i = language_end;
            }
            if matches!(at(s, i), b'\n' | b'\r') {
                if matches!(at(s, i + 1), b'\n' | b'\r') && at(s, i) != at(s, i + 1) {
                    i += 2;
                } else {
                    i += 1;
                }
            }
        }
        let entity_offset = offset;
        let text_pos = out.len();
        while i < s.len()
            && (s[i] != end_char || (is_pre && !(at(s, i + 1) == b'`' && at(s, i + 2) == b'`')))
        {
            offset += utf16_step(s[i]);
            out.push(s[i]);
            i += 1;
        }
        if i >= s.len() {
            return Err(format!(
                "Can't find end of the entity starting at byte offset {begin}"
            ));
        }
        if offset != entity_offset {
            let length = offset - entity_offset;
            let mut entity = MessageEntity::new(EntityKind::Bold, entity_offset, length);
            let keep = match c {
                b'_' => {
                    entity.kind = EntityKind::Italic;
                    true
                }
                b'*' => true,
                b'[' => {
                    let url = if at(s, i + 1) != b'(' {
                        String::from_utf8_lossy(&out[text_pos..]).into_owned()
                    } else {
                        i += 2;
                        let url_begin = i;
                        while i < s.len() && s[i] != b')' {
                            i += 1;
                        }
                        String::from_utf8_lossy(&s[url_begin..i.min(s.len())]).into_owned()
                    };
                    entity.kind = EntityKind::TextLink;
                    entity.url = checked_link(&url);
                    entity.url.is_some()
                }
                _ if is_pre => {
                    entity.kind = EntityKind::Pre;
                    entity.language = (!language.is_empty()).then_some(language);
                    true
                }
                _ => {
                    entity.kind = EntityKind::Code;
                    true
                }
            };
            if keep {
                entities.push(entity);
            }
        }
        if is_pre {
            i += 2;
        }
        i += 1;
    }
    sort_entities(&mut entities);
    let text = String::from_utf8(out).map_err(|_| "Strings must be encoded in UTF-8".to_owned())?;
    Ok(Formatted { text, entities })
}

/// Finds `/command` and `/command@bot` entities in user text, as Telegram
/// marks them in incoming messages.
pub(crate) fn bot_commands(text: &str) -> Vec<MessageEntity> {
    let s = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut found = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'/' || (i > 0 && (word(s[i - 1]) || matches!(s[i - 1], b'/' | b'<' | b'>'))) {
            i += 1;
            continue;
        }
        let begin = i;
        i += 1;
        let name_begin = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
            i += 1;
        }
        if i == name_begin || i - name_begin > 64 {
            continue;
        }
        let mut end = i;
        if at(s, i) == b'@' {
            let mention_begin = i + 1;
            let mut j = mention_begin;
            while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
                j += 1;
            }
            if !(3..=32).contains(&(j - mention_begin)) {
                i = j;
                continue;
            }
            end = j;
            i = j;
        }
        let next = at(s, end);
        if word(next) || matches!(next, b'/' | b'<' | b'>') {
            continue;
        }
        let offset = utf16_len(&text[..begin]);
        let length = utf16_len(&text[begin..end]);
        found.push(MessageEntity::new(EntityKind::BotCommand, offset, length));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> Result<Formatted, String> {
        parse(s, Some(ParseMode::Html))
    }

    fn md2(s: &str) -> Result<Formatted, String> {
        parse(s, Some(ParseMode::MarkdownV2))
    }

    #[test]
    fn html_accepts_supported_markup() {
        let f = html("<b>bold</b> &lt;3 &amp; <i>it</i> & more").expect("valid");
        assert_eq!(f.text, "bold <3 & it & more");
        assert_eq!(f.entities.len(), 2);
        assert_eq!(
            (
                f.entities[0].kind,
                f.entities[0].offset,
                f.entities[0].length
            ),
            (EntityKind::Bold, 0, 4)
        );
        assert_eq!(
            (
                f.entities[1].kind,
                f.entities[1].offset,
                f.entities[1].length
            ),
            (EntityKind::Italic, 10, 2)
        );
    }

    #[test]
    fn html_links_spoilers_and_pre_code() {
        let f = html(
            "<a href=\"https://t.me/x\">t</a><span class=\"tg-spoiler\">s</span>\
             <pre><code class=\"language-rust\">fn</code></pre>",
        )
        .expect("valid");
        assert_eq!(f.text, "tsfn");
        let link = &f.entities[0];
        assert_eq!(link.kind, EntityKind::TextLink);
        assert_eq!(link.url.as_deref(), Some("https://t.me/x"));
        assert_eq!(f.entities[1].kind, EntityKind::Spoiler);
        assert_eq!(f.entities[2].kind, EntityKind::Pre);
        assert_eq!(f.entities[2].language.as_deref(), Some("rust"));
        assert_eq!(f.entities.len(), 3);
    }

    #[test]
    fn html_offsets_count_utf16_units() {
        let f = html("😀 <b>ы</b>").expect("valid");
        assert_eq!((f.entities[0].offset, f.entities[0].length), (3, 1));
    }

    #[test]
    fn html_rejects_what_telegram_rejects() {
        let cases = [
            ("a < b", "Unsupported start tag \"\" at byte offset 2"),
            ("<br>", "Unsupported start tag \"br\" at byte offset 0"),
            ("<b>x", "Can't find end tag corresponding to start tag b"),
            ("x</b>", "Unexpected end tag at byte offset 1"),
            (
                "<b>x</i>",
                "Unmatched end tag at byte offset 4, expected \"</b>\", found \"</i>\"",
            ),
            ("<b", "Unclosed start tag at byte offset 0"),
            (
                "<span>x</span>",
                "Tag \"span\" must have class \"tg-spoiler\" at byte offset 0",
            ),
            (
                "<a href>x</a>",
                "Expected equal sign in declaration of an attribute of the tag \"a\" at byte offset 0",
            ),
        ];
        for (input, error) in cases {
            assert_eq!(html(input), Err(error.to_owned()), "input {input:?}");
        }
    }

    #[test]
    fn trims_and_shifts_entities() {
        let f = html("  <b> hi</b>  ").expect("valid");
        assert_eq!(f.text, "hi");
        assert_eq!((f.entities[0].offset, f.entities[0].length), (0, 2));
    }

    #[test]
    fn markdown_v2_entities_and_escapes() {
        let f = md2("*bold* _it_ __u__ ~s~ ||sp|| `c` [l](https://t.me) 1\\.5").expect("valid");
        assert_eq!(f.text, "bold it u s sp c l 1.5");
        let kinds: Vec<_> = f.entities.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EntityKind::Bold,
                EntityKind::Italic,
                EntityKind::Underline,
                EntityKind::Strikethrough,
                EntityKind::Spoiler,
                EntityKind::Code,
                EntityKind::TextLink
            ]
        );
        let pre = md2("```python\nprint(1)\n```").expect("valid");
        assert_eq!(pre.text, "print(1)");
        assert_eq!(pre.entities[0].language.as_deref(), Some("python"));
    }

    #[test]
    fn markdown_v2_rejects_unescaped_reserved_characters() {
        assert_eq!(
            md2("Hello. World"),
            Err("Character '.' is reserved and must be escaped with the preceding '\\'".into())
        );
        assert_eq!(
            md2("*open"),
            Err("Can't find end of Bold entity at byte offset 0".into())
        );
        assert_eq!(
            md2("[x](https://t.me"),
            Err("Can't find end of a URL at byte offset 4".into())
        );
    }

    #[test]
    fn legacy_markdown() {
        let f = parse("*b* _i_ [l](http://x.org)", Some(ParseMode::Markdown)).expect("valid");
        assert_eq!(f.text, "b i l");
        assert_eq!(f.entities.len(), 3);
        assert_eq!(
            parse("*open", Some(ParseMode::Markdown)),
            Err("Can't find end of the entity starting at byte offset 0".into())
        );
    }

    #[test]
    fn parse_mode_names() {
        assert_eq!(
            ParseMode::from_param(Some("html")),
            Ok(Some(ParseMode::Html))
        );
        assert_eq!(
            ParseMode::from_param(Some("MarkdownV2")),
            Ok(Some(ParseMode::MarkdownV2))
        );
        assert_eq!(ParseMode::from_param(None), Ok(None));
        assert!(ParseMode::from_param(Some("xml")).is_err());
    }

    #[test]
    fn finds_bot_commands() {
        let found = bot_commands("/start@vitte_bot now, then /help");
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].offset, found[0].length), (0, 16));
        assert_eq!((found[1].offset, found[1].length), (27, 5));
        assert!(bot_commands("a/b and 1/2").is_empty());
    }
}
