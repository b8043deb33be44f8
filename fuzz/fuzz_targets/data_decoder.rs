//! Message bodies, DATA and BDAT, in arbitrary bytes split at arbitrary points.
//!
//! Where a message ends is where SMTP smuggling and truncation bugs live, and a client controls
//! every byte of the body and where TCP splits it. For DATA the decoder is checked against a
//! plain reference (end at the first `<CRLF>.<CRLF>`, drop one leading dot per line) and against
//! itself split differently. For BDAT the same bytes are cut into chunks and sent through a
//! session: the stored message must be exactly the chunks joined, whatever the split.
//!
//! Input layout: a little-endian `u16` size limit, a split header (see
//! `failmail_fuzz::split_header`; its lengths also cut the BDAT chunks), then the body bytes.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use failmail::smtp::data::DataDecoder;
use failmail::smtp::policy::Decision;
use failmail::smtp::session::{drive, Session, SessionConfig, Step};
use failmail_fuzz::{pieces, split_header, splits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((limit, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = u64::from(u16::from_le_bytes(*limit));
    let (lengths, payload) = split_header(rest);
    check_data(payload, &lengths, limit);
    check_bdat(payload, &lengths, limit);
});

/// What decoding one DATA stream gave.
#[derive(Debug, PartialEq, Eq)]
struct DataResult {
    body: Vec<u8>,
    finished: bool,
    consumed: usize,
    received: u64,
    overflowed: bool,
}

fn decode(parts: &[&[u8]], limit: u64) -> DataResult {
    let mut decoder = DataDecoder::new(limit);
    let mut body = BytesMut::new();
    let mut consumed = 0;
    let mut finished = false;
    for part in parts {
        let decoded = decoder.decode(part, &mut body);
        assert!(decoded.consumed <= part.len());
        consumed += decoded.consumed;
        if decoded.finished {
            finished = true;
            break;
        }
        assert_eq!(decoded.consumed, part.len(), "unfinished but input left");
    }
    assert!(body.len() as u64 <= limit, "kept more than the limit");
    DataResult {
        body: body.to_vec(),
        finished,
        consumed,
        received: decoder.received(),
        overflowed: decoder.overflowed(),
    }
}

/// RFC 5321 §4.5.2 written as plainly as possible: the end is the first line that is exactly
/// `.`, and one leading dot is dropped from every line before it. Returns the body and the
/// octets consumed, or `None` when the end line is not in `input`.
fn reference(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let line_starts = std::iter::once(0)
        .chain((2..=input.len()).filter(|&i| &input[i - 2..i] == b"\r\n"))
        .collect::<Vec<_>>();
    let end = *line_starts
        .iter()
        .find(|&&start| input[start..].starts_with(b".\r\n"))?;
    let body = input[..end]
        .iter()
        .enumerate()
        .filter(|&(i, &byte)| !(byte == b'.' && line_starts.binary_search(&i).is_ok()))
        .map(|(_, &byte)| byte)
        .collect();
    Some((body, end + 3))
}

fn check_data(payload: &[u8], lengths: &[usize], limit: u64) {
    let unlimited = decode(&[payload], u64::MAX);
    match reference(payload) {
        Some((body, consumed)) => {
            assert!(unlimited.finished, "the end line was missed");
            assert_eq!(unlimited.body, body, "body differs from the reference");
            assert_eq!(unlimited.consumed, consumed, "ended at the wrong place");
            assert_eq!(unlimited.received, body.len() as u64);
        }
        None => assert!(!unlimited.finished, "ended without an end line"),
    }
    let expected = decode(&[payload], limit);
    assert_eq!(expected.received, unlimited.received);
    assert_eq!(expected.overflowed, unlimited.received > limit);
    assert!(unlimited.body.starts_with(&expected.body));
    for parts in splits(payload, lengths) {
        let result = decode(&parts, limit);
        assert_eq!(result.finished, expected.finished);
        assert_eq!(result.consumed, expected.consumed);
        assert_eq!(result.received, expected.received);
        assert_eq!(result.overflowed, expected.overflowed);
        // Past the limit the kept body is incomplete by design and the message is refused.
        if !result.overflowed {
            assert_eq!(result.body, expected.body, "body depends on the split");
        }
    }
}

/// What a BDAT session showed: its replies and the body it stored, if any.
#[derive(Debug, PartialEq, Eq)]
struct BdatResult {
    replies: Vec<u8>,
    stored: Option<Vec<u8>>,
}

const ENVELOPE: &[u8] =
    b"EHLO client.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n";

fn check_bdat(payload: &[u8], lengths: &[usize], limit: u64) {
    let chunks = pieces(payload, lengths);
    let mut stream = ENVELOPE.to_vec();
    for (index, chunk) in chunks.iter().enumerate() {
        let last = if index + 1 == chunks.len() {
            " LAST"
        } else {
            ""
        };
        stream.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        stream.extend_from_slice(chunk);
    }
    let config = Arc::new(SessionConfig {
        max_message_size: limit,
        ..SessionConfig::default()
    });
    let mut expected: Option<BdatResult> = None;
    for parts in splits(&stream, &[ENVELOPE.len(), 7, 1, 300]) {
        let result = run_bdat(&config, &parts);
        match &expected {
            None => expected = Some(result),
            Some(expected) => assert_eq!(&result, expected, "BDAT depends on the split"),
        }
    }
    let result = expected.expect("at least one split");
    if payload.len() as u64 <= limit {
        assert_eq!(result.stored.as_deref(), Some(payload), "chunks not joined");
        let replies = String::from_utf8(result.replies).expect("ASCII replies");
        // Greeting, EHLO's, MAIL and RCPT, then one reply per chunk.
        let chunk_replies = replies
            .lines()
            .filter(|line| line.starts_with("250 2.0.0 Ok: "))
            .count();
        assert_eq!(chunk_replies, chunks.len(), "{replies}");
    } else {
        assert_eq!(result.stored, None, "an oversized message was stored");
        let replies = String::from_utf8(result.replies).expect("ASCII replies");
        assert!(replies.contains("552 5.3.4"), "{replies}");
    }
}

fn run_bdat(config: &Arc<SessionConfig>, parts: &[&[u8]]) -> BdatResult {
    let peer = "192.0.2.1:4000".parse().expect("an address");
    let mut session = Session::new(config.clone(), 1, peer, false);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut stored = None;
    let mut step = session.start();
    let mut parts = parts.iter();
    loop {
        step = drive::run(
            &mut session,
            &mut input,
            &mut out,
            step,
            |_, _| Decision::CONTINUE,
            |message| {
                assert!(stored.is_none(), "two messages from one BDAT transaction");
                stored = Some(message.data.to_vec());
                Ok(())
            },
        );
        session.drain_trace().for_each(drop);
        match (step, parts.next()) {
            (Step::NeedInput, Some(part)) => {
                input.extend_from_slice(part);
                step = session.advance(&mut input, &mut out);
            }
            (Step::NeedInput, None) => break,
            (other, _) => panic!("unexpected {other:?}"),
        }
    }
    BdatResult {
        replies: out.to_vec(),
        stored,
    }
}
