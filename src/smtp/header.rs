//! Reading one header field of a received message: the attempt history tells messages apart by
//! their `Message-ID` (RFC 5322 §3.6.4), read here once the whole message is in.

use std::borrow::Cow;
use std::sync::Arc;

use memchr::memchr;

/// The longest `Message-ID` value kept, in octets: RFC 5322 §2.1.1's line limit. A longer one
/// (a folded monster) is cut here, so that one attempt never keeps more.
pub const MAX_MESSAGE_ID: usize = 998;

/// The `Message-ID` field of `message` (its header section, up to the first empty line),
/// unfolded and trimmed; `None` when it has none or it is empty. The field name is matched
/// without regard to case (RFC 5322 §1.2.2); the first such field counts.
pub fn message_id(message: &[u8]) -> Option<Arc<str>> {
    let mut rest = message;
    // The field's first line; the search ends at the empty line, or at a line that is no
    // header field.
    let found = loop {
        let first = *rest.first()?;
        if rest.starts_with(b"\r\n") || first == b'\n' {
            return None; // The empty line: the header section is over.
        }
        let (line, next) = split_line(rest);
        rest = next;
        if first == b' ' || first == b'\t' {
            continue; // A folded continuation of another field.
        }
        // The colon ends a field name, a few octets in: a plain search finds it sooner than a
        // vectorized one gets started.
        let colon = line.iter().position(|&octet| octet == b':')?;
        if line[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(b"message-id")
        {
            break &line[colon + 1..];
        }
    };
    // Borrowed from the message while on one line (the common case), owned once folded.
    let mut value = Cow::Borrowed(&found[..found.len().min(MAX_MESSAGE_ID)]);
    while let Some(b' ' | b'\t') = rest.first() {
        let (line, next) = split_line(rest);
        append(value.to_mut(), line);
        rest = next;
    }
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    Some(Arc::from(String::from_utf8_lossy(value)))
}

/// The first line of `text` without its line ending, and what follows it.
fn split_line(text: &[u8]) -> (&[u8], &[u8]) {
    let (line, next) = match memchr(b'\n', text) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &text[text.len()..]),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), next)
}

/// Adds `part` to `value`, up to [`MAX_MESSAGE_ID`] octets.
fn append(value: &mut Vec<u8>, part: &[u8]) {
    let room = MAX_MESSAGE_ID.saturating_sub(value.len());
    value.extend_from_slice(&part[..part.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_field_in_the_header_section_only() {
        let message = b"Subject: x\r\nMessage-ID: <a@b.example>\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(message_id(message).as_deref(), Some("<a@b.example>"));
        assert_eq!(
            message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"),
            None
        );
        assert_eq!(message_id(b""), None);
        assert_eq!(message_id(b"Message-ID:   \r\n\r\n"), None);
    }

    #[test]
    fn name_case_folding_and_bare_newlines() {
        let message = b"message-id : \r\n  <folded@x.example>\r\nTo: a@b\r\n\r\nhi";
        assert_eq!(message_id(message).as_deref(), Some("<folded@x.example>"));
        assert_eq!(
            message_id(b"MESSAGE-ID:<x@y>\nSubject: s\n\nbody").as_deref(),
            Some("<x@y>")
        );
        // The first field counts; a line that is no field ends the header section.
        assert_eq!(
            message_id(b"Message-Id: <1@x>\r\nMessage-Id: <2@x>\r\n\r\n").as_deref(),
            Some("<1@x>")
        );
        assert_eq!(message_id(b"not a header\r\nMessage-ID: <x@y>\r\n"), None);
    }

    #[test]
    fn a_monster_is_cut() {
        let mut message = b"Message-ID: <".to_vec();
        message.extend(std::iter::repeat_n(b'a', 5000));
        message.extend_from_slice(b"@x>\r\n\r\n");
        assert_eq!(message_id(&message).unwrap().len(), MAX_MESSAGE_ID - 1);
    }

    #[test]
    fn invalid_utf_8_is_replaced() {
        assert_eq!(
            message_id(b"Message-ID: <\xff@x>\r\n\r\n").as_deref(),
            Some("<\u{fffd}@x>")
        );
    }
}
