//! The data of the safety rules: what operators write in TOML, the built-in
//! defaults (`default_rules.toml` beside this file, which also documents the
//! pattern syntax), and how an operator's file extends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in rules, in the format [`SafetyRules::from_toml`] reads;
/// operators can start their own file from it.
pub const BUILTIN_SAFETY_RULES: &str = include_str!("default_rules.toml");

/// Which texts a rule screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleScope {
    /// What people write and what the model replies.
    #[default]
    Both,
    /// Only what people write.
    Input,
    /// Only what the model replies.
    Output,
}

/// The rules of one category.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CategoryRules {
    /// Patterns that match on their own, in input and output.
    pub terms: Vec<String>,
    /// Patterns screened only in what people write (topic words a helpful
    /// reply may mention).
    pub input_terms: Vec<String>,
    /// Patterns screened only in model replies.
    pub output_terms: Vec<String>,
    /// Pairs of pattern lists that match only together.
    pub combos: Vec<ComboRule>,
    /// Patterns whose words never count towards a match of this category
    /// ("kill time", "bath bomb"); also how operators silence a default.
    pub exceptions: Vec<String>,
}

/// A rule that needs two things in one text: a word from `any` and one from
/// `with`, optionally close together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComboRule {
    /// First half.
    pub any: Vec<String>,
    /// Second half.
    pub with: Vec<String>,
    /// Most words allowed between the two halves; anywhere in the text when
    /// absent.
    #[serde(default)]
    pub window: Option<usize>,
    /// Which texts it screens.
    #[serde(default)]
    pub scope: RuleScope,
}

/// How a stated age of a minor is recognised: a statement ("I'm 15",
/// "мне 15 лет") with an age below `adult_age`, in a romantic or sexual
/// `context` in the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeRules {
    /// Ages below this are minors.
    pub adult_age: u32,
    /// Numbers below this are read as ages only with a unit after them
    /// ("I'm 5 years old", but not "I'm 5 minutes away").
    pub bare_from: u32,
    /// Words that make a number an age ("years", "лет").
    pub units: Vec<String>,
    /// Words after a number that show it is not an age ("minutes").
    pub not_after: Vec<String>,
    /// Age statements, with `{age}` or `{below}` for the number.
    pub statements: Vec<String>,
    /// What makes a statement matter: romantic or sexual words.
    pub context: Vec<String>,
}

/// A place to get help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpResource {
    /// Who they are.
    pub name: String,
    /// How to reach them.
    pub contact: String,
}

/// The supportive text's data for one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportText {
    /// A caring opening line.
    pub intro: String,
    /// Where to get help now.
    pub resources: Vec<HelpResource>,
}

impl SupportText {
    /// The text as one message: the intro, then one line per resource.
    pub fn render(&self) -> String {
        let mut out = self.intro.trim().to_owned();
        for r in &self.resources {
            out.push_str(&format!("\n• {}: {}", r.name.trim(), r.contact.trim()));
        }
        out
    }
}

/// All safety rules. Build a [`SafetyService`](super::SafetyService) from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyRules {
    /// Named pattern lists that rules refer to as `@name`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Content involving minors.
    pub minors: CategoryRules,
    /// Stated ages of minors (a part of the minors category).
    pub minor_age: AgeRules,
    /// Non-consent.
    pub non_consent: CategoryRules,
    /// Suicide and self-harm.
    pub self_harm: CategoryRules,
    /// Illegal content.
    pub illegal: CategoryRules,
    /// Supportive texts by language code (`ru`, `en`).
    pub support: BTreeMap<String, SupportText>,
}

/// Safety rules that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SafetyRulesError {
    /// The file is not TOML of the expected shape.
    #[error("safety rules file is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// A pattern is malformed.
    #[error("safety pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A pattern refers to a group that does not exist.
    #[error("safety pattern {pattern:?} names the unknown group @{group}")]
    UnknownGroup {
        /// The pattern as written.
        pattern: String,
        /// The missing group.
        group: String,
    },
    /// A person at risk must always get help resources.
    #[error("safety rules need a support text for at least one language")]
    NoSupportText,
}

impl SafetyRules {
    /// The built-in rules.
    pub fn builtin() -> Self {
        let file: RulesFile = toml::from_str(BUILTIN_SAFETY_RULES)
            .expect("the built-in safety rules are valid (checked by tests)");
        let mut rules = Self::empty();
        rules.apply(file);
        rules
    }

    /// Reads an operator's rules file. Its lists are added to the built-in
    /// rules, unless it says `extends_defaults = false`, in which case it
    /// is the whole rule set. Scalars it sets (`minor_age.adult_age`)
    /// replace the built-in ones; a support text replaces the one of its
    /// language.
    pub fn from_toml(text: &str) -> Result<Self, SafetyRulesError> {
        let file: RulesFile = toml::from_str(text)?;
        let mut rules = if file.extends_defaults {
            Self::builtin()
        } else {
            Self::empty()
        };
        rules.apply(file);
        Ok(rules)
    }

    fn empty() -> Self {
        Self {
            groups: BTreeMap::new(),
            minors: CategoryRules::default(),
            minor_age: AgeRules {
                adult_age: 18,
                bare_from: 10,
                units: Vec::new(),
                not_after: Vec::new(),
                statements: Vec::new(),
                context: Vec::new(),
            },
            non_consent: CategoryRules::default(),
            self_harm: CategoryRules::default(),
            illegal: CategoryRules::default(),
            support: BTreeMap::new(),
        }
    }

    fn apply(&mut self, file: RulesFile) {
        for (name, patterns) in file.groups {
            self.groups.entry(name).or_default().extend(patterns);
        }
        self.minors.extend(file.minors);
        self.non_consent.extend(file.non_consent);
        self.self_harm.extend(file.self_harm);
        self.illegal.extend(file.illegal);
        let age = file.minor_age;
        if let Some(adult_age) = age.adult_age {
            self.minor_age.adult_age = adult_age;
        }
        if let Some(bare_from) = age.bare_from {
            self.minor_age.bare_from = bare_from;
        }
        self.minor_age.units.extend(age.units);
        self.minor_age.not_after.extend(age.not_after);
        self.minor_age.statements.extend(age.statements);
        self.minor_age.context.extend(age.context);
        self.support.extend(file.support);
    }
}

impl Default for SafetyRules {
    fn default() -> Self {
        Self::builtin()
    }
}

impl CategoryRules {
    fn extend(&mut self, other: CategoryRules) {
        self.terms.extend(other.terms);
        self.input_terms.extend(other.input_terms);
        self.output_terms.extend(other.output_terms);
        self.combos.extend(other.combos);
        self.exceptions.extend(other.exceptions);
    }
}

/// The shape of a rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default = "yes")]
    extends_defaults: bool,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    minors: CategoryRules,
    #[serde(default)]
    minor_age: AgeRulesFile,
    #[serde(default)]
    non_consent: CategoryRules,
    #[serde(default)]
    self_harm: CategoryRules,
    #[serde(default)]
    illegal: CategoryRules,
    #[serde(default)]
    support: BTreeMap<String, SupportText>,
}

fn yes() -> bool {
    true
}

/// `[minor_age]` of a rules file: scalars are optional so a file can add
/// to the lists without restating them.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AgeRulesFile {
    adult_age: Option<u32>,
    bare_from: Option<u32>,
    units: Vec<String>,
    not_after: Vec<String>,
    statements: Vec<String>,
    context: Vec<String>,
}
