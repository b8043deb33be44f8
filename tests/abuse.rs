//! Abuse cases: what a hostile or broken client gets, reply by reply, and that another client is
//! served normally while it happens and afterwards.
//!
//! Every server runs in process on 127.0.0.1 port 0. Random input comes from a fixed seed. The
//! durations here are configured server timeouts, pauses of the slow client, or hang guards: no
//! test asserts how long anything took.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use failmail::smtp::session::{DEFAULT_MAX_ERRORS, DEFAULT_MAX_JUNK_COMMANDS};
use failmail::RunningApp;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// xorshift64*: the same bytes on every run, without a dependency.
struct Garbage(u64);

impl Garbage {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }
}

/// The first `count` lines of random bytes (each with its LF) and the enhanced status the server
/// must answer each with: 5.5.2 for a line over 512 octets or with bytes no command has (NUL,
/// not UTF-8), else 5.5.1 (no such command).
fn garbage_lines(seed: u64, count: usize) -> (Vec<u8>, Vec<&'static str>) {
    let garbage = Garbage::new(seed).bytes(256 * 1024);
    let mut statuses = Vec::new();
    let mut start = 0;
    for (end, _) in garbage.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        let line = &garbage[start..end];
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        let bad_bytes = text.contains(&0) || std::str::from_utf8(text).is_err();
        statuses.push(if end + 1 - start > 512 || bad_bytes {
            "5.5.2"
        } else {
            "5.5.1"
        });
        start = end + 1;
        if statuses.len() == count {
            let write = garbage[..start].to_vec();
            assert!(write.iter().any(|&b| b >= 0x80), "high bytes included");
            assert!(write.contains(&0), "NUL bytes included");
            return (write, statuses);
        }
    }
    panic!("not enough lines in the garbage");
}

/// A gauge or counter from the server's `/metrics` text.
fn metric(server: &RunningApp, name: &str) -> u64 {
    let text = server.journal().metrics().render(&[]);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// Waits (bounded) until every connection has ended and every session ran to its end. A
/// session task that panicked would never count itself closed, so this also proves none did.
async fn wait_until_all_closed(server: &RunningApp) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while server.open_connections() > 0 || metric(server, "failmail_sessions_open") > 0 {
        assert!(
            Instant::now() < deadline,
            "connections still open: {}, sessions open: {}",
            server.open_connections(),
            metric(server, "failmail_sessions_open")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Only the given messages were stored (by their MAIL FROM local part).
#[track_caller]
fn assert_stored(server: &RunningApp, senders: &[&str]) {
    let stored: Vec<String> = server
        .messages()
        .list()
        .iter()
        .map(|m| m.message.mail_from.clone())
        .collect();
    let expected: Vec<String> = senders
        .iter()
        .map(|s| format!("{s}@client.example"))
        .collect();
    assert_eq!(stored, expected);
}

// ---------------------------------------------------------------------------------------------
// Garbage and bad bytes

/// Ten lines of random bytes (high bytes and NUL included) in one write: ten 500s, 5.5.1 or
/// 5.5.2 as each line deserves, and the same session then carries a whole transaction.
#[tokio::test]
async fn binary_garbage_gets_500s_and_the_session_stays_usable() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let (garbage, statuses) = garbage_lines(0x5EED_0006, 10);
    let mut conn = PlainConn::greeted(addr).await;
    conn.send(&garbage).await;
    full_transaction(addr, "during").await;
    for status in statuses {
        conn.expect(500, status).await;
    }
    transaction_on(&mut conn, "abuser").await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["during", "abuser", "after"]);
    server.shutdown().await;
}

/// `421 4.7.0 <hostname> Error: too many errors`, then the close.
async fn expect_too_many_errors(conn: &mut PlainConn) {
    let reply = conn.expect(421, "4.7.0").await;
    assert_eq!(
        reply.lines,
        [format!("4.7.0 {HOSTNAME} Error: too many errors")]
    );
    conn.expect_closed().await;
}

/// Past `max_errors` (20 by default, as Postfix's `smtpd_hard_error_limit`) syntax errors the
/// twentieth 500 is followed by `421 4.7.0 <hostname> Error: too many errors` and the close.
#[tokio::test]
async fn binary_garbage_past_the_error_limit_gets_421_4_7_0_and_is_closed() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let (garbage, statuses) = garbage_lines(0x5EED_0006, DEFAULT_MAX_ERRORS);
    let mut conn = PlainConn::greeted(addr).await;
    conn.send(&garbage).await;
    full_transaction(addr, "during").await;
    for status in statuses {
        conn.expect(500, status).await;
    }
    expect_too_many_errors(&mut conn).await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["during", "after"]);
    wait_until_all_closed(&server).await;
    server.shutdown().await;
}

/// A client that only keeps its connection alive (Postfix's "junk commands": NOOP, RSET, VRFY,
/// EXPN, HELP): the first 100 since the last transaction start are plain commands, each one past
/// that counts as an error too, so the 20th of those is followed by `421 4.7.0` and the close. A
/// MAIL answered 250 starts the count over.
#[tokio::test]
async fn keep_alive_commands_past_the_junk_limit_get_421_4_7_0_and_are_closed() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted(addr).await;
    conn.cmd_code("EHLO client.example", 250).await;
    for n in 0..DEFAULT_MAX_JUNK_COMMANDS {
        let verb = ["NOOP", "RSET", "VRFY someone", "HELP"][n % 4];
        conn.command(verb)
            .await
            .assert_code([250, 250, 252, 214][n % 4]);
    }
    // A transaction start: the count starts over.
    conn.cmd("MAIL FROM:<keeper@client.example>", 250, "2.1.0")
        .await;
    for _ in 0..DEFAULT_MAX_JUNK_COMMANDS {
        conn.cmd("NOOP", 250, "2.0.0").await;
    }
    for _ in 1..DEFAULT_MAX_ERRORS {
        conn.cmd("NOOP", 250, "2.0.0").await;
    }
    conn.send("NOOP\r\n").await;
    conn.expect(250, "2.0.0").await;
    expect_too_many_errors(&mut conn).await;
    full_transaction(addr, "after").await;
    server.shutdown().await;
}

/// With `max_errors = 0` there is no limit: 100 garbage lines, 100 replies, the session lives.
#[tokio::test]
async fn error_limit_zero_means_no_limit() {
    let server = start(sink_with(|c| c.session.max_errors = 0)).await;
    let addr = server.addresses().smtp;
    let (garbage, statuses) = garbage_lines(0x5EED_0007, 100);
    let mut conn = PlainConn::greeted(addr).await;
    conn.send(&garbage).await;
    for status in statuses {
        conn.expect(500, status).await;
    }
    transaction_on(&mut conn, "abuser").await;
    server.shutdown().await;
}

/// A NUL anywhere in a command line makes it no command: 500 5.5.2, nothing of it is executed
/// (a NUL-carrying EHLO does not count as EHLO, QUIT with a NUL does not quit), and the session
/// goes on.
#[tokio::test]
async fn nul_bytes_in_command_lines_get_500_5_5_2() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted(addr).await;
    let lines: [&[u8]; 6] = [
        b"NOOP\0\r\n",
        b"\0\r\n",
        b"\0EHLO client.example\r\n",
        b"EHLO client\0.example\r\n",
        b"MAIL FROM:<alice\0@client.example>\r\n",
        b"QUIT\0\r\n",
    ];
    for line in lines {
        conn.send(line).await;
        conn.expect(500, "5.5.2").await;
    }
    conn.send(lines.concat()).await;
    full_transaction(addr, "during").await;
    for _ in lines {
        conn.expect(500, "5.5.2").await;
    }
    conn.cmd("MAIL FROM:<alice@client.example>", 503, "5.5.1")
        .await;
    transaction_on(&mut conn, "abuser").await;
    assert_stored(&server, &["during", "abuser"]);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Overlong input

/// 1 MiB without a line end: the server drops it as it comes (the session buffers at most
/// 12288 octets of a line, see the session's unit tests), answers nothing until the line ends,
/// then exactly one 500 5.5.2; the transaction open before it is intact.
#[tokio::test]
async fn one_mebibyte_line_gets_one_500_5_5_2_and_the_session_resyncs() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted_ehlo(addr).await;
    conn.cmd("MAIL FROM:<abuser@client.example>", 250, "2.1.0")
        .await;
    conn.send(vec![b'x'; 1 << 20]).await;
    full_transaction(addr, "during").await;
    conn.send("\r\nRCPT TO:<bob@failmail.test>\r\nNOOP\r\n")
        .await;
    conn.expect(500, "5.5.2").await;
    conn.expect(250, "2.1.5").await;
    conn.expect(250, "2.0.0").await;
    conn.cmd("DATA", 354, "").await;
    conn.send("Subject: after the long line\r\n\r\nok\r\n.\r\n")
        .await;
    queue_id(&conn.reply().await);
    conn.quit().await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["during", "abuser", "after"]);
    server.shutdown().await;
}

/// 1 MiB without a line end that never ends: the command timeout bounds the whole line, so the
/// connection gets 421 4.4.2 and is closed.
#[tokio::test]
async fn one_mebibyte_line_that_never_ends_gets_421_4_4_2() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(1)
    }))
    .await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted(addr).await;
    conn.send(vec![b'x'; 1 << 20]).await;
    full_transaction(addr, "during").await;
    conn.expect_421_closed("4.4.2").await;
    full_transaction(addr, "after").await;
    server.shutdown().await;
}

/// 10,000 commands in one write (RFC 2920 PIPELINING): exactly 10,000 replies, in order (three
/// commands with three different replies take turns), then QUIT. The server never holds more
/// than one read of input and that read's replies.
#[tokio::test]
async fn ten_thousand_pipelined_commands_get_ten_thousand_replies_in_order() {
    const COMMANDS: usize = 10_000;
    // Commands that move no mail: without the junk-command limit, which would close the session.
    let server = start(sink_with(|c| c.session.max_junk_commands = 0)).await;
    let addr = server.addresses().smtp;
    let mut batch = Vec::new();
    for n in 0..COMMANDS {
        let line = match n % 3 {
            0 => format!("NOOP {n}\r\n"),
            1 => format!("VRFY user{n}\r\n"),
            _ => format!("EXPN list{n}\r\n"),
        };
        batch.extend_from_slice(line.as_bytes());
    }
    let (mut reader, mut writer) = PlainConn::greeted(addr).await.into_split();
    // Written by another task while the replies are read, as a pipelining client must.
    let write = tokio::spawn(async move {
        writer
            .write_all(&batch)
            .await
            .expect("the batch is written");
        writer
    });
    full_transaction(addr, "during").await;
    for n in 0..COMMANDS {
        match n % 3 {
            0 => reader.expect(250, "2.0.0").await,
            1 => reader.expect(252, "2.0.0").await,
            _ => reader.expect(502, "5.5.1").await,
        };
    }
    let mut writer = tokio::time::timeout(IO_TIMEOUT, write)
        .await
        .expect("the batch is written within 10 s")
        .unwrap();
    writer.write_all(b"QUIT\r\n").await.unwrap();
    reader.expect(221, "2.0.0").await;
    reader.expect_closed().await;
    full_transaction(addr, "after").await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Message bodies

/// A 1 MiB DATA body over a 64 KiB limit: read to its end without being kept, 552 5.3.4, and the
/// next MAIL on the same session starts a transaction that succeeds.
#[tokio::test]
async fn data_over_the_size_limit_gets_552_5_3_4_and_the_session_resyncs() {
    let server = start(sink_with(|c| c.session.max_message_size = 64 * 1024)).await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted_ehlo(addr).await;
    conn.begin_data("big@client.example", "bob@failmail.test")
        .await;
    let mut body = format!("{}\r\n", "d".repeat(1022)).repeat(1024);
    body.push_str(".\r\n");
    conn.send(&body).await;
    full_transaction(addr, "during").await;
    conn.expect(552, "5.3.4").await;
    conn.begin_data("abuser@client.example", "bob@failmail.test")
        .await;
    conn.send("Subject: small\r\n\r\nok\r\n.\r\n").await;
    queue_id(&conn.reply().await);
    conn.quit().await;
    assert_stored(&server, &["during", "abuser"]);
    server.shutdown().await;
}

/// DATA that never ends: the data timeout answers 421 4.4.2 and closes; nothing is stored.
#[tokio::test]
async fn data_that_never_ends_gets_421_4_4_2() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(10);
        c.server.timeouts.data = Duration::from_millis(500);
    }))
    .await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted_ehlo(addr).await;
    conn.begin_data("abuser@client.example", "bob@failmail.test")
        .await;
    conn.send("Subject: never ends\r\n\r\nhalf a li").await;
    full_transaction(addr, "during").await;
    conn.expect_421_closed("4.4.2").await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["during", "after"]);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Slow and greedy clients

/// Slowloris: one byte of a command line at a time with small pauses. The command timeout
/// bounds the whole line, not each read, so the connection gets 421 4.4.2 and is closed long
/// before the client runs out of bytes, while another client completes a transaction.
#[tokio::test]
async fn slowloris_gets_421_4_4_2_from_the_command_timeout() {
    const BYTES: usize = 400;
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(1)
    }))
    .await;
    let addr = server.addresses().smtp;
    let slow = tokio::spawn(async move {
        let mut conn = PlainConn::greeted(addr).await;
        let line: Vec<u8> = b"NOOP ".iter().copied().chain([b'z'; BYTES]).collect();
        let mut sent = 0;
        for byte in &line[..BYTES] {
            // The pause between bytes; it ends early when the server says something.
            if conn.readable_within(Duration::from_millis(25)).await {
                break;
            }
            if conn.try_send([*byte]).await.is_err() {
                break;
            }
            sent += 1;
        }
        conn.expect_421_closed("4.4.2").await;
        sent
    });
    full_transaction(addr, "during").await;
    let sent = slow.await.unwrap();
    assert!(
        sent < BYTES,
        "the server answered only after the slow client stopped sending"
    );
    full_transaction(addr, "after").await;
    wait_until_all_closed(&server).await;
    server.shutdown().await;
}

/// With a per-IP cap of 20, 200 connections from 127.0.0.1: exactly 20 greeted, 180 get
/// `421 4.7.0 <hostname> Too many connections from your IP address, try again later` and are
/// closed (on the SMTPS port too, over TLS). 127.0.0.2 is served meanwhile, and 127.0.0.1 again
/// once its connections are closed.
#[tokio::test]
async fn per_ip_connection_cap_gives_421_4_7_0() {
    let server = start(sink_with(|c| c.server.max_connections_per_ip = Some(20))).await;
    let addr = server.addresses().smtp;
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(PlainConn::connect(addr).await);
    }
    let mut greeted = Vec::new();
    let mut refused = 0;
    for mut conn in conns {
        let reply = conn.reply().await;
        if reply.code == 220 {
            assert!(reply.lines[0].starts_with(HOSTNAME), "{}", reply.text());
            greeted.push(conn);
        } else {
            reply.assert(421, "4.7.0");
            assert_eq!(
                reply.lines,
                [format!(
                    "4.7.0 {HOSTNAME} Too many connections from your IP address, try again later"
                )]
            );
            conn.expect_closed().await;
            refused += 1;
        }
    }
    assert_eq!((greeted.len(), refused), (20, 180));
    assert_eq!(server.open_connections(), 20);

    let mut tls = TlsConn::connect_tls(server.addresses().smtps.unwrap()).await;
    tls.expect_421_closed("4.7.0").await;
    assert_eq!(metric(&server, "failmail_limit_refusals_total"), 181);

    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut conn = PlainConn::connect_from(other, addr).await;
    conn.expect_greeting().await;
    transaction_on(&mut conn, "other-ip").await;

    for conn in &mut greeted {
        conn.cmd("NOOP", 250, "2.0.0").await;
    }
    drop(greeted);
    wait_until_all_closed(&server).await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["other-ip", "after"]);
    server.shutdown().await;
}

/// A client that pipelines a lot and never reads the replies (its receive window stays full):
/// the server's write gives up after the command timeout and the connection is dropped, instead
/// of holding its slot forever; another client is served meanwhile.
#[tokio::test]
async fn client_that_never_reads_its_replies_is_dropped() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(1)
    }))
    .await;
    let addr = server.addresses().smtp;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
        .await
        .expect("connect within 10 s")
        .unwrap();
    let (reader, mut writer) = PlainConn::new(stream).into_split();
    // 600 KB of HELP: about 13 MB of replies, far more than any socket buffer holds.
    let batch = "HELP\r\n".repeat(100_000);
    let write = tokio::spawn(async move {
        // Fails once the server gives up and resets the connection.
        let _ = writer.write_all(batch.as_bytes()).await;
        writer
    });
    full_transaction(addr, "during").await;
    wait_until_all_closed(&server).await;
    let writer = tokio::time::timeout(IO_TIMEOUT, write)
        .await
        .expect("the writer ends")
        .unwrap();
    drop((reader, writer));
    full_transaction(addr, "after").await;
    server.shutdown().await;
}

/// A client that sends a big pipelined batch and closes at once, its replies unread: the
/// server's writes fail, the session ends normally (no panic: it counts itself closed), and the
/// next client is served.
#[tokio::test]
async fn client_that_disconnects_mid_reply_does_not_disturb_the_server() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    for _ in 0..3 {
        let mut conn = PlainConn::greeted(addr).await;
        conn.send("EHLO client.example\r\n".repeat(20_000)).await;
        drop(conn);
    }
    full_transaction(addr, "during").await;
    wait_until_all_closed(&server).await;
    full_transaction(addr, "after").await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// TLS

/// Garbage where a TLS ClientHello belongs, on the SMTPS port and after STARTTLS: the handshake
/// fails and the connection is closed: after a `decode_error` alert for a complete record,
/// silently when the stream ends inside one. Each failure is counted, and TLS and plain clients
/// are served meanwhile and afterwards.
#[tokio::test]
async fn tls_garbage_closes_the_connection_and_others_are_served() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let smtps = server.addresses().smtps.unwrap();

    // A handshake record with a ClientHello header and a random body.
    let body = Garbage::new(0x7153).bytes(512);
    let mut hello = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hello.extend_from_slice(&body);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        (hello.len() >> 8) as u8,
        hello.len() as u8,
    ];
    record.extend_from_slice(&hello);

    // 1. Random bytes on the SMTPS port.
    let mut conn = PlainConn::connect(smtps).await;
    let _ = conn.try_send(Garbage::new(0x7154).bytes(4096)).await;
    assert_eq!(conn.read_to_close().await, DECODE_ERROR_ALERT);

    // 2. A garbage ClientHello on the SMTPS port.
    let mut conn = PlainConn::connect(smtps).await;
    let _ = conn.try_send(&record).await;
    assert_eq!(conn.read_to_close().await, DECODE_ERROR_ALERT);

    // 3. Half a ClientHello, then the end of the stream.
    let mut conn = PlainConn::connect(smtps).await;
    conn.send(&record[..40]).await;
    full_transaction(addr, "during").await;
    conn.shutdown_write().await;
    assert_eq!(conn.read_to_close().await, b"");

    // 4. A garbage ClientHello after STARTTLS.
    let mut conn = PlainConn::greeted_ehlo(addr).await;
    conn.cmd("STARTTLS", 220, "2.0.0").await;
    let _ = conn.try_send(&record).await;
    assert_eq!(conn.read_to_close().await, DECODE_ERROR_ALERT);

    let mut tls = TlsConn::connect_tls(smtps).await;
    tls.expect_greeting().await;
    transaction_on(&mut tls, "tls").await;
    full_transaction(addr, "after").await;
    wait_until_all_closed(&server).await;
    assert_eq!(
        metric(&server, "failmail_tls_handshakes_total{result=\"error\"}"),
        4
    );
    assert_eq!(
        metric(&server, "failmail_tls_handshakes_total{result=\"ok\"}"),
        1
    );
    assert_stored(&server, &["during", "tls", "after"]);
    server.shutdown().await;
}

/// What rustls sends when a ClientHello cannot be decoded: one plaintext alert record, fatal
/// `decode_error`.
const DECODE_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];

/// STARTTLS under TLS (RFC 3207 §4.2: no longer announced after the handshake) gets
/// `503 5.5.1 Error: TLS already active` and the TLS session goes on to deliver a message.
#[tokio::test]
async fn starttls_twice_gets_503_5_5_1() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted(addr).await;
    let ehlo = conn.ehlo("client.example").await;
    assert!(announces(&ehlo, "STARTTLS"), "{}", ehlo.text());
    conn.cmd("STARTTLS", 220, "2.0.0").await;
    let mut tls = conn.starttls().await;
    let ehlo = tls.ehlo("client.example").await;
    assert!(!announces(&ehlo, "STARTTLS"), "{}", ehlo.text());
    let reply = tls.cmd("STARTTLS", 503, "5.5.1").await;
    assert_eq!(reply.lines, ["5.5.1 Error: TLS already active"]);
    full_transaction(addr, "during").await;
    transaction_on(&mut tls, "abuser").await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 2);
    assert!(messages[1].message.tls);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// AUTH

/// Undecodable AUTH responses (not base64, not UTF-8, base64 of something that is not a PLAIN
/// message), as initial responses and after 334: each gets 501 5.5.2, the exchange is over,
/// and the session can then authenticate and deliver.
#[tokio::test]
async fn auth_with_bad_base64_gets_501_5_5_2_and_the_session_stays_usable() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = PlainConn::greeted_ehlo(addr).await;
    conn.cmd("AUTH PLAIN !!!not-base64!!!", 501, "5.5.2").await;
    conn.cmd("AUTH PLAIN dGVzdA==", 501, "5.5.2").await;
    conn.cmd("AUTH LOGIN ***", 501, "5.5.2").await;
    conn.cmd("AUTH PLAIN", 334, "").await;
    conn.cmd("%%%", 501, "5.5.2").await;
    conn.cmd("AUTH PLAIN", 334, "").await;
    conn.send(b"\xff\xfe\x00\r\n").await;
    conn.expect(501, "5.5.2").await;
    conn.cmd("AUTH LOGIN", 334, "").await;
    conn.cmd("@@@", 501, "5.5.2").await;
    conn.cmd("AUTH LOGIN", 334, "").await;
    conn.cmd("YWxpY2U=", 334, "").await;
    conn.cmd("!!", 501, "5.5.2").await;
    full_transaction(addr, "during").await;
    conn.cmd("NOOP", 250, "2.0.0").await;
    let credentials = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0s3cret");
    conn.cmd(&format!("AUTH PLAIN {credentials}"), 235, "2.7.0")
        .await;
    transaction_on(&mut conn, "abuser").await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].message.auth_user.as_deref(), Some("alice"));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// BDAT sizes that lie (RFC 3030)

async fn bdat_ready(addr: std::net::SocketAddr) -> PlainConn {
    let mut conn = PlainConn::greeted_ehlo(addr).await;
    conn.envelope("abuser@client.example", "bob@failmail.test")
        .await;
    conn
}

/// BDAT declares 1000 octets, 10 come, then the client closes: no reply, the connection ends,
/// nothing is stored.
#[tokio::test]
async fn bdat_declaring_more_than_sent_then_closing_stores_nothing() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = bdat_ready(addr).await;
    conn.send("BDAT 1000 LAST\r\n0123456789").await;
    full_transaction(addr, "during").await;
    conn.shutdown_write().await;
    conn.expect_closed().await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["during", "after"]);
    wait_until_all_closed(&server).await;
    server.shutdown().await;
}

/// BDAT declares 5 octets and 11 come: the message is the first 5, and the rest is read as a
/// command line (` world`: 500 5.5.1); the session stays in sync.
#[tokio::test]
async fn bdat_declaring_less_than_sent_reads_the_rest_as_commands() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let mut conn = bdat_ready(addr).await;
    conn.send("BDAT 5 LAST\r\nhello world\r\nNOOP\r\n").await;
    queue_id(&conn.reply().await);
    conn.expect(500, "5.5.1").await;
    conn.expect(250, "2.0.0").await;
    full_transaction(addr, "during").await;
    transaction_on(&mut conn, "again").await;
    let messages = server.messages().list();
    assert_eq!(messages.len(), 3);
    assert_eq!(&messages[0].message.data[..], b"hello");
    server.shutdown().await;
}

/// BDAT declaring more than the size limit gets 552 5.3.4 at once, before any of the chunk is
/// sent (so a declared 2^64-1 octets are never waited for nor allocated); a client that then
/// sends the chunk anyway stays in sync.
#[tokio::test]
async fn bdat_declaring_more_than_the_size_limit_gets_552_5_3_4_at_once() {
    let server = start(sink_with(|c| c.session.max_message_size = 1000)).await;
    let addr = server.addresses().smtp;

    let mut conn = bdat_ready(addr).await;
    conn.send(format!("BDAT {} LAST\r\n", u64::MAX)).await;
    conn.expect(552, "5.3.4").await;
    conn.send(vec![b'b'; 64 * 1024]).await;
    full_transaction(addr, "during").await;
    drop(conn);

    let mut conn = bdat_ready(addr).await;
    conn.send("BDAT 5000 LAST\r\n").await;
    conn.expect(552, "5.3.4").await;
    let mut chunk = vec![b'c'; 5000];
    chunk.extend_from_slice(b"NOOP\r\n");
    conn.send(&chunk).await;
    conn.expect(250, "2.0.0").await;
    // The limit counts the chunks already received: 600 fit, 600 more do not.
    conn.envelope("abuser@client.example", "bob@failmail.test")
        .await;
    let mut chunk = b"BDAT 600\r\n".to_vec();
    chunk.extend_from_slice(&[b'd'; 600]);
    conn.send(&chunk).await;
    conn.expect(250, "2.0.0").await;
    conn.send("BDAT 600\r\n").await;
    conn.expect(552, "5.3.4").await;
    conn.send(vec![b'e'; 600]).await;
    conn.send("BDAT 2 LAST\r\nok").await;
    conn.expect(503, "5.5.1").await;
    conn.cmd("RSET", 250, "2.0.0").await;
    transaction_on(&mut conn, "abuser").await;
    full_transaction(addr, "after").await;
    assert_stored(&server, &["during", "abuser", "after"]);
    wait_until_all_closed(&server).await;
    server.shutdown().await;
}
