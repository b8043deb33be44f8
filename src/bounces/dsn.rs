//! Builds the delivery status notification of a [`Notice`]: an RFC 6522 `multipart/report;
//! report-type=delivery-status` whose parts are the style's human-readable text, the RFC 3464
//! `message/delivery-status` fields, and the original message (`message/rfc822` for
//! `RET=FULL`) or its headers (`text/rfc822-headers`). The MIME structure is written by the
//! `mail-builder` crate; the fields are ours.
//!
//! Everything in it comes from the notice and the clock: the same notice gives the same bytes.

use std::fmt::Write as _;

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;

use super::notice::{Kind, Notice};
use crate::smtp::reply::Reply;

/// The whole notification for `notice`, ready to store or send.
pub fn build(notice: &Notice) -> Vec<u8> {
    match notice.kind {
        Kind::Complaint => super::report::complaint(notice),
        Kind::AutoReply => super::report::auto_reply(notice),
        _ => delivery_status(notice),
    }
}

fn delivery_status(notice: &Notice) -> Vec<u8> {
    let original = &notice.original;
    let host = &original.reporting_mta;
    let subject = header(&original.content, "Subject").unwrap_or_default();
    let report = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status")
            .attribute("boundary", boundary(notice)),
        vec![
            MimePart::new("text/plain", notice.style.human(notice)).inline(),
            raw_part(
                ContentType::new("message/delivery-status"),
                fields(notice).into_bytes(),
            ),
            returned(notice),
        ],
    );
    let subject = notice.style.subject(notice.kind, &subject);
    let mut builder = envelope_headers(notice, &subject, host, daemon(notice));
    for (name, value) in notice.style.headers(notice) {
        builder = builder.header(name, Raw::new(value));
    }
    builder.body(report).write_to_vec().unwrap_or_default()
}

/// The headers every notification shares: sender, recipient (the envelope sender, byte for
/// byte), date and id on the clock, and `Auto-Submitted` (RFC 3834) so that nothing answers it.
pub(super) fn envelope_headers<'a>(
    notice: &'a Notice,
    subject: &str,
    host: &str,
    from: Address<'a>,
) -> MessageBuilder<'a> {
    MessageBuilder::new()
        .from(from)
        .to(Address::new_address(
            None::<&str>,
            notice.original.mail_from.as_str(),
        ))
        .subject(subject.to_owned())
        .date(Date::new((notice.due_ms / 1000) as i64))
        .message_id(format!(
            "failmail.{}.{}@{host}",
            notice.id, notice.original.queue_id
        ))
        .header("Auto-Submitted", Raw::new("auto-replied"))
}

/// The style's mailer daemon at failmail's host name.
pub(super) fn daemon(notice: &Notice) -> Address<'static> {
    let (name, local) = notice.style.sender();
    let host = &notice.original.reporting_mta;
    Address::new_address(Some(name), format!("{local}@{host}"))
}

/// A boundary that depends only on the notice, so the bytes are reproducible.
pub(super) fn boundary(notice: &Notice) -> String {
    format!("failmail-report-{}-{}", notice.id, notice.message_id)
}

/// A part written as given (7bit, or 8bit when it is not ASCII): `message/*` parts may not be
/// encoded (RFC 2046 §5.2.1).
pub(super) fn raw_part(content_type: ContentType<'static>, body: Vec<u8>) -> MimePart<'static> {
    let encoding = if body.is_ascii() { "7bit" } else { "8bit" };
    MimePart::new(content_type, BodyPart::Binary(body.into())).transfer_encoding(encoding)
}

/// The third part: the message for `RET=FULL`, else its headers (RFC 3462 §2, RFC 3461 §4.3).
fn returned(notice: &Notice) -> MimePart<'static> {
    let original = &notice.original;
    if original.return_full {
        raw_part(
            ContentType::new("message/rfc822"),
            original.content.to_vec(),
        )
    } else {
        let headers = super::plan::header_section(&original.content);
        raw_part(ContentType::new("text/rfc822-headers"), headers.to_vec())
    }
}

/// The `message/delivery-status` body: the per-message fields, then one block per recipient
/// (RFC 3464 §2.2, §2.3).
pub fn fields(notice: &Notice) -> String {
    let original = &notice.original;
    let mut f = String::new();
    line(
        &mut f,
        "Reporting-MTA",
        &format!("dns; {}", original.reporting_mta),
    );
    if let Some(envid) = &original.envid {
        line(&mut f, "Original-Envelope-Id", envid);
    }
    if let Some(helo) = &original.client_helo {
        line(
            &mut f,
            "Received-From-MTA",
            &format!("dns; {helo} ({})", original.client_ip),
        );
    }
    line(&mut f, "Arrival-Date", &rfc822(original.arrival_ms));
    for r in &notice.recipients {
        f.push_str("\r\n");
        if let Some((kind, address)) = &r.original {
            line(&mut f, "Original-Recipient", &format!("{kind}; {address}"));
        }
        line(
            &mut f,
            "Final-Recipient",
            &format!("rfc822; {}", r.recipient),
        );
        line(&mut f, "Action", notice.kind.action().unwrap_or("failed"));
        line(&mut f, "Status", &r.status(notice.kind).to_string());
        line(&mut f, "Remote-MTA", &format!("dns; {}", r.remote_mta()));
        let diagnostic = match (notice.kind, r.reply()) {
            // The give-up is the mail system's own verdict, worded as Exchange words it
            // (`550 4.4.7 QUEUE.Expired; message expired`); the last reply is in the text part.
            (Kind::Expired, _) => format!(
                "550 4.4.7 Delivery time expired: message expired after {} in queue",
                super::style::span(notice.due_ms.saturating_sub(original.arrival_ms))
            ),
            (Kind::Delivered, _) | (_, None) => "250 2.0.0 Ok: delivered".to_owned(),
            (_, Some(reply)) => joined_reply(reply),
        };
        line(&mut f, "Diagnostic-Code", &format!("smtp; {diagnostic}"));
        line(&mut f, "Last-Attempt-Date", &rfc822(notice.due_ms));
        if let (Kind::Delayed, Some(until)) = (notice.kind, notice.retry_until_ms) {
            line(&mut f, "Will-Retry-Until", &rfc822(until));
        }
    }
    f
}

/// A reply's lines joined with spaces, each with its code, as Postfix writes a multi-line reply
/// into `Diagnostic-Code` (`550-5.1.1 The email account … 550 5.1.1 https://…`).
pub fn joined_reply(reply: &Reply) -> String {
    String::from_utf8_lossy(reply.wire())
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Name: value` folded at spaces so that lines stay under 78 octets (RFC 5322 §2.2.3).
pub(super) fn line(out: &mut String, name: &str, value: &str) {
    let mut width = name.len() + 2;
    let _ = write!(out, "{name}:");
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 && width + 1 + word.len() > 78 {
            out.push_str("\r\n");
            width = 0;
        }
        out.push(' ');
        out.push_str(word);
        width += 1 + word.len();
    }
    out.push_str("\r\n");
}

/// An RFC 5322 date for milliseconds since the epoch.
pub(super) fn rfc822(ms: u64) -> String {
    Date::new((ms / 1000) as i64).to_rfc822()
}

/// The unfolded value of the first header `name` in a message's header section.
pub(super) fn header(message: &[u8], name: &str) -> Option<String> {
    let headers = String::from_utf8_lossy(super::plan::header_section(message));
    let mut value: Option<String> = None;
    for raw in headers.lines() {
        match &mut value {
            Some(v) if raw.starts_with([' ', '\t']) => {
                v.push(' ');
                v.push_str(raw.trim());
            }
            Some(_) => break,
            None => {
                if let Some((field, rest)) = raw.split_once(':') {
                    if field.trim().eq_ignore_ascii_case(name) {
                        value = Some(rest.trim().to_owned());
                    }
                }
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_words_whole() {
        let mut out = String::new();
        let long = "word ".repeat(30);
        line(&mut out, "Diagnostic-Code", long.trim());
        assert!(out.lines().all(|l| l.len() <= 79), "{out}");
        assert_eq!(out.replace("\r\n ", " ").matches("word").count(), 30);
    }

    #[test]
    fn multi_line_replies_are_joined_with_their_codes() {
        let reply = Reply::new(
            550,
            crate::smtp::reply::EnhancedStatus::parse("5.1.1"),
            &["a", "b"],
        )
        .unwrap();
        assert_eq!(joined_reply(&reply), "550-5.1.1 a 550 5.1.1 b");
    }

    #[test]
    fn headers_are_unfolded() {
        let message = b"Subject: one\r\n two\r\nFrom: x\r\n\r\nSubject: body";
        assert_eq!(header(message, "subject").as_deref(), Some("one two"));
        assert_eq!(header(message, "To"), None);
    }
}
