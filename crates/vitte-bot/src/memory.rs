//! The rolling summary of a dialog, refreshed in the background: when a
//! reply's prompt could no longer hold the whole conversation, the messages
//! that fell out of it are folded into the dialog's summary by the model,
//! off the reply path, so the persona keeps remembering them.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;
use vitte_domain::Clock;
use vitte_domain::ids::DialogId;
use vitte_domain::ports::{Store, StoreError};
use vitte_domain::services::{PromptRole, SummaryPlanner};
use vitte_llm::{ChatMessage, ChatRequest, LlmService};
use vitte_runtime::Shutdown;

/// Messages read when looking for what fell out of the window.
const READ: u32 = 400;

/// A dialog whose prompt left out its oldest messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryJob {
    /// The dialog.
    pub dialog: DialogId,
    /// How many of its newest messages the prompt held.
    pub window: usize,
}

/// Why a refresh failed; it is tried again after the next reply.
#[derive(Debug, thiserror::Error)]
enum SummaryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Llm(#[from] vitte_llm::LlmError),
}

/// Folds old messages into summaries, one dialog at a time.
pub struct Summarizer {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Source of "now".
    pub clock: Arc<dyn Clock>,
    /// The model.
    pub llm: Arc<LlmService>,
    /// When and how much to summarise.
    pub planner: SummaryPlanner,
}

impl Summarizer {
    /// Works through jobs until shutdown.
    pub async fn run(self, mut jobs: mpsc::UnboundedReceiver<SummaryJob>, shutdown: Shutdown) {
        loop {
            let job = tokio::select! {
                () = shutdown.wait() => return,
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            // Several replies may have asked for the same dialog meanwhile.
            let mut batch = vec![job];
            while let Ok(more) = jobs.try_recv() {
                batch.push(more);
            }
            let mut done = HashSet::new();
            for job in batch {
                if done.insert(job.dialog)
                    && let Err(e) = self.refresh(job).await
                {
                    tracing::warn!(dialog = job.dialog.0, error = %e, "summary not refreshed");
                }
            }
        }
    }

    async fn refresh(&self, job: SummaryJob) -> Result<(), SummaryError> {
        let mut messages = self.store.recent_messages(job.dialog, READ).await?;
        crate::responder::conversation_order(&mut messages);
        let outside = messages.len().saturating_sub(job.window);
        let summary = self.store.summary(job.dialog).await?;
        let Some(plan) = self.planner.plan(
            &messages[..outside],
            summary.as_ref().and_then(|s| s.covers_until),
        ) else {
            return Ok(());
        };
        let Some(dialog) = self.store.dialog(job.dialog).await? else {
            return Ok(());
        };
        let persona = self.store.persona(dialog.persona_id).await?;
        let user = self.store.user(dialog.user_id).await?;
        let (Some(persona), Some(user)) = (persona, user) else {
            return Ok(());
        };
        let request = self.planner.request(
            summary.as_ref().map(|s| s.text.as_str()),
            plan.batch,
            &persona.card.name,
            &user.first_name,
        );
        let request = ChatRequest::new(
            request
                .into_iter()
                .map(|m| match m.role {
                    PromptRole::System => ChatMessage::system(m.content),
                    PromptRole::User => ChatMessage::user(m.content),
                    PromptRole::Assistant => ChatMessage::assistant(m.content),
                })
                .collect(),
        );
        let completion = self.llm.reply(&request, |_| {}).await?;
        let text = completion.text.trim();
        if text.is_empty() {
            return Ok(());
        }
        self.store
            .put_summary(job.dialog, text, plan.covers_until, self.clock.now())
            .await?;
        tracing::info!(
            dialog = job.dialog.0,
            covers_until = plan.covers_until.0,
            "summary refreshed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use vitte_domain::ManualClock;
    use vitte_domain::ids::PersonaSlug;
    use vitte_domain::model::{MessageState, NewMessage, PersonaCard, Role, TelegramProfile};
    use vitte_llm::{LlmPolicy, ModelChain, OpenAiCompatible, OpenAiConfig};
    use vitte_stand_ins::llm::{Config, LlmStandIn};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_messages_are_folded_into_the_summary() {
        let stand_in = LlmStandIn::new(Config::default())
            .spawn(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            )
            .expect("spawn");
        let provider = OpenAiCompatible::new(OpenAiConfig::new(format!(
            "{}/v1",
            stand_in.base_url().trim_end_matches('/')
        )))
        .expect("client");
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        ));
        let llm = Arc::new(LlmService::new(
            Arc::new(provider),
            ModelChain::new(["vitte-stand-in"]).expect("models"),
            LlmPolicy::default(),
            clock.clone(),
        ));
        let store = vitte_store_sqlite::testing::fresh_store().await;
        let now = clock.now();
        let profile = TelegramProfile {
            telegram_id: 7.try_into().expect("id"),
            first_name: "Ann".into(),
            last_name: None,
            username: None,
            language_code: None,
        };
        let user = store.upsert_user(&profile, now).await.expect("user");
        let card = PersonaCard {
            name: "Mira".into(),
            ..Default::default()
        };
        let persona = store
            .upsert_persona(&PersonaSlug::parse("mira").expect("slug"), &card, None, now)
            .await
            .expect("persona");
        let dialog = store
            .open_dialog(user.id, persona.id, now)
            .await
            .expect("dialog");
        let mut ids = Vec::new();
        for i in 0..30 {
            let message = NewMessage {
                dialog_id: dialog.id,
                role: if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                text: format!("line {i}"),
                state: if i % 2 == 0 {
                    MessageState::Answered
                } else {
                    MessageState::Sent
                },
                telegram_message_id: None,
                update_id: None,
                reply_to: None,
                usage: None,
            };
            ids.push(
                store
                    .append_message(&message, now)
                    .await
                    .expect("append")
                    .id,
            );
        }
        let summarizer = Summarizer {
            store: store.clone(),
            clock,
            llm,
            planner: SummaryPlanner::default(),
        };

        // Everything fits the window: nothing to fold.
        summarizer
            .refresh(SummaryJob {
                dialog: dialog.id,
                window: 30,
            })
            .await
            .expect("refresh");
        assert_eq!(store.summary(dialog.id).await.expect("summary"), None);

        // The prompt held only the newest 10: the 20 before them are folded.
        summarizer
            .refresh(SummaryJob {
                dialog: dialog.id,
                window: 10,
            })
            .await
            .expect("refresh");
        let summary = store
            .summary(dialog.id)
            .await
            .expect("summary")
            .expect("written");
        assert_eq!(summary.covers_until, Some(ids[19]));
        assert!(!summary.text.is_empty());
    }
}
