//! The journal under load and its outputs: the message and event rings stay bounded (memory
//! measured), `--no-store` keeps nothing but still accepts, the events file holds every event in
//! order, and the metrics counters agree with the events.
//!
//! Every network wait is bounded by a tokio timeout; nothing asserts on timing.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{PlainConn, Reply};
use failmail::journal::{Event, EventKind};
use failmail::testing::TestServer;
use tokio::io::AsyncWriteExt;

/// Hang guard for one network wait.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Hang guard for the whole 100,000-message run (debug builds included).
const BLAST_TIMEOUT: Duration = Duration::from_secs(300);

/// The tests of this file run one at a time: the memory test reads the RSS of the whole process,
/// which the other tests would otherwise add to.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Sessions.

/// Connects with this file's hang guard, checks that the greeting is a 220 and says EHLO as
/// `helo`.
async fn connect(addr: SocketAddr, helo: &str) -> PlainConn {
    let mut client = PlainConn::connect(addr).await.with_timeout(IO_TIMEOUT);
    client.expect_code(220).await;
    client.cmd_code(&format!("EHLO {helo}"), 250).await;
    client
}

/// `count` messages of `size` octets on one connection, one transaction after another, the
/// n-th tagged `{tag}m{n}`; each must get a 250, and the replies are returned.
async fn deliver_all(client: &mut PlainConn, tag: &str, count: usize, size: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for n in 0..count {
        let mut data = body(size, &format!("{tag}m{n}"));
        data.extend_from_slice(b".\r\n");
        let reply = client
            .deliver("a@example.com", "b@example.com", &data)
            .await;
        assert_eq!(reply.code, 250, "{:?}", reply.wire);
        replies.push(reply);
    }
    replies
}

/// A message body of exactly `size` octets (headers, blank line, text lines, final CRLF), with no
/// line starting with a dot, so that it is stored byte for byte.
fn body(size: usize, tag: &str) -> Vec<u8> {
    let mut out = format!("Subject: {tag}\r\nFrom: a@example.com\r\n\r\n").into_bytes();
    assert!(size >= out.len() + 2, "body too small for its headers");
    let line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while out.len() + line.len() + 2 <= size {
        out.extend_from_slice(line);
    }
    while out.len() < size - 2 {
        out.push(b'x');
    }
    out.extend_from_slice(b"\r\n");
    assert_eq!(out.len(), size);
    out
}

/// Sends `count` messages of `message` on one connection, pipelined: batches of `batch`
/// transactions (MAIL, RCPT, DATA, body, `.`) are written while the replies are read on the same
/// connection concurrently. Checks every reply (250 250 354 250 per transaction).
async fn blast(addr: SocketAddr, count: usize, batch: usize, message: Arc<Vec<u8>>) {
    let client = connect(addr, "blast.example").await;
    let (mut reader, mut write_half) = client.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        let mut buffer = Vec::with_capacity(batch * (message.len() + 100));
        while sent < count {
            buffer.clear();
            let n = batch.min(count - sent);
            for _ in 0..n {
                buffer.extend_from_slice(
                    b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n",
                );
                buffer.extend_from_slice(&message);
                buffer.extend_from_slice(b".\r\n");
            }
            write_half
                .write_all(&buffer)
                .await
                .expect("the server reads what is sent");
            sent += n;
        }
        write_half.write_all(b"QUIT\r\n").await.expect("QUIT sent");
        write_half
    });
    let expected = [250u16, 250, 354, 250];
    for n in 0..count * expected.len() + 1 {
        let line = reader
            .line()
            .await
            .unwrap_or_else(|| panic!("connection ended after {n} replies"));
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let want = if n == count * expected.len() {
            221
        } else {
            expected[n % expected.len()]
        };
        assert_eq!(code, Some(want), "reply {n}: {line}");
        assert_eq!(
            line.as_bytes().get(3),
            Some(&b' '),
            "single-line replies only here"
        );
    }
    let _write_half = writer.await.expect("the writer finished");
}

/// The resident set size of this process, in KiB (`VmRSS` in /proc/self/status).
fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Waits until every session that started has ended (its `session_end` event is kept).
async fn wait_sessions_ended(server: &TestServer) {
    tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let events = server.events();
            let started = count(&events, |k| matches!(k, EventKind::SessionStart { .. }));
            let ended = count(&events, |k| matches!(k, EventKind::SessionEnd { .. }));
            if started == ended {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every session ends within the timeout");
}

fn count(events: &[Arc<Event>], pred: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.kind)).count()
}

// ---------------------------------------------------------------------------------------------

/// 100,000 messages of 2 KiB into a ring of 1,000 and an event ring of 10,000.
///
/// Bound: what the rings may keep is 1,000 × 2 KiB of bodies (plus their envelopes) and 10,000
/// events of a few hundred octets: about 5 MiB. Connections add their read buffers (16 KiB
/// steps) and the runtime its allocations. 64 MiB of growth leaves ample room for allocator
/// slack, yet keeping every message would need at least 100,000 × 2,048 octets = 195 MiB for the
/// bodies alone (and the ~800,000 events some 100 MiB more), so an unbounded ring cannot pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ring_holds_its_bound_under_100k_messages() {
    const MESSAGES: usize = 100_000;
    const CONNECTIONS: usize = 20;
    const BATCH: usize = 100;
    const SIZE: usize = 2048;
    const BOUND_KIB: u64 = 64 * 1024;
    const _: () = assert!(
        (MESSAGES * SIZE) as u64 > 3 * BOUND_KIB * 1024,
        "unbounded storage must exceed the bound"
    );

    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with("", |config| {
        config.journal.message_capacity = 1000;
        config.journal.event_capacity = 10_000;
    })
    .await;
    let message = Arc::new(body(SIZE, "load"));
    // Warm up (runtime threads, first connection, the rings' first allocations) before the
    // baseline, so that the measured growth is what the 100,000 messages add.
    blast(server.smtp_addr(), 100, 10, message.clone()).await;
    let before = rss_kib("VmRSS:");

    let addr = server.smtp_addr();
    let run = async {
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            senders.spawn(blast(addr, MESSAGES / CONNECTIONS, BATCH, message.clone()));
        }
        while let Some(done) = senders.join_next().await {
            done.expect("a sender failed");
        }
    };
    tokio::time::timeout(BLAST_TIMEOUT, run)
        .await
        .expect("100,000 messages within the hang guard");
    let after = rss_kib("VmRSS:");
    let peak = rss_kib("VmHWM:");
    let growth = after.saturating_sub(before);
    println!(
        "RSS before {before} KiB, after {after} KiB, growth {growth} KiB (bound {BOUND_KIB} KiB); \
         peak RSS {peak} KiB; unbounded bodies alone would be {} KiB",
        (MESSAGES * SIZE) / 1024
    );

    let store = server.app().messages();
    let kept = server.messages();
    let total = (MESSAGES + 100) as u64;
    assert_eq!(kept.len(), 1000);
    assert_eq!(store.accepted(), total);
    assert_eq!(store.dropped(), total - 1000);
    // The ring keeps the latest 1,000. Ids are taken before the ring's lock, so concurrent
    // sessions may store neighbours in swapped order: each of the (at most CONNECTIONS) pushes in
    // flight can move an id by that much, never more.
    let mut ids: Vec<u64> = kept.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "distinct messages");
    let oldest_allowed = total - 1000 - CONNECTIONS as u64;
    assert!(
        ids[0] > oldest_allowed && *ids.last().unwrap() == total,
        "the latest messages are kept: ids {}..={}",
        ids[0],
        ids.last().unwrap()
    );
    assert!(kept.iter().all(|m| m.message.data[..] == message[..]));

    let log = server
        .app()
        .journal()
        .events()
        .expect("events are recorded");
    assert!(log.len() <= 10_000, "{} events kept", log.len());
    assert_eq!(
        log.len(),
        10_000,
        "the event ring is full after this many events"
    );
    // Per transaction: MAIL, 250, RCPT, 250, DATA, 354, message, 250.
    assert!(
        log.recorded() >= 8 * total,
        "{} events recorded",
        log.recorded()
    );
    assert_eq!(log.dropped(), log.recorded() - log.len() as u64);

    // The metrics say the same.
    let metrics = parse_metrics(&server.metrics_text());
    assert_eq!(metrics["failmail_messages_total"], total);
    assert_eq!(metrics["failmail_messages_dropped_total"], total - 1000);
    assert_eq!(metrics["failmail_events_dropped_total"], log.dropped());

    assert!(
        growth < BOUND_KIB,
        "RSS grew by {growth} KiB under 100,000 messages (bound {BOUND_KIB} KiB)"
    );
    server.shutdown().await;
}

/// `--no-store`: `message_capacity = 0` and `record_events = false` keep nothing, and every
/// message still gets its 250.
#[tokio::test]
async fn no_store_keeps_nothing_and_still_accepts() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with("", |config| {
        config.journal.message_capacity = 0;
        config.journal.record_events = false;
    })
    .await;
    let mut client = connect(server.smtp_addr(), "nostore.example").await;
    for reply in deliver_all(&mut client, "", 20, 300).await {
        assert!(reply.wire[0].starts_with("250 2.0.0"), "{:?}", reply.wire);
    }
    client.quit_221().await;

    assert!(server.messages().is_empty());
    assert!(
        server.app().journal().events().is_none(),
        "no event journal at all"
    );
    assert!(server.events().is_empty());
    let store = server.app().messages();
    assert_eq!(store.accepted(), 20);
    assert_eq!(store.dropped(), 20);
    assert!(
        server
            .metrics_text()
            .lines()
            .any(|l| l == "failmail_messages_total 20"),
        "{}",
        server.metrics_text()
    );
    server.shutdown().await;
}

/// `--events FILE`: every event in the ring is in the file as one JSON line, in the same order,
/// with the same content.
#[tokio::test]
async fn events_file_has_every_event_in_order() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("events.jsonl");
    let file = path.clone();
    let server = TestServer::start_with("", move |config| {
        config.journal.events_file = Some(file);
    })
    .await;
    for session in 0..3 {
        let mut client = connect(server.smtp_addr(), "events.example").await;
        deliver_all(&mut client, &format!("s{session}"), 2, 200).await;
        client.cmd_code("MAIL FROM:<a@example.com>", 250).await;
        client
            .cmd_code("RCPT TO:<user_unknown@example.com>", 550)
            .await;
        client.cmd_code("RSET", 250).await;
        client.cmd_code("BOGUS", 500).await;
        client.quit_221().await;
    }
    wait_sessions_ended(&server).await;
    let ring = server.events();
    assert!(ring.len() > 50, "{} events", ring.len());
    assert_eq!(
        server.app().journal().events().unwrap().dropped(),
        0,
        "nothing dropped"
    );

    // The file is written by a thread of its own: wait (bounded) until it has caught up.
    let text = tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.ends_with('\n') && text.lines().count() >= ring.len() {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the events file catches up within the timeout");

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), ring.len(), "one line per event");
    for (line, event) in lines.iter().zip(&ring) {
        let expected = serde_json::to_value(&**event).unwrap();
        assert_eq!(
            line, &expected,
            "the file says what the ring says, in order"
        );
    }
    let ids: Vec<u64> = lines.iter().map(|l| l["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids in order: {ids:?}"
    );
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    for kind in [
        "session_start",
        "command",
        "reply",
        "message",
        "session_end",
    ] {
        assert!(types.contains(&kind), "a {kind} line: {types:?}");
    }
    server.shutdown().await;
}

/// The Prometheus counters agree with the journal: sessions, replies by code, messages.
#[tokio::test]
async fn metrics_counters_match_the_events() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start("").await;
    for session in 0..4 {
        let mut client = connect(server.smtp_addr(), "metrics.example").await;
        deliver_all(&mut client, &format!("s{session}"), session, 200).await;
        client.cmd_code("MAIL FROM:<a@example.com>", 250).await;
        client
            .cmd_code("RCPT TO:<mailbox_full@example.com>", 452)
            .await;
        client
            .cmd_code("RCPT TO:<550-5.7.1@example.com>", 550)
            .await;
        client.cmd_code("DATA", 554).await;
        client.cmd_code("NOOP", 250).await;
        client.cmd_code("BOGUS", 500).await;
        client.quit_221().await;
    }
    // One session the client simply drops after the greeting.
    let mut dropped = PlainConn::connect(server.smtp_addr())
        .await
        .with_timeout(IO_TIMEOUT);
    dropped.expect_code(220).await;
    drop(dropped);
    wait_sessions_ended(&server).await;

    let events = server.events();
    let metrics = parse_metrics(&server.metrics_text());
    let sessions = count(&events, |k| matches!(k, EventKind::SessionStart { .. }));
    assert_eq!(sessions, 5);
    assert_eq!(metrics["failmail_sessions_total"], sessions as u64);
    assert_eq!(metrics["failmail_sessions_open"], 0);

    let messages = count(&events, |k| matches!(k, EventKind::Message { .. }));
    assert_eq!(messages, 6);
    assert_eq!(metrics["failmail_messages_total"], messages as u64);

    let mut replies: BTreeMap<u16, u64> = BTreeMap::new();
    for event in &events {
        if let EventKind::Reply { code, .. } = event.kind {
            *replies.entry(code).or_default() += 1;
        }
    }
    let mut counted: BTreeMap<u16, u64> = BTreeMap::new();
    for (name, value) in &metrics {
        if let Some(labels) = name.strip_prefix("failmail_replies_total{code=\"") {
            let code: u16 = labels[..3].parse().unwrap();
            counted.insert(code, *value);
        }
    }
    assert_eq!(counted, replies, "replies by code: metrics vs events");
    for code in [220, 221, 250, 354, 452, 500, 550, 554] {
        assert!(replies.contains_key(&code), "a {code} reply: {replies:?}");
    }
    server.shutdown().await;
}

/// `name{labels} value` lines of a Prometheus text exposition (comments skipped).
fn parse_metrics(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse::<f64>().ok()? as u64))
        })
        .collect()
}
