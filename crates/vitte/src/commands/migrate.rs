//! `vitte migrate up | down [N|--all] | status`.

use std::process::ExitCode;

use anyhow::Context;
use vitte_domain::ports::{DownTarget, MigrationInfo, Store};
use vitte_runtime::Settings;
use vitte_runtime::engine::open_store;

async fn store(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    open_store(&settings.database_url, &settings.pool())
        .await
        .with_context(|| format!("cannot open the database at {}", settings.database_url))
}

fn print(verb: &str, migrations: &[MigrationInfo]) {
    if migrations.is_empty() {
        println!("nothing to {verb}");
    }
    for m in migrations {
        println!("{verb} {:04} {}", m.version, m.description);
    }
}

/// Applies pending migrations.
pub async fn up(settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = store(settings).await?;
    let applied = store.up().await.context("migration failed")?;
    print("applied", &applied);
    let status = store.status().await?;
    println!("schema at version {}", status.version());
    Ok(ExitCode::SUCCESS)
}

/// Reverts `steps` (default 1) or all migrations.
pub async fn down(
    settings: &Settings,
    steps: Option<usize>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let target = if all {
        DownTarget::All
    } else {
        DownTarget::Steps(steps.unwrap_or(1))
    };
    let store = store(settings).await?;
    let reverted = store.down(target).await.context("revert failed")?;
    print("reverted", &reverted);
    let status = store.status().await?;
    println!("schema at version {}", status.version());
    Ok(ExitCode::SUCCESS)
}

/// Lists applied and pending migrations; exit 1 when not current.
pub async fn status(settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = store(settings).await?;
    let status = store.status().await?;
    for m in &status.applied {
        println!("applied {:04} {}", m.version, m.description);
    }
    for m in &status.pending {
        println!("pending {:04} {}", m.version, m.description);
    }
    for v in &status.unknown {
        println!("unknown {v:04} (applied by a newer build)");
    }
    if status.is_current() {
        println!("schema current at version {}", status.version());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("schema NOT current: run `vitte migrate up`");
        Ok(ExitCode::FAILURE)
    }
}
