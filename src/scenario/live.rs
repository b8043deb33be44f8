//! The live scenario of a running server: building its policy, and reloading it on SIGHUP or
//! when its file changes. A file that fails to load is reported and the old scenario stays live.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info};

use super::compile::{Scenario, ScenarioError};
use super::engine::{Engine, ScenarioPolicy};
use crate::clock::Clock;
use crate::server::ServerControl;
use crate::smtp::session::SessionConfig;

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
    pub clock: Arc<dyn Clock>,
    /// The command line's session settings, which `[server]` may override.
    pub base: SessionConfig,
}

impl ScenarioOptions {
    /// Loads the scenario named by the options.
    pub fn load(&self) -> Result<Scenario, ScenarioError> {
        let mut scenario = match &self.path {
            Some(path) => Scenario::load(path)?,
            None => Scenario::builtin(),
        };
        if self.no_magic {
            scenario.server.magic_addresses = false;
        }
        Ok(scenario)
    }

    /// The policy and session settings for a loaded scenario.
    pub fn build(&self, scenario: Scenario) -> (ScenarioPolicy, SessionConfig) {
        let config = scenario.session_config(&self.base);
        let engine = Engine::new(
            Arc::new(scenario),
            self.clock.clone(),
            self.seed,
            config.hostname.clone(),
        );
        (ScenarioPolicy::new(Arc::new(engine)), config)
    }
}

/// Reloads the scenario of a running server.
#[derive(Clone)]
pub struct Reloader {
    options: ScenarioOptions,
    control: ServerControl,
}

impl Reloader {
    /// A reloader for the server behind `control`.
    pub fn new(options: ScenarioOptions, control: ServerControl) -> Self {
        Self { options, control }
    }

    /// Loads the file again and makes it live for new sessions; on error the old one stays.
    pub fn reload(&self) -> Result<(), ScenarioError> {
        let scenario = self.options.load()?;
        let rules = scenario.rules.len();
        let (policy, config) = self.options.build(scenario);
        self.control.set_session_config(config);
        self.control.set_policy(Box::new(policy));
        info!(rules, "scenario loaded");
        Ok(())
    }

    /// Reloads on SIGHUP and whenever the file's size or modification time changes (checked
    /// every `interval`). Runs until the task is dropped.
    pub async fn watch(self, interval: Duration) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                error!(%e, "cannot watch SIGHUP; reload by file change only");
                None
            }
        };
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
