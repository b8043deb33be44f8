//! The event journal: every session, command and reply, with ids and timestamps, in a bounded
//! ring (drops are counted), broadcast to live subscribers, and optionally written as JSON lines.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

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
        status: Option<String>,
        /// The reply text, lines joined by `\n`, without codes.
        text: String,
        /// The phase a policy decided, if this reply was decided.
        phase: Option<&'static str>,
        /// The scenario rule (index in the file, from 0) that produced it.
        rule: Option<u32>,
        /// The catalog name of the reply.
        catalog: Option<&'static str>,
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
    },
    /// The session ended.
    SessionEnd {
        /// Whether it ran under TLS at the end.
        tls: bool,
        /// The AUTH identity, if any.
        auth_user: Option<String>,
    },
}

/// The bounded journal.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<VecDeque<Arc<Event>>>,
    capacity: usize,
    next_id: AtomicU64,
    dropped: AtomicU64,
    live: broadcast::Sender<Arc<Event>>,
    file: Option<mpsc::Sender<Arc<Event>>>,
}

impl EventLog {
    /// A journal keeping the latest `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            next_id: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            live,
            file: None,
        }
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
            let _ = self.live.send(event.clone());
            if let Some(file) = &self.file {
                if file.try_send(event).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
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

    /// New events as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Forgets the kept events (ids go on increasing).
    pub fn clear(&self) {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Events that fell out of the ring or could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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

/// Splits the wire bytes of one or more replies into reply events.
pub fn reply_events(wire: &[u8]) -> Vec<(u16, Option<String>, String)> {
    let mut replies = Vec::with_capacity(1);
    let mut joined = String::new();
    let mut continued = 0usize;
    let mut status: Option<String> = None;
    for line in crlf_lines(wire) {
        // Borrowed unless the reply holds invalid UTF-8 (ours never does); `from_utf8` checks
        // faster than the lossy decoder.
        let line = match std::str::from_utf8(line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(line),
        };
        if line.len() < 3 {
            continue;
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        let rest = line.get(4..).unwrap_or("");
        let (line_status, line_text) = match rest.split_once(' ') {
            Some((head, tail)) if crate::smtp::reply::EnhancedStatus::parse(head).is_some() => {
                (Some(head), tail)
            }
            _ if crate::smtp::reply::EnhancedStatus::parse(rest).is_some() => (Some(rest), ""),
            _ => (None, rest),
        };
        if status.is_none() {
            status = line_status.map(str::to_owned);
        }
        let last = line.as_bytes().get(3) != Some(&b'-');
        if last && continued == 0 {
            // One-line replies (nearly all) take their text with a single allocation.
            replies.push((code, status.take(), line_text.to_owned()));
            continue;
        }
        if continued > 0 {
            joined.push('\n');
        }
        joined.push_str(line_text);
        continued += 1;
        if last {
            replies.push((code, status.take(), std::mem::take(&mut joined)));
            continued = 0;
        }
    }
    replies
}

/// The pieces of `wire` between CRLFs (as `str::split("\r\n")` gives them), found with memchr.
fn crlf_lines(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', wire).filter(|&i| i > 0 && wire[i - 1] == b'\r');
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match ends.next() {
            // The CR before this LF lies past the previous CRLF (a CRLF cannot overlap one).
            Some(newline) => {
                let line = &wire[start..newline - 1];
                start = newline + 1;
                Some(line)
            }
            None => {
                done = true;
                Some(&wire[start..])
            }
        }
    })
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
        assert_eq!(log.recorded(), 5);
        let ids: Vec<u64> = log.list(None, 0, 10).iter().map(|e| e.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(log.list(Some(4), 0, 10).len(), 1);
        assert_eq!(log.list(None, 4, 10).len(), 1);
        assert_eq!(log.list(None, 0, 2).len(), 2);
    }

    proptest::proptest! {
        /// Splitting on CRLF with memchr gives what `str::split("\r\n")` gives.
        #[test]
        fn crlf_lines_split_like_str_split(text in "[a\\r\\n-]{0,24}") {
            let lines: Vec<&[u8]> = crlf_lines(text.as_bytes()).collect();
            let expected: Vec<&[u8]> = text.split("\r\n").map(str::as_bytes).collect();
            proptest::prop_assert_eq!(lines, expected);
        }
    }

    #[test]
    fn replies_are_split_and_parsed() {
        let replies = reply_events(
            b"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n550-5.1.1 a\r\n550 5.1.1 b\r\n354 go\r\n",
        );
        assert_eq!(
            replies,
            vec![
                (250, None, "mx\nPIPELINING\nDSN".to_owned()),
                (550, Some("5.1.1".to_owned()), "a\nb".to_owned()),
                (354, None, "go".to_owned()),
            ]
        );
        assert_eq!(
            reply_events(b"250-\r\n250 2.0.0 x\r\n221 2.0.0 Bye\r\n"),
            vec![
                (250, Some("2.0.0".to_owned()), "\nx".to_owned()),
                (221, Some("2.0.0".to_owned()), "Bye".to_owned()),
            ]
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
