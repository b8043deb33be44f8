//! The composition root: the one place that builds the pieces of a running failmail and wires
//! them together.
//!
//! [`App::start`] builds, once each and in this order, the clock, the limit store, the journal
//! (with the attempt history), the scenario's policy, the SMTP server, the scenario reloader (which reaches the server only
//! through [`PolicyTarget`]) and the HTTP API. Nothing else assembles pieces: `main`,
//! `testing::TestServer` and the test helpers all start through here, so that every way
//! of running failmail is wired the same way, with one clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
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
}

/// Where limit, greylist and sequence state lives.
#[derive(Debug, Clone, Default)]
pub enum StateConfig {
    /// In this process's memory.
    #[default]
    Memory,
    /// In the Redis server at this `redis://` URL, shared by every instance that uses it.
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
}

/// Everything a running failmail is built from: the one configuration tree.
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
    /// The clock every time-based behaviour reads and every event is stamped with.
    pub clock: SharedClock,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            session: SessionConfig::default(),
            journal: JournalConfig::default(),
            attempts: AttemptsConfig::default(),
            http: Some(HttpConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 8025)),
                token: None,
            }),
            scenario: Some(ScenarioConfig::default()),
            state: StateConfig::default(),
            clock: Arc::new(OffsetClock::new()),
        }
    }
}

impl AppConfig {
    /// Every listener (SMTP, SMTPS, HTTP) on 127.0.0.1 port 0, the built-in scenario: for tests.
    pub fn loopback() -> Self {
        Self {
            server: ServerConfig::loopback(),
            http: Some(HttpConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: None,
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

/// The addresses a running failmail actually listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// SMTP with STARTTLS.
    pub smtp: SocketAddr,
    /// SMTPS (implicit TLS).
    pub smtps: Option<SocketAddr>,
    /// HTTP.
    pub http: Option<SocketAddr>,
}

impl Addresses {
    /// The one line printed on start: `failmail ready smtp=… smtps=… http=…`.
    pub fn ready_line(&self) -> String {
        let mut line = format!("failmail ready smtp={}", self.smtp);
        if let Some(addr) = self.smtps {
            line.push_str(&format!(" smtps={addr}"));
        }
        if let Some(addr) = self.http {
            line.push_str(&format!(" http={addr}"));
        }
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
        let clock = config.clock;
        let store = open_store(config.state).await?;
        let journal = Arc::new(Journal::open(&config.journal)?.with_attempts(&config.attempts));
        let (policy, session, scenario) = match config.scenario {
            None => (Box::new(AcceptAll) as Box<dyn Policy>, config.session, None),
            Some(scenario) => {
                let options = ScenarioOptions {
                    path: scenario.path,
                    seed: scenario.seed,
                    no_magic: scenario.no_magic,
                    limits: scenario.limits,
                    clock: clock.clone(),
                    base: config.session,
                    store,
                };
                let (live, session) = Reloader::first(&options)?;
                let policy = Box::new(live.policy.clone()) as Box<dyn Policy>;
                (policy, session, Some((options, live)))
            }
        };
        let server = Server::start(
            config.server,
            session,
            policy,
            journal.clone(),
            clock.clone(),
        )
        .await?;
        let reloader = scenario
            .map(|(options, live)| Reloader::new(options, Arc::new(server.control()), live));
        let listening = server.listening();
        let mut addresses = Addresses {
            smtp: listening.smtp,
            smtps: listening.smtps,
            http: None,
        };
        let http = match config.http {
            Some(http) => {
                let listener =
                    TcpListener::bind(http.addr)
                        .await
                        .map_err(|source| AppError::HttpBind {
                            addr: http.addr,
                            source,
                        })?;
                addresses.http = listener.local_addr().ok();
                let state = ApiState {
                    journal: journal.clone(),
                    clock: clock.clone(),
                    scenario: reloader.clone(),
                };
                let token = http.token.as_deref().map(Arc::<str>::from);
                Some(tokio::spawn(api::serve_with_token(
                    listener,
                    state,
                    token,
                    server.shutdown_signal(),
                )))
            }
            None => None,
        };
        Ok(RunningApp {
            addresses,
            server: Some(server),
            http,
            journal,
            clock,
            reloader,
        })
    }
}

async fn open_store(state: StateConfig) -> Result<Arc<dyn LimitStore>, AppError> {
    Ok(match state {
        StateConfig::Memory => Arc::new(MemoryStore::new()),
        StateConfig::Store(store) => store,
        StateConfig::Redis(url) => Arc::new(
            RedisStore::connect(&url)
                .await
                .map_err(|source| AppError::Store { url, source })?,
        ),
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
}

impl RunningApp {
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
    }
}

impl Drop for RunningApp {
    /// Stops serving at once: the listeners close and open sessions end.
    fn drop(&mut self) {
        if let Some(http) = self.http.take() {
            http.abort();
        }
    }
}
