//! The chat page the Telegram stand-in serves at `/`, and the control routes
//! it relies on: the bot's profile with its command menu, and files by id.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use vitte_stand_ins::Handle;
use vitte_stand_ins::telegram::{BotCommand, Config, RateLimits, TelegramStandIn, UserMessage};

const TOKEN: &str = "4242:TEST-token";

struct Tg {
    stand_in: TelegramStandIn,
    handle: Handle,
    http: reqwest::Client,
}

async fn start() -> Tg {
    let config = Config {
        token: TOKEN.into(),
        bot_username: "page_bot".into(),
        bot_first_name: "Mira Bot".into(),
        rate_limits: RateLimits::disabled(),
        ..Config::default()
    };
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

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.json().await.expect("json body"))
    }

    /// A Bot API call that must succeed; returns `result`.
    async fn ok(&self, method: &str, params: Value) -> Value {
        let response = self
            .http
            .post(self.url(&format!("/bot{TOKEN}/{method}")))
            .json(&params)
            .send()
            .await
            .expect("request");
        let body: Value = response.json().await.expect("json body");
        assert_eq!(body["ok"], true, "{method}: {body}");
        body["result"].clone()
    }

    fn user_says(&self, user_id: i64, text: &str) {
        self.stand_in
            .send_user_message(&UserMessage {
                user_id,
                first_name: "Ann".into(),
                last_name: None,
                username: None,
                language_code: Some("en".into()),
                text: text.into(),
            })
            .expect("injected");
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The values of every `src="..."` and `href="..."` in a page.
fn references(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = page;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').expect("closing quote");
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}

#[tokio::test]
async fn the_page_and_its_files_are_served_from_the_binary_with_nothing_from_elsewhere() {
    let tg = start().await;

    let page = tg.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(content_type(&page), "text/html; charset=utf-8");
    let policy = page
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let html = page.text().await.expect("body");
    assert!(html.contains("<textarea id=\"input\""));

    let links = references(&html);
    assert!(links.contains(&"/demo.js".to_owned()), "{links:?}");
    assert!(links.contains(&"/demo.css".to_owned()), "{links:?}");
    for link in &links {
        // Same-origin paths, in-page icons and inline data only: the demo runs offline.
        assert!(
            link.starts_with('/') || link.starts_with('#') || link.starts_with("data:"),
            "{link}"
        );
        if link.starts_with('/') {
            let response = tg.get(link).await;
            assert_eq!(response.status(), StatusCode::OK, "{link}");
        }
    }

    let script = tg.get("/demo.js").await;
    assert_eq!(content_type(&script), "text/javascript; charset=utf-8");
    let script = script.text().await.expect("body");
    assert!(script.contains("/control/chats/"));
    assert!(
        !script.contains("innerHTML"),
        "bot text must never become markup"
    );

    let style = tg.get("/demo.css").await;
    assert_eq!(content_type(&style), "text/css; charset=utf-8");
    let style = style.text().await.expect("body");
    for url in style.split("url(").skip(1) {
        let target = url.trim_start_matches(['"', '\'']);
        assert!(target.starts_with("data:"), "{target}");
    }
    assert!(!style.contains("@import"));

    // The page's paths do not shadow the Bot API.
    let me = tg.ok("getMe", json!({})).await;
    assert_eq!(me["username"], "page_bot");
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(b"\x08\x06\0\0\0rest-of-the-picture");
    bytes
}

#[tokio::test]
async fn a_photo_the_bot_sent_downloads_by_file_id_with_its_real_type() {
    let tg = start().await;
    tg.user_says(7, "hi");
    let picture = png(640, 480);
    let form = reqwest::multipart::Form::new().text("chat_id", "7").part(
        "photo",
        reqwest::multipart::Part::bytes(picture.clone()).file_name("persona.png"),
    );
    let sent: Value = tg
        .http
        .post(tg.url(&format!("/bot{TOKEN}/sendPhoto")))
        .multipart(form)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let sizes = sent["result"]["photo"].as_array().expect("photo sizes");
    let largest = sizes
        .last()
        .and_then(|s| s["file_id"].as_str())
        .expect("file_id");

    let file = tg.get(&format!("/control/files/{largest}")).await;
    assert_eq!(file.status(), StatusCode::OK);
    // Stored under a .jpg path, but the bytes are a PNG and say so.
    assert_eq!(content_type(&file), "image/png");
    assert_eq!(
        file.bytes().await.expect("bytes").as_ref(),
        picture.as_slice()
    );

    let (status, body) = tg.get_json("/control/files/AgACnothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "unknown file AgACnothing");
}

fn names(commands: &[BotCommand]) -> Vec<&str> {
    commands.iter().map(|c| c.command.as_str()).collect()
}

#[tokio::test]
async fn the_profile_names_the_bot_and_picks_the_menu_a_client_would_show() {
    let tg = start().await;

    let (status, profile) = tg.get_json("/control/bot").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        profile,
        json!({"id": 4242, "first_name": "Mira Bot", "username": "page_bot", "commands": []})
    );

    let menu = |names: &[&str]| -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| json!({"command": n, "description": format!("about {n}")}))
                .collect(),
        )
    };
    tg.ok(
        "setMyCommands",
        json!({"commands": menu(&["help", "reset"])}),
    )
    .await;
    tg.ok(
        "setMyCommands",
        json!({"commands": menu(&["pomoshch"]), "language_code": "ru"}),
    )
    .await;
    tg.ok(
        "setMyCommands",
        json!({"commands": menu(&["private"]), "scope": {"type": "all_private_chats"}, "language_code": "de"}),
    )
    .await;
    tg.ok(
        "setMyCommands",
        json!({"commands": menu(&["vip"]), "scope": {"type": "chat", "chat_id": 7}}),
    )
    .await;
    tg.ok(
        "setMyCommands",
        json!({"commands": menu(&["admin"]), "scope": {"type": "all_group_chats"}}),
    )
    .await;

    let (_, profile) = tg.get_json("/control/bot?chat_id=8&language_code=en").await;
    assert_eq!(
        profile["commands"],
        json!([
            {"command": "help", "description": "about help"},
            {"command": "reset", "description": "about reset"},
        ])
    );
    let menu_for = |chat: Option<i64>, language: Option<&str>| {
        tg.stand_in.bot_profile(chat, language).commands
    };
    assert_eq!(names(&menu_for(Some(8), Some("ru"))), ["pomoshch"]);
    assert_eq!(names(&menu_for(Some(8), Some("de"))), ["private"]);
    assert_eq!(names(&menu_for(Some(7), Some("ru"))), ["vip"]);
    assert_eq!(names(&menu_for(None, None)), ["help", "reset"]);

    tg.ok("deleteMyCommands", json!({})).await;
    assert_eq!(names(&menu_for(Some(8), Some("en"))), Vec::<&str>::new());
    assert_eq!(names(&menu_for(Some(8), Some("ru"))), ["pomoshch"]);
}
