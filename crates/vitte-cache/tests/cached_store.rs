//! What the caching store adds to a store: reads answered from the cache,
//! writes visible on the very next read, values kept right in place by the
//! writes of every chat message (so that the next message finds them
//! cached), periods and unlocks that end while cached, one load per cold
//! key, and a cache that may fail without any request failing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use vitte_cache::{CachePolicy, CachedStore, MemoryCache, RedisCache, RedisSettings};
use vitte_domain::ids::{Currency, DialogId, MessageId, Money, PersonaSlug, TelegramUserId};
use vitte_domain::model::{
    Dialog, Grant, Message, MessageState, ModelUsage, NewMessage, NewPayment, PaymentProvider,
    Persona, PersonaCard, Role, TelegramProfile, TokenUsage, User,
};
use vitte_domain::ports::{
    Cache, DialogRepo, EntitlementRepo, MemoryRepo, MessageRepo, PaymentRepo, PersonaRepo,
    SettleOutcome, UserRepo,
};
use vitte_store_conformance::fixtures::plain;

use support::counting::CountingStore;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(secs)
}

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn profile(telegram_id: i64) -> TelegramProfile {
    TelegramProfile {
        telegram_id: TelegramUserId::try_from(telegram_id).expect("positive"),
        first_name: format!("User{telegram_id}"),
        last_name: None,
        username: None,
        language_code: Some("ru".to_owned()),
    }
}

fn card(name: &str) -> PersonaCard {
    PersonaCard {
        name: name.to_owned(),
        description: format!("{name} keeps a lighthouse."),
        ..PersonaCard::default()
    }
}

/// A caching store over a counting SQLite store, with its parts.
struct Rig {
    store: CachedStore,
    counts: Arc<CountingStore>,
    cache: Arc<MemoryCache>,
}

impl Rig {
    /// Without the delayed second delete, so that counts do not depend on
    /// how long a test takes.
    async fn new() -> Self {
        Self::with_policy(CachePolicy {
            redelete_after: None,
            ..support::test_policy()
        })
        .await
    }

    async fn with_policy(policy: CachePolicy) -> Self {
        let counts = CountingStore::new(support::sqlite().await);
        let cache = Arc::new(MemoryCache::default());
        let store = CachedStore::new(counts.clone(), cache.clone(), policy);
        Self {
            store,
            counts,
            cache,
        }
    }

    async fn user(&self, telegram_id: i64) -> User {
        self.store
            .upsert_user(&profile(telegram_id), t0())
            .await
            .expect("user")
    }

    async fn persona(&self, slug: &str) -> Persona {
        let slug = PersonaSlug::parse(slug).expect("slug");
        self.store
            .upsert_persona(&slug, &card(slug.as_str()), None, t0())
            .await
            .expect("persona")
    }
}

/// Reads the user both ways, so both are cached before the next write.
async fn warm_user(s: &CachedStore, u: &User) {
    s.user(u.id).await.expect("read");
    s.user_by_telegram_id(u.telegram_id).await.expect("read");
}

#[tokio::test]
async fn a_user_is_read_once_and_a_persona_switch_shows_at_once() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let mira = rig.persona("mira").await;

    let before = s.stats();
    assert_eq!(s.user(u.id).await.expect("read"), Some(u.clone()));
    assert_eq!(s.stats().misses, before.misses + 1);
    assert_eq!(s.stats().hits, before.hits);
    assert_eq!(s.user(u.id).await.expect("read"), Some(u.clone()));
    assert_eq!(s.stats().hits, before.hits + 1);
    assert_eq!(s.stats().misses, before.misses + 1);
    assert_eq!(
        rig.counts.calls("user"),
        1,
        "second read came from the cache"
    );

    warm_user(s, &u).await;
    s.set_current_persona(u.id, mira.id).await.expect("switch");
    let after = s.user(u.id).await.expect("read").expect("exists");
    assert_eq!(after.current_persona_id, Some(mira.id));
    let by_tg = s
        .user_by_telegram_id(u.telegram_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(by_tg.current_persona_id, Some(mira.id));
}

#[tokio::test]
async fn every_user_write_is_visible_on_the_next_read() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;

    warm_user(s, &u).await;
    s.accept_terms(u.id, 3, true, at(1)).await.expect("terms");
    let got = s.user(u.id).await.expect("read").expect("exists");
    assert_eq!(got.terms_version, Some(3));

    warm_user(s, &u).await;
    s.set_language(u.id, "en").await.expect("language");
    let got = s.user_by_telegram_id(u.telegram_id).await.expect("read");
    assert_eq!(got.and_then(|u| u.language).as_deref(), Some("en"));

    warm_user(s, &u).await;
    s.set_blocked_bot(u.id, true).await.expect("blocked");
    assert!(
        s.user(u.id)
            .await
            .expect("read")
            .expect("exists")
            .blocked_bot
    );

    warm_user(s, &u).await;
    let mut renamed = profile(1);
    renamed.first_name = "Anna".to_owned();
    s.upsert_user(&renamed, at(2)).await.expect("refresh");
    let got = s.user(u.id).await.expect("read").expect("exists");
    assert_eq!(got.first_name, "Anna");
    assert!(!got.blocked_bot, "writing to the bot clears the flag");
    let got = s.user_by_telegram_id(u.telegram_id).await.expect("read");
    assert_eq!(got.map(|u| u.first_name).as_deref(), Some("Anna"));
}

#[tokio::test]
async fn an_unknown_telegram_id_is_cached_until_the_user_appears() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let tg = TelegramUserId::try_from(77).expect("id");
    assert_eq!(s.user_by_telegram_id(tg).await.expect("read"), None);
    assert_eq!(s.user_by_telegram_id(tg).await.expect("read"), None);
    assert_eq!(rig.counts.calls("user_by_telegram_id"), 1);

    let u = rig.user(77).await;
    assert_eq!(
        s.user_by_telegram_id(tg).await.expect("read"),
        Some(u.clone())
    );
    // The lookup by Telegram id also cached the user under its id.
    assert_eq!(s.user(u.id).await.expect("read"), Some(u));
    assert_eq!(rig.counts.calls("user"), 0);
}

#[tokio::test]
async fn persona_edits_are_visible_on_the_next_read() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let mira = rig.persona("mira").await;
    let slug = mira.slug.clone();
    assert_eq!(
        s.persona_by_slug(&slug).await.expect("read"),
        Some(mira.clone())
    );
    assert_eq!(s.persona(mira.id).await.expect("read"), Some(mira.clone()));
    assert_eq!(
        s.persona_by_slug(&slug).await.expect("read"),
        Some(mira.clone())
    );
    assert_eq!(rig.counts.calls("persona_by_slug"), 1);
    assert_eq!(
        rig.counts.calls("persona"),
        0,
        "the slug lookup also cached the persona under its id"
    );

    let mut edited = card("mira");
    edited.description = "Now a baker.".to_owned();
    s.upsert_persona(&slug, &edited, None, at(5))
        .await
        .expect("edit");
    let got = s.persona(mira.id).await.expect("read").expect("exists");
    assert_eq!(got.card.description, "Now a baker.");
    let got = s
        .persona_by_slug(&slug)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(got.card.description, "Now a baker.");

    s.set_persona_listed(mira.id, false).await.expect("hide");
    assert!(
        !s.persona(mira.id)
            .await
            .expect("read")
            .expect("exists")
            .listed
    );
    assert!(
        !s.persona_by_slug(&slug)
            .await
            .expect("read")
            .expect("exists")
            .listed
    );

    let ghost = PersonaSlug::parse("ghost").expect("slug");
    assert_eq!(s.persona_by_slug(&ghost).await.expect("read"), None);
    let created = rig.persona("ghost").await;
    assert_eq!(
        s.persona_by_slug(&ghost).await.expect("read"),
        Some(created)
    );
}

#[tokio::test]
async fn dialog_changes_are_visible_on_the_next_read() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let p = rig.persona("mira").await;
    assert_eq!(s.active_dialog(u.id, p.id).await.expect("read"), None);

    let d = s.open_dialog(u.id, p.id, t0()).await.expect("open");
    assert_eq!(
        s.active_dialog(u.id, p.id).await.expect("read"),
        Some(d.clone())
    );
    assert_eq!(s.open_dialog(u.id, p.id, at(1)).await.expect("open"), d);
    assert_eq!(
        rig.counts.calls("open_dialog"),
        1,
        "reopening came from the cache"
    );
    assert_eq!(
        rig.counts.calls("active_dialog"),
        1,
        "only the first, empty read"
    );

    // Intimacy is part of the dialog: the next read has the new score.
    assert_eq!(s.add_intimacy(d.id, 7, at(2)).await.expect("add"), 7);
    let got = s
        .active_dialog(u.id, p.id)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(got.intimacy_score, 7);
    let got = s.open_dialog(u.id, p.id, at(3)).await.expect("open");
    assert_eq!(got.intimacy_score, 7);

    // Even when the owner pointer is gone, the intimacy write finds the entry.
    s.active_dialog(u.id, p.id).await.expect("read");
    rig.cache
        .delete(&[s.keys().dialog_owner(d.id)])
        .await
        .expect("delete");
    s.add_intimacy(d.id, 1, at(4)).await.expect("add");
    let got = s
        .active_dialog(u.id, p.id)
        .await
        .expect("read")
        .expect("some");
    assert_eq!(got.intimacy_score, 8);

    let fresh = s.reset_dialog(u.id, p.id, at(5)).await.expect("reset");
    assert_ne!(fresh.id, d.id);
    assert_eq!(
        s.active_dialog(u.id, p.id).await.expect("read"),
        Some(fresh.clone())
    );
    assert_eq!(s.open_dialog(u.id, p.id, at(6)).await.expect("open"), fresh);
}

fn stars(user: vitte_domain::ids::UserId, charge: &str) -> NewPayment {
    NewPayment {
        user_id: user,
        provider: PaymentProvider::TelegramStars,
        provider_payment_id: charge.to_owned(),
        amount: Money::new(250, Currency::Xtr).expect("amount"),
        product: "premium_30d".to_owned(),
    }
}

#[tokio::test]
async fn a_settled_payment_is_visible_on_the_next_read() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    assert_eq!(
        s.active_subscription(u.id, at(1)).await.expect("read"),
        None
    );
    assert_eq!(
        s.active_subscription(u.id, at(2)).await.expect("read"),
        None
    );
    assert!(s.unlocks(u.id, at(2)).await.expect("read").is_empty());
    assert!(s.unlocks(u.id, at(3)).await.expect("read").is_empty());
    assert_eq!(
        rig.counts.calls("active_subscription"),
        1,
        "no subscription is cached too"
    );
    assert_eq!(rig.counts.calls("unlocks"), 1);

    s.record_payment(&stars(u.id, "ch_1"), at(3))
        .await
        .expect("record");
    let month = Grant::Subscription {
        plan: "premium".to_owned(),
        days: 30,
    };
    let outcome = s
        .settle_payment(PaymentProvider::TelegramStars, "ch_1", &month, at(4))
        .await
        .expect("settle");
    assert!(matches!(outcome, SettleOutcome::Settled(_)), "{outcome:?}");
    let sub = s
        .active_subscription(u.id, at(5))
        .await
        .expect("read")
        .expect("visible at once");
    assert_eq!(sub.plan, "premium");

    s.record_payment(&stars(u.id, "ch_2"), at(6))
        .await
        .expect("record");
    let voice = Grant::Unlock {
        feature: "voice".to_owned(),
        persona_id: None,
        days: None,
    };
    s.settle_payment(PaymentProvider::TelegramStars, "ch_2", &voice, at(7))
        .await
        .expect("settle");
    let unlocks = s.unlocks(u.id, at(8)).await.expect("read");
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].feature, "voice");
}

#[tokio::test]
async fn a_cached_subscription_ends_with_its_period() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let day = Grant::Subscription {
        plan: "trial".to_owned(),
        days: 1,
    };
    s.apply_grant(u.id, &day, t0()).await.expect("grant");
    assert!(
        s.active_subscription(u.id, at(HOUR))
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        s.active_subscription(u.id, at(2 * HOUR))
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        rig.counts.calls("active_subscription"),
        1,
        "served from the cache"
    );

    // The period ended while its entry is still cached: never served.
    assert_eq!(
        s.active_subscription(u.id, at(DAY)).await.expect("read"),
        None
    );
    assert_eq!(
        s.active_subscription(u.id, at(DAY + 1))
            .await
            .expect("read"),
        None
    );
    assert_eq!(rig.counts.calls("active_subscription"), 2);

    // An instant before what the cache knows is asked of the store.
    assert!(
        s.active_subscription(u.id, at(HOUR))
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(rig.counts.calls("active_subscription"), 3);
}

#[tokio::test]
async fn a_cached_unlock_lapses_at_its_expiry() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let week = Grant::Unlock {
        feature: "voice".to_owned(),
        persona_id: None,
        days: Some(7),
    };
    let forever = Grant::Unlock {
        feature: "level_3".to_owned(),
        persona_id: None,
        days: None,
    };
    s.apply_grant(u.id, &week, t0()).await.expect("grant");
    s.apply_grant(u.id, &forever, t0()).await.expect("grant");
    let features = |v: Vec<vitte_domain::model::Unlock>| {
        let mut f: Vec<_> = v.into_iter().map(|u| u.feature).collect();
        f.sort();
        f
    };
    assert_eq!(
        features(s.unlocks(u.id, at(DAY)).await.expect("read")),
        ["level_3", "voice"]
    );
    assert_eq!(
        features(s.unlocks(u.id, at(7 * DAY)).await.expect("read")),
        ["level_3"],
        "lapsed while cached"
    );
    assert_eq!(rig.counts.calls("unlocks"), 1);
    assert_eq!(
        features(s.unlocks(u.id, at(1)).await.expect("read")),
        ["level_3", "voice"]
    );
}

#[tokio::test]
async fn a_redis_that_is_down_fails_no_read_and_is_counted() {
    let counts = CountingStore::new(support::sqlite().await);
    let cache = RedisCache::open("redis://127.0.0.1:1", RedisSettings::default()).expect("url");
    let s = CachedStore::new(counts.clone(), Arc::new(cache), support::test_policy());

    let u = s.upsert_user(&profile(1), t0()).await.expect("write");
    let p = s
        .upsert_persona(
            &PersonaSlug::parse("mira").expect("slug"),
            &card("mira"),
            None,
            t0(),
        )
        .await
        .expect("write");
    s.set_current_persona(u.id, p.id).await.expect("write");
    s.apply_grant(
        u.id,
        &Grant::Subscription {
            plan: "premium".to_owned(),
            days: 30,
        },
        t0(),
    )
    .await
    .expect("write");
    let errors_before_reads = s.cache_errors();

    let reads = 5;
    for _ in 0..reads {
        let got = s.user(u.id).await.expect("read").expect("exists");
        assert_eq!(got.current_persona_id, Some(p.id));
    }
    for _ in 0..reads {
        let got = s.active_subscription(u.id, at(1)).await.expect("read");
        assert!(got.is_some());
    }
    assert_eq!(counts.calls("user"), reads, "every read went to the store");
    assert!(
        s.cache_errors() >= errors_before_reads + 2 * reads,
        "{} errors",
        s.cache_errors()
    );
    assert_eq!(s.stats().hits, 0);
}

#[tokio::test]
async fn undecodable_bytes_are_a_miss_and_get_replaced() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let key = s.keys().user(u.id);
    rig.cache
        .set(&key, b"\x00not json", Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(s.user(u.id).await.expect("read"), Some(u.clone()));
    assert!(s.cache_errors() >= 1);
    assert_eq!(s.user(u.id).await.expect("read"), Some(u));
    assert_eq!(rig.counts.calls("user"), 1, "the entry was rewritten");
}

#[tokio::test(flavor = "current_thread")]
async fn a_cold_key_is_loaded_once_however_many_want_it() {
    let rig = Arc::new(Rig::new().await);
    let u = rig.user(1).await;
    rig.counts.close_gate();

    let started = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..50)
        .map(|_| {
            let (rig, started) = (rig.clone(), started.clone());
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                rig.store.user(u.id).await
            })
        })
        .collect();
    // On this single thread every reader runs until it blocks: at the gate
    // in the store, or waiting for the key's lock.
    while started.load(Ordering::SeqCst) < 50 {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        rig.counts.calls("user"),
        1,
        "only one reader reached the store"
    );

    rig.counts.open_gate();
    for reader in readers {
        let got = reader.await.expect("task").expect("read");
        assert_eq!(got.as_ref(), Some(&u));
    }
    assert_eq!(rig.counts.calls("user"), 1);
    let stats = rig.store.stats();
    assert_eq!((stats.misses, stats.hits), (1, 49));
}

/// A person's message, pending.
fn said(dialog: DialogId, text: &str) -> NewMessage {
    NewMessage {
        dialog_id: dialog,
        role: Role::User,
        text: text.to_owned(),
        state: MessageState::Pending,
        telegram_message_id: None,
        update_id: None,
        reply_to: None,
        usage: None,
    }
}

/// A reply to `asked` that cost `tokens` of `model`.
fn reply(dialog: DialogId, asked: MessageId, model: &str, tokens: (i32, i32)) -> NewMessage {
    NewMessage {
        dialog_id: dialog,
        role: Role::Assistant,
        text: "hi".to_owned(),
        state: MessageState::Sent,
        telegram_message_id: None,
        update_id: None,
        reply_to: Some(asked),
        usage: Some(TokenUsage {
            model: model.to_owned(),
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
        }),
    }
}

fn usage(model: &str, prompt_tokens: i64, completion_tokens: i64) -> ModelUsage {
    ModelUsage {
        model: model.to_owned(),
        prompt_tokens,
        completion_tokens,
    }
}

/// What one chat message does to the store, as the handler and the
/// responder call it, apart from reading the dialog's recent messages (never
/// cached): the reads, then the writes that store the message and its reply.
async fn chat_message(s: &CachedStore, tg: TelegramUserId, now: DateTime<Utc>) {
    // The handler.
    let user = s
        .user_by_telegram_id(tg)
        .await
        .expect("user")
        .expect("exists");
    let persona_id = user.current_persona_id.expect("current persona");
    s.persona(persona_id)
        .await
        .expect("persona")
        .expect("exists");
    s.active_subscription(user.id, now)
        .await
        .expect("subscription");
    let dialog = s
        .open_dialog(user.id, persona_id, now)
        .await
        .expect("dialog");
    let asked = s
        .append_message(&said(dialog.id, "hello"), now)
        .await
        .expect("append");
    // The responder.
    let d = s.dialog(dialog.id).await.expect("dialog").expect("exists");
    s.user(d.user_id).await.expect("user").expect("exists");
    s.persona(d.persona_id)
        .await
        .expect("persona")
        .expect("exists");
    s.active_subscription(user.id, now)
        .await
        .expect("subscription");
    s.usage_since(Some(user.id), t0()).await.expect("usage");
    s.summary(dialog.id).await.expect("summary");
    s.facts(dialog.id).await.expect("facts");
    s.unlocks(user.id, now).await.expect("unlocks");
    s.complete_reply(
        &plain(&[asked.id], &reply(dialog.id, asked.id, "m", (10, 2))),
        now,
    )
    .await
    .map(|c| c.message)
    .expect("reply");
    s.add_intimacy(dialog.id, 1, now).await.expect("intimacy");
}

/// The calls a chat message made to the store that are reads.
fn reads(calls: &std::collections::BTreeMap<&'static str, u64>) -> u64 {
    const WRITES: [&str; 3] = ["append_message", "complete_reply", "add_intimacy"];
    calls
        .iter()
        .filter(|(name, _)| !WRITES.contains(name))
        .map(|(_, n)| n)
        .sum()
}

fn minus(
    after: std::collections::BTreeMap<&'static str, u64>,
    before: &std::collections::BTreeMap<&'static str, u64>,
) -> std::collections::BTreeMap<&'static str, u64> {
    after
        .into_iter()
        .map(|(name, n)| (name, n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test]
async fn a_warm_chat_message_makes_no_store_reads() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let p = rig.persona("mira").await;
    s.set_current_persona(u.id, p.id).await.expect("switch");
    let d = s.open_dialog(u.id, p.id, t0()).await.expect("open");
    s.apply_grant(
        u.id,
        &Grant::Subscription {
            plan: "premium".to_owned(),
            days: 30,
        },
        t0(),
    )
    .await
    .expect("grant");
    // Start cold, as after the TTLs ran out.
    let keys = s.keys();
    rig.cache
        .delete(&[
            keys.user_by_telegram(u.telegram_id),
            keys.user(u.id),
            keys.persona(p.id),
            keys.active_dialog(u.id, p.id),
            keys.dialog(d.id),
            keys.subscription(u.id),
            keys.unlocks(u.id),
            keys.usage(u.id),
            keys.summary(d.id),
            keys.facts(d.id),
        ])
        .await
        .expect("delete");

    let before = rig.counts.all_calls();
    chat_message(s, u.telegram_id, at(10)).await;
    let cold = minus(rig.counts.all_calls(), &before);
    let mut warm = Vec::new();
    for i in 0..3 {
        let before = rig.counts.all_calls();
        chat_message(s, u.telegram_id, at(20 + i)).await;
        warm.push(minus(rig.counts.all_calls(), &before));
    }
    println!("store calls of a chat message: cold {cold:?}, warm {warm:?}");
    // User (by Telegram id, which caches it by id too), persona,
    // subscription, dialog (active and by id), usage, summary, facts, unlocks.
    assert_eq!(reads(&cold), 9, "{cold:?}");
    for calls in &warm {
        assert_eq!(reads(calls), 0, "{calls:?}");
        assert_eq!(calls.len(), 3, "only the writes: {calls:?}");
    }
    // What was cached is what the store holds after those writes.
    let cached = s.dialog(d.id).await.expect("read").expect("exists");
    let stored = rig
        .counts
        .dialog(d.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(cached, stored);
    assert_eq!(cached.intimacy_score, 4);
    assert_eq!(
        s.active_dialog(u.id, p.id).await.expect("read"),
        Some(Dialog {
            updated_at: cached.updated_at,
            ..stored
        })
    );
    assert_eq!(
        s.usage_since(Some(u.id), t0()).await.expect("usage"),
        [usage("m", 40, 8)]
    );
    assert_eq!(
        rig.counts
            .usage_since(Some(u.id), t0())
            .await
            .expect("usage"),
        [usage("m", 40, 8)]
    );
}

#[tokio::test]
async fn a_dialog_read_by_id_follows_every_write() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let p = rig.persona("mira").await;
    let d = s.open_dialog(u.id, p.id, t0()).await.expect("open");
    let ghost = DialogId(d.id.0 + 100);
    assert_eq!(s.dialog(ghost).await.expect("read"), None);
    assert_eq!(s.dialog(ghost).await.expect("read"), None);
    assert_eq!(
        rig.counts.calls("dialog"),
        2,
        "an id not taken yet is not cached"
    );

    assert_eq!(s.dialog(d.id).await.expect("read"), Some(d.clone()));
    assert_eq!(s.dialog(d.id).await.expect("read"), Some(d.clone()));
    assert_eq!(rig.counts.calls("dialog"), 3);
    // The cached copy, checked against the store; counts only the reads
    // the cached copy made.
    let checks = AtomicUsize::new(0);
    let exact = |d: DialogId| {
        let (counts, checks) = (rig.counts.clone(), &checks);
        async move {
            let cached = s.dialog(d).await.expect("read");
            checks.fetch_add(1, Ordering::SeqCst);
            let stored = counts.dialog(d).await.expect("read");
            assert_eq!(cached, stored);
            cached.expect("exists")
        }
    };
    let cached_reads = || {
        rig.counts.calls("dialog") - u64::try_from(checks.load(Ordering::SeqCst)).expect("small")
    };

    // Messages move `updated_at`, in place.
    let asked = s
        .append_message(&said(d.id, "hi"), at(5))
        .await
        .expect("append");
    assert_eq!(exact(d.id).await.updated_at, at(5));
    s.complete_reply(
        &plain(&[asked.id], &reply(d.id, asked.id, "m", (1, 1))),
        at(7),
    )
    .await
    .map(|c| c.message)
    .expect("reply");
    assert_eq!(exact(d.id).await.updated_at, at(7));
    // An older instant does not move it back; a fraction of a microsecond
    // is dropped as the store drops it.
    s.append_message(&said(d.id, "late"), at(6))
        .await
        .expect("append");
    assert_eq!(exact(d.id).await.updated_at, at(7));
    s.add_intimacy(d.id, 3, at(8) + TimeDelta::nanoseconds(1_500))
        .await
        .expect("add");
    let got = exact(d.id).await;
    assert_eq!(got.intimacy_score, 3);
    assert_eq!(got.updated_at, at(8) + TimeDelta::microseconds(1));

    // A reset deactivates it, even when only its copy by id is cached.
    rig.cache
        .delete(&[s.keys().active_dialog(u.id, p.id)])
        .await
        .expect("delete");
    let fresh = s.reset_dialog(u.id, p.id, at(9)).await.expect("reset");
    assert!(!exact(d.id).await.active);
    assert!(exact(fresh.id).await.active);
    assert_eq!(
        cached_reads(),
        5,
        "read again only after the reset, and the new one once"
    );
}

#[tokio::test]
async fn memories_are_read_once_and_every_change_shows() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let p = rig.persona("mira").await;
    let d = s.open_dialog(u.id, p.id, t0()).await.expect("open");
    let m = s
        .append_message(&said(d.id, "hi"), at(1))
        .await
        .expect("append");
    for _ in 0..3 {
        assert_eq!(s.summary(d.id).await.expect("summary"), None);
        assert!(s.facts(d.id).await.expect("facts").is_empty());
    }
    assert_eq!(rig.counts.calls("summary"), 1);
    assert_eq!(rig.counts.calls("facts"), 1);

    s.put_summary(d.id, "They met.", m.id, at(2))
        .await
        .expect("summary");
    let cat = s
        .add_fact(d.id, "Her cat is Tom.", at(3))
        .await
        .expect("fact");
    let got = s.summary(d.id).await.expect("summary").expect("some");
    assert_eq!(got.text, "They met.");
    assert_eq!(
        s.facts(d.id).await.expect("facts"),
        std::slice::from_ref(&cat)
    );
    s.put_summary(d.id, "They met twice.", m.id, at(4))
        .await
        .expect("summary");
    let city = s
        .add_fact(d.id, "Lives in Kazan.", at(5))
        .await
        .expect("fact");
    let summary = s.summary(d.id).await.expect("summary").expect("some");
    assert_eq!(summary.text, "They met twice.");
    assert_eq!(
        s.facts(d.id).await.expect("facts"),
        [cat.clone(), city.clone()]
    );

    // Forgetting names only the memory: its pointer finds the dialog.
    s.delete_memory(cat.id).await.expect("forget");
    assert_eq!(
        s.facts(d.id).await.expect("facts"),
        std::slice::from_ref(&city)
    );
    s.delete_memory(summary.id).await.expect("forget");
    assert_eq!(s.summary(d.id).await.expect("summary"), None);
    assert_eq!(s.facts(d.id).await.expect("facts"), [city]);
    let reads = rig.counts.calls("summary") + rig.counts.calls("facts");
    s.summary(d.id).await.expect("summary");
    s.facts(d.id).await.expect("facts");
    assert_eq!(
        rig.counts.calls("summary") + rig.counts.calls("facts"),
        reads
    );
}

/// The store's own answer.
async fn stored_usage(rig: &Rig, user: vitte_domain::ids::UserId, since: i64) -> Vec<ModelUsage> {
    rig.counts
        .usage_since(Some(user), at(since))
        .await
        .expect("usage")
}

#[tokio::test]
async fn a_users_usage_is_read_once_and_each_reply_adds_to_it() {
    let rig = Rig::new().await;
    let s = &rig.store;
    let u = rig.user(1).await;
    let p = rig.persona("mira").await;
    let zoe = rig.persona("zoe").await;
    let d = s.open_dialog(u.id, p.id, t0()).await.expect("open");
    let other = s.open_dialog(u.id, zoe.id, t0()).await.expect("open");
    let exchange = |dialog: DialogId, model: &'static str, tokens: (i32, i32), when: i64| async move {
        let asked = s
            .append_message(&said(dialog, "hello"), at(when))
            .await
            .expect("append");
        s.complete_reply(
            &plain(&[asked.id], &reply(dialog, asked.id, model, tokens)),
            at(when),
        )
        .await
        .map(|c| c.message)
        .expect("reply")
    };
    exchange(d.id, "b/model", (100, 10), 1).await;
    let since = 2;
    assert_eq!(
        s.usage_since(Some(u.id), at(since)).await.expect("usage"),
        []
    );
    let read = rig.counts.calls("usage_since");

    exchange(d.id, "b/model", (5, 1), 3).await;
    exchange(other.id, "a/model", (7, 3), 4).await;
    exchange(d.id, "c/model", (1, 1), 5).await;
    let expected = [
        usage("a/model", 7, 3),
        usage("b/model", 5, 1),
        usage("c/model", 1, 1),
    ];
    assert_eq!(
        s.usage_since(Some(u.id), at(since)).await.expect("usage"),
        expected
    );
    assert_eq!(
        rig.counts.calls("usage_since"),
        read,
        "every reply was added in place"
    );
    assert_eq!(stored_usage(&rig, u.id, since).await, expected);

    // Another start is another figure, read from the store.
    let before = rig.counts.calls("usage_since");
    let got = s.usage_since(Some(u.id), at(0)).await.expect("usage");
    assert_eq!(rig.counts.calls("usage_since"), before + 1);
    assert_eq!(got, stored_usage(&rig, u.id, 0).await);
    // A reply stored before the start counted does not add to it.
    exchange(d.id, "b/model", (9, 9), 0).await;
    assert_eq!(
        s.usage_since(Some(u.id), at(1)).await.expect("usage"),
        stored_usage(&rig, u.id, 1).await
    );
    exchange(d.id, "b/model", (9, 9), 0).await;
    assert_eq!(
        s.usage_since(Some(u.id), at(1)).await.expect("usage"),
        stored_usage(&rig, u.id, 1).await
    );

    // A cost stored outside `complete_reply` drops the figure.
    let paid = NewMessage {
        reply_to: None,
        ..reply(d.id, MessageId(0), "d/model", (2, 2))
    };
    s.append_message(&paid, at(6)).await.expect("append");
    assert_eq!(
        s.usage_since(Some(u.id), at(1)).await.expect("usage"),
        stored_usage(&rig, u.id, 1).await
    );
    // Everyone's is never cached.
    let global = rig.counts.calls("usage_since");
    s.usage_since(None, at(0)).await.expect("usage");
    s.usage_since(None, at(0)).await.expect("usage");
    assert_eq!(rig.counts.calls("usage_since"), global + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_racing_a_load_of_the_usage_is_counted_once() {
    let rig = Arc::new(Rig::new().await);
    let u = rig.user(1).await;
    let p = rig.persona("mira").await;
    let d = rig.store.open_dialog(u.id, p.id, t0()).await.expect("open");
    // The owner is known from the cache, as on the chat path.
    rig.store.dialog(d.id).await.expect("dialog");
    let mut asked: Vec<Message> = Vec::new();
    for i in 0..100 {
        asked.push(
            rig.store
                .append_message(&said(d.id, "hello"), at(i))
                .await
                .expect("append"),
        );
    }
    for (i, message) in asked.into_iter().enumerate() {
        // Start cold each time, so the load and the write race.
        rig.cache
            .delete(&[rig.store.keys().usage(u.id)])
            .await
            .expect("delete");
        let writer = {
            let rig = rig.clone();
            tokio::spawn(async move {
                let answer = reply(d.id, message.id, "m", (1, 0));
                rig.store
                    .complete_reply(&plain(&[message.id], &answer), at(100))
                    .await
                    .map(|c| c.message)
                    .expect("reply");
            })
        };
        let reader = {
            let rig = rig.clone();
            tokio::spawn(async move { rig.store.usage_since(Some(u.id), t0()).await })
        };
        writer.await.expect("writer");
        reader.await.expect("reader").expect("usage");
        let cached = rig
            .store
            .usage_since(Some(u.id), t0())
            .await
            .expect("usage");
        let count = i64::try_from(i).expect("small") + 1;
        assert_eq!(cached, [usage("m", count, 0)], "after reply {count}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_write_deletes_its_keys_again_after_a_delay() {
    let delay = Duration::from_secs(2);
    let rig = Rig::with_policy(CachePolicy {
        redelete_after: Some(delay),
        ..support::test_policy()
    })
    .await;
    let s = &rig.store;
    let u = rig.user(1).await;
    s.set_language(u.id, "en").await.expect("write");

    // Another process read the old row just before the write and caches it
    // just after the write's delete.
    let key = s.keys().user(u.id);
    rig.cache
        .set(&key, b"stale", Duration::from_secs(300))
        .await
        .expect("set");

    tokio::time::pause();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(rig.cache.get(&key).await.expect("get").is_some(), "not yet");
    // Timers fire on whole-millisecond ticks: step just past the deadline.
    tokio::time::advance(delay + Duration::from_millis(5)).await;
    let mut gone = false;
    for _ in 0..100 {
        if rig.cache.get(&key).await.expect("get").is_none() {
            gone = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(gone, "the delayed delete never came");
}

#[tokio::test]
async fn the_chat_reads_hit_redis_too() {
    let counts = CountingStore::new(support::sqlite().await);
    let redis: Arc<dyn Cache> = Arc::new(support::redis_cache().await);
    let policy = CachePolicy {
        redelete_after: None,
        ..support::test_policy()
    };
    let s = CachedStore::new(counts.clone(), redis, policy);
    let u = s.upsert_user(&profile(1), t0()).await.expect("user");
    let p = s
        .upsert_persona(
            &PersonaSlug::parse("mira").expect("slug"),
            &card("mira"),
            None,
            t0(),
        )
        .await
        .expect("persona");
    s.set_current_persona(u.id, p.id).await.expect("switch");

    s.open_dialog(u.id, p.id, t0()).await.expect("open");

    chat_message(&s, u.telegram_id, at(10)).await;
    let before = counts.all_calls();
    chat_message(&s, u.telegram_id, at(20)).await;
    let warm = minus(counts.all_calls(), &before);
    assert_eq!(reads(&warm), 0, "{warm:?}");
    assert_eq!(s.cache_errors(), 0);
    // Kept in place in Redis too.
    assert_eq!(
        s.usage_since(Some(u.id), t0()).await.expect("usage"),
        [usage("m", 20, 4)]
    );
}
