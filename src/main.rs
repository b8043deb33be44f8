//! The `failmail` command line: parses flags, starts the server, prints the ready line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use failmail::server::tls::CertificateSource;
use failmail::server::Timeouts;
use failmail::smtp::session::{AuthPolicy, SessionConfig};
use failmail::{Server, ServerConfig};
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
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
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
    /// Seconds a shutdown waits for messages being received.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// How many accepted messages are kept in memory.
    #[arg(long, default_value_t = 10_000)]
    keep_messages: usize,
}

impl ServeArgs {
    fn into_config(self) -> ServerConfig {
        let certificate = match (self.no_tls, self.tls_cert, self.tls_key) {
            (true, _, _) => None,
            (false, Some(cert), Some(key)) => Some(CertificateSource::Files { cert, key }),
            _ => Some(CertificateSource::Development),
        };
        ServerConfig {
            smtp: self.smtp,
            smtps: self.smtps,
            http: Some(self.http),
            certificate,
            session: SessionConfig {
                hostname: self.hostname,
                max_message_size: self.max_message_size,
                max_recipients: self.max_recipients,
                auth: AuthPolicy {
                    allow_plaintext: !self.auth_requires_tls,
                    required: self.require_auth,
                },
                ..SessionConfig::default()
            },
            timeouts: Timeouts {
                command: Duration::from_secs(self.command_timeout),
                data: Duration::from_secs(self.data_timeout),
            },
            max_connections: self.max_connections,
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            message_capacity: self.keep_messages,
        }
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
        Some(Commands::Serve(args)) => args,
        None => cli.serve,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config();
    let server = Server::start_sink(config).await.context("cannot start")?;
    println!("{}", server.addresses().ready_line());
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
