//! `vitte persona import FILE...`: personas are data, imported from
//! Character Card V2/V3 files (JSON, or PNG with the card embedded).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use vitte_domain::Clock;
use vitte_domain::SystemClock;
use vitte_domain::ids::PersonaSlug;
use vitte_domain::ports::Store;
use vitte_runtime::Settings;
use vitte_runtime::engine::{SchemaPolicy, ensure_schema, open_store};

/// Imports each file; a persona with the same slug is replaced in place.
pub async fn import(
    settings: &Settings,
    files: &[PathBuf],
    slug: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let store = open_store(&settings.database_url, &settings.pool())
        .await
        .with_context(|| format!("cannot open the database at {}", settings.database_url))?;
    ensure_schema(&*store, SchemaPolicy::RequireCurrent).await?;
    let slug = slug.map(PersonaSlug::parse).transpose().context("--slug")?;
    if slug.is_some() && files.len() > 1 {
        anyhow::bail!("--slug names one persona: give one file with it");
    }
    let mut failed = 0;
    for file in files {
        match import_one(&*store, file, slug.as_ref()).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", file.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn import_one(
    store: &dyn Store,
    file: &PathBuf,
    slug: Option<&PersonaSlug>,
) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).context("cannot read the file")?;
    let imported = vitte_cards::parse_card(&bytes)?;
    let slug = slug.cloned().unwrap_or(imported.suggested_slug);
    let persona = store
        .upsert_persona(
            &slug,
            &imported.card,
            imported.picture.as_ref(),
            SystemClock.now(),
        )
        .await?;
    Ok(format!(
        "imported {} as /start {} ({:?} card)",
        persona.card.name, persona.slug, imported.spec
    ))
}

/// The personas shipped with the product, embedded so a fresh install has
/// someone to talk to. Imported only into a store that has no personas.
pub async fn seed_examples(store: &dyn Store) -> anyhow::Result<usize> {
    const EXAMPLES: [&[u8]; 3] = [
        include_bytes!("../../../../personas/mira.png"),
        include_bytes!("../../../../personas/elias.png"),
        include_bytes!("../../../../personas/vera.png"),
    ];
    if !store.list_personas(false).await?.is_empty() {
        return Ok(0);
    }
    for bytes in EXAMPLES {
        let imported = vitte_cards::parse_card(bytes)?;
        store
            .upsert_persona(
                &imported.suggested_slug,
                &imported.card,
                imported.picture.as_ref(),
                SystemClock.now(),
            )
            .await?;
    }
    Ok(EXAMPLES.len())
}
