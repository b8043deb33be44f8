//! The event journal: every session, command and reply, with ids and timestamps, in a bounded
//! ring (drops are counted) that live readers follow (see [`super::tail`]), and optionally
//! written as JSON lines.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::smtp::policy::RuleRef;
use crate::smtp::reply::{EnhancedStatus, Reply};
use crate::smtp::session::{Decided, ReplyTrace, SilentAction};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Journal-wide id, increasing from 1.
    pub id: u64,
    /// Milliseconds since the Unix epoch, on the server's clock.
    pub at_ms: u64,
    /// The session it belongs to.
    pub session: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A client connected.
    SessionStart {
        /// Its address.
        peer: String,
        /// Implicit TLS.
        tls: bool,
    },
    /// A command line (AUTH credentials hidden).
    Command {
        /// The line.
        line: String,
    },
    /// A reply.
    Reply {
        /// The code.
        code: u16,
        /// The enhanced status code, if any.
        #[serde(serialize_with = "status_text")]
        status: Option<EnhancedStatus>,
        /// The reply text, lines joined by `\n`, without codes (the reply as sent, written out
        /// as text only when the event is read).
        text: ReplyText,
        /// The phase a policy decided, if this reply was decided.
        phase: Option<&'static str>,
        /// The scenario rule (index in the file, from 0) that produced it.
        rule: Option<u32>,
        /// That rule's `name`, if it has one.
        rule_name: Option<Arc<str>>,
        /// That rule's place: `file:line`.
        rule_at: Option<String>,
        /// The catalog name of the reply.
        catalog: Option<&'static str>,
        /// The flavor whose wording the catalog reply uses (`gmail`, `generic`…).
        flavor: Option<&'static str>,
    },
    /// A decision that wrote no reply: the session was closed, or stopped answering.
    Silent {
        /// `disconnect` or `hang`.
        action: &'static str,
        /// The phase the policy decided.
        phase: &'static str,
        /// The scenario rule (index in the file, from 0) that decided it.
        rule: Option<u32>,
        /// That rule's `name`, if it has one.
        rule_name: Option<Arc<str>>,
        /// That rule's place: `file:line`.
        rule_at: Option<String>,
    },
    /// STARTTLS completed.
    TlsStarted,
    /// A message was accepted.
    Message {
        /// The id under `/api/messages/{id}`.
        message_id: u64,
        /// The queue id in the 250.
        queue_id: String,
        /// Octets.
        size: usize,
        /// The envelope sender (empty for `<>`): with `rcpts`, what a list of sessions needs of
        /// the transaction without its MAIL and RCPT commands.
        from: String,
        /// The accepted recipients.
        rcpts: Vec<String>,
    },
    /// A later notification (a DSN, a complaint, an auto-reply) was scheduled for an accepted
    /// message. (Recorded under the session that carried the message.)
    BounceScheduled {
        /// The id under `/api/bounces/{id}`.
        bounce: u64,
        /// The message it answers (`/api/messages/{id}`).
        message_id: u64,
        /// `failed`, `expired`, `delayed`, `delivered`, `complaint` or `auto_reply`.
        kind: &'static str,
        /// Who gets it: the message's envelope sender.
        to: String,
        /// The recipients it is about.
        recipients: Vec<String>,
        /// When it is due, in milliseconds since the epoch on the clock.
        due_at_ms: u64,
    },
    /// Later notifications could not be scheduled: too many are pending (`--max-pending-bounces`);
    /// the message was refused with 451 4.3.0.
    BounceRefused {
        /// How many are pending.
        pending: usize,
    },
    /// A scheduled notification came due and was made (and stored as a message to the sender).
    /// (Recorded under session 0.)
    BounceSent {
        /// The id under `/api/bounces/{id}`.
        bounce: u64,
        /// The notification as a stored message (`/api/messages/{id}`).
        message_id: u64,
        /// What it says.
        kind: &'static str,
        /// Who gets it.
        to: String,
    },
    /// A notification was delivered by SMTP to the `--bounce-to` address, or that failed.
    /// (Recorded under session 0.)
    BounceForwarded {
        /// The id under `/api/bounces/{id}`.
        bounce: u64,
        /// `smtp://host:port`.
        target: String,
        /// The attempt, from 1.
        attempt: u32,
        /// Whether it was accepted.
        ok: bool,
        /// Why not, if it was not.
        error: Option<String>,
    },
    /// The session ended.
    SessionEnd {
        /// Whether it ran under TLS at the end.
        tls: bool,
        /// The AUTH identity, if any.
        auth_user: Option<String>,
    },
}

/// A reply kept as sent; serialized as its text (lines joined by `\n`, without codes), so that
/// recording a reply copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyText(pub Reply);

impl Serialize for ReplyText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.text())
    }
}

fn status_text<S: serde::Serializer>(
    status: &Option<EnhancedStatus>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match status {
        Some(status) => serializer.collect_str(status),
        None => serializer.serialize_none(),
    }
}

impl EventKind {
    /// The journal's record of a reply the session reported (`None` without a copy of it, when
    /// the session was not tracing).
    pub fn reply(trace: ReplyTrace) -> Option<Self> {
        let decided = trace.decided;
        let rule = decided.as_ref().and_then(|d| d.rule.as_deref());
        Some(EventKind::Reply {
            code: trace.code,
            status: trace.status,
            text: ReplyText(trace.reply?),
            phase: decided.as_ref().map(|d| d.phase.as_str()),
            rule: rule.map(|r| r.index),
            rule_name: rule.and_then(|r| r.name.clone()),
            rule_at: rule.map(RuleRef::location),
            catalog: decided.as_ref().and_then(|d| d.catalog),
            flavor: decided.as_ref().and_then(|d| d.flavor),
        })
    }

    /// The journal's record of a decision that wrote no reply.
    pub fn silent(action: SilentAction, decided: &Decided) -> Self {
        let rule = decided.rule.as_deref();
        EventKind::Silent {
            action: action.as_str(),
            phase: decided.phase.as_str(),
            rule: rule.map(|r| r.index),
            rule_name: rule.and_then(|r| r.name.clone()),
            rule_at: rule.map(RuleRef::location),
        }
    }
}

/// A number that differs from one journal to the next: the wall clock's nanoseconds, the
/// process id and a count of journals made in this process, mixed.
fn run_id() -> u64 {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed =
        nanos ^ (u64::from(std::process::id()) << 32) ^ MADE.fetch_add(1, Ordering::Relaxed);
    // One multiply-xorshift round, so that close inputs give unlike ids.
    let mixed = (mixed ^ (mixed >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    mixed ^ (mixed >> 33)
}

/// The bounded journal.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<VecDeque<Arc<Event>>>,
    capacity: usize,
    next_id: AtomicU64,
    dropped: AtomicU64,
    /// `dropped` when the journal was last cleared: what the API's count starts from.
    dropped_at_clear: AtomicU64,
    /// Names this journal among runs of the server (its event ids start over at each run).
    run: u64,
    /// Set (under the ring's lock) by a live reader about to wait for new events; the next
    /// [`EventLog::record`] clears it and wakes the readers. Recording costs a live reader
    /// nothing more per event: readers read the ring itself, at their own pace.
    readers_waiting: AtomicBool,
    new_events: Notify,
    file: Option<mpsc::Sender<Arc<Event>>>,
}

impl EventLog {
    /// A journal keeping the latest `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            dropped_at_clear: AtomicU64::new(0),
            run: run_id(),
            readers_waiting: AtomicBool::new(false),
            new_events: Notify::new(),
            file: None,
        }
    }

    /// An id of this journal, different at each run of the server: a reader that reconnects
    /// and finds another knows that event ids started over.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// How many events are kept at most: also how far a live reader may fall behind.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Also writes every event to `path` as JSON lines (appending), from a task of its own.
    pub fn with_file(mut self, path: &Path) -> std::io::Result<Self> {
        let mut file = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        );
        let (sender, mut receiver) = mpsc::channel::<Arc<Event>>(65_536);
        std::thread::Builder::new()
            .name("failmail-events".into())
            .spawn(move || {
                while let Some(event) = receiver.blocking_recv() {
                    if serde_json::to_writer(&mut file, &*event).is_ok() {
                        let _ = file.write_all(b"\n");
                    }
                    if receiver.is_empty() {
                        let _ = file.flush();
                    }
                }
                let _ = file.flush();
            })?;
        self.file = Some(sender);
        Ok(self)
    }

    /// Adds the events of one step of one session (one lock for the batch).
    pub fn record(&self, at_ms: u64, session: u64, kinds: impl IntoIterator<Item = EventKind>) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for kind in kinds {
            let event = Arc::new(Event {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                at_ms,
                session,
                kind,
            });
            if self.capacity == 0 {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                if ring.len() >= self.capacity {
                    ring.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                ring.push_back(event.clone());
            }
            if let Some(file) = &self.file {
                if file.try_send(event).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Under the ring's lock, like the flag's setting: a reader either saw these events or
        // is woken now.
        if self.readers_waiting.load(Ordering::Relaxed) {
            self.readers_waiting.store(false, Ordering::Relaxed);
            self.new_events.notify_waiters();
        }
    }

    /// Returns once an event with an id above `id` has been recorded (at once if one has).
    pub async fn recorded_after(&self, id: u64) {
        loop {
            let notified = self.new_events.notified();
            tokio::pin!(notified);
            // Registered before the check, so that a wake-up between the two is not lost.
            notified.as_mut().enable();
            {
                let _ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
                if self.recorded() > id {
                    return;
                }
                self.readers_waiting.store(true, Ordering::Relaxed);
            }
            notified.await;
        }
    }

    /// Kept events with `id > since`, optionally of one session, at most `limit`, oldest first.
    pub fn list(&self, session: Option<u64>, since: u64, limit: usize) -> Vec<Arc<Event>> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter()
            .filter(|e| e.id > since && session.is_none_or(|s| e.session == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Runs `read` over the kept events, oldest first, under the journal's lock.
    pub(crate) fn with_kept<T>(&self, read: impl FnOnce(&VecDeque<Arc<Event>>) -> T) -> T {
        read(&self.ring.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Forgets the kept events (ids go on increasing) and starts [`EventLog::dropped_since_clear`]
    /// over.
    pub fn clear(&self) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.clear();
        self.dropped_at_clear
            .store(self.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Events that fell out of the ring or could not be written, since the start (a counter for
    /// the metrics: it never goes down).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events dropped since the journal was last cleared (`POST /api/reset`): what the API shows
    /// next to the events, so that a test isolated by a reset sees only its own drops.
    pub fn dropped_since_clear(&self) -> u64 {
        self.dropped()
            .saturating_sub(self.dropped_at_clear.load(Ordering::Relaxed))
    }

    /// Events recorded in all.
    pub fn recorded(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// Events kept now.
    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_filters() {
        let log = EventLog::new(3);
        for session in 1..=5 {
            log.record(0, session, [EventKind::TlsStarted]);
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.dropped(), 2);
        assert_eq!(log.dropped_since_clear(), 2);
        assert_eq!(log.recorded(), 5);
        let ids: Vec<u64> = log.list(None, 0, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(log.list(Some(4), 0, 10).len(), 1);
        assert_eq!(log.list(None, 4, 10).len(), 1);
        assert_eq!(log.list(None, 0, 2).len(), 2);
        log.clear();
        assert_eq!((log.dropped(), log.dropped_since_clear()), (2, 0));
        for session in 6..=10 {
            log.record(0, session, [EventKind::TlsStarted]);
        }
        assert_eq!((log.dropped(), log.dropped_since_clear()), (4, 2));
    }

    #[test]
    fn each_journal_names_its_own_run() {
        let runs: std::collections::HashSet<u64> =
            (0..100).map(|_| EventLog::new(1).run()).collect();
        assert_eq!(runs.len(), 100);
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_the_next_record() {
        let log = Arc::new(EventLog::new(10));
        log.record(0, 1, [EventKind::TlsStarted]);
        // Already recorded: no wait.
        log.recorded_after(0).await;
        let waiting = tokio::spawn({
            let log = log.clone();
            async move { log.recorded_after(1).await }
        });
        // The reader is parked (the flag is set) before the event comes.
        for _ in 0..100 {
            if log.readers_waiting.load(Ordering::Relaxed) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            log.readers_waiting.load(Ordering::Relaxed),
            "the reader never waited"
        );
        assert!(!waiting.is_finished());
        log.record(0, 1, [EventKind::TlsStarted]);
        waiting.await.unwrap();
        assert!(!log.readers_waiting.load(Ordering::Relaxed));
    }

    #[test]
    fn replies_serialize_as_before() {
        let reply = Reply::parse_parts(550, Some("5.1.1"), &["a", "b"]).unwrap();
        let event = Event {
            id: 1,
            at_ms: 2,
            session: 3,
            kind: EventKind::Reply {
                code: 550,
                status: reply.status(),
                text: ReplyText(reply),
                phase: Some("rcpt"),
                rule: Some(0),
                rule_name: None,
                rule_at: None,
                catalog: Some("user_unknown"),
                flavor: Some("gmail"),
            },
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"id":1,"at_ms":2,"session":3,"type":"reply","code":550,"status":"5.1.1","text":"a\nb","phase":"rcpt","rule":0,"rule_name":null,"rule_at":null,"catalog":"user_unknown","flavor":"gmail"}"#
        );
    }

    #[test]
    fn events_serialize_with_their_type() {
        let event = Event {
            id: 1,
            at_ms: 2,
            session: 3,
            kind: EventKind::Command {
                line: "NOOP".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"id":1,"at_ms":2,"session":3,"type":"command","line":"NOOP"}"#
        );
    }
}
