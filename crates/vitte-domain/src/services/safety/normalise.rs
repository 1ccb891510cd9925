//! Text normalisation for safety matching: the same word reads the same
//! however it is dressed. Case, `ё`/`е`, apostrophes, invisible characters,
//! repeated letters, punctuation between letters ("s.e.x"), letters spelled
//! apart ("s e x"), digits for letters ("s3x") and Latin/Cyrillic
//! look-alikes in one word ("sеx" with a Cyrillic `е`) are all undone.

use std::collections::HashMap;

/// Number words people write ages with; other words are not numbers, so
/// "I'm thirty" simply never reads as a minor's age.
#[rustfmt::skip]
const NUMBER_WORDS: &[(&str, u32)] = &[
    ("one", 1), ("two", 2), ("three", 3), ("four", 4), ("five", 5), ("six", 6), ("seven", 7),
    ("eight", 8), ("nine", 9), ("ten", 10), ("eleven", 11), ("twelve", 12), ("thirteen", 13),
    ("fourteen", 14), ("fifteen", 15), ("sixteen", 16), ("seventeen", 17), ("eighteen", 18),
    ("nineteen", 19), ("twenty", 20), ("thirty", 30), ("forty", 40), ("fifty", 50), ("один", 1),
    ("одна", 1), ("два", 2), ("две", 2), ("три", 3), ("четыре", 4), ("пять", 5), ("шесть", 6),
    ("семь", 7), ("восемь", 8), ("девять", 9), ("десять", 10), ("одиннадцать", 11),
    ("двенадцать", 12), ("тринадцать", 13), ("четырнадцать", 14), ("пятнадцать", 15),
    ("шестнадцать", 16), ("семнадцать", 17), ("восемнадцать", 18), ("девятнадцать", 19),
    ("двадцать", 20), ("тридцать", 30), ("сорок", 40), ("пятьдесят", 50), ("пяти", 5), ("шести", 6),
    ("семи", 7), ("восьми", 8), ("девяти", 9), ("десяти", 10), ("одиннадцати", 11),
    ("двенадцати", 12), ("тринадцати", 13), ("четырнадцати", 14), ("пятнадцати", 15),
    ("шестнадцати", 16), ("семнадцати", 17), ("восемнадцати", 18), ("девятнадцати", 19),
    ("двадцати", 20),
];

/// A word of normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    /// The word, normalised.
    pub(super) text: String,
    /// Its value, when the word is a number (digits or a number word).
    pub(super) number: Option<u32>,
}

/// Turns text into token streams, reading number words as numbers.
#[derive(Debug, Clone)]
pub(super) struct Normaliser {
    numbers: HashMap<String, u32>,
}

impl Normaliser {
    pub(super) fn new() -> Self {
        let numbers = NUMBER_WORDS
            .iter()
            .map(|(word, value)| (collapse(&fold(word)), *value))
            .collect();
        Self { numbers }
    }

    /// The token streams a text is matched as: its words, and, when it has
    /// letters written apart ("s e x"), the same words with those joined.
    pub(super) fn streams(&self, text: &str) -> Vec<Vec<Token>> {
        let folded = fold(text);
        let mut words = Vec::new();
        for word in folded.split(char::is_whitespace) {
            word_tokens(word, &mut words);
        }
        let tokens: Vec<Token> = words.into_iter().map(|w| self.token(w)).collect();
        let mut streams = Vec::with_capacity(2);
        if let Some(joined) = self.join_spelled(&tokens) {
            streams.push(joined);
        }
        streams.insert(0, tokens);
        streams
    }

    fn token(&self, text: String) -> Token {
        let number =
            if !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit()) {
                text.parse().ok()
            } else {
                self.numbers.get(&text).copied()
            };
        Token { text, number }
    }

    /// Joins runs of two or more single letters into one word.
    fn join_spelled(&self, tokens: &[Token]) -> Option<Vec<Token>> {
        let single = |t: &Token| {
            let mut chars = t.text.chars();
            chars.next().is_some_and(char::is_alphabetic) && chars.next().is_none()
        };
        let mut out = Vec::with_capacity(tokens.len());
        let mut changed = false;
        let mut i = 0;
        while i < tokens.len() {
            let run = tokens[i..].iter().take_while(|t| single(t)).count();
            if run >= 2 {
                let joined: String = tokens[i..i + run].iter().map(|t| t.text.as_str()).collect();
                out.push(self.token(collapse(&unify_script(&joined))));
                changed = true;
                i += run;
            } else {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
        changed.then_some(out)
    }
}

/// Lower case, `ё` as `е`, full-width forms as ASCII; apostrophes,
/// invisible characters and combining marks removed ("I'm" reads "im",
/// "s\u{200B}ex" reads "sex").
pub(super) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        for c in c.to_lowercase() {
            match c {
                'ё' => out.push('е'),
                '\'' | '’' | '‘' | '`' | 'ʼ' | '′' | '´' => {}
                '\u{00AD}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{0300}'..='\u{036F}' => {}
                _ => out.push(c),
            }
        }
    }
    out
}

/// Splits one whitespace-separated word into tokens.
fn word_tokens(word: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = word.chars().collect();
    let mapped: Vec<char> = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            '@' if i > 0 && chars[i - 1].is_alphabetic() => 'a',
            '$' if chars.get(i + 1).is_some_and(|n| n.is_alphabetic()) => 's',
            _ => c,
        })
        .collect();
    let pieces: Vec<String> = mapped
        .split(|c| !c.is_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| p.iter().collect())
        .collect();
    // "s.e.x", "с-е-к-с": letters spelled apart inside one word.
    let spelled = pieces.len() >= 2
        && pieces.iter().all(|p| p.chars().count() == 1)
        && pieces.iter().any(|p| p.chars().all(char::is_alphabetic));
    if spelled {
        piece_tokens(&pieces.concat(), out);
    } else {
        for piece in &pieces {
            piece_tokens(piece, out);
        }
    }
}

/// Turns one run of letters and digits into tokens: a number glued to a
/// word is two tokens ("15yo"); digits inside a word are letters ("s3x").
fn piece_tokens(piece: &str, out: &mut Vec<String>) {
    let digits = piece
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(piece.len());
    if digits > 0 {
        out.push(piece[..digits].to_owned());
        if digits < piece.len() {
            piece_tokens(&piece[digits..], out);
        }
        return;
    }
    let unified = unify_script(piece);
    let cyrillic = unified.chars().any(is_cyrillic);
    let letters: String = unified
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                leet(c, cyrillic)
            } else {
                c
            }
        })
        .collect();
    out.push(collapse(&letters));
}

/// Latin letters and the Cyrillic letters that look like them.
const LOOKALIKES: &[(char, char)] = &[
    ('a', 'а'),
    ('b', 'в'),
    ('c', 'с'),
    ('e', 'е'),
    ('h', 'н'),
    ('i', 'і'),
    ('k', 'к'),
    ('m', 'м'),
    ('n', 'п'),
    ('o', 'о'),
    ('p', 'р'),
    ('r', 'г'),
    ('t', 'т'),
    ('u', 'и'),
    ('x', 'х'),
    ('y', 'у'),
];

fn is_cyrillic(c: char) -> bool {
    ('\u{0400}'..='\u{04FF}').contains(&c)
}

fn latin_to_cyrillic(c: char) -> Option<char> {
    LOOKALIKES.iter().find(|(l, _)| *l == c).map(|(_, k)| *k)
}

fn cyrillic_to_latin(c: char) -> Option<char> {
    LOOKALIKES.iter().find(|(_, k)| *k == c).map(|(l, _)| *l)
}

/// Rewrites a word mixing Latin and Cyrillic letters in one script: the one
/// of its letters that have no look-alike, or else the one most used.
fn unify_script(token: &str) -> String {
    let (mut latin, mut cyrillic) = (0usize, 0usize);
    let (mut latin_only, mut cyrillic_only) = (false, false);
    for c in token.chars() {
        if c.is_ascii_lowercase() {
            latin += 1;
            latin_only |= latin_to_cyrillic(c).is_none();
        } else if is_cyrillic(c) {
            cyrillic += 1;
            cyrillic_only |= cyrillic_to_latin(c).is_none();
        }
    }
    if latin == 0 || cyrillic == 0 {
        return token.to_owned();
    }
    let to_cyrillic = match (cyrillic_only, latin_only) {
        (true, false) => true,
        (false, true) => false,
        _ => cyrillic >= latin,
    };
    token
        .chars()
        .map(|c| {
            if to_cyrillic {
                latin_to_cyrillic(c).unwrap_or(c)
            } else {
                cyrillic_to_latin(c).unwrap_or(c)
            }
        })
        .collect()
}

/// A digit written for a letter, in the word's script.
fn leet(c: char, cyrillic: bool) -> char {
    match (c, cyrillic) {
        ('0', false) => 'o',
        ('1', false) => 'i',
        ('3', false) => 'e',
        ('4', false) => 'a',
        ('5', false) => 's',
        ('7', false) => 't',
        ('0', true) => 'о',
        ('3', true) => 'з',
        ('4', true) => 'ч',
        ('6', true) => 'б',
        ('8', true) => 'в',
        _ => c,
    }
}

/// Collapses runs of one letter ("seeeex" reads "sex"); patterns get the
/// same treatment, so "kill" still matches "kill".
pub(super) fn collapse(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    for c in text.chars() {
        if c.is_alphabetic() && previous == Some(c) {
            continue;
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        Normaliser::new().streams(text)[0]
            .iter()
            .map(|t| t.text.clone())
            .collect()
    }

    #[test]
    fn normalisation_undoes_simple_obfuscation() {
        assert_eq!(words("ПРИВЕТ, Ёжик!"), vec!["привет", "ежик"]);
        assert_eq!(words("I'm fine"), vec!["im", "fine"]);
        assert_eq!(words("s.e.x с-е-к-с"), vec!["sex", "секс"]);
        assert_eq!(words("seeeexxx кооокаин"), vec!["sex", "кокаин"]);
        // Cyrillic е in a Latin word, Latin e and c in a Cyrillic one.
        assert_eq!(words("s\u{0435}x \u{0441}ekс"), vec!["sex", "секс"]);
        assert_eq!(
            words("s3x п0рн0 k1ll $uicide"),
            vec!["sex", "порно", "kil", "suicide"]
        );
        assert_eq!(
            words("15yo 18+ 15-year-old"),
            vec!["15", "yo", "18", "15", "year", "old"]
        );
        assert_eq!(words("ｓｅｘ s\u{200B}ex"), vec!["sex", "sex"]);
        assert_eq!(words("k i s s"), vec!["k", "i", "s", "s"]);
        let joined: Vec<String> = Normaliser::new().streams("k i s s me")[1]
            .iter()
            .map(|t| t.text.clone())
            .collect();
        assert_eq!(joined, vec!["kis", "me"]);
    }

    #[test]
    fn numbers_are_read_from_digits_and_words() {
        let tokens =
            &Normaliser::new().streams("15 пятнадцать fifteen sixteen шестнадцати thirty 1234")[0];
        let numbers: Vec<Option<u32>> = tokens.iter().map(|t| t.number).collect();
        assert_eq!(
            numbers,
            vec![
                Some(15),
                Some(15),
                Some(15),
                Some(16),
                Some(16),
                Some(30),
                None
            ]
        );
    }
}
