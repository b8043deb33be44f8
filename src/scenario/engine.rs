//! The scenario policy: evaluates the compiled rules, magic addresses, sequences and chances.
//!
//! Evaluation allocates nothing unless a failure reply has placeholders to fill. Rule state (how
//! often a rule acted, which attempt of a triplet this is) lives here, per loaded scenario.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::catalog::{Catalog, ReplyContext};
use super::compile::{Action, Outcome, ReplySpec, Rule, Scenario};
use super::flavor::Flavor;
use crate::clock::Clock;
use crate::policy::{Answer, Decision, Phase, Policy, SessionPolicy, SessionView, Verdict};
use crate::smtp::queue_id::mix;
use crate::smtp::reply::{EnhancedStatus, Reply};
use crate::smtp::session::SessionConfig;

const ATTEMPT_SHARDS: usize = 64;
/// Triplets remembered per shard before the shard is forgotten (bounded memory under load).
const ATTEMPTS_PER_SHARD: usize = 65_536;

/// Per (rule, client IP, sender, recipient) attempt counters, sharded so that no lock is global.
#[derive(Debug)]
pub struct Attempts {
    shards: Vec<Mutex<HashMap<u64, u32>>>,
}

impl Default for Attempts {
    fn default() -> Self {
        Self {
            shards: (0..ATTEMPT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }
}

impl Attempts {
    /// Counts one attempt of `key`; returns how many came before it.
    pub fn bump(&self, key: u64) -> u32 {
        let mut shard = self.shards[(key % ATTEMPT_SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if shard.len() >= ATTEMPTS_PER_SHARD && !shard.contains_key(&key) {
            shard.clear();
        }
        let count = shard.entry(key).or_insert(0);
        let before = *count;
        *count = count.saturating_add(1);
        before
    }

    /// Forgets every attempt.
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

#[derive(Debug, Default)]
struct RuleCounters {
    acted: AtomicU64,
    rolls: AtomicU64,
}

/// Everything shared by the sessions of one loaded scenario.
#[derive(Debug)]
pub struct Engine {
    scenario: Arc<Scenario>,
    clock: Arc<dyn Clock>,
    seed: u64,
    hostname: String,
    counters: Vec<RuleCounters>,
    attempts: Attempts,
}

impl Engine {
    /// Prepares `scenario` for evaluation. `seed` drives every `probability`.
    pub fn new(
        scenario: Arc<Scenario>,
        clock: Arc<dyn Clock>,
        seed: u64,
        hostname: String,
    ) -> Self {
        let counters = scenario
            .rules
            .iter()
            .map(|_| RuleCounters::default())
            .collect();
        Self {
            scenario,
            clock,
            seed,
            hostname,
            counters,
            attempts: Attempts::default(),
        }
    }

    /// The scenario being evaluated.
    pub fn scenario(&self) -> &Arc<Scenario> {
        &self.scenario
    }

    /// Forgets rule counters and sequence attempts (test isolation).
    pub fn reset(&self) {
        for counter in &self.counters {
            counter.acted.store(0, Ordering::SeqCst);
            counter.rolls.store(0, Ordering::SeqCst);
        }
        self.attempts.clear();
    }

    /// Decides a phase: the first rule that matches and acts, else a magic address, else accept.
    pub fn decide(&self, phase: Phase, view: &SessionView<'_>, ip: &str) -> Decision {
        for rule in self.scenario.rules_at(phase) {
            if !matches(rule, phase, view) {
                continue;
            }
            let counters = &self.counters[rule.index as usize];
            if let Some(probability) = rule.probability {
                let roll = counters.rolls.fetch_add(1, Ordering::Relaxed);
                let draw =
                    mix(self.seed ^ mix(u64::from(rule.index)) ^ mix(roll.wrapping_add(0x5EED)));
                if unit(draw) >= probability {
                    continue;
                }
            }
            if let Some(times) = rule.times {
                if counters.acted.fetch_add(1, Ordering::Relaxed) >= times {
                    continue;
                }
            }
            let outcome = match &rule.action {
                Action::Always(outcome) => outcome,
                Action::Sequence(steps) => {
                    let attempt = self.attempts.bump(triplet_key(rule.index, view));
                    &steps[(attempt as usize).min(steps.len() - 1)]
                }
            };
            let mut decision = self.outcome(outcome, view, ip);
            decision.delay = rule.delay;
            decision.rule = Some(rule.index);
            return decision;
        }
        if self.scenario.server.magic_addresses {
            if let Some(decision) = self.magic(phase, view, ip) {
                return decision;
            }
        }
        Decision::CONTINUE
    }

    fn outcome(&self, outcome: &Outcome, view: &SessionView<'_>, ip: &str) -> Decision {
        match outcome {
            Outcome::Accept => Decision::CONTINUE,
            Outcome::Disconnect => Decision {
                verdict: Verdict::Disconnect,
                ..Decision::CONTINUE
            },
            Outcome::Hang => Decision {
                verdict: Verdict::Hang,
                ..Decision::CONTINUE
            },
            Outcome::Reply(spec) => Decision {
                verdict: Verdict::Reply(self.render(spec, view, ip)),
                catalog: spec.catalog_name(),
                ..Decision::CONTINUE
            },
            Outcome::Abort(spec) => Decision {
                verdict: Verdict::Abort(self.render(spec, view, ip)),
                catalog: spec.catalog_name(),
                ..Decision::CONTINUE
            },
        }
    }

    /// Renders a reply for this session.
    pub fn render(&self, spec: &ReplySpec, view: &SessionView<'_>, ip: &str) -> Reply {
        match spec {
            ReplySpec::Inline(reply) => reply.clone(),
            ReplySpec::Catalog { entry, flavor } => {
                let (variant, used) = entry.variant(*flavor);
                variant.render(
                    used,
                    &ReplyContext {
                        rcpt: view.rcpt,
                        sender: view.mail_from,
                        ip: Some(ip),
                        host: &self.hostname,
                        helo: view.helo,
                        session_id: view.session_id,
                        now_unix_ms: self.clock.now_ms(),
                    },
                )
            }
        }
    }

    /// `user_unknown@…`, `user_unknown+gmail@…` and `550-5.1.1@…` recipients.
    fn magic(&self, phase: Phase, view: &SessionView<'_>, ip: &str) -> Option<Decision> {
        let found = match phase {
            Phase::Rcpt => view
                .rcpt
                .and_then(|rcpt| magic_address(rcpt, self.scenario.server.flavor))
                .filter(|m| m.phase == Phase::Rcpt),
            Phase::Data | Phase::DataEnd => view.recipients.iter().find_map(|rcpt| {
                magic_address(rcpt, self.scenario.server.flavor).filter(|m| m.phase == phase)
            }),
            _ => None,
        }?;
        Some(self.outcome(&Outcome::Reply(found.spec), view, ip))
    }
}

/// What a magic address asks for.
#[derive(Debug, Clone)]
pub struct Magic {
    /// The reply.
    pub spec: ReplySpec,
    /// Where it is given: rcpt, or data / data_end for failures that belong there.
    pub phase: Phase,
}

/// Reads a magic address: a catalog name (optionally `+flavor`) or `CODE-X.Y.Z` as local part.
pub fn magic_address(address: &str, default_flavor: Flavor) -> Option<Magic> {
    let at = address.rfind('@')?;
    let local = &address[..at];
    let (name, flavor) = match local.split_once('+') {
        Some((name, flavor)) => (name, flavor.parse().ok()?),
        None => (local, default_flavor),
    };
    let catalog = Catalog::builtin();
    if let Some(entry) = catalog.get_ignore_case(name) {
        let phase = if entry.phase >= Phase::Data {
            entry.phase
        } else {
            Phase::Rcpt
        };
        return Some(Magic {
            spec: ReplySpec::Catalog { entry, flavor },
            phase,
        });
    }
    let (code, status) = name.split_once('-')?;
    let code: u16 = code.parse().ok().filter(|c| (400..600).contains(c))?;
    let status = EnhancedStatus::parse(status).filter(|s| u16::from(s.class) == code / 100)?;
    let text = catalog
        .by_code(code, Some(status))
        .map(|e| e.variant(Flavor::Generic).0.text.join(" "))
        .filter(|t| !t.contains('{'))
        .unwrap_or_else(|| "Requested action not taken".to_owned());
    let reply = Reply::new(code, Some(status), &[text]).ok()?;
    Some(Magic {
        spec: ReplySpec::Inline(reply),
        phase: Phase::Rcpt,
    })
}

fn matches(rule: &Rule, phase: Phase, view: &SessionView<'_>) -> bool {
    let m = &rule.matchers;
    if let Some(blocks) = &m.client_ip {
        let ip = view.peer.ip();
        if !blocks.iter().any(|b| b.contains(ip)) {
            return false;
        }
    }
    let text = |patterns: &Option<super::pattern::PatternList>, value: Option<&str>| match patterns
    {
        None => true,
        Some(list) => value.is_some_and(|v| list.matches(v)),
    };
    if !text(&m.helo, view.helo)
        || !text(&m.auth_user, view.auth_user)
        || !text(&m.mail_from, view.mail_from)
    {
        return false;
    }
    match &m.rcpt {
        None => true,
        Some(list) if phase == Phase::Rcpt => view.rcpt.is_some_and(|r| list.matches(r)),
        Some(list) => view.recipients.iter().any(|r| list.matches(r)),
    }
}

fn triplet_key(rule: u32, view: &SessionView<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    rule.hash(&mut hasher);
    view.peer.ip().hash(&mut hasher);
    view.mail_from
        .unwrap_or("")
        .to_ascii_lowercase()
        .hash(&mut hasher);
    view.rcpt
        .unwrap_or("")
        .to_ascii_lowercase()
        .hash(&mut hasher);
    hasher.finish()
}

/// A uniform draw in [0, 1) from 64 random bits.
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The policy of a loaded scenario.
#[derive(Debug, Clone)]
pub struct ScenarioPolicy {
    engine: Arc<Engine>,
}

impl ScenarioPolicy {
    /// A policy evaluating `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// The engine, for state resets and inspection.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl Policy for ScenarioPolicy {
    fn open(&self, peer: SocketAddr) -> Box<dyn SessionPolicy> {
        Box::new(ScenarioSession {
            engine: self.engine.clone(),
            ip: peer.ip().to_string(),
        })
    }
}

struct ScenarioSession {
    engine: Arc<Engine>,
    ip: String,
}

impl SessionPolicy for ScenarioSession {
    fn decide<'a>(&'a mut self, phase: Phase, view: &'a SessionView<'a>) -> Answer<'a> {
        Answer::Ready(self.engine.decide(phase, view, &self.ip))
    }
}

impl Scenario {
    /// What sessions are told under this scenario, starting from the command line's settings.
    pub fn session_config(&self, base: &SessionConfig) -> SessionConfig {
        let server = &self.server;
        let mut config = base.clone();
        if let Some(hostname) = &server.hostname {
            config.hostname = hostname.clone();
        }
        if let Some(greeting) = &server.greeting {
            config.banner = greeting.clone();
        }
        if let Some(size) = server.max_message_size {
            config.max_message_size = size;
        }
        if let Some(count) = server.max_recipients {
            config.max_recipients = count;
        }
        if let Some(auth) = server.auth {
            config.auth = auth;
        }
        config.accepted = Catalog::builtin().accepted(server.flavor).reply.clone();
        config
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
