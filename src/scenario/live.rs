//! The live scenario of a running server: building its policy, and reloading it on SIGHUP or
//! when its file changes. A file that fails to load is reported and the old scenario stays live.
//!
//! Reloads from the server's own tasks ([`Reloader::reload_file`], [`Reloader::replace_text`]:
//! the file watcher, SIGHUP and the HTTP API) read and compile on a blocking thread and swap the
//! result in when it is ready, so that sessions and the API go on meanwhile, however large the
//! scenario; the old scenario is also freed off the event loop. They run one at a time, in the
//! order they were asked for.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info};

use super::compile::Scenario;
use super::engine::{Engine, ScenarioPolicy};
use super::error::ScenarioError;
use super::history::{ReloadHistory, ReloadRecord};
use super::source::{self, ReadGate};
use crate::clock::{OffsetClock, SharedClock};
use crate::limits::memory::MemoryStore;
use crate::limits::{LimitOverrides, LimitStore};
use crate::smtp::policy::Policy;
use crate::smtp::session::SessionConfig;
use arc_swap::ArcSwap;

/// How scenarios are turned into policies for this server.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// The scenario file; `None` serves the built-in scenario (magic addresses only).
    pub path: Option<PathBuf>,
    /// Seed for every `probability`.
    pub seed: u64,
    /// Turn magic addresses off whatever the file says.
    pub no_magic: bool,
    /// The clock rules read.
    pub clock: SharedClock,
    /// The command line's session settings, which `[server]` may override.
    pub base: SessionConfig,
    /// Where limits, greylisting and sequence attempts live.
    pub store: Arc<dyn LimitStore>,
    /// Limits from the command line; they replace the file's `per_account` / `per_ip`.
    pub limits: LimitOverrides,
    /// Limits for a scenario that has no `[limits]` section (`failmail serve`: OVHcloud's).
    pub default_limits: LimitOverrides,
    /// `--limits none`: no per-account or per-IP limit, whatever the scenario says (`limits` may
    /// still set some).
    pub no_limits: bool,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        Self {
            path: None,
            seed: 0,
            no_magic: false,
            clock: Arc::new(OffsetClock::new()),
            base: SessionConfig::default(),
            store: Arc::new(MemoryStore::new()),
            limits: LimitOverrides::default(),
            default_limits: LimitOverrides::default(),
            no_limits: false,
        }
    }
}

impl ScenarioOptions {
    /// Loads the scenario named by the options (the file is read once); returns it with the
    /// text it came from.
    pub fn load(&self) -> Result<(Scenario, Option<String>), ScenarioError> {
        match &self.path {
            Some(path) => {
                let text = source::read_file(path)?;
                let scenario = self.parse(&path.display().to_string(), &text)?;
                Ok((scenario, Some(text)))
            }
            None => Ok((self.adjust(Scenario::builtin()), None)),
        }
    }

    /// Checks and compiles `text` (named `origin` in errors), with the command line's settings.
    pub fn parse(&self, origin: &str, text: &str) -> Result<Scenario, ScenarioError> {
        Ok(self.adjust(Scenario::parse(origin, text)?))
    }

    /// Applies the command line to a loaded scenario: `--no-magic`, then the limits: the defaults
    /// where the scenario has no `[limits]` section, none at all under `--limits none`, then
    /// `--limits ovh`, `--limit-account` and `--limit-ip`, which replace the scenario's.
    fn adjust(&self, mut scenario: Scenario) -> Scenario {
        if self.no_magic {
            scenario.server.magic_addresses = false;
        }
        if self.no_limits {
            if let Some(limits) = &mut scenario.limits {
                limits.per_account = None;
                limits.per_ip = None;
            }
        } else if scenario.limits.is_none() {
            scenario.apply_overrides(&self.default_limits);
        }
        scenario.apply_overrides(&self.limits);
        scenario
    }

    /// The policy and session settings for a loaded scenario.
    pub fn build(&self, scenario: Scenario) -> (ScenarioPolicy, SessionConfig) {
        let config = scenario.session_config(&self.base);
        let engine = Engine::new(
            Arc::new(scenario),
            self.clock.clone(),
            self.store.clone(),
            self.seed,
            config.hostname.clone(),
        );
        (ScenarioPolicy::new(Arc::new(engine)), config)
    }

    /// Compiles `text` and builds its policy: the work of a reload, done on a blocking thread.
    /// `replaced`: it comes from the API rather than the command line's file.
    fn prepare(
        &self,
        origin: &str,
        text: String,
        replaced: bool,
    ) -> Result<Prepared, ScenarioError> {
        let scenario = self.parse(origin, &text)?;
        Ok(self.prepared(scenario, Some(text), replaced))
    }

    /// A compiled scenario built into its policy.
    fn prepared(&self, scenario: Scenario, source: Option<String>, replaced: bool) -> Prepared {
        let rules = scenario.rules.len();
        let (policy, session) = self.build(scenario);
        Prepared {
            live: Live {
                policy,
                source,
                replaced,
            },
            session,
            rules,
        }
    }
}

/// A scenario compiled and built, ready to go live.
struct Prepared {
    live: Live,
    session: SessionConfig,
    rules: usize,
}

/// The scenario live on a server right now: its policy and the text it came from.
#[derive(Clone)]
pub struct Live {
    /// The policy (its engine holds rule state; its store holds limits).
    pub policy: ScenarioPolicy,
    /// The scenario's TOML text, when it came from a file or the API.
    pub source: Option<String>,
    /// Made live by [`Reloader::replace`] (the API, a test) rather than loaded from the command
    /// line's file or the built-in scenario: [`Reloader::restore`] puts that one back.
    pub replaced: bool,
}

/// Where a reloaded scenario goes live: the server's sessions read it. The composition root
/// (`app`) gives the reloader the server's handle through this, so that scenarios never
/// depend on the server.
pub trait PolicyTarget: Send + Sync {
    /// Makes `policy` and `session` the ones new sessions get; sessions in progress go on.
    fn install(&self, policy: Box<dyn Policy>, session: SessionConfig);
}

/// Reloads and replaces the scenario of a running server, and knows which one is live.
#[derive(Clone)]
pub struct Reloader {
    options: ScenarioOptions,
    target: Arc<dyn PolicyTarget>,
    live: Arc<ArcSwap<Live>>,
    /// One reload at a time, in the order asked (a later one never loses to an earlier one).
    turn: Arc<tokio::sync::Mutex<()>>,
    /// One read of the file at a time, even when a read hangs past its time limit.
    reading: ReadGate,
    history: Arc<ReloadHistory>,
}

impl Reloader {
    /// Loads the scenario `options` name and builds its policy and session settings, for the
    /// first [`Reloader::new`].
    pub fn first(options: &ScenarioOptions) -> Result<(Live, SessionConfig), ScenarioError> {
        let (scenario, source) = options.load()?;
        let Prepared { live, session, .. } = options.prepared(scenario, source, false);
        Ok((live, session))
    }

    /// A reloader for the server behind `target`, where `live` is already installed.
    pub fn new(options: ScenarioOptions, target: Arc<dyn PolicyTarget>, live: Live) -> Self {
        let history = ReloadHistory::default();
        let scenario = live.policy.engine().scenario();
        history.push(ReloadRecord::loaded(
            options.clock.now_ms(),
            "start",
            &scenario.origin,
            scenario.rules.len(),
        ));
        Self {
            options,
            target,
            live: Arc::new(ArcSwap::from_pointee(live)),
            turn: Arc::default(),
            reading: ReadGate::default(),
            history: Arc::new(history),
        }
    }

    /// The latest loads of a scenario (at start, reloads, replacements), newest first.
    pub fn history(&self) -> Vec<ReloadRecord> {
        self.history.list()
    }

    /// Records a load that `result` tells of, and passes it on.
    fn record(
        &self,
        trigger: &'static str,
        result: Result<(), ScenarioError>,
    ) -> Result<(), ScenarioError> {
        let at_ms = self.options.clock.now_ms();
        self.history.push(match &result {
            Ok(()) => {
                let live = self.live.load();
                let scenario = live.policy.engine().scenario();
                ReloadRecord::loaded(at_ms, trigger, &scenario.origin, scenario.rules.len())
            }
            Err(error) => ReloadRecord::failed(at_ms, trigger, error),
        });
        result
    }

    /// The scenario live now (for new sessions).
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// The engine of the live scenario: its limits, rule state and store.
    pub fn engine(&self) -> Arc<Engine> {
        self.live.load().policy.engine().clone()
    }

    /// What scenarios are built from: the file, the seed, the limits from the command line.
    pub fn options(&self) -> &ScenarioOptions {
        &self.options
    }

    /// Makes `prepared` live for new sessions; the old scenario is freed off the event loop.
    fn install(&self, prepared: Prepared) {
        let Prepared {
            live,
            session,
            rules,
        } = prepared;
        self.target.install(Box::new(live.policy.clone()), session);
        let old = self.live.swap(Arc::new(live));
        info!(rules, "scenario loaded");
        // The last reference to a large scenario takes a while to free: not on the event loop.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop(old));
        }
    }

    /// Loads the file again on this thread and makes it live for new sessions; on error the
    /// old one stays. From the server's own tasks, use [`Reloader::reload_file`].
    pub fn reload(&self) -> Result<(), ScenarioError> {
        let result = self.options.load().map(|(scenario, source)| {
            self.install(self.options.prepared(scenario, source, false));
        });
        self.record("file", result)
    }

    /// Puts the command line's scenario (its file, or the built-in one) back if
    /// [`Reloader::replace`] replaced it (`POST /api/reset`); says whether it did. On error (the
    /// file no longer loads) the live one stays.
    pub async fn restore(&self) -> Result<bool, ScenarioError> {
        if !self.live().replaced {
            return Ok(false);
        }
        self.reload_file().await?;
        Ok(true)
    }

    /// Makes `text` the live scenario, compiled on this thread (checked first; on error the old
    /// one stays). The file on disk, if any, is not changed: a later change of the file replaces
    /// this again. From the server's own tasks, use [`Reloader::replace_text`].
    pub fn replace(&self, origin: &str, text: &str) -> Result<(), ScenarioError> {
        let result = self
            .options
            .prepare(origin, text.to_owned(), true)
            .map(|prepared| self.install(prepared));
        self.record("api", result)
    }

    /// Compiles `text` as [`Reloader::replace`] would, on a blocking thread, without making it
    /// live: the first error with its line and column, or the scenario.
    pub async fn check(&self, origin: &str, text: String) -> Result<Scenario, ScenarioError> {
        let options = self.options.clone();
        let origin = origin.to_owned();
        tokio::task::spawn_blocking(move || options.parse(&origin, &text))
            .await
            .map_err(compile_failed)?
    }

    /// Like [`Reloader::reload`], without blocking the caller's thread: the file is read (once,
    /// within [`source::READ_LIMIT`]) and compiled on a blocking thread, then swapped in.
    pub async fn reload_file(&self) -> Result<(), ScenarioError> {
        let _turn = self.turn.lock().await;
        let Some(path) = self.options.path.clone() else {
            return self.reload();
        };
        let origin = path.display().to_string();
        let result = match self.reading.read(path, source::READ_LIMIT).await {
            Ok(text) => self.prepare_and_install(origin, text, false).await,
            Err(error) => Err(error),
        };
        self.record("file", result)
    }

    /// Like [`Reloader::replace`], without blocking the caller's thread: `text` is compiled on
    /// a blocking thread, then swapped in.
    pub async fn replace_text(&self, origin: &str, text: String) -> Result<(), ScenarioError> {
        let _turn = self.turn.lock().await;
        let result = self
            .prepare_and_install(origin.to_owned(), text, true)
            .await;
        self.record("api", result)
    }

    async fn prepare_and_install(
        &self,
        origin: String,
        text: String,
        replaced: bool,
    ) -> Result<(), ScenarioError> {
        let options = self.options.clone();
        let prepared =
            tokio::task::spawn_blocking(move || options.prepare(&origin, text, replaced))
                .await
                .map_err(compile_failed)??;
        self.install(prepared);
        Ok(())
    }

    /// Reloads on `hangup` (SIGHUP, installed by the caller before it announces readiness) and
    /// whenever the file's size or modification time changes (checked every `interval`).
    pub async fn watch(self, mut hangup: Option<tokio::signal::unix::Signal>, interval: Duration) {
        let mut seen = self.fingerprint().await;
        let mut ticker = tokio::time::interval(interval);
        loop {
            let by_signal = tokio::select! {
                _ = ticker.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let now = self.fingerprint().await;
            if by_signal || now != seen {
                seen = now;
                if let Err(e) = self.reload_file().await {
                    error!("scenario not reloaded, the previous one stays live:\n{e}");
                }
            }
        }
    }

    /// The file's size and modification time (read off the event loop).
    async fn fingerprint(&self) -> Option<(u64, SystemTime)> {
        let metadata = tokio::fs::metadata(self.options.path.as_ref()?)
            .await
            .ok()?;
        Some((metadata.len(), metadata.modified().ok()?))
    }
}

/// The error of a compile whose thread failed.
fn compile_failed(join: tokio::task::JoinError) -> ScenarioError {
    ScenarioError {
        origin: "<reload>".to_owned(),
        line: 1,
        column: 1,
        message: format!("the scenario could not be compiled: {join}"),
        hint: None,
    }
}
