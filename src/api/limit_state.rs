//! What `GET /api/limits` shows of greylisting and sequences in progress: the triplets the
//! store remembers (still waiting, or passing now), and each sequence's attempts with the rule
//! it counts for and the step its next attempt gets. Both lists are bounded ([`LISTED`]) and
//! say when entries were left out.

use serde::Serialize;

use crate::limits::{keys, GreyEntry, SequenceEntry, StoreError};
use crate::scenario::engine::Engine;
use crate::scenario::rule::{Action, Outcome, LOSE_REPLY};

/// The most entries each list shows (the newest triplets, the busiest sequences).
pub(crate) const LISTED: usize = 1000;

/// One greylisting triplet.
#[derive(Serialize)]
pub(crate) struct GreyView {
    key: String,
    /// The client's /24 or /64; none when the key is of another form.
    network: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    first_seen_ms: u64,
    /// When a retry passes: `first_seen_ms` plus the live scenario's delay (none without
    /// `[greylisting]`).
    passes_at_ms: Option<u64>,
    /// Seconds from now until then (0 once it passes).
    passes_in_seconds: Option<f64>,
    /// When the triplet is forgotten: a retry after it is refused again, as new.
    expires_at_ms: Option<u64>,
}

impl GreyView {
    fn new(entry: GreyEntry, engine: &Engine, now_ms: u64) -> Self {
        let greylisting = engine.scenario().greylisting.as_ref();
        let after = |ms: u128| {
            entry
                .first_seen_ms
                .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX))
        };
        let passes_at_ms = greylisting.map(|g| after(g.delay.as_millis()));
        let parts = keys::split_greylist_key(&entry.key);
        Self {
            network: parts.as_ref().map(|p| p.network.to_owned()),
            sender: parts.as_ref().map(|p| p.sender.to_owned()),
            recipient: parts.as_ref().map(|p| p.recipient.to_owned()),
            first_seen_ms: entry.first_seen_ms,
            passes_at_ms,
            passes_in_seconds: passes_at_ms.map(|at| at.saturating_sub(now_ms) as f64 / 1000.0),
            expires_at_ms: greylisting.map(|g| after(g.retry_window.as_millis())),
            key: entry.key,
        }
    }
}

/// One sequence.
#[derive(Serialize)]
pub(crate) struct SequenceView {
    key: String,
    attempts: u64,
    /// The index of the rule it counts for.
    rule: Option<u32>,
    /// That rule in the live scenario, when it is a sequence there.
    rule_name: Option<String>,
    rule_at: Option<String>,
    /// Its steps, as the scenario names them.
    steps: Vec<String>,
    /// The step the next attempt gets (the last one repeats).
    next_step: Option<String>,
}

impl SequenceView {
    fn new(entry: SequenceEntry, engine: &Engine) -> Self {
        let rule = keys::sequence_rule(&entry.key);
        let sequence = rule
            .and_then(|index| engine.scenario().rules.get(index as usize))
            .and_then(|rule| match &rule.action {
                Action::Sequence(steps) => Some((rule, steps)),
                Action::Always(_) => None,
            });
        let steps: Vec<String> = sequence
            .map(|(_, steps)| steps.iter().map(step_name).collect())
            .unwrap_or_default();
        let next = usize::try_from(entry.attempts).unwrap_or(usize::MAX);
        Self {
            rule,
            rule_name: sequence.and_then(|(rule, _)| rule.name().map(str::to_owned)),
            rule_at: sequence.map(|(rule, _)| rule.reference.location()),
            next_step: steps.get(next.min(steps.len().saturating_sub(1))).cloned(),
            steps,
            key: entry.key,
            attempts: entry.attempts,
        }
    }
}

/// A step as a scenario writes it: a catalog name, a keyword, or an inline reply's code.
fn step_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Accept => "accept".to_owned(),
        Outcome::Disconnect => "disconnect".to_owned(),
        Outcome::Hang => "hang".to_owned(),
        Outcome::LoseReply => LOSE_REPLY.to_owned(),
        Outcome::Reply(spec) => spec
            .catalog_name()
            .map_or_else(|| spec.code().to_string(), str::to_owned),
        Outcome::Abort(spec) => format!(
            "abort {}",
            spec.catalog_name()
                .map_or_else(|| spec.code().to_string(), str::to_owned)
        ),
        Outcome::Later(_) => "later".to_owned(),
    }
}

/// Greylisting and sequences in progress, as `GET /api/limits` shows them.
#[derive(Serialize, Default)]
pub(crate) struct InProgress {
    /// The triplets remembered, the newest first (those older than the retry window, which
    /// a retry would start over, are left out).
    greylist: Vec<GreyView>,
    /// Whether more triplets than [`LISTED`] are remembered.
    greylist_truncated: bool,
    /// The sequences counted, the most attempts first.
    sequences: Vec<SequenceView>,
    /// Whether more sequences than [`LISTED`] are counted.
    sequences_truncated: bool,
}

/// Reads both lists from the engine's store.
pub(crate) async fn read(engine: &Engine, now_ms: u64) -> Result<InProgress, StoreError> {
    let since_ms = engine.scenario().greylisting.as_ref().map_or(0, |g| {
        now_ms.saturating_sub(u64::try_from(g.retry_window.as_millis()).unwrap_or(u64::MAX))
    });
    let store = engine.store();
    let greylist = store.greylist_entries(since_ms, LISTED).await?;
    let sequences = store.sequences(LISTED).await?;
    Ok(InProgress {
        greylist: greylist
            .entries
            .into_iter()
            .map(|entry| GreyView::new(entry, engine, now_ms))
            .collect(),
        greylist_truncated: greylist.truncated,
        sequences: sequences
            .entries
            .into_iter()
            .map(|entry| SequenceView::new(entry, engine))
            .collect(),
        sequences_truncated: sequences.truncated,
    })
}
