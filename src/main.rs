//! The `failmail` command line: parses flags, starts the server, prints the ready line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::sync::Arc;

use failmail::app::{App, AppConfig, HttpConfig, ScenarioConfig, StateConfig};
use failmail::clock::{parse_duration, OffsetClock};
use failmail::journal::attempts::Report;
use failmail::journal::{AttemptsConfig, JournalConfig};
use failmail::limits::{LimitOverrides, Window};
use failmail::scenario::catalog::Catalog;
use failmail::scenario::compile::Scenario;
use failmail::scenario::flavor::Flavor;
use failmail::server::tls::CertificateSource;
use failmail::server::{ServerConfig, Timeouts};
use failmail::smtp::session::{AuthPolicy, SessionConfig, DEFAULT_MAX_ERRORS};
use tracing_subscriber::EnvFilter;

/// An SMTP test server that answers with the realistic failures real mail providers send.
#[derive(Parser, Debug)]
#[command(
    name = "failmail",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
    /// With no subcommand, `failmail` serves with these flags.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Serve SMTP (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Check a scenario file; prints each error with file:line:column and a hint.
    Check {
        /// The scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the retry report of a running failmail (one line per message and recipient:
    /// attempts, replies, delays, status, verdicts). Exits 1 when a verdict failed, 2 when the
    /// report cannot be read, so that a CI job can gate on it.
    Report {
        /// The running failmail's HTTP address: the `http=` of its ready line.
        #[arg(long)]
        http: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// The bearer token, if the server requires one (--http-token).
        #[arg(long)]
        http_token: Option<String>,
    },
    /// List the reply catalog.
    Catalog {
        /// Show this flavor's wording (generic, ovh, gmail, outlook, yahoo, postfix, exim).
        #[arg(long, default_value = "generic")]
        flavor: Flavor,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: CatalogFormat,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LimitPreset {
    /// OVHcloud: 200 mails/hour/account, 300 mails/hour/IP.
    Ovh,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CatalogFormat {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ReportFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Scenario file (TOML). Reloaded on SIGHUP and when it changes. Without it, every message
    /// is accepted except at magic addresses.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed for the scenario's `probability` rules: the same seed gives the same replies.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Turn magic addresses (user_unknown@…, 550-5.1.1@…) off.
    #[arg(long)]
    no_magic: bool,
    /// Preset sending limits: `ovh` = 200 mails/hour/account and 300 mails/hour/IP.
    #[arg(long, value_enum)]
    limits: Option<LimitPreset>,
    /// Limit per account (AUTH identity, else MAIL FROM): MAX/WINDOW, e.g. 200/1h.
    #[arg(long, value_parser = Window::parse)]
    limit_account: Option<Window>,
    /// Limit per client IP: MAX/WINDOW, e.g. 300/1h.
    #[arg(long, value_parser = Window::parse)]
    limit_ip: Option<Window>,
    /// Where limit, greylist and sequence state lives: `memory` or `redis://HOST:PORT`. With
    /// Redis, several failmail instances act as one server.
    #[arg(long, default_value = "memory")]
    state: String,
    /// SMTP listener (STARTTLS offered). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:1025")]
    smtp: SocketAddr,
    /// Implicit-TLS (SMTPS) listener, off unless given.
    #[arg(long)]
    smtps: Option<SocketAddr>,
    /// HTTP listener (health, API). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8025")]
    http: SocketAddr,
    /// TLS certificate chain (PEM). Without it the development certificate is used.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Offer no TLS at all (no STARTTLS, no SMTPS).
    #[arg(long, conflicts_with_all = ["tls_cert", "smtps"])]
    no_tls: bool,
    /// Host name used in the greeting and EHLO reply.
    #[arg(long, default_value = "mx.failmail.test")]
    hostname: String,
    /// Largest accepted message, in octets (advertised as SIZE).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_message_size: u64,
    /// Most recipients per message; more get 452 4.5.3.
    #[arg(long, default_value_t = 100)]
    max_recipients: usize,
    /// Only offer AUTH after STARTTLS (538 5.7.11 before).
    #[arg(long)]
    auth_requires_tls: bool,
    /// Refuse MAIL until the client authenticated (530 5.7.0).
    #[arg(long)]
    require_auth: bool,
    /// Seconds to wait for the next command before 421 4.4.2 (RFC 5321: 300).
    #[arg(long, default_value_t = 300)]
    command_timeout: u64,
    /// Seconds to wait for the next block of message data before 421 4.4.2 (RFC 5321: 180).
    #[arg(long, default_value_t = 180)]
    data_timeout: u64,
    /// Most simultaneous connections; more get 421 4.7.0.
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Most simultaneous connections from one client IP (at least 1); more get 421 4.7.0.
    /// Off unless given.
    #[arg(long)]
    max_connections_per_ip: Option<std::num::NonZeroUsize>,
    /// Syntax errors allowed per session before 421 4.7.0 and close (0: no limit).
    #[arg(long, default_value_t = DEFAULT_MAX_ERRORS)]
    max_errors: usize,
    /// Seconds a shutdown waits for messages being received.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// Threads that serve connections. Default: half the CPUs, at least one, as the sender
    /// under test usually runs on the same machine; one thread serves everything on one event
    /// loop, with no handoff between threads.
    #[arg(long)]
    threads: Option<std::num::NonZeroUsize>,
    /// How many accepted messages are kept in memory.
    #[arg(long, default_value_t = 10_000)]
    keep_messages: usize,
    /// How many MiB of accepted message content are kept in memory, at most.
    #[arg(long, default_value_t = 256)]
    keep_message_mib: usize,
    /// How many events (sessions, commands, replies) are kept in memory.
    #[arg(long, default_value_t = 100_000)]
    keep_events: usize,
    /// Also write every event to FILE as JSON lines.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Write every accepted message to this Maildir, synced to disk before the 250 reply.
    #[arg(long)]
    maildir: Option<PathBuf>,
    /// Keep no messages and no events in memory, and follow no attempts (for load tests).
    #[arg(long)]
    no_store: bool,
    /// Follow no attempts: no retry report (for load tests).
    #[arg(long)]
    no_attempts: bool,
    /// How many messages the attempt history follows (the oldest go first).
    #[arg(long, default_value_t = 10_000)]
    follow_messages: usize,
    /// Attempts kept per message; past it, the first ones and the latest stay.
    #[arg(long, default_value = "50")]
    keep_attempts: std::num::NonZeroUsize,
    /// How long after a temporary failure the retry report expects a retry (after a greylisted
    /// attempt: the greylist's retry window). Until then a missing retry is pending; after it,
    /// a failure.
    #[arg(long, default_value = "1h", value_parser = duration)]
    retry_window: Duration,
    /// Retry delays shorter than this fail the report's backoff verdict (RFC 5321 suggests 30
    /// minutes between an MTA's retries; applications differ).
    #[arg(long, default_value = "60s", value_parser = duration)]
    backoff_threshold: Duration,
    /// Bearer token the HTTP API requires (every route but /healthz). Required when --http is
    /// not a loopback address.
    #[arg(long)]
    http_token: Option<String>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<AppConfig> {
        let certificate = match (self.no_tls, self.tls_cert, self.tls_key) {
            (true, _, _) => None,
            (false, Some(cert), Some(key)) => Some(CertificateSource::Files { cert, key }),
            _ => Some(CertificateSource::Development),
        };
        let state = if self.state == "memory" {
            StateConfig::Memory
        } else if self.state.starts_with("redis://") || self.state.starts_with("rediss://") {
            StateConfig::Redis(self.state)
        } else {
            anyhow::bail!(
                "--state is `memory` or a redis:// URL, not {:?}",
                self.state
            );
        };
        let mut limits = match self.limits {
            Some(LimitPreset::Ovh) => LimitOverrides::OVH,
            None => LimitOverrides::default(),
        };
        if self.limit_account.is_some() {
            limits.per_account = self.limit_account;
        }
        if self.limit_ip.is_some() {
            limits.per_ip = self.limit_ip;
        }
        Ok(AppConfig {
            server: ServerConfig {
                smtp: self.smtp,
                smtps: self.smtps,
                certificate,
                timeouts: Timeouts {
                    command: Duration::from_secs(self.command_timeout),
                    data: Duration::from_secs(self.data_timeout),
                },
                max_connections: self.max_connections,
                max_connections_per_ip: self
                    .max_connections_per_ip
                    .map(std::num::NonZeroUsize::get),
                shutdown_grace: Duration::from_secs(self.shutdown_grace),
            },
            session: SessionConfig {
                hostname: self.hostname,
                max_message_size: self.max_message_size,
                max_recipients: self.max_recipients,
                auth: AuthPolicy {
                    allow_plaintext: !self.auth_requires_tls,
                    required: self.require_auth,
                },
                max_errors: self.max_errors,
                ..SessionConfig::default()
            },
            journal: JournalConfig {
                message_capacity: if self.no_store { 0 } else { self.keep_messages },
                message_bytes: self.keep_message_mib.saturating_mul(1024 * 1024),
                event_capacity: self.keep_events,
                record_events: !self.no_store,
                events_file: self.events,
                maildir: self.maildir,
            },
            attempts: AttemptsConfig {
                enabled: !self.no_store && !self.no_attempts,
                messages: self.follow_messages,
                attempts_per_message: self.keep_attempts.get(),
                retry_window: self.retry_window,
                backoff_threshold: self.backoff_threshold,
            },
            http: Some(HttpConfig {
                addr: self.http,
                token: self.http_token,
            }),
            scenario: Some(ScenarioConfig {
                path: self.scenario,
                seed: self.seed,
                no_magic: self.no_magic,
                limits,
            }),
            state,
            clock: Arc::new(OffsetClock::new()),
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FAILMAIL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match cli.command {
        Some(Commands::Serve(args)) => *args,
        None => cli.serve,
        Some(Commands::Check { files }) => return check(&files),
        Some(Commands::Catalog { flavor, format }) => return catalog(flavor, format),
        Some(Commands::Report {
            http,
            format,
            http_token,
        }) => std::process::exit(report(&http, format, http_token.as_deref())),
    };
    let threads = args
        .threads
        .map_or_else(default_threads, std::num::NonZeroUsize::get);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// Half the CPUs this process may use, at least one: on a 2-core machine shared with the load
/// generator, one event loop serves more messages per second than two threads that wake each
/// other (benches/load.sh measures both).
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| (cpus.get() / 2).max(1))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let app = App::start(args.into_config()?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Install the SIGHUP handler before announcing readiness: a reload request sent right after
    // the ready line must reload, not kill the process.
    let serves_a_file = app
        .scenario()
        .is_some_and(|reloader| reloader.options().path.is_some());
    let hangup = serves_a_file
        .then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok())
        .flatten();
    let watcher = app.watch_scenario(hangup, Duration::from_millis(500));
    // SIGTERM and SIGINT too are watched before the ready line: a stop request sent right after
    // it gets a graceful shutdown.
    let stop = stop_signals()?;
    println!("{}", app.addresses().ready_line());
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    wait_for(stop).await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    tracing::info!("shutting down");
    app.shutdown().await;
    Ok(())
}

fn check(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        match Scenario::load(file) {
            Ok(scenario) => println!("{}: ok ({} rules)", file.display(), scenario.rules.len()),
            Err(error) => {
                eprintln!("{error}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} scenario files have errors", files.len());
    }
    Ok(())
}

fn catalog(flavor: Flavor, format: CatalogFormat) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    match format {
        CatalogFormat::Json => {
            let entries: Vec<serde_json::Value> = catalog
                .entries()
                .iter()
                .map(|entry| {
                    let (variant, used) = entry.variant(flavor);
                    serde_json::json!({
                        "name": entry.name,
                        "summary": entry.summary,
                        "phase": entry.phase.as_str(),
                        "flavor": used.as_str(),
                        "code": variant.code,
                        "status": variant.status.to_string(),
                        "text": variant.text,
                        "source": variant.source,
                        "note": variant.note,
                        "flavors": entry.flavors().map(|f| f.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print_out(&(serde_json::to_string_pretty(&entries)? + "\n"))?;
        }
        CatalogFormat::Table => {
            use std::fmt::Write as _;
            let mut table = format!(
                "{:<28} {:<9} {:<4} {:<8} {:<8} TEXT\n",
                "NAME", "PHASE", "CODE", "STATUS", "FLAVOR"
            );
            for entry in catalog.entries() {
                let (variant, used) = entry.variant(flavor);
                writeln!(
                    table,
                    "{:<28} {:<9} {:<4} {:<8} {:<8} {}",
                    entry.name,
                    entry.phase.as_str(),
                    variant.code,
                    variant.status.to_string(),
                    used.as_str(),
                    variant.text.join(" / ")
                )?;
            }
            print_out(&table)?;
        }
    }
    Ok(())
}

/// `failmail report`: prints the report; the exit status is 0 when nothing failed, 1 when a
/// verdict failed, 2 when the report could not be read.
fn report(http: &str, format: ReportFormat, token: Option<&str>) -> i32 {
    let read = failmail::api::client::get(http, "/api/report", token)
        .map_err(|e| e.to_string())
        .and_then(|body| {
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("not a report: {e}"))?;
            let report: Report =
                serde_json::from_value(value.clone()).map_err(|e| format!("not a report: {e}"))?;
            Ok((value, report))
        });
    let (value, report) = match read {
        Ok(read) => read,
        Err(error) => {
            eprintln!("failmail report: {error}");
            return 2;
        }
    };
    let text = match format {
        ReportFormat::Table => report.table(),
        ReportFormat::Json => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
    };
    if let Err(error) = print_out(&text) {
        eprintln!("failmail report: {error}");
        return 2;
    }
    i32::from(!report.ok)
}

/// A duration flag: `500ms`, `20s`, `5m`, `1h`, `2d`.
fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 500ms, 20s, 5m, 1h)"))
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

type StopSignals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

fn stop_signals() -> anyhow::Result<StopSignals> {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok((terminate, interrupt))
}

async fn wait_for((mut terminate, mut interrupt): StopSignals) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
