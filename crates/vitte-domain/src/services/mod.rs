//! Domain services: the pieces of the reply pipeline that need no I/O
//! (safety, intimacy, prompt assembly, memory planning, spend caps, text
//! shaping), each testable alone. Time and data come in as arguments.

mod intimacy;
mod memory;
mod prompt;
mod safety;
mod spend;
mod text;

pub use intimacy::{
    IntimacyDecision, IntimacyInput, IntimacyLevel, IntimacyRules, IntimacyRulesError,
    IntimacyService, LevelStatus, LevelUp, LockedLevel,
};
pub use memory::{SummaryPlan, SummaryPlanner, SummaryPolicy};
pub use prompt::{
    BuiltPrompt, CharRatioEstimator, DEFAULT_SYSTEM_PROMPT, PromptBudget, PromptBuilder,
    PromptInput, PromptMessage, PromptRole, TokenEstimator, fill_placeholders,
};
pub use safety::{
    AgeRules, BUILTIN_SAFETY_RULES, CategoryRules, ComboRule, HelpResource, RuleScope,
    SafetyCategory, SafetyRules, SafetyRulesError, SafetyService, SafetyVerdict, SupportText,
};
pub use spend::{
    MICROS_PER_USD, ModelPrice, SpendDecision, SpendService, format_usd, start_of_day,
};
pub use text::{
    TELEGRAM_MESSAGE_LIMIT, escape_html, format_reply, shape_reply, split_reply, utf16_len,
};
