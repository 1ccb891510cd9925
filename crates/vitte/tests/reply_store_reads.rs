//! What one chat message costs the database: the bot role assembled in this
//! process as `vitte` assembles it (the store behind the cache, long
//! polling, inbox, handlers, responder), against the Telegram and LLM
//! stand-ins, with a store wrapper underneath the cache that records every
//! call reaching the database. Once a message has warmed the caches, each
//! further message, with its reply delivered, reads the store at most once:
//! in a new dialog and in a long one whose history no longer fits the
//! prompt. Calls made on timers whatever the traffic (the inbox finding
//! nothing to claim, the recovery sweep, the refresh of everyone's spend at
//! most every 30 seconds) are reported apart. Run with `--nocapture` to see
//! each message's reads and writes. A reply already shown when storing it
//! fails (an exhausted pool) is stored by trying again, and so never shown
//! twice.

mod store_probe;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::time::Instant;
use vitte_domain::SystemClock;
use vitte_domain::ids::{DialogId, PersonaSlug, TelegramUserId};
use vitte_domain::model::{MessageState, NewMessage, PersonaCard, Role, TelegramProfile};
use vitte_domain::ports::{MessageRepo, Store};
use vitte_runtime::engine::{SchemaPolicy, ensure_schema, open_limiter, open_store, with_cache};
use vitte_runtime::{AppContext, Settings, Shutdown, run_roles};
use vitte_stand_ins::Handle;
use vitte_stand_ins::llm::{self, LlmStandIn};
use vitte_stand_ins::telegram::{self, TelegramStandIn, UserMessage};

use store_probe::{Cost, Recorder};

const WAIT: Duration = Duration::from_secs(30);
const USER: i64 = 4242;
const FIRST_NAME: &str = "Anna";
/// Messages measured after the one that warms the caches.
const WARM_MESSAGES: usize = 5;

/// `vitte`'s settings, read from flags only.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
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

/// A dialog that already holds `earlier` exchanges of long messages, all
/// folded into its summary: the history window is full and the prompt
/// cannot hold all of it.
async fn long_past(store: &dyn Store, dialog: DialogId, earlier: usize, now: DateTime<Utc>) {
    let long = "The lighthouse keeper told a long story about the sea. ".repeat(12);
    let mut last = None;
    for i in 0..earlier {
        let asked = store
            .append_message(
                &NewMessage {
                    dialog_id: dialog,
                    role: Role::User,
                    text: format!("{i}: {long}"),
                    state: MessageState::Answered,
                    telegram_message_id: None,
                    update_id: None,
                    reply_to: None,
                    usage: None,
                },
                now,
            )
            .await
            .expect("user message");
        let reply = store
            .append_message(
                &NewMessage {
                    dialog_id: dialog,
                    role: Role::Assistant,
                    text: format!("{i}: {long}"),
                    state: MessageState::Sent,
                    telegram_message_id: None,
                    update_id: None,
                    reply_to: Some(asked.id),
                    usage: None,
                },
                now,
            )
            .await
            .expect("reply");
        last = Some(reply.id);
    }
    if let Some(last) = last {
        store
            .put_summary(dialog, "They talked about the sea.", last, now)
            .await
            .expect("summary");
    }
}

/// Runs the bot role against the stand-ins for a person who has onboarded
/// and talks to Mira in a dialog with `earlier` exchanges behind it, sends
/// `1 + WARM_MESSAGES` messages one after another, and returns what each
/// cost the store, printed.
async fn measure(earlier: usize) -> Vec<Cost> {
    measure_with(earlier, 0).await.0
}

/// [`measure`], with the first `failing` attempts to store the second
/// message's reply failing as an exhausted pool does; also returns the
/// texts the bot showed and the messages left pending.
async fn measure_with(earlier: usize, failing: usize) -> (Vec<Cost>, Vec<String>, usize) {
    let tg = TelegramStandIn::new(telegram::Config::default()).expect("stand-in config");
    let tg_handle: Handle = tg
        .clone()
        .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
        .expect("spawn");
    let model = LlmStandIn::new(llm::Config::default());
    let llm_handle: Handle = model
        .clone()
        .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
        .expect("spawn");
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = Cli::try_parse_from([
        "vitte".to_owned(),
        format!(
            "--database-url=sqlite://{}",
            dir.path().join("reads.db").display()
        ),
        format!("--telegram-bot-token={}", tg.token()),
        format!("--telegram-api-url={}", tg_handle.base_url()),
        format!(
            "--llm-base-url={}/v1",
            llm_handle.base_url().trim_end_matches('/')
        ),
        "--llm-model=vitte-stand-in".to_owned(),
        "--reply-streaming=false".to_owned(),
        "--shutdown-timeout=5s".to_owned(),
    ])
    .expect("settings");
    let settings = cli.settings;
    settings.validate().expect("valid settings");

    // Onboarding is done in the store directly, so that none of its writes
    // invalidates a cache entry while messages are measured.
    let bare = open_store(&settings.database_url, &settings.pool())
        .await
        .expect("store");
    ensure_schema(&*bare, SchemaPolicy::Migrate)
        .await
        .expect("schema");
    let now = Utc::now();
    let card = PersonaCard {
        name: "Mira".to_owned(),
        description: "Mira keeps a lighthouse.".to_owned(),
        first_message: "Hello, I am Mira.".to_owned(),
        ..PersonaCard::default()
    };
    let mira = bare
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
    let anna = bare.upsert_user(&profile, now).await.expect("user");
    bare.accept_terms(anna.id, vitte_bot::context::TERMS_VERSION, true, now)
        .await
        .expect("terms");
    bare.set_current_persona(anna.id, mira.id)
        .await
        .expect("persona chosen");
    let dialog = bare
        .open_dialog(anna.id, mira.id, now)
        .await
        .expect("dialog");
    long_past(&*bare, dialog.id, earlier, now).await;

    // As `vitte` builds it: the cache in front of the store.
    let recorder = Recorder::new(bare);
    let store = with_cache(
        recorder.clone(),
        &settings.database_url,
        settings.redis_url.as_ref(),
    )
    .await
    .expect("cache");
    let limiter = open_limiter(None).await.expect("limiter");
    let ctx = AppContext {
        settings: Arc::new(settings),
        store,
        limiter,
        clock: Arc::new(SystemClock),
        shutdown: Shutdown::new(),
    };
    let bot = vitte_bot::parts(&ctx).expect("bot role");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = {
        let ctx = ctx.clone();
        tokio::spawn(async move { run_roles(&ctx, listener, vec![bot]).await })
    };

    let mut costs = Vec::new();
    let mut seen = 0;
    let started = Instant::now();
    for i in 0..=WARM_MESSAGES {
        if i == 1 {
            recorder.fail_replies(failing);
        }
        let mark = recorder.mark();
        let text = format!("note number {i}");
        tg.send_user_message(&UserMessage {
            user_id: USER,
            first_name: FIRST_NAME.to_owned(),
            last_name: None,
            username: None,
            language_code: Some("en".to_owned()),
            text: text.clone(),
        })
        .expect("message injected");
        // The stand-in model quotes the message it answers.
        seen = wait_for_text(&tg, seen, &format!("\"{text}\"")).await.len();
        // Delivered; the reply is done once the responder let the dialog go
        // and the inbox marked the update handled.
        recorder
            .wait_for(mark, &["complete_reply", "append_from_update"])
            .await;
        costs.push(Cost::of(&recorder.since(mark)));
    }
    let elapsed = started.elapsed();

    for (i, cost) in costs.iter().enumerate() {
        let label = if i == 0 { "cold" } else { "warm" };
        println!(
            "{earlier} exchanges before, message {i} ({label}): {} store reads {:?}; \
             {} writes {:?}; on timers meanwhile {:?}",
            cost.reads(),
            cost.reads,
            cost.writes(),
            cost.writes,
            cost.periodic
        );
    }
    // Everyone's spend is re-read on a timer, never per message.
    let refreshes: usize = costs
        .iter()
        .map(|c| {
            c.periodic
                .get("usage_since (everyone)")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    let allowed = 1 + usize::try_from(elapsed.as_secs() / 30).unwrap_or(usize::MAX);
    assert!(
        refreshes <= allowed,
        "{refreshes} refreshes of everyone's spend in {elapsed:?}"
    );

    ctx.shutdown.trigger();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the bot stops")
        .expect("task")
        .expect("served");
    let shown = tg
        .chat_log(USER, 0, false, Duration::from_millis(100))
        .await
        .messages
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    let pending = recorder
        .pending_messages(dialog.id)
        .await
        .expect("pending")
        .len();
    (costs, shown, pending)
}

/// After the first message, each one reads only the dialog's newest
/// messages (history and pending together), and writes what it must.
fn assert_warm_messages_read_once(costs: &[Cost]) {
    assert!(costs[0].reads() > 1, "the first message warms the caches");
    for (i, cost) in costs.iter().enumerate().skip(1) {
        assert!(
            cost.reads() <= 1,
            "warm message {i} read the store {} times: {:?}",
            cost.reads(),
            cost.reads
        );
        assert!(
            cost.reads.keys().all(|&r| r == "recent_messages"),
            "message {i}: {cost:?}"
        );
        // The message with its update's end; the lease; the reply with its
        // intimacy and the lease's release; the inbox's record and claim.
        for write in [
            "record_update",
            "claim_updates",
            "append_from_update",
            "lease_reply",
            "complete_reply",
        ] {
            assert_eq!(cost.writes.get(write), Some(&1), "message {i}: {cost:?}");
        }
        assert!(
            cost.writes.keys().all(|w| !matches!(
                *w,
                "finish_update" | "add_intimacy" | "release_reply" | "append_message"
            )),
            "message {i} wrote more than it needs: {cost:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_chat_message_reads_the_store_at_most_once() {
    assert_warm_messages_read_once(&measure(0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_long_dialog_a_warm_chat_message_still_reads_once() {
    // More than the 60 messages of history a reply reads, and longer than
    // its prompt holds.
    assert_warm_messages_read_once(&measure(40).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shown_reply_is_stored_even_when_the_store_fails_at_first() {
    let (costs, shown, pending) = measure_with(0, 2).await;
    let cost = &costs[1];
    assert_eq!(
        cost.writes.get("complete_reply (unavailable)"),
        Some(&2),
        "{cost:?}"
    );
    assert_eq!(cost.writes.get("complete_reply"), Some(&1), "{cost:?}");
    // Stored, so nothing is left for the recovery sweep to show again.
    assert_eq!(pending, 0);
    for i in 0..=WARM_MESSAGES {
        let needle = format!("\"note number {i}\"");
        let times = shown.iter().filter(|t| t.contains(&needle)).count();
        assert_eq!(
            times, 1,
            "reply to message {i} shown {times} times: {shown:#?}"
        );
    }
}
