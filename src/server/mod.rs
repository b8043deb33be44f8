//! The async server: listeners, connection tasks, TLS and shutdown.
//!
//! [`Server::start`] binds the SMTP listeners (port 0 allowed), spawns the accept loops and returns
//! a [`RunningServer`] that knows the bound addresses and how to stop. The server only carries
//! bytes between sockets and sessions: what to answer comes from the policy it is given, and what
//! happened goes to the journal it is given.

mod connection;
mod log;
pub mod tls;
mod tls_stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::bounces::Bounces;
use crate::clock::SharedClock;
use crate::journal::Journal;
use crate::limits::connections::OpenConnections;
use crate::smtp::policy::Policy;
use crate::smtp::reply::{fixed, status, Reply};
use crate::smtp::session::SessionConfig;
use tls::{CertificateSource, TlsSwitch};

/// The RFC 5321 §4.5.3.2 timeouts, as the server applies them while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for the next command (5 minutes in RFC 5321). It bounds the whole command line,
    /// not each read, so a client sending a byte at a time is closed too; it also bounds writing
    /// one batch of replies to a client that does not read them.
    pub command: Duration,
    /// Waiting for the next block of a message body (3 minutes in RFC 5321).
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
        }
    }
}

/// The SMTP side of a running failmail: listeners, TLS, timeouts and connection caps. What
/// sessions are told ([`SessionConfig`]), the policy, the journal and the clock are given to
/// [`Server::start`] by the composition root (`app`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The SMTP listener (STARTTLS offered when TLS is on); port 0 picks a free port.
    pub smtp: SocketAddr,
    /// The implicit-TLS listener (SMTPS), if wanted; it needs TLS on when the server starts.
    pub smtps: Option<SocketAddr>,
    /// The command line's certificate (`--tls`: the development one; `--tls-cert`/`--tls-key`),
    /// which turns TLS on. `None` (the default): TLS off (no STARTTLS, no SMTPS) unless the
    /// scenario's `[server] tls = true` turns it on with the development certificate.
    pub certificate: Option<CertificateSource>,
    /// `--no-tls`: no TLS whatever the scenario says.
    pub no_tls: bool,
    /// Read timeouts.
    pub timeouts: Timeouts,
    /// Most simultaneous connections; past it, new ones get 421 4.7.0 and are closed.
    pub max_connections: usize,
    /// Most simultaneous connections from one client IP address (SMTP and SMTPS together); past
    /// it, new ones get `421 4.7.0 <hostname> Too many connections from your IP address, try
    /// again later` instead of the greeting and are closed. `None` (the default) is no cap: load
    /// tests open thousands of connections from 127.0.0.1.
    pub max_connections_per_ip: Option<usize>,
    /// How long a shutdown waits for messages in progress before closing everything.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            smtp: SocketAddr::from(([127, 0, 0, 1], 1025)),
            smtps: None,
            certificate: None,
            no_tls: false,
            timeouts: Timeouts::default(),
            max_connections: 20_000,
            max_connections_per_ip: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// A configuration for tests: SMTP (with STARTTLS) and SMTPS on 127.0.0.1 port 0, with the
    /// development certificate.
    pub fn loopback() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            smtp: any,
            smtps: Some(any),
            certificate: Some(CertificateSource::Development),
            ..Self::default()
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// An SMTPS listener was asked for while TLS is off.
    #[error(
        "--smtps {0} needs TLS: add --tls (the development certificate) or --tls-cert/--tls-key, \
         or `tls = true` in the scenario's [server]"
    )]
    SmtpsWithoutTls(SocketAddr),
}

/// Where the server is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownState {
    /// Serving.
    Running,
    /// New commands get 421; messages being received may finish.
    Draining,
    /// Everything left gets 421 now.
    Force,
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    session_config: ArcSwap<SessionConfig>,
    tls: TlsSwitch,
    timeouts: Timeouts,
    policy: ArcSwap<Box<dyn Policy>>,
    journal: Arc<Journal>,
    clock: SharedClock,
    next_session: AtomicU64,
    /// Where accepted recipients with a later fate get their notifications scheduled.
    bounces: Option<Arc<Bounces>>,
}

impl Shared {
    fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

/// The server, before it runs.
pub struct Server;

impl Server {
    /// Binds the SMTP listeners and starts serving: sessions are told `session`, decided by
    /// `policy`, recorded in `journal` and stamped by `clock`; later fates go to `bounces`.
    pub async fn start(
        config: ServerConfig,
        mut session: SessionConfig,
        policy: Box<dyn Policy>,
        journal: Arc<Journal>,
        clock: SharedClock,
        bounces: Option<Arc<Bounces>>,
    ) -> Result<RunningServer, ServerError> {
        let tls = TlsSwitch::new(config.certificate.as_ref(), config.no_tls)?;
        session.tls_available = tls.offer(session.tls_available);
        let smtps = match config.smtps {
            Some(addr) if !session.tls_available => {
                return Err(ServerError::SmtpsWithoutTls(addr));
            }
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let smtp = bind(config.smtp).await?;
        let listening = Listening {
            smtp: local_addr(&smtp),
            smtps: smtps.as_ref().map(local_addr),
        };
        let shared = Arc::new(Shared {
            session_config: ArcSwap::from_pointee(session),
            tls,
            timeouts: config.timeouts,
            policy: ArcSwap::from_pointee(policy),
            journal,
            clock,
            next_session: AtomicU64::new(1),
            bounces,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(ShutdownState::Running);
        let limit = Arc::new(Semaphore::new(config.max_connections));
        let per_ip = PerIp {
            open: Arc::new(OpenConnections::default()),
            max: config.max_connections_per_ip,
        };
        let mut tasks = JoinSet::new();
        let listeners = std::iter::once((smtp, false)).chain(smtps.map(|l| (l, true)));
        for (listener, implicit_tls) in listeners {
            tasks.spawn(accept_loop(
                listener,
                implicit_tls,
                shared.clone(),
                limit.clone(),
                per_ip.clone(),
                shutdown_rx.clone(),
            ));
        }
        Ok(RunningServer {
            listening,
            shared,
            shutdown: shutdown_tx,
            limit,
            max_connections: config.max_connections,
            grace: config.shutdown_grace,
            tasks,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has a local address")
}

/// The addresses the SMTP listeners actually listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// SMTP with STARTTLS.
    pub smtp: SocketAddr,
    /// SMTPS (implicit TLS).
    pub smtps: Option<SocketAddr>,
}

/// Changes what a running server does for new sessions: the narrow handle a scenario reload
/// goes through.
#[derive(Clone)]
pub struct ServerControl {
    shared: Arc<Shared>,
}

impl ServerControl {
    /// Replaces the policy for new sessions; sessions in progress keep theirs and go on.
    pub fn set_policy(&self, policy: Box<dyn Policy>) {
        self.shared.policy.store(Arc::new(policy));
    }

    /// Replaces what new sessions are told (host name, limits, AUTH policy, 250 wording, whether
    /// STARTTLS is offered: `tls_available` is what the command line and the scenario want, and
    /// becomes what the server can give).
    pub fn set_session_config(&self, mut config: SessionConfig) {
        config.tls_available = self.shared.tls.offer(config.tls_available);
        self.shared.session_config.store(Arc::new(config));
    }

    /// Whether new sessions are offered STARTTLS now (`/healthz` says so).
    pub fn tls_on(&self) -> bool {
        self.shared.session_config.load().tls_available
    }

    /// What new sessions are told now.
    pub fn session_config(&self) -> Arc<SessionConfig> {
        self.shared.session_config.load_full()
    }
}

/// A started server.
pub struct RunningServer {
    listening: Listening,
    shared: Arc<Shared>,
    shutdown: watch::Sender<ShutdownState>,
    limit: Arc<Semaphore>,
    max_connections: usize,
    grace: Duration,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Where it listens.
    pub fn listening(&self) -> Listening {
        self.listening
    }

    /// A handle that can change the running server's policy and settings from anywhere.
    pub fn control(&self) -> ServerControl {
        ServerControl {
            shared: self.shared.clone(),
        }
    }

    /// Follows the shutdown, so that other tasks (the HTTP API's event streams) end with it.
    pub fn shutdown_signal(&self) -> watch::Receiver<ShutdownState> {
        self.shutdown.subscribe()
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.limit.available_permits()
    }

    /// Graceful shutdown: stop accepting, answer 421 to new commands, let messages being received
    /// finish within the grace period, then close whatever is left.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(ShutdownState::Draining);
        let drained = async {
            // Every connection holds a permit: all permits back means every connection ended.
            let _all = self.limit.acquire_many(self.max_connections as u32).await;
        };
        if tokio::time::timeout(self.grace, drained).await.is_err() {
            warn!("grace period over, closing the remaining connections");
            let _ = self.shutdown.send(ShutdownState::Force);
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.limit.acquire_many(self.max_connections as u32),
            )
            .await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        info!("stopped");
    }
}

impl Drop for RunningServer {
    /// Stops accepting and ends the sessions still open, so that a dropped server frees what it
    /// kept.
    fn drop(&mut self) {
        let _ = self.shutdown.send(ShutdownState::Force);
        self.tasks.abort_all();
    }
}

/// The 421 for a client over [`ServerConfig::max_connections_per_ip`].
fn too_many_from_ip(hostname: &str) -> Reply {
    Reply::new(
        421,
        Some(status(4, 7, 0)),
        &[format!(
            "{hostname} Too many connections from your IP address, try again later"
        )],
    )
    .unwrap_or(fixed::TOO_MANY_CONNECTIONS)
}

/// Open connections per client IP, and the cap `--max-connections-per-ip` puts on them.
#[derive(Clone)]
struct PerIp {
    open: Arc<OpenConnections>,
    max: Option<usize>,
}

async fn accept_loop(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    per_ip: PerIp,
    mut shutdown: watch::Receiver<ShutdownState>,
) {
    // Refusals are answered by their own short tasks; past this many at once (a flood), a
    // refused connection is closed without its 421.
    let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = || implicit_tls.then(|| shared.tls.acceptor()).flatten();
        // The one place the client's address is canonicalised: an IPv4 client seen through a
        // dual-stack listener (`::ffff:192.0.2.1`) is that IPv4 client from here on, for the
        // session, the policy, the limits, greylisting and the journal alike.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let slot = per_ip.open.open(peer.ip());
        if per_ip.max.is_some_and(|max| slot.count() as usize > max) {
            drop(slot);
            shared.journal.metrics().limit_refused(1);
            let reply = too_many_from_ip(&shared.session_config.load().hostname);
            spawn_refusal(&refusals, stream, tls(), reply);
            continue;
        }
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    connection::serve(stream, peer, &slot, implicit_tls, shared, shutdown).await;
                    drop(slot);
                    drop(permit);
                });
            }
            Err(_) => {
                drop(slot);
                spawn_refusal(&refusals, stream, tls(), fixed::TOO_MANY_CONNECTIONS);
            }
        }
    }
}

/// At most this many refused connections are being answered at once, per listener.
const MAX_PENDING_REFUSALS: usize = 64;

/// Answers a refused connection with `reply` in a task of its own, if fewer than
/// [`MAX_PENDING_REFUSALS`] are being answered; else closes it at once.
fn spawn_refusal(
    refusals: &Arc<Semaphore>,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    reply: Reply,
) {
    match refusals.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                refuse(stream, tls, reply).await;
                drop(permit);
            });
        }
        Err(_) => drop(stream),
    }
}

/// Past a connection cap: one 421 and close (RFC 5321 §3.8 allows it in place of the greeting).
/// On the implicit-TLS port the 421 is sent over TLS, as the client expects nothing else.
async fn refuse(mut stream: TcpStream, tls: Option<TlsAcceptor>, reply: Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        match tls {
            Some(acceptor) => {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.write_all(reply.wire()).await;
                    let _ = tls.shutdown().await;
                }
            }
            None => {
                let _ = stream.write_all(reply.wire()).await;
                let _ = stream.shutdown().await;
            }
        }
    })
    .await;
}
