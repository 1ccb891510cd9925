//! End-to-end test of flood protection: the real `vitte` binary against the
//! Telegram and LLM stand-ins. A burst past `VITTE_FLOOD` pauses the user for
//! `VITTE_FLOOD_BLOCK`: one notice, nothing answered or sent to the model
//! while paused, answers again afterwards, and the pause is counted at
//! `/metrics`.

mod common;

use std::time::Duration;

use common::{Server, vitte};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;
use vitte_stand_ins::Handle;
use vitte_stand_ins::llm::{self, LlmStandIn};
use vitte_stand_ins::telegram::{self, ButtonPress, TelegramStandIn, UserMessage};

const SECRET: &str = "e2e-secret";
const WAIT: Duration = Duration::from_secs(30);
/// Long enough for the updates sent during the pause to be handled in it.
const PAUSE: Duration = Duration::from_secs(8);

struct World {
    tg: TelegramStandIn,
    llm: LlmStandIn,
    tg_handle: Handle,
    llm_handle: Handle,
    dir: tempfile::TempDir,
    bot_port: u16,
}

impl World {
    async fn new() -> World {
        let tg = TelegramStandIn::new(telegram::Config::default()).expect("stand-in config");
        let tg_handle = tg
            .clone()
            .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
            .expect("spawn");
        let llm = LlmStandIn::new(llm::Config::default());
        let llm_handle = llm
            .clone()
            .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
            .expect("spawn");
        let bot_port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        World {
            tg,
            llm,
            tg_handle,
            llm_handle,
            dir: tempfile::tempdir().expect("tempdir"),
            bot_port,
        }
    }

    /// The bot on a webhook, with plan limits out of the way: eight updates
    /// at once, then two a second, before a pause of `PAUSE`.
    fn start(&self) -> Server {
        let mut cmd = vitte(self.dir.path());
        cmd.env(
            "DATABASE_URL",
            format!("sqlite://{}", self.dir.path().join("flood.db").display()),
        )
        .env("VITTE_LISTEN", format!("127.0.0.1:{}", self.bot_port))
        .env("TELEGRAM_BOT_TOKEN", self.tg.token())
        .env("TELEGRAM_API_URL", self.tg_handle.base_url())
        .env(
            "LLM_BASE_URL",
            format!("{}/v1", self.llm_handle.base_url().trim_end_matches('/')),
        )
        .env("LLM_MODEL", "vitte-stand-in")
        .env("VITTE_REPLY_STREAMING", "false")
        .env("VITTE_SHUTDOWN_TIMEOUT", "5s")
        .env(
            "TELEGRAM_WEBHOOK_URL",
            format!("http://127.0.0.1:{}/telegram/webhook", self.bot_port),
        )
        .env("TELEGRAM_WEBHOOK_SECRET", SECRET)
        .env("VITTE_RATE_FREE", "1000/1m")
        .env("VITTE_FLOOD", "8/4s")
        .env("VITTE_FLOOD_BLOCK", format!("{}s", PAUSE.as_secs()))
        .arg("all");
        Server::start(&mut cmd)
    }

    fn say(&self, user: i64, text: &str) {
        self.tg
            .send_user_message(&UserMessage {
                user_id: user,
                first_name: format!("U{user}"),
                last_name: None,
                username: None,
                language_code: Some("en".to_owned()),
                text: text.to_owned(),
            })
            .expect("message injected");
    }

    /// The bot's messages in the chat once `done` holds for them, or a panic after `WAIT`.
    async fn wait_until(
        &self,
        chat: i64,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self
                .tg
                .chat_log(chat, 0, false, Duration::from_millis(500))
                .await;
            if done(&log.messages) {
                return log.messages;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; chat so far: {:#?}",
                texts(&log.messages)
            );
        }
    }

    fn press(&self, user: i64, message: &Value, data_prefix: &str) {
        let data = buttons(message)
            .into_iter()
            .find(|d| d.starts_with(data_prefix))
            .unwrap_or_else(|| panic!("no {data_prefix} button on {message}"));
        self.tg
            .press_button(&ButtonPress {
                user_id: user,
                message_id: message["message_id"].as_i64().expect("id"),
                data,
            })
            .expect("button pressed");
    }

    /// /start, accept the terms, choose the first persona; returns the message count after the greeting.
    async fn onboard(&self, user: i64) -> usize {
        self.say(user, "/start");
        let log = self
            .wait_until(user, "the terms", |m| {
                m.iter().any(|m| has_button(m, "terms"))
            })
            .await;
        let terms = log.iter().find(|m| has_button(m, "terms")).expect("terms");
        self.press(user, terms, "terms");
        let log = self
            .wait_until(user, "the persona list", |m| {
                m.iter().any(|m| has_button(m, "p:"))
            })
            .await;
        let list = log
            .iter()
            .rev()
            .find(|m| has_button(m, "p:"))
            .expect("list")
            .clone();
        let before = log.len();
        self.press(user, &list, "p:");
        // The picture with the introduction, then the greeting.
        let log = self
            .wait_until(user, "the greeting", |m| m.len() >= before + 2)
            .await;
        log.len()
    }

    /// Every prompt the model has been sent.
    fn prompts(&self) -> String {
        self.llm
            .stats()
            .recent
            .iter()
            .map(|r| r.request.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn buttons(message: &Value) -> Vec<String> {
    message["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().into_iter().flatten())
        .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
        .collect()
}

fn has_button(message: &Value, prefix: &str) -> bool {
    buttons(message).iter().any(|d| d.starts_with(prefix))
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m["text"]
                .as_str()
                .or(m["caption"].as_str())
                .unwrap_or("<media>")
                .to_owned()
        })
        .collect()
}

const NOTICE: &str = "the chat is paused";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_pauses_the_user_and_the_pause_ends() {
    let world = World::new().await;
    let server = world.start();
    let user = 2001;
    let seen = world.onboard(user).await;

    // Far more than eight updates plus two a second can let through.
    for i in 1..=20 {
        world.say(user, &format!("burst {i}"));
    }
    world
        .wait_until(user, "the flood notice", |m| {
            texts(&m[seen.min(m.len())..])
                .iter()
                .any(|t| t.contains(NOTICE))
        })
        .await;
    let paused_at = Instant::now();
    world.say(user, "during the pause");

    // The pause is measured in wall-clock time: wait it out, then write.
    tokio::time::sleep_until(paused_at + PAUSE + Duration::from_secs(1)).await;
    world.say(user, "after the pause");
    let log = world
        .wait_until(user, "the reply after the pause", |m| {
            texts(&m[seen.min(m.len())..])
                .iter()
                .any(|t| t.contains("after the pause"))
        })
        .await;

    let after = texts(&log[seen..]).join("\n");
    assert_eq!(after.matches(NOTICE).count(), 1, "{after}");
    // The last of the burst came after the pause began; the message during
    // the pause too. Neither was answered nor shown to the model.
    let prompts = world.prompts();
    for dropped in ["\"burst 20\"", "during the pause"] {
        assert!(!after.contains(dropped), "{dropped} answered: {after}");
    }
    for dropped in ["burst 20", "during the pause"] {
        assert!(!prompts.contains(dropped), "{dropped} reached the model");
    }
    assert!(prompts.contains("after the pause"));

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.lines().any(|l| l == "vitte_flood_blocks_total 1"),
        "{metrics}"
    );
    assert_eq!(server.terminate().code(), Some(0));
}
