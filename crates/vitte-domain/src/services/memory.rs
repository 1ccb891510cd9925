//! The pure part of dialog memory: deciding when the rolling summary needs
//! a refresh, and writing the request that asks the model for it.
//!
//! Messages that fall out of the prompt's context window are not forgotten:
//! they are folded, a batch at a time, into one short summary per dialog,
//! which the prompt carries instead. The summary's `covers_until` says how
//! far it has read.

use crate::ids::MessageId;
use crate::model::{Message, MessageState, Role};
use crate::services::prompt::PromptMessage;

/// When and how much to summarise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryPolicy {
    /// A refresh is due once at least this many messages outside the window
    /// are not yet in the summary; summarising one message at a time would
    /// spend a model call per reply.
    pub min_uncovered: usize,
    /// At most this many characters of transcript per request, oldest first,
    /// so a long backlog is folded in over several steps.
    pub max_batch_chars: usize,
    /// How long the summary may grow, in words.
    pub summary_words: usize,
}

impl Default for SummaryPolicy {
    fn default() -> Self {
        Self {
            min_uncovered: 12,
            max_batch_chars: 12_000,
            summary_words: 250,
        }
    }
}

/// A summary refresh that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryPlan<'a> {
    /// The messages to fold into the summary, oldest first (may include
    /// dropped messages, which the request leaves out).
    pub batch: &'a [Message],
    /// The summary's `covers_until` once this batch is folded in.
    pub covers_until: MessageId,
}

/// Plans summary refreshes and writes their requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct SummaryPlanner {
    policy: SummaryPolicy,
}

impl SummaryPlanner {
    /// A planner with the given policy.
    pub fn new(policy: SummaryPolicy) -> Self {
        Self { policy }
    }

    /// The policy in use.
    pub fn policy(&self) -> SummaryPolicy {
        self.policy
    }

    /// Whether a refresh is due, and over which messages.
    ///
    /// `outside_window` are the dialog's messages older than the prompt's
    /// context window, oldest first; `covers_until` is where the current
    /// summary ends (`None` when there is none yet).
    pub fn plan<'a>(
        &self,
        outside_window: &'a [Message],
        covers_until: Option<MessageId>,
    ) -> Option<SummaryPlan<'a>> {
        let first = outside_window
            .iter()
            .position(|m| covers_until.is_none_or(|until| m.id > until))?;
        let uncovered = &outside_window[first..];
        let countable = uncovered.iter().filter(|m| counts(m)).count();
        if countable < self.policy.min_uncovered.max(1) {
            return None;
        }

        let mut chars = 0;
        let mut len = 0;
        for message in uncovered {
            let size = if counts(message) {
                message.text.chars().count()
            } else {
                0
            };
            if len > 0 && chars + size > self.policy.max_batch_chars {
                break;
            }
            chars += size;
            len += 1;
        }
        let batch = &uncovered[..len];
        let last = batch.last()?;
        Some(SummaryPlan {
            batch,
            covers_until: last.id,
        })
    }

    /// The messages asking the model to merge `previous` (the current
    /// summary, if any) with `batch` into a new summary: third person, in
    /// the conversation's language, within the policy's length.
    pub fn request(
        &self,
        previous: Option<&str>,
        batch: &[Message],
        char_name: &str,
        user_name: &str,
    ) -> Vec<PromptMessage> {
        let language = match dominant_script(previous.unwrap_or(""), batch) {
            Script::Cyrillic => "Write the summary in Russian.".to_owned(),
            Script::Latin => "Write the summary in the language of the conversation.".to_owned(),
        };
        let system = format!(
            "You keep the long-term memory of a roleplay chat between {user_name} (the user) and {char_name} (the character). \
Write one updated summary of the whole conversation so far, in the third person (\"{user_name} told {char_name} that...\"), \
in at most {words} words. Merge the previous summary with the new messages into one text: keep names, facts about \
{user_name}, promises, plans, feelings and how their relationship has developed; drop greetings and small talk. \
{language} Answer with the summary only.",
            words = self.policy.summary_words,
        );

        let mut transcript = String::new();
        for message in batch.iter().filter(|m| counts(m)) {
            let speaker = match message.role {
                Role::User => user_name,
                Role::Assistant => char_name,
                Role::System => "Note",
            };
            if !transcript.is_empty() {
                transcript.push('\n');
            }
            transcript.push_str(speaker);
            transcript.push_str(": ");
            transcript.push_str(&truncate_chars(
                message.text.trim(),
                self.policy.max_batch_chars,
            ));
        }
        let previous = previous
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .unwrap_or("(none yet)");
        let user = format!("Previous summary:\n{previous}\n\nNew messages:\n{transcript}");
        vec![PromptMessage::system(system), PromptMessage::user(user)]
    }
}

/// Whether a message belongs in the summary: refused messages do not, and
/// neither do empty ones.
fn counts(message: &Message) -> bool {
    message.state != MessageState::Dropped && !message.text.trim().is_empty()
}

/// The writing system most letters of the conversation use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Cyrillic,
    Latin,
}

fn dominant_script(previous: &str, batch: &[Message]) -> Script {
    let (mut cyrillic, mut latin) = (0usize, 0usize);
    let texts = std::iter::once(previous)
        .chain(batch.iter().filter(|m| counts(m)).map(|m| m.text.as_str()));
    for c in texts.flat_map(str::chars) {
        if ('\u{0400}'..='\u{04FF}').contains(&c) {
            cyrillic += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    if cyrillic > latin {
        Script::Cyrillic
    } else {
        Script::Latin
    }
}

/// The first `max` characters of `text`, with an ellipsis when cut.
fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::ids::DialogId;
    use crate::services::prompt::PromptRole;

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

    fn messages(ids: std::ops::RangeInclusive<i64>, text: &str) -> Vec<Message> {
        ids.map(|i| {
            let role = if i % 2 == 1 {
                Role::User
            } else {
                Role::Assistant
            };
            message(i, role, &format!("{text} {i}"))
        })
        .collect()
    }

    fn planner(min_uncovered: usize, max_batch_chars: usize) -> SummaryPlanner {
        SummaryPlanner::new(SummaryPolicy {
            min_uncovered,
            max_batch_chars,
            summary_words: 200,
        })
    }

    #[test]
    fn not_due_until_enough_messages_are_uncovered() {
        let outside = messages(1..=9, "hello");
        assert_eq!(planner(10, 10_000).plan(&outside, None), None);
        let outside = messages(1..=10, "hello");
        let plan = planner(10, 10_000).plan(&outside, None).expect("due");
        assert_eq!(plan.batch.len(), 10);
        assert_eq!(plan.covers_until, MessageId(10));
    }

    #[test]
    fn messages_already_in_the_summary_do_not_count() {
        let outside = messages(1..=30, "hello");
        // Summary covers up to 25: only 5 are new.
        assert_eq!(
            planner(10, 10_000).plan(&outside, Some(MessageId(25))),
            None
        );
        let plan = planner(10, 10_000)
            .plan(&outside, Some(MessageId(20)))
            .expect("due");
        assert_eq!(plan.batch.first().map(|m| m.id), Some(MessageId(21)));
        assert_eq!(plan.covers_until, MessageId(30));
        // Everything covered: nothing to do.
        assert_eq!(planner(1, 10_000).plan(&outside, Some(MessageId(30))), None);
    }

    #[test]
    fn dropped_messages_are_not_counted_but_are_covered() {
        let mut outside = messages(1..=4, "hi");
        outside[1].state = MessageState::Dropped;
        assert_eq!(planner(4, 10_000).plan(&outside, None), None);
        outside[1].state = MessageState::Sent;
        outside[3].state = MessageState::Dropped;
        assert_eq!(planner(4, 10_000).plan(&outside, None), None);
        let plan = planner(3, 10_000).plan(&outside, None).expect("due");
        assert_eq!(plan.covers_until, MessageId(4));
    }

    #[test]
    fn a_long_backlog_is_taken_in_batches() {
        // Each message is 12-13 characters.
        let outside = messages(1..=40, "message no");
        let plan = planner(5, 130).plan(&outside, None).expect("due");
        assert_eq!(plan.batch.len(), 10);
        let chars: usize = plan.batch.iter().map(|m| m.text.chars().count()).sum();
        assert!(chars <= 130);
        assert_eq!(plan.covers_until, MessageId(10));
        let next = planner(5, 130)
            .plan(&outside, Some(plan.covers_until))
            .expect("due");
        assert_eq!(next.batch.first().map(|m| m.id), Some(MessageId(11)));
    }

    #[test]
    fn one_huge_message_still_makes_a_batch() {
        let outside = vec![
            message(1, Role::User, &"a".repeat(500)),
            message(2, Role::User, "b"),
        ];
        let plan = planner(1, 100).plan(&outside, None).expect("due");
        assert_eq!(plan.batch.len(), 1);
        let request = planner(1, 100).request(None, plan.batch, "Anna", "Max");
        assert!(
            request[1]
                .content
                .contains(&format!("Max: {}…", "a".repeat(100)))
        );
    }

    #[test]
    fn request_merges_the_old_summary_with_a_transcript() {
        let mut batch = vec![
            message(1, Role::User, "I adopted a cat, his name is Tom."),
            message(2, Role::Assistant, "*smiles* Tom is a lovely name!"),
            message(3, Role::User, "something refused"),
            message(4, Role::System, "Level up: Friends"),
        ];
        batch[2].state = MessageState::Dropped;
        let request = planner(1, 10_000).request(
            Some("Max and Anna met at a gallery."),
            &batch,
            "Anna",
            "Max",
        );
        assert_eq!(request.len(), 2);
        assert_eq!(request[0].role, PromptRole::System);
        assert!(request[0].content.contains("third person"));
        assert!(request[0].content.contains("at most 200 words"));
        assert!(request[0].content.contains("language of the conversation"));
        assert_eq!(request[1].role, PromptRole::User);
        assert_eq!(
            request[1].content,
            "Previous summary:\nMax and Anna met at a gallery.\n\nNew messages:\n\
             Max: I adopted a cat, his name is Tom.\n\
             Anna: *smiles* Tom is a lovely name!\n\
             Note: Level up: Friends"
        );
    }

    #[test]
    fn russian_dialogs_ask_for_a_russian_summary() {
        let batch = vec![
            message(1, Role::User, "Привет! Я сегодня был в Эрмитаже."),
            message(2, Role::Assistant, "Как здорово! Что понравилось?"),
        ];
        let request = planner(1, 10_000).request(None, &batch, "Лиза", "Макс");
        assert!(request[0].content.contains("Write the summary in Russian."));
        assert!(
            request[1]
                .content
                .starts_with("Previous summary:\n(none yet)\n\nNew messages:\nМакс: Привет!")
        );
    }
}
