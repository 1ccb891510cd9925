//! Configuration: one `clap` struct whose every field reads a flag, then an
//! environment variable, then an optional `KEY=value` file (`--config` /
//! `VITTE_CONFIG`), then its default. Values are parsed into typed settings
//! at start-up; an invalid one stops the process with exit code 2 and a
//! message naming the key. Secrets are `SecretString`s and never printed.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use url::Url;
use vitte_domain::ports::{PoolSettings, Quota};
use vitte_domain::services::{MICROS_PER_USD, ModelPrice, format_usd};

/// A configuration value is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The environment variable (or file key) at fault.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where relational data lives; the scheme picks the engine.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An embedded SQLite file (the zero-setup default).
    Sqlite(String),
    /// A PostgreSQL server, shared by any number of processes.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite://PATH`, `sqlite::memory:` or `postgres[ql]://...`.
    pub fn parse(s: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected sqlite://PATH or postgres://USER@HOST[:PORT]/DATABASE";
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            if path.is_empty() {
                return Err(format!("the SQLite path is empty; {EXPECTED}"));
            }
            return Ok(Self::Sqlite(s.to_owned()));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = Url::parse(s).map_err(|e| format!("{e}; {EXPECTED}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("the PostgreSQL host is missing; {EXPECTED}"));
            }
            return Ok(Self::Postgres(s.to_owned()));
        }
        Err(format!("unsupported database URL; {EXPECTED}"))
    }

    /// The URL with any password, for the engine only.
    pub fn expose(&self) -> &str {
        match self {
            Self::Sqlite(s) | Self::Postgres(s) => s,
        }
    }

    /// The engine's name.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.expose()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A Redis URL; may carry a password, so it prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Parses `redis://` or `rediss://` URLs.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| format!("{e}; expected redis://HOST[:PORT][/DB]"))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err("expected redis://HOST[:PORT][/DB] or rediss://...".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    /// The URL with any password, for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Replaces the password of a URL with `***`.
fn redact_url(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut url) if url.password().is_some() => {
            // Cannot fail: the URL has a password, so it has a host.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => s.to_owned(),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; expected e.g. 500ms, 5s, 10m"))
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{e}; expected an http(s) URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http(s) URL with a host".to_owned());
    }
    Ok(url)
}

/// Telegram allows 1-256 characters of `A-Z a-z 0-9 _ -` in a webhook secret.
fn parse_webhook_secret(s: &str) -> Result<SecretString, String> {
    let ok = (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err("must be 1-256 characters of A-Z, a-z, 0-9, '_' and '-'".to_owned());
    }
    Ok(SecretString::from(s.to_owned()))
}

/// An ordered list of model names, parsed from a comma-separated value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelList(pub Vec<String>);

impl ModelList {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(Self(
            s.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

/// Rate quotas such as `10/1m,100/1h`: at most 10 a minute and 100 an hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaList(pub Vec<Quota>);

impl QuotaList {
    fn parse(s: &str) -> Result<Self, String> {
        let mut quotas = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (count, period) = part
                .split_once('/')
                .ok_or_else(|| format!("{part:?}: expected COUNT/PERIOD such as 10/1m"))?;
            let count: u32 = count
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the count must be a whole number"))?;
            let period = parse_duration(period.trim())?;
            if count == 0 || period.is_zero() {
                return Err(format!("{part:?}: count and period must be positive"));
            }
            quotas.push(Quota { count, period });
        }
        Ok(Self(quotas))
    }
}

impl fmt::Display for QuotaList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|q| format!("{}/{}", q.count, humantime::format_duration(q.period)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Dollars such as `50` or `12.50` as integer micro-dollars (at most six
/// decimals: a micro-dollar is the smallest unit money is kept in).
fn parse_usd(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected dollars such as 50 or 12.50";
    let s = s.trim();
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(format!("{s:?}: {EXPECTED}"));
    }
    if fraction.len() > 6 {
        return Err(format!("{s:?}: at most 6 decimals (a micro-dollar)"));
    }
    let too_big = || format!("{s:?}: too large");
    let whole: u64 = whole.parse().map_err(|_| too_big())?;
    // Right-pad to micro-dollars: "5" is 500000.
    let fraction: u64 = format!("{fraction:0<6}").parse().map_err(|_| too_big())?;
    whole
        .checked_mul(MICROS_PER_USD)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(too_big)
}

/// `PROMPT/COMPLETION` in dollars per million tokens, such as `0.30/1.20`.
fn parse_price(s: &str) -> Result<ModelPrice, String> {
    let (prompt, completion) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected PROMPT/COMPLETION dollars per million tokens"))?;
    Ok(ModelPrice {
        prompt: parse_usd(prompt)?,
        completion: parse_usd(completion)?,
    })
}

/// A price as it is written in settings.
fn price_text(p: ModelPrice) -> String {
    format!("{}/{}", format_usd(p.prompt), format_usd(p.completion))
}

/// Prices of models, parsed from `model=PROMPT/COMPLETION,...` in dollars
/// per million tokens (model names may contain `/`; they end at the `=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPrices(pub Vec<(String, ModelPrice)>);

impl ModelPrices {
    fn parse(s: &str) -> Result<Self, String> {
        let mut prices = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (model, price) = part
                .rsplit_once('=')
                .ok_or_else(|| format!("{part:?}: expected MODEL=PROMPT/COMPLETION"))?;
            let model = model.trim();
            if model.is_empty() {
                return Err(format!("{part:?}: the model name is missing"));
            }
            prices.push((model.to_owned(), parse_price(price.trim())?));
        }
        Ok(Self(prices))
    }
}

impl fmt::Display for ModelPrices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(model, price)| format!("{model}={}", price_text(*price)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Every setting of every role. Roles read what they need; `config check`
/// prints all of it with secrets redacted.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// A `KEY=value` file read before the defaults (flags and environment win over it).
    #[arg(
        long = "config",
        env = "VITTE_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,

    /// Where data lives: sqlite://PATH (embedded, one process) or
    /// postgres://USER@HOST/DB (shared by any number of processes).
    #[arg(long, env = "DATABASE_URL", global = true, value_name = "DATABASE_URL",
          default_value = "sqlite://data/vitte.db", value_parser = DatabaseUrl::parse)]
    pub database_url: DatabaseUrl,

    /// Redis for the shared cache, rate limits and send budget; in-process
    /// engines are used when unset.
    #[arg(long, env = "REDIS_URL", global = true, value_name = "REDIS_URL",
          value_parser = RedisUrl::parse)]
    pub redis_url: Option<RedisUrl>,

    /// Address of this process's HTTP server (health, readiness, webhook, API).
    #[arg(
        long,
        env = "VITTE_LISTEN",
        global = true,
        value_name = "VITTE_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// The bot's token from @BotFather.
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", global = true, value_name = "TELEGRAM_BOT_TOKEN",
          hide_env_values = true, value_parser = parse_secret)]
    pub telegram_bot_token: Option<SecretString>,

    /// Base URL of the Bot API; the client calls {TELEGRAM_API_URL}/bot{token}/{method}.
    #[arg(long, env = "TELEGRAM_API_URL", global = true, value_name = "TELEGRAM_API_URL",
          default_value = "https://api.telegram.org", value_parser = parse_http_url)]
    pub telegram_api_url: Url,

    /// Public URL Telegram posts updates to; long polling is used when unset.
    #[arg(long, env = "TELEGRAM_WEBHOOK_URL", global = true, value_name = "TELEGRAM_WEBHOOK_URL",
          value_parser = parse_http_url)]
    pub telegram_webhook_url: Option<Url>,

    /// Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token; required with a webhook.
    #[arg(long, env = "TELEGRAM_WEBHOOK_SECRET", global = true,
          value_name = "TELEGRAM_WEBHOOK_SECRET", hide_env_values = true,
          value_parser = parse_webhook_secret)]
    pub telegram_webhook_secret: Option<SecretString>,

    /// Base URL of the OpenAI-compatible LLM API (OpenRouter, DeepSeek, a local server).
    #[arg(long, env = "LLM_BASE_URL", global = true, value_name = "LLM_BASE_URL",
          default_value = "https://openrouter.ai/api/v1", value_parser = parse_http_url)]
    pub llm_base_url: Url,

    /// API key of the LLM provider.
    #[arg(long, env = "LLM_API_KEY", global = true, value_name = "LLM_API_KEY",
          hide_env_values = true, value_parser = parse_secret)]
    pub llm_api_key: Option<SecretString>,

    /// Model asked first.
    #[arg(
        long,
        env = "LLM_MODEL",
        global = true,
        value_name = "LLM_MODEL",
        default_value = "deepseek/deepseek-chat"
    )]
    pub llm_model: String,

    /// Models tried in order when the first fails (comma-separated).
    #[arg(long, env = "LLM_FALLBACK_MODELS", global = true, value_name = "LLM_FALLBACK_MODELS",
          default_value = "", value_parser = ModelList::parse)]
    pub llm_fallback_models: ModelList,

    /// Show replies as they are written (one message edited as text arrives)
    /// instead of sending each reply whole when it is done.
    #[arg(long, env = "VITTE_REPLY_STREAMING", global = true,
          value_name = "VITTE_REPLY_STREAMING", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub reply_streaming: bool,

    /// Chat messages a user on the free plan may send (empty: unlimited).
    #[arg(long, env = "VITTE_RATE_FREE", global = true, value_name = "VITTE_RATE_FREE",
          default_value = "10/1m,100/1h", value_parser = QuotaList::parse)]
    pub rate_free: QuotaList,

    /// Chat messages a subscriber may send.
    #[arg(long, env = "VITTE_RATE_PREMIUM", global = true, value_name = "VITTE_RATE_PREMIUM",
          default_value = "30/1m,600/1h", value_parser = QuotaList::parse)]
    pub rate_premium: QuotaList,

    /// Button presses a user may make.
    #[arg(long, env = "VITTE_RATE_BUTTONS", global = true, value_name = "VITTE_RATE_BUTTONS",
          default_value = "30/1m", value_parser = QuotaList::parse)]
    pub rate_buttons: QuotaList,

    /// Updates (messages and buttons together) past which a user counts as
    /// flooding and is blocked for `VITTE_FLOOD_BLOCK` (empty: never).
    #[arg(long, env = "VITTE_FLOOD", global = true, value_name = "VITTE_FLOOD",
          default_value = "20/10s", value_parser = QuotaList::parse)]
    pub flood: QuotaList,

    /// How long a flooding user is ignored.
    #[arg(long, env = "VITTE_FLOOD_BLOCK", global = true, value_name = "VITTE_FLOOD_BLOCK",
          default_value = "10m", value_parser = parse_duration)]
    pub flood_block: Duration,

    /// Requests one client (by address) may make to the HTTP API (empty: unlimited).
    #[arg(long, env = "VITTE_RATE_API", global = true, value_name = "VITTE_RATE_API",
          default_value = "120/1m", value_parser = QuotaList::parse)]
    pub rate_api: QuotaList,

    /// Take the client's address for API limits from `X-Forwarded-For` (only
    /// behind a proxy that sets it; otherwise clients could pick their own).
    #[arg(long, env = "VITTE_API_TRUST_FORWARDED", global = true,
          value_name = "VITTE_API_TRUST_FORWARDED", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub api_trust_forwarded: bool,

    /// Messages a second the bot sends across all chats and processes.
    /// Telegram allows about 30; bots with paid broadcasts get up to 1,000.
    #[arg(long, env = "VITTE_TELEGRAM_SEND_RATE", global = true,
          value_name = "VITTE_TELEGRAM_SEND_RATE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub telegram_send_rate: u32,

    /// Tokens (prompt and completion) a user on the free plan may spend on
    /// replies per UTC day; the reply that crosses it is still given.
    #[arg(
        long,
        env = "VITTE_DAILY_TOKENS_FREE",
        global = true,
        value_name = "VITTE_DAILY_TOKENS_FREE",
        default_value_t = 60_000
    )]
    pub daily_tokens_free: u64,

    /// Tokens a subscriber may spend on replies per UTC day.
    #[arg(
        long,
        env = "VITTE_DAILY_TOKENS_PREMIUM",
        global = true,
        value_name = "VITTE_DAILY_TOKENS_PREMIUM",
        default_value_t = 600_000
    )]
    pub daily_tokens_premium: u64,

    /// What all replies of a UTC day may cost, in dollars (`50`, `12.50`);
    /// past it the free tier waits for the next day and subscribers go on.
    /// Held as integer micro-dollars.
    #[arg(long = "daily-spend-cap-usd", env = "VITTE_DAILY_SPEND_CAP_USD", global = true,
          value_name = "VITTE_DAILY_SPEND_CAP_USD", default_value = "50",
          value_parser = parse_usd)]
    pub daily_spend_cap: u64,

    /// Prices of models as `model=PROMPT/COMPLETION,...`, in dollars per
    /// million tokens (e.g. `deepseek/deepseek-chat=0.27/1.10`).
    #[arg(long, env = "VITTE_MODEL_PRICES", global = true, value_name = "VITTE_MODEL_PRICES",
          default_value = "", value_parser = ModelPrices::parse)]
    pub model_prices: ModelPrices,

    /// Price of models missing from `VITTE_MODEL_PRICES`, as
    /// `PROMPT/COMPLETION` dollars per million tokens.
    #[arg(long, env = "VITTE_DEFAULT_MODEL_PRICE", global = true,
          value_name = "VITTE_DEFAULT_MODEL_PRICE", default_value = "0.30/1.20",
          value_parser = parse_price)]
    pub default_model_price: ModelPrice,

    /// Most database connections this process opens.
    #[arg(long, env = "VITTE_DB_MAX_CONNECTIONS", global = true,
          value_name = "VITTE_DB_MAX_CONNECTIONS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub db_max_connections: u32,

    /// Database connections kept open while idle.
    #[arg(
        long,
        env = "VITTE_DB_MIN_CONNECTIONS",
        global = true,
        value_name = "VITTE_DB_MIN_CONNECTIONS",
        default_value_t = 2
    )]
    pub db_min_connections: u32,

    /// How long a request waits for a free connection before failing.
    #[arg(long, env = "VITTE_DB_ACQUIRE_TIMEOUT", global = true,
          value_name = "VITTE_DB_ACQUIRE_TIMEOUT", default_value = "5s",
          value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,

    /// Idle connections above the minimum close after this long.
    #[arg(long, env = "VITTE_DB_IDLE_TIMEOUT", global = true,
          value_name = "VITTE_DB_IDLE_TIMEOUT", default_value = "10m",
          value_parser = parse_duration)]
    pub db_idle_timeout: Duration,

    /// Connections are replaced after this long.
    #[arg(long, env = "VITTE_DB_MAX_LIFETIME", global = true,
          value_name = "VITTE_DB_MAX_LIFETIME", default_value = "30m",
          value_parser = parse_duration)]
    pub db_max_lifetime: Duration,

    /// Check a pooled connection before use, so connections broken by a
    /// database restart are replaced instead of failing a request.
    #[arg(long, env = "VITTE_DB_HEALTH_CHECK", global = true,
          value_name = "VITTE_DB_HEALTH_CHECK", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub db_health_check: bool,

    /// How long a stopping process may spend finishing in-flight work.
    #[arg(long, env = "VITTE_SHUTDOWN_TIMEOUT", global = true,
          value_name = "VITTE_SHUTDOWN_TIMEOUT", default_value = "30s",
          value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log line format.
    #[arg(long, env = "VITTE_LOG_FORMAT", global = true, value_name = "VITTE_LOG_FORMAT",
          value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info,vitte_bot=debug`.
    #[arg(
        long,
        env = "VITTE_LOG",
        global = true,
        value_name = "VITTE_LOG",
        default_value = "info,sqlx=warn"
    )]
    pub log_filter: String,
}

impl Settings {
    /// Checks what single values cannot: combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.db_min_connections > self.db_max_connections {
            return Err(ConfigError::new(
                "VITTE_DB_MIN_CONNECTIONS",
                format!(
                    "{} is more than VITTE_DB_MAX_CONNECTIONS ({})",
                    self.db_min_connections, self.db_max_connections
                ),
            ));
        }
        if self.telegram_webhook_url.is_some() && self.telegram_webhook_secret.is_none() {
            return Err(ConfigError::new(
                "TELEGRAM_WEBHOOK_SECRET",
                "is required when TELEGRAM_WEBHOOK_URL is set, so forged updates are refused",
            ));
        }
        if self.llm_model.trim().is_empty() {
            return Err(ConfigError::new("LLM_MODEL", "must not be empty"));
        }
        Ok(())
    }

    /// The pool settings these values describe.
    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.db_max_connections,
            min_connections: self.db_min_connections,
            acquire_timeout: self.db_acquire_timeout,
            idle_timeout: Some(self.db_idle_timeout),
            max_lifetime: Some(self.db_max_lifetime),
            test_before_acquire: self.db_health_check,
        }
    }

    /// Every setting as `(KEY, value)`, secrets shown only as set or unset.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        fn secret(s: &Option<SecretString>) -> String {
            match s {
                Some(_) => "<redacted>".to_owned(),
                None => "<unset>".to_owned(),
            }
        }
        fn opt<T: fmt::Display>(v: &Option<T>) -> String {
            v.as_ref()
                .map_or_else(|| "<unset>".to_owned(), ToString::to_string)
        }
        let human = |d: Duration| humantime::format_duration(d).to_string();
        vec![
            (
                "VITTE_CONFIG",
                opt(&self.config_file.as_ref().map(|p| p.display())),
            ),
            ("DATABASE_URL", self.database_url.to_string()),
            ("REDIS_URL", opt(&self.redis_url)),
            ("VITTE_LISTEN", self.listen.to_string()),
            ("TELEGRAM_BOT_TOKEN", secret(&self.telegram_bot_token)),
            ("TELEGRAM_API_URL", self.telegram_api_url.to_string()),
            ("TELEGRAM_WEBHOOK_URL", opt(&self.telegram_webhook_url)),
            (
                "TELEGRAM_WEBHOOK_SECRET",
                secret(&self.telegram_webhook_secret),
            ),
            ("LLM_BASE_URL", self.llm_base_url.to_string()),
            ("LLM_API_KEY", secret(&self.llm_api_key)),
            ("LLM_MODEL", self.llm_model.clone()),
            ("LLM_FALLBACK_MODELS", self.llm_fallback_models.0.join(",")),
            ("VITTE_RATE_FREE", self.rate_free.to_string()),
            ("VITTE_RATE_PREMIUM", self.rate_premium.to_string()),
            ("VITTE_RATE_BUTTONS", self.rate_buttons.to_string()),
            ("VITTE_FLOOD", self.flood.to_string()),
            ("VITTE_FLOOD_BLOCK", human(self.flood_block)),
            ("VITTE_RATE_API", self.rate_api.to_string()),
            (
                "VITTE_API_TRUST_FORWARDED",
                self.api_trust_forwarded.to_string(),
            ),
            (
                "VITTE_TELEGRAM_SEND_RATE",
                self.telegram_send_rate.to_string(),
            ),
            (
                "VITTE_DAILY_TOKENS_FREE",
                self.daily_tokens_free.to_string(),
            ),
            (
                "VITTE_DAILY_TOKENS_PREMIUM",
                self.daily_tokens_premium.to_string(),
            ),
            (
                "VITTE_DAILY_SPEND_CAP_USD",
                format_usd(self.daily_spend_cap),
            ),
            ("VITTE_MODEL_PRICES", self.model_prices.to_string()),
            (
                "VITTE_DEFAULT_MODEL_PRICE",
                price_text(self.default_model_price),
            ),
            (
                "VITTE_DB_MAX_CONNECTIONS",
                self.db_max_connections.to_string(),
            ),
            (
                "VITTE_DB_MIN_CONNECTIONS",
                self.db_min_connections.to_string(),
            ),
            ("VITTE_DB_ACQUIRE_TIMEOUT", human(self.db_acquire_timeout)),
            ("VITTE_DB_IDLE_TIMEOUT", human(self.db_idle_timeout)),
            ("VITTE_DB_MAX_LIFETIME", human(self.db_max_lifetime)),
            ("VITTE_DB_HEALTH_CHECK", self.db_health_check.to_string()),
            ("VITTE_SHUTDOWN_TIMEOUT", human(self.shutdown_timeout)),
            (
                "VITTE_LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("VITTE_LOG", self.log_filter.clone()),
        ]
    }
}

/// Finds the config file named by `--config FILE`, `--config=FILE` or
/// `VITTE_CONFIG`, before clap parses anything (the file supplies defaults,
/// so it must be read first).
pub fn config_file_from<I>(args: I, env_value: Option<OsString>) -> Option<PathBuf>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
        if arg == "--" {
            break;
        }
    }
    env_value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Makes the values of a `KEY=value` file the defaults of the arguments that
/// read environment variable `KEY`. Flags and real environment variables
/// still win. Keys that no argument reads are refused, so typos surface.
pub fn apply_config_file(cmd: clap::Command, path: &Path) -> Result<clap::Command, ConfigError> {
    let key = "VITTE_CONFIG";
    let entries = dotenvy::from_path_iter(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let mut pairs = Vec::new();
    for entry in entries {
        let (k, v) =
            entry.map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
        pairs.push((k, v));
    }
    apply_defaults(cmd, &pairs, path)
}

fn apply_defaults(
    mut cmd: clap::Command,
    pairs: &[(String, String)],
    path: &Path,
) -> Result<clap::Command, ConfigError> {
    for (k, v) in pairs {
        let id = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == k.as_str()))
            .map(|a| a.get_id().clone());
        let Some(id) = id else {
            return Err(ConfigError::new(
                k.clone(),
                format!("unknown setting in {}", path.display()),
            ));
        };
        let value = v.clone();
        cmd = cmd.mut_arg(id, move |a| a.default_value(value));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};
    use secrecy::ExposeSecret;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        let matches = Cli::command()
            .try_get_matches_from(std::iter::once("vitte").chain(args.iter().copied()))?;
        Cli::from_arg_matches(&matches).map(|c| c.settings)
    }

    #[test]
    fn database_urls_pick_the_engine_or_name_the_key() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").map(|u| u.engine()),
            Ok("sqlite")
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://u:pw@h/db").map(|u| u.engine()),
            Ok("postgres")
        );
        assert!(DatabaseUrl::parse("nonsense").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("postgres:///db").is_err());
        let err = parse(&["--database-url", "nonsense"]).expect_err("refused");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn passwords_never_print() {
        let url = DatabaseUrl::parse("postgres://vitte:hunter2@db:5432/vitte").expect("url");
        assert_eq!(url.to_string(), "postgres://vitte:***@db:5432/vitte");
        assert!(!format!("{url:?}").contains("hunter2"));
        let settings = parse(&[
            "--database-url",
            "postgres://vitte:hunter2@db/vitte",
            "--telegram-bot-token",
            "123:T0PS3CRET",
            "--redis-url",
            "redis://:pw@cache:6379/0",
        ])
        .expect("parse");
        let printed = format!("{:?}", settings.describe());
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("T0PS3CRET"), "{printed}");
        assert!(!printed.contains(":pw@"), "{printed}");
        assert!(printed.contains("<redacted>"));
        let token = settings.telegram_bot_token.expect("token");
        assert_eq!(token.expose_secret(), "123:T0PS3CRET");
    }

    #[test]
    fn combinations_are_checked() {
        let s = parse(&[
            "--telegram-webhook-url",
            "https://bot.example/telegram/webhook",
        ])
        .expect("parse");
        let err = s.validate().expect_err("secret required");
        assert_eq!(err.key, "TELEGRAM_WEBHOOK_SECRET");
        let s = parse(&["--db-min-connections", "10", "--db-max-connections", "5"]).expect("parse");
        assert_eq!(
            s.validate().expect_err("min > max").key,
            "VITTE_DB_MIN_CONNECTIONS"
        );
        assert!(parse(&["--telegram-webhook-secret", "has space"]).is_err());
        assert!(parse(&["--db-acquire-timeout", "soon"]).is_err());
        let ok = parse(&["--llm-fallback-models", "a/b, c/d,,"]).expect("parse");
        assert_eq!(ok.llm_fallback_models.0, ["a/b", "c/d"]);
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn defaults_hold_a_hundred_concurrent_requests() {
        let s = parse(&[]).expect("defaults");
        let pool = s.pool();
        assert!(pool.max_connections >= 60);
        assert!(pool.test_before_acquire);
    }

    #[test]
    fn config_file_supplies_defaults_that_flags_override() {
        let pairs = vec![
            ("LLM_MODEL".to_owned(), "from/file".to_owned()),
            ("VITTE_LISTEN".to_owned(), "127.0.0.1:9999".to_owned()),
        ];
        let cmd = apply_defaults(Cli::command(), &pairs, Path::new("f")).expect("apply");
        let matches = cmd
            .try_get_matches_from(["vitte", "--llm-model", "from/flag"])
            .expect("parse");
        let s = Cli::from_arg_matches(&matches).expect("cli").settings;
        assert_eq!(s.llm_model, "from/flag");
        assert_eq!(s.listen.port(), 9999);

        let bad = vec![("DATABSE_URL".to_owned(), "x".to_owned())];
        let err = apply_defaults(Cli::command(), &bad, Path::new("f")).expect_err("typo");
        assert_eq!(err.key, "DATABSE_URL");
    }

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        let q = QuotaList::parse("10/1m, 100/1h").expect("quotas");
        assert_eq!(q.0.len(), 2);
        assert_eq!(q.0[0].count, 10);
        assert_eq!(q.0[1].period.as_secs(), 3600);
        assert_eq!(q.to_string(), "10/1m,100/1h");
        assert!(QuotaList::parse("").expect("empty").0.is_empty());
        for bad in ["10", "x/1m", "0/1m", "10/0s", "10/soon"] {
            assert!(QuotaList::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dollars_parse_into_micro_dollars() {
        assert_eq!(parse_usd("50"), Ok(50_000_000));
        assert_eq!(parse_usd("12.50"), Ok(12_500_000));
        assert_eq!(parse_usd("0.000001"), Ok(1));
        assert_eq!(parse_usd("0"), Ok(0));
        assert_eq!(parse_usd("7."), Ok(7_000_000));
        for bad in [
            "",
            "-1",
            ".5",
            "1.2.3",
            "$5",
            "1e3",
            "0.0000001",
            "18446744073710",
        ] {
            assert!(parse_usd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spend_settings_have_defaults_and_parse() {
        let s = parse(&[]).expect("defaults");
        assert_eq!(s.daily_tokens_free, 60_000);
        assert_eq!(s.daily_tokens_premium, 600_000);
        assert_eq!(s.daily_spend_cap, 50_000_000);
        assert!(s.model_prices.0.is_empty());
        assert_eq!(
            s.default_model_price,
            ModelPrice {
                prompt: 300_000,
                completion: 1_200_000
            }
        );

        let s = parse(&[
            "--daily-tokens-free",
            "1",
            "--daily-spend-cap-usd",
            "12.50",
            "--model-prices",
            "deepseek/deepseek-chat=0.27/1.10, openai/gpt-4o = 2.5/10",
            "--default-model-price",
            "1/2",
        ])
        .expect("parse");
        assert_eq!(s.daily_tokens_free, 1);
        assert_eq!(s.daily_spend_cap, 12_500_000);
        assert_eq!(
            s.model_prices.0,
            [
                (
                    "deepseek/deepseek-chat".to_owned(),
                    ModelPrice {
                        prompt: 270_000,
                        completion: 1_100_000
                    }
                ),
                (
                    "openai/gpt-4o".to_owned(),
                    ModelPrice {
                        prompt: 2_500_000,
                        completion: 10_000_000
                    }
                ),
            ]
        );
        assert_eq!(s.default_model_price.completion, 2_000_000);
        let described: Vec<_> = s.describe();
        let row = |key: &str| {
            described
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(row("VITTE_DAILY_TOKENS_FREE").as_deref(), Some("1"));
        assert_eq!(row("VITTE_DAILY_TOKENS_PREMIUM").as_deref(), Some("600000"));
        assert_eq!(row("VITTE_DAILY_SPEND_CAP_USD").as_deref(), Some("12.5"));
        assert_eq!(
            row("VITTE_MODEL_PRICES").as_deref(),
            Some("deepseek/deepseek-chat=0.27/1.1,openai/gpt-4o=2.5/10")
        );
        assert_eq!(row("VITTE_DEFAULT_MODEL_PRICE").as_deref(), Some("1/2"));

        for bad in [
            ["--daily-tokens-free", "-1"],
            ["--daily-spend-cap-usd", "lots"],
            ["--model-prices", "no-price"],
            ["--model-prices", "=1/2"],
            ["--model-prices", "m=1"],
            ["--default-model-price", "0.30"],
        ] {
            let err = parse(&bad).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn config_file_is_found_in_args_or_env() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_file_from(args(&["vitte", "--config", "a.env", "all"]), None),
            Some(PathBuf::from("a.env"))
        );
        assert_eq!(
            config_file_from(args(&["vitte", "--config=b.env"]), None),
            Some(PathBuf::from("b.env"))
        );
        assert_eq!(
            config_file_from(args(&["vitte", "all"]), Some("c.env".into())),
            Some(PathBuf::from("c.env"))
        );
        assert_eq!(config_file_from(args(&["vitte"]), Some("".into())), None);
    }
}
