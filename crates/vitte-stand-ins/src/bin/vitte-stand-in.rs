//! `vitte-stand-in`: runs the Telegram Bot API stand-in, the model stand-in,
//! or both, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::net::TcpListener;
use vitte_stand_ins::{llm, telegram};

/// Local stand-ins of the Telegram Bot API and an OpenAI-compatible model.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Serve the Telegram Bot API stand-in on this address.
    #[arg(long, env = "STAND_IN_TELEGRAM_ADDR")]
    telegram: Option<SocketAddr>,
    /// Serve the chat-completions stand-in on this address.
    #[arg(long, env = "STAND_IN_LLM_ADDR")]
    llm: Option<SocketAddr>,
    /// The bot token the Telegram stand-in accepts (`<bot id>:<secret>`).
    #[arg(
        long,
        env = "STAND_IN_BOT_TOKEN",
        default_value = "123456789:STAND-IN-TOKEN"
    )]
    bot_token: String,
    /// The bot's username, without `@`.
    #[arg(
        long,
        env = "STAND_IN_BOT_USERNAME",
        default_value = "vitte_stand_in_bot"
    )]
    bot_username: String,
    /// Turn off Telegram's flood limits (for load tests of our side).
    #[arg(long, env = "STAND_IN_NO_RATE_LIMITS")]
    no_rate_limits: bool,
    /// Milliseconds added to every Bot API call.
    #[arg(long, env = "STAND_IN_TELEGRAM_LATENCY_MS", default_value_t = 0)]
    telegram_latency_ms: u64,
    /// Accept sends to chats that never wrote to the bot.
    #[arg(long, env = "STAND_IN_ACCEPT_UNKNOWN_CHATS")]
    accept_unknown_chats: bool,
    /// The API key the model stand-in requires; any key is accepted if unset.
    #[arg(long, env = "STAND_IN_LLM_API_KEY")]
    llm_api_key: Option<String>,
    /// Comma-separated models that exist; any model name is accepted if unset.
    #[arg(long, env = "STAND_IN_LLM_MODELS", value_delimiter = ',')]
    llm_models: Option<Vec<String>>,
    /// Milliseconds before the model's first token.
    #[arg(long, env = "STAND_IN_LLM_FIRST_TOKEN_MS", default_value_t = 0)]
    llm_first_token_ms: u64,
    /// Milliseconds between streamed pieces.
    #[arg(long, env = "STAND_IN_LLM_PER_TOKEN_MS", default_value_t = 0)]
    llm_per_token_ms: u64,
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (containers).
async fn stopped() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.telegram.is_none() && args.llm.is_none() {
        bail!("nothing to run: give --telegram ADDR and/or --llm ADDR");
    }
    let mut handles = Vec::new();
    if let Some(addr) = args.telegram {
        let config = telegram::Config {
            token: args.bot_token.clone(),
            bot_username: args.bot_username.clone(),
            rate_limits: if args.no_rate_limits {
                telegram::RateLimits::disabled()
            } else {
                telegram::RateLimits::telegram()
            },
            call_latency: Duration::from_millis(args.telegram_latency_ms),
            accept_unknown_chats: args.accept_unknown_chats,
            ..telegram::Config::default()
        };
        let stand_in = telegram::TelegramStandIn::new(config)?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Telegram stand-in to {addr}"))?;
        let handle = stand_in.spawn(listener)?;
        tracing::info!(
            base_url = handle.base_url(),
            bot_api = format!("{}/bot{}/", handle.base_url(), args.bot_token),
            "Telegram Bot API stand-in listening"
        );
        handles.push(handle);
    }
    if let Some(addr) = args.llm {
        let config = llm::Config {
            api_key: args.llm_api_key.clone(),
            behaviour: llm::Behaviour {
                first_token_ms: args.llm_first_token_ms,
                per_token_ms: args.llm_per_token_ms,
                known_models: args.llm_models.clone(),
                ..llm::Behaviour::default()
            },
            ..llm::Config::default()
        };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the model stand-in to {addr}"))?;
        let handle = llm::LlmStandIn::new(config).spawn(listener)?;
        tracing::info!(
            api_base = format!("{}/v1", handle.base_url()),
            "chat-completions stand-in listening"
        );
        handles.push(handle);
    }
    stopped().await?;
    for handle in handles {
        handle.shutdown().await?;
    }
    Ok(())
}
