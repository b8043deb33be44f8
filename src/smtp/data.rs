//! The message body decoders: DATA (dot-unstuffing, end at `<CRLF>.<CRLF>`) and BDAT chunks.
//!
//! Both are incremental: input may be split at any byte and the result is the same. Only a
//! `<CRLF>.<CRLF>` ends DATA; a bare LF is ordinary text, which keeps the server immune to the
//! "SMTP smuggling" class of end-of-data confusion. Content past the size limit is counted but not
//! kept, so memory stays bounded whatever the client sends.

use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the start of the data).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, just after a CR that is not yet written.
    Cr,
    /// At the start of a line, after a `.` that is not yet written.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
}

/// What one call to [`DataDecoder::decode`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// How many input bytes were consumed.
    pub consumed: usize,
    /// Whether the terminating `.` line was reached (it is consumed, not part of the body).
    pub finished: bool,
}

/// Incremental decoder for the DATA command's text (RFC 5321 §4.5.2).
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    received: u64,
    limit: u64,
}

impl DataDecoder {
    /// A decoder that keeps at most `limit` octets of body.
    pub fn new(limit: u64) -> Self {
        Self {
            state: State::LineStart,
            received: 0,
            limit,
        }
    }

    /// Octets of unstuffed body seen so far, including any past the limit.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Whether the body went over the limit (the kept body is then incomplete).
    pub fn overflowed(&self) -> bool {
        self.received > self.limit
    }

    /// Decodes as much of `input` as possible into `body`.
    pub fn decode(&mut self, input: &[u8], body: &mut BytesMut) -> Decoded {
        let mut index = 0;
        while index < input.len() {
            match self.state {
                State::LineStart => {
                    if input[index] == b'.' {
                        self.state = State::Dot;
                        index += 1;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Text => {
                    let rest = &input[index..];
                    match memchr::memchr(b'\r', rest) {
                        Some(cr) => {
                            self.emit(&rest[..cr], body);
                            self.state = State::Cr;
                            index += cr + 1;
                        }
                        None => {
                            self.emit(rest, body);
                            index = input.len();
                        }
                    }
                }
                State::Cr => {
                    if input[index] == b'\n' {
                        self.emit(b"\r\n", body);
                        self.state = State::LineStart;
                        index += 1;
                    } else {
                        self.emit(b"\r", body);
                        self.state = State::Text;
                    }
                }
                State::Dot => {
                    if input[index] == b'\r' {
                        self.state = State::DotCr;
                        index += 1;
                    } else {
                        // A leading dot followed by more text: drop the dot (RFC 5321 §4.5.2).
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if input[index] == b'\n' {
                        self.state = State::LineStart;
                        return Decoded {
                            consumed: index + 1,
                            finished: true,
                        };
                    }
                    // "." CR followed by something else: the dot was stuffing, the CR is text.
                    self.emit(b"\r", body);
                    self.state = State::Text;
                }
            }
        }
        Decoded {
            consumed: input.len(),
            finished: false,
        }
    }

    fn emit(&mut self, bytes: &[u8], body: &mut BytesMut) {
        keep_within_limit(&mut self.received, self.limit, bytes, body);
    }
}

/// Appends `bytes` to `body` as long as the total stays within `limit`; counts everything.
pub fn keep_within_limit(received: &mut u64, limit: u64, bytes: &[u8], body: &mut BytesMut) {
    let before = *received;
    *received = before.saturating_add(bytes.len() as u64);
    if *received <= limit {
        body.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(parts: &[&[u8]]) -> (Vec<u8>, bool, usize) {
        let mut decoder = DataDecoder::new(1 << 20);
        let mut body = BytesMut::new();
        let mut consumed_total = 0;
        for part in parts {
            let decoded = decoder.decode(part, &mut body);
            consumed_total += decoded.consumed;
            if decoded.finished {
                return (body.to_vec(), true, consumed_total);
            }
        }
        (body.to_vec(), false, consumed_total)
    }

    #[test]
    fn simple_message_ends_at_dot_line() {
        let (body, finished, consumed) = decode_all(&[b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n"]);
        assert!(finished);
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(consumed, 24);
    }

    #[test]
    fn empty_message() {
        let (body, finished, _) = decode_all(&[b".\r\n"]);
        assert!(finished);
        assert!(body.is_empty());
    }

    #[test]
    fn dot_stuffing_is_removed() {
        let (body, finished, _) = decode_all(&[b"..hidden\r\n...\r\n. x\r\n.\r\n"]);
        assert!(finished);
        assert_eq!(body, b".hidden\r\n..\r\n x\r\n");
    }

    #[test]
    fn bare_lf_never_ends_data() {
        let (body, finished, _) = decode_all(&[b"a\n.\nb\r\n.\n\r\n"]);
        assert!(!finished);
        assert_eq!(body, b"a\n.\nb\r\n\n\r\n");
    }

    #[test]
    fn dot_cr_without_lf_is_text() {
        let (body, finished, _) = decode_all(&[b".\rx\r\n.\r\n"]);
        assert!(finished);
        assert_eq!(body, b"\rx\r\n");
    }

    #[test]
    fn end_split_across_reads() {
        let (body, finished, _) = decode_all(&[b"line\r", b"\n", b".", b"\r", b"\n"]);
        assert!(finished);
        assert_eq!(body, b"line\r\n");
    }

    #[test]
    fn over_limit_counts_but_does_not_keep() {
        let mut decoder = DataDecoder::new(5);
        let mut body = BytesMut::new();
        let decoded = decoder.decode(b"0123456789\r\n.\r\n", &mut body);
        assert!(decoded.finished);
        assert!(decoder.overflowed());
        assert_eq!(decoder.received(), 12);
        assert!(body.len() <= 5);
    }

    proptest! {
        #[test]
        fn output_is_independent_of_split_points(
            lines in proptest::collection::vec("[.a-z\r\n]{0,12}", 0..12),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let mut input = lines.join("\r\n").into_bytes();
            input.extend_from_slice(b"\r\n.\r\ntrailing");
            let (whole, finished, consumed) = decode_all(&[&input]);
            prop_assert!(finished);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
            points.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for point in points {
                parts.push(&input[start..point]);
                start = point;
            }
            parts.push(&input[start..]);
            let (split, split_finished, split_consumed) = decode_all(&parts);
            prop_assert!(split_finished);
            prop_assert_eq!(whole, split);
            prop_assert_eq!(consumed, split_consumed);
        }

        #[test]
        fn stuffing_round_trips(text in "[.a-z\r\n]{0,200}") {
            // Any body that ends with CRLF, stuffed as a client would, comes back unchanged.
            let mut original = text.into_bytes();
            original.extend_from_slice(b"\r\n");
            let mut stuffed = Vec::new();
            let mut at_line_start = true;
            for (i, &byte) in original.iter().enumerate() {
                if at_line_start && byte == b'.' {
                    stuffed.push(b'.');
                }
                stuffed.push(byte);
                at_line_start = byte == b'\n' && i > 0 && original[i - 1] == b'\r';
            }
            stuffed.extend_from_slice(b".\r\n");
            let (body, finished, _) = decode_all(&[&stuffed]);
            prop_assert!(finished);
            prop_assert_eq!(body, original);
        }
    }
}
