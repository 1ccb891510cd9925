//! Prompt assembly: turns a persona card, the dialog's memory, the
//! relationship instruction, triggered lorebook entries and the recent
//! messages into the messages sent to the LLM, within a token budget.
//!
//! The layout follows the Character Card V2 conventions: the card's
//! `system_prompt` replaces ours when it is not empty (`{{original}}` inside
//! it stands for ours), example dialogs come in `<START>` blocks, and
//! `post_history_instructions` go after the chat history.

use std::fmt;

use crate::model::{LoreEntry, Memory, MemoryKind, Message, MessageState, PersonaCard, Role};

/// Who speaks in a prompt message, as OpenAI-compatible chat APIs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromptRole {
    /// Instructions and context for the model.
    System,
    /// The person's words.
    User,
    /// The persona's words.
    Assistant,
}

impl PromptRole {
    /// The role's name on the wire (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of an LLM request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    /// Who speaks.
    pub role: PromptRole,
    /// What is said.
    pub content: String,
}

impl PromptMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: PromptRole::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: PromptRole::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: PromptRole::Assistant,
            content: content.into(),
        }
    }
}

/// Estimates how many tokens a text costs, so prompts can be fitted to a
/// model's context without a tokenizer. A real tokenizer can implement this.
pub trait TokenEstimator: fmt::Debug + Send + Sync {
    /// Tokens of `text` alone.
    fn estimate(&self, text: &str) -> usize;

    /// Tokens every chat message costs on top of its text (role, separators).
    fn message_overhead(&self) -> usize {
        4
    }
}

/// The default estimator: `ceil(chars / 3.5)` plus 4 tokens per message.
///
/// BPE tokenizers of current models (OpenAI `o200k`, DeepSeek, Llama 3) spend
/// about 4 characters per token on English and about 3 on Russian; 3.5 sits
/// between them, and counting characters (not bytes) keeps Cyrillic from
/// being counted double. It errs on the safe side for English and is close
/// for Russian; where exactness matters, plug in a real tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharRatioEstimator {
    /// Characters per token, in tenths (35 means 3.5).
    pub chars_per_token_tenths: usize,
    /// Tokens added per chat message.
    pub overhead: usize,
}

impl Default for CharRatioEstimator {
    fn default() -> Self {
        Self {
            chars_per_token_tenths: 35,
            overhead: 4,
        }
    }
}

impl TokenEstimator for CharRatioEstimator {
    fn estimate(&self, text: &str) -> usize {
        let chars = text.chars().count();
        let per = self.chars_per_token_tenths.max(1);
        (chars * 10).div_ceil(per)
    }

    fn message_overhead(&self) -> usize {
        self.overhead
    }
}

/// How much context a prompt may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// Tokens for the whole prompt: the model's context minus the room kept
    /// for its reply.
    pub max_tokens: usize,
    /// At most this many tokens of lorebook entries, so world info never
    /// crowds out the conversation.
    pub lore_tokens: usize,
    /// How many of the newest messages are scanned for lorebook keys.
    pub lore_scan_depth: usize,
}

impl Default for PromptBudget {
    fn default() -> Self {
        Self {
            max_tokens: 6000,
            lore_tokens: 800,
            lore_scan_depth: 4,
        }
    }
}

/// What a prompt is built from.
#[derive(Debug, Clone, Copy)]
pub struct PromptInput<'a> {
    /// The persona.
    pub card: &'a PersonaCard,
    /// The person's display name, for `{{user}}`.
    pub user_name: &'a str,
    /// The dialog's long-term memory: the rolling summary and pinned facts.
    pub memories: &'a [Memory],
    /// The relationship level's tone instruction; empty for none.
    pub intimacy_instruction: &'a str,
    /// The dialog's recent messages, oldest first, ending with the ones to
    /// answer. Dropped (refused) messages are skipped.
    pub history: &'a [Message],
}

/// An assembled prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPrompt {
    /// The messages to send, in order.
    pub messages: Vec<PromptMessage>,
    /// How many of the input's history messages, counted from the newest,
    /// the prompt covers; `history[..len - history_used]` fell out of the
    /// window and belongs in the rolling summary.
    pub history_used: usize,
    /// The estimated size of `messages`, in tokens.
    pub estimated_tokens: usize,
    /// How many lorebook entries were inserted.
    pub lore_used: usize,
}

/// The system prompt used when a card brings none, and what `{{original}}`
/// inside a card's own system prompt stands for.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are {{char}}, talking with {{user}} in a private chat. \
Stay in character at all times and write only {{char}}'s next reply: never write {{user}}'s words or actions. \
Reply in the language {{user}} writes in. Put actions between asterisks, like *smiles*. \
Keep replies natural and about as long as a message in a messenger.";

/// Builds LLM prompts for the chat reply.
#[derive(Debug, Clone)]
pub struct PromptBuilder<E = CharRatioEstimator> {
    default_system_prompt: String,
    default_post_history: String,
    budget: PromptBudget,
    estimator: E,
}

impl PromptBuilder<CharRatioEstimator> {
    /// A builder with our default system prompt and the default estimator.
    pub fn new(budget: PromptBudget) -> Self {
        Self {
            default_system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
            default_post_history: String::new(),
            budget,
            estimator: CharRatioEstimator::default(),
        }
    }
}

impl<E: TokenEstimator> PromptBuilder<E> {
    /// Uses another token estimator (e.g. a real tokenizer).
    pub fn with_estimator<F: TokenEstimator>(self, estimator: F) -> PromptBuilder<F> {
        PromptBuilder {
            default_system_prompt: self.default_system_prompt,
            default_post_history: self.default_post_history,
            budget: self.budget,
            estimator,
        }
    }

    /// Replaces our default system prompt (operators tune it per deployment).
    pub fn with_default_system_prompt(mut self, text: impl Into<String>) -> Self {
        self.default_system_prompt = text.into();
        self
    }

    /// Sets post-history instructions used when a card has none, and what
    /// `{{original}}` in a card's own stands for.
    pub fn with_default_post_history(mut self, text: impl Into<String>) -> Self {
        self.default_post_history = text.into();
        self
    }

    /// The budget in use.
    pub fn budget(&self) -> PromptBudget {
        self.budget
    }

    /// Assembles the prompt.
    ///
    /// Order of the result: one system message (system prompt, description,
    /// personality, scenario, triggered lore, memory, relationship), then the
    /// example dialog as a system message when it fits, then the newest
    /// history that fits, then the post-history instructions.
    ///
    /// What gives way when the budget is tight, last first: the example
    /// dialog, older history, lore. The system message, post-history
    /// instructions and the newest message are always sent, even if they
    /// alone exceed the budget (the prompt is unusable without them).
    pub fn build(&self, input: &PromptInput<'_>) -> BuiltPrompt {
        let card = input.card;
        let fill = |text: &str| fill_placeholders(text, &card.name, input.user_name);
        let overhead = self.estimator.message_overhead();

        let system_prompt = if card.system_prompt.trim().is_empty() {
            self.default_system_prompt.clone()
        } else {
            replace_ignore_ascii_case(
                &card.system_prompt,
                "{{original}}",
                &self.default_system_prompt,
            )
        };
        let post_history = if card.post_history_instructions.trim().is_empty() {
            self.default_post_history.clone()
        } else {
            replace_ignore_ascii_case(
                &card.post_history_instructions,
                "{{original}}",
                &self.default_post_history,
            )
        };

        let mut head = Vec::new();
        push_section(&mut head, fill(&system_prompt));
        push_section(&mut head, fill(&card.description));
        if !card.personality.trim().is_empty() {
            push_section(
                &mut head,
                format!(
                    "{}'s personality: {}",
                    card.name,
                    fill(&card.personality).trim()
                ),
            );
        }
        if !card.scenario.trim().is_empty() {
            push_section(
                &mut head,
                format!("Scenario: {}", fill(&card.scenario).trim()),
            );
        }
        let mut tail = Vec::new();
        push_section(&mut tail, memory_section(input.memories));
        if !input.intimacy_instruction.trim().is_empty() {
            push_section(
                &mut tail,
                format!(
                    "Your relationship with {}: {}",
                    input.user_name,
                    input.intimacy_instruction.trim()
                ),
            );
        }

        let post_history = fill(&post_history);
        let post_history = post_history.trim();
        let fixed_system: usize = head.iter().chain(&tail).map(|s| self.section_cost(s)).sum();
        let mut used = fixed_system + overhead;
        if !post_history.is_empty() {
            used += self.estimator.estimate(post_history) + overhead;
        }

        // The messages that may be sent, newest first, with their input index.
        let candidates: Vec<(usize, &Message)> = input
            .history
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, m)| m.state != MessageState::Dropped && !m.text.trim().is_empty())
            .collect();
        let message_cost = |m: &Message| self.estimator.estimate(&m.text) + overhead;
        if let Some((_, newest)) = candidates.first() {
            used += message_cost(newest);
        }

        // Lore competes for what is left, within its own cap.
        let scan: Vec<&str> = candidates
            .iter()
            .take(self.budget.lore_scan_depth)
            .map(|(_, m)| m.text.as_str())
            .collect();
        let room = self.budget.max_tokens.saturating_sub(used);
        let lore = self.select_lore(
            &card.lorebook,
            &scan,
            self.budget.lore_tokens.min(room),
            &fill,
        );
        if !lore.is_empty() {
            used += self.section_cost(LORE_HEADER);
            used += lore.iter().map(|e| self.section_cost(e)).sum::<usize>();
        }

        // Older history, newest first, while it fits.
        let mut history = Vec::new();
        let mut oldest_index = None;
        for (k, (index, message)) in candidates.iter().enumerate() {
            let cost = message_cost(message);
            if k > 0 {
                if used + cost > self.budget.max_tokens {
                    break;
                }
                used += cost;
            }
            history.push(*message);
            oldest_index = Some(*index);
        }
        history.reverse();

        // The example dialog only takes what the history left over.
        let examples = examples_block(&fill(&card.example_messages)).filter(|text| {
            used + self.estimator.estimate(text) + overhead <= self.budget.max_tokens
        });

        let mut system_parts = head;
        if !lore.is_empty() {
            system_parts.push(format!("{LORE_HEADER}\n{}", lore.join("\n")));
        }
        system_parts.extend(tail);

        let mut messages = vec![PromptMessage::system(system_parts.join("\n\n"))];
        if let Some(examples) = examples {
            messages.push(PromptMessage::system(examples));
        }
        messages.extend(history.iter().map(|m| PromptMessage {
            role: match m.role {
                Role::User => PromptRole::User,
                Role::Assistant => PromptRole::Assistant,
                Role::System => PromptRole::System,
            },
            content: m.text.clone(),
        }));
        if !post_history.is_empty() {
            messages.push(PromptMessage::system(post_history));
        }

        let estimated_tokens = messages
            .iter()
            .map(|m| self.estimator.estimate(&m.content) + overhead)
            .sum();
        BuiltPrompt {
            messages,
            history_used: oldest_index.map_or(0, |i| input.history.len() - i),
            estimated_tokens,
            lore_used: lore.len(),
        }
    }

    /// Tokens a system-message section costs, with its separator.
    fn section_cost(&self, section: &str) -> usize {
        self.estimator.estimate(section) + 1
    }

    /// Enabled entries that are constant or whose key appears in `scan`, in
    /// insertion order, as many as fit in `budget` tokens.
    fn select_lore(
        &self,
        lorebook: &[LoreEntry],
        scan: &[&str],
        budget: usize,
        fill: &dyn Fn(&str) -> String,
    ) -> Vec<String> {
        let folded: Vec<String> = scan.iter().map(|t| fold_case(t)).collect();
        let mut triggered: Vec<&LoreEntry> = lorebook
            .iter()
            .filter(|e| e.enabled && !e.content.trim().is_empty())
            .filter(|e| {
                e.constant
                    || e.keys.iter().any(|key| {
                        if e.case_sensitive {
                            scan.iter().any(|t| contains_word(t, key.trim()))
                        } else {
                            let key = fold_case(key.trim());
                            folded.iter().any(|t| contains_word(t, &key))
                        }
                    })
            })
            .collect();
        triggered.sort_by_key(|e| e.insertion_order);

        let mut spent = self.section_cost(LORE_HEADER);
        let mut chosen = Vec::new();
        for entry in triggered {
            let text = fill(entry.content.trim());
            let cost = self.section_cost(&text);
            if spent + cost <= budget {
                spent += cost;
                chosen.push(text);
            }
        }
        chosen
    }
}

impl Default for PromptBuilder<CharRatioEstimator> {
    fn default() -> Self {
        Self::new(PromptBudget::default())
    }
}

/// Heading of the lorebook section of the system message.
const LORE_HEADER: &str = "Background facts (use when relevant):";

/// Replaces `{{char}}` and `{{user}}` (any letter case; also the older
/// `<BOT>` and `<USER>`) with the persona's and the person's names.
pub fn fill_placeholders(text: &str, char_name: &str, user_name: &str) -> String {
    let text = replace_ignore_ascii_case(text, "{{char}}", char_name);
    let text = replace_ignore_ascii_case(&text, "<bot>", char_name);
    let text = replace_ignore_ascii_case(&text, "{{user}}", user_name);
    replace_ignore_ascii_case(&text, "<user>", user_name)
}

/// Replaces every occurrence of the ASCII `needle`, ignoring ASCII case.
fn replace_ignore_ascii_case(text: &str, needle: &str, with: &str) -> String {
    let n = needle.len();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i + n <= bytes.len() {
        // An ASCII needle can only match at char boundaries of valid UTF-8.
        if bytes[i..i + n].eq_ignore_ascii_case(needle.as_bytes()) {
            out.push_str(&text[last..i]);
            out.push_str(with);
            i += n;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Adds a trimmed, non-empty section.
fn push_section(sections: &mut Vec<String>, text: String) {
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        sections.push(trimmed.to_owned());
    }
}

/// The memory part of the system message: the summary, then pinned facts.
fn memory_section(memories: &[Memory]) -> String {
    let mut out = String::new();
    if let Some(summary) = memories
        .iter()
        .find(|m| m.kind == MemoryKind::Summary && !m.text.trim().is_empty())
    {
        out.push_str("Summary of the conversation so far: ");
        out.push_str(summary.text.trim());
    }
    let facts: Vec<&str> = memories
        .iter()
        .filter(|m| m.kind == MemoryKind::Fact)
        .map(|m| m.text.trim())
        .filter(|t| !t.is_empty())
        .collect();
    if !facts.is_empty() {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str("Facts to remember:");
        for fact in facts {
            out.push_str("\n- ");
            out.push_str(fact);
        }
    }
    out
}

/// The example dialog as a system message, each block opened by `<START>`.
fn examples_block(examples: &str) -> Option<String> {
    let trimmed = examples.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("<START>") {
        return None;
    }
    let body = if trimmed
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("<START>"))
    {
        trimmed.to_owned()
    } else {
        format!("<START>\n{trimmed}")
    };
    Some(format!(
        "Example dialogue, showing style only (it is not part of this conversation):\n{body}"
    ))
}

/// Lower case with `ё` read as `е`, for case-insensitive key matching.
fn fold_case(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ё' { 'е' } else { c })
        .collect()
}

/// Whether `key` occurs in `text` with no letter or digit glued to either
/// end ("cat" is found in "my cat!" but not in "category").
fn contains_word(text: &str, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    text.match_indices(key).any(|(start, found)| {
        let end = start + found.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let first = key.chars().next();
        let last = key.chars().next_back();
        let open =
            !first.is_some_and(char::is_alphanumeric) || !before.is_some_and(char::is_alphanumeric);
        let close =
            !last.is_some_and(char::is_alphanumeric) || !after.is_some_and(char::is_alphanumeric);
        open && close
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::ids::{DialogId, MemoryId, MessageId};

    fn message(id: i64, role: Role, text: &str) -> Message {
        Message {
            id: MessageId(id),
            dialog_id: DialogId(1),
            role,
            text: text.to_owned(),
            state: MessageState::Sent,
            telegram_message_id: None,
            update_id: None,
            reply_to: None,
            usage: None,
            created_at: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap(),
        }
    }

    fn memory(kind: MemoryKind, text: &str) -> Memory {
        Memory {
            id: MemoryId(1),
            dialog_id: DialogId(1),
            kind,
            text: text.to_owned(),
            covers_until: None,
            updated_at: Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap(),
        }
    }

    fn card() -> PersonaCard {
        PersonaCard {
            name: "Лиза".to_owned(),
            description: "{{char}} is a painter who lives in Saint Petersburg.".to_owned(),
            personality: "warm, curious".to_owned(),
            scenario: "{{char}} meets {{user}} at a gallery.".to_owned(),
            ..PersonaCard::default()
        }
    }

    fn lore(keys: &[&str], content: &str, order: i32) -> LoreEntry {
        LoreEntry {
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            content: content.to_owned(),
            enabled: true,
            case_sensitive: false,
            constant: false,
            insertion_order: order,
        }
    }

    fn dialog(n: usize) -> Vec<Message> {
        (0..n)
            .map(|i| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                message(
                    i as i64 + 1,
                    role,
                    &format!("message number {i} with some words in it"),
                )
            })
            .collect()
    }

    fn input<'a>(
        card: &'a PersonaCard,
        history: &'a [Message],
        memories: &'a [Memory],
    ) -> PromptInput<'a> {
        PromptInput {
            card,
            user_name: "Max",
            memories,
            intimacy_instruction: "",
            history,
        }
    }

    fn total(messages: &[PromptMessage]) -> usize {
        let e = CharRatioEstimator::default();
        messages
            .iter()
            .map(|m| e.estimate(&m.content) + e.overhead)
            .sum()
    }

    #[test]
    fn estimator_rounds_up_and_counts_characters_not_bytes() {
        let e = CharRatioEstimator::default();
        assert_eq!(e.estimate(""), 0);
        assert_eq!(e.estimate("abc"), 1);
        assert_eq!(e.estimate("abcdefg"), 2);
        assert_eq!(e.estimate("abcdefgh"), 3);
        // Seven Cyrillic letters are 14 bytes but still two tokens.
        assert_eq!(e.estimate("привет!"), 2);
    }

    #[test]
    fn whole_prompt_in_order_with_placeholders_filled() {
        let card = PersonaCard {
            post_history_instructions: "Remember: {{USER}} likes tea.".to_owned(),
            ..card()
        };
        let history = vec![
            message(1, Role::User, "Hi!"),
            message(2, Role::Assistant, "*waves* Hello."),
            message(3, Role::User, "How are you?"),
        ];
        let built = PromptBuilder::default().build(&input(&card, &history, &[]));

        let roles: Vec<PromptRole> = built.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![
                PromptRole::System,
                PromptRole::User,
                PromptRole::Assistant,
                PromptRole::User,
                PromptRole::System
            ]
        );
        let system = &built.messages[0].content;
        assert!(system.starts_with("You are Лиза, talking with Max"));
        assert!(system.contains("Лиза is a painter"));
        assert!(system.contains("Лиза's personality: warm, curious"));
        assert!(system.contains("Scenario: Лиза meets Max at a gallery."));
        assert!(!system.contains("{{"));
        assert_eq!(built.messages[3].content, "How are you?");
        assert_eq!(built.messages[4].content, "Remember: Max likes tea.");
        assert_eq!(built.history_used, 3);
        assert_eq!(built.estimated_tokens, total(&built.messages));
    }

    #[test]
    fn placeholders_are_case_insensitive_and_include_legacy_forms() {
        assert_eq!(
            fill_placeholders("{{Char}} and {{USER}}, <BOT> and <user>", "Anna", "Max"),
            "Anna and Max, Anna and Max"
        );
        assert_eq!(
            fill_placeholders("Привет, {{user}}!", "Anna", "Макс"),
            "Привет, Макс!"
        );
    }

    #[test]
    fn card_system_prompt_replaces_the_default_and_can_include_it() {
        let history = vec![message(1, Role::User, "hi")];
        let own = PersonaCard {
            system_prompt: "You are {{char}}, a pirate.".to_owned(),
            ..card()
        };
        let built = PromptBuilder::default().build(&input(&own, &history, &[]));
        let system = &built.messages[0].content;
        assert!(system.starts_with("You are Лиза, a pirate."));
        assert!(!system.contains("private chat"));

        let wrapped = PersonaCard {
            system_prompt: "{{original}}\nAlways speak like a pirate.".to_owned(),
            ..card()
        };
        let built = PromptBuilder::default().build(&input(&wrapped, &history, &[]));
        let system = &built.messages[0].content;
        assert!(system.starts_with("You are Лиза, talking with Max in a private chat."));
        assert!(system.contains("Always speak like a pirate."));
    }

    #[test]
    fn empty_card_fields_leave_no_trace() {
        let bare = PersonaCard {
            name: "Anna".to_owned(),
            ..PersonaCard::default()
        };
        let history = vec![message(1, Role::User, "hi")];
        let built = PromptBuilder::default().build(&input(&bare, &history, &[]));
        let system = &built.messages[0].content;
        assert!(!system.contains("personality"));
        assert!(!system.contains("Scenario"));
        assert!(!system.contains("Summary"));
        assert!(!system.contains("\n\n\n"));
        assert_eq!(
            built.messages.len(),
            2,
            "no examples, no post-history: {built:?}"
        );
        assert_eq!(built.messages[1].role, PromptRole::User);
    }

    #[test]
    fn memory_and_intimacy_go_into_the_system_message() {
        let memories = vec![
            memory(MemoryKind::Fact, "Max has a cat called Tom."),
            memory(
                MemoryKind::Summary,
                "They met at a gallery and argued about Repin.",
            ),
            memory(MemoryKind::Fact, "Max is learning French."),
        ];
        let history = vec![message(1, Role::User, "hi")];
        let card = card();
        let built = PromptBuilder::default().build(&PromptInput {
            intimacy_instruction: "You are friends; be warm and teasing.",
            ..input(&card, &history, &memories)
        });
        let system = &built.messages[0].content;
        assert!(system.contains(
            "Summary of the conversation so far: They met at a gallery and argued about Repin."
        ));
        assert!(system.contains(
            "Facts to remember:\n- Max has a cat called Tom.\n- Max is learning French."
        ));
        assert!(
            system.contains("Your relationship with Max: You are friends; be warm and teasing.")
        );
    }

    #[test]
    fn examples_are_wrapped_in_start_blocks() {
        let card = PersonaCard {
            example_messages: "{{user}}: Hi\n{{char}}: *smiles* Hello!\n<START>\n{{user}}: Bye\n{{char}}: See you!"
                .to_owned(),
            ..card()
        };
        let history = vec![message(1, Role::User, "hi")];
        let built = PromptBuilder::default().build(&input(&card, &history, &[]));
        assert_eq!(built.messages[1].role, PromptRole::System);
        let examples = &built.messages[1].content;
        assert!(examples.contains("<START>\nMax: Hi\nЛиза: *smiles* Hello!\n<START>\nMax: Bye"));
        assert_eq!(examples.matches("<START>").count(), 2);
    }

    #[test]
    fn budget_keeps_the_newest_messages_and_reports_how_many() {
        let card = card();
        let history = dialog(40);
        let builder = PromptBuilder::new(PromptBudget {
            max_tokens: 300,
            ..PromptBudget::default()
        });
        let built = builder.build(&input(&card, &history, &[]));
        assert!(
            built.estimated_tokens <= 300,
            "{} tokens",
            built.estimated_tokens
        );
        assert_eq!(built.estimated_tokens, total(&built.messages));
        assert!(built.history_used > 2 && built.history_used < 40);

        let sent: Vec<&str> = built.messages[1..]
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        let expected: Vec<&str> = history[40 - built.history_used..]
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(sent, expected);

        // One more message would not have fitted.
        let older = &history[40 - built.history_used - 1];
        let e = CharRatioEstimator::default();
        assert!(built.estimated_tokens + e.estimate(&older.text) + e.overhead > 300);
    }

    #[test]
    fn newest_message_is_sent_even_over_budget() {
        let card = card();
        let history = vec![
            message(1, Role::User, "old"),
            message(2, Role::User, &"long ".repeat(500)),
        ];
        let builder = PromptBuilder::new(PromptBudget {
            max_tokens: 50,
            ..PromptBudget::default()
        });
        let built = builder.build(&input(&card, &history, &[]));
        assert_eq!(built.history_used, 1);
        assert_eq!(
            built.messages.last().map(|m| m.role),
            Some(PromptRole::User)
        );
    }

    #[test]
    fn examples_give_way_before_history() {
        let card = PersonaCard {
            example_messages: format!(
                "<START>\n{{{{user}}}}: hi\n{{{{char}}}}: {}",
                "la ".repeat(300)
            ),
            ..card()
        };
        let history = dialog(6);
        let roomy = PromptBuilder::new(PromptBudget {
            max_tokens: 2000,
            ..PromptBudget::default()
        })
        .build(&input(&card, &history, &[]));
        assert!(roomy.messages[1].content.contains("<START>"));
        assert_eq!(roomy.history_used, 6);

        let tight = PromptBuilder::new(PromptBudget {
            max_tokens: 300,
            ..PromptBudget::default()
        })
        .build(&input(&card, &history, &[]));
        assert!(
            tight
                .messages
                .iter()
                .all(|m| !m.content.contains("<START>"))
        );
        assert_eq!(tight.history_used, 6);
        assert!(tight.estimated_tokens <= 300);
    }

    #[test]
    fn dropped_messages_are_skipped_but_counted_inside_the_window() {
        let card = card();
        let mut refused = message(2, Role::User, "something refused");
        refused.state = MessageState::Dropped;
        let history = vec![
            message(1, Role::User, "hello"),
            refused,
            message(3, Role::User, "hi again"),
        ];
        let built = PromptBuilder::default().build(&input(&card, &history, &[]));
        let texts: Vec<&str> = built.messages[1..]
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(texts, vec!["hello", "hi again"]);
        assert_eq!(built.history_used, 3);
    }

    #[test]
    fn lore_is_inserted_only_when_a_key_appears_recently() {
        let card = PersonaCard {
            lorebook: vec![
                lore(
                    &["Эрмитаж"],
                    "The Hermitage is {{char}}'s favourite museum.",
                    0,
                ),
                lore(&["cat"], "{{char}} is allergic to cats.", 0),
            ],
            ..card()
        };
        let history = vec![message(1, Role::User, "Пойдём в ЭРМИТАЖ завтра?")];
        let built = PromptBuilder::default().build(&input(&card, &history, &[]));
        let system = &built.messages[0].content;
        assert!(system.contains("The Hermitage is Лиза's favourite museum."));
        assert!(!system.contains("allergic"));
        assert_eq!(built.lore_used, 1);

        // "category" does not contain the word "cat".
        let history = vec![message(1, Role::User, "What category is this?")];
        let built = PromptBuilder::default().build(&input(&card, &history, &[]));
        assert_eq!(built.lore_used, 0);
        assert!(!built.messages[0].content.contains("Background facts"));
    }

    #[test]
    fn lore_scan_depth_limits_which_messages_trigger() {
        let card = PersonaCard {
            lorebook: vec![lore(&["dragon"], "Dragons are extinct here.", 0)],
            ..card()
        };
        let mut history = vec![message(1, Role::User, "Tell me about the dragon")];
        history.extend((2..=6).map(|i| message(i, Role::User, "unrelated")));
        let builder = PromptBuilder::new(PromptBudget {
            lore_scan_depth: 3,
            ..PromptBudget::default()
        });
        assert_eq!(builder.build(&input(&card, &history, &[])).lore_used, 0);
        let builder = PromptBuilder::new(PromptBudget {
            lore_scan_depth: 6,
            ..PromptBudget::default()
        });
        assert_eq!(builder.build(&input(&card, &history, &[])).lore_used, 1);
    }

    #[test]
    fn lore_respects_enabled_case_sensitive_and_constant() {
        let mut disabled = lore(&["moon"], "DISABLED ENTRY", 0);
        disabled.enabled = false;
        let mut sensitive = lore(&["Moon"], "SENSITIVE ENTRY", 0);
        sensitive.case_sensitive = true;
        let mut constant = lore(&[], "CONSTANT ENTRY", 0);
        constant.constant = true;
        let card = PersonaCard {
            lorebook: vec![disabled, sensitive, constant],
            ..card()
        };
        let history = vec![message(1, Role::User, "look at the moon")];
        let system = PromptBuilder::default()
            .build(&input(&card, &history, &[]))
            .messages[0]
            .content
            .clone();
        assert!(!system.contains("DISABLED ENTRY"));
        assert!(!system.contains("SENSITIVE ENTRY"));
        assert!(system.contains("CONSTANT ENTRY"));

        let history = vec![message(1, Role::User, "look at the Moon")];
        let system = PromptBuilder::default()
            .build(&input(&card, &history, &[]))
            .messages[0]
            .content
            .clone();
        assert!(system.contains("SENSITIVE ENTRY"));
    }

    #[test]
    fn lore_follows_insertion_order_within_its_budget() {
        let card = PersonaCard {
            lorebook: vec![
                lore(&["sea"], "SECOND the sea is cold", 5),
                lore(&["sea"], &format!("BIG {}", "wave ".repeat(200)), 7),
                lore(&["sea"], "FIRST ships sail at dawn", 1),
            ],
            ..card()
        };
        let history = vec![message(1, Role::User, "the sea")];
        let builder = PromptBuilder::new(PromptBudget {
            lore_tokens: 60,
            ..PromptBudget::default()
        });
        let built = builder.build(&input(&card, &history, &[]));
        let system = &built.messages[0].content;
        let first = system.find("FIRST").expect("first entry");
        let second = system.find("SECOND").expect("second entry");
        assert!(first < second);
        assert!(!system.contains("BIG"), "over the lore budget");
        assert_eq!(built.lore_used, 2);
    }

    #[test]
    fn post_history_instructions_come_after_the_history_and_expand_original() {
        let card = PersonaCard {
            post_history_instructions: "{{original}} Stay in {{char}}'s voice.".to_owned(),
            ..card()
        };
        let history = dialog(3);
        let built = PromptBuilder::default()
            .with_default_post_history("Be brief.")
            .build(&input(&card, &history, &[]));
        let last = built.messages.last().expect("messages");
        assert_eq!(last.role, PromptRole::System);
        assert_eq!(last.content, "Be brief. Stay in Лиза's voice.");
        assert_eq!(
            built.messages[built.messages.len() - 2].content,
            history[2].text
        );
    }

    #[test]
    fn a_custom_estimator_changes_the_fit() {
        #[derive(Debug)]
        struct Words;
        impl TokenEstimator for Words {
            fn estimate(&self, text: &str) -> usize {
                text.split_whitespace().count()
            }
            fn message_overhead(&self) -> usize {
                0
            }
        }
        let card = PersonaCard {
            name: "A".to_owned(),
            system_prompt: "one two".to_owned(),
            ..PersonaCard::default()
        };
        let history = vec![
            message(1, Role::User, "a b c"),
            message(2, Role::User, "d e f"),
            message(3, Role::User, "g h i"),
        ];
        // System: 2 words + 1 separator; each message 3 words.
        let built = PromptBuilder::new(PromptBudget {
            max_tokens: 9,
            ..PromptBudget::default()
        })
        .with_estimator(Words)
        .build(&input(&card, &history, &[]));
        assert_eq!(built.history_used, 2);
        assert_eq!(built.estimated_tokens, 8);
    }
}
