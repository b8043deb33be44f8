//! From an accepted message to its notices: which recipients get which notification when,
//! honouring `NOTIFY` per recipient (RFC 3461 §4.1) and never answering the null sender
//! (RFC 5321 §4.5.5, RFC 3834 §2).

use std::sync::Arc;

use bytes::Bytes;

use super::notice::{Kind, Notice, NoticeRecipient, Original};
use super::style::Style;
use crate::smtp::command::{Notify, Ret};
use crate::smtp::policy::{Fate, Later};
use crate::smtp::session::Message;

/// What the scheduler is told about where a message came from.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    /// When it was accepted, in milliseconds since the epoch (on the clock).
    pub arrival_ms: u64,
    /// The name failmail reports as.
    pub hostname: &'a str,
}

/// The notices a message gets, due time first (ids not yet given): empty for a message with no
/// later fate, for the null sender, and for recipients whose `NOTIFY` asks for none.
pub fn notices(message: &Message, arrival: &Arrival<'_>) -> Vec<Notice> {
    let Some(dsn) = message.dsn.as_deref() else {
        return Vec::new();
    };
    if message.mail_from.is_empty() {
        return Vec::new();
    }
    let mut notices: Vec<Notice> = Vec::new();
    let mut original: Option<Arc<Original>> = None;
    for (recipient, params) in message.recipients.iter().zip(&dsn.recipients) {
        let Some(later) = &params.later else {
            continue;
        };
        for (after, kind, retry_until) in steps(later) {
            if !wanted(params.notify, kind) {
                continue;
            }
            let due_ms = arrival.arrival_ms.saturating_add(after);
            let style = Style::of(later.style);
            let entry = NoticeRecipient {
                recipient: recipient.clone(),
                original: params.orcpt.as_deref().map(decode_orcpt),
                later: later.clone(),
            };
            // An auto-reply comes from its recipient alone; the others list every recipient
            // that reached the same state at the same time.
            let same = |n: &&mut Notice| {
                kind != Kind::AutoReply && n.due_ms == due_ms && n.kind == kind && n.style == style
            };
            if let Some(notice) = notices.iter_mut().find(same) {
                notice.recipients.push(entry);
                continue;
            }
            let original = original
                .get_or_insert_with(|| {
                    Arc::new(keep(message, dsn.ret, dsn.envid.as_deref(), arrival))
                })
                .clone();
            notices.push(Notice {
                id: 0,
                message_id: 0,
                due_ms,
                kind,
                style,
                original,
                recipients: vec![entry],
                retry_until_ms: retry_until.map(|r| arrival.arrival_ms.saturating_add(r)),
            });
        }
    }
    notices.sort_by_key(|n| (n.due_ms, n.kind));
    notices
}

/// A fate's notices: (milliseconds after arrival, kind, retried until — for delay notices).
fn steps(later: &Later) -> Vec<(u64, Kind, Option<u64>)> {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match &later.fate {
        Fate::Delivered { after } => vec![(ms(*after), Kind::Delivered, None)],
        Fate::Complaint { after } => vec![(ms(*after), Kind::Complaint, None)],
        Fate::AutoReply { after } => vec![(ms(*after), Kind::AutoReply, None)],
        Fate::Bounced {
            reply,
            after,
            delay_notice,
            give_up,
            ..
        } => {
            let (end, kind) = if reply.code() < 500 {
                (ms(*give_up), Kind::Expired)
            } else {
                (ms(*after), Kind::Failed)
            };
            let mut steps = Vec::with_capacity(2);
            if let Some(notice) = delay_notice {
                steps.push((ms(*notice), Kind::Delayed, Some(end)));
            }
            steps.push((end, kind, None));
            steps
        }
    }
}

/// RFC 3461 §4.1: absent `NOTIFY` means failures (and, as most MTAs do, delays); `NEVER` means
/// nothing; otherwise exactly what is listed. Complaints and auto-replies come from the
/// recipient's side, not from the mail system, and do not depend on it.
fn wanted(notify: Option<Notify>, kind: Kind) -> bool {
    match (kind, notify) {
        (Kind::Complaint | Kind::AutoReply, _) => true,
        (kind, None) => matches!(kind, Kind::Failed | Kind::Expired | Kind::Delayed),
        (_, Some(notify)) if notify.never => false,
        (Kind::Failed | Kind::Expired, Some(notify)) => notify.failure,
        (Kind::Delayed, Some(notify)) => notify.delay,
        (Kind::Delivered, Some(notify)) => notify.success,
    }
}

/// What a notice keeps of its message: all of it for `RET=FULL` and for reports (which quote
/// it whole), else its header section only.
fn keep(
    message: &Message,
    ret: Option<Ret>,
    envid: Option<&str>,
    arrival: &Arrival<'_>,
) -> Original {
    let return_full = ret == Some(Ret::Full);
    let reports = message.dsn.as_deref().is_some_and(|dsn| {
        dsn.recipients.iter().any(|r| {
            r.later
                .as_ref()
                .is_some_and(|l| matches!(l.fate, Fate::Complaint { .. } | Fate::AutoReply { .. }))
        })
    });
    let content = if return_full || reports {
        message.data.clone()
    } else {
        Bytes::copy_from_slice(header_section(&message.data))
    };
    Original {
        queue_id: message.queue_id.clone(),
        mail_from: message.mail_from.clone(),
        envid: envid.map(xtext_decode),
        return_full,
        content,
        arrival_ms: arrival.arrival_ms,
        reporting_mta: arrival.hostname.to_owned(),
        client_helo: message.helo.clone(),
        client_ip: message.peer.ip().to_string(),
    }
}

/// The header section of a message, with the line end that closes its last header.
pub fn header_section(data: &[u8]) -> &[u8] {
    let crlf = memchr::memmem::find(data, b"\r\n\r\n").map(|i| i + 2);
    let lf = memchr::memmem::find(data, b"\n\n").map(|i| i + 1);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(data.len()),
    };
    &data[..end]
}

/// `addr-type;xtext` (RFC 3461 §4.2) as (type, decoded address).
fn decode_orcpt(orcpt: &str) -> (String, String) {
    match orcpt.split_once(';') {
        Some((kind, address)) => (kind.trim().to_owned(), xtext_decode(address.trim())),
        None => ("rfc822".to_owned(), xtext_decode(orcpt)),
    }
}

/// Decodes xtext (RFC 3461 §4): `+XX` is the octet with that hexadecimal value.
pub fn xtext_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', Some(octet)) => {
                out.push(octet);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("QQ+2B1"), "QQ+1");
        assert_eq!(xtext_decode("a+3Db+"), "a=b+");
        assert_eq!(
            decode_orcpt("rfc822;bob+2Bx@example.org"),
            ("rfc822".to_owned(), "bob+x@example.org".to_owned())
        );
    }

    #[test]
    fn header_section_ends_at_the_blank_line() {
        assert_eq!(
            header_section(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_section(b"A: 1\n\nbody"), b"A: 1\n");
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
    }

    #[test]
    fn notify_as_rfc_3461_says() {
        let notify = |never, success, failure, delay| Notify {
            never,
            success,
            failure,
            delay,
        };
        assert!(wanted(None, Kind::Failed) && wanted(None, Kind::Delayed));
        assert!(!wanted(None, Kind::Delivered));
        let never = Some(notify(true, false, false, false));
        assert!(!wanted(never, Kind::Failed) && !wanted(never, Kind::Delayed));
        let success = Some(notify(false, true, false, false));
        assert!(wanted(success, Kind::Delivered) && !wanted(success, Kind::Failed));
        let failure = Some(notify(false, false, true, false));
        assert!(wanted(failure, Kind::Expired) && !wanted(failure, Kind::Delayed));
        assert!(wanted(never, Kind::Complaint));
    }
}
