//! Flood protection through the real handlers, against the Telegram
//! stand-in: messages and button presses count together, the update that
//! crosses the quota gets one notice in the person's language, nothing after
//! it is handled until the pause ends, and then the bot answers again.
//! Time is a manual clock, so the pause ends exactly when it should.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use vitte_bot::context::{BotContext, FloodLimits, Quotas, ReplyJob, SpendLimits};
use vitte_bot::handlers;
use vitte_bot::i18n::Texts;
use vitte_bot::telegram::Telegram;
use vitte_domain::ids::UpdateId;
use vitte_domain::ports::{LimitError, Quota, RateDecision, RateLimiter};
use vitte_domain::services::{ModelPrice, SpendService};
use vitte_domain::{ManualClock, SystemClock};
use vitte_limits::MemoryLimiter;
use vitte_stand_ins::Handle;
use vitte_stand_ins::telegram::{
    ButtonPress, CallbackInjected, Config, RateLimits, TelegramStandIn, UserMessage,
};

const PAUSE: Duration = Duration::from_secs(600);

/// Sends never wait for a budget: the flood limiter under test is the
/// context's, and it runs on the manual clock.
struct Unlimited;

#[async_trait]
impl RateLimiter for Unlimited {
    async fn acquire(
        &self,
        _: &str,
        _: &[Quota],
        _: DateTime<Utc>,
    ) -> Result<RateDecision, LimitError> {
        Ok(RateDecision::Allowed)
    }
}

struct Bench {
    ctx: BotContext,
    clock: Arc<ManualClock>,
    tg: TelegramStandIn,
    updates: mpsc::UnboundedReceiver<Value>,
    _replies: mpsc::UnboundedReceiver<ReplyJob>,
    _tg_handle: Handle,
}

impl Bench {
    /// A bot whose users may send `count` updates a minute, with no plan limits.
    async fn new(count: u32) -> Bench {
        let tg = TelegramStandIn::new(Config {
            rate_limits: RateLimits::disabled(),
            ..Config::default()
        })
        .expect("stand-in config");
        let (tx, updates) = mpsc::unbounded_channel();
        tg.deliver_to(Arc::new(move |update| {
            let _ = tx.send(update);
        }));
        let tg_handle = tg
            .clone()
            .spawn(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
            .expect("spawn");
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(1_735_732_800, 0).expect("a valid instant"),
        ));
        let (replies, replies_rx) = mpsc::unbounded_channel();
        let ctx = BotContext {
            store: vitte_store_sqlite::testing::fresh_store().await,
            clock: clock.clone(),
            telegram: Arc::new(Telegram::new(
                tg.token(),
                url::Url::parse(tg_handle.base_url()).expect("stand-in URL"),
                Arc::new(Unlimited),
                Arc::new(SystemClock),
                30,
            )),
            texts: Texts::load().expect("locales parse"),
            replies,
            inbox_signal: Arc::new(Notify::new()),
            limiter: Arc::new(MemoryLimiter::new()),
            quotas: Quotas {
                free: Vec::new(),
                premium: Vec::new(),
                buttons: Vec::new(),
            },
            flood: FloodLimits {
                quotas: vec![Quota {
                    count,
                    period: Duration::from_secs(60),
                }],
                pause: PAUSE,
            },
            spend: SpendLimits {
                service: SpendService::new(Vec::new(), ModelPrice::default()),
                free_tokens: u64::MAX,
                premium_tokens: u64::MAX,
                daily_cap: u64::MAX,
            },
        };
        Bench {
            ctx,
            clock,
            tg,
            updates,
            _replies: replies_rx,
            _tg_handle: tg_handle,
        }
    }

    /// Runs the handler on the update the stand-in just produced.
    async fn handle_next(&mut self) {
        let update = self.updates.recv().await.expect("an update");
        let id = UpdateId::try_from(update["update_id"].as_i64().expect("update_id"))
            .expect("a valid update id");
        handlers::handle(&self.ctx, id, &update)
            .await
            .expect("handled");
    }

    async fn say(&mut self, user: i64, text: &str) {
        self.tg
            .send_user_message(&UserMessage {
                user_id: user,
                first_name: format!("U{user}"),
                last_name: None,
                username: None,
                language_code: Some("ru".to_owned()),
                text: text.to_owned(),
            })
            .expect("message injected");
        self.handle_next().await;
    }

    /// Presses the terms button of the bot's first message in the chat.
    async fn press_terms(&mut self, user: i64) -> CallbackInjected {
        let first = &self.bot_messages(user).await[0];
        let press = self
            .tg
            .press_button(&ButtonPress {
                user_id: user,
                message_id: first["message_id"].as_i64().expect("message id"),
                data: "terms".to_owned(),
            })
            .expect("button pressed");
        self.handle_next().await;
        press
    }

    async fn bot_messages(&self, user: i64) -> Vec<Value> {
        self.tg
            .chat_log(user, 0, false, Duration::ZERO)
            .await
            .messages
    }

    async fn texts_after(&self, user: i64, seen: usize) -> Vec<String> {
        self.bot_messages(user).await[seen..]
            .iter()
            .map(|m| m["text"].as_str().unwrap_or("<media>").to_owned())
            .collect()
    }

    fn advance(&self, by: Duration) {
        self.clock
            .advance(TimeDelta::from_std(by).expect("a short duration"));
    }
}

fn is_notice(text: &str) -> bool {
    text.contains("приостановлен")
}

#[tokio::test]
async fn a_flood_pauses_the_user_once_until_the_pause_ends() {
    let mut bench = Bench::new(4).await;
    let user = 5001;
    // Four updates within the quota, a button among them: each is answered.
    bench.say(user, "hello 1").await;
    bench.press_terms(user).await;
    bench.say(user, "hello 2").await;
    bench.say(user, "hello 3").await;
    let seen = bench.bot_messages(user).await.len();
    assert!(seen >= 4, "every update within the quota is answered");
    assert!(
        !bench
            .texts_after(user, 0)
            .await
            .iter()
            .any(|t| is_notice(t)),
        "paused too early"
    );

    // The fifth crosses the quota: the notice, in Russian, and nothing else.
    bench.say(user, "hello 4").await;
    let after = bench.texts_after(user, seen).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(is_notice(&after[0]), "{after:?}");
    assert!(
        after[0].contains("10 min") && after[0].contains("12:10 UTC"),
        "{after:?}"
    );

    // While paused, messages and buttons are acknowledged and dropped
    // without a word, even once the flood quota itself has refilled.
    for step in 0..5 {
        if step > 0 {
            bench.advance(Duration::from_secs(2 * 60));
        }
        bench.say(user, &format!("paused, step {step}")).await;
        let press = bench.press_terms(user).await;
        let answer = bench
            .tg
            .callback_answer(&press.callback_query_id)
            .expect("the query is known");
        assert!(answer.answered, "a dropped button still stops the spinner");
    }
    // Eight minutes in; one second before the end is still paused.
    bench.advance(PAUSE - Duration::from_secs(8 * 60) - Duration::from_secs(1));
    bench.say(user, "one second before the end").await;
    assert_eq!(
        bench.texts_after(user, seen + 1).await,
        Vec::<String>::new()
    );

    // The pause is over: the bot answers again, and does not repeat the notice.
    bench.advance(Duration::from_secs(1));
    bench.say(user, "back").await;
    let after = bench.texts_after(user, seen + 1).await;
    assert!(!after.is_empty(), "no answer after the pause");
    assert!(!after.iter().any(|t| is_notice(t)), "{after:?}");
}

#[tokio::test]
async fn one_users_flood_does_not_pause_another() {
    let mut bench = Bench::new(2).await;
    for i in 0..5 {
        bench.say(5002, &format!("flood {i}")).await;
    }
    let flooder = bench.texts_after(5002, 0).await;
    assert_eq!(
        flooder.iter().filter(|t| is_notice(t)).count(),
        1,
        "{flooder:?}"
    );
    assert_eq!(flooder.len(), 3, "two answers and the notice: {flooder:?}");

    bench.say(5003, "hello").await;
    let other = bench.texts_after(5003, 0).await;
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(!is_notice(&other[0]), "{other:?}");
}
