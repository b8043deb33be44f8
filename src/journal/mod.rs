//! What happened: captured messages, the event journal, the attempt history, the Maildir and the
//! counters, all bounded.
//!
//! The server writes here (it stores each accepted message before its 250, and records what each
//! session did); the HTTP API and `TestServer` only read. One [`Journal`] per running failmail,
//! built by the composition root (`app`).

pub mod attempts;
pub mod brief;
pub mod event_json;
pub mod events;
pub mod filter;
pub(crate) mod maildir;
pub mod messages;
pub mod metrics;
pub mod tail;

use std::path::PathBuf;
use std::sync::Arc;

pub use attempts::{AttemptBook, AttemptsConfig};
pub use events::{Event, EventKind, EventLog};
pub use filter::{EventFilter, EVENT_TYPES};
pub use messages::{MessageStore, StoredMessage};
pub use metrics::{Counters, Metrics};

use crate::smtp::session::Message;
use maildir::Maildir;

/// How much of what happened is kept, and where else it is written.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// How many accepted messages are kept in memory.
    pub message_capacity: usize,
    /// How many bytes of message content are kept in memory, at most.
    pub message_bytes: usize,
    /// How many events are kept in memory.
    pub event_capacity: usize,
    /// Record events at all (off with `--no-store`, for load tests).
    pub record_events: bool,
    /// Also write every event to this file as JSON lines.
    pub events_file: Option<PathBuf>,
    /// Write every accepted message to this Maildir, synced before the 250.
    pub maildir: Option<PathBuf>,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            message_capacity: 10_000,
            message_bytes: messages::DEFAULT_MAX_BYTES,
            event_capacity: 100_000,
            record_events: true,
            events_file: None,
            maildir: None,
        }
    }
}

/// The events file or the Maildir could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {path}: {source}")]
pub struct JournalError {
    /// The file or folder.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// A message could not be stored (the Maildir write failed): the client gets 451 4.3.0.
#[derive(Debug, thiserror::Error)]
#[error("cannot store message: {0}")]
pub struct DeliveryError(#[from] pub std::io::Error);

/// Everything one running failmail keeps about what happened.
#[derive(Debug)]
pub struct Journal {
    messages: Arc<MessageStore>,
    events: Option<Arc<EventLog>>,
    maildir: Option<Arc<Maildir>>,
    metrics: Arc<Metrics>,
    attempts: Option<Arc<AttemptBook>>,
}

impl Journal {
    /// Opens the journal `config` describes (creating the events file and the Maildir).
    pub fn open(config: &JournalConfig) -> Result<Self, JournalError> {
        let events = if config.record_events {
            let log = EventLog::new(config.event_capacity);
            let log = match &config.events_file {
                Some(path) => log.with_file(path).map_err(|source| JournalError {
                    path: path.clone(),
                    source,
                })?,
                None => log,
            };
            Some(Arc::new(log))
        } else {
            None
        };
        let maildir = match &config.maildir {
            Some(path) => Some(Arc::new(Maildir::open(path).map_err(|source| {
                JournalError {
                    path: path.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        Ok(Self {
            messages: Arc::new(MessageStore::with_max_bytes(
                config.message_capacity,
                config.message_bytes,
            )),
            events,
            maildir,
            metrics: Arc::new(Metrics::default()),
            attempts: None,
        })
    }

    /// Also follows every mail transaction as an attempt of a message, bounded and judged as
    /// `config` says (nothing when it is not enabled, or may follow no message).
    pub fn with_attempts(mut self, config: &AttemptsConfig) -> Self {
        self.attempts = (config.enabled && config.messages > 0)
            .then(|| Arc::new(AttemptBook::new(config.clone())));
        self
    }

    /// The attempt history (`None` when attempts are not followed).
    pub fn attempts(&self) -> Option<&Arc<AttemptBook>> {
        self.attempts.as_ref()
    }

    /// The accepted messages kept in memory.
    pub fn messages(&self) -> &Arc<MessageStore> {
        &self.messages
    }

    /// The event journal (`None` when events are not recorded).
    pub fn events(&self) -> Option<&Arc<EventLog>> {
        self.events.as_ref()
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether an accepted message's content is needed at all: kept in memory, written to the
    /// Maildir, or named in an event. When not (a load test's `--no-store`), the server does
    /// not even copy it, and [`Journal::pass_over`] counts it.
    pub fn wants_messages(&self) -> bool {
        self.messages.keeps() || self.maildir.is_some() || self.events.is_some()
    }

    /// Counts an accepted message that nothing keeps; returns its id.
    pub fn pass_over(&self) -> u64 {
        self.messages.pass_over()
    }

    /// Stores an accepted message (on disk first, when a Maildir is set); called before the 250
    /// is sent, so that a message the client saw accepted is never lost. Returns its id.
    pub async fn deliver(&self, message: Message) -> Result<u64, DeliveryError> {
        self.deliver_marked(message, None).await
    }

    /// Stores a notification failmail made (bounce `bounce`) as a message to its recipient, in
    /// memory and in the Maildir like an accepted one.
    pub async fn deliver_marked(
        &self,
        message: Message,
        bounce: Option<u64>,
    ) -> Result<u64, DeliveryError> {
        if let Some(maildir) = &self.maildir {
            let maildir = maildir.clone();
            let (queue_id, data) = (message.queue_id.clone(), message.data.clone());
            tokio::task::spawn_blocking(move || maildir.write(&queue_id, &data))
                .await
                .map_err(|e| DeliveryError(std::io::Error::other(e)))??;
        }
        Ok(self.messages.push_marked(message, bounce))
    }

    /// Forgets the kept messages, events and attempts (ids go on increasing), for test
    /// isolation.
    pub fn clear(&self) {
        self.messages.clear();
        if let Some(events) = &self.events {
            events.clear();
        }
        if let Some(attempts) = &self.attempts {
            attempts.clear();
        }
    }

    /// The Prometheus text of every counter, the journal's own included (what `/metrics`
    /// serves).
    pub fn metrics_text(&self) -> String {
        let (recorded, dropped) = self
            .events
            .as_ref()
            .map_or((0, 0), |log| (log.recorded(), log.dropped()));
        let mut text = self.metrics.render(&[
            (
                "failmail_events_recorded_total",
                "Events recorded in the journal.",
                recorded,
            ),
            (
                "failmail_events_dropped_total",
                "Events that fell out of the journal's ring or could not be written.",
                dropped,
            ),
            (
                "failmail_messages_dropped_total",
                "Accepted messages that fell out of the message ring.",
                self.messages.dropped(),
            ),
        ]);
        if let Some(attempts) = &self.attempts {
            attempts.render_metrics(&mut text);
        }
        text
    }
}
