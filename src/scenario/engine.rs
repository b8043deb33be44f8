//! The scenario policy: evaluates the compiled rules, magic addresses, sequences and chances.
//!
//! Evaluation allocates nothing unless a failure reply has placeholders to fill. Rule state (how
//! often a rule acted, which attempt of a triplet this is) lives here, per loaded scenario.

use std::future::Future;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use super::catalog::{Catalog, ReplyContext};
use super::compile::Scenario;
use super::flavor::Flavor;
use super::magic::{loses_reply, magic_address_in};
use super::receiving;
use super::rule::{Action, Outcome, ReplySpec, Rule};
use super::settings::LimitSettings;
use crate::clock::Clock;
use crate::eventual::Eventual;
use crate::limits::{keys, Count, Greylist, LimitCheck, LimitStore, Reserve, StoreError, Usage};
use crate::smtp::policy::{
    Answer, Connected, Decision, Phase, Policy, SessionPolicy, SessionView, Verdict,
};
use crate::smtp::queue_id::mix;
use crate::smtp::reply::{EnhancedStatus, Reply};
use crate::smtp::session::SessionConfig;

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
    store: Arc<dyn LimitStore>,
    seed: u64,
    hostname: String,
    counters: Vec<RuleCounters>,
    tokens: AtomicU64,
}

impl Engine {
    /// Prepares `scenario` for evaluation. `seed` drives every `probability`; `store` holds
    /// limits, greylisting and sequence attempts.
    pub fn new(
        scenario: Arc<Scenario>,
        clock: Arc<dyn Clock>,
        store: Arc<dyn LimitStore>,
        seed: u64,
        hostname: String,
    ) -> Self {
        let counters = scenario
            .rules
            .iter()
            .map(|_| RuleCounters::default())
            .collect();
        // Reservation tokens must not collide between instances sharing one Redis, even in one
        // process with one clock: the salt comes from the randomly keyed std hasher.
        let salt = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self {
            scenario,
            clock,
            store,
            seed,
            hostname,
            counters,
            tokens: AtomicU64::new(salt),
        }
    }

    /// The scenario being evaluated.
    pub fn scenario(&self) -> &Arc<Scenario> {
        &self.scenario
    }

    /// The clock rules and limits read.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The store of limits, greylisting and sequences.
    pub fn store(&self) -> &Arc<dyn LimitStore> {
        &self.store
    }

    /// The current use of every limit key, each over its own window.
    pub async fn usage(&self) -> Result<Vec<Usage>, StoreError> {
        let Some(limits) = &self.scenario.limits else {
            return Ok(Vec::new());
        };
        let now = self.clock.reading();
        let mut all = Vec::new();
        for (prefix, window) in [
            (keys::ACCOUNT_PREFIX, limits.per_account),
            (keys::IP_PREFIX, limits.per_ip),
            (keys::RECIPIENT_PREFIX, limits.per_recipient),
            (keys::RECIPIENT_DOMAIN_PREFIX, limits.per_recipient_domain),
        ] {
            if let Some(window) = window {
                all.extend(self.store.usage(now, prefix, window.per).await?);
            }
        }
        Ok(all)
    }

    /// Forgets rule counters, sequence attempts, limit uses and greylisting (test isolation).
    pub async fn reset(&self) -> Result<(), StoreError> {
        for counter in &self.counters {
            counter.acted.store(0, Ordering::SeqCst);
            counter.rolls.store(0, Ordering::SeqCst);
        }
        self.store.reset().await
    }

    /// Decides a phase from the rules: the first that matches and acts, else a magic address.
    /// `None` means no rule nor magic address spoke: the built-in behaviours and limits decide.
    async fn rules(
        &self,
        phase: Phase,
        view: &SessionView<'_>,
        ip: &PeerIp,
    ) -> Result<Option<Decision>, StoreError> {
        for rule in self.scenario.candidates(phase, view) {
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
                    let key = keys::sequence_key(rule.index, triplet_key(rule.index, view));
                    let attempt = self.store.bump(&key).await?;
                    &steps[(attempt as usize).min(steps.len() - 1)]
                }
            };
            let mut decision = self.outcome(outcome, view, ip);
            decision.delay = rule.delay;
            decision.rule = Some(rule.reference.clone());
            return Ok(Some(decision));
        }
        if self.scenario.server.magic_addresses {
            if let Some(decision) = self.magic(phase, view, ip) {
                return Ok(Some(decision));
            }
        }
        Ok(None)
    }

    fn next_token(&self) -> u64 {
        mix(self.tokens.fetch_add(1, Ordering::Relaxed))
    }

    fn outcome(&self, outcome: &Outcome, view: &SessionView<'_>, ip: &PeerIp) -> Decision {
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
            Outcome::LoseReply => Decision {
                verdict: Verdict::LoseReply,
                ..Decision::CONTINUE
            },
            Outcome::Reply(spec) => self.refusal(spec, view, ip),
            Outcome::Abort(spec) => {
                let refusal = self.refusal(spec, view, ip);
                match refusal.verdict {
                    Verdict::Reply(reply) => Decision {
                        verdict: Verdict::Abort(reply),
                        ..refusal
                    },
                    _ => refusal,
                }
            }
            Outcome::Later(spec) => Decision {
                later: Some(Arc::new(spec.render(|reply| self.render(reply, view, ip)))),
                ..Decision::CONTINUE
            },
        }
    }

    /// A refusal with `spec` for this session: the reply rendered, named by its catalog entry
    /// and by the flavor whose wording it took.
    pub(crate) fn refusal(
        &self,
        spec: &ReplySpec,
        view: &SessionView<'_>,
        ip: &PeerIp,
    ) -> Decision {
        let (reply, flavor) = self.render_in_voice(spec, view, ip);
        Decision {
            verdict: Verdict::Reply(reply),
            catalog: spec.catalog_name(),
            flavor: flavor.map(Flavor::as_str),
            ..Decision::CONTINUE
        }
    }

    /// Renders a reply for this session: in the recipient domain's voice when the reply names
    /// no flavor of its own and the domain has one.
    pub fn render(&self, spec: &ReplySpec, view: &SessionView<'_>, ip: &PeerIp) -> Reply {
        self.render_in_voice(spec, view, ip).0
    }

    /// [`Engine::render`], with the flavor whose wording was used (none for an inline reply).
    fn render_in_voice(
        &self,
        spec: &ReplySpec,
        view: &SessionView<'_>,
        ip: &PeerIp,
    ) -> (Reply, Option<Flavor>) {
        match spec {
            ReplySpec::Inline(reply) => (reply.clone(), None),
            ReplySpec::Catalog {
                entry,
                flavor,
                by_domain,
            } => {
                let flavor = match view.rcpt {
                    Some(rcpt) if *by_domain => self.voice_of(rcpt, *flavor),
                    _ => *flavor,
                };
                let (variant, used) = entry.variant(flavor);
                let reply = variant.render(
                    used,
                    &ReplyContext {
                        rcpt: view.rcpt,
                        sender: view.mail_from,
                        ip: Some(ip.text()),
                        host: &self.hostname,
                        helo: view.helo,
                        session_id: view.session_id,
                        now_unix_ms: self.clock.now_ms(),
                    },
                );
                (reply, Some(used))
            }
        }
    }

    /// The flavor a recipient's domain has in the table, else `fallback`.
    fn voice_of(&self, rcpt: &str, fallback: Flavor) -> Flavor {
        self.scenario
            .server
            .domains
            .lookup_address(rcpt)
            .unwrap_or(fallback)
    }

    /// `user_unknown@…`, `user_unknown+gmail@…` and `550-5.1.1@…` recipients, without `+flavor`
    /// in the voice of the recipient's domain, else of the server; at RCPT, one that asks for
    /// what the checker refuses gets a reply saying why. `lose_reply@…` at the end of data.
    fn magic(&self, phase: Phase, view: &SessionView<'_>, ip: &PeerIp) -> Option<Decision> {
        if phase == Phase::DataEnd && view.recipients.iter().any(|r| loses_reply(r)) {
            return Some(self.outcome(&Outcome::LoseReply, view, ip));
        }
        let server = self.scenario.server.flavor;
        let read = |rcpt: &str| magic_address_in(rcpt, || self.voice_of(rcpt, server));
        let found = match phase {
            Phase::Rcpt => {
                let rcpt = view.rcpt?;
                match read(rcpt)? {
                    Ok(magic) => Some(magic).filter(|m| m.phase == Phase::Rcpt),
                    Err(bad) => return Some(Decision::reply(bad.reply(rcpt))),
                }
            }
            Phase::Data | Phase::DataEnd => view
                .recipients
                .iter()
                .find_map(|rcpt| read(rcpt).and_then(Result::ok).filter(|m| m.phase == phase)),
            _ => None,
        }?;
        let outcome = match found.later {
            Some(later) => Outcome::Later(Box::new(later)),
            None => Outcome::Reply(found.spec),
        };
        Some(self.outcome(&outcome, view, ip))
    }
}

/// Whether every matcher of `rule` accepts the session at `phase` (the index only narrows).
pub(crate) fn matches(rule: &Rule, phase: Phase, view: &SessionView<'_>) -> bool {
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
    fn open(&self, connected: &Connected) -> Box<dyn SessionPolicy> {
        Box::new(ScenarioSession {
            engine: self.engine.clone(),
            peer_ip: PeerIp::new(connected.peer.ip()),
            connections: connected.connections_from_ip,
            accepted: 0,
            reserved: Vec::new(),
        })
    }
}

/// The client IP of a session, written out as text only when a reply shows it (`{ip}`), not
/// once per connection.
pub struct PeerIp {
    ip: IpAddr,
    text: OnceLock<String>,
}

impl PeerIp {
    /// The IP, not yet written out.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            text: OnceLock::new(),
        }
    }

    /// The IP.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The IP as text, made on first use.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| self.ip.to_string())
    }
}

/// One session's view of the scenario: its connection slot and its reserved limit uses.
struct ScenarioSession {
    engine: Arc<Engine>,
    peer_ip: PeerIp,
    /// Open connections from this IP when this one opened, itself included.
    connections: u32,
    /// Messages accepted on this connection.
    accepted: u32,
    /// Limit uses taken for the transaction in progress: (keys, token).
    reserved: Vec<(Vec<String>, u64)>,
}

impl Drop for ScenarioSession {
    fn drop(&mut self) {
        let pending = std::mem::take(&mut self.reserved);
        if !pending.is_empty() {
            release_later(self.engine.clone(), pending);
        }
    }
}

/// Gives back reservations of a transaction that ended without an accepted message.
fn release_later(engine: Arc<Engine>, pending: Vec<(Vec<String>, u64)>) {
    if engine.store.is_immediate() {
        for (keys, token) in &pending {
            let _ = poll_now(engine.store.release(keys, *token));
        }
    } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            for (keys, token) in &pending {
                if let Err(e) = engine.store.release(keys, *token).await {
                    tracing::warn!(%e, "could not release a limit reservation now; the store gives it back later");
                }
            }
        });
    }
}

/// Polls a future that is known to be ready (the memory store never waits).
fn poll_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// The reply when the shared store cannot be reached: temporary, never "accept unlimited".
fn store_unavailable() -> Decision {
    Decision::reply(
        Reply::new(
            451,
            Some(EnhancedStatus {
                class: 4,
                subject: 3,
                detail: 0,
            }),
            &["Temporary local problem - please try later"],
        )
        .expect("valid reply"),
    )
}

impl ScenarioSession {
    async fn decide_now(&mut self, phase: Phase, view: &SessionView<'_>) -> Decision {
        match self.evaluate(phase, view).await {
            Ok(decision) => decision,
            Err(error) => {
                tracing::warn!(%error, "answering 451 4.3.0");
                store_unavailable()
            }
        }
    }

    async fn evaluate(
        &mut self,
        phase: Phase,
        view: &SessionView<'_>,
    ) -> Result<Decision, StoreError> {
        let engine = self.engine.clone();
        if phase == Phase::Mail {
            // A new transaction: what the last one reserved without an accepted message goes back.
            self.release_all().await?;
        }
        let ruled = engine.rules(phase, view, &self.peer_ip).await?;
        if let Some(decision) = &ruled {
            if !matches!(decision.verdict, Verdict::Continue) {
                if phase == Phase::DataEnd {
                    self.release_all().await?;
                }
                return Ok(ruled.expect("matched"));
            }
        }
        // No failure from the rules. An explicit accept keeps its delay and exempts from
        // greylisting (like a postgrey whitelist); limits still apply.
        let whitelisted = ruled.is_some();
        let accepted = ruled.unwrap_or(Decision::CONTINUE);
        let limits = engine.scenario.limits.as_ref();
        if let Some(limits) = limits {
            if let Some(decision) = self.connection_limits(phase, limits, view) {
                return Ok(Decision {
                    delay: accepted.delay,
                    ..decision
                });
            }
        }
        if phase == Phase::Rcpt && !whitelisted {
            if let Some(greylisting) = &engine.scenario.greylisting {
                let applies = greylisting
                    .rcpt
                    .as_ref()
                    .is_none_or(|p| view.rcpt.is_some_and(|r| p.matches(r)));
                if applies {
                    let key = keys::greylist_key(self.peer_ip.ip(), view.mail_from, view.rcpt);
                    let now = engine.clock.reading();
                    if engine
                        .store
                        .greylist(&key, now, greylisting.delay, greylisting.retry_window)
                        .await?
                        == Greylist::Wait
                    {
                        return Ok(Decision {
                            delay: accepted.delay,
                            ..engine.refusal(&greylisting.reply, view, &self.peer_ip)
                        });
                    }
                }
            }
        }
        if let Some(limits) = limits {
            if let Some(decision) = self.rate_limits(phase, limits, view).await? {
                return Ok(Decision {
                    delay: accepted.delay,
                    ..decision
                });
            }
        }
        Ok(accepted)
    }

    fn connection_limits(
        &self,
        phase: Phase,
        limits: &LimitSettings,
        view: &SessionView<'_>,
    ) -> Option<Decision> {
        let engine = &self.engine;
        let refuse = |name: &str| {
            let entry = super::catalog::Catalog::builtin()
                .get(name)
                .expect("built-in name");
            let spec = ReplySpec::Catalog {
                entry,
                flavor: engine.scenario.server.flavor,
                by_domain: true,
            };
            Decision {
                limited: true,
                ..engine.refusal(&spec, view, &self.peer_ip)
            }
        };
        match phase {
            Phase::Connect
                if limits
                    .connections_per_ip
                    .is_some_and(|max| self.connections > max) =>
            {
                Some(refuse("too_many_connections"))
            }
            Phase::Mail
                if limits
                    .messages_per_connection
                    .is_some_and(|max| self.accepted >= max) =>
            {
                Some(refuse("rate_limited"))
            }
            _ => None,
        }
    }

    async fn rate_limits(
        &mut self,
        phase: Phase,
        limits: &LimitSettings,
        view: &SessionView<'_>,
    ) -> Result<Option<Decision>, StoreError> {
        let check_at = if limits.count == Count::Recipients {
            Phase::Rcpt
        } else {
            limits.check_at
        };
        let per_transaction = limits.count == Count::Messages;
        // A transaction counts once against per-message sending limits: at RCPT, every earlier
        // reservation of this transaction held them.
        let sending = phase == check_at && (!per_transaction || self.reserved.is_empty());
        let receiving = phase == Phase::Rcpt && receiving::any(limits);
        if !sending && !receiving {
            return Ok(None);
        }
        let mut checks = Vec::with_capacity(4);
        let mut replies = Vec::with_capacity(4);
        if let (true, Some(rcpt)) = (receiving, view.rcpt) {
            for (check, reply) in receiving::receiving_checks(limits, rcpt) {
                checks.push(check);
                replies.push(reply);
            }
        }
        if let (true, Some(window)) = (sending, limits.per_account) {
            checks.push(LimitCheck {
                key: keys::account_key(view.auth_user, view.mail_from),
                max: window.max,
                per: window.per,
            });
            replies.push(&limits.reply);
        }
        if let (true, Some(window)) = (sending, limits.per_ip) {
            checks.push(LimitCheck {
                key: keys::ip_key(self.peer_ip.ip(), limits.ipv6_prefix),
                max: window.max,
                per: window.per,
            });
            replies.push(&limits.reply);
        }
        if checks.is_empty() {
            return Ok(None);
        }
        let engine = self.engine.clone();
        let token = engine.next_token();
        match engine
            .store
            .reserve(&checks, engine.clock.reading(), token)
            .await?
        {
            Reserve::Reserved => {
                self.reserved
                    .push((checks.into_iter().map(|c| c.key).collect(), token));
                Ok(None)
            }
            Reserve::Full(index) => {
                let reply = replies.get(index).copied().unwrap_or(&limits.reply);
                Ok(Some(Decision {
                    limited: true,
                    ..engine.refusal(reply, view, &self.peer_ip)
                }))
            }
        }
    }

    /// Gives back every reservation (all are tried; the first error is returned).
    async fn release_all(&mut self) -> Result<(), StoreError> {
        let mut result = Ok(());
        for (keys, token) in std::mem::take(&mut self.reserved) {
            if let Err(error) = self.engine.store.release(&keys, token).await {
                result = Err(error);
            }
        }
        result
    }
}

impl SessionPolicy for ScenarioSession {
    fn decide<'a>(&'a mut self, phase: Phase, view: &'a SessionView<'a>) -> Answer<'a> {
        if self.engine.store.is_immediate() {
            // The memory store never waits: run to completion here, without boxing.
            return Answer::now(
                poll_now(self.decide_now(phase, view)).unwrap_or_else(store_unavailable),
            );
        }
        Answer::later(self.decide_now(phase, view))
    }

    fn transaction_over(&mut self) -> Eventual<'_, ()> {
        if self.reserved.is_empty() {
            return Eventual::now(());
        }
        if self.engine.store.is_immediate() {
            let _ = poll_now(self.release_all());
            return Eventual::now(());
        }
        Eventual::later(async move {
            if let Err(e) = self.release_all().await {
                tracing::warn!(%e, "could not release a limit reservation now; the store gives it back later");
            }
        })
    }

    fn accepted<'a>(&'a mut self, _view: &'a SessionView<'a>) -> Eventual<'a, ()> {
        // The reserved uses stay taken: they are this message's.
        self.reserved.clear();
        self.accepted = self.accepted.saturating_add(1);
        Eventual::now(())
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
        if let Some(tls) = server.tls {
            config.tls_available = tls;
        }
        config.accepted = Catalog::builtin().accepted(server.flavor).reply.clone();
        config
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
