//! The protocol core without sockets: the command parser, the DATA unstuffer and one whole
//! pipelined transaction through the sans-IO session, alone and with the attempt history that
//! follows it (the recorder and the book behind the retry report).
//!
//! `cargo bench --bench protocol` (about 45 s). Throughput lines: `parse_command` reports commands
//! per second, `data_decoder` input bytes per second, `session` messages (transactions) per second.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use failmail::journal::attempts::{AttemptBook, AttemptsConfig, Recorder};
use failmail::smtp::command::parse_command;
use failmail::smtp::data::DataDecoder;
use failmail::smtp::policy::{AcceptAll, Connected, Policy, SessionPolicy};
use failmail::smtp::session::{self, Session, SessionConfig, Step, Trace};

/// What clients send, in about the proportions of a delivery (several RCPT per MAIL), without
/// line terminators (the session strips them before parsing).
const COMMANDS: &[&str] = &[
    "EHLO mta1.shop.example",
    "MAIL FROM:<orders@shop.example> SIZE=24576 BODY=8BITMIME",
    "RCPT TO:<alice@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.net",
    "RCPT TO:<bob.smith@mail.example.org>",
    "RCPT TO:<\"john doe\"@example.com>",
    "DATA",
    "RSET",
    "NOOP",
    "MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME",
    "RCPT TO:<josé@correo.example> NOTIFY=NEVER",
    "AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHMzY3JldC1wYXNzd29yZA==",
    "QUIT",
];

fn parse_command_mix(c: &mut Criterion) {
    for line in COMMANDS {
        if let Err(error) = parse_command(line.as_bytes()) {
            panic!("{line:?} does not parse: {error:?}");
        }
    }
    let lines: Vec<&[u8]> = COMMANDS.iter().map(|l| l.as_bytes()).collect();
    let mut group = c.benchmark_group("parse_command");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("mix of 12 commands", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = black_box(parse_command(black_box(line)));
            }
        })
    });
    group.finish();
}

/// A message of about `size` octets as a client sends it after DATA: headers, a body of 76-column
/// lines of which every tenth starts with a dot (so is stuffed: `..`), then `<CRLF>.<CRLF>`.
fn stuffed_message(size: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(size + 128);
    text.extend_from_slice(
        b"From: Orders <orders@shop.example>\r\n\
          To: Alice <alice@example.net>\r\n\
          Subject: Your order 12345 has shipped\r\n\
          Message-ID: <12345.1700000000@shop.example>\r\n\
          Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
          MIME-Version: 1.0\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\
          \r\n",
    );
    let mut line = 0usize;
    while text.len() < size {
        if line % 10 == 3 {
            // The body line ".end of section" goes on the wire stuffed.
            text.extend_from_slice(b"..end of section ");
        }
        let filler = b"The quick brown fox jumps over the lazy dog, then over the sleepy cat. ";
        let room = 76usize.saturating_sub(if line % 10 == 3 { 17 } else { 0 });
        text.extend_from_slice(&filler[..room.min(filler.len())]);
        text.extend_from_slice(b"\r\n");
        line += 1;
    }
    text.extend_from_slice(b".\r\n");
    text
}

/// Runs the decoder over `parts`; returns whether the end of data was found.
fn decode(parts: &[&[u8]], body: &mut BytesMut) -> bool {
    let mut decoder = DataDecoder::new(10 * 1024 * 1024);
    for part in parts {
        if decoder.decode(part, body).finished {
            return true;
        }
    }
    false
}

fn data_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_decoder");
    for (label, size) in [("1KiB", 1024), ("100KiB", 100 * 1024)] {
        let message = stuffed_message(size);
        let whole: Vec<&[u8]> = vec![&message];
        let segments: Vec<&[u8]> = message.chunks(1460).collect();
        let mut body = BytesMut::with_capacity(message.len());
        for parts in [&whole, &segments] {
            body.clear();
            assert!(decode(parts, &mut body), "the message must end");
            assert!(body.len() < message.len(), "the stuffing must be removed");
        }
        group.throughput(Throughput::Bytes(message.len() as u64));
        for (how, parts) in [("one piece", &whole), ("1460-byte segments", &segments)] {
            group.bench_with_input(BenchmarkId::new(label, how), parts, |b, parts| {
                b.iter(|| {
                    body.clear();
                    black_box(decode(parts, &mut body))
                })
            });
        }
    }
    group.finish();
}

/// One client's writes, as a PIPELINING client makes them: EHLO alone, then the envelope up to
/// DATA in one write, then the body with QUIT behind it.
fn transaction_writes() -> [Vec<u8>; 3] {
    let ehlo = b"EHLO mta1.shop.example\r\n".to_vec();
    let envelope = b"MAIL FROM:<orders@shop.example> SIZE=1200 BODY=8BITMIME\r\n\
                     RCPT TO:<alice@example.net>\r\n\
                     RCPT TO:<bob@example.net> NOTIFY=FAILURE\r\n\
                     RCPT TO:<carol@example.org>\r\n\
                     DATA\r\n"
        .to_vec();
    let mut body = stuffed_message(1024);
    body.extend_from_slice(b"QUIT\r\n");
    [ehlo, envelope, body]
}

/// Drives a session as the server's connection task does, with `policy` deciding each phase and
/// `recorder`, if any, following its transactions. Returns how many messages were accepted, and
/// whether the session closed.
fn drive(
    session: &mut Session,
    policy: &mut dyn SessionPolicy,
    mut recorder: Option<&mut Recorder>,
    step: Step,
    input: &mut BytesMut,
    out: &mut BytesMut,
) -> (usize, bool) {
    let mut accepted = 0;
    let step = session::drive::run(
        session,
        input,
        out,
        step,
        |phase, view| match policy.decide(phase, view).ready() {
            Ok(decision) => decision,
            Err(_) => panic!("the accept-all policy answers at once"),
        },
        |message| {
            black_box(message);
            accepted += 1;
            Ok(())
        },
    );
    // What the connection task carries to the metrics and the attempt history.
    for trace in session.drain_trace() {
        match (&mut recorder, trace) {
            (Some(recorder), Trace::Envelope(step)) => recorder.envelope(step, 0),
            (Some(recorder), Trace::Reply(reply)) => recorder.reply(&reply, 0),
            (_, trace) => {
                black_box(trace);
            }
        }
    }
    match step {
        Step::NeedInput => (accepted, false),
        Step::Close => (accepted, true),
        other => panic!("unexpected step {other:?}"),
    }
}

/// One connection: greeting, the three writes, QUIT, followed by the attempt history when
/// `attempts` is given. Returns (messages accepted, closed).
fn transaction(
    config: &Arc<SessionConfig>,
    id: u64,
    peer: SocketAddr,
    writes: &[Vec<u8>; 3],
    attempts: Option<&Arc<AttemptBook>>,
    buffers: (&mut BytesMut, &mut BytesMut),
) -> (usize, bool) {
    let (input, out) = buffers;
    let mut policy = AcceptAll.open(&Connected {
        peer,
        connections_from_ip: 1,
    });
    let mut session = Session::new(config.clone(), id, peer, false);
    session.set_envelope_tracing(attempts.is_some());
    let mut recorder = attempts.map(|book| Recorder::new(book.clone(), id, peer.ip(), false));
    let step = session.start();
    let policy = policy.as_mut();
    let (mut accepted, mut closed) =
        drive(&mut session, policy, recorder.as_mut(), step, input, out);
    for write in writes {
        out.clear();
        input.extend_from_slice(write);
        let step = session.advance(input, out);
        let (more, close) = drive(&mut session, policy, recorder.as_mut(), step, input, out);
        accepted += more;
        closed = close;
    }
    if let Some(recorder) = &mut recorder {
        recorder.finish(0);
    }
    (accepted, closed)
}

/// Gives the message of `writes` the Message-ID `<id.…@shop.example>`: every transaction is a new
/// message for the attempt history, as in a load test.
fn number_message(writes: &mut [Vec<u8>; 3], id: u64) {
    let body = &mut writes[2];
    let at = body
        .windows(7)
        .position(|w| w == b"<12345.")
        .expect("the message has its Message-ID")
        + 7;
    body[at..at + 10].copy_from_slice(format!("{:010}", id % 10_000_000_000).as_bytes());
}

fn session(c: &mut Criterion) {
    let config = Arc::new(SessionConfig::default());
    let peer: SocketAddr = "192.0.2.10:40000".parse().expect("an address");
    let writes = transaction_writes();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(4 * 1024);

    // Check once that the transaction goes through as meant: one message, then 221 and close.
    let buffers = (&mut input, &mut out);
    let (accepted, closed) = transaction(&config, 1, peer, &writes, None, buffers);
    let last = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(accepted, 1, "one message accepted; last replies: {last}");
    assert!(closed && last.contains("221 "), "QUIT answered: {last}");
    assert!(input.is_empty());

    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    let mut id = 1u64;
    group.bench_function(
        "EHLO, MAIL, 3 RCPT, DATA 1KiB, QUIT pipelined, accept-all",
        |b| {
            b.iter(|| {
                id += 1;
                input.clear();
                out.clear();
                let buffers = (&mut input, &mut out);
                black_box(transaction(&config, id, peer, &writes, None, buffers))
            })
        },
    );
    // The same with the attempt history on, each message new (its own Message-ID): the
    // history's share of the protocol core's cost, which benches/load.sh's scenario mode
    // measures end to end (failmail-scenario against failmail-scenario-no-attempts).
    let book = Arc::new(AttemptBook::new(AttemptsConfig::default()));
    let mut numbered = writes.clone();
    group.bench_function(
        "the same, followed by the attempt history (10,000 messages, each new)",
        |b| {
            b.iter(|| {
                id += 1;
                number_message(&mut numbered, id);
                input.clear();
                out.clear();
                let buffers = (&mut input, &mut out);
                black_box(transaction(
                    &config,
                    id,
                    peer,
                    &numbered,
                    Some(&book),
                    buffers,
                ))
            })
        },
    );
    group.finish();
    let followed = book.messages();
    assert_eq!(
        followed.len(),
        10_000,
        "the history followed every message, bounded"
    );
    assert!(followed
        .iter()
        .all(|m| m.recipients().len() == 3 && m.message_id.is_some()));
}

// criterion_group! makes a public function that cannot carry a doc comment.
#[allow(missing_docs)]
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = parse_command_mix, data_decoder, session
    }
}
criterion_main!(group::benches);
