//! The reload history of a running server's scenario: when each scenario was loaded, from where,
//! and why a load failed (the old scenario then stayed live). Bounded: the latest
//! [`ReloadHistory::KEPT`] loads.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::error::ScenarioError;

/// One load of a scenario, successful or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadRecord {
    /// When, in ms since the epoch on the server's clock.
    pub at_ms: u64,
    /// What asked for it: `start`, `file` (a change of the file, SIGHUP or `POST
    /// /api/scenario/reload`) or `api` (`PUT /api/scenario`).
    pub trigger: &'static str,
    /// The scenario's origin: its file, or `<api>`.
    pub origin: String,
    /// Whether it went live.
    pub ok: bool,
    /// Its rule count, when it went live.
    pub rules: Option<usize>,
    /// Why it did not load: `origin:line:column: message`.
    pub error: Option<String>,
}

impl ReloadRecord {
    /// The record of a scenario with `rules` rules that went live.
    pub fn loaded(at_ms: u64, trigger: &'static str, origin: &str, rules: usize) -> Self {
        Self {
            at_ms,
            trigger,
            origin: origin.to_owned(),
            ok: true,
            rules: Some(rules),
            error: None,
        }
    }

    /// The record of a scenario that did not load.
    pub fn failed(at_ms: u64, trigger: &'static str, error: &ScenarioError) -> Self {
        Self {
            at_ms,
            trigger,
            origin: error.origin.clone(),
            ok: false,
            rules: None,
            error: Some(format!(
                "{}:{}:{}: {}",
                error.origin, error.line, error.column, error.message
            )),
        }
    }
}

/// The latest loads, newest last.
#[derive(Debug, Default)]
pub struct ReloadHistory {
    records: Mutex<VecDeque<ReloadRecord>>,
}

impl ReloadHistory {
    /// How many loads are kept.
    pub const KEPT: usize = 50;

    /// Adds a load, forgetting the oldest past [`Self::KEPT`].
    pub fn push(&self, record: ReloadRecord) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() >= Self::KEPT {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// The kept loads, newest first.
    pub fn list(&self) -> Vec<ReloadRecord> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_newest_first() {
        let history = ReloadHistory::default();
        for at in 0..(ReloadHistory::KEPT as u64 + 5) {
            history.push(ReloadRecord::loaded(at, "file", "s.toml", 1));
        }
        let list = history.list();
        assert_eq!(list.len(), ReloadHistory::KEPT);
        assert_eq!(list[0].at_ms, ReloadHistory::KEPT as u64 + 4);
        assert_eq!(list.last().unwrap().at_ms, 5);
    }

    #[test]
    fn a_failure_says_where() {
        let error = ScenarioError {
            origin: "s.toml".into(),
            line: 3,
            column: 7,
            message: "unknown key".into(),
            hint: None,
        };
        let record = ReloadRecord::failed(1, "file", &error);
        assert!(!record.ok);
        assert_eq!(record.error.as_deref(), Some("s.toml:3:7: unknown key"));
    }
}
