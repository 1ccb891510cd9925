//! End-to-end tests of the chat: the real `vitte` binary against the
//! Telegram and LLM stand-ins (run in this test process, so they outlive a
//! killed bot). Each test gets its own stand-ins, store and ports.

mod common;

use std::time::Duration;

use common::{Server, vitte};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;
use vitte_stand_ins::Handle;
use vitte_stand_ins::llm::{self, BehaviourPatch, Fault, LlmStandIn};
use vitte_stand_ins::telegram::{self, ButtonPress, TelegramStandIn, UserMessage};

const SECRET: &str = "e2e-secret";
const WAIT: Duration = Duration::from_secs(30);

struct World {
    tg: TelegramStandIn,
    llm: LlmStandIn,
    tg_handle: Handle,
    llm_handle: Handle,
    dir: tempfile::TempDir,
    bot_port: u16,
    logs: std::sync::Mutex<Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>>,
}

impl World {
    async fn new() -> World {
        // Telegram's real flood limits stay on: the bot must live within them.
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
            logs: Default::default(),
        }
    }

    /// The bot's command line; without a webhook it long-polls the stand-in.
    fn command_with(&self, webhook: bool) -> std::process::Command {
        let mut cmd = vitte(self.dir.path());
        cmd.env(
            "DATABASE_URL",
            format!("sqlite://{}", self.dir.path().join("chat.db").display()),
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
        .arg("all");
        if webhook {
            cmd.env(
                "TELEGRAM_WEBHOOK_URL",
                format!("http://127.0.0.1:{}/telegram/webhook", self.bot_port),
            )
            .env("TELEGRAM_WEBHOOK_SECRET", SECRET);
        }
        cmd
    }

    fn start(&self) -> Server {
        self.start_with(true)
    }

    fn start_with(&self, webhook: bool) -> Server {
        self.start_command(&mut self.command_with(webhook))
    }

    fn start_command(&self, command: &mut std::process::Command) -> Server {
        let server = Server::start(command);
        if let Ok(mut logs) = self.logs.lock() {
            *logs = Some(server.logs.clone());
        }
        server
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
            if Instant::now() >= deadline {
                let logs = self
                    .logs
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .and_then(|l| l.lock().ok().map(|l| l.join("\n")))
                    .unwrap_or_default();
                panic!(
                    "timed out waiting for {what}; chat so far: {:#?}\ncounters: {:?}\nbot logs:\n{logs}",
                    texts(&log.messages),
                    self.tg.counters()
                );
            }
        }
    }

    /// The chat once a bot message after the first `seen` contains `needle`.
    async fn wait_for_text(&self, chat: i64, seen: usize, needle: &str) -> Vec<Value> {
        self.wait_until(chat, needle, |m| {
            texts(&m[seen.min(m.len())..])
                .iter()
                .any(|t| t.contains(needle))
        })
        .await
    }

    /// Returns once the model has received a request.
    async fn wait_until_model_asked(&self) {
        let deadline = Instant::now() + WAIT;
        while self.llm.stats().requests == 0 {
            assert!(Instant::now() < deadline, "the model was never asked");
            tokio::time::sleep(Duration::from_millis(50)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_onboards_and_gets_ten_replies_in_order() {
    let world = World::new().await;
    let server = world.start();
    let user = 1001;
    let mut seen = world.onboard(user).await;
    for i in 1..=10 {
        world.say(user, &format!("message number {i}"));
        let quote = format!("\"message number {i}\"");
        let log = world.wait_for_text(user, seen, &quote).await;
        // Replies come in order: nothing here answers a later message.
        for later in texts(&log[seen..]) {
            for j in i + 1..=10 {
                let early = format!("\"message number {j}\"");
                assert!(!later.contains(&early), "reply to {j} before {i}");
            }
        }
        seen = log.len();
    }
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_answered_in_order_one_reply_at_a_time() {
    let world = World::new().await;
    world
        .llm
        .configure(BehaviourPatch {
            first_token_ms: Some(400),
            ..Default::default()
        })
        .expect("configure");
    let server = world.start();
    let user = 1002;
    let seen = world.onboard(user).await;
    for i in 1..=5 {
        world.say(user, &format!("burst {i}"));
    }
    // Every burst message is answered: the last reply quotes the last one.
    let log = world
        .wait_until(user, "the burst answered", |m| {
            texts(&m[seen.min(m.len())..])
                .join("\n")
                .contains("burst 5")
        })
        .await;
    let after = texts(&log[seen..]);
    assert!(!after.is_empty());
    // One generation at a time for the dialog: the messages each request
    // answers (the user turns after its last assistant turn) never overlap
    // between requests, and taken together they are the burst, in order.
    let stats = world.llm.stats();
    let mut answered = Vec::new();
    for recorded in &stats.recent {
        let turns = recorded.request["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !turns
            .iter()
            .any(|t| t["content"].as_str().unwrap_or_default().contains("burst "))
        {
            continue;
        }
        let last_assistant = turns
            .iter()
            .rposition(|t| t["role"] == "assistant")
            .map_or(0, |i| i + 1);
        for turn in &turns[last_assistant..] {
            if turn["role"] != "user" {
                continue;
            }
            let content = turn["content"].as_str().unwrap_or_default();
            for i in 1..=5 {
                if content.contains(&format!("burst {i}")) {
                    answered.push(i);
                }
            }
        }
    }
    let shapes: Vec<Vec<(String, String)>> = stats
        .recent
        .iter()
        .map(|r| {
            r.request["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let c: String = t["content"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(40)
                        .collect();
                    (t["role"].as_str().unwrap_or_default().to_owned(), c)
                })
                .collect()
        })
        .collect();
    assert_eq!(
        answered,
        [1, 2, 3, 4, 5],
        "burst answered out of order or more than once; requests: {shapes:#?}"
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_update_is_handled_once() {
    let world = World::new().await;
    let server = world.start();
    let user = 1003;
    let seen = world.onboard(user).await;
    let update = serde_json::json!({
        "update_id": 900_000,
        "message": {
            "message_id": 77, "date": 1_800_000_000,
            "chat": {"id": user, "type": "private", "first_name": "U"},
            "from": {"id": user, "is_bot": false, "first_name": "U"},
            "text": "only once please"
        }
    });
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let status = client
            .post(format!("{}/telegram/webhook", server.base))
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json(&update)
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status, 200);
    }
    let log = world
        .wait_until(user, "the reply", |m| m.len() > seen)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log2 = world.tg.chat_log(user, 0, false, Duration::ZERO).await;
    assert_eq!(
        log2.messages.len(),
        log.len(),
        "a duplicate update produced another reply: {:?}",
        texts(&log2.messages[seen..])
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_reply_loses_nothing() {
    let world = World::new().await;
    let mut server = world.start();
    let user = 1004;
    let seen = world.onboard(user).await;
    world
        .llm
        .configure(BehaviourPatch {
            first_token_ms: Some(3000),
            ..Default::default()
        })
        .expect("configure");
    world.say(user, "are you still there");
    // Wait until the model is working on it, then kill the process outright.
    world.wait_until_model_asked().await;
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    drop(server);
    world
        .llm
        .configure(BehaviourPatch {
            first_token_ms: Some(0),
            ..Default::default()
        })
        .expect("configure");

    let server = world.start();
    let log = world
        .wait_until(user, "the recovered reply", |m| m.len() > seen)
        .await;
    assert!(
        texts(&log[seen..])
            .join("\n")
            .contains("are you still there")
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failures_are_retried_and_retry_works_after_an_outage() {
    let world = World::new().await;
    let server = world.start();
    let user = 1005;
    let mut seen = world.onboard(user).await;

    world
        .llm
        .configure(BehaviourPatch {
            fault: Some(Fault::ServerError),
            fail_next: Some(2),
            ..Default::default()
        })
        .expect("configure");
    world.say(user, "first try");
    let log = world
        .wait_until(user, "a reply despite 500s", |m| m.len() > seen)
        .await;
    assert!(texts(&log[seen..]).join("\n").contains("first try"));
    seen = log.len();

    world
        .llm
        .configure(BehaviourPatch {
            down: Some(true),
            ..Default::default()
        })
        .expect("down");
    world.say(user, "anyone home");
    let log = world
        .wait_until(user, "the failure notice", |m| m.len() > seen)
        .await;
    let notice = texts(&log[seen..]).join("\n");
    assert!(
        notice.contains("/retry"),
        "no clear failure message: {notice}"
    );
    seen = log.len();

    world
        .llm
        .configure(BehaviourPatch {
            down: Some(false),
            ..Default::default()
        })
        .expect("up");
    world.say(user, "/retry");
    let log = world
        .wait_until(user, "the retried reply", |m| m.len() > seen)
        .await;
    assert!(
        texts(&log[seen..]).join("\n").contains("anyone home"),
        "{:?}",
        texts(&log[seen..])
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_strangers_and_survives_garbage() {
    let world = World::new().await;
    let server = world.start();
    let client = reqwest::Client::new();
    let url = format!("{}/telegram/webhook", server.base);
    let status = client
        .post(&url)
        .body("{\"update_id\": 1}")
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 401);
    let status = client
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "wrong")
        .body("{\"update_id\": 1}")
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, 401);

    // 1,000 random or malformed bodies with the right secret: each gets an
    // answer, and the process stays up.
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..1000 {
        let body: Vec<u8> = match i % 4 {
            0 => (0..(next() % 300)).map(|_| (next() % 256) as u8).collect(),
            1 => format!(
                "{{\"update_id\": {}, \"message\": {}}}",
                next() % 1000,
                next()
            )
            .into_bytes(),
            2 => format!(
                "{{\"update_id\": {}, \"callback_query\": {{\"id\": 5, \"data\": null}}}}",
                1_000_000 + i
            )
            .into_bytes(),
            _ => format!("[{}]", "{".repeat((next() % 50) as usize)).into_bytes(),
        };
        let response = client
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .body(body)
            .send()
            .await
            .expect("the bot answered");
        assert!(response.status().as_u16() < 500, "server error on body {i}");
    }
    assert_eq!(server.get("/healthz").await, 200);
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_at_risk_gets_support_and_the_model_is_not_asked() {
    let world = World::new().await;
    let server = world.start();
    let user = 1006;
    let seen = world.onboard(user).await;
    let asked = world.llm.stats().requests;
    world.say(user, "I want to kill myself");
    let log = world
        .wait_until(user, "the supportive answer", |m| m.len() > seen)
        .await;
    let answer = texts(&log[seen..]).join("\n");
    assert!(
        answer.contains("findahelpline.com"),
        "no help resources: {answer}"
    );
    assert_eq!(
        world.llm.stats().requests,
        asked,
        "the model saw a message the safety rules stopped"
    );
    // The conversation goes on normally afterwards.
    let seen = log.len();
    world.say(user, "thank you, tell me about your piano");
    let log = world
        .wait_until(user, "a normal reply", |m| m.len() > seen)
        .await;
    assert!(
        texts(&log[seen..])
            .join("\n")
            .contains("tell me about your piano")
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_the_bot_long_polls_with_the_same_guarantees() {
    let world = World::new().await;
    let server = world.start_with(false);
    let user = 1007;
    let mut seen = world.onboard(user).await;
    for i in 1..=3 {
        world.say(user, &format!("polled {i}"));
        let quote = format!("\"polled {i}\"");
        let log = world.wait_for_text(user, seen, &quote).await;
        seen = log.len();
    }
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_messages_never_reach_the_model_and_the_user_is_told_once() {
    let world = World::new().await;
    let server = world.start_command(world.command_with(true).env("VITTE_RATE_FREE", "3/1m"));
    let user = 1008;
    let seen = world.onboard(user).await;
    let asked = world.llm.stats().requests;
    for i in 1..=6 {
        world.say(user, &format!("flood {i}"));
    }
    let log = world
        .wait_until(user, "the limit notice and the replies", |m| {
            let t = texts(&m[seen.min(m.len())..]).join("\n");
            t.contains("write again") && t.contains("\"flood 3\"")
        })
        .await;
    // Let anything that would wrongly follow arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = world
        .tg
        .chat_log(user, 0, false, Duration::ZERO)
        .await
        .messages;
    let after = texts(&all[seen..]).join("\n");
    assert_eq!(
        after.matches("write again").count(),
        1,
        "told more than once: {after}"
    );
    for i in 4..=6 {
        assert!(
            !after.contains(&format!("\"flood {i}\"")),
            "message {i} over the limit was answered"
        );
    }
    let prompts: Vec<String> = world
        .llm
        .stats()
        .recent
        .iter()
        .skip(asked as usize)
        .map(|r| r.request.to_string())
        .collect();
    for i in 4..=6 {
        assert!(
            !prompts.iter().any(|p| p.contains(&format!("flood {i}"))),
            "message {i} reached the model"
        );
    }
    assert!(all.len() >= log.len());
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_daily_token_allowance_the_model_is_not_asked_again() {
    let world = World::new().await;
    // Usage is known only after a reply, so one token lets exactly one through.
    let server = world.start_command(world.command_with(true).env("VITTE_DAILY_TOKENS_FREE", "1"));
    let user = 1009;
    let seen = world.onboard(user).await;
    let asked = world.llm.stats().requests;
    world.say(user, "first of the day");
    let log = world
        .wait_until(user, "the first reply", |m| {
            texts(&m[seen.min(m.len())..])
                .join("\n")
                .contains("\"first of the day\"")
        })
        .await;
    let answered = world.llm.stats().requests;
    assert!(
        answered > asked,
        "the first message never reached the model"
    );

    let seen = log.len();
    world.say(user, "one more please");
    let log = world
        .wait_until(user, "the daily limit notice", |m| {
            texts(&m[seen.min(m.len())..])
                .join("\n")
                .contains("00:00 UTC")
        })
        .await;
    let notice = texts(&log[seen..]).join("\n");
    assert!(notice.contains("/retry"), "{notice}");
    assert!(
        !notice.contains("one more please"),
        "answered anyway: {notice}"
    );
    assert_eq!(
        world.llm.stats().requests,
        answered,
        "the model was asked past the allowance"
    );

    // The message was kept as failed: /retry brings it back, and the
    // allowance is checked again.
    let seen = log.len();
    world.say(user, "/retry");
    let log = world
        .wait_until(user, "the notice after /retry", |m| {
            texts(&m[seen.min(m.len())..])
                .join("\n")
                .contains("00:00 UTC")
        })
        .await;
    assert!(
        !texts(&log[seen..]).join("\n").contains("nothing to retry"),
        "{:?}",
        texts(&log[seen..])
    );
    assert_eq!(world.llm.stats().requests, answered);
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_global_spend_cap_the_free_tier_waits_and_an_alert_is_logged() {
    let world = World::new().await;
    let server = world.start_command(
        world
            .command_with(true)
            .env("VITTE_DAILY_SPEND_CAP_USD", "0"),
    );
    let user = 1010;
    let seen = world.onboard(user).await;
    let asked = world.llm.stats().requests;
    world.say(user, "hello there");
    let log = world
        .wait_until(user, "the spend cap notice", |m| {
            texts(&m[seen.min(m.len())..])
                .join("\n")
                .contains("free plan")
        })
        .await;
    let notice = texts(&log[seen..]).join("\n");
    assert!(notice.contains("00:00 UTC"), "{notice}");
    assert_eq!(
        world.llm.stats().requests,
        asked,
        "the model was asked past the cap"
    );
    let deadline = Instant::now() + WAIT;
    while !server.log_text().contains("daily LLM spend cap reached") {
        assert!(
            Instant::now() < deadline,
            "no alert logged: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alert = server
        .log_text()
        .lines()
        .find(|l| l.contains("daily LLM spend cap reached"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(alert.contains("ERROR"), "{alert}");
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_blocks_the_bot_mid_reply_is_not_chased() {
    let world = World::new().await;
    let server = world.start();
    let user = 1010;
    let seen = world.onboard(user).await;
    world
        .llm
        .configure(BehaviourPatch {
            first_token_ms: Some(1500),
            ..Default::default()
        })
        .expect("configure");
    world.say(user, "before blocking");
    world.wait_until_model_asked().await;
    world.tg.set_blocked(user, true).expect("block");
    // The reply cannot be delivered; give the bot time to notice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.tg.set_blocked(user, false).expect("unblock");
    world
        .llm
        .configure(BehaviourPatch {
            first_token_ms: Some(0),
            ..Default::default()
        })
        .expect("configure");
    let asked = world.llm.stats().requests;
    world.say(user, "after unblocking");
    let log = world.wait_for_text(user, seen, "after unblocking").await;
    assert!(log.len() > seen);
    // The message sent while blocked was dropped, not answered again.
    let stats = world.llm.stats();
    let later: Vec<String> = stats
        .recent
        .iter()
        .skip(asked as usize)
        .map(|r| r.request.to_string())
        .collect();
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|r| !r.contains("before blocking")),
        "the undeliverable message was asked about again"
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_replies_is_escaped_once_and_formatted() {
    let world = World::new().await;
    let server = world.start();
    let user = 1011;
    let seen = world.onboard(user).await;
    world.say(user, "*smiles* fish & chips <3");
    let log = world.wait_for_text(user, seen, "fish & chips <3").await;
    let reply = log[seen..]
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("fish & chips"))
        })
        .expect("reply");
    let text = reply["text"].as_str().unwrap_or_default();
    assert!(
        !text.contains("&amp;") && !text.contains("<i>"),
        "markup shown to the user: {text}"
    );
    assert!(
        !text.contains("*smiles*"),
        "the action was not formatted: {text}"
    );
    let italic = reply["entities"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["type"] == "italic");
    assert!(italic, "the *action* did not become italic: {reply}");
    assert_eq!(server.terminate().code(), Some(0));
}
