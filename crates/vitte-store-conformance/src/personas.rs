//! Cases about personas.

use std::sync::Arc;

use vitte_domain::ids::{PersonaId, PersonaSlug};
use vitte_domain::model::Picture;
use vitte_domain::ports::{Store, StoreError};

use crate::fixtures::{at, card, persona, t0};

/// Importing a card with an existing slug replaces the card in place; a
/// picture given once is kept by later imports without one.
pub async fn upsert_replaces_card_and_keeps_picture(store: Arc<dyn Store>) {
    let first = persona(&*store, "Mira").await;
    assert_eq!(first.slug.as_str(), "mira");
    assert_eq!(first.card, card("Mira"));
    assert!(first.listed);
    assert!(!first.has_picture);
    assert_eq!(first.created_at, t0());
    assert_eq!(
        store.persona_picture(first.id).await.expect("picture"),
        None
    );

    let picture = Picture {
        mime: "image/png".to_owned(),
        bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 255],
    };
    let mut edited = card("Mira");
    edited.description = "Now a baker.".to_owned();
    edited.lorebook.clear();
    let second = store
        .upsert_persona(&first.slug, &edited, Some(&picture), at(10))
        .await
        .expect("re-import");
    assert_eq!(second.id, first.id);
    assert_eq!(second.card, edited);
    assert!(second.has_picture);
    assert_eq!(second.created_at, t0());
    assert_eq!(second.updated_at, at(10));

    let third = store
        .upsert_persona(&first.slug, &edited, None, at(20))
        .await
        .expect("re-import without picture");
    assert!(third.has_picture);
    assert_eq!(
        store.persona_picture(first.id).await.expect("picture"),
        Some(picture)
    );
    assert_eq!(
        store.persona(first.id).await.expect("by id"),
        Some(third.clone())
    );
    assert_eq!(
        store.persona_by_slug(&first.slug).await.expect("by slug"),
        Some(third)
    );
    let none = PersonaSlug::parse("nobody").expect("slug");
    assert_eq!(store.persona_by_slug(&none).await.expect("by slug"), None);
}

/// The list is sorted by name; hidden personas are left out of the public list.
pub async fn listing_is_by_name_and_respects_listed(store: Arc<dyn Store>) {
    let zoe = persona(&*store, "Zoe").await;
    let anna = persona(&*store, "Anna").await;
    let mark = persona(&*store, "Mark").await;
    let names = |v: Vec<vitte_domain::model::Persona>| {
        v.into_iter().map(|p| p.card.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_personas(true).await.expect("list")),
        ["Anna", "Mark", "Zoe"]
    );

    store
        .set_persona_listed(mark.id, false)
        .await
        .expect("hide");
    assert_eq!(
        names(store.list_personas(true).await.expect("list")),
        ["Anna", "Zoe"]
    );
    assert_eq!(
        names(store.list_personas(false).await.expect("list")),
        ["Anna", "Mark", "Zoe"]
    );
    assert!(
        !store
            .persona(mark.id)
            .await
            .expect("get")
            .expect("exists")
            .listed
    );
    let _ = (zoe, anna);
    assert!(matches!(
        store
            .set_persona_listed(PersonaId(mark.id.0 + 1000), true)
            .await,
        Err(StoreError::NotFound(_))
    ));
}
