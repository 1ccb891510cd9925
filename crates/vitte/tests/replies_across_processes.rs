//! Two bot processes on one PostgreSQL database: a message handled by one of
//! them while the other is still writing the reply to an earlier message is
//! answered as soon as that reply is done, in order, and not only when the
//! recovery sweep finds it: the second process leaves a request on the
//! dialog, and the first answers again. Both bot roles
//! run in this process, each with its own store connections, as `vitte`
//! assembles them, against the Telegram and LLM stand-ins. Needs the test
//! PostgreSQL (`VITTE_TEST_POSTGRES_URL`, else the local default) and fails
//! without it: it is never skipped.

mod store_probe;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;
use vitte_domain::SystemClock;
use vitte_domain::ids::{PersonaSlug, TelegramUserId};
use vitte_domain::model::{PersonaCard, TelegramProfile};
use vitte_runtime::engine::{SchemaPolicy, ensure_schema, open_limiter, open_store, with_cache};
use vitte_runtime::{AppContext, Settings, Shutdown, run_roles};
use vitte_stand_ins::Handle;
use vitte_stand_ins::llm::{self, BehaviourPatch, LlmStandIn};
use vitte_stand_ins::telegram::{self, TelegramStandIn, UserMessage};

use store_probe::Recorder;

const WAIT: Duration = Duration::from_secs(30);
const USER: i64 = 5151;
const FIRST_NAME: &str = "Anna";
const SECRET: &str = "across-processes-secret";
/// How long the model takes to start each answer.
const THINKING: Duration = Duration::from_secs(2);
/// A message is recovered by the sweep only once it is this old (the
/// responder's `STALE`); an answer sooner did not come from the sweep.
const RECOVERY_AFTER: Duration = Duration::from_secs(10);

/// `vitte`'s settings, read from flags only.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

/// One bot process: its store (recorded) and its context.
struct Process {
    recorder: Arc<Recorder>,
    ctx: AppContext,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the bot role on `listener` with `settings`, on its own connections.
async fn start(settings: Settings, listener: TcpListener) -> Process {
    let bare = open_store(&settings.database_url, &settings.pool())
        .await
        .expect("store");
    ensure_schema(&*bare, SchemaPolicy::Migrate)
        .await
        .expect("schema");
    let recorder = Recorder::new(bare);
    let store = with_cache(
        recorder.clone(),
        &settings.database_url,
        settings.redis_url.as_ref(),
    )
    .await
    .expect("cache");
    let ctx = AppContext {
        settings: Arc::new(settings),
        store,
        limiter: open_limiter(None).await.expect("limiter"),
        clock: Arc::new(SystemClock),
        shutdown: Shutdown::new(),
    };
    let bot = vitte_bot::parts(&ctx).expect("bot role");
    let server = {
        let ctx = ctx.clone();
        tokio::spawn(async move { run_roles(&ctx, listener, vec![bot]).await })
    };
    Process {
        recorder,
        ctx,
        server,
    }
}

/// The bot's messages in the chat once one after the first `seen` contains `needle`.
async fn wait_for_text(tg: &TelegramStandIn, seen: usize, needle: &str) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = tg
            .chat_log(USER, 0, false, Duration::from_millis(500))
            .await;
        if log.messages[seen.min(log.messages.len())..]
            .iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains(needle)))
        {
            return log.messages;
        }
        assert!(
            Instant::now() < deadline,
            "no reply containing {needle:?}; chat: {:#?}",
            log.messages
        );
    }
}

fn say(tg: &TelegramStandIn, text: &str) {
    tg.send_user_message(&UserMessage {
        user_id: USER,
        first_name: FIRST_NAME.to_owned(),
        last_name: None,
        username: None,
        language_code: Some("en".to_owned()),
        text: text.to_owned(),
    })
    .expect("message injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_taken_by_another_process_is_answered_right_after_the_reply_in_progress() {
    let tg = TelegramStandIn::new(telegram::Config::default()).expect("stand-in config");
    let tg_handle: Handle = tg
        .clone()
        .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
        .expect("spawn");
    let model = LlmStandIn::new(llm::Config::default());
    model
        .configure(BehaviourPatch {
            first_token_ms: Some(u64::try_from(THINKING.as_millis()).expect("small")),
            ..Default::default()
        })
        .expect("configure");
    let llm_handle: Handle = model
        .clone()
        .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
        .expect("spawn");
    let database = vitte_store_postgres::testing::fresh_database_url().await;
    // Telegram posts every update to the first process; both take updates
    // from the shared inbox.
    let first_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let webhook = format!(
        "http://{}/telegram/webhook",
        first_listener.local_addr().expect("addr")
    );
    let settings = || {
        Cli::try_parse_from([
            "vitte".to_owned(),
            format!("--database-url={database}"),
            format!("--telegram-bot-token={}", tg.token()),
            format!("--telegram-api-url={}", tg_handle.base_url()),
            format!("--telegram-webhook-url={webhook}"),
            format!("--telegram-webhook-secret={SECRET}"),
            format!(
                "--llm-base-url={}/v1",
                llm_handle.base_url().trim_end_matches('/')
            ),
            "--llm-model=vitte-stand-in".to_owned(),
            "--reply-streaming=false".to_owned(),
            "--shutdown-timeout=5s".to_owned(),
        ])
        .expect("settings")
        .settings
    };

    let first = start(settings(), first_listener).await;
    let second = start(
        settings(),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    )
    .await;

    // The person has onboarded and talks to Mira.
    let store = open_store(&settings().database_url, &settings().pool())
        .await
        .expect("store");
    let now = Utc::now();
    let card = PersonaCard {
        name: "Mira".to_owned(),
        first_message: "Hello, I am Mira.".to_owned(),
        ..PersonaCard::default()
    };
    let mira = store
        .upsert_persona(&PersonaSlug::parse("mira").expect("slug"), &card, None, now)
        .await
        .expect("persona");
    let profile = TelegramProfile {
        telegram_id: TelegramUserId::try_from(USER).expect("id"),
        first_name: FIRST_NAME.to_owned(),
        last_name: None,
        username: None,
        language_code: Some("en".to_owned()),
    };
    let anna = store.upsert_user(&profile, now).await.expect("user");
    store
        .accept_terms(anna.id, vitte_bot::context::TERMS_VERSION, true, now)
        .await
        .expect("terms");
    store
        .set_current_persona(anna.id, mira.id)
        .await
        .expect("persona chosen");

    // The first process takes the first message and starts its reply.
    second.recorder.claim(false);
    say(&tg, "first thought");
    let deadline = Instant::now() + WAIT;
    while model.stats().requests == 0 {
        assert!(Instant::now() < deadline, "the model was never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second process takes the next message while that reply is written.
    first.recorder.claim(false);
    second.recorder.claim(true);
    let mark = second.recorder.mark();
    let first_mark = first.recorder.mark();
    let sent = Instant::now();
    say(&tg, "second thought");

    let seen = wait_for_text(&tg, 0, "\"first thought\"").await.len();
    let log = wait_for_text(&tg, seen, "\"second thought\"").await;
    let waited = sent.elapsed();
    println!("the second message was answered {waited:?} after it was sent");
    assert!(
        waited < RECOVERY_AFTER,
        "answered after {waited:?}: only the recovery sweep saw it"
    );
    // In order: the first reply, then the second.
    let replies: Vec<&str> = log.iter().filter_map(|m| m["text"].as_str()).collect();
    let position = |needle: &str| replies.iter().position(|t| t.contains(needle));
    assert!(
        position("\"first thought\"") < position("\"second thought\""),
        "{replies:#?}"
    );
    // The first process stored both replies; the second asked for the
    // lease once, was refused, and did not poll for it.
    let count = |calls: &[&str], name: &str| calls.iter().filter(|&&c| c == name).count();
    let deadline = Instant::now() + WAIT;
    while count(&first.recorder.since(first_mark), "complete_reply") < 2 {
        assert!(
            Instant::now() < deadline,
            "the first process did not answer again: {:?}",
            first.recorder.since(first_mark)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = second.recorder.since(mark);
    assert_eq!(count(&calls, "lease_reply"), 1, "{calls:?}");
    assert_eq!(count(&calls, "complete_reply"), 0, "{calls:?}");

    for process in [first, second] {
        process.ctx.shutdown.trigger();
        tokio::time::timeout(WAIT, process.server)
            .await
            .expect("the bot stops")
            .expect("task")
            .expect("served");
    }
}
