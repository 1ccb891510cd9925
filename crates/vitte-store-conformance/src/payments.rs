//! Cases about payments.

use std::sync::Arc;

use vitte_domain::ids::{Currency, Money, UserId};
use vitte_domain::model::{CreditKind, Grant, NewPayment, PaymentProvider, PaymentState};
use vitte_domain::ports::{SettleOutcome, Store, StoreError};

use crate::fixtures::{at, t0, user};

fn stars(user: UserId, charge_id: &str, amount: i64) -> NewPayment {
    NewPayment {
        user_id: user,
        provider: PaymentProvider::TelegramStars,
        provider_payment_id: charge_id.to_owned(),
        amount: Money::new(amount, Currency::Xtr).expect("amount"),
        product: "premium_30d".to_owned(),
    }
}

/// Recording the same provider payment twice yields one row.
pub async fn record_is_idempotent_by_provider_id(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let (p, created) = store
        .record_payment(&stars(u.id, "ch_1", 250), t0())
        .await
        .expect("record");
    assert!(created);
    assert_eq!(p.state, PaymentState::Pending);
    assert_eq!(p.amount, Money::new(250, Currency::Xtr).expect("amount"));
    assert_eq!(p.created_at, t0());
    let (again, created) = store
        .record_payment(&stars(u.id, "ch_1", 250), at(1))
        .await
        .expect("again");
    assert!(!created);
    assert_eq!(again, p);
    // The same id at another provider is another payment.
    let mut yk = stars(u.id, "ch_1", 19900);
    yk.provider = PaymentProvider::YooKassa;
    yk.amount = Money::new(19900, Currency::Rub).expect("amount");
    let (other, created) = store.record_payment(&yk, at(2)).await.expect("yookassa");
    assert!(created);
    assert_ne!(other.id, p.id);
    assert_eq!(other.amount.currency, Currency::Rub);
    assert_eq!(store.payment(p.id).await.expect("get"), Some(p.clone()));
    assert_eq!(
        store
            .payment_by_provider_id(PaymentProvider::YooKassa, "ch_1")
            .await
            .expect("get"),
        Some(other)
    );
    assert_eq!(
        store
            .payment_by_provider_id(PaymentProvider::YooKassa, "nope")
            .await
            .expect("get"),
        None
    );
}

/// Settling marks the payment succeeded and applies its grant exactly once.
pub async fn settle_applies_grant_once(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let (p, _) = store
        .record_payment(&stars(u.id, "ch_9", 100), t0())
        .await
        .expect("record");
    let grant = Grant::Subscription {
        plan: "premium".to_owned(),
        days: 30,
    };
    let settled = store
        .settle_payment(PaymentProvider::TelegramStars, "ch_9", &grant, at(5))
        .await
        .expect("settle");
    let SettleOutcome::Settled(paid) = settled else {
        panic!("not settled: {settled:?}")
    };
    assert_eq!(paid.id, p.id);
    assert_eq!(paid.state, PaymentState::Succeeded);
    assert_eq!(paid.updated_at, at(5));
    let sub = store
        .active_subscription(u.id, at(6))
        .await
        .expect("sub")
        .expect("granted");
    assert_eq!(sub.payment_id, Some(p.id));

    let again = store
        .settle_payment(PaymentProvider::TelegramStars, "ch_9", &grant, at(7))
        .await
        .expect("settle again");
    assert!(
        matches!(again, SettleOutcome::AlreadySettled(_)),
        "{again:?}"
    );
    let sub2 = store
        .active_subscription(u.id, at(6))
        .await
        .expect("sub")
        .expect("granted");
    assert_eq!(sub2.ends_at, sub.ends_at, "grant applied twice");

    let credits = Grant::Credits {
        kind: CreditKind::Image,
        amount: 10,
    };
    store
        .record_payment(&stars(u.id, "ch_10", 50), t0())
        .await
        .expect("record");
    store
        .settle_payment(PaymentProvider::TelegramStars, "ch_10", &credits, at(8))
        .await
        .expect("settle");
    store
        .settle_payment(PaymentProvider::TelegramStars, "ch_10", &credits, at(9))
        .await
        .expect("settle");
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Image)
            .await
            .expect("balance"),
        10
    );
}

/// Canceled payments cannot be settled; unknown ones are `NotFound`.
pub async fn settle_refuses_closed_payments(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let (p, _) = store
        .record_payment(&stars(u.id, "ch_2", 100), t0())
        .await
        .expect("record");
    assert!(
        store
            .transition_payment(p.id, PaymentState::Pending, PaymentState::Canceled, at(1))
            .await
            .expect("cancel")
    );
    let grant = Grant::Credits {
        kind: CreditKind::Voice,
        amount: 5,
    };
    let res = store
        .settle_payment(PaymentProvider::TelegramStars, "ch_2", &grant, at(2))
        .await;
    assert!(matches!(res, Err(StoreError::Conflict(_))), "{res:?}");
    assert_eq!(
        store
            .credit_balance(u.id, CreditKind::Voice)
            .await
            .expect("balance"),
        0
    );
    let res = store
        .settle_payment(PaymentProvider::TelegramStars, "ghost", &grant, at(2))
        .await;
    assert!(matches!(res, Err(StoreError::NotFound(_))), "{res:?}");
}

/// Transitions move only from the expected state.
pub async fn transition_is_compare_and_set(store: Arc<dyn Store>) {
    let u = user(&*store, 1).await;
    let (p, _) = store
        .record_payment(&stars(u.id, "ch_3", 100), t0())
        .await
        .expect("record");
    assert!(
        !store
            .transition_payment(p.id, PaymentState::Succeeded, PaymentState::Refunded, at(1))
            .await
            .expect("cas")
    );
    assert!(
        store
            .transition_payment(p.id, PaymentState::Pending, PaymentState::Succeeded, at(2))
            .await
            .expect("cas")
    );
    assert!(
        store
            .transition_payment(p.id, PaymentState::Succeeded, PaymentState::Refunded, at(3))
            .await
            .expect("cas")
    );
    let got = store.payment(p.id).await.expect("get").expect("exists");
    assert_eq!(got.state, PaymentState::Refunded);
    assert_eq!(got.updated_at, at(3));
}
