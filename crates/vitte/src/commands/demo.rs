//! `vitte demo`: the whole product on this machine with no tokens and no
//! network. Every role runs on the configured store (the embedded SQLite
//! file by default) against in-process stand-ins of the Telegram Bot API and
//! of an LLM API; the Telegram stand-in serves a web page that plays a
//! Telegram client, so the bot is used through its real Telegram code path.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;
use tokio::net::TcpListener;
use url::Url;
use vitte_runtime::Settings;
use vitte_runtime::config::ModelList;
use vitte_stand_ins::{llm, telegram};

use super::roles::{self, Role};

/// Starts the stand-ins, points the bot at them, and runs every role.
pub async fn run(mut settings: Settings, page_listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let page = TcpListener::bind(page_listen)
        .await
        .with_context(|| format!("cannot listen on --page-listen {page_listen}"))?;
    let telegram = telegram::TelegramStandIn::new(telegram::Config::default())
        .context("Telegram stand-in configuration")?;
    let token = telegram.token().to_owned();
    let telegram = telegram
        .spawn(page)
        .context("cannot start the Telegram stand-in")?;
    // A model that takes its time, as real ones do, so "typing…" and the
    // reply being written progressively can be seen.
    let model = llm::LlmStandIn::new(llm::Config {
        behaviour: llm::Behaviour {
            first_token_ms: 700,
            per_token_ms: 30,
            ..llm::Behaviour::default()
        },
        ..llm::Config::default()
    })
    .spawn(TcpListener::bind("127.0.0.1:0").await?)
    .context("cannot start the LLM stand-in")?;

    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on VITTE_LISTEN={}", settings.listen))?;
    let addr = listener.local_addr()?;
    settings.telegram_bot_token = Some(SecretString::from(token));
    settings.telegram_api_url = Url::parse(telegram.base_url())?;
    settings.telegram_webhook_url = Some(Url::parse(&format!("http://{addr}/telegram/webhook"))?);
    settings.telegram_webhook_secret = Some(SecretString::from(
        Alphanumeric.sample_string(&mut rand::rng(), 32),
    ));
    settings.llm_base_url = Url::parse(&format!("{}/v1", model.base_url().trim_end_matches('/')))?;
    settings.llm_api_key = None;
    settings.llm_model = "vitte-stand-in".to_owned();
    settings.llm_fallback_models = ModelList::default();

    println!(
        "Vitte demo: open {}/ in your browser",
        telegram.base_url().trim_end_matches('/')
    );
    let outcome = roles::serve(settings, Role::ALL, true, listener).await;
    if let Err(e) = telegram.shutdown().await {
        tracing::warn!(error = %e, "Telegram stand-in did not stop cleanly");
    }
    if let Err(e) = model.shutdown().await {
        tracing::warn!(error = %e, "LLM stand-in did not stop cleanly");
    }
    outcome
}
