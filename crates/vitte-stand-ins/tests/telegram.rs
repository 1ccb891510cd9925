//! The Telegram stand-in over real HTTP, as a bot client sees it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use chrono::{DateTime, TimeDelta};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vitte_domain::ManualClock;
use vitte_stand_ins::Handle;
use vitte_stand_ins::telegram::{Config, Rate, RateLimits, TelegramStandIn, WebhookSettings};

const TOKEN: &str = "4242:TEST-token";

/// A running stand-in and a client for it.
struct Tg {
    stand_in: TelegramStandIn,
    handle: Handle,
    http: reqwest::Client,
}

fn config() -> Config {
    Config {
        token: TOKEN.into(),
        bot_username: "test_bot".into(),
        rate_limits: RateLimits::disabled(),
        ..Config::default()
    }
}

async fn start(config: Config) -> Tg {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stand_in = TelegramStandIn::new(config).expect("valid config");
    let handle = stand_in.clone().spawn(listener).expect("spawn");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    Tg {
        stand_in,
        handle,
        http,
    }
}

impl Tg {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url())
    }

    async fn read(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let body = response.json().await.expect("json body");
        (status, body)
    }

    /// A Bot API call with a JSON body.
    async fn call(&self, method: &str, params: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(&format!("/bot{TOKEN}/{method}")))
            .json(&params)
            .send()
            .await
            .expect("request");
        Self::read(response).await
    }

    /// A Bot API call that must succeed; returns `result`.
    async fn ok(&self, method: &str, params: Value) -> Value {
        let (status, body) = self.call(method, params).await;
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
        assert_eq!(body["ok"], true);
        body["result"].clone()
    }

    async fn control(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        Self::read(response).await
    }

    async fn control_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("request");
        Self::read(response).await
    }

    /// A user writes `text`; returns the injection result.
    async fn user_says(&self, user_id: i64, text: &str) -> Value {
        let (status, body) = self
            .control(
                "/control/messages",
                json!({"user_id": user_id, "first_name": "Ann", "language_code": "en", "text": text}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn update_ids(updates: &Value) -> Vec<i64> {
    updates
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["update_id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn envelope_tokens_methods_and_parameter_encodings() {
    let tg = start(config()).await;
    let me = tg.ok("getMe", json!({})).await;
    assert_eq!(me["id"], 4242);
    assert_eq!(me["is_bot"], true);
    assert_eq!(me["username"], "test_bot");

    // Method names are case-insensitive, and GET works too.
    let response = tg
        .http
        .get(tg.url(&format!("/bot{TOKEN}/GETME")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);

    let response = tg
        .http
        .post(tg.url("/bot4242:wrong/getMe"))
        .send()
        .await
        .expect("request");
    let (status, body) = Tg::read(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );

    let (status, body) = tg.call("sendTelepathy", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 404, "description": "Not Found"})
    );

    let (status, body) = tg
        .call("sendMessage", json!({"chat_id": 1, "text": "hi"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["description"], "Bad Request: chat not found");
    let (_, body) = tg.call("sendMessage", json!({"text": "hi"})).await;
    assert_eq!(body["description"], "Bad Request: chat_id is empty");

    // Form bodies and query strings carry the same parameters as JSON.
    tg.user_says(77, "hello").await;
    let response = tg
        .http
        .post(tg.url(&format!("/bot{TOKEN}/sendMessage")))
        .form(&[
            ("chat_id", "77"),
            ("text", "<b>from a form</b>"),
            ("parse_mode", "HTML"),
        ])
        .send()
        .await
        .expect("request");
    let (status, body) = Tg::read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["text"], "from a form");
    assert_eq!(body["result"]["entities"][0]["type"], "bold");
    let response = tg
        .http
        .get(tg.url(&format!(
            "/bot{TOKEN}/sendMessage?chat_id=77&text=from%20a%20query"
        )))
        .send()
        .await
        .expect("request");
    let (_, body) = Tg::read(response).await;
    assert_eq!(body["result"]["text"], "from a query");
    assert_eq!(body["result"]["from"]["id"], 4242);
    assert_eq!(
        body["result"]["chat"],
        json!({"id": 77, "type": "private", "first_name": "Ann"})
    );
    tg.handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn injected_messages_are_proper_updates() {
    let tg = start(config()).await;
    let injected = tg.user_says(5, "/start@test_bot hello").await;
    let updates = tg.ok("getUpdates", json!({})).await;
    let update = &updates[0];
    assert_eq!(update["update_id"], injected["update_id"]);
    let message = &update["message"];
    assert_eq!(message["message_id"], injected["message_id"]);
    assert_eq!(message["from"]["id"], 5);
    assert_eq!(message["from"]["is_bot"], false);
    assert_eq!(message["from"]["language_code"], "en");
    assert_eq!(message["chat"]["type"], "private");
    assert_eq!(message["text"], "/start@test_bot hello");
    assert_eq!(
        message["entities"],
        json!([{"type": "bot_command", "offset": 0, "length": 15}])
    );
    assert!(message["date"].as_i64().expect("date") > 1_600_000_000);
}

#[tokio::test]
async fn get_updates_offset_limit_and_negative_offset() {
    let tg = start(config()).await;
    for text in ["one", "two", "three", "four"] {
        tg.user_says(10, text).await;
    }
    let all = tg.ok("getUpdates", json!({})).await;
    let ids = update_ids(&all);
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    // Nothing is confirmed without an offset: the same updates come again.
    assert_eq!(update_ids(&tg.ok("getUpdates", json!({})).await), ids);
    let limited = tg.ok("getUpdates", json!({"limit": 2})).await;
    assert_eq!(update_ids(&limited), ids[..2]);

    // An offset confirms everything below it.
    let rest = tg.ok("getUpdates", json!({"offset": ids[2]})).await;
    assert_eq!(update_ids(&rest), ids[2..]);
    assert_eq!(update_ids(&tg.ok("getUpdates", json!({})).await), ids[2..]);

    // A negative offset keeps only the newest updates.
    let tail = tg.ok("getUpdates", json!({"offset": -1})).await;
    assert_eq!(update_ids(&tail), ids[3..]);
    let empty = tg.ok("getUpdates", json!({"offset": ids[3] + 1})).await;
    assert_eq!(empty, json!([]));
    let counters = tg.stand_in.counters();
    assert_eq!(counters.updates_confirmed, 4);
    assert_eq!(counters.pending_updates, 0);
}

/// Waits until the stand-in has received `n` calls of `method`.
async fn until_called(tg: &Tg, method: &str, n: u64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while tg
            .stand_in
            .counters()
            .calls_by_method
            .get(method)
            .copied()
            .unwrap_or(0)
            < n
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the call arrives");
}

#[tokio::test]
async fn long_poll_wakes_up_on_a_new_update_and_a_newer_poll_wins() {
    let tg = Arc::new(start(config()).await);
    let poller = {
        let tg = tg.clone();
        tokio::spawn(async move { tg.call("getUpdates", json!({"timeout": 30})).await })
    };
    until_called(&tg, "getUpdates", 1).await;
    let injected = tg.user_says(3, "wake up").await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("woken long before the 30 s timeout")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"][0]["update_id"], injected["update_id"]);

    // A second poller ends the first one with 409, as on Telegram.
    let offset = injected["update_id"].as_i64().expect("id") + 1;
    let first = {
        let tg = tg.clone();
        tokio::spawn(async move {
            tg.call("getUpdates", json!({"offset": offset, "timeout": 30}))
                .await
        })
    };
    until_called(&tg, "getUpdates", 2).await;
    let second = {
        let tg = tg.clone();
        tokio::spawn(async move {
            tg.call("getUpdates", json!({"offset": offset, "timeout": 30}))
                .await
        })
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("superseded promptly")
        .expect("task");
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["description"],
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    );
    tg.user_says(3, "again").await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"][0]["message"]["text"], "again");
}

#[tokio::test]
async fn get_updates_conflicts_with_a_webhook() {
    let tg = start(config()).await;
    let (status, body) = tg
        .call(
            "setWebhook",
            json!({"url": "http://127.0.0.1:9/hook", "secret_token": "s3cret"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["description"], "Webhook was set");
    let (status, body) = tg.call("getUpdates", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["description"],
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    );
    let (_, body) = tg
        .call(
            "setWebhook",
            json!({"url": "http://x/", "secret_token": "bad token!"}),
        )
        .await;
    assert_eq!(body["error_code"], 400);
    let info = tg.ok("getWebhookInfo", json!({})).await;
    assert_eq!(info["url"], "http://127.0.0.1:9/hook");
    assert_eq!(info["max_connections"], 40);
    let (_, body) = tg.call("deleteWebhook", json!({})).await;
    assert_eq!(body["description"], "Webhook was deleted");
    assert_eq!(tg.ok("getUpdates", json!({})).await, json!([]));
    assert_eq!(tg.ok("getWebhookInfo", json!({})).await["url"], "");
}

/// A webhook receiver that fails the first `failures` requests with 500 and
/// reports every request it gets.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<(Option<String>, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = Router::new().route(
        "/hook",
        post(
            move |headers: HeaderMap, axum::Json(update): axum::Json<Value>| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    let secret = headers
                        .get("x-telegram-bot-api-secret-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let _ = tx.send((secret, update));
                    let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n < failures {
                        AxumStatus::INTERNAL_SERVER_ERROR
                    } else {
                        AxumStatus::OK
                    }
                }
            },
        ),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(Option<String>, Value)>,
) -> (Option<String>, Value) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery arrives")
        .expect("receiver alive")
}

#[tokio::test]
async fn webhook_delivers_with_secret_and_redelivers_after_a_500_in_order() {
    let (url, mut deliveries) = receiver(1).await;
    let tg = start(Config {
        webhook: WebhookSettings {
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(50),
            ..WebhookSettings::default()
        },
        ..config()
    })
    .await;
    tg.ok("setWebhook", json!({"url": url, "secret_token": "s3cret"}))
        .await;
    let first = tg.user_says(8, "first").await;
    let second = tg.user_says(8, "second").await;

    let (secret, update) = next(&mut deliveries).await;
    assert_eq!(secret.as_deref(), Some("s3cret"));
    assert_eq!(update["update_id"], first["update_id"]);
    // The receiver failed it: the same update comes again before the next one.
    let (_, update) = next(&mut deliveries).await;
    assert_eq!(update["update_id"], first["update_id"]);
    assert_eq!(update["message"]["text"], "first");
    let (secret, update) = next(&mut deliveries).await;
    assert_eq!(secret.as_deref(), Some("s3cret"));
    assert_eq!(update["update_id"], second["update_id"]);

    // Wait for the acknowledgement of the last delivery to be processed.
    let third = tg.user_says(8, "third").await;
    let (_, update) = next(&mut deliveries).await;
    assert_eq!(update["update_id"], third["update_id"]);
    let counters = tg.stand_in.counters();
    assert_eq!(counters.webhook_failures, 1);
    assert!(counters.webhook_deliveries >= 2);
    let info = tg.ok("getWebhookInfo", json!({})).await;
    assert_eq!(
        info["last_error_message"],
        "Wrong response from the webhook: 500 Internal Server Error"
    );
    assert!(info["last_error_date"].is_i64());
}

#[tokio::test]
async fn html_is_validated_like_telegram() {
    let tg = start(config()).await;
    tg.user_says(21, "hi").await;
    let accepted = [
        ("<b>bold</b> and <i>italic</i>", "bold and italic"),
        ("fish &amp; chips &lt;3", "fish & chips <3"),
        // Telegram keeps a bare ampersand that starts no entity.
        ("salt & pepper", "salt & pepper"),
        ("<a href=\"https://example.org\">link</a>", "link"),
        (
            "<pre><code class=\"language-rust\">let x = 1;</code></pre>",
            "let x = 1;",
        ),
        ("<tg-spoiler>secret</tg-spoiler> 1 > 0", "secret 1 > 0"),
    ];
    for (html, text) in accepted {
        let result = tg
            .ok(
                "sendMessage",
                json!({"chat_id": 21, "text": html, "parse_mode": "HTML"}),
            )
            .await;
        assert_eq!(result["text"], text, "for {html:?}");
    }
    let rejected = [
        (
            "1 < 2",
            "Bad Request: can't parse entities: Unsupported start tag \"\" at byte offset 2",
        ),
        (
            "<b>open",
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag b",
        ),
        (
            "<div>x</div>",
            "Bad Request: can't parse entities: Unsupported start tag \"div\" at byte offset 0",
        ),
        (
            "<b>x</i>",
            "Bad Request: can't parse entities: Unmatched end tag at byte offset 4, expected \"</b>\", found \"</i>\"",
        ),
        ("<b></b>", "Bad Request: message text is empty"),
    ];
    for (html, description) in rejected {
        let (status, body) = tg
            .call(
                "sendMessage",
                json!({"chat_id": 21, "text": html, "parse_mode": "HTML"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "for {html:?}");
        assert_eq!(body["description"], description, "for {html:?}");
    }
    let (_, body) = tg
        .call(
            "sendMessage",
            json!({"chat_id": 21, "text": "Price: 5.00", "parse_mode": "MarkdownV2"}),
        )
        .await;
    assert_eq!(
        body["description"],
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
    );
    let (_, body) = tg
        .call(
            "sendMessage",
            json!({"chat_id": 21, "text": "x".repeat(4097)}),
        )
        .await;
    assert_eq!(body["description"], "Bad Request: message is too long");
    // The limit counts characters after markup is removed.
    let long = format!("<b>{}</b>", "x".repeat(4096));
    tg.ok(
        "sendMessage",
        json!({"chat_id": 21, "text": long, "parse_mode": "HTML"}),
    )
    .await;
}

#[tokio::test]
async fn flood_limits_answer_429_with_retry_after_on_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
    ));
    let tg = start(Config {
        rate_limits: RateLimits {
            per_chat: Some(Rate {
                interval: Duration::from_secs(1),
                burst: 3,
            }),
            per_group: None,
            global: None,
        },
        clock: clock.clone(),
        ..config()
    })
    .await;
    tg.user_says(31, "hi").await;
    tg.user_says(32, "hi").await;
    for n in 0..3 {
        tg.ok(
            "sendMessage",
            json!({"chat_id": 31, "text": format!("burst {n}")}),
        )
        .await;
    }
    let (status, body) = tg
        .call(
            "sendMessage",
            json!({"chat_id": 31, "text": "one too many"}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        json!({
            "ok": false,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}
        })
    );
    // Other chats are not affected by one chat's limit.
    tg.ok("sendMessage", json!({"chat_id": 32, "text": "elsewhere"}))
        .await;
    // Chat actions are not messages.
    tg.ok("sendChatAction", json!({"chat_id": 31, "action": "typing"}))
        .await;
    clock.advance(TimeDelta::seconds(1));
    tg.ok(
        "sendMessage",
        json!({"chat_id": 31, "text": "after waiting"}),
    )
    .await;
    assert_eq!(tg.stand_in.counters().too_many_requests_issued, 1);
}

#[tokio::test]
async fn the_global_limit_spans_chats() {
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
    ));
    let tg = start(Config {
        rate_limits: RateLimits {
            per_chat: None,
            per_group: None,
            global: Some(Rate::per(2, Duration::from_secs(1))),
        },
        clock: clock.clone(),
        ..config()
    })
    .await;
    for user in [41, 42, 43] {
        tg.user_says(user, "hi").await;
    }
    tg.ok("sendMessage", json!({"chat_id": 41, "text": "a"}))
        .await;
    tg.ok("sendMessage", json!({"chat_id": 42, "text": "b"}))
        .await;
    let (status, body) = tg
        .call("sendMessage", json!({"chat_id": 43, "text": "c"}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["parameters"]["retry_after"], 1);
    clock.advance(TimeDelta::milliseconds(500));
    tg.ok("sendMessage", json!({"chat_id": 43, "text": "c"}))
        .await;
}

#[tokio::test]
async fn a_blocked_user_gives_403_and_a_my_chat_member_update() {
    let tg = start(config()).await;
    tg.user_says(51, "hi").await;
    let (status, change) = tg.control("/control/users/51/block", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let update_id = change["update_id"].as_i64().expect("an update");
    let (status, body) = tg
        .call("sendMessage", json!({"chat_id": 51, "text": "hello?"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
    );
    let (status, _) = tg
        .call("sendChatAction", json!({"chat_id": 51, "action": "typing"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let updates = tg.ok("getUpdates", json!({})).await;
    let member = updates
        .as_array()
        .expect("array")
        .iter()
        .find(|u| u["update_id"] == update_id)
        .expect("my_chat_member update");
    assert_eq!(
        member["my_chat_member"]["new_chat_member"]["status"],
        "kicked"
    );
    assert_eq!(
        member["my_chat_member"]["old_chat_member"]["status"],
        "member"
    );
    assert_eq!(
        member["my_chat_member"]["new_chat_member"]["user"]["id"],
        4242
    );

    let (_, again) = tg.control("/control/users/51/block", json!({})).await;
    assert_eq!(again["update_id"], Value::Null);
    tg.control("/control/users/51/unblock", json!({})).await;
    tg.ok(
        "sendMessage",
        json!({"chat_id": 51, "text": "welcome back"}),
    )
    .await;
    let (status, _) = tg.control("/control/users/999/block", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(tg.stand_in.counters().forbidden_issued, 2);
}

#[tokio::test]
async fn edits_not_modified_and_not_found() {
    let tg = start(config()).await;
    tg.user_says(61, "hi").await;
    let keyboard = json!({"inline_keyboard": [[{"text": "More", "callback_data": "more"}]]});
    let sent = tg
        .ok(
            "sendMessage",
            json!({"chat_id": 61, "text": "Hello", "reply_markup": keyboard}),
        )
        .await;
    let id = sent["message_id"].clone();
    assert_eq!(sent["reply_markup"], keyboard);

    let (status, body) = tg
        .call(
            "editMessageText",
            json!({"chat_id": 61, "message_id": id, "text": "Hello", "reply_markup": keyboard}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["description"],
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"
    );
    let edited = tg
        .ok(
            "editMessageText",
            json!({"chat_id": 61, "message_id": id, "text": "Hello again"}),
        )
        .await;
    assert_eq!(edited["text"], "Hello again");
    assert!(edited["edit_date"].is_i64());
    // Leaving out reply_markup removed the keyboard, as on Telegram.
    assert!(edited.get("reply_markup").is_none());

    let (_, body) = tg
        .call(
            "editMessageText",
            json!({"chat_id": 61, "message_id": 999, "text": "x"}),
        )
        .await;
    assert_eq!(
        body["description"],
        "Bad Request: message to edit not found"
    );
    let user_message = tg.user_says(61, "mine").await;
    let (_, body) = tg
        .call(
            "editMessageText",
            json!({"chat_id": 61, "message_id": user_message["message_id"], "text": "x"}),
        )
        .await;
    assert_eq!(body["description"], "Bad Request: message can't be edited");
}

#[tokio::test]
async fn control_listing_shows_current_state_and_long_polls() {
    let tg = Arc::new(start(config()).await);
    tg.user_says(71, "hi").await;
    let (_, empty) = tg.control_get("/control/chats/71/messages").await;
    assert_eq!(empty["messages"], json!([]));
    let after = empty["revision"].as_u64().expect("revision");

    let waiter = {
        let tg = tg.clone();
        tokio::spawn(async move {
            tg.control_get(&format!(
                "/control/chats/71/messages?after={after}&wait_ms=20000"
            ))
            .await
        })
    };
    tg.ok("sendChatAction", json!({"chat_id": 71, "action": "typing"}))
        .await;
    let (_, log) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken by the chat action")
        .expect("task");
    assert_eq!(log["last_action"]["action"], "typing");
    assert_eq!(log["actions_seen"], 1);

    let first = tg
        .ok("sendMessage", json!({"chat_id": 71, "text": "one"}))
        .await;
    tg.ok("sendMessage", json!({"chat_id": 71, "text": "two"}))
        .await;
    tg.ok(
        "editMessageText",
        json!({"chat_id": 71, "message_id": first["message_id"], "text": "one, edited"}),
    )
    .await;
    let revision = log["revision"].as_u64().expect("revision");
    let (_, log) = tg
        .control_get(&format!("/control/chats/71/messages?after={revision}"))
        .await;
    let texts: Vec<&str> = log["messages"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(texts, ["one, edited", "two"]);
    assert!(
        log["last_action"].is_null(),
        "no new action since {revision}"
    );

    let (_, with_user) = tg
        .control_get("/control/chats/71/messages?include_user=true")
        .await;
    assert_eq!(with_user["messages"][0]["text"], "hi");
    let (_, nothing_new) = tg
        .control_get(&format!(
            "/control/chats/71/messages?after={}",
            log["revision"]
        ))
        .await;
    assert_eq!(nothing_new["messages"], json!([]));
}

#[tokio::test]
async fn buttons_callbacks_and_answers() {
    let tg = start(config()).await;
    tg.user_says(81, "hi").await;
    let sent = tg
        .ok(
            "sendMessage",
            json!({"chat_id": 81, "text": "Pick", "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "pick:a"}]]}}),
        )
        .await;
    let (status, _) = tg
        .control(
            "/control/callbacks",
            json!({"user_id": 81, "message_id": sent["message_id"], "data": "pick:b"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, pressed) = tg
        .control(
            "/control/callbacks",
            json!({"user_id": 81, "message_id": sent["message_id"], "data": "pick:a"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let updates = tg
        .ok("getUpdates", json!({"offset": pressed["update_id"]}))
        .await;
    let query = &updates[0]["callback_query"];
    assert_eq!(query["id"], pressed["callback_query_id"]);
    assert_eq!(query["data"], "pick:a");
    assert_eq!(query["from"]["id"], 81);
    assert_eq!(query["message"]["message_id"], sent["message_id"]);
    assert!(query["chat_instance"].is_string());

    let id = pressed["callback_query_id"].as_str().expect("id");
    tg.ok(
        "answerCallbackQuery",
        json!({"callback_query_id": id, "text": "Done"}),
    )
    .await;
    let (_, body) = tg
        .call("answerCallbackQuery", json!({"callback_query_id": id}))
        .await;
    assert_eq!(
        body["description"],
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );
    let (_, answer) = tg.control_get(&format!("/control/callbacks/{id}")).await;
    assert_eq!(answer["answered"], true);
    assert_eq!(answer["text"], "Done");
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

#[tokio::test]
async fn photos_and_voice_by_upload_then_get_file_and_download() {
    let tg = start(config()).await;
    tg.user_says(91, "send me a picture").await;
    let image = png(1000, 500);
    let form = reqwest::multipart::Form::new()
        .text("chat_id", "91")
        .text("caption", "<i>for you</i>")
        .text("parse_mode", "HTML")
        .part(
            "photo",
            reqwest::multipart::Part::bytes(image.clone()).file_name("persona.png"),
        );
    let response = tg
        .http
        .post(tg.url(&format!("/bot{TOKEN}/sendPhoto")))
        .multipart(form)
        .send()
        .await
        .expect("request");
    let (status, body) = Tg::read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let message = &body["result"];
    assert_eq!(message["caption"], "for you");
    assert_eq!(message["caption_entities"][0]["type"], "italic");
    let sizes = message["photo"].as_array().expect("sizes");
    let dims: Vec<(i64, i64)> = sizes
        .iter()
        .map(|s| {
            (
                s["width"].as_i64().expect("w"),
                s["height"].as_i64().expect("h"),
            )
        })
        .collect();
    assert_eq!(dims, [(90, 45), (320, 160), (800, 400), (1000, 500)]);
    let largest = sizes.last().expect("largest");

    let file = tg
        .ok("getFile", json!({"file_id": largest["file_id"]}))
        .await;
    assert_eq!(file["file_size"], image.len());
    let path = file["file_path"].as_str().expect("path");
    let downloaded = tg
        .http
        .get(tg.url(&format!("/file/bot{TOKEN}/{path}")))
        .send()
        .await
        .expect("download");
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(
        downloaded.bytes().await.expect("bytes").as_ref(),
        image.as_slice()
    );
    let missing = tg
        .http
        .get(tg.url(&format!("/file/bot{TOKEN}/photos/nope.jpg")))
        .send()
        .await
        .expect("download");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let (_, body) = tg.call("getFile", json!({"file_id": "nope"})).await;
    assert_eq!(body["description"], "Bad Request: invalid file_id");

    // Sending again by file_id reuses the stored photo.
    let again = tg
        .ok(
            "sendPhoto",
            json!({"chat_id": 91, "photo": largest["file_id"]}),
        )
        .await;
    assert_eq!(again["photo"], message["photo"]);

    let not_an_image = reqwest::multipart::Form::new().text("chat_id", "91").part(
        "photo",
        reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("x.png"),
    );
    let response = tg
        .http
        .post(tg.url(&format!("/bot{TOKEN}/sendPhoto")))
        .multipart(not_an_image)
        .send()
        .await
        .expect("request");
    let (_, body) = Tg::read(response).await;
    assert_eq!(body["description"], "Bad Request: IMAGE_PROCESS_FAILED");

    // A voice note: OGG with a last page at 2.5 s.
    let mut ogg = b"OggS\0\x04".to_vec();
    ogg.extend_from_slice(&120_000u64.to_le_bytes());
    let form = reqwest::multipart::Form::new().text("chat_id", "91").part(
        "voice",
        reqwest::multipart::Part::bytes(ogg.clone()).file_name("reply.ogg"),
    );
    let response = tg
        .http
        .post(tg.url(&format!("/bot{TOKEN}/sendVoice")))
        .multipart(form)
        .send()
        .await
        .expect("request");
    let (status, body) = Tg::read(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let voice = &body["result"]["voice"];
    assert_eq!(voice["duration"], 3);
    assert_eq!(voice["mime_type"], "audio/ogg");
    let file = tg.ok("getFile", json!({"file_id": voice["file_id"]})).await;
    let bytes = tg
        .http
        .get(tg.url(&format!(
            "/file/bot{TOKEN}/{}",
            file["file_path"].as_str().expect("path")
        )))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(bytes.as_ref(), ogg.as_slice());
}

#[tokio::test]
async fn stars_invoice_pre_checkout_payment_and_refund() {
    let clock = Arc::new(ManualClock::new(
        DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
    ));
    let tg = start(Config {
        clock: clock.clone(),
        ..config()
    })
    .await;
    tg.user_says(101, "/buy").await;
    let prices = json!([{"label": "Premium", "amount": 250}]);
    let invoice = tg
        .ok(
            "sendInvoice",
            json!({"chat_id": 101, "title": "Premium", "description": "30 days", "payload": "sub:30", "currency": "XTR", "prices": prices}),
        )
        .await;
    assert_eq!(invoice["invoice"]["total_amount"], 250);
    assert_eq!(invoice["invoice"]["currency"], "XTR");
    let (_, body) = tg
        .call(
            "sendInvoice",
            json!({"chat_id": 101, "title": "T", "description": "D", "payload": "p", "currency": "XTR", "prices": [{"label": "a", "amount": 1}, {"label": "b", "amount": 1}]}),
        )
        .await;
    assert_eq!(body["description"], "Bad Request: STARS_INVOICE_INVALID");

    let (status, query) = tg
        .control(
            "/control/pre_checkout",
            json!({"user_id": 101, "message_id": invoice["message_id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{query}");
    let query_id = query["pre_checkout_query_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let updates = tg
        .ok("getUpdates", json!({"offset": query["update_id"]}))
        .await;
    let pre_checkout = &updates[0]["pre_checkout_query"];
    assert_eq!(pre_checkout["invoice_payload"], "sub:30");
    assert_eq!(pre_checkout["total_amount"], 250);

    tg.ok(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": query_id, "ok": true}),
    )
    .await;
    let offset = query["update_id"].as_i64().expect("id") + 1;
    let updates = tg.ok("getUpdates", json!({"offset": offset})).await;
    let payment = &updates[0]["message"]["successful_payment"];
    assert_eq!(payment["invoice_payload"], "sub:30");
    assert_eq!(payment["currency"], "XTR");
    let charge = payment["telegram_payment_charge_id"]
        .as_str()
        .expect("charge");
    let (_, status) = tg
        .control_get(&format!("/control/pre_checkout/{query_id}"))
        .await;
    assert_eq!(
        status,
        json!({"answered": true, "ok": true, "error_message": null, "paid": true})
    );

    let (_, body) = tg
        .call(
            "refundStarPayment",
            json!({"user_id": 999, "telegram_payment_charge_id": charge}),
        )
        .await;
    assert_eq!(body["description"], "Bad Request: CHARGE_NOT_FOUND");
    tg.ok(
        "refundStarPayment",
        json!({"user_id": 101, "telegram_payment_charge_id": charge}),
    )
    .await;
    let (_, body) = tg
        .call(
            "refundStarPayment",
            json!({"user_id": 101, "telegram_payment_charge_id": charge}),
        )
        .await;
    assert_eq!(body["description"], "Bad Request: CHARGE_ALREADY_REFUNDED");

    // A pre-checkout query must be answered within 10 seconds.
    let link = tg
        .ok(
            "createInvoiceLink",
            json!({"title": "Sub", "description": "Monthly", "payload": "sub:m", "currency": "XTR", "prices": prices, "subscription_period": 2_592_000}),
        )
        .await;
    let (_, late) = tg
        .control(
            "/control/pre_checkout",
            json!({"user_id": 101, "invoice_link": link}),
        )
        .await;
    clock.advance(TimeDelta::seconds(11));
    let (_, body) = tg
        .call(
            "answerPreCheckoutQuery",
            json!({"pre_checkout_query_id": late["pre_checkout_query_id"], "ok": true}),
        )
        .await;
    assert_eq!(
        body["description"],
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );

    // Without auto_pay the payment waits for the control API.
    let (_, manual) = tg
        .control(
            "/control/pre_checkout",
            json!({"user_id": 101, "invoice_link": link, "auto_pay": false}),
        )
        .await;
    let manual_id = manual["pre_checkout_query_id"].clone();
    let (status, _) = tg
        .control(
            "/control/payments",
            json!({"pre_checkout_query_id": manual_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    tg.ok(
        "answerPreCheckoutQuery",
        json!({"pre_checkout_query_id": manual_id, "ok": true}),
    )
    .await;
    let (status, paid) = tg
        .control(
            "/control/payments",
            json!({"pre_checkout_query_id": manual_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let updates = tg
        .ok("getUpdates", json!({"offset": paid["update_id"]}))
        .await;
    let payment = &updates[0]["message"]["successful_payment"];
    assert_eq!(payment["is_recurring"], true);
    assert_eq!(
        payment["subscription_expiration_date"],
        1_700_000_011 + 2_592_000
    );
}

#[tokio::test]
async fn raw_updates_allowed_updates_and_commands() {
    let tg = start(config()).await;
    let raw = json!({
        "update_id": 5000,
        "edited_message": {"message_id": 3, "date": 1, "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "is_bot": false, "first_name": "E"}, "text": "edited"}
    });
    let (status, injected) = tg.control("/control/updates", raw.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(injected, json!({"update_id": 5000, "accepted": true}));
    let updates = tg.ok("getUpdates", json!({})).await;
    assert_eq!(updates, json!([raw]));
    let (status, _) = tg
        .control(
            "/control/updates",
            json!({"message": {}, "callback_query": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The raw update made user 7 known, so the bot can answer them.
    tg.ok("sendMessage", json!({"chat_id": 7, "text": "hi"}))
        .await;

    // allowed_updates given to getUpdates filters what is queued next.
    tg.ok(
        "getUpdates",
        json!({"offset": 5001, "allowed_updates": ["callback_query"]}),
    )
    .await;
    let (_, dropped) = tg
        .control(
            "/control/updates",
            json!({"message": {"message_id": 1, "chat": {"id": 7, "type": "private"}, "date": 1}}),
        )
        .await;
    assert_eq!(dropped["accepted"], false);
    assert_eq!(tg.ok("getUpdates", json!({})).await, json!([]));

    let commands = json!([{"command": "start", "description": "Begin"}, {"command": "persona", "description": "Pick a persona"}]);
    tg.ok("setMyCommands", json!({"commands": commands})).await;
    assert_eq!(tg.ok("getMyCommands", json!({})).await, commands);
    assert_eq!(
        tg.ok("getMyCommands", json!({"language_code": "ru"})).await,
        json!([])
    );
    let (_, body) = tg
        .call(
            "setMyCommands",
            json!({"commands": [{"command": "Bad", "description": "x"}]}),
        )
        .await;
    assert_eq!(body["description"], "Bad Request: BOT_COMMAND_INVALID");
}

#[tokio::test]
async fn shutdown_ends_waiting_long_polls() {
    let tg = start(config()).await;
    let Tg {
        stand_in,
        handle,
        http,
    } = tg;
    let url = format!("{}/bot{TOKEN}/getUpdates?timeout=600", handle.base_url());
    let poll = tokio::spawn(async move { http.get(url).send().await });
    tokio::time::timeout(Duration::from_secs(10), async {
        while stand_in.counters().bot_api_calls < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("poll arrives");
    tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("shutdown does not wait for the 600 s poll")
        .expect("clean");
    let response = poll.await.expect("task").expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn updates_go_to_a_sink_and_bot_activity_is_observed() {
    use vitte_stand_ins::telegram::{ActivityKind, ButtonPress};
    let tg = start(config()).await;
    let taken = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = taken.clone();
    tg.stand_in
        .deliver_to(Arc::new(move |u| sink.lock().expect("lock").push(u)));
    let mut seen = tg.stand_in.observe();

    let injected = tg.user_says(5, "hello").await;
    let updates = taken.lock().expect("lock").clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["update_id"], injected["update_id"]);
    assert_eq!(updates[0]["message"]["text"], "hello");
    // Taken by the sink, so nothing is left for getUpdates.
    assert_eq!(tg.ok("getUpdates", json!({})).await, json!([]));

    tg.ok("sendChatAction", json!({"chat_id": 5, "action": "typing"}))
        .await;
    let sent = tg
        .ok(
            "sendMessage",
            json!({"chat_id": 5, "text": "hi", "reply_markup":
                {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}}),
        )
        .await;
    let message_id = sent["message_id"].as_i64().expect("id");
    tg.ok(
        "editMessageText",
        json!({"chat_id": 5, "message_id": message_id, "text": "hi again"}),
    )
    .await;

    let typing = seen.recv().await.expect("typing");
    assert_eq!(
        (typing.kind, typing.chat_id, typing.text.as_str()),
        (ActivityKind::ChatAction, 5, "typing")
    );
    let message = seen.recv().await.expect("message");
    assert_eq!(message.kind, ActivityKind::Sent);
    assert_eq!(message.message_id, message_id);
    assert_eq!(message.text, "hi");
    assert_eq!(message.buttons, ["go"]);
    assert!(message.at >= typing.at);
    let edit = seen.recv().await.expect("edit");
    assert_eq!(edit.kind, ActivityKind::Edited);
    assert_eq!(edit.text, "hi again");
    assert!(edit.buttons.is_empty());

    // A press on a button also reaches the sink, as a callback query.
    let sent = tg
        .ok(
            "sendMessage",
            json!({"chat_id": 5, "text": "pick", "reply_markup":
                {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}}),
        )
        .await;
    tg.stand_in
        .press_button(&ButtonPress {
            user_id: 5,
            message_id: sent["message_id"].as_i64().expect("id"),
            data: "go".into(),
        })
        .expect("press");
    let updates = taken.lock().expect("lock").clone();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1]["callback_query"]["data"], "go");
}
