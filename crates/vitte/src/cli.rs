//! Command-line surface of `vitte`. Exit codes: 0 success, 1 runtime failure
//! (database unreachable, schema behind, port taken), 2 invalid configuration.

use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use vitte_runtime::config::{apply_config_file, config_file_from};
use vitte_runtime::{ConfigError, Settings, telemetry};

use crate::commands;

/// Vitte: an AI-companion platform for Telegram.
///
/// One binary; each subcommand is a role. Roles share one PostgreSQL (and
/// Redis) to scale out, or run together on an embedded SQLite file with no
/// setup at all. Every setting is a flag or an environment variable (shown
/// in brackets), optionally read from a KEY=value file given with --config.
#[derive(Debug, Parser)]
#[command(
    name = "vitte",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Telegram ingress: the webhook (or long polling), commands, buttons, chat replies.
    Bot(RoleArgs),
    /// REST API: health, readiness, payment notifications, admin API.
    Api(RoleArgs),
    /// Background jobs: pictures, voice, reminders, broadcasts, maintenance sweeps.
    Worker(RoleArgs),
    /// The whole product with no tokens and no network: every role, local
    /// stand-ins of Telegram and of the model, and a web page that plays a
    /// Telegram chat with the bot.
    Demo {
        /// Address of the stand-in serving the chat page.
        #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
        page_listen: std::net::SocketAddr,
    },
    /// Every role in one process; applies pending migrations itself.
    /// With no configuration it runs on an embedded SQLite file under ./data/.
    All,
    /// Versioned, reversible schema migrations.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Personas: import Character Card V2/V3 files (JSON, or PNG with the card inside).
    #[command(subcommand)]
    Persona(PersonaCommand),
}

#[derive(Debug, Subcommand)]
enum PersonaCommand {
    /// Import cards; a persona with the same slug is replaced.
    Import {
        /// Card files (.json or .png).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// The slug for /start deep links (default: from the name).
        #[arg(long)]
        slug: Option<String>,
    },
}

#[derive(Debug, Args)]
struct RoleArgs {
    /// Apply pending migrations before starting instead of refusing to start.
    #[arg(long)]
    migrate: bool,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Apply every pending migration (safe to run from many processes at once).
    Up,
    /// Revert the newest N migrations (default 1), or all of them with --all.
    Down {
        /// How many migrations to revert.
        #[arg(value_name = "N", conflicts_with = "all")]
        steps: Option<usize>,
        /// Revert every migration (drops all data).
        #[arg(long)]
        all: bool,
    },
    /// List applied and pending migrations; exits 1 if the schema is not current.
    Status,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted; exit 2 on any error.
    Check,
}

/// Parses the command line and the environment, runs the command, and maps
/// the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(Parsed::Clap(e)) => {
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
        Err(Parsed::Config(e)) => return config_failure(&e),
    };
    if let Err(e) = cli.settings.validate() {
        return config_failure(&e);
    }
    if let Err(e) = telemetry::init(cli.settings.log_format, &cli.settings.log_filter) {
        return config_failure(&e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = cli.settings;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Bot(a) => {
                commands::roles::run(settings, &[commands::roles::Role::Bot], a.migrate).await
            }
            Command::Api(a) => {
                commands::roles::run(settings, &[commands::roles::Role::Api], a.migrate).await
            }
            Command::Worker(a) => {
                commands::roles::run(settings, &[commands::roles::Role::Worker], a.migrate).await
            }
            Command::All => commands::roles::run(settings, commands::roles::Role::ALL, true).await,
            Command::Demo { page_listen } => commands::demo::run(settings, page_listen).await,
            Command::Migrate(MigrateCommand::Up) => commands::migrate::up(&settings).await,
            Command::Migrate(MigrateCommand::Down { steps, all }) => {
                commands::migrate::down(&settings, steps, all).await
            }
            Command::Migrate(MigrateCommand::Status) => commands::migrate::status(&settings).await,
            Command::Config(ConfigCommand::Check) => commands::config::check(&settings),
            Command::Persona(PersonaCommand::Import { files, slug }) => {
                commands::persona::import(&settings, &files, slug.as_deref()).await
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Parsed {
    Clap(clap::Error),
    Config(ConfigError),
}

fn parse() -> Result<Cli, Parsed> {
    let mut cmd = Cli::command();
    if let Some(path) = config_file_from(
        std::env::args_os().skip(1),
        std::env::var_os("VITTE_CONFIG"),
    ) {
        cmd = apply_config_file(cmd, &path).map_err(Parsed::Config)?;
    }
    let matches = cmd.try_get_matches().map_err(Parsed::Clap)?;
    Cli::from_arg_matches(&matches).map_err(Parsed::Clap)
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("error: invalid configuration: {e}");
    ExitCode::from(2)
}
