//! The Maildir promise, against the real binary: a message the client saw accepted (250) is on
//! disk, byte for byte, even when the process is SIGKILLed right after that 250; and a SIGTERM
//! that arrives in the middle of DATA lets that message finish, store it, and exit 0.
//!
//! Every wait is bounded by a tokio timeout; nothing asserts on timing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Hang guard for one wait.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The running binary and its SMTP address.
struct Failmail {
    child: Child,
    smtp: SocketAddr,
}

impl Failmail {
    /// Starts `failmail` on loopback port 0 with a Maildir and `extra` flags; waits for its ready
    /// line.
    async fn start(maildir: &Path, extra: &[&str]) -> Failmail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_failmail"))
            .args([
                "--smtp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--maildir",
            ])
            .arg(maildir)
            .args(extra)
            .env("FAILMAIL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the failmail binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        tokio::time::timeout(IO_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the ready line within the timeout")
            .expect("stdout is readable");
        let smtp = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("smtp="))
            .unwrap_or_else(|| panic!("no smtp= in the ready line {line:?}"))
            .parse()
            .expect("smtp= is an address");
        Failmail { child, smtp }
    }

    /// Sends `signal` (`KILL`, `TERM`) with kill(1).
    async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process is running").to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .await
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits (bounded) for the process to exit.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(IO_TIMEOUT, self.child.wait())
            .await
            .expect("the process exits within the timeout")
            .expect("wait succeeds")
    }
}

/// A raw SMTP client; every read and write is bounded by [`IO_TIMEOUT`].
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect within the timeout")
            .expect("connect succeeds");
        let mut client = Client {
            stream: BufReader::new(stream),
        };
        assert_eq!(client.reply().await.0, 220);
        client
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.get_mut().write_all(bytes))
            .await
            .expect("write within the timeout")
            .expect("write succeeds");
    }

    /// The next reply: its code and its text.
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(IO_TIMEOUT, self.stream.read_line(&mut line))
                .await
                .expect("a reply within the timeout")
                .expect("read succeeds");
            assert!(read >= 4, "connection closed instead of a reply: {line:?}");
            text.push_str(&line);
            if line.as_bytes()[3] != b'-' {
                return (line[..3].parse().expect("a reply code"), text);
            }
        }
    }

    #[track_caller]
    fn cmd<'a>(&'a mut self, line: &str, code: u16) -> impl std::future::Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        let line = format!("{line}\r\n");
        async move {
            self.send(line.as_bytes()).await;
            let (got, text) = self.reply().await;
            assert_eq!(got, code, "{} at {caller}: {text}", line.trim_end());
        }
    }
}

/// A distinct message of a few hundred octets, with a line starting with a dot (stored
/// unstuffed) and a final CRLF.
fn message(tag: &str) -> Vec<u8> {
    let mut body = format!(
        "From: sender@example.com\r\nTo: rcpt@example.com\r\nSubject: {tag}\r\n\r\nBody of {tag}.\r\n"
    );
    body.push_str(".a line that starts with a dot\r\n");
    for n in 0..5 {
        body.push_str(&format!("line {n} of {tag}: the quick brown fox\r\n"));
    }
    body.into_bytes()
}

/// `body` as it goes on the wire after DATA: dot-stuffed, then the final `.` line.
fn on_the_wire(body: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(body.len() + 8);
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// The files in `maildir/new`, by content, with how many times each content is there.
fn delivered(maildir: &Path) -> HashMap<Vec<u8>, usize> {
    let mut found = HashMap::new();
    for entry in std::fs::read_dir(maildir.join("new")).expect("new/ exists") {
        let bytes = std::fs::read(entry.expect("a directory entry").path()).expect("readable");
        *found.entry(bytes).or_insert(0) += 1;
    }
    found
}

/// Sends `tags` one transaction after another on one connection; returns the bodies that got
/// a 250 at the end of data, and the connection, still open.
async fn send_all(addr: SocketAddr, tags: Vec<String>) -> (Vec<Vec<u8>>, Client) {
    let mut client = Client::connect(addr).await;
    client.cmd("EHLO kill.example", 250).await;
    let mut accepted = Vec::new();
    for tag in tags {
        let body = message(&tag);
        client.cmd("MAIL FROM:<sender@example.com>", 250).await;
        client.cmd("RCPT TO:<rcpt@example.com>", 250).await;
        client.cmd("DATA", 354).await;
        client.send(&on_the_wire(&body)).await;
        let (code, text) = client.reply().await;
        assert_eq!(code, 250, "end of data for {tag}: {text}");
        accepted.push(body);
    }
    (accepted, client)
}

/// 50 distinct messages over 5 concurrent connections; SIGKILL as soon as the last 250 is
/// read; every accepted message is in `new/` with its exact bytes.
#[tokio::test]
async fn every_accepted_message_survives_sigkill() {
    const CONNECTIONS: usize = 5;
    const PER_CONNECTION: usize = 10;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let maildir = dir.path().join("Maildir");
    let mut failmail = Failmail::start(&maildir, &[]).await;

    let mut senders = tokio::task::JoinSet::new();
    for connection in 0..CONNECTIONS {
        let tags = (0..PER_CONNECTION)
            .map(|n| format!("message {connection}-{n}"))
            .collect();
        senders.spawn(send_all(failmail.smtp, tags));
    }
    let mut accepted = Vec::new();
    // The connections stay open: the process is killed under them.
    let mut open = Vec::new();
    while let Some(done) = senders.join_next().await {
        let (bodies, client) = done.expect("a sender failed");
        accepted.extend(bodies);
        open.push(client);
    }
    // Right after the last 250.
    failmail.signal("KILL").await;
    let status = failmail.exit_status().await;
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    drop(open);

    assert_eq!(accepted.len(), CONNECTIONS * PER_CONNECTION);
    let found = delivered(&maildir);
    for body in &accepted {
        assert_eq!(
            found.get(body),
            Some(&1),
            "accepted message missing from new/ (or there twice): {}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(found.len(), accepted.len(), "nothing else in new/");
}

/// SIGTERM in the middle of a message body: the server stops accepting connections but lets the
/// message finish, gives it its 250, has it in the Maildir, and exits 0.
#[tokio::test]
async fn sigterm_during_data_lets_the_message_finish() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let maildir = dir.path().join("Maildir");
    let mut failmail = Failmail::start(&maildir, &["--shutdown-grace", "10"]).await;
    let addr = failmail.smtp;

    let body = message("in flight at SIGTERM");
    let wire = on_the_wire(&body);
    let (first, rest) = wire.split_at(wire.len() / 2);
    let mut client = Client::connect(addr).await;
    client.cmd("EHLO term.example", 250).await;
    client.cmd("MAIL FROM:<sender@example.com>", 250).await;
    client.cmd("RCPT TO:<rcpt@example.com>", 250).await;
    client.cmd("DATA", 354).await;
    client.send(first).await;

    failmail.signal("TERM").await;
    // The server has seen the signal once it stops accepting: wait (bounded) for a refused
    // connection, so that the rest of the body surely arrives during the shutdown.
    tokio::time::timeout(IO_TIMEOUT, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                Err(_) => {}
                Ok(mut stream) => {
                    // Still accepted: a draining server closes it (421) without a session.
                    let mut ignored = Vec::new();
                    let _ = stream.read_to_end(&mut ignored).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the server stops accepting after SIGTERM");
    assert_eq!(
        failmail.child.try_wait().expect("try_wait"),
        None,
        "the process waits for the message in progress"
    );

    client.send(rest).await;
    let (code, text) = client.reply().await;
    assert_eq!(code, 250, "the message in progress is accepted: {text}");
    // Then the session is closed: nothing more is accepted.
    let (code, text) = client.reply().await;
    assert_eq!(code, 421, "closed after the message: {text}");

    let status = failmail.exit_status().await;
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit after SIGTERM: {status:?}"
    );
    let found = delivered(&maildir);
    assert_eq!(found.get(&body), Some(&1), "the message is in new/");
    assert_eq!(found.len(), 1);
}
