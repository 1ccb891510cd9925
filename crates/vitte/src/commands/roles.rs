//! Starting roles: open the store, check the schema, bind the listener,
//! serve until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use vitte_domain::SystemClock;
use vitte_runtime::engine::{SchemaPolicy, ensure_schema, open_limiter, open_store, with_cache};
use vitte_runtime::{AppContext, ConfigError, RoleParts, Settings, Shutdown, run_roles};

/// A role this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Telegram ingress.
    Bot,
    /// HTTP API.
    Api,
    /// Background jobs.
    Worker,
}

impl Role {
    /// Every role, for `vitte all`.
    pub const ALL: &'static [Role] = &[Role::Bot, Role::Api, Role::Worker];

    fn parts(self, ctx: &AppContext) -> Result<RoleParts, ConfigError> {
        match self {
            Role::Bot => vitte_bot::parts(ctx),
            Role::Api => Ok(vitte_api::parts(ctx)),
            Role::Worker => Ok(vitte_worker::parts(ctx)),
        }
    }
}

/// Runs `roles` in this process until asked to stop.
pub async fn run(settings: Settings, roles: &[Role], migrate: bool) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on VITTE_LISTEN={}", settings.listen))?;
    serve(settings, roles, migrate, listener).await
}

/// Runs `roles` on an already bound listener until asked to stop.
pub async fn serve(
    settings: Settings,
    roles: &[Role],
    migrate: bool,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<ExitCode> {
    if roles == [Role::Bot] && settings.telegram_bot_token.is_none() {
        return Ok(config_failure(&ConfigError::new(
            "TELEGRAM_BOT_TOKEN",
            "is required to run the bot role",
        )));
    }
    let store = open_store(&settings.database_url, &settings.pool())
        .await
        .with_context(|| format!("cannot open the database at {}", settings.database_url))?;
    let policy = if migrate {
        SchemaPolicy::Migrate
    } else {
        SchemaPolicy::RequireCurrent
    };
    ensure_schema(&*store, policy).await?;
    if roles == Role::ALL {
        let seeded = super::persona::seed_examples(&*store).await?;
        if seeded > 0 {
            tracing::info!(seeded, "example personas imported into an empty store");
        }
    }
    let store = with_cache(store, &settings.database_url, settings.redis_url.as_ref())
        .await
        .context("REDIS_URL")?;
    let limiter = open_limiter(settings.redis_url.as_ref())
        .await
        .context("cannot reach the rate limiter at REDIS_URL")?;
    let ctx = AppContext {
        settings: Arc::new(settings),
        store,
        limiter,
        clock: Arc::new(SystemClock),
        shutdown: Shutdown::new(),
    };
    ctx.shutdown.trip_on_signals();
    let mut parts = Vec::new();
    for role in roles {
        match role.parts(&ctx) {
            Ok(p) => parts.push(p),
            Err(e) => return Ok(config_failure(&e)),
        }
    }
    run_roles(&ctx, listener, parts)
        .await
        .context("server failed")?;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("error: invalid configuration: {e}");
    ExitCode::from(2)
}
