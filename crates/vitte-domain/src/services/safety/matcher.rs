//! Compiled safety rules and how they match a normalised text.

use std::collections::BTreeMap;

use super::SafetyCategory;
use super::normalise::{Token, collapse, fold};
use super::rules::{AgeRules, CategoryRules, RuleScope, SafetyRulesError};

/// Which side of the conversation a text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Input,
    Output,
}

impl RuleScope {
    fn covers(self, side: Side) -> bool {
        match self {
            Self::Both => true,
            Self::Input => side == Side::Input,
            Self::Output => side == Side::Output,
        }
    }
}

/// Where a pattern matched: tokens `start..end`, and the number it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    start: usize,
    end: usize,
    number: Option<(NumberKind, u32)>,
}

/// Words strictly between two hits (0 when they touch or overlap).
fn gap(a: &Hit, b: &Hit) -> usize {
    if a.end <= b.start {
        b.start - a.end
    } else {
        // Overlapping hits give 0.
        a.start.saturating_sub(b.end)
    }
}

/// One category's rules, compiled.
#[derive(Debug, Clone)]
pub(super) struct CompiledCategory {
    pub(super) category: SafetyCategory,
    terms: Vec<(Pattern, RuleScope)>,
    combos: Vec<CompiledCombo>,
    exceptions: Vec<Pattern>,
}

/// A combo rule, compiled.
#[derive(Debug, Clone)]
struct CompiledCombo {
    any: Vec<Pattern>,
    with: Vec<Pattern>,
    window: Option<usize>,
    scope: RuleScope,
}

/// The age rules, compiled.
#[derive(Debug, Clone)]
pub(super) struct CompiledAge {
    adult_age: u32,
    bare_from: u32,
    units: Vec<Pattern>,
    not_after: Vec<Pattern>,
    statements: Vec<Pattern>,
    context: Vec<Pattern>,
}

impl CompiledCategory {
    /// Whether the text in `tokens` breaks these rules.
    pub(super) fn matches(&self, tokens: &[Token], side: Side, age: &CompiledAge) -> bool {
        let masked = mask(&self.exceptions, tokens, age);
        let free = |hit: &Hit| !masked[hit.start..hit.end].iter().any(|&m| m);
        let free_hits = |patterns: &[Pattern]| -> Vec<Hit> {
            patterns
                .iter()
                .flat_map(|p| p.hits(tokens, age))
                .filter(|h| free(h))
                .collect()
        };

        let term = self
            .terms
            .iter()
            .filter(|(_, scope)| scope.covers(side))
            .any(|(p, _)| p.hits(tokens, age).any(|h| free(&h)));
        if term {
            return true;
        }

        for combo in self.combos.iter().filter(|c| c.scope.covers(side)) {
            let first = free_hits(&combo.any);
            if first.is_empty() {
                continue;
            }
            let second = free_hits(&combo.with);
            let close = |a: &Hit, b: &Hit| combo.window.is_none_or(|w| gap(a, b) <= w);
            if first.iter().any(|a| second.iter().any(|b| close(a, b))) {
                return true;
            }
        }

        if self.category == SafetyCategory::Minors {
            let minor_stated = free_hits(&age.statements)
                .iter()
                .any(|h| h.number.is_some_and(|n| age.is_minor(n)));
            if minor_stated && !free_hits(&age.context).is_empty() {
                return true;
            }
        }
        false
    }
}

/// Which tokens an exception covers.
fn mask(exceptions: &[Pattern], tokens: &[Token], age: &CompiledAge) -> Vec<bool> {
    let mut masked = vec![false; tokens.len()];
    for hit in exceptions.iter().flat_map(|p| p.hits(tokens, age)) {
        masked[hit.start..hit.end].fill(true);
    }
    masked
}

impl CompiledAge {
    /// Whether the number at `at` reads as an age, judging by the word after it.
    fn reads_as_age(&self, tokens: &[Token], at: usize, value: u32) -> bool {
        let next_is = |patterns: &[Pattern]| {
            patterns
                .iter()
                .any(|p| p.match_at(tokens, at + 1, self).is_some())
        };
        if next_is(&self.not_after) {
            return false;
        }
        value >= self.bare_from || next_is(&self.units)
    }

    fn is_minor(&self, (kind, value): (NumberKind, u32)) -> bool {
        match kind {
            NumberKind::Age => (1..self.adult_age).contains(&value),
            // "under 18" says the age is below 18; "under 21" says nothing.
            NumberKind::Below => (1..=self.adult_age).contains(&value),
        }
    }
}

/// How a number placeholder reads its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberKind {
    /// `{age}`: the age itself.
    Age,
    /// `{below}`: an upper bound of the age.
    Below,
}

/// A compiled pattern: a sequence of words.
#[derive(Debug, Clone)]
struct Pattern {
    words: Vec<PatternWord>,
}

#[derive(Debug, Clone)]
enum PatternWord {
    Word {
        alternatives: Vec<Alternative>,
        optional: bool,
    },
    Number(NumberKind),
}

#[derive(Debug, Clone)]
struct Alternative {
    core: String,
    mode: MatchMode,
}

#[derive(Debug, Clone, Copy)]
enum MatchMode {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

impl Alternative {
    fn matches(&self, token: &str) -> bool {
        match self.mode {
            MatchMode::Exact => token == self.core,
            MatchMode::Prefix => token.starts_with(&self.core),
            MatchMode::Suffix => token.ends_with(&self.core),
            MatchMode::Contains => token.contains(&self.core),
        }
    }
}

impl Pattern {
    /// Every match, by start position.
    fn hits<'a>(
        &'a self,
        tokens: &'a [Token],
        age: &'a CompiledAge,
    ) -> impl Iterator<Item = Hit> + 'a {
        (0..tokens.len()).filter_map(move |start| self.match_at(tokens, start, age))
    }

    fn match_at(&self, tokens: &[Token], start: usize, age: &CompiledAge) -> Option<Hit> {
        self.step(0, tokens, start, start, None, age)
    }

    fn step(
        &self,
        word: usize,
        tokens: &[Token],
        start: usize,
        at: usize,
        number: Option<(NumberKind, u32)>,
        age: &CompiledAge,
    ) -> Option<Hit> {
        let Some(pattern_word) = self.words.get(word) else {
            return Some(Hit {
                start,
                end: at,
                number,
            });
        };
        match pattern_word {
            PatternWord::Word {
                alternatives,
                optional,
            } => {
                if let Some(token) = tokens.get(at)
                    && alternatives.iter().any(|a| a.matches(&token.text))
                    && let Some(hit) = self.step(word + 1, tokens, start, at + 1, number, age)
                {
                    return Some(hit);
                }
                if *optional {
                    return self.step(word + 1, tokens, start, at, number, age);
                }
                None
            }
            PatternWord::Number(kind) => {
                let value = tokens.get(at)?.number?;
                if !age.reads_as_age(tokens, at, value) {
                    return None;
                }
                self.step(word + 1, tokens, start, at + 1, Some((*kind, value)), age)
            }
        }
    }
}

/// Compiles pattern text, expanding `@group` references.
pub(super) struct Compiler<'a> {
    pub(super) groups: &'a BTreeMap<String, Vec<String>>,
}

impl Compiler<'_> {
    pub(super) fn category(
        &self,
        category: SafetyCategory,
        rules: &CategoryRules,
    ) -> Result<CompiledCategory, SafetyRulesError> {
        let mut terms = Vec::new();
        for (sources, scope) in [
            (&rules.terms, RuleScope::Both),
            (&rules.input_terms, RuleScope::Input),
            (&rules.output_terms, RuleScope::Output),
        ] {
            terms.extend(
                self.patterns(sources, false)?
                    .into_iter()
                    .map(|p| (p, scope)),
            );
        }
        let combos = rules
            .combos
            .iter()
            .map(|c| {
                Ok(CompiledCombo {
                    any: self.patterns(&c.any, false)?,
                    with: self.patterns(&c.with, false)?,
                    window: c.window,
                    scope: c.scope,
                })
            })
            .collect::<Result<_, SafetyRulesError>>()?;
        Ok(CompiledCategory {
            category,
            terms,
            combos,
            exceptions: self.patterns(&rules.exceptions, false)?,
        })
    }

    /// Compiles the age rules; only statements may hold `{age}` and `{below}`.
    pub(super) fn age(&self, rules: &AgeRules) -> Result<CompiledAge, SafetyRulesError> {
        Ok(CompiledAge {
            adult_age: rules.adult_age,
            bare_from: rules.bare_from,
            units: self.patterns(&rules.units, false)?,
            not_after: self.patterns(&rules.not_after, false)?,
            statements: self.patterns(&rules.statements, true)?,
            context: self.patterns(&rules.context, false)?,
        })
    }

    fn patterns(
        &self,
        sources: &[String],
        numbers: bool,
    ) -> Result<Vec<Pattern>, SafetyRulesError> {
        let mut out = Vec::new();
        for source in sources {
            match source.trim().strip_prefix('@') {
                Some(group) => {
                    let members =
                        self.groups
                            .get(group)
                            .ok_or_else(|| SafetyRulesError::UnknownGroup {
                                pattern: source.clone(),
                                group: group.to_owned(),
                            })?;
                    for member in members {
                        if member.trim().starts_with('@') {
                            return Err(SafetyRulesError::Pattern {
                                pattern: member.clone(),
                                reason: format!("group @{group} may not name another group"),
                            });
                        }
                        out.push(compile_pattern(member, numbers)?);
                    }
                }
                None => out.push(compile_pattern(source, numbers)?),
            }
        }
        Ok(out)
    }
}

/// Parses one pattern (syntax in `default_rules.toml`).
fn compile_pattern(source: &str, numbers: bool) -> Result<Pattern, SafetyRulesError> {
    let bad = |reason: &str| SafetyRulesError::Pattern {
        pattern: source.to_owned(),
        reason: reason.to_owned(),
    };
    // Read the pattern like text: punctuation (hyphens) separates words.
    let cleaned: String = fold(source)
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '|' | '?' | '*' | '{' | '}') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words = Vec::new();
    for raw in cleaned.split_whitespace() {
        if raw == "{age}" || raw == "{below}" {
            if !numbers {
                return Err(bad("{age} and {below} belong in minor_age.statements"));
            }
            words.push(PatternWord::Number(if raw == "{age}" {
                NumberKind::Age
            } else {
                NumberKind::Below
            }));
            continue;
        }
        if raw.contains(['{', '}']) {
            return Err(bad("the only placeholders are {age} and {below}"));
        }
        let (body, optional) = match raw.strip_suffix('?') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let mut alternatives = Vec::new();
        for alternative in body.split('|') {
            let (rest, suffix) = match alternative.strip_prefix('*') {
                Some(rest) => (rest, true),
                None => (alternative, false),
            };
            let (core, prefix) = match rest.strip_suffix('*') {
                Some(core) => (core, true),
                None => (rest, false),
            };
            if core.is_empty() || !core.chars().all(char::is_alphanumeric) {
                return Err(bad(&format!("{alternative:?} is not a word")));
            }
            let starts_with_digit = core.starts_with(|c: char| c.is_ascii_digit());
            if starts_with_digit && !core.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad("write numbers apart from words, as in \"8 th grade\""));
            }
            let mode = match (suffix, prefix) {
                (false, false) => MatchMode::Exact,
                (false, true) => MatchMode::Prefix,
                (true, false) => MatchMode::Suffix,
                (true, true) => MatchMode::Contains,
            };
            alternatives.push(Alternative {
                core: collapse(core),
                mode,
            });
        }
        words.push(PatternWord::Word {
            alternatives,
            optional,
        });
    }
    let required = words
        .iter()
        .any(|w| !matches!(w, PatternWord::Word { optional: true, .. }));
    if !required {
        return Err(bad(
            "a pattern needs at least one word that is not optional",
        ));
    }
    Ok(Pattern { words })
}
