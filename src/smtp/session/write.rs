//! Writing replies: every reply goes through [`Session::send`] (a pre-encoded [`Reply`]) or
//! [`Session::sent`] (one written part by part), which also report it as a [`Trace`], so the
//! output and the trace never disagree.

use bytes::{BufMut, Bytes, BytesMut};

use super::output::{ReplyTrace, Trace};
use super::Session;
use crate::smtp::reply::{EnhancedStatus, Reply};

impl Session {
    /// Writes a pre-encoded reply and reports it.
    pub(super) fn send(&mut self, out: &mut BytesMut, reply: &Reply) {
        out.put_slice(reply.wire());
        let copy = self.tracing.then(|| reply.clone());
        self.report(reply.code(), reply.status(), copy);
    }

    /// Reports the reply written into `out` since `mark`, part by part (the greeting, the EHLO
    /// reply, the 250 with its queue id): a copy of it is only made while tracing.
    pub(super) fn sent(
        &mut self,
        out: &BytesMut,
        mark: usize,
        code: u16,
        status: Option<EnhancedStatus>,
    ) {
        let copy = self
            .tracing
            .then(|| Reply::from_wire(code, status, Bytes::copy_from_slice(&out[mark..])));
        self.report(code, status, copy);
    }

    fn report(&mut self, code: u16, status: Option<EnhancedStatus>, reply: Option<Reply>) {
        // A 334 challenge is part of the AUTH exchange, not the decision's answer.
        let decided = if code == 334 {
            None
        } else {
            self.deciding.take()
        };
        if reply.is_none() {
            if let Some(Trace::Reply(last)) = self.trace.last_mut() {
                let same = last.code == code && last.status == status && last.decided == decided;
                if same && last.reply.is_none() {
                    last.times = last.times.saturating_add(1);
                    return;
                }
            }
        }
        self.trace.push(Trace::Reply(ReplyTrace {
            code,
            status,
            decided,
            reply,
            times: 1,
        }));
    }
}

/// A command line for the journal, with AUTH credentials hidden.
pub(super) fn redact(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    if starts_with_ignore_case(line, b"AUTH ") {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or("AUTH");
        let mechanism = words.next().unwrap_or("");
        return match words.next() {
            Some(_) => format!("{verb} {mechanism} ****"),
            None => format!("{verb} {mechanism}"),
        };
    }
    text.into_owned()
}

/// Replaces the text of `slot` without giving up its buffer.
pub(super) fn set(slot: &mut String, value: &str) {
    slot.clear();
    slot.push_str(value);
}

/// Writes `parts` and CRLF: a reply line built without the formatting machinery.
pub(super) fn put_line(out: &mut BytesMut, parts: &[&[u8]]) {
    for part in parts {
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
}

/// Writes `value` in decimal.
pub(super) fn push_decimal(out: &mut BytesMut, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

pub(super) fn strip_line_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(super) fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `fmt::Write` into a `BytesMut` without an intermediate `String`.
pub(super) struct Writer<'a>(pub(super) &'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.put_slice(text.as_bytes());
        Ok(())
    }
}
