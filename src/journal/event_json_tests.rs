//! The hand-written JSON of every event kind against `serde_json`'s.

use std::sync::Arc;

use super::*;
use crate::journal::events::ReplyText;
use crate::smtp::reply::Reply;

/// Every byte JSON treats specially, and some that it does not.
const AWKWARD: &str = "a\"b\\c/d\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} \u{7f}é€😀";

fn kinds() -> Vec<EventKind> {
    let plain = Reply::parse_parts(250, None, &["OK"]).unwrap();
    let multi = Reply::parse_parts(550, Some("5.1.1"), &["no \"such\" user", "see\tthis"]).unwrap();
    let reply = |reply: Reply, rule: bool| EventKind::Reply {
        code: reply.code(),
        status: reply.status(),
        text: ReplyText(reply),
        phase: rule.then_some("rcpt"),
        rule: rule.then_some(4_000_000_000),
        rule_name: rule.then(|| Arc::from(AWKWARD)),
        rule_at: rule.then(|| "scenario.toml:12".to_owned()),
        catalog: rule.then_some("user_unknown"),
        flavor: rule.then_some("gmail"),
    };
    vec![
        EventKind::SessionStart {
            peer: "[::1]:2525".into(),
            tls: true,
        },
        EventKind::Command {
            line: AWKWARD.into(),
        },
        EventKind::Command {
            line: String::new(),
        },
        reply(plain, false),
        reply(multi, true),
        EventKind::Silent {
            action: "hang",
            phase: "data",
            rule: Some(0),
            rule_name: None,
            rule_at: Some("s.toml:1".into()),
        },
        EventKind::TlsStarted,
        EventKind::Message {
            message_id: u64::MAX,
            queue_id: "4F2A1B".into(),
            size: 0,
            from: String::new(),
            rcpts: vec!["x@y.example".into(), AWKWARD.into()],
        },
        EventKind::BounceScheduled {
            bounce: 7,
            message_id: 8,
            kind: "failed",
            to: "a@b.example".into(),
            recipients: vec!["x@y.example".into(), AWKWARD.into()],
            due_at_ms: 1_700_000_000_000,
        },
        EventKind::BounceScheduled {
            bounce: 7,
            message_id: 8,
            kind: "delayed",
            to: String::new(),
            recipients: Vec::new(),
            due_at_ms: 0,
        },
        EventKind::BounceRefused { pending: 10_000 },
        EventKind::BounceSent {
            bounce: 1,
            message_id: 2,
            kind: "complaint",
            to: "a@b.example".into(),
        },
        EventKind::BounceForwarded {
            bounce: 1,
            target: "smtp://127.0.0.1:25".into(),
            attempt: 3,
            ok: false,
            error: Some(AWKWARD.into()),
        },
        EventKind::BounceForwarded {
            bounce: 1,
            target: "smtp://127.0.0.1:25".into(),
            attempt: 1,
            ok: true,
            error: None,
        },
        EventKind::SessionEnd {
            tls: false,
            auth_user: None,
        },
        EventKind::SessionEnd {
            tls: true,
            auth_user: Some("user@example.com".into()),
        },
    ]
}

#[test]
fn every_kind_is_written_as_serde_json_writes_it() {
    for (index, kind) in kinds().into_iter().enumerate() {
        let event = Event {
            id: index as u64 + 1,
            at_ms: 1_764_000_000_123,
            session: 10u64.pow(index as u32 % 20),
            kind,
        };
        let mut ours = Vec::new();
        event.write_json(&mut ours);
        let theirs = serde_json::to_vec(&event).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap(),
            "{event:?}"
        );
    }
}

#[test]
fn every_byte_is_escaped_as_serde_json_escapes_it() {
    for byte in 0..=0x7f_u8 {
        let text = format!("<{}>", char::from(byte));
        let mut ours = Vec::new();
        write_str(&mut ours, &text);
        assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "byte {byte:#x}");
    }
}

#[test]
fn a_byte_to_escape_is_found_anywhere_in_a_long_string() {
    for byte in (0..=0x7f_u8).chain([0xc3]) {
        for at in 0..20 {
            let mut text: Vec<char> = "abcdefghijklmnopqrsé".chars().collect();
            text[at] = char::from(byte);
            let text: String = text.into_iter().collect();
            let mut ours = Vec::new();
            write_str(&mut ours, &text);
            assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "{text:?}");
        }
    }
}

#[test]
fn numbers_are_written_in_decimal() {
    for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        write_u64(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}
