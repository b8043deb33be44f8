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

/// Whether any byte must be escaped, checked eight at a time: each byte of a word is tested at
/// once for being below 0x20 or equal to `"` or `\` (a borrow may mark a byte after a match
/// too, never a word without one).
fn any_to_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_ne_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        if below(word, 0x20) | below(quote, 1) | below(backslash, 1) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| must_escape(b))
}

/// Appends `text` escaped as inside a JSON string (without the quotes), as `serde_json` does:
/// the short forms `\" \\ \b \f \n \r \t`, `\u00XX` for other control characters.
fn write_escaped(out: &mut impl BufMut, text: &str) {
    let bytes = text.as_bytes();
    if !any_to_escape(bytes) {
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

/// `,"name":`, the start of a field after the first (`name` needs no escaping).
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// A JSON object being written: each field is `,"key":value` (the first without the comma).
struct Object<'a, B: BufMut> {
    out: &'a mut B,
}

impl<B: BufMut> Object<'_, B> {
    /// The key, with its comma: a [`key!`].
    fn key(&mut self, key: &'static str) -> &mut B {
        self.out.put_slice(key.as_bytes());
        self.out
    }

    fn u64(&mut self, key: &'static str, value: u64) {
        write_u64(self.key(key), value);
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        let value: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).put_slice(value);
    }

    fn str(&mut self, key: &'static str, value: &str) {
        let out = self.key(key);
        write_str(out, value);
    }

    /// A string that needs no escaping.
    fn raw_str(&mut self, key: &'static str, value: &str) {
        let out = self.key(key);
        out.put_u8(b'"');
        out.put_slice(value.as_bytes());
        out.put_u8(b'"');
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.key(key).put_slice(b"null"),
        }
    }

    fn opt_u64(&mut self, key: &'static str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => self.key(key).put_slice(b"null"),
        }
    }

    fn status(&mut self, status: Option<&EnhancedStatus>) {
        let out = self.key(key!("status"));
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
        let out = self.key(key!("text"));
        out.put_u8(b'"');
        for (index, line) in reply.lines().enumerate() {
            if index > 0 {
                out.put_slice(b"\\n");
            }
            write_escaped(out, &line);
        }
        out.put_u8(b'"');
    }

    /// The scenario rule that decided, its name and its place.
    fn rule(&mut self, rule: Option<u32>, name: Option<&str>, at: Option<&str>) {
        self.opt_u64(key!("rule"), rule.map(u64::from));
        self.opt_str(key!("rule_name"), name);
        self.opt_str(key!("rule_at"), at);
    }

    fn strings(&mut self, key: &'static str, values: &[String]) {
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
        self.write_json_then(out, |_| {});
    }

    /// The event's JSON with one more field, `"merged":{"messages":N,"rcpts":[…]}`: how the
    /// brief event stream writes a run of one session's `message` events read together (this
    /// one, the last, with how many they were and every recipient they named).
    pub fn write_json_merged(&self, out: &mut impl BufMut, messages: usize, rcpts: &[String]) {
        self.write_json_then(out, |object| {
            let out = object.key(key!("merged"));
            out.put_slice(b"{\"messages\":");
            write_u64(out, messages as u64);
            let mut merged = Object { out };
            merged.strings(key!("rcpts"), rcpts);
            merged.out.put_u8(b'}');
        });
    }

    fn write_json_then<B: BufMut>(&self, out: &mut B, more: impl FnOnce(&mut Object<'_, B>)) {
        out.put_slice(b"{\"id\":");
        write_u64(out, self.id);
        let mut object = Object { out };
        object.u64(key!("at_ms"), self.at_ms);
        object.u64(key!("session"), self.session);
        // The type names are constants that need no escaping.
        object.raw_str(key!("type"), self.kind.type_name());
        self.kind.write_fields(&mut object);
        more(&mut object);
        object.out.put_u8(b'}');
    }
}

impl EventKind {
    /// Writes the kind's own fields, in the order the derived `Serialize` writes them. Every
    /// field is named (no `..`), so that a new field does not compile until it is written here.
    fn write_fields<B: BufMut>(&self, object: &mut Object<'_, B>) {
        match self {
            EventKind::SessionStart { peer, tls } => {
                object.str(key!("peer"), peer);
                object.bool(key!("tls"), *tls);
            }
            EventKind::Command { line } => object.str(key!("line"), line),
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
                object.u64(key!("code"), (*code).into());
                object.status(status.as_ref());
                object.reply_text(&text.0);
                object.opt_str(key!("phase"), *phase);
                object.rule(*rule, rule_name.as_deref(), rule_at.as_deref());
                object.opt_str(key!("catalog"), *catalog);
                object.opt_str(key!("flavor"), *flavor);
            }
            EventKind::Silent {
                action,
                phase,
                rule,
                rule_name,
                rule_at,
            } => {
                object.str(key!("action"), action);
                object.str(key!("phase"), phase);
                object.rule(*rule, rule_name.as_deref(), rule_at.as_deref());
            }
            EventKind::TlsStarted => {}
            EventKind::Message {
                message_id,
                queue_id,
                size,
                from,
                rcpts,
            } => {
                object.u64(key!("message_id"), *message_id);
                object.str(key!("queue_id"), queue_id);
                object.u64(key!("size"), *size as u64);
                object.str(key!("from"), from);
                object.strings(key!("rcpts"), rcpts);
            }
            EventKind::BounceScheduled { .. }
            | EventKind::BounceRefused { .. }
            | EventKind::BounceSent { .. }
            | EventKind::BounceForwarded { .. } => self.write_bounce_fields(object),
            EventKind::SessionEnd { tls, auth_user } => {
                object.bool(key!("tls"), *tls);
                object.opt_str(key!("auth_user"), auth_user.as_deref());
            }
        }
    }

    /// [`EventKind::write_fields`] of the kinds about later notifications.
    fn write_bounce_fields<B: BufMut>(&self, object: &mut Object<'_, B>) {
        match self {
            EventKind::BounceScheduled {
                bounce,
                message_id,
                kind,
                to,
                recipients,
                due_at_ms,
            } => {
                object.u64(key!("bounce"), *bounce);
                object.u64(key!("message_id"), *message_id);
                object.str(key!("kind"), kind);
                object.str(key!("to"), to);
                object.strings(key!("recipients"), recipients);
                object.u64(key!("due_at_ms"), *due_at_ms);
            }
            EventKind::BounceRefused { pending } => object.u64(key!("pending"), *pending as u64),
            EventKind::BounceSent {
                bounce,
                message_id,
                kind,
                to,
            } => {
                object.u64(key!("bounce"), *bounce);
                object.u64(key!("message_id"), *message_id);
                object.str(key!("kind"), kind);
                object.str(key!("to"), to);
            }
            EventKind::BounceForwarded {
                bounce,
                target,
                attempt,
                ok,
                error,
            } => {
                object.u64(key!("bounce"), *bounce);
                object.str(key!("target"), target);
                object.u64(key!("attempt"), (*attempt).into());
                object.bool(key!("ok"), *ok);
                object.opt_str(key!("error"), error.as_deref());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "event_json_tests.rs"]
mod tests;
