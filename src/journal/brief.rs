//! What a list of sessions needs of the journal: the brief events (the `brief` filter of
//! `GET /api/events` and of the event stream, which the web page reads), and, among events read
//! together, the MAIL and RCPT commands a `message` event makes redundant.
//!
//! Watching a busy server must cost it little: a message on a new connection makes some fifteen
//! events, of which a list of sessions needs six (start, EHLO, MAIL, RCPT, message, end), and
//! four once the accepted message's event names its envelope; a connection that sends many
//! messages needs one event per chunk of the stream once a run of them is merged.

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
    Settler::default().run(items, event_of, None::<fn(&mut T, usize, Vec<String>)>);
}

/// At most this many distinct recipients are named by a merged run of messages (the page lists
/// a session's recipients as a sample past a few).
pub const MERGED_RCPTS: usize = 32;

/// [`leave_out_settled`], and the merging of runs of messages, with working memory kept from
/// one run to the next (the event stream runs it on every chunk it writes).
#[derive(Debug, Default)]
pub struct Settler {
    /// Per session seen in the items: its open transaction and its run of messages.
    sessions: HashMap<u64, SessionState, BuildHasherDefault<SessionHasher>>,
    /// Per item, the transaction's command before it (`NONE` for the first).
    before: Vec<usize>,
    /// Per item, whether it is left out.
    left_out: Vec<bool>,
}

const NONE: usize = usize::MAX;

/// What [`Settler`] follows of one session.
#[derive(Debug)]
struct SessionState {
    /// The last MAIL or RCPT command of its open transaction (`NONE`: none open).
    last_command: usize,
    /// Its run of messages (`count` 0: none).
    run: Run,
}

/// A run of one session's `message` events with nothing else of the session that stays
/// between them.
#[derive(Debug, Default)]
struct Run {
    first: usize,
    last: usize,
    count: usize,
    /// Every recipient named, from the second message on (the first's are added at the end).
    rcpts: Vec<String>,
}

impl Settler {
    /// Leaves out what [`leave_out_settled`] does; with `merge`, also merges each run of one
    /// session's `message` events (nothing else of that session that stays between them) into
    /// its last: the others are left out, and `merge` gets the last with how many they were and
    /// every recipient they named (at most [`MERGED_RCPTS`]). A connection that sends many
    /// messages is then one event a chunk, not one a message.
    pub fn run<T>(
        &mut self,
        items: &mut Vec<T>,
        event_of: impl Fn(&T) -> Option<&Event>,
        mut merge: Option<impl FnMut(&mut T, usize, Vec<String>)>,
    ) {
        self.sessions.clear();
        self.before.clear();
        self.before.resize(items.len(), NONE);
        self.left_out.clear();
        self.left_out.resize(items.len(), false);
        let merging = merge.is_some();
        let mut finished: Vec<Run> = Vec::new();
        let mut any = false;
        for (at, item) in items.iter().enumerate() {
            if let Some(event) = event_of(item) {
                any |= self.follow(at, event, merging, &mut finished);
            }
        }
        if !any {
            return;
        }
        if let Some(merge) = &mut merge {
            for (last, count, rcpts) in self.merged(items, &event_of, finished) {
                merge(&mut items[last], count, rcpts);
            }
        }
        let mut at = 0;
        items.retain(|_| {
            at += 1;
            !self.left_out[at - 1]
        });
    }
}

impl Settler {
    /// Follows the event at `at` of the items: its session's open transaction and run of
    /// messages; runs that end go to `finished`. Whether it left an item out.
    fn follow(&mut self, at: usize, event: &Event, merging: bool, finished: &mut Vec<Run>) -> bool {
        let envelope = match &event.kind {
            EventKind::Command { line } => names_envelope(line),
            _ => None,
        };
        let opens = envelope.is_some() || matches!(event.kind, EventKind::Message { .. });
        let state = if opens {
            self.sessions
                .entry(event.session)
                .or_insert_with(|| SessionState {
                    last_command: NONE,
                    run: Run::default(),
                })
        } else {
            // Anything else only ends what the session has open, if anything.
            match self.sessions.get_mut(&event.session) {
                Some(state) => state,
                None => return false,
            }
        };
        let mut left_out = false;
        match (&event.kind, envelope) {
            (_, Some(mail)) => {
                // A new MAIL leaves the open transaction's commands in, and they end the run;
                // RCPT joins the transaction.
                if mail && state.last_command != NONE {
                    finished.extend(end_run(&mut state.run));
                }
                self.before[at] = if mail { NONE } else { state.last_command };
                state.last_command = at;
            }
            (EventKind::Message { rcpts, .. }, None) => {
                let mut next = std::mem::replace(&mut state.last_command, NONE);
                while next != NONE {
                    self.left_out[next] = true;
                    left_out = true;
                    next = self.before[next];
                }
                if merging {
                    let run = &mut state.run;
                    if run.count == 0 {
                        run.first = at;
                    } else {
                        self.left_out[run.last] = true;
                        left_out = true;
                        add_rcpts(&mut run.rcpts, rcpts);
                    }
                    run.last = at;
                    run.count += 1;
                }
            }
            _ => {
                state.last_command = NONE;
                finished.extend(end_run(&mut state.run));
            }
        }
        left_out
    }

    /// Every run of two messages or more, `finished` and still open: its last item, how many
    /// messages and every recipient they named.
    fn merged<T>(
        &mut self,
        items: &[T],
        event_of: &impl Fn(&T) -> Option<&Event>,
        mut finished: Vec<Run>,
    ) -> Vec<(usize, usize, Vec<String>)> {
        finished.extend(
            self.sessions
                .values_mut()
                .filter_map(|s| end_run(&mut s.run)),
        );
        let rcpts_of = |at: usize| match event_of(&items[at]).map(|e| &e.kind) {
            Some(EventKind::Message { rcpts, .. }) => rcpts.as_slice(),
            _ => &[],
        };
        finished
            .into_iter()
            .map(|run| {
                let mut rcpts = Vec::new();
                add_rcpts(&mut rcpts, rcpts_of(run.first));
                add_rcpts(&mut rcpts, &run.rcpts);
                (run.last, run.count, rcpts)
            })
            .collect()
    }
}

/// The run, if it was one of two messages or more; it starts over either way.
fn end_run(run: &mut Run) -> Option<Run> {
    let ended = std::mem::take(run);
    (ended.count > 1).then_some(ended)
}

/// Adds the recipients `to` does not name yet, up to [`MERGED_RCPTS`].
fn add_rcpts(to: &mut Vec<String>, rcpts: &[String]) {
    for rcpt in rcpts {
        if to.len() >= MERGED_RCPTS {
            return;
        }
        if !to.contains(rcpt) {
            to.push(rcpt.clone());
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

    fn message_to(id: u64, session: u64, rcpt: &str) -> Arc<Event> {
        event(
            id,
            session,
            EventKind::Message {
                message_id: id,
                queue_id: "Q".into(),
                size: 1,
                from: "a@b".into(),
                rcpts: vec![rcpt.into()],
            },
        )
    }

    /// How many messages a merged item stands for, and the recipients they named.
    type Merge = Option<(usize, Vec<String>)>;

    /// The ids of `events` once settled and merged, with what each merged item stands for.
    fn settled_and_merged(events: Vec<Arc<Event>>) -> Vec<(u64, Merge)> {
        let mut items: Vec<(Arc<Event>, Merge)> = events.into_iter().map(|e| (e, None)).collect();
        Settler::default().run(
            &mut items,
            |(e, _)| Some(e),
            Some(|(_, merged): &mut (Arc<Event>, Merge), messages, rcpts| {
                *merged = Some((messages, rcpts))
            }),
        );
        items
            .into_iter()
            .map(|(e, merged)| (e.id, merged))
            .collect()
    }

    #[test]
    fn a_run_of_messages_is_written_as_its_last() {
        let seen = settled_and_merged(vec![
            message_to(1, 1, "x@d"),
            message_to(2, 2, "lone@d"),
            message_to(3, 1, "y@d"),
            message_to(4, 1, "x@d"),
            // Another event of session 1 ends its run; a new one starts after it.
            command(5, 1, "EHLO again"),
            message_to(6, 1, "z@d"),
            message_to(7, 1, "z@d"),
        ]);
        let names = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            [
                (2, None),
                (4, Some((3, names(&["x@d", "y@d"])))),
                (5, None),
                (7, Some((2, names(&["z@d"])))),
            ]
        );
        // Recipients are bounded.
        let many = settled_and_merged(
            (0..100)
                .map(|i| message_to(i + 1, 1, &format!("r{i}@d")))
                .collect(),
        );
        let counts: Vec<_> = many
            .iter()
            .map(|(id, merged)| (*id, merged.as_ref().map(|(n, r)| (*n, r.len()))))
            .collect();
        assert_eq!(counts, [(100, Some((100, MERGED_RCPTS)))]);
    }

    #[test]
    fn transactions_settled_by_their_messages_do_not_end_a_run() {
        // A reused connection: each message settles its MAIL and RCPT, and the run goes on;
        // an abandoned transaction's commands stay, and end the run.
        let seen = settled_and_merged(vec![
            command(1, 1, "MAIL FROM:<a@b>"),
            command(2, 1, "RCPT TO:<x@d>"),
            message_to(3, 1, "x@d"),
            command(4, 1, "MAIL FROM:<a@b>"),
            command(5, 1, "RCPT TO:<y@d>"),
            message_to(6, 1, "y@d"),
            command(7, 1, "MAIL FROM:<a@b>"),
            command(8, 1, "RCPT TO:<gone@d>"),
            command(9, 1, "MAIL FROM:<a@b>"),
            command(10, 1, "RCPT TO:<z@d>"),
            message_to(11, 1, "z@d"),
        ]);
        let two = Some((2, vec!["x@d".to_owned(), "y@d".to_owned()]));
        assert_eq!(seen, [(6, two), (7, None), (8, None), (11, None)]);
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
