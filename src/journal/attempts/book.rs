//! The attempts of every message followed: joining each new attempt to its message (the rule in
//! the module documentation of [`super`]), the bounds, and the counters behind `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use smallvec::SmallVec;

use super::attempt::{Attempt, EndKind};
use super::followed::Followed;
use super::report::{self, Report, ReportSettings};
use super::AttemptsConfig;
use crate::journal::metrics::{single, Histogram};

/// The most recipients counted per message: a client that keeps adding new ones to a
/// Message-ID cannot grow a message without bound (its attempts are still kept).
const MAX_RECIPIENTS: usize = 1000;

/// Buckets of the attempts-per-message histogram.
const PER_MESSAGE_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// One recipient of a followed message, counted over every attempt, kept or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The address, as first named (shared with the attempt that named it).
    pub rcpt: Arc<str>,
    /// Attempts that concerned it.
    pub attempts: u64,
    /// Attempts that stored the message for it (their 250 sent or lost).
    pub accepted: u64,
    /// Acceptances after the first.
    pub duplicates: u64,
    /// Acceptances after one whose 250 was sent: the client knew, and sent it again anyway.
    pub unexplained: u64,
    /// How its latest attempt ended.
    pub last: EndKind,
    /// Whether a 250 was sent to the client for it.
    pub replied: bool,
    /// Its (sender, recipient) index key.
    pub(super) pair: u64,
}

impl Tally {
    fn new(rcpt: &Arc<str>, pair: u64) -> Self {
        Self {
            pair,
            rcpt: rcpt.clone(),
            attempts: 0,
            accepted: 0,
            duplicates: 0,
            unexplained: 0,
            last: EndKind::Abandoned,
            replied: false,
        }
    }

    /// Counts one attempt that ended with `kind`; returns whether it was a duplicate.
    fn count(&mut self, kind: EndKind) -> bool {
        self.attempts += 1;
        self.last = kind;
        if !kind.accepted() {
            return false;
        }
        let duplicate = self.accepted > 0;
        if duplicate {
            self.duplicates += 1;
        }
        if self.replied {
            self.unexplained += 1;
        }
        self.accepted += 1;
        self.replied |= kind == EndKind::Accepted;
        duplicate
    }

    /// Delivered, or refused for good: nothing more is expected for it.
    fn settled(&self) -> bool {
        self.accepted > 0 || self.last == EndKind::Permanent
    }
}

/// A message the history follows: its identity, its recipients' counts and its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedMessage {
    /// Increasing from 1 across the history: names a message that has no `Message-ID`.
    pub key: u64,
    /// Its `Message-ID`, once an attempt reached the end of data with one.
    pub message_id: Option<Arc<str>>,
    /// The sender of its first attempt.
    pub sender: Arc<str>,
    /// Each recipient named, in order (one inline: most messages have one).
    pub(super) recipients: SmallVec<[Tally; 1]>,
    /// The kept attempts, oldest first (the first ones and the latest, past the bound; two
    /// inline: most messages take one or two).
    pub(super) attempts: SmallVec<[Arc<Attempt>; 2]>,
    /// Attempts in all, kept or not.
    pub attempts_total: u64,
    /// Whether the histogram counted it already.
    observed: bool,
    /// Its sender's index key.
    pub(super) sender_key: u64,
}

impl FollowedMessage {
    /// A message with nothing counted yet.
    pub(super) fn new(key: u64, sender: &Arc<str>, sender_key: u64) -> Self {
        Self {
            key,
            message_id: None,
            sender: sender.clone(),
            recipients: SmallVec::new(),
            attempts: SmallVec::new(),
            attempts_total: 0,
            observed: false,
            sender_key,
        }
    }

    /// Each recipient named, in order, with its counts.
    pub fn recipients(&self) -> &[Tally] {
        &self.recipients
    }

    /// The kept attempts, oldest first (past the bound: the first ones and the latest).
    pub fn attempts(&self) -> &[Arc<Attempt>] {
        &self.attempts
    }

    /// The counts of `rcpt` (case ignored).
    pub fn tally(&self, rcpt: &str) -> Option<&Tally> {
        self.recipients
            .iter()
            .find(|t| t.rcpt.eq_ignore_ascii_case(rcpt))
    }

    /// The counts of `rcpt`, new ones made with its index key `pair`, up to [`MAX_RECIPIENTS`].
    fn tally_mut(&mut self, rcpt: &Arc<str>, pair: u64) -> Option<&mut Tally> {
        let at = match self
            .recipients
            .iter()
            .position(|t| t.rcpt.eq_ignore_ascii_case(rcpt))
        {
            Some(at) => at,
            None if self.recipients.len() >= MAX_RECIPIENTS => return None,
            None => {
                self.recipients.push(Tally::new(rcpt, pair));
                self.recipients.len() - 1
            }
        };
        Some(&mut self.recipients[at])
    }

    /// Every recipient delivered or refused for good.
    fn settled(&self) -> bool {
        !self.recipients.is_empty() && self.recipients.iter().all(Tally::settled)
    }

    /// Whether an attempt from this message's sender, without a `Message-ID` (or this message
    /// without one), continues it: it names a recipient of it that has had no 250; or it was
    /// refused at MAIL and some recipient has had no 250; or this message was refused at MAIL
    /// only, before any recipient was named.
    pub(super) fn continued_by(&self, attempt: &Attempt) -> bool {
        let open = |tally: &Tally| !tally.replied;
        if attempt.recipients.is_empty() {
            return self.recipients.is_empty() || self.recipients.iter().any(open);
        }
        self.recipients.is_empty()
            || attempt
                .recipients
                .iter()
                .any(|(rcpt, _)| self.tally(rcpt).is_some_and(open))
    }
}

/// Which attempts `GET /api/attempts` lists.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter<'a> {
    /// Only attempts that named this recipient (case ignored), or were refused at MAIL for a
    /// message that has it.
    pub rcpt: Option<&'a str>,
    /// Only attempts of the message with this `Message-ID`.
    pub message_id: Option<&'a str>,
    /// Only attempts with a larger id.
    pub since: u64,
    /// At most this many.
    pub limit: usize,
}

/// One attempt as `GET /api/attempts` lists it: with the message it was joined to.
#[derive(Debug, Clone)]
pub struct ListedAttempt {
    /// The attempt.
    pub attempt: Arc<Attempt>,
    /// Its message's key.
    pub message: u64,
    /// Its message's `Message-ID`, if known.
    pub message_id: Option<Arc<str>>,
}

/// The attempt history of one running failmail: shared by every connection's [`Recorder`],
/// read by the API, `TestServer` and the report.
///
/// [`Recorder`]: super::Recorder
#[derive(Debug)]
pub struct AttemptBook {
    config: AttemptsConfig,
    followed: Mutex<Followed>,
    recorded: AtomicU64,
    retries: AtomicU64,
    duplicates: AtomicU64,
    attempts_dropped: AtomicU64,
    messages_dropped: AtomicU64,
    per_message: Histogram,
}

impl AttemptBook {
    /// An empty history bounded and judged as `config` says.
    pub fn new(config: AttemptsConfig) -> Self {
        Self {
            config,
            followed: Mutex::new(Followed::default()),
            recorded: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            attempts_dropped: AtomicU64::new(0),
            messages_dropped: AtomicU64::new(0),
            per_message: Histogram::new(&PER_MESSAGE_BUCKETS, 1.0),
        }
    }

    /// How it is bounded and judged.
    pub fn config(&self) -> &AttemptsConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Followed> {
        self.followed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a finished attempt: gives it its id and joins it to its message.
    pub fn record(&self, mut attempt: Attempt) {
        let mut followed = self.lock();
        followed.next_attempt += 1;
        attempt.id = followed.next_attempt;
        // Shared at once: the attempt moves no further, only its pointer does.
        let attempt = Arc::new(attempt);
        let keys = followed.keys(&attempt);
        let key = match followed.target(&attempt, &keys) {
            Some(key) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                key
            }
            None => {
                let (key, evicted) = followed.start(&attempt, keys.sender, self.config.messages);
                for old in evicted {
                    self.messages_dropped.fetch_add(1, Ordering::Relaxed);
                    if !old.observed {
                        self.per_message.observe(old.attempts_total);
                    }
                }
                key
            }
        };
        let Some(at) = followed.position(key) else {
            return; // Followed nothing (no room at all).
        };
        if let (Some(id), Some(id_key)) = (&attempt.message_id, keys.id) {
            followed.name(at, id, id_key);
        }
        // The indexes hold the keys of a message's own sender only, so that falling out of
        // the history removes every entry of the message.
        let pairs = if keys.sender == followed.messages[at].sender_key {
            for pair in &keys.pairs {
                followed.by_envelope.insert(*pair, key);
            }
            followed.by_sender.insert(keys.sender, key);
            keys.pairs
        } else {
            let sender = followed.messages[at].sender_key;
            let pairs = attempt.recipients.iter();
            pairs.map(|(rcpt, _)| followed.pair(sender, rcpt)).collect()
        };
        self.add(&mut followed.messages[at], attempt, &pairs);
    }

    /// Counts `attempt` for its message's recipients (`pairs`: their index keys with the
    /// message's sender) and keeps it within the bounds.
    fn add(&self, message: &mut FollowedMessage, attempt: Arc<Attempt>, pairs: &[u64]) {
        let mut duplicates = 0;
        match &attempt.mail_ending {
            Some(ending) => {
                for tally in &mut message.recipients {
                    duplicates += u64::from(tally.count(ending.kind));
                }
            }
            None => {
                for ((rcpt, ending), pair) in attempt.recipients.iter().zip(pairs) {
                    if let Some(tally) = message.tally_mut(rcpt, *pair) {
                        duplicates += u64::from(tally.count(ending.kind));
                    }
                }
            }
        }
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.recorded.fetch_add(1, Ordering::Relaxed);
        message.attempts_total += 1;
        let keep = self.config.attempts_per_message.max(1);
        if message.attempts.len() < keep {
            message.attempts.push(attempt);
        } else {
            // The first ones stay (they show how retries began) and so does the latest.
            if let Some(last) = message.attempts.last_mut() {
                *last = attempt;
            }
            self.attempts_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if !message.observed && message.settled() {
            message.observed = true;
            self.per_message.observe(message.attempts_total);
        }
    }

    /// A copy of the messages followed now, oldest first (the attempts are shared, not copied).
    pub fn messages(&self) -> Vec<FollowedMessage> {
        self.lock().messages.iter().cloned().collect()
    }

    /// Kept attempts that pass `filter`, oldest first, each with its message's key and id.
    pub fn attempts(&self, filter: &AttemptFilter<'_>) -> Vec<ListedAttempt> {
        let followed = self.lock();
        let mut found = Vec::new();
        for message in &followed.messages {
            if filter
                .message_id
                .is_some_and(|id| message.message_id.as_deref() != Some(id))
            {
                continue;
            }
            for attempt in &message.attempts {
                let names = |rcpt: &str| match &attempt.mail_ending {
                    Some(_) => message.tally(rcpt).is_some(),
                    None => attempt.ending_for(rcpt).is_some(),
                };
                if attempt.id > filter.since && filter.rcpt.is_none_or(names) {
                    found.push(ListedAttempt {
                        attempt: attempt.clone(),
                        message: message.key,
                        message_id: message.message_id.clone(),
                    });
                }
            }
        }
        found.sort_by_key(|listed| listed.attempt.id);
        found.truncate(filter.limit);
        found
    }

    /// The retry report of every message followed, judged at `now_ms` with `settings`.
    pub fn report(&self, now_ms: u64, settings: &ReportSettings) -> Report {
        let messages = self.messages();
        let mut report = report::judge(&messages, settings, now_ms);
        report.messages_dropped = self.messages_dropped();
        report.attempts_dropped = self.attempts_dropped();
        report
    }

    /// Attempts not kept since the start (past the bound per message).
    pub fn attempts_dropped(&self) -> u64 {
        self.attempts_dropped.load(Ordering::Relaxed)
    }

    /// Messages that fell out of the history since the start.
    pub fn messages_dropped(&self) -> u64 {
        self.messages_dropped.load(Ordering::Relaxed)
    }

    /// Forgets every message and attempt (ids go on increasing; the counters too).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Adds the history's counters and histogram to a Prometheus exposition.
    pub fn render_metrics(&self, out: &mut String) {
        let counters = [
            (
                "failmail_attempts_total",
                "Mail transactions recorded as attempts of a message.",
                &self.recorded,
            ),
            (
                "failmail_attempt_retries_total",
                "Attempts of a message already followed: its retries.",
                &self.retries,
            ),
            (
                "failmail_attempt_duplicates_total",
                "Acceptances of a message for a recipient it was accepted for already.",
                &self.duplicates,
            ),
            (
                "failmail_attempts_dropped_total",
                "Attempts not kept, past the bound per message (the first ones and the latest stay).",
                &self.attempts_dropped,
            ),
            (
                "failmail_attempt_messages_dropped_total",
                "Followed messages that fell out of the attempt history.",
                &self.messages_dropped,
            ),
        ];
        for (name, help, value) in counters {
            single(out, name, help, value.load(Ordering::Relaxed), "counter");
        }
        self.per_message.render(
            out,
            "failmail_attempts_per_message",
            "Attempts per message, counted once it is delivered or refused for good to every \
             recipient, or when it falls out of the history.",
        );
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
