//! The security guarantees the README states, each checked against the real binary: no outbound
//! connection (so no relaying), no credential in logs, events or the API, and TLS 1.2 or newer
//! only.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::binary::*;
use common::*;

const USER: &str = "alice@example.com";
const PASSWORD: &str = "S3cret-Pass-4711";

/// Sends a message to outside domains (what an open relay would pass on) and a magic failure.
async fn relay_attempt(smtp: std::net::SocketAddr) {
    let mut conn = PlainConn::greeted_ehlo(smtp).await;
    conn.envelope("alice@client.example", "bob@gmail.com").await;
    conn.cmd("RCPT TO:<carol@outlook.com>", 250, "2.1.5").await;
    conn.cmd("RCPT TO:<user_unknown@example.org>", 550, "5.1.1")
        .await;
    conn.cmd("DATA", 354, "").await;
    conn.send("Subject: relay me\r\n\r\nplease\r\n.\r\n").await;
    queue_id(&conn.reply().await);
    conn.quit().await;
}

/// Under strace, a whole session (with recipients at outside domains) and the HTTP API make the
/// server accept connections but never open one: failmail never relays and never calls out.
#[tokio::test]
async fn a_session_never_makes_the_server_connect_anywhere() {
    let Some(strace) = tools::need(&tools::STRACE) else {
        return;
    };
    let strace = strace.to_str().expect("a UTF-8 path").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let trace_arg = trace.to_str().unwrap();
    let binary = start_binary_with(
        &[
            &strace,
            "-f",
            "-qq",
            "-e",
            "trace=connect,accept,accept4",
            "-o",
            trace_arg,
        ],
        &["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        &[("FAILMAIL_LOG", "info")],
    );
    let smtp = binary.address("smtp");
    let http = binary.address("http");
    relay_attempt(smtp).await;
    let (status, body) = http_get(http, "/api/messages").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("bob@gmail.com"),
        "the message is kept: {body}"
    );

    binary.signal("TERM");
    let (status, stderr) = tokio::task::spawn_blocking(move || binary.wait())
        .await
        .unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{stderr}"
    );
    let trace = std::fs::read_to_string(&trace).expect("strace wrote its trace");
    // Successful accepts only (`= fd`); a non-blocking accept with nothing waiting is `= -1`.
    let accepted = trace
        .lines()
        .filter(|l| l.contains("accept"))
        .filter(|l| {
            l.rsplit("= ")
                .next()
                .and_then(|result| result.trim().parse::<i64>().ok())
                .is_some_and(|fd| fd >= 0)
        })
        .count();
    assert_eq!(
        accepted, 2,
        "the trace saw the SMTP and the HTTP connection being accepted:\n{trace}"
    );
    let outbound: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET") || l.contains("AF_INET6")))
        .collect();
    assert!(
        outbound.is_empty(),
        "failmail opened network connections: {outbound:#?}"
    );
}

/// AUTH PLAIN and AUTH LOGIN with a known password at the most verbose log level: the password,
/// in clear or base64, is in no log line, no journal event (memory, API, JSON lines file) and no
/// stdout line, while the identity is journaled.
#[tokio::test]
async fn credentials_stay_out_of_logs_events_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let binary = start_binary_with(
        &[],
        &[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--events",
            events.to_str().unwrap(),
        ],
        &[("FAILMAIL_LOG", "trace")],
    );
    let smtp = binary.address("smtp");
    let http = binary.address("http");
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let plain = b64(&format!("\0{USER}\0{PASSWORD}"));

    let mut conn = PlainConn::greeted_ehlo(smtp).await;
    conn.cmd(&format!("AUTH PLAIN {plain}"), 235, "2.7.0").await;
    conn.quit().await;

    let mut conn = PlainConn::greeted_ehlo(smtp).await;
    conn.cmd("AUTH LOGIN", 334, "").await;
    conn.cmd(&b64(USER), 334, "").await;
    conn.cmd(&b64(PASSWORD), 235, "2.7.0").await;
    conn.cmd("MAIL FROM:<alice@example.com>", 250, "2.1.0")
        .await;
    conn.quit().await;

    let (status, api_events) = http_get(http, "/api/events?limit=1000").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    binary.signal("TERM");
    let (status, stderr, stdout) = tokio::task::spawn_blocking(move || binary.wait_with_output())
        .await
        .unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{stderr}"
    );
    let file = std::fs::read_to_string(&events).expect("the events file");

    assert!(
        api_events.contains(USER) && file.contains(USER),
        "the identity is journaled (so the search below looks at the right place)"
    );
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "the most verbose logging is on:\n{stderr}"
    );
    for (place, text) in [
        ("the log", &stderr),
        ("stdout", &stdout),
        ("the API events", &api_events),
        ("the events file", &file),
    ] {
        for secret in [PASSWORD.to_owned(), plain.clone(), b64(PASSWORD)] {
            assert!(
                !text.contains(&secret),
                "{place} holds the credential {secret:?}:\n{text}"
            );
        }
    }
}

/// A client limited to TLS 1.0 or 1.1 is refused by a TLS alert from the server; the same client
/// allowed TLS 1.2 or 1.3 is greeted.
#[tokio::test]
async fn tls_before_1_2_is_refused() {
    let Some(python) = tools::need(&tools::PYTHON3) else {
        return;
    };
    let config = sink_with(|c| c.server.smtps = Some("127.0.0.1:0".parse().unwrap()));
    let server = start(config).await;
    let port = server.addresses().smtps.unwrap().port();
    const SCRIPT: &str = r#"
import socket, ssl, sys, warnings
warnings.simplefilter("ignore")
port = int(sys.argv[1])
for name in ["TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"]:
    version = getattr(ssl.TLSVersion, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                print(name, "greeted", tls.version(), tls.recv(200).decode().split(" ")[0])
    except ssl.SSLError as e:
        print(name, "refused", e.reason)
"#;
    let mut command = Command::new(python);
    command.args(["-c", SCRIPT, &port.to_string()]);
    let output = run_tool(command, "python3", Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for old in &lines[..2] {
        // An alert received from the server, not a client that would not even try.
        assert!(
            old.contains(" refused ") && old.contains("ALERT"),
            "an old TLS version must be refused by the server: {old}"
        );
    }
    assert_eq!(lines[2], "TLSv1_2 greeted TLSv1.2 220");
    assert_eq!(lines[3], "TLSv1_3 greeted TLSv1.3 220");
    server.shutdown().await;
}

/// A TLS 1.2 client that asks to renegotiate (`R` in `openssl s_client`) gets the server's
/// `no_renegotiation` alert at once, not when the command timeout (60 s here) ends the session:
/// the TLS layer's own records are sent after every read. The wait for it is bounded well below
/// the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_renegotiation_is_answered_at_once() {
    let Some(openssl) = tools::need(&tools::OPENSSL) else {
        return;
    };
    let server = start(sink_with(|c| {
        c.server.timeouts.command = Duration::from_secs(60);
    }))
    .await;
    let smtp = server.addresses().smtp;
    let mut child = ChildGuard(
        Command::new(openssl)
            .args(["s_client", "-tls1_2", "-starttls", "smtp", "-crlf", "-msg"])
            .args(["-connect", &smtp.to_string(), "-CAfile"])
            .arg(ca_path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl runs"),
    );
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Bounded: every wait ends by IO_TIMEOUT (10 s), far below the 60 s command timeout.
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match received.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "no {needle:?} from openssl within {IO_TIMEOUT:?}:\n{}",
            seen.join("\n")
        );
    };
    use std::io::Write;
    // After the handshake, a command over TLS; its reply shows the session is up.
    wait_for("Verify return code: 0 (ok)");
    stdin.write_all(b"EHLO renegotiator.example\n").unwrap();
    wait_for("250 ");
    stdin.write_all(b"R\n").unwrap();
    wait_for("no_renegotiation");
    drop(stdin);
    server.shutdown().await;
}
