//! The `failmail` command line: parses flags, starts the server, prints the ready line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::sync::Arc;

use failmail::app::{App, AppConfig, HttpConfig, ScenarioConfig, StateConfig};
use failmail::bounces::{BounceConfig, ForwardConfig};
use failmail::clock::{parse_duration, OffsetClock};
use failmail::import::timing::Timing;
use failmail::import::{emit, ImportError};
use failmail::journal::{AttemptsConfig, JournalConfig};
use failmail::limits::{LimitOverrides, Window};
use failmail::scenario::compile::Scenario;
use failmail::scenario::flavor::Flavor;
use failmail::server::tls::CertificateSource;
use failmail::server::{ServerConfig, Timeouts};
use failmail::smtp::session::{
    AuthPolicy, SessionConfig, DEFAULT_MAX_ERRORS, DEFAULT_MAX_JUNK_COMMANDS,
};
use tracing_subscriber::EnvFilter;

mod cli;
use cli::{catalog, domain_table, print_out, report, style_table, CatalogFormat, ReportFormat};

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
    /// Ask a running failmail whether it is healthy (`GET /healthz`): exit 0 if it answers
    /// `ok`. For health checks where no HTTP client is at hand (the container image).
    Health {
        /// Its HTTP address.
        #[arg(long, default_value = "127.0.0.1:8025")]
        http: SocketAddr,
    },
    /// Read real bounces and print a scenario whose rules reproduce each failed recipient's
    /// reply (or add the rules to a scenario, or print magic addresses): in the SMTP dialogue
    /// when the bounce shows a synchronous failure, as a later bounce (a DSN after a 250) when
    /// it shows an asynchronous one.
    Import {
        /// Bounces: RFC 5322 messages (DSNs and the common MTA formats), MTA log excerpts or SMTP
        /// reply transcripts; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<String>,
        /// Add the rules to this scenario file, keeping its comments, instead of printing.
        #[arg(long, conflicts_with = "as_magic")]
        into: Option<PathBuf>,
        /// Print, for each failure, a magic address that reproduces it, instead of a scenario.
        #[arg(long)]
        as_magic: bool,
        /// Reproduce every failure as a later bounce (accepted with 250, then a DSN), whatever
        /// the bounce shows.
        #[arg(long, conflicts_with = "at_smtp")]
        later: bool,
        /// Reproduce every failure as the reply in the SMTP dialogue, at the phase the bounce
        /// names, whatever the bounce shows.
        #[arg(long)]
        at_smtp: bool,
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
        /// Show this flavor's wording (generic, ovh, gmail, outlook, yahoo, postfix, exim,
        /// exchange, icloud, zoho, gmx, orange, yandex, mailru).
        #[arg(long, default_value = "generic")]
        flavor: Flavor,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: CatalogFormat,
        /// List instead which recipient domains answer in which flavor (the built-in table,
        /// extended, or replaced, by the `flavor_by_domain` of `--scenario` when given).
        #[arg(long)]
        domains: bool,
        /// With `--domains`: the scenario whose `flavor_by_domain` extends the table.
        #[arg(long, requires = "domains")]
        scenario: Option<PathBuf>,
        /// List instead the styles later bounces (DSNs) are written in: which flavors write in
        /// each, their sender and subjects, and the public source of their wording.
        #[arg(long, conflicts_with = "domains")]
        styles: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LimitPreset {
    /// OVHcloud: 200 mails/hour/account, 300 mails/hour/IP, whatever the scenario says.
    Ovh,
    /// No per-account or per-IP limit, whatever the scenario says.
    None,
    /// Gmail's receiving limit: 60 messages/minute per recipient mailbox.
    Gmail,
    /// Exchange Online's receiving limit: 3,600 messages/hour per recipient mailbox.
    Exchange,
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
    /// Preset limits. Without this flag: OVHcloud's sending limits (200 mails/hour/account,
    /// 300 mails/hour/IP) unless the scenario has a [limits] section. `ovh`: OVHcloud's whatever
    /// the scenario says; `none`: no limit; `gmail` (60 messages/minute per recipient) and
    /// `exchange` (3,600/hour per recipient): receiving limits, with the default sending ones.
    #[arg(long, value_enum)]
    limits: Option<LimitPreset>,
    /// Limit per account (AUTH identity, else MAIL FROM): MAX/WINDOW, e.g. 200/1h.
    #[arg(long, value_parser = Window::parse)]
    limit_account: Option<Window>,
    /// Limit per client IP: MAX/WINDOW, e.g. 300/1h.
    #[arg(long, value_parser = Window::parse)]
    limit_ip: Option<Window>,
    /// Receiving limit per recipient mailbox: MAX/WINDOW, e.g. 60/1m.
    #[arg(long, value_parser = Window::parse)]
    limit_recipient: Option<Window>,
    /// Receiving limit per recipient domain: MAX/WINDOW, e.g. 1000/1h.
    #[arg(long, value_parser = Window::parse)]
    limit_recipient_domain: Option<Window>,
    /// Where limit, greylist and sequence state lives: `memory` or `redis://HOST:PORT`. With
    /// Redis, several failmail instances act as one server.
    #[arg(long, default_value = "memory")]
    state: String,
    /// SMTP listener (STARTTLS offered when TLS is on). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:1025")]
    smtp: SocketAddr,
    /// Implicit-TLS (SMTPS) listener, off unless given; needs TLS on (--tls, --tls-cert, or the
    /// scenario's `[server] tls = true`).
    #[arg(long)]
    smtps: Option<SocketAddr>,
    /// HTTP listener (health, API). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8025")]
    http: SocketAddr,
    /// Turn TLS on with the development certificate: STARTTLS, and SMTPS with --smtps. TLS is
    /// off unless this, --tls-cert or the scenario's `[server] tls = true` asks.
    #[arg(long)]
    tls: bool,
    /// TLS certificate chain (PEM); turns TLS on with it.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// No TLS even if the scenario's `[server] tls = true` asks for it.
    #[arg(long, conflicts_with_all = ["tls", "tls_cert", "smtps"])]
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
    /// NOOP, RSET, VRFY, EXPN and HELP allowed per session without a transaction start before
    /// each more counts as an error (0: no limit).
    #[arg(long, default_value_t = DEFAULT_MAX_JUNK_COMMANDS)]
    max_junk_commands: usize,
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
    /// How many events (sessions, commands, replies) are kept in memory: also how far a reader
    /// of the event stream may fall behind before it misses events (0: no stream).
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
    #[arg(long, env = "FAILMAIL_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
    /// A host name the HTTP API and web page are reached by, besides its IP address and localhost (repeat for
    /// more): other `Host` values are refused, against DNS rebinding.
    #[arg(long = "http-host", value_name = "NAME")]
    http_hosts: Vec<String>,
    /// Also deliver every later bounce (DSN, complaint, auto-reply) by SMTP to this address,
    /// e.g. smtp://127.0.0.1:2525 (your application's inbound bounce endpoint), with retries.
    /// The only outbound SMTP failmail makes; without it nothing leaves the machine.
    #[arg(long, value_parser = ForwardConfig::parse)]
    bounce_to: Option<ForwardConfig>,
    /// Most later bounces waiting for their time; past it, a message that would add more is
    /// refused with 451 4.3.0.
    #[arg(long, default_value_t = BounceConfig::default().max_pending)]
    max_pending_bounces: usize,
}

impl ServeArgs {
    /// The limits the command line sets, and those that apply to a scenario that sets none of
    /// its own (OVHcloud's sending limits unless `--limits` says otherwise).
    fn limit_overrides(&self) -> (LimitOverrides, LimitOverrides) {
        let none = LimitOverrides::default();
        let (mut limits, default_limits) = match self.limits {
            Some(LimitPreset::Ovh) => (LimitOverrides::OVH, none),
            Some(LimitPreset::None) => (none, none),
            Some(LimitPreset::Gmail) => (LimitOverrides::GMAIL, LimitOverrides::OVH),
            Some(LimitPreset::Exchange) => (LimitOverrides::EXCHANGE, LimitOverrides::OVH),
            None => (none, LimitOverrides::OVH),
        };
        for (limit, given) in [
            (&mut limits.per_account, self.limit_account),
            (&mut limits.per_ip, self.limit_ip),
            (&mut limits.per_recipient, self.limit_recipient),
            (
                &mut limits.per_recipient_domain,
                self.limit_recipient_domain,
            ),
        ] {
            if given.is_some() {
                *limit = given;
            }
        }
        (limits, default_limits)
    }

    /// `--state`: memory, or a Redis URL.
    fn state_config(&self) -> anyhow::Result<StateConfig> {
        if self.state == "memory" {
            Ok(StateConfig::Memory)
        } else if self.state.starts_with("redis://") || self.state.starts_with("rediss://") {
            Ok(StateConfig::Redis(self.state.clone()))
        } else {
            anyhow::bail!(
                "--state is `memory` or a redis:// URL, not {:?}",
                self.state
            )
        }
    }

    fn into_config(self) -> anyhow::Result<AppConfig> {
        let (limits, default_limits) = self.limit_overrides();
        let state = self.state_config()?;
        let certificate = match (self.tls, self.tls_cert, self.tls_key) {
            (_, Some(cert), Some(key)) => Some(CertificateSource::Files { cert, key }),
            (true, _, _) => Some(CertificateSource::Development),
            _ => None,
        };
        Ok(AppConfig {
            server: ServerConfig {
                smtp: self.smtp,
                smtps: self.smtps,
                certificate,
                no_tls: self.no_tls,
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
                max_junk_commands: self.max_junk_commands,
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
                hosts: self.http_hosts,
            }),
            scenario: Some(ScenarioConfig {
                path: self.scenario,
                seed: self.seed,
                no_magic: self.no_magic,
                limits,
                default_limits,
                no_limits: matches!(self.limits, Some(LimitPreset::None)),
            }),
            state,
            clock: Arc::new(OffsetClock::new()),
            bounces: BounceConfig {
                max_pending: self.max_pending_bounces,
                forward: self.bounce_to,
                ..BounceConfig::default()
            },
        })
    }
}

/// Runs the command; an error is printed as its chain of causes, one line, never with a stack
/// backtrace (even with `RUST_BACKTRACE` set: that is for failmail's own bugs, not a user's).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    use std::io::IsTerminal as _;
    // Colours only on a terminal: a log file or a pipe gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FAILMAIL_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    let args = match cli.command {
        Some(Commands::Serve(args)) => *args,
        None => cli.serve,
        Some(Commands::Check { files }) => return check(&files),
        Some(Commands::Health { http }) => return health(http),
        Some(Commands::Import {
            files,
            into,
            as_magic,
            later,
            at_smtp,
        }) => {
            let forced = match (later, at_smtp) {
                (true, _) => Some(Timing::Later),
                (_, true) => Some(Timing::AtSmtp),
                _ => None,
            };
            return import(&files, into.as_deref(), as_magic, forced);
        }
        Some(Commands::Catalog {
            domains: true,
            scenario,
            format,
            ..
        }) => return domain_table(scenario.as_deref(), format),
        Some(Commands::Catalog {
            styles: true,
            format,
            ..
        }) => return style_table(format),
        Some(Commands::Catalog { flavor, format, .. }) => return catalog(flavor, format),
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

/// `failmail health`: `GET /healthz` with a bound on every step; prints the answer.
fn health(http: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let wait = Duration::from_secs(5);
    let mut stream = std::net::TcpStream::connect_timeout(&http, wait)
        .with_context(|| format!("cannot connect to {http}"))?;
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    write!(stream, "GET /healthz HTTP/1.0\r\nHost: {http}\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") || !body.starts_with("ok") {
        anyhow::bail!("{http} is not healthy: {status:?} {body:?}");
    }
    print!("{body}");
    Ok(())
}

/// `failmail check`: every error of every file, then how many; "ok (N rules)" for a good file.
fn check(files: &[PathBuf]) -> anyhow::Result<()> {
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let mut failed = 0;
    for file in files {
        match Scenario::check_file(file) {
            Ok(scenario) => {
                let rules = scenario.rules.len();
                println!(
                    "{}: ok ({rules} {})",
                    file.display(),
                    plural(rules, "rule", "rules")
                );
            }
            Err(errors) => {
                let count = errors.count();
                eprintln!("{errors}");
                eprintln!(
                    "{}: {count} {}",
                    file.display(),
                    plural(count, "error", "errors")
                );
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} scenario {} {} errors",
            files.len(),
            plural(files.len(), "file", "files"),
            plural(failed, "has", "have")
        );
    }
    Ok(())
}

/// `failmail import`: every bounce read (what cannot be read is said on stderr, the rest still
/// imported), then the scenario, the scenario file updated, or the magic addresses.
fn import(
    files: &[String],
    into: Option<&std::path::Path>,
    as_magic: bool,
    forced: Option<Timing>,
) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut bounces = Vec::new();
    for file in files {
        let mut raw = Vec::new();
        let limit = failmail::import::MAX_BOUNCE_BYTES as u64;
        let read = if file == "-" {
            std::io::stdin().lock().take(limit).read_to_end(&mut raw)
        } else {
            std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut raw))
        };
        let bounce = read
            .map_err(|source| ImportError::Read {
                file: file.clone(),
                source,
            })
            .and_then(|_| failmail::import::read_bounce(file, &raw));
        match bounce {
            Ok(mut bounce) => {
                if let Some(timing) = forced {
                    bounce.force(timing);
                }
                for problem in &bounce.problems {
                    eprintln!("{file}: {problem}");
                }
                bounces.push(bounce);
            }
            Err(error) => eprintln!("{error}"),
        }
    }
    if bounces.is_empty() {
        anyhow::bail!("nothing imported from {} file(s)", files.len());
    }
    let (text, problems) = match (into, as_magic) {
        (_, true) => (
            emit::magic_addresses(&bounces).join("\n") + "\n",
            Vec::new(),
        ),
        (Some(path), false) => {
            let origin = path.display().to_string();
            let existing =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {origin}"))?;
            let (text, problems) = emit::add_to_scenario(&origin, &existing, &bounces)?;
            std::fs::write(path, text).with_context(|| format!("cannot write {origin}"))?;
            (String::new(), problems)
        }
        (None, false) => emit::new_scenario(&bounces),
    };
    for problem in &problems {
        eprintln!("{problem}");
    }
    print_out(&text)
}

/// A duration flag: `500ms`, `20s`, `5m`, `1h`, `2d`.
fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 500ms, 20s, 5m, 1h)"))
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
