//! What a list of sessions needs of the journal: the brief events (the `brief` filter of
//! `GET /api/events` and of the event stream, which the web page reads), and, among events read
//! together, the MAIL and RCPT commands a `message` event makes redundant.
//!
//! Watching a busy server must cost it little: a message on a new connection makes some fifteen
//! events, of which a list of sessions needs six (start, EHLO, MAIL, RCPT, message, end), and
//! four once the accepted message's event names its envelope.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::events::{Event, EventKind};

/// Whether a list of sessions needs `kind`: every event but the commands other than HELO, EHLO,
/// MAIL and RCPT (which name the client, the sender and the recipients), and the replies below
/// 400 that neither a scenario rule nor a catalog entry chose (the everyday 250s and 354s, at
/// whatever phase: an accepted message is its `message` event).
pub(crate) fn is_brief(kind: &EventKind) -> bool {
    match kind {
        EventKind::Command { line } => match line.as_bytes() {
            // ASCII letters in lower case (`| 0x20` maps no other byte onto one of these).
            [a, b, c, d, ..] => matches!(
                &[a | 0x20, b | 0x20, c | 0x20, d | 0x20],
                b"helo" | b"ehlo" | b"mail" | b"rcpt"
            ),
            _ => false,
        },
        EventKind::Reply {
            code,
            rule,
            catalog,
            ..
        } => *code >= 400 || rule.is_some() || catalog.is_some(),
        _ => true,
    }
}

/// Whether `line` is a MAIL or RCPT command (ASCII case ignored).
fn names_envelope(line: &str) -> Option<bool> {
    match line.as_bytes() {
        [a, b, c, d, ..] => match &[a | 0x20, b | 0x20, c | 0x20, d | 0x20] {
            b"mail" => Some(true),
            b"rcpt" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Leaves out of `items` (in journal order) the MAIL and RCPT commands of each transaction that
/// ends, among them, with an accepted message: its `message` event names the sender and the
/// recipients. A transaction that ends otherwise keeps its commands: a refusal, an EHLO, the
/// session's end or any other event of the session between them and the message (a refused
/// recipient is named only by its command), or a new MAIL (after an RSET, which is not brief).
/// `event_of` finds the event in an item (an item without one is kept, and ends nothing).
pub fn leave_out_settled<T>(items: &mut Vec<T>, event_of: impl Fn(&T) -> Option<&Event>) {
    Settler::default().run(items, event_of);
}

/// [`leave_out_settled`] with its working memory kept from one run to the next (the event
/// stream runs it on every chunk it writes).
#[derive(Debug, Default)]
pub struct Settler {
    /// Per session, the last command of its open transaction (an index into the items).
    open: HashMap<u64, usize, BuildHasherDefault<SessionHasher>>,
    /// Per item, the transaction's command before it (`NONE` for the first).
    before: Vec<usize>,
    settled: Vec<bool>,
}

const NONE: usize = usize::MAX;

impl Settler {
    /// See [`leave_out_settled`].
    pub fn run<T>(&mut self, items: &mut Vec<T>, event_of: impl Fn(&T) -> Option<&Event>) {
        self.open.clear();
        self.before.clear();
        self.before.resize(items.len(), NONE);
        self.settled.clear();
        self.settled.resize(items.len(), false);
        let mut any = false;
        for (at, item) in items.iter().enumerate() {
            let Some(event) = event_of(item) else {
                continue;
            };
            match &event.kind {
                EventKind::Command { line } => match names_envelope(line) {
                    Some(mail) => {
                        let last = self.open.insert(event.session, at);
                        if !mail {
                            self.before[at] = last.unwrap_or(NONE);
                        }
                    }
                    None => {
                        self.open.remove(&event.session);
                    }
                },
                EventKind::Message { .. } => {
                    let mut next = self.open.remove(&event.session).unwrap_or(NONE);
                    while next != NONE {
                        self.settled[next] = true;
                        any = true;
                        next = self.before[next];
                    }
                }
                _ => {
                    self.open.remove(&event.session);
                }
            }
        }
        if any {
            let mut at = 0;
            items.retain(|_| {
                at += 1;
                !self.settled[at - 1]
            });
        }
    }
}

/// Hashes a session id with one multiplication (Fibonacci hashing): ids are small, increasing
/// numbers from the server itself, not chosen by clients.
#[derive(Debug, Default)]
pub struct SessionHasher(u64);

impl Hasher for SessionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(id: u64, session: u64, kind: EventKind) -> Arc<Event> {
        Arc::new(Event {
            id,
            at_ms: 0,
            session,
            kind,
        })
    }

    fn command(id: u64, session: u64, line: &str) -> Arc<Event> {
        event(id, session, EventKind::Command { line: line.into() })
    }

    fn message(id: u64, session: u64) -> Arc<Event> {
        event(
            id,
            session,
            EventKind::Message {
                message_id: id,
                queue_id: "Q".into(),
                size: 1,
                from: "a@b".into(),
                rcpts: vec!["c@d".into()],
            },
        )
    }

    fn refusal(id: u64, session: u64) -> Arc<Event> {
        event(
            id,
            session,
            EventKind::Silent {
                action: "disconnect",
                phase: "rcpt",
                rule: None,
                rule_name: None,
                rule_at: None,
            },
        )
    }

    fn kept(mut events: Vec<Arc<Event>>) -> Vec<u64> {
        leave_out_settled(&mut events, |e| Some(e));
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn a_message_settles_its_own_transaction_only() {
        // Two sessions interleaved: 1 ends with a message, 2 with a refusal.
        let events = vec![
            command(1, 1, "EHLO a"),
            command(2, 1, "MAIL FROM:<a@b>"),
            command(3, 2, "mail from:<x@y>"),
            command(4, 1, "RCPT TO:<c@d>"),
            command(5, 2, "rcpt to:<z@y>"),
            refusal(6, 2),
            message(7, 1),
            // A transaction abandoned (RSET is not brief), then another that ends with a
            // message: the first keeps its commands.
            command(8, 1, "MAIL FROM:<a@b>"),
            command(9, 1, "RCPT TO:<gone@d>"),
            command(10, 1, "MAIL FROM:<a@b>"),
            command(11, 1, "RCPT TO:<c@d>"),
            message(12, 1),
            // Still open at the end: kept.
            command(13, 2, "MAIL FROM:<x@y>"),
        ];
        assert_eq!(kept(events), [1, 3, 5, 6, 7, 8, 9, 12, 13]);
    }

    #[test]
    fn another_event_of_the_session_keeps_the_commands() {
        let events = vec![
            command(1, 1, "MAIL FROM:<a@b>"),
            command(2, 1, "RCPT TO:<refused@d>"),
            refusal(3, 1),
            command(4, 1, "RCPT TO:<c@d>"),
            message(5, 1),
        ];
        assert_eq!(kept(events), [1, 2, 3, 5]);
        // Items without an event end nothing; nothing settled, nothing moves.
        let mut items = vec![None, Some(command(1, 1, "MAIL FROM:<a@b>")), None];
        leave_out_settled(&mut items, |e| e.as_deref());
        assert_eq!(items.len(), 3);
    }
}
