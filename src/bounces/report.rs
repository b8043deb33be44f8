//! The two later answers that are not DSNs, as Amazon SES's mailbox simulator sends them: an
//! abuse complaint (an RFC 5965 `multipart/report; report-type=feedback-report`, the format of
//! mailbox providers' feedback loops) and an out-of-office auto-reply (RFC 3834).

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use super::dsn::{boundary, daemon, envelope_headers, header, line, raw_part, rfc822};
use super::notice::Notice;

/// The complaint: the recipients reported the message as spam to their provider, whose
/// feedback loop sends it back with the message whole.
pub(super) fn complaint(notice: &Notice) -> Vec<u8> {
    let original = &notice.original;
    let host = &original.reporting_mta;
    let subject = header(&original.content, "Subject").unwrap_or_default();
    let text = format!(
        "This is an email abuse report for an email message received from IP {} on {}.\r\nThe recipient marked it as spam. For more information about this format\r\nplease see https://www.rfc-editor.org/rfc/rfc5965.\r\n",
        original.client_ip,
        rfc822(original.arrival_ms)
    );
    let mut fields = String::new();
    line(&mut fields, "Feedback-Type", "abuse");
    line(
        &mut fields,
        "User-Agent",
        concat!("failmail/", env!("CARGO_PKG_VERSION")),
    );
    line(&mut fields, "Version", "1");
    line(
        &mut fields,
        "Original-Mail-From",
        &format!("<{}>", original.mail_from),
    );
    for r in &notice.recipients {
        line(
            &mut fields,
            "Original-Rcpt-To",
            &format!("<{}>", r.recipient),
        );
    }
    line(&mut fields, "Arrival-Date", &rfc822(original.arrival_ms));
    line(&mut fields, "Reporting-MTA", &format!("dns; {host}"));
    line(&mut fields, "Source-IP", &original.client_ip);
    let report = MimePart::new(
        ContentType::new("multipart/report")
            .attribute("report-type", "feedback-report")
            .attribute("boundary", boundary(notice)),
        vec![
            MimePart::new("text/plain", text),
            raw_part(
                ContentType::new("message/feedback-report"),
                fields.into_bytes(),
            ),
            raw_part(
                ContentType::new("message/rfc822"),
                original.content.to_vec(),
            ),
        ],
    );
    let subject = format!("Complaint about message: {subject}");
    envelope_headers(notice, &subject, host, daemon(notice))
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

/// The auto-reply, from the recipient itself, marked `Auto-Submitted: auto-replied` and
/// threaded under the message it answers (RFC 3834 §3.1).
pub(super) fn auto_reply(notice: &Notice) -> Vec<u8> {
    let original = &notice.original;
    let recipient = notice
        .recipients
        .first()
        .map_or(original.mail_from.as_str(), |r| r.recipient.as_str());
    let subject = header(&original.content, "Subject").unwrap_or_default();
    let subject = format!("Auto: {subject}");
    let from = Address::new_address(None::<&str>, recipient.to_owned());
    let mut builder = envelope_headers(notice, &subject, &original.reporting_mta, from)
        .header("Precedence", Raw::new("auto_reply"));
    if let Some(id) = header(&original.content, "Message-ID") {
        builder = builder
            .header("In-Reply-To", Raw::new(id.clone()))
            .header("References", Raw::new(id));
    }
    builder
        .text_body(
            "Thank you for your message. I am out of the office with limited access to email,\r\nand will reply when I return.\r\n",
        )
        .write_to_vec()
        .unwrap_or_default()
}
