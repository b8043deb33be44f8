//! A bounce taken apart: its delivery status reports, the human-readable text it carries (the
//! returned original message cut off), and the headers that name failed recipients. MIME is
//! parsed with the `mail-parser` crate; input that is not a message (a log excerpt, a pasted
//! SMTP transcript) is all text. A MIME parameter that lost its folding whitespace (a
//! `boundary="…"` flush on the line after `Content-Type: multipart/report;`, as some saved
//! copies of bounces have) is read as the continuation it is.

use std::borrow::Cow;

use mail_parser::{MessageParser, MimeHeaders, PartType};

/// What a bounce says, sorted by kind.
#[derive(Debug, Default)]
pub(super) struct Parts {
    /// Each `message/delivery-status` body, as text.
    pub dsn: Vec<String>,
    /// Each human-readable part (text, or HTML made text), the returned message cut off.
    pub text: Vec<String>,
    /// `X-Failed-Recipients` (Exim, Gmail and others name them there).
    pub failed_recipients: Vec<String>,
    /// Whose mailer daemon sent it (`From`), for the comments.
    pub from: Option<String>,
    /// Whether the input is a message (a bounce that came back), not a log excerpt or a pasted
    /// reply transcript.
    pub is_message: bool,
    /// The bounce's `Date`, in seconds since the epoch.
    pub date: Option<i64>,
}

/// Where a returned original message starts in a plain-text bounce; nothing after it is read.
const ORIGINAL_MARKERS: [&str; 8] = [
    "------ This is a copy of the message",
    "--- Below this line is a copy of the message",
    "----- Original message -----",
    "------ Original message ------",
    "----- Original message follows -----",
    "   ----- Unsent message follows -----",
    "--- The header of the original message is following. ---",
    "Original message headers:",
];

/// Takes `raw` apart. A message starts with a header line (or an mbox `From ` line); anything
/// else is text as it stands.
pub(super) fn split(raw: &[u8]) -> Parts {
    let text = String::from_utf8_lossy(raw);
    if !looks_like_a_message(&text) {
        return Parts {
            text: vec![cut_original(&text).to_owned()],
            ..Parts::default()
        };
    }
    let refolded = refold(raw);
    let Some(message) = MessageParser::default().parse(refolded.as_ref()) else {
        return Parts {
            text: vec![cut_original(&text).to_owned()],
            ..Parts::default()
        };
    };
    let mut parts = Parts {
        is_message: true,
        date: message.date().map(|d| d.to_timestamp()),
        from: message
            .from()
            .and_then(|from| from.first())
            .and_then(|addr| addr.address())
            .map(str::to_owned),
        failed_recipients: message
            .header_raw("X-Failed-Recipients")
            .map(|value| {
                value
                    .split([',', ' ', '\t', '\r', '\n'])
                    .filter(|a| a.contains('@'))
                    .map(|a| a.trim_matches(['<', '>']).to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        ..Parts::default()
    };
    for part in &message.parts {
        let (kind, sub) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".to_owned(), "plain".to_owned()));
        match (&part.body, kind.as_str(), sub.as_str()) {
            (_, "message", "delivery-status" | "global-delivery-status") => {
                parts
                    .dsn
                    .push(String::from_utf8_lossy(part.contents()).into_owned());
            }
            (_, "text", "rfc822-headers") => {}
            (PartType::Text(text), _, _) => parts.text.push(cut_original(text).to_owned()),
            (PartType::Html(html), _, _) => parts.text.push(html_to_text(html)),
            _ => {}
        }
    }
    parts
}

/// `raw` with a space before each line that continues a parameter list but lost its folding
/// whitespace: a `name=value` line right after a line that ends with `;`.
fn refold(raw: &[u8]) -> Cow<'_, [u8]> {
    let continues = |previous: &[u8], line: &[u8]| {
        let token = line
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            .count();
        previous.trim_ascii_end().ends_with(b";") && token > 0 && line.get(token) == Some(&b'=')
    };
    let lines: Vec<&[u8]> = raw.split_inclusive(|&b| b == b'\n').collect();
    if !lines.windows(2).any(|w| continues(w[0], w[1])) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && continues(lines[i - 1], line) {
            out.push(b' ');
        }
        out.extend_from_slice(line);
    }
    Cow::Owned(out)
}

/// Whether `text` starts like an RFC 5322 message.
fn looks_like_a_message(text: &str) -> bool {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.starts_with("From ") {
        return true;
    }
    match first.split_once(':') {
        Some((name, _)) => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !name.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// `text` up to the start of a returned original message.
fn cut_original(text: &str) -> &str {
    let end = ORIGINAL_MARKERS
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    &text[..end]
}

/// The text of an HTML part: tags out, line breaks where blocks end, entities decoded.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    let mut tag = String::new();
    let mut skipping = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag.trim_start_matches('/').to_ascii_lowercase();
                let name = name.split_whitespace().next().unwrap_or("");
                if matches!(name, "style" | "script" | "head") {
                    skipping = !tag.starts_with('/');
                }
                if matches!(
                    name,
                    "br" | "p" | "div" | "tr" | "li" | "table" | "h1" | "h2" | "h3"
                ) {
                    out.push('\n');
                }
            }
            (true, _) => tag.push(c),
            (false, _) if !skipping => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    cut_original(&out).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_and_log_lines_are_text() {
        let parts = split(b"550-5.1.1 first\r\n550 5.1.1 last\r\n");
        assert_eq!(parts.text, ["550-5.1.1 first\r\n550 5.1.1 last\r\n"]);
        assert!(parts.dsn.is_empty());
        let log =
            b"Jan 1 00:00:00 mx postfix/smtp[1]: ABC: to=<a@x>, status=bounced (host said: 550 no)";
        assert!(!looks_like_a_message(&String::from_utf8_lossy(log)));
    }

    #[test]
    fn a_parameter_that_lost_its_folding_is_read() {
        let raw = b"From: postmaster@outlook.com\nContent-Type: multipart/report; report-type=delivery-status;\nboundary=\"B\"\n\n--B\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;a@x\nAction: failed\n\n--B--\n";
        assert_eq!(split(raw).dsn.len(), 1);
        assert!(matches!(refold(b"a;\nb\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn html_becomes_text() {
        let text = html_to_text("<html><head><style>p {}</style></head><body><p>Remote Server returned &#39;550 5.1.1 x&#39;</p></body></html>");
        assert_eq!(text.trim(), "Remote Server returned '550 5.1.1 x'");
    }
}
