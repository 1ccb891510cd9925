//! `vitte config check`.

use std::process::ExitCode;

use vitte_runtime::Settings;

/// Prints every setting with secrets redacted. Reaching here means parsing
/// and validation passed, so the configuration is usable.
pub fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    let rows = settings.describe();
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$} = {value}");
    }
    println!(
        "configuration OK (engine: {})",
        settings.database_url.engine()
    );
    Ok(ExitCode::SUCCESS)
}
