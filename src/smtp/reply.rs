//! SMTP replies, encoded once for the wire.
//!
//! A [`Reply`] holds its code, its enhanced status code (RFC 2034/3463) and the exact bytes that go
//! on the wire, so that sending it is one copy. Multi-line replies use the `NNN-` continuation form
//! and repeat the enhanced status code on every line.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// An RFC 3463 enhanced status code such as `5.1.1`.
///
/// Kept as numbers so that it can be checked against the reply code (the class digits must agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject (0–7 in RFC 3463).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedStatus {
    /// Parses `class.subject.detail`, refusing anything RFC 3463 does not allow.
    ///
    /// One pass over the bytes: the journal parses every reply it records.
    pub fn parse(text: &str) -> Option<Self> {
        // class (1 digit), subject and detail (1 to 3 digits each).
        const MAX_DIGITS: [usize; 3] = [1, 3, 3];
        let mut fields = [0u16; 3];
        let mut field = 0;
        let mut digits = 0;
        for &byte in text.as_bytes() {
            match byte {
                b'0'..=b'9' if digits < MAX_DIGITS[field] => {
                    fields[field] = fields[field] * 10 + u16::from(byte - b'0');
                    digits += 1;
                }
                b'.' if digits > 0 && field < 2 => {
                    field += 1;
                    digits = 0;
                }
                _ => return None,
            }
        }
        if field != 2 || digits == 0 || !matches!(fields[0], 2 | 4 | 5) {
            return None;
        }
        Some(Self {
            class: fields[0] as u8,
            subject: fields[1],
            detail: fields[2],
        })
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Why a reply could not be built from its parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// The code is not a three-digit SMTP reply code (2xx–5xx).
    #[error("reply code {0} is not an SMTP reply code (200-599)")]
    BadCode(u16),
    /// The enhanced status code does not parse.
    #[error("enhanced status code {0:?} is not of the form class.subject.detail (RFC 3463)")]
    BadStatus(String),
    /// The enhanced status class disagrees with the reply code.
    #[error(
        "enhanced status {status} does not match reply code {code} (the class digits must agree)"
    )]
    ClassMismatch {
        /// The reply code.
        code: u16,
        /// The enhanced status code.
        status: EnhancedStatus,
    },
    /// A reply line contains CR or LF, which would break the framing.
    #[error("reply text must not contain CR or LF")]
    LineBreak,
}

/// One SMTP reply, ready to be written.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<EnhancedStatus>,
    wire: Bytes,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Reply")
            .field(&String::from_utf8_lossy(&self.wire))
            .finish()
    }
}

impl Reply {
    /// A reply whose wire form is a compile-time constant (used for the protocol's own replies).
    pub const fn from_static(
        code: u16,
        status: Option<EnhancedStatus>,
        wire: &'static [u8],
    ) -> Self {
        Self {
            code,
            status,
            wire: Bytes::from_static(wire),
        }
    }

    /// Builds a reply from a code, an optional enhanced status code and one or more text lines.
    pub fn new<S: AsRef<str>>(
        code: u16,
        status: Option<EnhancedStatus>,
        lines: &[S],
    ) -> Result<Self, ReplyError> {
        if !(200..=599).contains(&code) {
            return Err(ReplyError::BadCode(code));
        }
        if let Some(status) = status {
            if u16::from(status.class) != code / 100 {
                return Err(ReplyError::ClassMismatch { code, status });
            }
        }
        let mut wire = BytesMut::new();
        let count = lines.len().max(1);
        for index in 0..count {
            let text = lines.get(index).map(|l| l.as_ref()).unwrap_or("");
            if text.contains(['\r', '\n']) {
                return Err(ReplyError::LineBreak);
            }
            let separator = if index + 1 == count { ' ' } else { '-' };
            let mut line = format!("{code}{separator}");
            if let Some(status) = status {
                line.push_str(&status.to_string());
                if !text.is_empty() {
                    line.push(' ');
                }
            }
            line.push_str(text);
            wire.put_slice(line.trim_end_matches(' ').as_bytes());
            wire.put_slice(b"\r\n");
        }
        Ok(Self {
            code,
            status,
            wire: wire.freeze(),
        })
    }

    /// Like [`Reply::new`] with the status given as text; for configuration and scenario files.
    pub fn parse_parts<S: AsRef<str>>(
        code: u16,
        status: Option<&str>,
        lines: &[S],
    ) -> Result<Self, ReplyError> {
        let status = match status {
            Some(text) => Some(
                EnhancedStatus::parse(text)
                    .ok_or_else(|| ReplyError::BadStatus(text.to_owned()))?,
            ),
            None => None,
        };
        Self::new(code, status, lines)
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if the reply carries one.
    pub fn status(&self) -> Option<EnhancedStatus> {
        self.status
    }

    /// A reply the session wrote itself, part by part, in the standard form (`NNN-`/`NNN `
    /// lines, each carrying `status` when there is one): kept whole for the journal.
    pub(crate) fn from_wire(code: u16, status: Option<EnhancedStatus>, wire: Bytes) -> Self {
        Self { code, status, wire }
    }

    /// The exact bytes sent on the wire, CRLF included.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The text of each line: what follows the code, the separator and the enhanced status
    /// code. The reply knows its own layout, so nothing is guessed.
    pub fn lines(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> + '_ {
        let has_status = self.status.is_some();
        self.wire
            .strip_suffix(b"\r\n")
            .unwrap_or(&self.wire)
            .split(|&b| b == b'\n')
            .map(move |line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let rest = line.get(4..).unwrap_or_default();
                let text = match (has_status, rest.iter().position(|&b| b == b' ')) {
                    (false, _) => rest,
                    (true, Some(space)) => &rest[space + 1..],
                    (true, None) => &[],
                };
                // The usual case, valid UTF-8, checked by the fast (word at a time) check.
                match std::str::from_utf8(text) {
                    Ok(text) => std::borrow::Cow::Borrowed(text),
                    Err(_) => String::from_utf8_lossy(text),
                }
            })
    }

    /// Every line's text joined by `\n`: what the journal records.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for (index, line) in self.lines().enumerate() {
            if index > 0 {
                text.push('\n');
            }
            text.push_str(&line);
        }
        text
    }

    /// 2xx and 3xx replies.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// RFC 5321 §3.8: after a 421 the server closes the channel.
    pub fn closes_connection(&self) -> bool {
        self.code == 421
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.wire).trim_end())
    }
}

/// Builds an [`EnhancedStatus`] in a `const` context.
pub const fn status(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
    EnhancedStatus {
        class,
        subject,
        detail,
    }
}

macro_rules! fixed {
    ($(#[$doc:meta])* $name:ident, $code:literal, ($c:literal, $s:literal, $d:literal), $text:literal) => {
        $(#[$doc])*
        pub const $name: Reply = Reply::from_static(
            $code,
            Some(status($c, $s, $d)),
            concat!($code, " ", $c, ".", $s, ".", $d, " ", $text, "\r\n").as_bytes(),
        );
    };
}

/// The protocol's own fixed replies, pre-encoded.
pub mod fixed {
    use super::{status, Reply};

    fixed!(/// NOOP and RSET.
        OK, 250, (2, 0, 0), "Ok");
    fixed!(/// MAIL accepted.
        SENDER_OK, 250, (2, 1, 0), "Ok");
    fixed!(/// RCPT accepted.
        RECIPIENT_OK, 250, (2, 1, 5), "Ok");
    fixed!(/// QUIT.
        BYE, 221, (2, 0, 0), "Bye");
    fixed!(/// VRFY: RFC 5321 §3.5.3 allows 252 when the server will not verify.
        CANNOT_VRFY, 252, (2, 0, 0), "Cannot VRFY user, but will accept message and attempt delivery");
    fixed!(/// STARTTLS accepted; the handshake follows.
        READY_FOR_TLS, 220, (2, 0, 0), "Ready to start TLS");
    fixed!(/// AUTH succeeded (RFC 4954).
        AUTH_OK, 235, (2, 7, 0), "Authentication successful");
    fixed!(/// Unknown verb.
        UNRECOGNIZED, 500, (5, 5, 1), "Error: command not recognized");
    fixed!(/// A command line longer than RFC 5321 §4.5.3.1.4 allows.
        LINE_TOO_LONG, 500, (5, 5, 2), "Error: line too long");
    fixed!(/// An AUTH exchange line longer than RFC 4954 allows.
        AUTH_LINE_TOO_LONG, 500, (5, 5, 6), "Authentication exchange line is too long");
    fixed!(/// A line with bytes that cannot be a command (NUL, not UTF-8).
        BAD_CHARACTERS, 500, (5, 5, 2), "Error: bad characters in command");
    fixed!(/// EXPN is not offered.
        EXPN_NOT_IMPLEMENTED, 502, (5, 5, 1), "Error: command not implemented");
    fixed!(/// HELO/EHLO without a domain.
        HELO_SYNTAX, 501, (5, 5, 4), "Syntax: EHLO hostname");
    fixed!(/// A verb that takes no argument got one.
        NO_ARGUMENTS, 501, (5, 5, 4), "Syntax error: no arguments allowed");
    fixed!(/// MAIL with a bad reverse path.
        MAIL_SYNTAX, 501, (5, 5, 4), "Syntax: MAIL FROM:<address>");
    fixed!(/// RCPT with a bad forward path.
        RCPT_SYNTAX, 501, (5, 5, 4), "Syntax: RCPT TO:<address>");
    fixed!(/// The sender address itself is malformed.
        BAD_SENDER, 501, (5, 1, 7), "Bad sender address syntax");
    fixed!(/// The recipient address itself is malformed.
        BAD_RECIPIENT, 501, (5, 1, 3), "Bad recipient address syntax");
    fixed!(/// A known parameter with a bad value.
        BAD_PARAMETER, 501, (5, 5, 4), "Bad parameter value");
    fixed!(/// The same parameter twice.
        DUPLICATE_PARAMETER, 501, (5, 5, 4), "Duplicate parameter");
    fixed!(/// BDAT without a valid size.
        BDAT_SYNTAX, 501, (5, 5, 4), "Syntax: BDAT size [LAST]");
    fixed!(/// VRFY without an argument.
        VRFY_SYNTAX, 501, (5, 5, 4), "Syntax: VRFY address");
    fixed!(/// AUTH without a mechanism.
        AUTH_SYNTAX, 501, (5, 5, 4), "Syntax: AUTH mechanism [initial-response]");
    fixed!(/// An AUTH response that is not base64 or not a valid PLAIN message.
        AUTH_UNDECODABLE, 501, (5, 5, 2), "Cannot decode response");
    fixed!(/// The client cancelled the AUTH exchange with `*` (RFC 4954 §4).
        AUTH_CANCELLED, 501, (5, 0, 0), "Authentication cancelled");
    fixed!(/// MAIL/RCPT parameter that is not an extension we know (RFC 5321 §4.1.1.11).
        UNKNOWN_PARAMETER, 555, (5, 5, 4), "Unsupported option");
    fixed!(/// AUTH with a mechanism we do not offer.
        AUTH_MECHANISM_UNKNOWN, 504, (5, 5, 4), "Unrecognized authentication type");
    fixed!(/// AUTH attempted over plaintext while the policy requires TLS first (RFC 4954 §6).
        AUTH_NEEDS_TLS, 538, (5, 7, 11), "Encryption required for requested authentication mechanism");
    fixed!(/// MAIL without AUTH when the policy requires it (RFC 4954 §6).
        AUTH_REQUIRED, 530, (5, 7, 0), "Authentication required");
    fixed!(/// AUTH refused by the default checker.
        AUTH_FAILED, 535, (5, 7, 8), "Error: authentication failed");
    fixed!(/// A command before HELO/EHLO.
        NEED_HELO, 503, (5, 5, 1), "Error: send HELO/EHLO first");
    fixed!(/// MAIL inside a transaction.
        NESTED_MAIL, 503, (5, 5, 1), "Error: nested MAIL command");
    fixed!(/// RCPT before MAIL.
        NEED_MAIL, 503, (5, 5, 1), "Error: need MAIL command");
    fixed!(/// DATA/BDAT before any RCPT.
        NEED_RCPT, 503, (5, 5, 1), "Error: need RCPT command");
    fixed!(/// DATA after all recipients were refused (RFC 5321 §3.3).
        NO_VALID_RECIPIENTS, 554, (5, 5, 1), "Error: no valid recipients");
    fixed!(/// DATA and BDAT mixed in one transaction, or DATA with BODY=BINARYMIME (RFC 3030).
        DATA_BDAT_MIXED, 503, (5, 5, 1), "Error: BDAT and DATA cannot be mixed; BINARYMIME needs BDAT");
    fixed!(/// BDAT after a failed BDAT in the same transaction (RFC 3030 §2).
        BDAT_AFTER_FAILURE, 503, (5, 5, 1), "Error: transaction failed, send RSET");
    fixed!(/// AUTH twice.
        ALREADY_AUTHENTICATED, 503, (5, 5, 1), "Error: already authenticated");
    fixed!(/// AUTH during a mail transaction (RFC 4954 §4).
        AUTH_IN_TRANSACTION, 503, (5, 5, 1), "Error: MAIL transaction in progress");
    fixed!(/// STARTTLS under TLS.
        TLS_ALREADY_ACTIVE, 503, (5, 5, 1), "Error: TLS already active");
    fixed!(/// STARTTLS while no certificate is configured (RFC 3207 §4).
        TLS_UNAVAILABLE, 454, (4, 7, 0), "TLS not available due to local problem");
    fixed!(/// Commands after a connect-time 554: only QUIT is useful (RFC 5321 §3.1).
        NO_SERVICE, 503, (5, 5, 1), "Error: no SMTP service here, send QUIT");
    fixed!(/// SIZE parameter or received data over the limit (RFC 1870).
        MESSAGE_TOO_BIG, 552, (5, 3, 4), "Error: message size exceeds fixed maximum message size");
    fixed!(/// Recipient limit reached (RFC 5321 §4.5.3.1.10).
        TOO_MANY_RECIPIENTS, 452, (4, 5, 3), "Error: too many recipients");
    fixed!(/// A non-ASCII address without SMTPUTF8 (RFC 6531 §3.5).
        NEEDS_SMTPUTF8, 553, (5, 6, 7), "Error: non-ASCII address requires SMTPUTF8");
    fixed!(/// The message could not be stored.
        STORE_FAILED, 451, (4, 3, 0), "Error: queue file write error");
    fixed!(/// The process is shutting down (RFC 5321 §3.8).
        SHUTTING_DOWN, 421, (4, 3, 2), "Service shutting down, closing transmission channel");
    fixed!(/// Idle or command timeout (RFC 5321 §4.5.3.2).
        TIMEOUT, 421, (4, 4, 2), "Error: timeout exceeded, closing connection");
    fixed!(/// The global connection cap is reached.
        TOO_MANY_CONNECTIONS, 421, (4, 7, 0), "Error: too many connections, try again later");
}

/// 354 carries no enhanced status code (RFC 2034 §3 covers final replies only).
pub const START_DATA: Reply =
    Reply::from_static(354, None, b"354 End data with <CR><LF>.<CR><LF>\r\n");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_syntax() {
        let parsed = |text| EnhancedStatus::parse(text).map(|s| s.to_string());
        for good in ["2.0.0", "4.7.1", "5.1.1", "5.7.26", "5.999.999", "4.001.01"] {
            let expected = good
                .split('.')
                .map(|part| part.parse::<u16>().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(".");
            assert_eq!(parsed(good), Some(expected), "{good}");
        }
        for bad in [
            "", "5", "5.1", "5.1.", ".1.1", "5..1", "5.1.1.", "5.1.1.1", "3.1.1", "05.1.1",
            "5.1000.1", "5.1.1000", "5.1.a", "5 .1.1", "５.1.1", "+5.1.1", "5.-1.1",
        ] {
            assert_eq!(parsed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn single_line_carries_enhanced_status() {
        let reply = Reply::parse_parts(550, Some("5.1.1"), &["User unknown"]).unwrap();
        assert_eq!(reply.wire(), b"550 5.1.1 User unknown\r\n");
        assert_eq!(reply.to_string(), "550 5.1.1 User unknown");
    }

    #[test]
    fn multi_line_uses_continuations_and_repeats_status() {
        let reply = Reply::parse_parts(550, Some("5.7.1"), &["first", "second", "third"]).unwrap();
        assert_eq!(
            reply.wire(),
            b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
        );
    }

    #[test]
    fn leading_space_of_text_is_kept() {
        let reply = Reply::parse_parts(550, Some("5.1.1"), &[" https://x"]).unwrap();
        assert_eq!(reply.wire(), b"550 5.1.1  https://x\r\n");
    }

    #[test]
    fn class_must_match_code() {
        assert!(matches!(
            Reply::parse_parts(552, Some("4.2.2"), &["x"]),
            Err(ReplyError::ClassMismatch { .. })
        ));
        assert_eq!(
            Reply::parse_parts(544, Some("5.4.4"), &["x"]).map(|r| r.code()),
            Ok(544)
        );
        assert_eq!(
            Reply::parse_parts(999, None, &["x"]),
            Err(ReplyError::BadCode(999))
        );
        assert!(matches!(
            Reply::parse_parts(550, Some("5.1"), &["x"]),
            Err(ReplyError::BadStatus(_))
        ));
        assert!(matches!(
            Reply::parse_parts(550, Some("3.1.1"), &["x"]),
            Err(ReplyError::BadStatus(_))
        ));
        assert_eq!(
            Reply::parse_parts(550, None, &["a\r\nb"]),
            Err(ReplyError::LineBreak)
        );
    }

    #[test]
    fn lines_give_the_text_without_code_and_status() {
        let text = |code, status, wire: &'static [u8]| {
            Reply::from_wire(code, status, Bytes::from_static(wire)).text()
        };
        assert_eq!(
            text(250, None, b"250-mx\r\n250-PIPELINING\r\n250 DSN\r\n"),
            "mx\nPIPELINING\nDSN"
        );
        let s511 = Some(status(5, 1, 1));
        assert_eq!(text(550, s511, b"550-5.1.1 a\r\n550 5.1.1 b\r\n"), "a\nb");
        assert_eq!(text(354, None, b"354 go\r\n"), "go");
        let s200 = Some(status(2, 0, 0));
        assert_eq!(text(250, s200, b"250-2.0.0\r\n250 2.0.0 x\r\n"), "\nx");
        assert_eq!(text(334, None, b"334 \r\n"), "");
        assert_eq!(
            Reply::parse_parts(550, Some("5.1.1"), &[" https://x"])
                .unwrap()
                .text(),
            " https://x"
        );
    }

    proptest::proptest! {
        /// The text of a reply built from lines is those lines, whatever they hold.
        #[test]
        fn text_gives_back_the_lines(lines in proptest::collection::vec("[ -~]{0,12}", 1..4)) {
            let with_status = Reply::new(550, Some(status(5, 1, 1)), &lines).unwrap();
            let without = Reply::new(250, None, &lines).unwrap();
            // Trailing spaces are trimmed on the wire, so they are not part of the text.
            let expected: Vec<&str> = lines.iter().map(|l| l.trim_end_matches(' ')).collect();
            let expected = expected.join("\n");
            proptest::prop_assert_eq!(with_status.text(), expected.clone());
            proptest::prop_assert_eq!(without.text(), expected);
        }
    }

    #[test]
    fn fixed_replies_are_well_formed() {
        for reply in [
            fixed::OK,
            fixed::LINE_TOO_LONG,
            fixed::TOO_MANY_RECIPIENTS,
            fixed::MESSAGE_TOO_BIG,
            fixed::AUTH_NEEDS_TLS,
        ] {
            let text = std::str::from_utf8(reply.wire()).unwrap();
            let status = reply.status().unwrap();
            assert!(text.starts_with(&format!("{} {} ", reply.code(), status)));
            assert!(text.ends_with("\r\n"));
            assert_eq!(u16::from(status.class), reply.code() / 100);
        }
    }
}
