//! Which events a reader wants: one session, one kind, the replies of one scenario rule or one
//! catalog entry, only what a list of sessions needs (`brief`), after some id; read oldest or
//! newest first. `GET /api/events` and the event stream take the same filters.

use super::brief::is_brief;
use super::events::{Event, EventKind, EventLog};
use std::sync::Arc;

/// The event kinds, as `type` names them.
pub const EVENT_TYPES: [&str; 11] = [
    "session_start",
    "command",
    "reply",
    "silent",
    "tls_started",
    "message",
    "session_end",
    "bounce_scheduled",
    "bounce_sent",
    "bounce_forwarded",
    "bounce_refused",
];

/// What a reader asks for; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this session's events.
    pub session: Option<u64>,
    /// Only events with a larger id.
    pub since: u64,
    /// Only events of this kind (one of [`EVENT_TYPES`]).
    pub kind: Option<String>,
    /// Only replies and silent decisions of this scenario rule: its `name`, or its index.
    pub rule: Option<String>,
    /// Only replies with this catalog name.
    pub catalog: Option<String>,
    /// Only what a list of sessions needs (no commands but HELO, EHLO, MAIL and RCPT, no reply
    /// below 400 that no rule or catalog entry chose): the web page reads this, so that
    /// watching a busy server costs it a few events per message, not every command and reply.
    /// Readers of many events at once also leave out what [`super::brief::leave_out_settled`]
    /// finds redundant.
    pub brief: bool,
}

impl EventFilter {
    /// Whether `event` is wanted.
    pub fn matches(&self, event: &Event) -> bool {
        event.id > self.since
            && self.session.is_none_or(|s| s == event.session)
            && self
                .kind
                .as_deref()
                .is_none_or(|k| k == event.kind.type_name())
            && self.rule.as_deref().is_none_or(|r| rule_is(&event.kind, r))
            && self
                .catalog
                .as_deref()
                .is_none_or(|c| matches!(&event.kind, EventKind::Reply { catalog: Some(name), .. } if *name == c))
            && (!self.brief || is_brief(&event.kind))
    }
}

/// Whether the event was decided by the rule named (or numbered) `wanted`.
fn rule_is(kind: &EventKind, wanted: &str) -> bool {
    let (index, name) = match kind {
        EventKind::Reply {
            rule: Some(index),
            rule_name,
            ..
        }
        | EventKind::Silent {
            rule: Some(index),
            rule_name,
            ..
        } => (*index, rule_name.as_deref()),
        _ => return false,
    };
    name == Some(wanted) || wanted.parse::<u32>().is_ok_and(|i| i == index)
}

impl EventKind {
    /// The kind's name, as the JSON `type` field and the `type` filter write it.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::SessionStart { .. } => "session_start",
            EventKind::Command { .. } => "command",
            EventKind::Reply { .. } => "reply",
            EventKind::Silent { .. } => "silent",
            EventKind::TlsStarted => "tls_started",
            EventKind::Message { .. } => "message",
            EventKind::SessionEnd { .. } => "session_end",
            EventKind::BounceScheduled { .. } => "bounce_scheduled",
            EventKind::BounceSent { .. } => "bounce_sent",
            EventKind::BounceForwarded { .. } => "bounce_forwarded",
            EventKind::BounceRefused { .. } => "bounce_refused",
        }
    }
}

impl EventLog {
    /// Kept events that `filter` wants, at most `limit`: the oldest of them first, or with
    /// `newest_first`, the newest of them first (the last `limit` events, latest on top).
    pub fn find(&self, filter: &EventFilter, limit: usize, newest_first: bool) -> Vec<Arc<Event>> {
        self.with_kept(|kept| {
            let wanted = |e: &&Arc<Event>| filter.matches(e);
            if newest_first {
                kept.iter()
                    .rev()
                    .filter(wanted)
                    .take(limit)
                    .cloned()
                    .collect()
            } else {
                kept.iter().filter(wanted).take(limit).cloned().collect()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::Reply;

    fn reply(rule: Option<(u32, &str)>, catalog: Option<&'static str>) -> EventKind {
        EventKind::Reply {
            code: 550,
            status: None,
            text: crate::journal::events::ReplyText(Reply::new(550, None, &["x"]).unwrap()),
            phase: Some("rcpt"),
            rule: rule.map(|r| r.0),
            rule_name: rule.map(|r| Arc::from(r.1)),
            rule_at: None,
            catalog,
            flavor: None,
        }
    }

    #[test]
    fn filters_combine_and_newest_first_takes_the_latest() {
        let log = EventLog::new(100);
        log.record(
            0,
            1,
            [
                EventKind::TlsStarted,
                reply(Some((0, "gone")), Some("user_unknown")),
            ],
        );
        log.record(
            0,
            2,
            [
                reply(Some((1, "full")), Some("mailbox_full")),
                reply(None, None),
            ],
        );
        let ids = |filter: &EventFilter, newest_first| -> Vec<u64> {
            log.find(filter, 10, newest_first)
                .iter()
                .map(|e| e.id)
                .collect()
        };
        let all = EventFilter::default();
        assert_eq!(ids(&all, false), [1, 2, 3, 4]);
        assert_eq!(ids(&all, true), [4, 3, 2, 1]);
        assert_eq!(
            log.find(&all, 2, true)
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [4, 3]
        );
        let by_rule = |r: &str| EventFilter {
            rule: Some(r.into()),
            ..all.clone()
        };
        assert_eq!(ids(&by_rule("gone"), false), [2]);
        assert_eq!(ids(&by_rule("1"), false), [3]);
        assert_eq!(ids(&by_rule("nope"), false), Vec::<u64>::new());
        let kind = EventFilter {
            kind: Some("reply".into()),
            session: Some(2),
            ..all.clone()
        };
        assert_eq!(ids(&kind, false), [3, 4]);
        let catalog = EventFilter {
            catalog: Some("user_unknown".into()),
            since: 1,
            ..all
        };
        assert_eq!(ids(&catalog, false), [2]);
        for kind in [EventKind::TlsStarted, reply(None, None)] {
            assert!(EVENT_TYPES.contains(&kind.type_name()));
            let json = serde_json::to_value(&kind).unwrap();
            assert_eq!(json["type"], kind.type_name());
        }
    }

    #[test]
    fn brief_keeps_what_a_session_list_needs() {
        let command = |line: &str| EventKind::Command { line: line.into() };
        // The policy answers at its phases: a plain 250 at RCPT has a phase too.
        let protocol_reply = |code: u16| EventKind::Reply {
            code,
            status: None,
            text: crate::journal::events::ReplyText(Reply::new(code, None, &["x"]).unwrap()),
            phase: Some("rcpt"),
            rule: None,
            rule_name: None,
            rule_at: None,
            catalog: None,
            flavor: None,
        };
        let decided_accept = match reply(Some((0, "seq")), None) {
            EventKind::Reply {
                phase,
                rule,
                rule_name,
                text,
                ..
            } => EventKind::Reply {
                code: 250,
                status: None,
                text,
                phase,
                rule,
                rule_name,
                rule_at: None,
                catalog: None,
                flavor: None,
            },
            _ => unreachable!(),
        };
        let kept = [
            command("EHLO client.example"),
            command("helo x"),
            command("hElO y"),
            command("MAIL FROM:<a@b>"),
            command("rcpt to:<c@d>"),
            protocol_reply(421),
            protocol_reply(503),
            reply(None, Some("user_unknown")),
            decided_accept,
            EventKind::TlsStarted,
            EventKind::SessionEnd {
                tls: false,
                auth_user: None,
            },
        ];
        let left_out = [
            command("DATA"),
            command("QUIT"),
            command("RSET"),
            command("AUTH PLAIN ***"),
            command("MAI"),
            command("MAIX FROM:<a@b>"),
            command("M\u{1}IL"),
            command(""),
            protocol_reply(250),
            protocol_reply(354),
            protocol_reply(221),
        ];
        let log = EventLog::new(100);
        log.record(0, 1, kept.iter().chain(&left_out).cloned());
        let brief = EventFilter {
            brief: true,
            ..EventFilter::default()
        };
        let found: Vec<EventKind> = log
            .find(&brief, 100, false)
            .iter()
            .map(|e| e.kind.clone())
            .collect();
        assert_eq!(found, kept);
        assert_eq!(
            log.find(&EventFilter::default(), 100, false).len(),
            kept.len() + left_out.len()
        );
    }
}
