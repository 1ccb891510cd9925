//! Focused tests of what is subtle on PostgreSQL: races between concurrent
//! callers (open, reset, claim, spend, settle, record), error mapping, and
//! stored values that no longer parse.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use vitte_domain::ids::{
    Currency, Money, PersonaId, PersonaSlug, TelegramUserId, UpdateId, UserId,
};
use vitte_domain::model::{
    CreditKind, Grant, MessageState, NewMessage, NewPayment, PaymentProvider, PaymentState,
    PersonaCard, Role, TelegramProfile,
};
use vitte_domain::ports::{
    DialogRepo, EntitlementRepo, MessageRepo, PaymentRepo, PersonaRepo, SettleOutcome, StoreError,
    UpdateInbox, UserRepo,
};
use vitte_store_conformance::fixtures::plain;
use vitte_store_postgres::{PgStore, testing};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid instant")
}

fn profile(telegram_id: i64) -> TelegramProfile {
    TelegramProfile {
        telegram_id: TelegramUserId::try_from(telegram_id).expect("positive"),
        first_name: "Ann".to_owned(),
        last_name: None,
        username: Some("ann".to_owned()),
        language_code: Some("ru".to_owned()),
    }
}

async fn user_and_persona(store: &PgStore) -> (UserId, PersonaId) {
    let user = store.upsert_user(&profile(42), t0()).await.expect("user");
    let card = PersonaCard {
        name: "Lisa".to_owned(),
        ..PersonaCard::default()
    };
    let persona = store
        .upsert_persona(
            &PersonaSlug::parse("lisa").expect("slug"),
            &card,
            None,
            t0(),
        )
        .await
        .expect("persona");
    (user.id, persona.id)
}

async fn count(store: &PgStore, sql: &'static str, id: i64) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_and_resets_keep_one_active_dialog() {
    let store = Arc::new(testing::fresh_pg_store().await);
    let (user, persona) = user_and_persona(&store).await;

    let opens: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.open_dialog(user, persona, t0()).await })
        })
        .collect();
    let ids: HashSet<_> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("open").id)
        .collect();
    assert_eq!(ids.len(), 1, "every concurrent open got the same dialog");

    // Resets racing each other and opens: all succeed, one active dialog remains.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 3 == 0 {
                store.open_dialog(user, persona, t0()).await
            } else {
                store.reset_dialog(user, persona, t0()).await
            }
        }));
    }
    for task in futures::future::join_all(tasks).await {
        task.expect("task").expect("open or reset succeeds");
    }
    let active = count(
        &store,
        "SELECT COUNT(*) FROM dialogs WHERE user_id = $1 AND active",
        user.0,
    )
    .await;
    assert_eq!(active, 1);
    let total = count(
        &store,
        "SELECT COUNT(*) FROM dialogs WHERE user_id = $1",
        user.0,
    )
    .await;
    assert_eq!(total, 1 + 8, "the first open plus one dialog per reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_share_an_update() {
    let store = Arc::new(testing::fresh_pg_store().await);
    for id in 0..120 {
        let id = UpdateId::try_from(id).expect("id");
        assert!(
            store
                .record_update(id, &serde_json::json!({ "update_id": id.get() }), t0())
                .await
                .expect("record")
        );
    }

    let lease = t0() + TimeDelta::seconds(60);
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_updates(7, t0(), lease).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    let ids: Vec<i64> = batch.iter().map(|u| u.update_id.get()).collect();
                    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered: {ids:?}");
                    assert!(batch.iter().all(|u| u.attempts == 1));
                    mine.extend(ids);
                }
            })
        })
        .collect();

    let mut seen = HashSet::new();
    for task in futures::future::join_all(claimers).await {
        for id in task.expect("task") {
            assert!(seen.insert(id), "update {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 120);

    // Leases still hold at t0; after they run out everything is claimable again.
    assert!(
        store
            .claim_updates(10, t0(), lease)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim_updates(200, lease, lease + TimeDelta::seconds(60))
        .await
        .expect("reclaim");
    assert_eq!(again.len(), 120);
    assert!(again.iter().all(|u| u.attempts == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_spends_never_overdraw() {
    let store = Arc::new(testing::fresh_pg_store().await);
    let (user, _) = user_and_persona(&store).await;
    let grant = Grant::Credits {
        kind: CreditKind::Voice,
        amount: 10,
    };
    store.apply_grant(user, &grant, t0()).await.expect("grant");

    let spends: Vec<_> = (0..25)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.spend_credits(user, CreditKind::Voice, 1, t0()).await })
        })
        .collect();
    let mut ok = 0;
    for result in futures::future::join_all(spends).await {
        match result.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::InsufficientCredits {
                kind,
                balance,
                wanted,
            }) => {
                assert_eq!((kind, balance, wanted), (CreditKind::Voice, 0, 1));
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(
        store
            .credit_balance(user, CreditKind::Voice)
            .await
            .expect("balance"),
        0
    );
    let net = count(
        &store,
        "SELECT COALESCE(SUM(delta), 0)::bigint FROM credit_events WHERE user_id = $1",
        user.0,
    )
    .await;
    assert_eq!(net, 0, "+10 granted, ten -1 spends");
    assert!(matches!(
        store.spend_credits(user, CreditKind::Voice, 0, t0()).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_settlements_grant_once() {
    let store = Arc::new(testing::fresh_pg_store().await);
    let (user, _) = user_and_persona(&store).await;
    let new = NewPayment {
        user_id: user,
        provider: PaymentProvider::TelegramStars,
        provider_payment_id: "charge-1".to_owned(),
        amount: Money::new(250, Currency::Xtr).expect("amount"),
        product: "premium_30".to_owned(),
    };

    let records: Vec<_> = (0..8)
        .map(|_| {
            let (store, new) = (store.clone(), new.clone());
            tokio::spawn(async move { store.record_payment(&new, t0()).await })
        })
        .collect();
    let mut created = 0;
    let mut ids = HashSet::new();
    for r in futures::future::join_all(records).await {
        let (payment, was_created) = r.expect("task").expect("record");
        created += usize::from(was_created);
        ids.insert(payment.id);
    }
    assert_eq!((created, ids.len()), (1, 1));

    let grant = Grant::Subscription {
        plan: "premium".to_owned(),
        days: 30,
    };
    let settles: Vec<_> = (0..8)
        .map(|_| {
            let (store, grant) = (store.clone(), grant.clone());
            tokio::spawn(async move {
                store
                    .settle_payment(PaymentProvider::TelegramStars, "charge-1", &grant, t0())
                    .await
            })
        })
        .collect();
    let mut settled = 0;
    for r in futures::future::join_all(settles).await {
        match r.expect("task").expect("settle") {
            SettleOutcome::Settled(p) => {
                settled += 1;
                assert_eq!(p.state, PaymentState::Succeeded);
            }
            SettleOutcome::AlreadySettled(p) => assert_eq!(p.state, PaymentState::Succeeded),
        }
    }
    assert_eq!(settled, 1);
    let subscriptions = count(
        &store,
        "SELECT COUNT(*) FROM subscriptions WHERE user_id = $1 AND payment_id IS NOT NULL",
        user.0,
    )
    .await;
    assert_eq!(subscriptions, 1);
    let active = store
        .active_subscription(user, t0())
        .await
        .expect("query")
        .expect("active");
    assert_eq!(active.ends_at, t0() + TimeDelta::days(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscription_grants_chain_periods() {
    let store = Arc::new(testing::fresh_pg_store().await);
    let (user, _) = user_and_persona(&store).await;
    let grants: Vec<_> = (0..5)
        .map(|_| {
            let store = store.clone();
            let grant = Grant::Subscription {
                plan: "premium".to_owned(),
                days: 7,
            };
            tokio::spawn(async move { store.apply_grant(user, &grant, t0()).await })
        })
        .collect();
    for r in futures::future::join_all(grants).await {
        r.expect("task").expect("grant");
    }
    let periods: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT starts_at, ends_at FROM subscriptions WHERE user_id = $1 ORDER BY starts_at",
    )
    .bind(user.0)
    .fetch_all(store.pool())
    .await
    .expect("periods");
    let expected: Vec<_> = (0..5)
        .map(|i| {
            (
                t0() + TimeDelta::days(7 * i),
                t0() + TimeDelta::days(7 * (i + 1)),
            )
        })
        .collect();
    assert_eq!(periods, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_referenced_rows_are_not_found() {
    let store = testing::fresh_pg_store().await;
    let (user, persona) = user_and_persona(&store).await;

    assert!(matches!(
        store.open_dialog(UserId(999), persona, t0()).await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(matches!(
        store.set_current_persona(user, PersonaId(999)).await,
        Err(StoreError::NotFound("persona"))
    ));
    let orphan = NewMessage {
        dialog_id: vitte_domain::ids::DialogId(999),
        role: Role::User,
        text: "hi".to_owned(),
        state: MessageState::Pending,
        telegram_message_id: None,
        update_id: None,
        reply_to: None,
        usage: None,
    };
    assert!(matches!(
        store.append_message(&orphan, t0()).await,
        Err(StoreError::NotFound("dialog"))
    ));
    assert!(matches!(
        store
            .apply_grant(
                UserId(999),
                &Grant::Credits {
                    kind: CreditKind::Image,
                    amount: 1
                },
                t0()
            )
            .await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(matches!(
        store
            .settle_payment(
                PaymentProvider::YooKassa,
                "nope",
                &Grant::Credits {
                    kind: CreditKind::Image,
                    amount: 1
                },
                t0()
            )
            .await,
        Err(StoreError::NotFound("payment"))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_values_that_do_not_parse_are_corrupt() {
    let store = testing::fresh_pg_store().await;
    let (user, persona) = user_and_persona(&store).await;

    sqlx::query("UPDATE personas SET slug = 'Not A Slug' WHERE id = $1")
        .bind(persona.0)
        .execute(store.pool())
        .await
        .expect("tamper slug");
    assert!(matches!(
        store.persona(persona).await,
        Err(StoreError::Corrupt(_))
    ));

    sqlx::query(
        "UPDATE personas SET slug = 'lisa', lorebook = '{\"not\": \"a list\"}' WHERE id = $1",
    )
    .bind(persona.0)
    .execute(store.pool())
    .await
    .expect("tamper lorebook");
    assert!(matches!(
        store.list_personas(false).await,
        Err(StoreError::Corrupt(_))
    ));

    let dialog = store
        .open_dialog(user, persona, t0())
        .await
        .expect("dialog");
    let reply = NewMessage {
        dialog_id: dialog.id,
        role: Role::Assistant,
        text: "hello".to_owned(),
        state: MessageState::Sent,
        telegram_message_id: None,
        update_id: None,
        reply_to: None,
        usage: None,
    };
    let stored = store.append_message(&reply, t0()).await.expect("append");
    sqlx::query("UPDATE messages SET model = 'm' WHERE id = $1")
        .bind(stored.id.0)
        .execute(store.pool())
        .await
        .expect("tamper usage");
    assert!(matches!(
        store.message(stored.id).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_keeps_the_chosen_language_and_unblocks() {
    let store = testing::fresh_pg_store().await;
    let first = store.upsert_user(&profile(7), t0()).await.expect("create");
    assert_eq!(first.language.as_deref(), Some("ru"));
    store.set_language(first.id, "en").await.expect("choose");
    store
        .set_blocked_bot(first.id, true)
        .await
        .expect("blocked");

    let later = t0() + TimeDelta::hours(1);
    let mut renamed = profile(7);
    renamed.first_name = "Anna".to_owned();
    renamed.language_code = Some("de".to_owned());
    let again = store.upsert_user(&renamed, later).await.expect("refresh");
    assert_eq!(again.id, first.id);
    assert_eq!(again.first_name, "Anna");
    assert_eq!(again.language.as_deref(), Some("en"));
    assert!(!again.blocked_bot);
    assert_eq!((again.first_seen, again.last_seen), (t0(), later));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_grants_keep_the_later_expiry() {
    let store = testing::fresh_pg_store().await;
    let (user, persona) = user_and_persona(&store).await;
    let unlock = |days| Grant::Unlock {
        feature: "voice".to_owned(),
        persona_id: Some(persona),
        days,
    };
    store
        .apply_grant(user, &unlock(Some(10)), t0())
        .await
        .expect("10 days");
    store
        .apply_grant(user, &unlock(Some(3)), t0())
        .await
        .expect("3 days");
    let unlocks = store.unlocks(user, t0()).await.expect("unlocks");
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].expires_at, Some(t0() + TimeDelta::days(10)));

    store
        .apply_grant(user, &unlock(None), t0())
        .await
        .expect("forever");
    store
        .apply_grant(user, &unlock(Some(30)), t0())
        .await
        .expect("30 days");
    let unlocks = store
        .unlocks(user, t0() + TimeDelta::days(365))
        .await
        .expect("unlocks");
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].expires_at, None);
}

/// Concurrent retries behave as if they ran one after another (as they do
/// on SQLite): each reopens a different exchange, newest first, and none
/// reopens an exchange another one already reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_reopen_each_exchange_once() {
    let store = Arc::new(testing::fresh_pg_store().await);
    let (user, persona) = user_and_persona(&store).await;
    let dialog = store
        .open_dialog(user, persona, t0())
        .await
        .expect("open")
        .id;
    let message = |role, state, update: Option<i64>| NewMessage {
        dialog_id: dialog,
        role,
        text: "hi".to_owned(),
        state,
        telegram_message_id: None,
        update_id: update.map(|n| UpdateId::try_from(n).expect("update id")),
        reply_to: None,
        usage: None,
    };
    let mut asked = Vec::new();
    for update in [1, 2] {
        let m = store
            .append_message(
                &message(Role::User, MessageState::Pending, Some(update)),
                t0(),
            )
            .await
            .expect("user message");
        store
            .complete_reply(
                &plain(&[m.id], &message(Role::Assistant, MessageState::Sent, None)),
                t0(),
            )
            .await
            .map(|c| c.message)
            .expect("reply");
        asked.push(vec![m.id]);
    }

    let retries: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.reopen_last_exchange(dialog).await })
        })
        .collect();
    let mut reopened: Vec<_> = futures::future::join_all(retries)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("reopen"))
        .filter(|ids| !ids.is_empty())
        .collect();
    reopened.sort();
    assert_eq!(reopened, asked);

    // An update's message for a dialog that does not exist is still refused.
    let mut orphan = message(Role::User, MessageState::Pending, Some(3));
    orphan.dialog_id = vitte_domain::ids::DialogId(999);
    assert!(matches!(
        store.append_message(&orphan, t0()).await,
        Err(StoreError::NotFound("dialog"))
    ));
}
