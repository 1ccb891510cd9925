//! Concurrency across stores sharing one file, as separate processes would:
//! each store has its own writer connection, so these writers really contend
//! for SQLite's write lock (within one store they queue on its writer pool).

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use serde_json::json;
use vitte_domain::ids::{Currency, DialogId, Money, PersonaSlug, TelegramUserId, UpdateId, UserId};
use vitte_domain::model::{
    CreditKind, Grant, MessageState, NewMessage, NewPayment, PaymentProvider, PersonaCard, Role,
    TelegramProfile,
};
use vitte_domain::ports::{
    DialogRepo, EntitlementRepo, MessageRepo, PaymentRepo, PersonaRepo, SchemaControl,
    SettleOutcome, UpdateInbox, UserRepo,
};
use vitte_store_conformance::fixtures::plain;
use vitte_store_sqlite::SqliteStore;
use vitte_store_sqlite::testing::pool_settings;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

/// `count` stores on one new, migrated file.
async fn stores_on_one_file(dir: &Path, count: usize) -> Vec<SqliteStore> {
    let path = dir.join("shared.db");
    let mut stores = Vec::new();
    for _ in 0..count {
        stores.push(
            SqliteStore::open_file(&path, &pool_settings())
                .await
                .expect("open"),
        );
    }
    stores[0].up().await.expect("up");
    stores
}

async fn user(store: &SqliteStore, telegram_id: i64) -> UserId {
    let profile = TelegramProfile {
        telegram_id: TelegramUserId::try_from(telegram_id).expect("positive"),
        first_name: "Anna".to_owned(),
        last_name: None,
        username: None,
        language_code: None,
    };
    store.upsert_user(&profile, t0()).await.expect("user").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_from_many_stores_share_one_dialog() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 3).await;
    let u = user(&stores[0], 1).await;
    let card = PersonaCard {
        name: "Mira".to_owned(),
        ..PersonaCard::default()
    };
    let slug = PersonaSlug::parse("mira").expect("slug");
    let p = stores[0]
        .upsert_persona(&slug, &card, None, t0())
        .await
        .expect("persona")
        .id;
    let opens = stores.iter().flat_map(|store| {
        (0..8).map(move |_| {
            let store = store.clone();
            tokio::spawn(async move { store.open_dialog(u, p, t0()).await })
        })
    });
    let ids: HashSet<_> = join_all(opens)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("open").id)
        .collect();
    assert_eq!(ids.len(), 1, "several dialogs opened: {ids:?}");
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dialogs WHERE user_id = ?1 AND active")
            .bind(u.0)
            .fetch_one(stores[1].pool())
            .await
            .expect("count");
    assert_eq!(active, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_from_many_stores_never_overlap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 3).await;
    for n in 0..150 {
        let id = UpdateId::try_from(n).expect("update id");
        assert!(
            stores[0]
                .record_update(id, &json!({ "update_id": n }), t0())
                .await
                .expect("record")
        );
    }
    let now = t0() + TimeDelta::seconds(1);
    let lease = now + TimeDelta::seconds(60);
    let claimers = stores.iter().flat_map(|store| {
        (0..3).map(move |_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_updates(4, now, lease).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    let ids: Vec<_> = batch.iter().map(|u| u.update_id).collect();
                    assert!(
                        ids.windows(2).all(|w| w[0] < w[1]),
                        "batch not ordered: {ids:?}"
                    );
                    assert!(batch.iter().all(|u| u.attempts == 1));
                    mine.extend(ids);
                }
            })
        })
    });
    let mut seen = HashSet::new();
    for ids in join_all(claimers).await {
        for id in ids.expect("task") {
            assert!(seen.insert(id), "update {id:?} claimed twice");
        }
    }
    assert_eq!(seen.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_wait_instead_of_failing_busy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 4).await;
    let u = user(&stores[0], 1).await;
    let grant = Grant::Credits {
        kind: CreditKind::Voice,
        amount: 1,
    };
    let writes = stores.iter().enumerate().flat_map(|(s, store)| {
        let grant = grant.clone();
        (0..25).map(move |i| {
            let store = store.clone();
            let grant = grant.clone();
            tokio::spawn(async move {
                // A multi-statement transaction and a single statement.
                store.apply_grant(u, &grant, t0()).await?;
                let id = UpdateId::try_from((s * 100 + i) as i64).expect("update id");
                store.record_update(id, &json!({}), t0()).await
            })
        })
    });
    for result in join_all(writes).await {
        assert!(result.expect("task").expect("write succeeds"));
    }
    assert_eq!(
        stores[3]
            .credit_balance(u, CreditKind::Voice)
            .await
            .expect("balance"),
        100
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_events WHERE user_id = ?1")
        .bind(u.0)
        .fetch_one(stores[2].pool())
        .await
        .expect("count");
    assert_eq!(events, 100);
}

/// Settling reads the payment, then writes: a transaction that took only a
/// read lock first could not upgrade while another store writes. Exactly one
/// settle of each payment wins and each grant lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settles_from_many_stores_apply_each_grant_once() {
    const PAYMENTS: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 4).await;
    let u = user(&stores[0], 1).await;
    for n in 0..PAYMENTS {
        let payment = NewPayment {
            user_id: u,
            provider: PaymentProvider::TelegramStars,
            provider_payment_id: format!("ch_{n}"),
            amount: Money::new(100, Currency::Xtr).expect("amount"),
            product: "images_10".to_owned(),
        };
        stores[0]
            .record_payment(&payment, t0())
            .await
            .expect("record");
    }
    let grant = Grant::Credits {
        kind: CreditKind::Image,
        amount: 10,
    };
    let settles = stores.iter().flat_map(|store| {
        let grant = grant.clone();
        (0..PAYMENTS * 3).map(move |i| {
            let store = store.clone();
            let grant = grant.clone();
            let charge = format!("ch_{}", i % PAYMENTS);
            tokio::spawn(async move {
                store
                    .settle_payment(PaymentProvider::TelegramStars, &charge, &grant, t0())
                    .await
            })
        })
    });
    let mut settled = 0;
    for outcome in join_all(settles).await {
        match outcome.expect("task").expect("settle succeeds") {
            SettleOutcome::Settled(_) => settled += 1,
            SettleOutcome::AlreadySettled(_) => {}
        }
    }
    assert_eq!(settled, PAYMENTS);
    assert_eq!(
        stores[1]
            .credit_balance(u, CreditKind::Image)
            .await
            .expect("balance"),
        10 * PAYMENTS as i64
    );
}

/// A dialog of a new user with a new persona.
async fn dialog(store: &SqliteStore) -> DialogId {
    let u = user(store, 1).await;
    let card = PersonaCard {
        name: "Mira".to_owned(),
        ..PersonaCard::default()
    };
    let slug = PersonaSlug::parse("mira").expect("slug");
    let p = store
        .upsert_persona(&slug, &card, None, t0())
        .await
        .expect("persona")
        .id;
    store.open_dialog(u, p, t0()).await.expect("open").id
}

fn message(dialog: DialogId, role: Role, update: Option<i64>) -> NewMessage {
    NewMessage {
        dialog_id: dialog,
        role,
        text: "hi".to_owned(),
        state: match role {
            Role::User => MessageState::Pending,
            _ => MessageState::Sent,
        },
        telegram_message_id: None,
        update_id: update.map(|n| UpdateId::try_from(n).expect("update id")),
        reply_to: None,
        usage: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reply_leases_from_many_stores_have_one_winner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 4).await;
    let d = dialog(&stores[0]).await;
    let until = t0() + TimeDelta::seconds(60);
    let attempts = stores.iter().enumerate().flat_map(|(s, store)| {
        (0..4).map(move |i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .lease_reply(d, &format!("store-{s}-{i}"), t0(), until)
                    .await
            })
        })
    });
    let mut taken = 0;
    for result in join_all(attempts).await {
        if result.expect("task").expect("lease") {
            taken += 1;
        }
    }
    assert_eq!(taken, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_of_one_update_from_many_stores_store_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 4).await;
    let d = dialog(&stores[0]).await;
    let appends = stores.iter().flat_map(|store| {
        (0..4).map(move |_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_message(&message(d, Role::User, Some(5)), t0())
                    .await
            })
        })
    });
    let ids: HashSet<_> = join_all(appends)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("append").id)
        .collect();
    assert_eq!(ids.len(), 1, "several messages returned: {ids:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE dialog_id = ?1")
        .bind(d.0)
        .fetch_one(stores[1].pool())
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_from_many_stores_reopen_an_exchange_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = stores_on_one_file(dir.path(), 4).await;
    let d = dialog(&stores[0]).await;
    let asked = stores[0]
        .append_message(&message(d, Role::User, Some(1)), t0())
        .await
        .expect("user message");
    stores[0]
        .complete_reply(
            &plain(&[asked.id], &message(d, Role::Assistant, None)),
            t0(),
        )
        .await
        .map(|c| c.message)
        .expect("reply");
    let retries = stores.iter().flat_map(|store| {
        (0..3).map(move |_| {
            let store = store.clone();
            tokio::spawn(async move { store.reopen_last_exchange(d).await })
        })
    });
    let reopened: Vec<_> = join_all(retries)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("reopen"))
        .filter(|ids| !ids.is_empty())
        .collect();
    assert_eq!(reopened, [vec![asked.id]]);
}
