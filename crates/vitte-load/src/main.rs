//! `vitte-load`: plays many Telegram users against running bot processes.
//!
//! It serves the Telegram Bot API stand-in the bots call (`TELEGRAM_API_URL`),
//! creates each user's updates there and delivers them itself to the bots'
//! webhooks in turn, so the load spreads over every bot process and each
//! webhook call is timed. Users are onboarded first (`/start`, terms, a
//! persona); then, for the measured window, each writes at random intervals
//! (sometimes a burst of three) so that all together offer `--rate`
//! messages a second. After a drain the run is judged — nothing lost, nothing
//! answered twice, order kept, limits shared — and a Markdown report is
//! written from HDR histograms measured from each message's intended send
//! time.

mod procstat;
mod report;
mod track;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::time::Instant;
use vitte_stand_ins::telegram::{Config, RateLimits, TelegramStandIn};

use crate::track::Tracker;
use crate::users::Telegram;

/// Users of the abuse check get ids from here on.
const ABUSER: i64 = 900_000_001;
/// Normal users get ids from here on.
const FIRST_USER: i64 = 100_000_001;

/// Load generator for the bot role.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Serve the Telegram stand-in here (the bots' TELEGRAM_API_URL).
    #[arg(long, default_value = "127.0.0.1:8210")]
    pub telegram: SocketAddr,
    /// The bot token the stand-in accepts.
    #[arg(long, default_value = "123456789:LOAD-TEST-TOKEN")]
    pub token: String,
    /// Webhook URLs of the bot processes, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub bots: Vec<String>,
    /// The webhook secret the bots expect.
    #[arg(long, default_value = "load-test-secret")]
    pub secret: String,
    /// Distinct users.
    #[arg(long, default_value_t = 300)]
    pub users: u32,
    /// Messages a second offered by all users together.
    #[arg(long, default_value_t = 30.0)]
    pub rate: f64,
    /// Length of the measured window.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Longest wait for the last replies after the window.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Users onboarded at once before the window.
    #[arg(long, default_value_t = 40)]
    pub onboard_concurrency: usize,
    /// The model stand-in's own reply time, subtracted from reply latency.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub model_latency: Duration,
    /// Text of the bot's "slow down" notice (how refusals are told apart).
    #[arg(long, default_value = "You are writing faster than")]
    pub refusal_text: String,
    /// Messages the abuse check sends quickly from one user, spread over
    /// every bot process (0: no check). With a shared limit of L a minute,
    /// about L are answered and one notice is given; with a limit per
    /// process, all would be. Keep it under the flood threshold.
    #[arg(long, default_value_t = 18)]
    pub abuse_messages: u64,
    /// The per-user minute limit the bots enforce (for the abuse check).
    #[arg(long, default_value_t = 10)]
    pub abuse_limit: u64,
    /// Processes to measure, as NAME=PID (their descendants count too).
    #[arg(long = "process", value_parser = parse_process)]
    pub processes: Vec<(String, u32)>,
    /// A shell command to run at an offset into the window, as SECS:COMMAND.
    #[arg(long = "at", value_parser = parse_event)]
    pub events: Vec<(u64, String)>,
    /// Write the Markdown report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The command line to quote in the report.
    #[arg(long, default_value = "")]
    pub command: String,
    /// Fail (exit 1) when a message was lost or answered twice, or the limit was not shared.
    #[arg(long)]
    pub check: bool,
    /// Replies answering a message again that `--check` lets pass. A bot
    /// killed between showing a reply and storing it shows it again after
    /// recovery (replies are sent at least once); runs that kill a bot
    /// allow a few.
    #[arg(long, default_value_t = 0)]
    pub max_answered_twice: u64,
}

fn parse_process(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    Ok((name.trim().to_owned(), pid))
}

fn parse_event(s: &str) -> Result<(u64, String), String> {
    let (at, command) = s.split_once(':').ok_or("expected SECS:COMMAND")?;
    let at = at
        .trim()
        .parse()
        .map_err(|_| format!("{at:?} is not a number of seconds"))?;
    Ok((at, command.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = Args::parse();
    args.processes.push((
        "vitte-load (users, Telegram stand-in)".to_owned(),
        std::process::id(),
    ));
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be positive"
    );

    let stand_in = TelegramStandIn::new(Config {
        token: args.token.clone(),
        bot_username: "vitte_load_bot".into(),
        // Our side's own send budget is what is under test, not Telegram's.
        rate_limits: RateLimits::disabled(),
        accept_unknown_chats: true,
        max_messages_per_chat: 50,
        ..Config::default()
    })?;
    let listener = TcpListener::bind(args.telegram)
        .await
        .with_context(|| format!("binding the Telegram stand-in to {}", args.telegram))?;
    let handle = stand_in.clone().spawn(listener)?;
    tracing::info!(url = handle.base_url(), "Telegram stand-in listening");

    let tracker = Arc::new(Tracker::new(args.model_latency, &args.refusal_text));
    let telegram = Arc::new(Telegram::new(
        stand_in,
        args.bots.clone(),
        args.secret.clone(),
        tracker.clone(),
    )?);
    let _observer = telegram.observe();

    let outcome = run(&args, &telegram).await;
    handle.shutdown().await?;
    let outcome = outcome?;
    if let Some(path) = &args.report {
        std::fs::write(path, report::markdown(&args, &outcome))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", report::summary(&outcome));
    let failures = outcome.failures(&args);
    if args.check && !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// Everything the report needs.
pub struct Outcome {
    /// Totals over normal users.
    pub totals: track::Totals,
    /// Latencies, and the span of measured replies.
    pub histograms: track::Histograms,
    /// Messages offered in the window, and its length.
    pub offered: (u64, Duration),
    /// How long the drain took.
    pub drained_in: Duration,
    /// Onboarding time.
    pub onboarded_in: Duration,
    /// Per process: CPU share of one core over the window (%), peak PSS
    /// of the tree (MB), peak RSS of its largest process (MB).
    pub processes: Vec<(String, f64, f64, f64)>,
    /// Abuse check: highest message answered, notices given, and the
    /// messages the limit could have let through in the time it took.
    pub abuse: Option<(u64, u64, u64)>,
    /// Commands run during the window, with their exit status.
    pub events: Vec<(u64, String, String)>,
    /// Deliveries that never got through.
    pub undelivered: u64,
    /// Shares of the machine's CPU time over the window: busy, idle, stolen
    /// by the hypervisor (percent).
    pub machine: (f64, f64, f64),
}

impl Outcome {
    /// What went wrong, if anything.
    pub fn failures(&self, args: &Args) -> Vec<String> {
        let mut f = Vec::new();
        let t = &self.totals;
        if t.lost > 0 {
            f.push(format!("{} messages never answered", t.lost));
        }
        if t.answered_twice > args.max_answered_twice {
            f.push(format!(
                "{} replies answered a message again or out of order",
                t.answered_twice
            ));
        }
        if t.phantom > 0 {
            f.push(format!("{} replies quoted a message never sent", t.phantom));
        }
        if self.undelivered > 0 {
            f.push(format!(
                "{} updates could not be delivered",
                self.undelivered
            ));
        }
        if let Some((highest, notices, allowed)) = self.abuse {
            if highest > allowed || highest >= args.abuse_messages {
                f.push(format!(
                    "the abusive user got message {highest} answered; a shared limit of {}/min allows {allowed} in the time taken",
                    args.abuse_limit
                ));
            }
            if notices != 1 {
                f.push(format!(
                    "the abusive user was told to slow down {notices} times, not once"
                ));
            }
        }
        f
    }
}

async fn run(args: &Args, telegram: &Arc<Telegram>) -> anyhow::Result<Outcome> {
    // Onboarding, not measured.
    let started = Instant::now();
    let users: Vec<i64> = (0..i64::from(args.users)).map(|i| FIRST_USER + i).collect();
    let mut undelivered = 0;
    // A steady number in flight, not batches that wait for their slowest.
    let mut onboarding = futures::stream::iter(users.iter().map(|&u| {
        let telegram = telegram.clone();
        async move { telegram.onboard(u).await }
    }))
    .buffer_unordered(args.onboard_concurrency.max(1));
    while let Some(result) = onboarding.next().await {
        result?;
    }
    let onboarded_in = started.elapsed();
    tracing::info!(users = args.users, took = ?onboarded_in, "users onboarded");
    if args.abuse_messages > 0 {
        telegram.onboard(ABUSER).await?;
    }

    // The measured window.
    let before = procstat::sample(&args.processes);
    let machine_before = procstat::machine();
    let window_start = Instant::now();
    telegram.tracker.set_measuring(true);
    let window_end = window_start + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mean_gap = f64::from(args.users) / args.rate;
    for &user in &users {
        let telegram = telegram.clone();
        tasks.spawn(async move {
            user_traffic(&telegram, user, mean_gap, window_start, window_end).await
        });
    }
    let mut events = Vec::new();
    let mut event_tasks = tokio::task::JoinSet::new();
    for (at, command) in args.events.clone() {
        event_tasks.spawn(async move {
            tokio::time::sleep_until(window_start + Duration::from_secs(at)).await;
            tracing::info!(at, command, "running event");
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .status()
                .await
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            (at, command, status)
        });
    }
    let abuse_started = (args.abuse_messages > 0).then(|| Instant::now() + Duration::from_secs(5));
    let abuse = if args.abuse_messages > 0 {
        let telegram = telegram.clone();
        let count = args.abuse_messages;
        let bots = args.bots.len();
        Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            for i in 0..count {
                let intended = Instant::now();
                let seq = telegram.tracker.sent(ABUSER, intended);
                // Alternating processes: a per-process limit would let twice as many through.
                let bot = usize::try_from(i).unwrap_or(0) % bots;
                if telegram
                    .say(ABUSER, &telegram.text(seq), Some(bot))
                    .await
                    .is_err()
                {
                    return 1u64;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            0
        }))
    } else {
        None
    };
    let mut peak: std::collections::HashMap<String, (u64, u64)> = std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut offered = 0;
    while !tasks.is_empty() {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok((sent, failed))) => { offered += sent; undelivered += failed; }
                Some(Err(e)) => anyhow::bail!("a user task failed: {e}"),
                None => {}
            },
            _ = ticker.tick() => {
                remember_peaks(&mut peak, &args.processes);
            }
        }
    }
    let window = window_start.elapsed();
    let after = procstat::sample(&args.processes);
    let machine_after = procstat::machine();
    telegram.tracker.set_measuring(false);
    if let Some(abuse) = abuse {
        undelivered += abuse.await.unwrap_or(1);
    }
    while let Some(e) = event_tasks.join_next().await {
        if let Ok(e) = e {
            events.push(e);
        }
    }

    // Drain: wait until every message has its reply, or the limit.
    let drain_start = Instant::now();
    while drain_start.elapsed() < args.drain {
        let missing: u64 = users.iter().map(|&u| telegram.tracker.unanswered(u)).sum();
        if missing == 0 {
            break;
        }
        remember_peaks(&mut peak, &args.processes);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Late duplicates show up a little after the last reply.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let drained_in = drain_start.elapsed();

    let secs = window.as_secs_f64().max(0.001);
    let processes = args
        .processes
        .iter()
        .map(|(name, _)| {
            let a = before.get(name).copied().unwrap_or_default();
            let b = after.get(name).copied().unwrap_or_default();
            let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
            let cpu = ticks / procstat::TICKS_PER_SECOND as f64 / secs * 100.0;
            let (pss, rss) = peak.get(name).copied().unwrap_or_default();
            (name.clone(), cpu, pss as f64 / 1024.0, rss as f64 / 1024.0)
        })
        .collect();
    let (histograms, _) = telegram.tracker.histograms();
    Ok(Outcome {
        totals: telegram.tracker.totals(|chat| chat != ABUSER),
        histograms,
        offered: (offered, window),
        drained_in,
        onboarded_in,
        processes,
        abuse: abuse_started.map(|started| {
            let (highest, notices, last) = telegram.tracker.chat_summary(ABUSER);
            // GCRA: the burst, then one more per 60/limit seconds.
            let took = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(started));
            let refill = (took.as_secs_f64() * args.abuse_limit as f64 / 60.0).ceil() as u64;
            (highest, notices, args.abuse_limit + refill)
        }),
        events,
        undelivered,
        machine: {
            let busy = machine_after.0.saturating_sub(machine_before.0) as f64;
            let idle = machine_after.1.saturating_sub(machine_before.1) as f64;
            let steal = machine_after.2.saturating_sub(machine_before.2) as f64;
            let all = (busy + idle + steal).max(1.0);
            (busy / all * 100.0, idle / all * 100.0, steal / all * 100.0)
        },
    })
}

fn remember_peaks(
    peak: &mut std::collections::HashMap<String, (u64, u64)>,
    processes: &[(String, u32)],
) {
    for (name, s) in procstat::sample(processes) {
        let p = peak.entry(name).or_default();
        *p = (p.0.max(s.pss_kb), p.1.max(s.peak_rss_kb));
    }
}

/// One user's traffic in the window: gaps drawn around `mean_gap` seconds,
/// one time in ten a burst of three messages 400 ms apart. Returns the
/// messages sent and those that could not be delivered.
async fn user_traffic(
    telegram: &Telegram,
    user: i64,
    mean_gap: f64,
    start: Instant,
    end: Instant,
) -> (u64, u64) {
    let (mut sent, mut failed) = (0, 0);
    let mut next = start + Duration::from_secs_f64(rand::rng().random_range(0.0..mean_gap));
    while next < end {
        let burst: u32 = if rand::rng().random_bool(0.1) { 3 } else { 1 };
        for i in 0..burst {
            let intended = next + Duration::from_millis(400 * u64::from(i));
            tokio::time::sleep_until(intended).await;
            let measured = telegram.tracker.measuring();
            let seq = telegram.tracker.sent(user, intended);
            match telegram.say(user, &telegram.text(seq), None).await {
                Ok(acked) => telegram
                    .tracker
                    .acked(acked.saturating_duration_since(intended), measured),
                Err(e) => {
                    tracing::error!(error = %e, user, "message not delivered");
                    failed += 1;
                }
            }
            sent += 1;
        }
        // Uniform between half and one and a half times the mean, scaled
        // by the burst so the offered rate holds.
        let gap = mean_gap * f64::from(burst) * rand::rng().random_range(0.5..1.5);
        next += Duration::from_secs_f64(gap);
    }
    (sent, failed)
}
