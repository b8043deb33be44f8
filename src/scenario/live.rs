//! The live scenario of a running server: building its policy, and reloading it on SIGHUP or
//! when its file changes. A file that fails to load is reported and the old scenario stays live.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info};

use super::compile::Scenario;
use super::engine::{Engine, ScenarioPolicy};
use super::error::ScenarioError;
use super::history::{ReloadHistory, ReloadRecord};
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
    /// Loads the scenario named by the options.
    pub fn load(&self) -> Result<Scenario, ScenarioError> {
        let mut scenario = match &self.path {
            Some(path) => Scenario::load(path)?,
            None => Scenario::builtin(),
        };
        self.prepare(&mut scenario);
        Ok(scenario)
    }

    /// Applies the command line to a loaded scenario: `--no-magic`, then the limits: the defaults
    /// where the scenario has no `[limits]` section, none at all under `--limits none`, then
    /// `--limits ovh`, `--limit-account` and `--limit-ip`, which replace the scenario's.
    fn prepare(&self, scenario: &mut Scenario) {
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
    history: Arc<ReloadHistory>,
}

impl Reloader {
    /// Loads the scenario `options` name and builds its policy and session settings, for the
    /// first [`Reloader::new`].
    pub fn first(options: &ScenarioOptions) -> Result<(Live, SessionConfig), ScenarioError> {
        let scenario = options.load()?;
        let source = read_source(options);
        let (policy, session) = options.build(scenario);
        let replaced = false;
        Ok((
            Live {
                policy,
                source,
                replaced,
            },
            session,
        ))
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
            history: Arc::new(history),
        }
    }

    /// The latest loads of a scenario (at start, reloads, replacements), newest first.
    pub fn history(&self) -> Vec<ReloadRecord> {
        self.history.list()
    }

    /// Records a load that `result` tells of.
    fn record(&self, trigger: &'static str, result: &Result<(), ScenarioError>) {
        let at_ms = self.options.clock.now_ms();
        self.history.push(match result {
            Ok(()) => {
                let live = self.live.load();
                let scenario = live.policy.engine().scenario();
                ReloadRecord::loaded(at_ms, trigger, &scenario.origin, scenario.rules.len())
            }
            Err(error) => ReloadRecord::failed(at_ms, trigger, error),
        });
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

    fn install(&self, scenario: Scenario, source: Option<String>, replaced: bool) {
        let rules = scenario.rules.len();
        let (policy, config) = self.options.build(scenario);
        self.target.install(Box::new(policy.clone()), config);
        self.live.store(Arc::new(Live {
            policy,
            source,
            replaced,
        }));
        info!(rules, "scenario loaded");
    }

    /// Loads the file again and makes it live for new sessions; on error the old one stays.
    pub fn reload(&self) -> Result<(), ScenarioError> {
        let result = self
            .options
            .load()
            .map(|scenario| self.install(scenario, read_source(&self.options), false));
        self.record("file", &result);
        result
    }

    /// Puts the command line's scenario (its file, or the built-in one) back if
    /// [`Reloader::replace`] replaced it (`POST /api/reset`); says whether it did. On error (the
    /// file no longer loads) the live one stays.
    pub fn restore(&self) -> Result<bool, ScenarioError> {
        if !self.live().replaced {
            return Ok(false);
        }
        self.reload()?;
        Ok(true)
    }

    /// Makes `text` the live scenario (checked first; on error the old one stays). The file on
    /// disk, if any, is not changed: a later change of the file replaces this again.
    pub fn replace(&self, origin: &str, text: &str) -> Result<(), ScenarioError> {
        let result = self
            .check(origin, text)
            .map(|scenario| self.install(scenario, Some(text.to_owned()), true));
        self.record("api", &result);
        result
    }

    /// Compiles `text` as [`Reloader::replace`] would, without making it live: the first error
    /// with its line and column, or the scenario.
    pub fn check(&self, origin: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario = Scenario::parse(origin, text)?;
        self.options.prepare(&mut scenario);
        Ok(scenario)
    }

    /// Reloads on `hangup` (SIGHUP, installed by the caller before it announces readiness) and
    /// whenever the file's size or modification time changes (checked every `interval`).
    pub async fn watch(self, mut hangup: Option<tokio::signal::unix::Signal>, interval: Duration) {
        let mut seen = self.fingerprint();
        let mut ticker = tokio::time::interval(interval);
        loop {
            let by_signal = tokio::select! {
                _ = ticker.tick() => false,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            let now = self.fingerprint();
            if by_signal || now != seen {
                seen = now;
                if let Err(e) = self.reload() {
                    error!("scenario not reloaded, the previous one stays live:\n{e}");
                }
            }
        }
    }

    fn fingerprint(&self) -> Option<(u64, SystemTime)> {
        let metadata = std::fs::metadata(self.options.path.as_ref()?).ok()?;
        Some((metadata.len(), metadata.modified().ok()?))
    }
}

fn read_source(options: &ScenarioOptions) -> Option<String> {
    options
        .path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
}
