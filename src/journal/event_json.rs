//! An event's JSON written straight into a buffer: the same bytes `serde_json` writes from the
//! derived `Serialize` (a test compares every kind, strings that need escaping included), at a
//! fraction of the cost, for the event stream, which writes every event a busy server records.
//!
//! `serde_json` escapes every key and every string byte by byte, and serializes an event as a
//! map (its kind is flattened into it). Here the keys are constants, and a string that needs no
//! escaping (nearly all of them) is checked in one pass the compiler vectorizes and copied whole.

use bytes::BufMut;

use super::events::{Event, EventKind};
use crate::smtp::reply::{EnhancedStatus, Reply};

/// Appends `n` in decimal.
pub fn write_u64(out: &mut impl BufMut, n: u64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Whether JSON must escape `byte`: a quote, a backslash or a control character.
fn must_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Appends `text` escaped as inside a JSON string (without the quotes), as `serde_json` does:
/// the short forms `\" \\ \b \f \n \r \t`, `\u00XX` for other control characters.
fn write_escaped(out: &mut impl BufMut, text: &str) {
    let bytes = text.as_bytes();
    // No early exit, so that the loop is vectorized: a whole string is checked at once.
    if !bytes.iter().fold(false, |any, &b| any | must_escape(b)) {
        out.put_slice(bytes);
        return;
    }
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !must_escape(byte) {
            continue;
        }
        out.put_slice(&bytes[start..at]);
        start = at + 1;
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hex = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
                out.put_slice(b"\\u00");
                out.put_slice(&hex);
                continue;
            }
        };
        out.put_slice(&[b'\\', short]);
    }
    out.put_slice(&bytes[start..]);
}

/// A JSON object being written: each field is `,"key":value` (the first without the comma).
struct Object<'a, B: BufMut> {
    out: &'a mut B,
}

impl<B: BufMut> Object<'_, B> {
    /// The key, with its comma; `key` is a constant that needs no escaping.
    fn key(&mut self, key: &str) -> &mut B {
        self.out.put_slice(b",\"");
        self.out.put_slice(key.as_bytes());
        self.out.put_slice(b"\":");
        self.out
    }

    fn u64(&mut self, key: &str, value: u64) {
        write_u64(self.key(key), value);
    }

    fn bool(&mut self, key: &str, value: bool) {
        let value: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).put_slice(value);
    }

    fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        write_str(out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.key(key).put_slice(b"null"),
        }
    }

    fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => self.key(key).put_slice(b"null"),
        }
    }

    fn status(&mut self, status: Option<&EnhancedStatus>) {
        let out = self.key("status");
        let Some(status) = status else {
            return out.put_slice(b"null");
        };
        out.put_u8(b'"');
        write_u64(out, status.class.into());
        out.put_u8(b'.');
        write_u64(out, status.subject.into());
        out.put_u8(b'.');
        write_u64(out, status.detail.into());
        out.put_u8(b'"');
    }

    /// The reply's text as `Reply::text` joins it, written line by line.
    fn reply_text(&mut self, reply: &Reply) {
        let out = self.key("text");
        out.put_u8(b'"');
        for (index, line) in reply.lines().enumerate() {
            if index > 0 {
                out.put_slice(b"\\n");
            }
            write_escaped(out, &line);
        }
        out.put_u8(b'"');
    }

    fn strings(&mut self, key: &str, values: &[String]) {
        let out = self.key(key);
        out.put_u8(b'[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                out.put_u8(b',');
            }
            write_str(out, value);
        }
        out.put_u8(b']');
    }
}

fn write_str(out: &mut impl BufMut, value: &str) {
    out.put_u8(b'"');
    write_escaped(out, value);
    out.put_u8(b'"');
}

impl Event {
    /// Appends the event's JSON, byte for byte what `serde_json` writes for it.
    pub fn write_json(&self, out: &mut impl BufMut) {
        out.put_slice(b"{\"id\":");
        write_u64(out, self.id);
        let mut object = Object { out };
        object.u64("at_ms", self.at_ms);
        object.u64("session", self.session);
        object.str("type", self.kind.type_name());
        self.kind.write_fields(&mut object);
        object.out.put_u8(b'}');
    }
}

impl EventKind {
    /// Writes the kind's own fields, in the order the derived `Serialize` writes them. Every
    /// field is named (no `..`), so that a new field does not compile until it is written here.
    fn write_fields<B: BufMut>(&self, object: &mut Object<'_, B>) {
        match self {
            EventKind::SessionStart { peer, tls } => {
                object.str("peer", peer);
                object.bool("tls", *tls);
            }
            EventKind::Command { line } => object.str("line", line),
            EventKind::Reply {
                code,
                status,
                text,
                phase,
                rule,
                rule_name,
                rule_at,
                catalog,
                flavor,
            } => {
                object.u64("code", (*code).into());
                object.status(status.as_ref());
                object.reply_text(&text.0);
                object.opt_str("phase", *phase);
                object.opt_u64("rule", rule.map(u64::from));
                object.opt_str("rule_name", rule_name.as_deref());
                object.opt_str("rule_at", rule_at.as_deref());
                object.opt_str("catalog", *catalog);
                object.opt_str("flavor", *flavor);
            }
            EventKind::Silent {
                action,
                phase,
                rule,
                rule_name,
                rule_at,
            } => {
                object.str("action", action);
                object.str("phase", phase);
                object.opt_u64("rule", rule.map(u64::from));
                object.opt_str("rule_name", rule_name.as_deref());
                object.opt_str("rule_at", rule_at.as_deref());
            }
            EventKind::TlsStarted => {}
            EventKind::Message {
                message_id,
                queue_id,
                size,
            } => {
                object.u64("message_id", *message_id);
                object.str("queue_id", queue_id);
                object.u64("size", *size as u64);
            }
            EventKind::BounceScheduled {
                bounce,
                message_id,
                kind,
                to,
                recipients,
                due_at_ms,
            } => {
                object.u64("bounce", *bounce);
                object.u64("message_id", *message_id);
                object.str("kind", kind);
                object.str("to", to);
                object.strings("recipients", recipients);
                object.u64("due_at_ms", *due_at_ms);
            }
            EventKind::BounceRefused { pending } => object.u64("pending", *pending as u64),
            EventKind::BounceSent {
                bounce,
                message_id,
                kind,
                to,
            } => {
                object.u64("bounce", *bounce);
                object.u64("message_id", *message_id);
                object.str("kind", kind);
                object.str("to", to);
            }
            EventKind::BounceForwarded {
                bounce,
                target,
                attempt,
                ok,
                error,
            } => {
                object.u64("bounce", *bounce);
                object.str("target", target);
                object.u64("attempt", (*attempt).into());
                object.bool("ok", *ok);
                object.opt_str("error", error.as_deref());
            }
            EventKind::SessionEnd { tls, auth_user } => {
                object.bool("tls", *tls);
                object.opt_str("auth_user", auth_user.as_deref());
            }
        }
    }
}

#[cfg(test)]
#[path = "event_json_tests.rs"]
mod tests;
