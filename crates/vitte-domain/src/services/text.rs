//! Reply shaping for Telegram: splitting long replies into messages Telegram
//! accepts, escaping for `parse_mode=HTML`, and turning the model's roleplay
//! `*actions*` into italics.
//!
//! Telegram measures a message in UTF-16 code units (4096 for a text message,
//! counted after entities are parsed), so lengths here are UTF-16 lengths,
//! and cuts always fall on `char` boundaries so a surrogate pair is never
//! split.

/// Telegram's limit for the text of one message, in UTF-16 code units.
pub const TELEGRAM_MESSAGE_LIMIT: usize = 4096;

/// Characters that end a sentence, in English and Russian text alike.
const SENTENCE_END: &[char] = &['.', '!', '?', '…'];

/// Characters that may follow a sentence end and still belong to it
/// (closing quotes and brackets: `«Да!»`, `"Yes."`, `(ok.)`).
const SENTENCE_CLOSERS: &[char] = &['"', '\'', '»', '”', '’', ')', ']', '*'];

/// The length Telegram counts: UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Splits a reply into parts of at most `limit` UTF-16 code units each.
///
/// Cuts prefer, in order: a blank line (paragraph), a line break, the end of
/// a sentence, a space, and only then any character boundary (a very long
/// word), avoiding the inside of an emoji sequence where it can. Parts are
/// trimmed and never empty; a blank reply gives no parts. A `limit` of 0 is
/// treated as 1 so the function always terminates; a single character wider
/// than the limit (possible only below 2) becomes a part of its own.
pub fn split_reply(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if utf16_len(rest) <= limit {
            parts.push(rest.to_owned());
            break;
        }
        let fit = prefix_within(rest, limit);
        // A space right after the fitting prefix is a boundary too; cutting
        // there leaves the space out, so the part still fits.
        let window = match rest[fit..].chars().next() {
            Some(c) if c.is_whitespace() => &rest[..fit + c.len_utf8()],
            _ => &rest[..fit],
        };
        let cut = last_paragraph_break(window)
            .or_else(|| last_line_break(window))
            .or_else(|| last_sentence_end(window))
            .or_else(|| last_space(window))
            .unwrap_or_else(|| hard_cut(rest, fit));
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_owned());
        }
        rest = rest[cut..].trim_start();
    }
    parts
}

/// Escapes text for Telegram's `parse_mode=HTML`: only `&`, `<` and `>` are
/// special outside tags.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

/// Renders a model reply as Telegram HTML: escapes it, then turns balanced
/// roleplay markup on one line into tags: `*action*` into `<i>action</i>`
/// and `**word**` into `<b>word</b>`.
///
/// Escaping comes first so nothing the model wrote can become a tag; an
/// asterisk without a partner (or with a space on the inner side, as in
/// `2 * 3`) stays as it is, so the output is always well-formed.
pub fn format_reply(text: &str) -> String {
    let escaped = escape_html(text);
    let mut out = String::with_capacity(escaped.len() + 16);
    for (i, line) in escaped.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format_line(line));
    }
    out
}

/// Splits a reply for Telegram and renders every part as HTML: the usual
/// path from model output to `sendMessage` calls. Splitting happens on the
/// raw text because Telegram's limit counts the text after entity parsing.
pub fn shape_reply(text: &str, limit: usize) -> Vec<String> {
    split_reply(text, limit)
        .iter()
        .map(|part| format_reply(part))
        .collect()
}

/// Byte length of the longest prefix of `text` within `limit` UTF-16 units.
fn prefix_within(text: &str, limit: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > limit {
            return i;
        }
    }
    text.len()
}

/// Cut position after the last `\n\n` (blank line, possibly with spaces).
fn last_paragraph_break(window: &str) -> Option<usize> {
    let bytes = window.as_bytes();
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        if bytes[i] != b'\n' {
            continue;
        }
        // Look back over horizontal whitespace for another line break.
        let mut j = i;
        while j > 0 && matches!(bytes[j - 1], b' ' | b'\t' | b'\r') {
            j -= 1;
        }
        if j > 0 && bytes[j - 1] == b'\n' && !window[..j - 1].trim().is_empty() {
            return Some(i + 1);
        }
    }
    None
}

/// Cut position after the last line break that has text before it.
fn last_line_break(window: &str) -> Option<usize> {
    window
        .rfind('\n')
        .filter(|&i| !window[..i].trim().is_empty())
        .map(|i| i + 1)
}

/// Cut position right after the last sentence end followed by whitespace.
fn last_sentence_end(window: &str) -> Option<usize> {
    let chars: Vec<(usize, char)> = window.char_indices().collect();
    for k in (1..chars.len()).rev() {
        let (at, c) = chars[k];
        if !c.is_whitespace() {
            continue;
        }
        // Walk back over closing quotes/brackets to the terminal punctuation.
        let mut m = k;
        while m > 0 && SENTENCE_CLOSERS.contains(&chars[m - 1].1) {
            m -= 1;
        }
        if m > 0 && SENTENCE_END.contains(&chars[m - 1].1) && !window[..at].trim().is_empty() {
            return Some(at);
        }
    }
    None
}

/// Cut position at the last whitespace that has text before it.
fn last_space(window: &str) -> Option<usize> {
    window
        .char_indices()
        .rev()
        .find(|&(i, c)| c.is_whitespace() && !window[..i].trim().is_empty())
        .map(|(i, _)| i)
}

/// A cut inside a word at `fit` bytes, moved back so it does not separate a
/// character from the joiners and modifiers that follow it (emoji ZWJ
/// sequences, variation selectors, skin tones, combining marks).
fn hard_cut(text: &str, fit: usize) -> usize {
    let mut cut = fit;
    while cut > 0 {
        let next = text[cut..].chars().next();
        let prev = text[..cut].chars().next_back();
        let glued = next.is_some_and(is_extending) || prev == Some('\u{200D}');
        if !glued {
            if next.is_some_and(is_regional_indicator) {
                // Flags are pairs of regional indicators: keep pairs whole.
                let before = text[..cut]
                    .chars()
                    .rev()
                    .take_while(|&c| is_regional_indicator(c))
                    .count();
                if before % 2 == 1 {
                    cut -= prev.map_or(1, char::len_utf8);
                }
            }
            break;
        }
        cut -= prev.map_or(1, char::len_utf8);
    }
    if cut == 0 {
        // One cluster longer than the limit: cut it anyway rather than loop.
        let first = text.chars().next().map_or(0, char::len_utf8);
        fit.max(first)
    } else {
        cut
    }
}

/// Whether `c` extends the character before it rather than starting a new one.
fn is_extending(c: char) -> bool {
    matches!(c,
        '\u{200D}'                      // zero-width joiner
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{1F3FB}'..='\u{1F3FF}'     // skin tone modifiers
        | '\u{0300}'..='\u{036F}'       // combining diacritics
        | '\u{20D0}'..='\u{20FF}'       // combining marks for symbols (keycaps)
        | '\u{E0020}'..='\u{E007F}'     // tag characters (subdivision flags)
    )
}

/// Whether `c` is half of a flag emoji.
fn is_regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

/// Turns balanced `**bold**` and `*italic*` runs of one (escaped) line into tags.
fn format_line(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '*' {
            let width = if chars.get(i + 1) == Some(&'*') { 2 } else { 1 };
            if let Some(close) = find_closing(&chars, i, width) {
                let inner: String = chars[i + width..close].iter().collect();
                let tag = if width == 2 { "b" } else { "i" };
                out.push_str(&format!("<{tag}>{}</{tag}>", format_line(&inner)));
                i = close + width;
                continue;
            }
            // No partner: keep the asterisks literally.
            for _ in 0..width {
                out.push('*');
            }
            i += width;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Index of the run of `width` asterisks that closes the one opening at
/// `open`, if the opener hugs text and a closer hugging text follows.
fn find_closing(chars: &[char], open: usize, width: usize) -> Option<usize> {
    let first = *chars.get(open + width)?;
    if first.is_whitespace() || first == '*' {
        return None;
    }
    let mut j = open + width + 1;
    while j + width <= chars.len() {
        let run = chars[j..j + width].iter().all(|&c| c == '*');
        let exact = chars.get(j + width) != Some(&'*') && chars[j - 1] != '*';
        if run && exact && !chars[j - 1].is_whitespace() {
            return Some(j);
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_parts_ok(parts: &[String], limit: usize) {
        for p in parts {
            assert!(!p.trim().is_empty(), "empty part in {parts:?}");
            assert!(
                utf16_len(p) <= limit,
                "part over limit: {} > {limit}",
                utf16_len(p)
            );
        }
    }

    #[test]
    fn short_text_is_one_trimmed_part() {
        assert_eq!(split_reply("  Привет!  ", 4096), vec!["Привет!"]);
    }

    #[test]
    fn blank_text_gives_no_parts() {
        assert!(split_reply("", 10).is_empty());
        assert!(split_reply(" \n\n \t", 10).is_empty());
    }

    #[test]
    fn prefers_paragraph_breaks() {
        let text = "First paragraph. Two sentences.\n\nSecond paragraph here.";
        let parts = split_reply(text, 40);
        assert_eq!(
            parts,
            vec!["First paragraph. Two sentences.", "Second paragraph here."]
        );
    }

    #[test]
    fn falls_back_to_sentences_in_both_languages() {
        let text = "Она улыбнулась. Потом тихо сказала: «Да!» И ушла… Куда? Never mind.";
        let parts = split_reply(text, 30);
        assert_parts_ok(&parts, 30);
        assert_eq!(parts[0], "Она улыбнулась.");
        assert_eq!(parts[1], "Потом тихо сказала: «Да!»");
        assert_eq!(parts[2], "И ушла… Куда? Never mind.");
    }

    #[test]
    fn falls_back_to_words_then_characters() {
        let text = "one two three four five six seven";
        let parts = split_reply(text, 10);
        assert_eq!(parts, vec!["one two", "three four", "five six", "seven"]);

        let long_word = "a".repeat(25);
        let parts = split_reply(&long_word, 10);
        assert_eq!(parts, vec!["a".repeat(10), "a".repeat(10), "a".repeat(5)]);
    }

    #[test]
    fn counts_utf16_units_and_never_splits_surrogate_pairs() {
        // Each emoji is two UTF-16 units.
        let text = "😀".repeat(7);
        let parts = split_reply(&text, 5);
        assert_parts_ok(&parts, 5);
        assert_eq!(parts.concat(), text);
        assert_eq!(parts[0], "😀😀");
    }

    #[test]
    fn keeps_emoji_sequences_together_when_cutting_inside_a_word() {
        // Family emoji: man ZWJ woman ZWJ girl, 8 UTF-16 units.
        let family = "👨\u{200D}👩\u{200D}👧";
        let text = format!("ab{family}cd");
        let parts = split_reply(&text, 9);
        assert_parts_ok(&parts, 9);
        assert_eq!(
            parts,
            vec!["ab".to_owned(), format!("{family}c"), "d".to_owned()]
        );

        // Skin tones stay on their hand; flags are not halved.
        let parts = split_reply("ab👍🏽cd", 5);
        assert_eq!(parts, vec!["ab", "👍🏽c", "d"]);
        let flags = "🇷🇺🇺🇸🇫🇷";
        let parts = split_reply(flags, 6);
        assert_eq!(parts, vec!["🇷🇺", "🇺🇸", "🇫🇷"]);
    }

    #[test]
    fn telegram_sized_split_of_long_russian_text() {
        let sentence = "Это довольно длинное предложение, чтобы проверить разбиение. ";
        let text = sentence.repeat(200);
        let parts = split_reply(&text, TELEGRAM_MESSAGE_LIMIT);
        assert!(parts.len() >= 3);
        assert_parts_ok(&parts, TELEGRAM_MESSAGE_LIMIT);
        for p in &parts {
            assert!(
                p.ends_with('.'),
                "part should end at a sentence: {:?}",
                &p[p.len() - 10..]
            );
        }
        let words: usize = parts.iter().map(|p| p.split_whitespace().count()).sum();
        assert_eq!(words, text.split_whitespace().count());
    }

    #[test]
    fn escape_html_escapes_only_the_specials() {
        assert_eq!(
            escape_html("a < b && c > d \"q\""),
            "a &lt; b &amp;&amp; c &gt; d \"q\""
        );
    }

    #[test]
    fn format_reply_turns_actions_into_italics() {
        assert_eq!(
            format_reply("*smiles* Привет! *обнимает тебя*"),
            "<i>smiles</i> Привет! <i>обнимает тебя</i>"
        );
        assert_eq!(format_reply("**Важно**: да"), "<b>Важно</b>: да");
    }

    #[test]
    fn format_reply_escapes_before_formatting() {
        assert_eq!(
            format_reply("*<b>hack</b>*"),
            "<i>&lt;b&gt;hack&lt;/b&gt;</i>"
        );
        assert_eq!(format_reply("*a & b*"), "<i>a &amp; b</i>");
    }

    #[test]
    fn format_reply_leaves_unbalanced_or_spaced_asterisks() {
        assert_eq!(format_reply("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(format_reply("*unclosed action"), "*unclosed action");
        assert_eq!(format_reply("a* b*"), "a* b*");
        // Not across lines.
        assert_eq!(format_reply("*one\ntwo*"), "*one\ntwo*");
    }

    #[test]
    fn shape_reply_splits_then_formats_each_part() {
        let text = "*waves* Hello there.\n\n*sits down* How are you?";
        let parts = shape_reply(text, 25);
        assert_eq!(
            parts,
            vec!["<i>waves</i> Hello there.", "<i>sits down</i> How are you?"]
        );
    }
}
