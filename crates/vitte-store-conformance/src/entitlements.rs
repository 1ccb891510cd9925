//! Cases about subscriptions, unlocks and credits.

use std::sync::Arc;

use chrono::TimeDelta;
use vitte_domain::model::{CreditKind, Grant};
use vitte_domain::ports::{Store, StoreError};

use crate::fixtures::{at, persona, t0, user};

const DAY: i64 = 86_400;

/// A subscription grant starts now, or at the end of the period already paid for.
pub async fn subscription_grants_extend(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    assert_eq!(
        store.active_subscription(u.id, t0()).await.expect("sub"),
        None
    );
    let month = Grant::Subscription {
        plan: "premium".to_owned(),
        days: 30,
    };
    store.apply_grant(u.id, &month, t0()).await.expect("grant");
    let s = store
        .active_subscription(u.id, at(DAY))
        .await
        .expect("sub")
        .expect("active");
    assert_eq!(s.plan, "premium");
    assert_eq!(s.starts_at, t0());
    assert_eq!(s.ends_at, t0() + TimeDelta::days(30));
    assert_eq!(s.payment_id, None);

    // Renewed ten days in: the new period follows the paid one.
    store
        .apply_grant(u.id, &month, at(10 * DAY))
        .await
        .expect("renew");
    let late = store
        .active_subscription(u.id, at(45 * DAY))
        .await
        .expect("sub")
        .expect("active");
    assert_eq!(late.starts_at, t0() + TimeDelta::days(30));
    assert_eq!(late.ends_at, t0() + TimeDelta::days(60));
    assert_eq!(
        store
            .active_subscription(u.id, at(60 * DAY))
            .await
            .expect("sub"),
        None
    );
    // Renewed after lapsing: starts at once.
    store
        .apply_grant(u.id, &month, at(100 * DAY))
        .await
        .expect("renew");
    let back = store
        .active_subscription(u.id, at(100 * DAY))
        .await
        .expect("sub")
        .expect("active");
    assert_eq!(back.starts_at, at(100 * DAY));
}

/// Unlocks lapse at their expiry; granting again extends, and "forever" wins.
pub async fn unlocks_expire_and_extend(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let p = persona(&*store, "Mira").await;
    let week = Grant::Unlock {
        feature: "voice".to_owned(),
        persona_id: None,
        days: Some(7),
    };
    store.apply_grant(u.id, &week, t0()).await.expect("grant");
    let level = Grant::Unlock {
        feature: "level_3".to_owned(),
        persona_id: Some(p.id),
        days: None,
    };
    store.apply_grant(u.id, &level, t0()).await.expect("grant");

    let mut now = store.unlocks(u.id, at(DAY)).await.expect("unlocks");
    now.sort_by(|a, b| a.feature.cmp(&b.feature));
    assert_eq!(now.len(), 2);
    assert_eq!(now[0].feature, "level_3");
    assert_eq!(now[0].persona_id, Some(p.id));
    assert_eq!(now[0].expires_at, None);
    assert_eq!(now[1].feature, "voice");
    assert_eq!(now[1].expires_at, Some(t0() + TimeDelta::days(7)));

    let later = store.unlocks(u.id, at(8 * DAY)).await.expect("unlocks");
    assert_eq!(
        later.iter().map(|u| u.feature.as_str()).collect::<Vec<_>>(),
        ["level_3"]
    );

    store
        .apply_grant(u.id, &week, at(DAY))
        .await
        .expect("extend");
    let extended = store.unlocks(u.id, at(7 * DAY + 1)).await.expect("unlocks");
    let voice = extended
        .iter()
        .find(|u| u.feature == "voice")
        .expect("voice still on");
    assert_eq!(voice.expires_at, Some(at(DAY) + TimeDelta::days(7)));
    let forever = Grant::Unlock {
        feature: "voice".to_owned(),
        persona_id: None,
        days: None,
    };
    store
        .apply_grant(u.id, &forever, at(2 * DAY))
        .await
        .expect("forever");
    store
        .apply_grant(u.id, &week, at(3 * DAY))
        .await
        .expect("week after forever");
    let all = store.unlocks(u.id, at(1000 * DAY)).await.expect("unlocks");
    assert_eq!(all.iter().filter(|u| u.feature == "voice").count(), 1);
    assert!(
        all.iter()
            .any(|u| u.feature == "voice" && u.expires_at.is_none())
    );
}

/// Credits are added and spent; a spend beyond the balance fails and changes nothing.
pub async fn credits_never_go_negative(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Voice)
            .await
            .expect("balance"),
        0
    );
    let add = Grant::Credits {
        kind: CreditKind::Voice,
        amount: 3,
    };
    store.apply_grant(u.id, &add, t0()).await.expect("grant");
    store.apply_grant(u.id, &add, t0()).await.expect("grant");
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Voice)
            .await
            .expect("balance"),
        6
    );
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Image)
            .await
            .expect("balance"),
        0
    );
    assert_eq!(
        store
            .spend_credits(u.id, CreditKind::Voice, 4, at(1))
            .await
            .expect("spend"),
        2
    );
    match store.spend_credits(u.id, CreditKind::Voice, 3, at(2)).await {
        Err(StoreError::InsufficientCredits {
            kind,
            balance,
            wanted,
        }) => {
            assert_eq!((kind, balance, wanted), (CreditKind::Voice, 2, 3));
        }
        other => panic!("overspend allowed: {other:?}"),
    }
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Voice)
            .await
            .expect("balance"),
        2
    );
    assert!(matches!(
        store.spend_credits(u.id, CreditKind::Image, 1, at(3)).await,
        Err(StoreError::InsufficientCredits { balance: 0, .. })
    ));
}

/// Concurrent spends never take more than the balance.
pub async fn concurrent_spends_respect_balance(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let add = Grant::Credits {
        kind: CreditKind::Image,
        amount: 5,
    };
    store.apply_grant(u.id, &add, t0()).await.expect("grant");
    let spends = (0..12).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.spend_credits(u.id, CreditKind::Image, 1, at(1)).await })
    });
    let results = futures::future::join_all(spends).await;
    let mut ok = 0;
    for r in results {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::InsufficientCredits { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Image)
            .await
            .expect("balance"),
        0
    );
}
