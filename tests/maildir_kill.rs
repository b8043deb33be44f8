//! The Maildir promise, against the real binary: a message the client saw accepted (250) is on
//! disk, byte for byte, even when the process is SIGKILLed right after that 250; and a SIGTERM
//! that arrives in the middle of DATA lets that message finish, store it, and exit 0; a message
//! that cannot be written gets 451 and leaves nothing behind in `tmp/`.
//!
//! Every wait is bounded by a tokio timeout; nothing asserts on timing.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::binary::{start_binary_with, Binary};
use common::{dot_stuff, PlainConn};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Hang guard for one wait.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts `failmail` on loopback port 0 with a Maildir and `extra` flags; waits for its ready
/// line.
fn start(maildir: &Path, extra: &[&str]) -> Binary {
    let maildir = maildir.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "--smtp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--maildir",
        maildir,
    ];
    args.extend_from_slice(extra);
    start_binary_with(&[], &args, &[("FAILMAIL_LOG", "warn")])
}

/// Connects with this file's hang guard and checks that the greeting is a 220.
async fn connect(addr: SocketAddr) -> PlainConn {
    let mut client = PlainConn::connect(addr).await.with_timeout(IO_TIMEOUT);
    client.expect_code(220).await;
    client
}

/// Waits (bounded, off the runtime's thread) for the process to exit.
async fn exit_status(failmail: Binary) -> std::process::ExitStatus {
    let (status, _stderr) = tokio::task::spawn_blocking(move || failmail.wait())
        .await
        .expect("the wait does not panic");
    status
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
    let mut wire = dot_stuff(body);
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
async fn send_all(addr: SocketAddr, tags: Vec<String>) -> (Vec<Vec<u8>>, PlainConn) {
    let mut client = connect(addr).await;
    client.cmd_code("EHLO kill.example", 250).await;
    let mut accepted = Vec::new();
    for tag in tags {
        let body = message(&tag);
        let reply = client
            .deliver(
                "sender@example.com",
                "rcpt@example.com",
                &on_the_wire(&body),
            )
            .await;
        assert_eq!(reply.code, 250, "end of data for {tag}: {}", reply.text());
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
    let failmail = start(&maildir, &[]);

    let mut senders = tokio::task::JoinSet::new();
    for connection in 0..CONNECTIONS {
        let tags = (0..PER_CONNECTION)
            .map(|n| format!("message {connection}-{n}"))
            .collect();
        senders.spawn(send_all(failmail.address("smtp"), tags));
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
    failmail.signal("KILL");
    let status = exit_status(failmail).await;
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
    let mut failmail = start(&maildir, &["--shutdown-grace", "10"]);
    let addr = failmail.address("smtp");

    let body = message("in flight at SIGTERM");
    let wire = on_the_wire(&body);
    let (first, rest) = wire.split_at(wire.len() / 2);
    let mut client = connect(addr).await;
    client.cmd_code("EHLO term.example", 250).await;
    client.cmd_code("MAIL FROM:<sender@example.com>", 250).await;
    client.cmd_code("RCPT TO:<rcpt@example.com>", 250).await;
    client.cmd_code("DATA", 354).await;
    client.send(first).await;

    failmail.signal("TERM");
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
        failmail.child.exited(),
        None,
        "the process waits for the message in progress"
    );

    client.send(rest).await;
    let reply = client.reply().await;
    assert_eq!(
        reply.code,
        250,
        "the message in progress is accepted: {}",
        reply.text()
    );
    // Then the session is closed: nothing more is accepted.
    let reply = client.reply().await;
    assert_eq!(
        reply.code,
        421,
        "closed after the message: {}",
        reply.text()
    );

    let status = exit_status(failmail).await;
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit after SIGTERM: {status:?}"
    );
    let found = delivered(&maildir);
    assert_eq!(found.get(&body), Some(&1), "the message is in new/");
    assert_eq!(found.len(), 1);
}

/// The files in `maildir/tmp`.
fn leftovers(maildir: &Path) -> Vec<String> {
    std::fs::read_dir(maildir.join("tmp"))
        .expect("tmp/ exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `new/` cannot take the message: each attempt gets `451 4.3.0` and leaves no file in `tmp/`;
/// once `new/` is back, the next one is stored. `new/` is made read-only when the tests do not run
/// as root (root writes there anyway), and in any case replaced by a plain file, which fails the
/// rename into it for root too.
#[tokio::test]
async fn a_message_that_cannot_be_stored_leaves_nothing_in_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let failmail = start(&maildir, &[]);
    let addr = failmail.address("smtp");
    let new = maildir.join("new");
    let mut broken = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o555)).unwrap();
        broken.push("read-only new/");
    }
    let mut client = connect(addr).await;
    client.cmd_code("EHLO client.example", 250).await;
    for (n, how) in broken
        .into_iter()
        .chain(["new/ not a directory"])
        .enumerate()
    {
        if how == "new/ not a directory" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::remove_dir(&new).unwrap();
            std::fs::write(&new, b"").unwrap();
        }
        client
            .begin_data("sender@example.com", "rcpt@example.com")
            .await;
        client
            .send(on_the_wire(&message(&format!("lost {n}"))))
            .await;
        client.reply().await.assert(451, "4.3.0");
        assert_eq!(leftovers(&maildir), Vec::<String>::new(), "after {how}");
    }
    std::fs::remove_file(&new).unwrap();
    std::fs::create_dir(&new).unwrap();
    let stored = message("stored");
    client
        .begin_data("sender@example.com", "rcpt@example.com")
        .await;
    client.send(on_the_wire(&stored)).await;
    client.reply().await.assert(250, "2.0.0");
    assert_eq!(delivered(&maildir), HashMap::from([(stored, 1)]));
    assert!(leftovers(&maildir).is_empty());
    client.quit().await;
}

/// A tmpfs of `size`, mounted for the test and unmounted when dropped.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    /// Mounts it (root only); `None`, with the skip reported, where the tests do not run as root
    /// or may not mount.
    fn mount(size: &str) -> Option<Self> {
        if !common::tools::need_root() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("mount(8) runs");
        if !mounted.status.success() {
            // Root in a container without the right to mount: nothing to install, so a skip
            // even under FAILMAIL_REQUIRE_ALL.
            eprintln!(
                "SKIPPED a_full_disk_gets_451_and_leaves_no_partial_file: cannot mount a tmpfs \
                 here ({})",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk (a 2 MiB tmpfs): messages of 300 KiB are stored until one no longer fits; that
/// one gets `451 4.3.0` and leaves no partial file in `tmp/`, and every message answered 250 is
/// in `new/`, whole.
#[tokio::test]
async fn a_full_disk_gets_451_and_leaves_no_partial_file() {
    let Some(fs) = SmallFilesystem::mount("2m") else {
        return;
    };
    let maildir = fs.path().join("Maildir");
    let failmail = start(&maildir, &[]);
    let mut client = connect(failmail.address("smtp")).await;
    client.cmd_code("EHLO client.example", 250).await;
    let filler = "x".repeat(998) + "\r\n";
    let mut stored = HashMap::new();
    let mut refused = 0;
    // Bounded: 2 MiB hold at most six of these.
    for n in 0..12 {
        let mut body = message(&format!("big {n}"));
        for _ in 0..300 {
            body.extend_from_slice(filler.as_bytes());
        }
        client
            .begin_data("sender@example.com", "rcpt@example.com")
            .await;
        client.send(on_the_wire(&body)).await;
        let reply = client.reply().await;
        if reply.code == 250 {
            reply.assert(250, "2.0.0");
            stored.insert(body, 1);
        } else {
            reply.assert(451, "4.3.0");
            refused += 1;
            assert_eq!(
                leftovers(&maildir),
                Vec::<String>::new(),
                "after message {n}"
            );
        }
    }
    assert!(refused > 0, "2 MiB never filled up");
    assert!(!stored.is_empty(), "nothing fitted");
    assert_eq!(delivered(&maildir), stored);
    client.quit().await;
    drop(failmail);
}
