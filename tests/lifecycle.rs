//! Connection lifecycle: read timeouts, the connection cap, graceful shutdown (in-process and of
//! the `failmail` binary on SIGTERM/SIGINT). Durations here are hang guards or configured
//! timeouts; no test asserts how long something took.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Timeouts

#[tokio::test]
async fn idle_client_gets_421_timeout_then_eof() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_millis(300)
    }))
    .await;
    // Nothing is sent after the greeting: any later command would race with the 300 ms timer.
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    let reply = conn.expect_421_closed("4.4.2").await;
    assert_eq!(reply.lines.len(), 1);
    server.shutdown().await;
}

/// The read timer is set once and re-armed when it fires while the client is still active:
/// commands spread over longer than the timeout all get their replies, and the timeout still
/// comes once the client falls silent. (Gaps of 150 ms against a 1 s timeout: only a stall of
/// most of a second could make a command late.)
#[tokio::test]
async fn an_active_client_outlives_the_timeout_and_an_idle_one_then_gets_it() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(1)
    }))
    .await;
    let mut conn = PlainConn::greeted(server.addresses().smtp).await;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.cmd("NOOP", 250, "2.0.0").await;
    }
    conn.expect_421_closed("4.4.2").await;
    server.shutdown().await;
}

#[tokio::test]
async fn idle_client_after_greeting_gets_421_timeout_under_implicit_tls() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_millis(300)
    }))
    .await;
    let mut conn = TlsConn::connect_tls(server.addresses().smtps.unwrap()).await;
    conn.expect_greeting().await;
    conn.expect_421_closed("4.4.2").await;
    server.shutdown().await;
}

/// The data timeout applies inside DATA; the half-received message is not kept.
#[tokio::test]
async fn stalled_data_gets_421_timeout_and_nothing_is_stored() {
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(60);
        c.server.timeouts.data = Duration::from_millis(300);
    }))
    .await;
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    conn.send("Subject: never finished\r\n\r\nhalf a bo").await;
    conn.expect_421_closed("4.4.2").await;
    assert!(server.messages().list().is_empty());
    assert_eq!(server.messages().accepted(), 0);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Connection cap

#[tokio::test]
async fn third_connection_over_the_cap_gets_421_and_the_first_two_work() {
    let server = start(sink_with(|c| c.server.max_connections = 2)).await;
    let addr = server.addresses().smtp;
    let mut first = PlainConn::greeted(addr).await;
    let mut second = PlainConn::greeted(addr).await;
    assert_eq!(server.open_connections(), 2);

    let mut third = PlainConn::connect(addr).await;
    let reply = third.expect_421_closed("4.7.0").await;
    assert_eq!(reply.lines.len(), 1);

    first.ehlo("first.example").await;
    second.ehlo("second.example").await;
    first
        .cmd("MAIL FROM:<alice@client.example>", 250, "2.1.0")
        .await;
    second
        .cmd("MAIL FROM:<bob@client.example>", 250, "2.1.0")
        .await;
    first.cmd("RCPT TO:<x@failmail.test>", 250, "2.1.5").await;
    second.cmd("RCPT TO:<y@failmail.test>", 250, "2.1.5").await;
    first.cmd("DATA", 354, "").await;
    first
        .send("Subject: under the cap\r\n\r\nok\r\n.\r\n")
        .await;
    queue_id(&first.reply().await);
    first.quit().await;

    // Once the first connection is gone its slot is free again (bounded wait, not a timing test).
    let deadline = Instant::now() + IO_TIMEOUT;
    while server.open_connections() > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed connection's slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fourth = PlainConn::greeted(addr).await;
    fourth.cmd("NOOP", 250, "2.0.0").await;
    fourth.quit().await;

    second.cmd("DATA", 354, "").await;
    second.send("Subject: second\r\n\r\nok\r\n.\r\n").await;
    queue_id(&second.reply().await);
    second.quit().await;
    assert_eq!(server.messages().list().len(), 2);
    server.shutdown().await;
}

/// On the implicit-TLS port everything is TLS (RFC 8314): the over-the-cap 421 must come after
/// the handshake, not as plaintext that the client's TLS layer takes for a corrupt record.
#[tokio::test]
async fn over_the_cap_on_smtps_the_421_comes_over_tls() {
    let server = start(sink_with(|c| c.server.max_connections = 1)).await;
    let smtps = server.addresses().smtps.unwrap();
    let mut first = TlsConn::connect_tls(smtps).await;
    first.expect_greeting().await;
    let mut second = TlsConn::connect_tls(smtps).await;
    second.expect_421_closed("4.7.0").await;
    first.quit().await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown, in process

async fn connect_fails(addr: SocketAddr) {
    let attempt = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect attempt finishes within 10 s");
    assert!(
        attempt.is_err(),
        "a connection to {addr} was accepted after shutdown"
    );
}

/// A client in the middle of DATA finishes its message and gets 250; an idle one gets
/// 421 4.3.2; once shutdown returned, nobody can connect.
#[tokio::test]
async fn shutdown_lets_data_in_progress_finish() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let messages = server.messages().clone();

    let mut sending = PlainConn::greeted_ehlo(addr).await;
    sending
        .begin_data("alice@client.example", "bob@failmail.test")
        .await;
    sending
        .send("Subject: across shutdown\r\n\r\nfirst half\r\n")
        .await;

    let mut idle = PlainConn::greeted(addr).await;
    idle.ehlo("idle.example").await;

    let shutdown = tokio::spawn(server.shutdown());
    // The idle client hears of the shutdown: proof that draining has begun.
    idle.expect_421_closed("4.3.2").await;

    sending.send("..second half\r\n.\r\n").await;
    let id = queue_id(&sending.reply().await);
    // Past its message, the draining server closes the session.
    sending.expect_421_closed("4.3.2").await;

    tokio::time::timeout(IO_TIMEOUT, shutdown)
        .await
        .expect("shutdown returns once every connection ended")
        .expect("shutdown task");
    connect_fails(addr).await;

    let list = messages.list();
    assert_eq!(list.len(), 1);
    assert_eq!(
        show(&list[0].message.data),
        "Subject: across shutdown\r\n\r\nfirst half\r\n.second half\r\n"
    );
    assert_eq!(list[0].message.queue_id, id);
}

/// Between BDAT chunks a message is in progress too: its last chunk is still accepted.
#[tokio::test]
async fn shutdown_lets_bdat_message_finish() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let messages = server.messages().clone();
    let mut sending = PlainConn::greeted_ehlo(addr).await;
    sending
        .envelope("alice@client.example", "bob@failmail.test")
        .await;
    sending.send("BDAT 6\r\nchunk1").await;
    sending.expect(250, "2.0.0").await;
    let mut idle = PlainConn::greeted(addr).await;

    let shutdown = tokio::spawn(server.shutdown());
    idle.expect_421_closed("4.3.2").await;

    sending.send("BDAT 6 LAST\r\nchunk2").await;
    queue_id(&sending.reply().await);
    sending.expect_421_closed("4.3.2").await;
    tokio::time::timeout(IO_TIMEOUT, shutdown)
        .await
        .expect("shutdown returns")
        .expect("shutdown task");
    connect_fails(addr).await;
    let list = messages.list();
    assert_eq!(list.len(), 1);
    assert_eq!(&list[0].message.data[..], b"chunk1chunk2");
}

/// A message that does not finish within the grace period is cut off with 421 4.3.2.
#[tokio::test]
async fn shutdown_grace_over_closes_unfinished_data() {
    let server = start(sink_with(|c| {
        c.server.shutdown_grace = Duration::from_millis(300)
    }))
    .await;
    let addr = server.addresses().smtp;
    let messages = server.messages().clone();
    let mut sending = PlainConn::greeted_ehlo(addr).await;
    sending
        .begin_data("alice@client.example", "bob@failmail.test")
        .await;
    sending.send("Subject: too slow\r\n\r\n").await;
    let shutdown = tokio::spawn(server.shutdown());
    sending.expect_421_closed("4.3.2").await;
    tokio::time::timeout(IO_TIMEOUT, shutdown)
        .await
        .expect("shutdown returns")
        .expect("shutdown task");
    assert!(messages.list().is_empty());
    connect_fails(addr).await;
}

// ---------------------------------------------------------------------------------------------
// The binary

/// The binary on port 0: ready line, /healthz, SMTP, then SIGTERM: the idle SMTP client gets
/// 421 4.3.2 and the process exits 0.
#[tokio::test]
async fn binary_serves_and_exits_0_on_sigterm() {
    let binary = start_binary(&["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--tls"]);
    let smtp = binary.address("smtp");
    let http = binary.address("http");
    assert_ne!(smtp.port(), 0, "the real port is printed");
    assert_ne!(http.port(), 0, "the real port is printed");
    assert!(
        !binary.ready.contains("smtps="),
        "no SMTPS unless asked: {}",
        binary.ready
    );

    let (status, body) = http_get(http, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.strip_suffix('\n').unwrap_or(&body), "ok tls=on");

    let mut conn = PlainConn::greeted(smtp).await;
    let ehlo = conn.ehlo("client.example").await;
    assert!(announces(&ehlo, "STARTTLS"), "{}", ehlo.text());
    conn.begin_data("alice@client.example", "bob@failmail.test")
        .await;
    conn.send("Subject: via the binary\r\n\r\n.\r\n").await;
    queue_id(&conn.reply().await);

    binary.signal("TERM");
    conn.expect_421_closed("4.3.2").await;
    let (status, stderr) = tokio::task::spawn_blocking(move || binary.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    connect_fails(smtp).await;
}

/// The runtime's worker threads, by their name (tokio names them `tokio-rt-worker`).
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads are listed in /proc")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "tokio-rt-worker")
        .count()
}

/// `--threads 1` serves every connection on one event loop (no worker threads), `--threads 3`
/// on three workers; both deliver 20 concurrent transactions. `--threads 0` is refused.
#[tokio::test]
async fn binary_serves_on_the_threads_asked_for() {
    for (threads, workers) in [("1", 0), ("3", 3)] {
        let binary = start_binary(&[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--threads",
            threads,
        ]);
        let smtp = binary.address("smtp");
        assert_eq!(
            worker_threads(binary.child.id()),
            workers,
            "--threads {threads}"
        );
        let sends: Vec<_> = (0..20)
            .map(|i| {
                tokio::spawn(async move {
                    let mut conn = PlainConn::greeted_ehlo(smtp).await;
                    conn.cmd("MAIL FROM:<alice@client.example>", 250, "2.1.0")
                        .await;
                    conn.cmd(&format!("RCPT TO:<bob{i}@failmail.test>"), 250, "2.1.5")
                        .await;
                    conn.cmd("DATA", 354, "").await;
                    conn.send("Subject: threads\r\n\r\n.\r\n").await;
                    queue_id(&conn.reply().await);
                    conn.quit().await;
                })
            })
            .collect();
        for send in sends {
            send.await.unwrap();
        }
        let (status, body) = http_get(binary.address("http"), "/api/messages").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            body.matches("\"mail_from\":\"alice@client.example\"")
                .count(),
            20,
            "{body}"
        );
        binary.signal("TERM");
        let (status, stderr) = tokio::task::spawn_blocking(move || binary.wait())
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0), "exit status; stderr:\n{stderr}");
    }
    let refused = binary_command(&[], &["--smtp", "127.0.0.1:0", "--threads", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--threads"), "{stderr}");
}

/// With --smtps the ready line names the implicit-TLS port, which speaks TLS with the
/// development certificate; SIGINT stops the process cleanly too.
#[tokio::test]
async fn binary_with_smtps_exits_0_on_sigint() {
    let binary = start_binary(&[
        "serve",
        "--smtp",
        "127.0.0.1:0",
        "--smtps",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--tls",
    ]);
    let smtps = binary.address("smtps");
    let mut tls = TlsConn::connect_tls(smtps).await;
    tls.expect_greeting().await;
    tls.ehlo("client.example").await;
    tls.quit().await;
    binary.signal("INT");
    let (status, stderr) = tokio::task::spawn_blocking(move || binary.wait())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{stderr}");
}

/// While draining, a command pipelined right after the message's final dot is a new command:
/// it must get 421 4.3.2 (not be served), and the second transaction must not be accepted.
#[tokio::test]
async fn shutdown_refuses_commands_pipelined_after_the_message() {
    let server = start_loopback().await;
    let addr = server.addresses().smtp;
    let messages = server.messages().clone();
    let mut sending = PlainConn::greeted_ehlo(addr).await;
    sending
        .begin_data("alice@client.example", "bob@failmail.test")
        .await;
    sending.send("Subject: first\r\n\r\n").await;
    let mut idle = PlainConn::greeted(addr).await;

    let shutdown = tokio::spawn(server.shutdown());
    idle.expect_421_closed("4.3.2").await;

    sending
        .send(
            "body\r\n.\r\nMAIL FROM:<alice@client.example>\r\nRCPT TO:<bob@failmail.test>\r\n\
             DATA\r\nSubject: second\r\n\r\nbody\r\n.\r\n",
        )
        .await;
    queue_id(&sending.reply().await);
    sending.expect_421_closed("4.3.2").await;
    tokio::time::timeout(IO_TIMEOUT, shutdown)
        .await
        .expect("shutdown returns")
        .expect("shutdown task");
    let subjects: Vec<String> = messages
        .list()
        .iter()
        .map(|m| show(&m.message.data))
        .collect();
    assert_eq!(subjects, ["Subject: first\r\n\r\nbody\r\n"]);
}

/// The ready line promises a running server, so a SIGTERM sent right after it must already be
/// handled gracefully (exit 0), not kill the process with the default signal action. The window
/// is narrow: a bash already blocked reading the binary's stdout sends the signal with its
/// builtin `kill` the moment the line arrives, and the test starts the binary 20 times.
#[test]
fn binary_sigterm_right_after_the_ready_line_exits_0() {
    for attempt in 1..=20 {
        let mut child = binary_command(&[], &["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the failmail binary starts");
        let stdout = child.stdout.take().unwrap();
        let pid = child.id().to_string();
        let mut child = ChildGuard(child);
        let killer = Command::new("bash")
            .args([
                "-c",
                r#"IFS= read -r line && kill -TERM "$FAILMAIL_PID" && printf '%s\n' "$line""#,
            ])
            .env("FAILMAIL_PID", &pid)
            .stdin(Stdio::from(stdout))
            .output()
            .expect("bash runs");
        let ready = String::from_utf8_lossy(&killer.stdout);
        assert!(
            killer.status.success() && ready.starts_with("failmail ready "),
            "attempt {attempt}: no ready line / kill failed: {ready:?}"
        );
        let status = child
            .wait_within(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("attempt {attempt}: no exit within 30 s"));
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: exit status {status} (killed by the signal instead of a graceful stop)"
        );
    }
}
