//! The composition root: the one place that builds the pieces of a running failmail and wires
//! them together.
//!
//! [`App::start`] builds, once each and in this order, the limit store with the clock, the
//! journal (with the attempt history), the bounce scheduler (moving the clock wakes it), the
//! scenario's policy, the SMTP server (which hands accepted recipients' later fates to the
//! scheduler), the scenario reloader (which reaches the server only through [`PolicyTarget`])
//! and the HTTP listener, which serves the API and the web page behind the same layers; then it
//! starts the scheduler's task. Nothing else assembles pieces: `main`, `testing::TestServer` and
//! the test helpers all start through here, so that every way of running failmail is wired the
//! same way, with one clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::bounces::{BounceConfig, Bounces, WakingClock};
use crate::clock::{OffsetClock, SharedClock};
use crate::journal::{AttemptsConfig, Journal, JournalConfig, MessageStore};
use crate::limits::memory::MemoryStore;
use crate::limits::redis::RedisStore;
use crate::limits::LimitOverrides;
use crate::limits::{LimitStore, StoreError};
use crate::scenario::error::ScenarioError;
use crate::scenario::live::{PolicyTarget, Reloader, ScenarioOptions};
use crate::server::{RunningServer, Server, ServerConfig, ServerControl, ServerError};
use crate::smtp::policy::{AcceptAll, Policy};
use crate::smtp::session::SessionConfig;
use crate::web;

/// Which scenario a failmail serves, and how it is tuned from the command line.
#[derive(Debug, Clone, Default)]
pub struct ScenarioConfig {
    /// The scenario file; `None` serves the built-in scenario (magic addresses only).
    pub path: Option<std::path::PathBuf>,
    /// Seed for every `probability`.
    pub seed: u64,
    /// Turn magic addresses off whatever the file says.
    pub no_magic: bool,
    /// Limits from the command line; they replace the file's `per_account` / `per_ip`.
    pub limits: LimitOverrides,
    /// Limits for a scenario without a `[limits]` section: OVHcloud's for `failmail serve`
    /// ([`AppConfig::default`]), none by default here (tests say what they want).
    pub default_limits: LimitOverrides,
    /// `--limits none`: no per-account or per-IP limit, whatever the scenario says.
    pub no_limits: bool,
}

impl ScenarioConfig {
    /// How the scenario reloader builds policies from this, with the app's clock, store and
    /// command-line session settings.
    fn options(
        self,
        clock: SharedClock,
        base: SessionConfig,
        store: Arc<dyn LimitStore>,
    ) -> ScenarioOptions {
        ScenarioOptions {
            path: self.path,
            seed: self.seed,
            no_magic: self.no_magic,
            limits: self.limits,
            default_limits: self.default_limits,
            no_limits: self.no_limits,
            clock,
            base,
            store,
        }
    }
}

/// Where limit, greylist and sequence state lives.
#[derive(Debug, Clone, Default)]
pub enum StateConfig {
    /// In this process's memory.
    #[default]
    Memory,
    /// In the Redis server at this `redis://` URL, shared by every instance that uses it, with
    /// the clock's offset.
    Redis(String),
    /// In a store the caller built (tests share one between two instances).
    Store(Arc<dyn LimitStore>),
}

/// The HTTP API's listener.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where it listens; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Bearer token every route but `/healthz` requires; mandatory when `addr` is not loopback.
    pub token: Option<String>,
    /// Host names the API is also reached by (`--http-host`), besides its IP and `localhost`.
    pub hosts: Vec<String>,
}

/// Everything a running failmail is built from: the one configuration tree. Its
/// [`Default`] is what `failmail serve` does with no flags; [`AppConfig::loopback`] is what tests
/// start from.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Listeners, TLS, timeouts and connection caps.
    pub server: ServerConfig,
    /// What every session is told (the scenario's `[server]` may override parts of it).
    pub session: SessionConfig,
    /// What is kept of what happened.
    pub journal: JournalConfig,
    /// The attempt history behind the retry report: what it follows and how it judges.
    pub attempts: AttemptsConfig,
    /// The HTTP API, if wanted.
    pub http: Option<HttpConfig>,
    /// The scenario; `None` serves the plain sink (every phase accepted, no magic addresses,
    /// no limits).
    pub scenario: Option<ScenarioConfig>,
    /// Where limit, greylist and sequence state lives.
    pub state: StateConfig,
    /// The clock every time-based behaviour reads and every event is stamped with. With
    /// [`StateConfig::Redis`] it is moved by the offset kept in Redis as well.
    pub clock: SharedClock,
    /// Later notifications: bounds and `--bounce-to`.
    pub bounces: BounceConfig,
}

impl Default for AppConfig {
    /// `failmail serve` with no flags: SMTP on 127.0.0.1:1025 without TLS, HTTP on
    /// 127.0.0.1:8025, the built-in scenario with OVHcloud's limits (200 mails/hour/account,
    /// 300/hour/IP) unless a scenario has a `[limits]` section, state in memory.
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            session: SessionConfig::default(),
            journal: JournalConfig::default(),
            attempts: AttemptsConfig::default(),
            http: Some(HttpConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 8025)),
                token: None,
                hosts: Vec::new(),
            }),
            scenario: Some(ScenarioConfig {
                default_limits: LimitOverrides::OVH,
                ..ScenarioConfig::default()
            }),
            state: StateConfig::default(),
            clock: Arc::new(OffsetClock::new()),
            bounces: BounceConfig::default(),
        }
    }
}

impl AppConfig {
    /// For tests: every listener (SMTP with STARTTLS, SMTPS, HTTP) on 127.0.0.1 port 0 with the
    /// development certificate, the built-in scenario with no limits.
    pub fn loopback() -> Self {
        Self {
            server: ServerConfig::loopback(),
            scenario: Some(ScenarioConfig::default()),
            http: Some(HttpConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: None,
                hosts: Vec::new(),
            }),
            ..Self::default()
        }
    }
}

/// Why failmail could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The scenario did not load.
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    /// The limit store could not be reached.
    #[error("cannot use --state {url}: {source}")]
    Store {
        /// The store's URL.
        url: String,
        /// Why.
        source: StoreError,
    },
    /// The events file or the Maildir could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// The SMTP server did not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The HTTP API would be served on a non-loopback address without a token.
    #[error(transparent)]
    HttpUnprotected(#[from] crate::api::ApiError),
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The addresses a running failmail actually listens on, and whether it offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// SMTP (STARTTLS offered when `tls`).
    pub smtp: SocketAddr,
    /// SMTPS (implicit TLS).
    pub smtps: Option<SocketAddr>,
    /// HTTP.
    pub http: Option<SocketAddr>,
    /// Whether STARTTLS was offered when the server started (a scenario reload may change it;
    /// `/healthz` tells the live state).
    pub tls: bool,
}

impl Addresses {
    /// The one line printed on start: `failmail ready smtp=… smtps=… http=… tls=on|off`.
    pub fn ready_line(&self) -> String {
        let mut line = format!("failmail ready smtp={}", self.smtp);
        if let Some(addr) = self.smtps {
            line.push_str(&format!(" smtps={addr}"));
        }
        if let Some(addr) = self.http {
            line.push_str(&format!(" http={addr}"));
        }
        line.push_str(if self.tls { " tls=on" } else { " tls=off" });
        line
    }
}

/// The server's side of a scenario reload: new sessions get the new policy and settings.
impl PolicyTarget for ServerControl {
    fn install(&self, policy: Box<dyn Policy>, session: SessionConfig) {
        self.set_session_config(session);
        self.set_policy(policy);
    }
}

/// failmail, before it runs.
pub struct App;

impl App {
    /// Builds every piece once, wires them, and starts serving.
    pub async fn start(config: AppConfig) -> Result<RunningApp, AppError> {
        if let Some(http) = &config.http {
            api::check_bind(http.addr, http.token.as_deref())?;
        }
        let (store, clock) = open_state(config.state, config.clock).await?;
        let journal = Arc::new(Journal::open(&config.journal)?.with_attempts(&config.attempts));
        let (clock, bounces) = scheduler(clock, config.bounces, &journal);
        let mut base = config.session;
        // TLS as the command line says; the scenario's `[server] tls` may change it.
        base.tls_available = config.server.certificate.is_some();
        let (policy, session, scenario) = match config.scenario {
            None => (Box::new(AcceptAll) as Box<dyn Policy>, base, None),
            Some(scenario) => {
                let options = scenario.options(clock.clone(), base, store);
                let (live, session) = Reloader::first(&options)?;
                let policy = Box::new(live.policy.clone()) as Box<dyn Policy>;
                (policy, session, Some((options, live)))
            }
        };
        let hostname = session.hostname.clone();
        let server = Server::start(
            config.server,
            session,
            policy,
            journal.clone(),
            clock.clone(),
            Some(bounces.clone()),
        )
        .await?;
        let reloader = scenario
            .map(|(options, live)| Reloader::new(options, Arc::new(server.control()), live));
        let listening = server.listening();
        let mut addresses = Addresses {
            smtp: listening.smtp,
            smtps: listening.smtps,
            http: None,
            tls: server.control().tls_on(),
        };
        let http = match config.http {
            Some(http) => {
                let state = ApiState {
                    journal: journal.clone(),
                    clock: clock.clone(),
                    scenario: reloader.clone(),
                    server: server.control(),
                    bounces: Some(bounces.clone()),
                    listening: Some(listening),
                };
                let (addr, task) = start_http(http, state, &server).await?;
                addresses.http = addr;
                Some(task)
            }
            None => None,
        };
        let bounce_runner = Some(tokio::spawn(bounces.clone().run(hostname)));
        Ok(RunningApp {
            addresses,
            server: Some(server),
            http,
            journal,
            clock,
            reloader,
            bounces,
            bounce_runner,
        })
    }
}

/// Binds the HTTP listener and serves the API and the page on it until the server shuts down:
/// its address, and the task serving it.
async fn start_http(
    http: HttpConfig,
    state: ApiState,
    server: &RunningServer,
) -> Result<(Option<SocketAddr>, JoinHandle<()>), AppError> {
    let listener = TcpListener::bind(http.addr)
        .await
        .map_err(|source| AppError::HttpBind {
            addr: http.addr,
            source,
        })?;
    let addr = listener.local_addr().ok();
    let token = http
        .token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(Arc::<str>::from);
    let token_protected = token.is_some();
    // One router, so that the layers `api::serve` adds guard the page and the API.
    let routes = api::router_with_token(state, token).merge(web::router());
    let task = tokio::spawn(api::serve(
        listener,
        routes,
        http.hosts,
        token_protected,
        server.shutdown_signal(),
    ));
    Ok((addr, task))
}

/// The bounce scheduler, and the clock every piece reads, wrapped so that moving it wakes the
/// scheduler (bounces due by the new time go out at once).
fn scheduler(
    clock: SharedClock,
    config: BounceConfig,
    journal: &Arc<Journal>,
) -> (SharedClock, Arc<Bounces>) {
    let wake = Arc::new(Notify::new());
    let clock: SharedClock = Arc::new(WakingClock::new(clock, wake.clone()));
    let bounces = Bounces::new(config, clock.clone(), journal.clone(), wake);
    (clock, bounces)
}

/// The limit store, and the clock: `clock` itself, or with Redis, `clock` moved by the offset
/// every instance sharing that Redis reads (so that advancing the clock on one moves them all).
async fn open_state(
    state: StateConfig,
    clock: SharedClock,
) -> Result<(Arc<dyn LimitStore>, SharedClock), AppError> {
    Ok(match state {
        StateConfig::Memory => (Arc::new(MemoryStore::new()), clock),
        StateConfig::Store(store) => (store, clock),
        StateConfig::Redis(url) => {
            let failed = |source| AppError::Store {
                url: url.clone(),
                source,
            };
            let store = RedisStore::connect(&url).await.map_err(failed)?;
            let shared = store.shared_clock(clock).await.map_err(failed)?;
            (Arc::new(store), Arc::new(shared))
        }
    })
}

/// A running failmail: its addresses, what it keeps, its clock and scenario, and how to stop it.
pub struct RunningApp {
    addresses: Addresses,
    /// `None` once shut down.
    server: Option<RunningServer>,
    http: Option<JoinHandle<()>>,
    journal: Arc<Journal>,
    clock: SharedClock,
    reloader: Option<Reloader>,
    bounces: Arc<Bounces>,
    bounce_runner: Option<JoinHandle<()>>,
}

impl RunningApp {
    /// The later notifications: pending and sent.
    pub fn bounces(&self) -> &Arc<Bounces> {
        &self.bounces
    }

    /// Where it listens.
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// What happened: messages, events, metrics.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The accepted messages kept in memory.
    pub fn messages(&self) -> &Arc<MessageStore> {
        self.journal.messages()
    }

    /// The clock every time-based behaviour reads.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The live scenario and how to reload or replace it (`None` for the plain sink).
    pub fn scenario(&self) -> Option<&Reloader> {
        self.reloader.as_ref()
    }

    /// The SMTP server's control handle (policy and session settings for new sessions).
    pub fn control(&self) -> ServerControl {
        self.server().control()
    }

    /// How many SMTP connections are open now.
    pub fn open_connections(&self) -> usize {
        self.server().open_connections()
    }

    fn server(&self) -> &RunningServer {
        self.server
            .as_ref()
            .expect("a running app has its server until it is shut down")
    }

    /// Reloads the scenario file on `hangup` (SIGHUP) and whenever it changes, until the app
    /// stops; nothing when it serves no file.
    pub fn watch_scenario(
        &self,
        hangup: Option<tokio::signal::unix::Signal>,
        interval: Duration,
    ) -> Option<JoinHandle<()>> {
        let reloader = self.reloader.clone()?;
        reloader.options().path.as_ref()?;
        Some(tokio::spawn(reloader.watch(hangup, interval)))
    }

    /// Graceful shutdown: stop accepting, answer 421 to new commands, let messages being received
    /// finish within the grace period, then close whatever is left; the HTTP API stops with it.
    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        // The API's event streams ended with the drain; what is left is cut, as before.
        if let Some(http) = self.http.take() {
            http.abort();
            let _ = http.await;
        }
        if let Some(runner) = self.bounce_runner.take() {
            runner.abort();
        }
    }
}

impl Drop for RunningApp {
    /// Stops serving at once: the listeners close and open sessions end.
    fn drop(&mut self) {
        if let Some(http) = self.http.take() {
            http.abort();
        }
        if let Some(runner) = self.bounce_runner.take() {
            runner.abort();
        }
    }
}
