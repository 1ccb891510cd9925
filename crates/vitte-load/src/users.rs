//! The simulated users: each is one Telegram account whose updates are
//! created by the embedded Telegram stand-in and delivered by us to the bot
//! processes in turn, one at a time per chat as Telegram does, retrying on
//! another process when one does not answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::time::Instant;
use vitte_stand_ins::telegram::{
    ActivityKind, BotActivity, ButtonPress, TelegramStandIn, UserMessage,
};

use crate::track::{Tracker, marker};

/// What users write after their marker.
const PHRASES: &[&str] = &[
    "how was your day?",
    "I missed you today",
    "tell me something nice",
    "what are you doing right now?",
    "I had coffee with a friend",
    "it is raining here again",
    "do you like music?",
    "guess what happened at work",
];

/// The Telegram side of the run.
pub struct Telegram {
    /// The embedded Bot API stand-in the bots call.
    pub stand_in: TelegramStandIn,
    /// Updates created by the stand-in and not yet delivered, by id.
    updates: Arc<Mutex<HashMap<i64, Value>>>,
    bots: Vec<String>,
    secret: String,
    next_bot: AtomicUsize,
    http: reqwest::Client,
    /// The record of the run.
    pub tracker: Arc<Tracker>,
}

impl Telegram {
    /// Takes over `stand_in`'s update delivery; webhooks go to `bots` in turn.
    pub fn new(
        stand_in: TelegramStandIn,
        bots: Vec<String>,
        secret: String,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<Self> {
        if bots.is_empty() {
            bail!("no bot webhook URLs given");
        }
        let updates: Arc<Mutex<HashMap<i64, Value>>> = Arc::default();
        let sink = updates.clone();
        stand_in.deliver_to(Arc::new(move |update: Value| {
            if let Some(id) = update["update_id"].as_i64() {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, update);
            }
        }));
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            stand_in,
            updates,
            bots,
            secret,
            next_bot: AtomicUsize::new(0),
            http,
            tracker,
        })
    }

    /// Starts feeding everything the bot shows to the tracker.
    pub fn observe(&self) -> tokio::task::JoinHandle<()> {
        let mut seen = self.stand_in.observe();
        let tracker = self.tracker.clone();
        tokio::spawn(async move {
            while let Some(event) = seen.recv().await {
                tracker.observe(event);
            }
        })
    }

    /// POSTs update `id` until a bot process takes it (2xx), trying the next
    /// process after each failure; returns when it was taken.
    async fn deliver(&self, id: i64, bot: Option<usize>) -> anyhow::Result<Instant> {
        let update = self
            .updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .with_context(|| format!("update {id} was not created"))?;
        let body = serde_json::to_vec(&update)?;
        let mut index = bot.unwrap_or_else(|| self.next_bot.fetch_add(1, Ordering::Relaxed));
        let mut pause = Duration::from_millis(50);
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let url = &self.bots[index % self.bots.len()];
            let outcome = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("X-Telegram-Bot-Api-Secret-Token", &self.secret)
                .body(body.clone())
                .send()
                .await;
            match outcome {
                Ok(r) if r.status().is_success() => return Ok(Instant::now()),
                Ok(r) => tracing::debug!(status = %r.status(), url, "webhook refused; retrying"),
                Err(e) => tracing::debug!(error = %e, url, "webhook unreachable; retrying"),
            }
            if Instant::now() > give_up {
                bail!("update {id} was refused by every bot process for two minutes");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            index += 1;
        }
    }

    /// User `user` writes `text`, meant to be sent at `intended`; delivered
    /// to bot process `bot` or the next in turn. Returns the webhook's delay
    /// after `intended`.
    pub async fn say(&self, user: i64, text: &str, bot: Option<usize>) -> anyhow::Result<Instant> {
        let injected = self
            .stand_in
            .send_user_message(&UserMessage {
                user_id: user,
                first_name: format!("User{user}"),
                last_name: None,
                username: None,
                language_code: Some("en".to_owned()),
                text: text.to_owned(),
            })
            .map_err(|e| anyhow::anyhow!("user {user} cannot write: {e}"))?;
        self.deliver(injected.update_id, bot).await
    }

    async fn press(&self, user: i64, message: &BotActivity, prefix: &str) -> anyhow::Result<()> {
        let data = message
            .buttons
            .iter()
            .find(|b| b.starts_with(prefix))
            .with_context(|| format!("no {prefix} button"))?;
        let injected = self
            .stand_in
            .press_button(&ButtonPress {
                user_id: user,
                message_id: message.message_id,
                data: data.clone(),
            })
            .map_err(|e| anyhow::anyhow!("user {user} cannot press {data}: {e}"))?;
        self.deliver(injected.update_id, None).await?;
        Ok(())
    }

    /// `/start`, accept the terms, choose the first persona, wait for the greeting.
    pub async fn onboard(&self, user: i64) -> anyhow::Result<()> {
        // Generous: an update that failed is retried only when its lease
        // (a minute) runs out, and a loaded machine can stall for seconds.
        let limit = Duration::from_secs(180);
        self.tracker.start_log(user);
        self.say(user, "/start", None).await?;
        let with_button = |prefix: &'static str| {
            move |log: &[BotActivity]| {
                log.iter()
                    .rev()
                    .find(|a| a.buttons.iter().any(|b| b.starts_with(prefix)))
                    .cloned()
            }
        };
        let terms = self
            .tracker
            .wait_log(user, limit, with_button("terms"))
            .await
            .with_context(|| format!("user {user}: no terms after /start"))?;
        self.press(user, &terms, "terms").await?;
        let list = self
            .tracker
            .wait_log(user, limit, with_button("p:"))
            .await
            .with_context(|| format!("user {user}: no persona list"))?;
        self.press(user, &list, "p:").await?;
        // The persona's picture, then its greeting.
        self.tracker
            .wait_log(user, limit, |log| {
                let after = log.iter().position(|a| a.message_id == list.message_id)?;
                log[after + 1..]
                    .iter()
                    .filter(|a| a.kind == ActivityKind::Sent)
                    .nth(1)
                    .cloned()
            })
            .await
            .with_context(|| format!("user {user}: no greeting"))?;
        self.tracker.stop_log(user);
        Ok(())
    }

    /// The text of a user's next message.
    pub fn text(&self, seq: u64) -> String {
        let phrase = PHRASES[usize::try_from(seq).unwrap_or(0) % PHRASES.len()];
        format!("{} {phrase}", marker(seq))
    }
}
