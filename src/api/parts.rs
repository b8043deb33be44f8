//! `GET /api/messages/{id}/parts`: a captured message taken apart for reading (its headers, its
//! text and HTML bodies, the list of its attachments), so that a reader (the web page) never
//! parses MIME itself. Parsing is done by `mail-parser`, which never panics and makes a best
//! effort on broken input; attachments are listed, never sent (the raw message has them).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mail_parser::{Address, Message, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

use super::error::{json, ApiError, PathParam};
use super::messages::find;
use super::ApiState;

/// One header as it was sent (folding undone).
#[derive(Serialize)]
struct HeaderView<'a> {
    name: &'a str,
    value: String,
}

/// One attachment (or inline part that is not a body).
#[derive(Serialize)]
struct AttachmentView {
    filename: Option<String>,
    content_type: String,
    size: usize,
    inline: bool,
}

#[derive(Serialize)]
struct PartsView<'a> {
    id: u64,
    subject: Option<&'a str>,
    from: Option<String>,
    to: Option<String>,
    date: Option<String>,
    message_id: Option<&'a str>,
    headers: Vec<HeaderView<'a>>,
    text: Option<&'a str>,
    html: Option<&'a str>,
    attachments: Vec<AttachmentView>,
}

/// What a list of messages shows of one, from its header alone (one parse).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Headline {
    /// The `Subject`, decoded (RFC 2047).
    pub(crate) subject: Option<String>,
    /// The top-level media type, lower case (`multipart/report`), when it names one.
    pub(crate) content_type: Option<String>,
    /// A report's `report-type` (`delivery-status` for a DSN, `feedback-report` for a
    /// complaint), lower case.
    pub(crate) report_type: Option<String>,
}

/// The [`Headline`] of a message.
pub(crate) fn headline(data: &[u8]) -> Headline {
    let Some(message) = MessageParser::new().parse_headers(data) else {
        return Headline::default();
    };
    let content = message.content_type();
    let content_type = content.map(|c| match c.subtype() {
        Some(subtype) => format!("{}/{}", c.ctype(), subtype).to_ascii_lowercase(),
        None => c.ctype().to_ascii_lowercase(),
    });
    let report_type = content
        .filter(|_| content_type.as_deref() == Some("multipart/report"))
        .and_then(|c| c.attributes())
        .and_then(|attributes| {
            attributes
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case("report-type"))
        })
        .map(|a| a.value.to_ascii_lowercase());
    Headline {
        subject: message.subject().map(str::to_owned),
        content_type,
        report_type,
    }
}

/// `Name <address>, …` of an address header.
fn addresses(address: Option<&Address<'_>>) -> Option<String> {
    let list: Vec<String> = address?
        .iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(name), Some(address)) => format!("{name} <{address}>"),
            (None, Some(address)) => address.to_owned(),
            (Some(name), None) => name.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|a| !a.is_empty())
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// A raw header value with its folding undone.
fn unfold(raw: &str) -> String {
    raw.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first body part of the message that really is of this kind (mail-parser also lists an
/// HTML part as a text body, converting it, when there is no text part: not shown as text here).
fn first_body<'a>(message: &'a Message<'a>, html: bool) -> Option<&'a str> {
    let mut bodies: Box<dyn Iterator<Item = _>> = if html {
        Box::new(message.html_bodies())
    } else {
        Box::new(message.text_bodies())
    };
    bodies.find_map(|part| match (&part.body, html) {
        (PartType::Html(text), true) | (PartType::Text(text), false) => Some(text.as_ref()),
        _ => None,
    })
}

fn attachments(message: &Message<'_>) -> Vec<AttachmentView> {
    message
        .attachments()
        .map(|part| AttachmentView {
            filename: part.attachment_name().map(str::to_owned),
            content_type: part.content_type().map_or_else(
                || "application/octet-stream".to_owned(),
                |t| match t.subtype() {
                    Some(sub) => format!("{}/{sub}", t.ctype()),
                    None => t.ctype().to_owned(),
                },
            ),
            size: part.len(),
            inline: part
                .content_disposition()
                .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline")),
        })
        .collect()
}

/// `GET /api/messages/{id}/parts`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    PathParam(id): PathParam<u64>,
) -> Result<Response, ApiError> {
    let stored = find(&state, id)?;
    let data = &stored.message.data;
    let Some(message) = MessageParser::new().parse(&data[..]) else {
        // No header at all: everything is body.
        let text = String::from_utf8_lossy(data);
        let view = PartsView {
            id,
            subject: None,
            from: None,
            to: None,
            date: None,
            message_id: None,
            headers: Vec::new(),
            text: Some(&text),
            html: None,
            attachments: Vec::new(),
        };
        return Ok(json(StatusCode::OK, &view));
    };
    let view = PartsView {
        id,
        subject: message.subject(),
        from: addresses(message.from()),
        to: addresses(message.to()),
        date: message.date().map(|d| d.to_rfc3339()),
        message_id: message.message_id(),
        headers: message
            .headers_raw()
            .map(|(name, value)| HeaderView {
                name,
                value: unfold(value),
            })
            .collect(),
        text: first_body(&message, false),
        html: first_body(&message, true),
        attachments: attachments(&message),
    };
    Ok(json(StatusCode::OK, &view))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTIPART: &[u8] = b"From: Ann <ann@example.com>\r\nTo: bob@example.net\r\n\
Subject: =?UTF-8?Q?caf=C3=A9?=\r\n  and more\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain body\r\n\
--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html body</p>\r\n--b2--\r\n\
--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n";

    #[test]
    fn bodies_attachments_and_headers() {
        let message = MessageParser::new().parse(MULTIPART).unwrap();
        assert_eq!(first_body(&message, false), Some("plain body"));
        assert_eq!(first_body(&message, true), Some("<p>html body</p>"));
        let files = attachments(&message);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].filename.as_deref(), Some("a.pdf"));
        assert_eq!(files[0].content_type, "application/pdf");
        assert_eq!(files[0].size, 5);
        assert_eq!(
            addresses(message.from()).as_deref(),
            Some("Ann <ann@example.com>")
        );
        let subject = message
            .headers_raw()
            .find(|(n, _)| *n == "Subject")
            .map(|(_, v)| unfold(v));
        assert_eq!(subject.as_deref(), Some("=?UTF-8?Q?caf=C3=A9?= and more"));
        let headline = headline(MULTIPART);
        assert_eq!(headline.subject.as_deref(), Some("café and more"));
        assert_eq!(headline.content_type.as_deref(), Some("multipart/mixed"));
        assert_eq!(headline.report_type, None);
    }

    #[test]
    fn a_report_names_its_type() {
        let dsn = b"Subject: Undelivered\r\nMIME-Version: 1.0\r\nContent-Type: Multipart/Report;\r\n Report-Type=\"Delivery-Status\"; boundary=\"b\"\r\n\r\n--b--\r\n";
        assert_eq!(
            headline(dsn),
            Headline {
                subject: Some("Undelivered".to_owned()),
                content_type: Some("multipart/report".to_owned()),
                report_type: Some("delivery-status".to_owned()),
            }
        );
        let plain = headline(b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!((plain.content_type, plain.report_type), (None, None));
    }

    #[test]
    fn html_only_is_not_shown_as_text() {
        let message = MessageParser::new()
            .parse(&b"Subject: x\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n"[..])
            .unwrap();
        assert_eq!(first_body(&message, false), None);
        assert_eq!(first_body(&message, true), Some("<b>hi</b>\r\n"));
    }
}
