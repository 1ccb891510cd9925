//! Cases about users.

use std::sync::Arc;

use vitte_domain::ids::{PersonaId, TelegramUserId, UserId};
use vitte_domain::ports::{Store, StoreError};

use crate::fixtures::{at, persona, profile, t0, user};

/// First contact creates; later contacts refresh names and `last_seen`, keep
/// the chosen language, and clear `blocked_bot`.
pub async fn upsert_creates_then_refreshes(store: Arc<dyn Store>) {
    let created = user(&*store, 42).await;
    assert_eq!(created.telegram_id.get(), 42);
    assert_eq!(created.first_name, "User42");
    assert_eq!(created.language.as_deref(), Some("ru"));
    assert_eq!(created.first_seen, t0());
    assert_eq!(created.last_seen, t0());
    assert_eq!(created.terms_version, None);
    assert!(!created.age_confirmed && !created.blocked_bot);
    assert_eq!(created.current_persona_id, None);

    store
        .set_blocked_bot(created.id, true)
        .await
        .expect("block");
    let mut changed = profile(42);
    changed.first_name = "Anna".to_owned();
    changed.last_name = Some("K".to_owned());
    changed.language_code = Some("en".to_owned());
    let refreshed = store.upsert_user(&changed, at(60)).await.expect("upsert");
    assert_eq!(refreshed.id, created.id);
    assert_eq!(refreshed.first_name, "Anna");
    assert_eq!(refreshed.last_name.as_deref(), Some("K"));
    assert_eq!(
        refreshed.language.as_deref(),
        Some("ru"),
        "chosen language kept"
    );
    assert_eq!(refreshed.first_seen, t0());
    assert_eq!(refreshed.last_seen, at(60));
    assert!(
        !refreshed.blocked_bot,
        "writing to the bot clears the blocked flag"
    );
}

/// Users are found by our key and by Telegram's, and absent ones are `None`.
pub async fn lookups_by_either_key(store: Arc<dyn Store>) {
    let a = user(&*store, 1).await;
    let b = user(&*store, 2).await;
    assert_ne!(a.id, b.id);
    assert_eq!(store.user(a.id).await.expect("by id"), Some(a.clone()));
    let tg = TelegramUserId::try_from(2).expect("id");
    assert_eq!(store.user_by_telegram_id(tg).await.expect("by tg"), Some(b));
    let missing = TelegramUserId::try_from(999).expect("id");
    assert_eq!(
        store.user_by_telegram_id(missing).await.expect("by tg"),
        None
    );
    assert_eq!(
        store.user(UserId(a.id.0 + 1000)).await.expect("by id"),
        None
    );
}

/// Accepting terms records the version, the age confirmation and the time.
pub async fn accept_terms_records_version(store: Arc<dyn Store>) {
    let u = user(&*store, 7).await;
    let accepted = store
        .accept_terms(u.id, 3, true, at(5))
        .await
        .expect("accept");
    assert_eq!(accepted.terms_version, Some(3));
    assert_eq!(accepted.terms_accepted_at, Some(at(5)));
    assert!(accepted.age_confirmed);
    assert_eq!(store.user(u.id).await.expect("get"), Some(accepted));
    let err = store
        .accept_terms(UserId(u.id.0 + 1000), 3, true, at(5))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
}

/// Setters change what they say and refuse rows that do not exist.
pub async fn setters_refuse_missing_rows(store: Arc<dyn Store>) {
    let u = user(&*store, 8).await;
    let p = persona(&*store, "Mira").await;
    store.set_language(u.id, "en").await.expect("language");
    store
        .set_current_persona(u.id, p.id)
        .await
        .expect("persona");
    store.set_blocked_bot(u.id, true).await.expect("blocked");
    let got = store.user(u.id).await.expect("get").expect("exists");
    assert_eq!(got.language.as_deref(), Some("en"));
    assert_eq!(got.current_persona_id, Some(p.id));
    assert!(got.blocked_bot);

    let ghost = UserId(u.id.0 + 1000);
    assert!(matches!(
        store.set_language(ghost, "en").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_blocked_bot(ghost, true).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_current_persona(ghost, p.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store
            .set_current_persona(u.id, PersonaId(p.id.0 + 1000))
            .await
            .is_err(),
        "a persona that does not exist cannot become current"
    );
}
