//! Reloading a scenario never stalls the server: a large scenario reloaded on SIGHUP or sent with
//! `PUT /api/scenario` while a session runs, and a scenario path that is a FIFO.
//!
//! The real binary runs with `--threads 1`: one event loop, where anything that blocks it stops
//! every session and the API. Each test only asserts that the session completes (every reply
//! within the client's usual bound) and that the reload applies, or, for the FIFO, that it is
//! refused with the old scenario live; how long a probe waits during a large reload is measured
//! by `benches/reload.rs`, not here.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::binary::{http_get, start_binary, Binary};
use common::{PlainConn, IO_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Rules in the large scenario reloaded on SIGHUP (about 19 MB): compiling them on the event
/// loop, as before reloads moved off it, froze a debug build far longer than a client waits.
const LARGE: usize = 200_000;
/// How long a large reload may take to apply (a debug build on a busy machine).
const APPLY_WITHIN: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

/// The scenario a server starts with: one rule refusing `old@…`.
const SMALL: &str = "[[rule]]\nrcpt = \"old@*\"\nreply = \"user_unknown\"\n";

/// `rules` rules of the kinds large files hold (regexes, exact addresses, globs; regexes cost
/// the most to load), none of which matches the test's sender or recipient.
fn large_scenario(rules: usize) -> String {
    let mut text = String::with_capacity(rules * 80);
    text.push_str("[server]\nflavor = \"ovh\"\n");
    for i in 0..rules {
        let rcpt = match i % 4 {
            0 | 1 => format!("'/^list-[0-9]+-{i}@lists\\.example$/'"),
            2 => format!("\"*@dead-domain-{i}.example\""),
            _ => format!("\"user{i}@customer{}.example\"", i % 50),
        };
        write!(
            text,
            "\n[[rule]]\nname = \"rule_{i}\"\nrcpt = {rcpt}\nreply = \"user_unknown\"\n"
        )
        .unwrap();
    }
    text
}

/// Replaces the file at `path` at once (write beside it, rename over it).
fn replace_file(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).expect("write the scenario");
    std::fs::rename(&next, path).expect("rename the scenario into place");
}

fn start(path: &Path) -> Binary {
    start_binary(&[
        "--smtp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--scenario",
        path.to_str().expect("UTF-8 path"),
    ])
}

/// The live scenario's rule count, from `GET /api/scenario`.
async fn live_rules(http: SocketAddr) -> u64 {
    let (status, body) = http_get(http, "/api/scenario").await;
    assert!(status.contains(" 200 "), "{status} {body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    view["rules"].as_u64().expect("a rule count")
}

/// Waits (bounded by [`APPLY_WITHIN`]) until the live scenario has `rules` rules.
async fn wait_rules(binary: &Binary, rules: u64) {
    let http = binary.address("http");
    let deadline = tokio::time::Instant::now() + APPLY_WITHIN;
    let mut seen = live_rules(http).await;
    while seen != rules {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload did not apply within {APPLY_WITHIN:?} ({seen} rules live); stderr:\n{}",
            binary.stderr_so_far()
        );
        tokio::time::sleep(POLL).await;
        seen = live_rules(http).await;
    }
}

/// The rest of a session opened before the reload: a whole transaction and QUIT, every reply
/// within the client's bound, then `/healthz`.
async fn finish_session(session: &mut PlainConn, http: SocketAddr) {
    let end = session
        .deliver(
            "alice@client.example",
            "bob@dest.example",
            b"Subject: during a reload\r\n\r\nhello\r\n.\r\n",
        )
        .await;
    end.assert(250, "2.0.0");
    session.quit_221().await;
    let (status, body) = http_get(http, "/healthz").await;
    assert!(
        status.contains(" 200 ") && body.starts_with("ok "),
        "{status} {body}"
    );
}

/// A server on [`SMALL`] in a directory of its own, and a session opened on it (EHLO said).
struct Serving {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    binary: Binary,
    http: SocketAddr,
    session: PlainConn,
}

async fn serving() -> Serving {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("live.toml");
    replace_file(&path, SMALL);
    let binary = start(&path);
    let http = binary.address("http");
    let session = PlainConn::greeted_ehlo(binary.address("smtp")).await;
    Serving {
        _dir: dir,
        path,
        binary,
        http,
        session,
    }
}

#[tokio::test]
async fn a_large_reload_on_sighup_lets_a_running_session_complete() {
    let Serving {
        path,
        binary,
        http,
        mut session,
        _dir,
        ..
    } = serving().await;

    replace_file(&path, &large_scenario(LARGE));
    binary.signal("HUP");
    finish_session(&mut session, http).await;
    wait_rules(&binary, LARGE as u64).await;
}

/// `PUT path` with a TOML body over a raw HTTP/1.1 connection: the status line.
async fn http_put_toml(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("HTTP connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/toml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("HTTP read");
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_large_put_lets_a_running_session_complete() {
    let Serving {
        binary: _binary,
        http,
        mut session,
        _dir,
        ..
    } = serving().await;

    // Just under the API's 2 MiB body limit.
    let rules = 19_000;
    let put =
        tokio::spawn(
            async move { http_put_toml(http, "/api/scenario", &large_scenario(rules)).await },
        );
    finish_session(&mut session, http).await;
    let status = tokio::time::timeout(APPLY_WITHIN, put)
        .await
        .expect("PUT answered")
        .expect("PUT task");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(live_rules(http).await, rules as u64);
}

#[tokio::test]
async fn a_fifo_at_the_scenario_path_is_refused_and_the_server_keeps_serving() {
    let Serving {
        _dir,
        path,
        binary,
        http,
        ..
    } = serving().await;
    let smtp = binary.address("smtp");

    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    binary.signal("HUP");
    let refusal = "is a FIFO, not a regular file";
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    while !binary.stderr_so_far().contains(refusal) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal logged; stderr:\n{}",
            binary.stderr_so_far()
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(
        binary
            .stderr_so_far()
            .contains("the previous one stays live"),
        "{}",
        binary.stderr_so_far()
    );

    // The server answers, with the old scenario.
    let (status, body) = http_get(http, "/healthz").await;
    assert!(
        status.contains(" 200 ") && body.starts_with("ok "),
        "{status} {body}"
    );
    assert_eq!(live_rules(http).await, 1);
    let mut session = PlainConn::greeted_ehlo(smtp).await;
    session
        .mail_rcpt("alice@client.example", "old@dest.example")
        .await
        .assert(550, "5.1.1");
    session.quit_221().await;

    // A regular file at the path again: reloaded.
    replace_file(&path, "");
    binary.signal("HUP");
    wait_rules(&binary, 0).await;
}
