//! Helpers shared by the integration tests: starting servers, a raw SMTP client that checks every
//! reply exactly (in [`conn`]), TLS with the development CA, the test message with leading dots,
//! and bounded waits so that a failing test fails instead of hanging.
//!
//! Helpers of one family of test files live in a submodule of their own: [`api`], [`openapi`]
//! and [`prometheus`] for `tests/api*.rs`, [`limits`] for `tests/limits*.rs`, [`shipped`] for
//! `tests/shipped_scenarios*.rs`, [`readme`] for `tests/readme*.rs`, [`bounces`] for
//! `tests/bounce*.rs`, [`bounce_fixtures`] for `tests/import*.rs`.
#![allow(dead_code)]

pub(crate) mod api;
pub(crate) mod binary;
pub(crate) mod bounce_fixtures;
pub(crate) mod bounces;
pub(crate) mod conn;
pub(crate) mod limits;
pub(crate) mod openapi;
pub(crate) mod prometheus;
pub(crate) mod readme;
pub(crate) mod redis;
pub(crate) mod shipped;
pub(crate) mod tools;

// Re-exported so that test files say `common::PlainConn`; a test file that uses none of some
// must not warn.
#[allow(unused_imports)]
pub(crate) use conn::{Conn, PlainConn, Reply, TlsConn};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use failmail::server::tls::DEV_CA_PEM;
use failmail::{App, AppConfig, RunningApp};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Hang guard for every network wait: far longer than anything should take.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The host name the servers under test use (the default of `SessionConfig`).
pub(crate) const HOSTNAME: &str = "mx.failmail.test";

/// The plain sink (every phase accepted, no scenario) on loopback port 0, changed by `change`.
pub(crate) fn sink_with(change: impl FnOnce(&mut AppConfig)) -> AppConfig {
    let mut config = AppConfig {
        scenario: None,
        ..AppConfig::loopback()
    };
    change(&mut config);
    config
}

/// Starts failmail in-process with `config`, through the composition root as `main` does.
pub(crate) async fn start(config: AppConfig) -> RunningApp {
    App::start(config)
        .await
        .expect("failmail starts on 127.0.0.1:0")
}

/// failmail serving a scenario (the built-in one until replaced) over SMTP only, with a short
/// shutdown grace, changed by `change`: what the scenario tests start.
pub(crate) fn scenario_with(change: impl FnOnce(&mut AppConfig)) -> AppConfig {
    let mut config = AppConfig::loopback();
    config.server.smtps = None;
    config.http = None;
    config.server.shutdown_grace = Duration::from_millis(100);
    change(&mut config);
    config
}

/// Starts `config`, then makes the scenario `text` (named `origin` in its errors) live, as
/// `PUT /api/scenario` would.
pub(crate) async fn start_toml(config: AppConfig, origin: &str, text: &str) -> RunningApp {
    let app = start(config).await;
    app.scenario()
        .expect("the configuration serves a scenario")
        .replace(origin, text)
        .unwrap_or_else(|e| panic!("scenario does not load: {e}\n{text}"));
    app
}

/// Polls `probe` every 10 ms until it gives a value, for at most 20 s (then fails naming `what`):
/// a bounded wait for something another task does.
pub(crate) async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let poll = async {
        loop {
            if let Some(value) = probe() {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), poll).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not within 20 s"),
    }
}

/// Starts the in-process sink with every listener on loopback port 0.
pub(crate) async fn start_loopback() -> RunningApp {
    start(sink_with(|_| {})).await
}

/// The repository root (where `certs/` and `tests/` are).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The development CA file clients are told to trust.
pub(crate) fn ca_path() -> PathBuf {
    repo_root().join("certs/ca.pem")
}

/// A rustls client configuration that trusts only the development CA.
pub(crate) fn tls_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &DEV_CA_PEM[..]) {
        roots
            .add(cert.expect("the development CA is valid PEM"))
            .expect("the development CA is a valid certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS 1.2 and 1.3 are available")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// Runs a TLS handshake as a client that checks the server's certificate for `localhost`.
pub(crate) async fn tls_handshake(stream: TcpStream) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(tls_client_config());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(IO_TIMEOUT, connector.connect(name, stream))
        .await
        .expect("TLS handshake within 10 s")
        .expect("TLS handshake succeeds with the development CA")
}

/// A whole transaction on a new connection to `addr`: greeting, EHLO, MAIL, RCPT, DATA, the
/// 250 with a queue id, QUIT. Returns the queue id.
pub(crate) async fn full_transaction(addr: SocketAddr, tag: &str) -> String {
    let mut conn = PlainConn::greeted(addr).await;
    transaction_on(&mut conn, tag).await
}

/// Like [`full_transaction`] on a connection already greeted.
pub(crate) async fn transaction_on<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &str,
) -> String {
    conn.ehlo("client.example").await;
    conn.begin_data(&format!("{tag}@client.example"), "bob@failmail.test")
        .await;
    conn.send(format!("Subject: {tag}\r\n\r\nserved normally\r\n.\r\n"))
        .await;
    let id = queue_id(&conn.reply().await);
    conn.quit().await;
    id
}

/// One new connection to a scenario server: EHLO, MAIL FROM `from`, RCPT TO `rcpt`; returns the
/// RCPT reply (how the scenario's recipient rules answer), after QUIT or, for a 421, the close.
pub(crate) async fn rcpt_reply(addr: SocketAddr, from: &str, rcpt: &str) -> Reply {
    let mut conn = PlainConn::ready(addr).await;
    let reply = conn.mail_rcpt(from, rcpt).await;
    conn.finish(&reply).await;
    reply
}

/// Checks a reply to EHLO: multi-line 250, host name first, the core extensions announced.
#[track_caller]
pub(crate) fn assert_ehlo(reply: &Reply) {
    assert_eq!(reply.code, 250, "EHLO reply: {}", reply.text());
    assert!(
        reply.lines.len() > 1,
        "EHLO reply is multi-line: {}",
        reply.text()
    );
    assert_eq!(reply.lines[0], HOSTNAME, "EHLO reply names the host");
    for extension in ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING"] {
        assert!(
            reply.lines.iter().any(|l| l == extension),
            "EHLO announces {extension}: {}",
            reply.text()
        );
    }
    assert!(
        reply.lines.iter().any(|l| l.starts_with("SIZE ")),
        "EHLO announces SIZE: {}",
        reply.text()
    );
}

/// Whether an EHLO reply announces `keyword` (alone or with parameters).
pub(crate) fn announces(reply: &Reply, keyword: &str) -> bool {
    reply
        .lines
        .iter()
        .any(|l| l == keyword || l.starts_with(&format!("{keyword} ")))
}

/// Checks the final 250 after a message and returns its queue id.
#[track_caller]
pub(crate) fn queue_id(reply: &Reply) -> String {
    reply.assert(250, "2.0.0");
    queue_id_in(&reply.lines.join(" "))
}

/// The queue id in the text of a 250 after a message (`... queued as <id>`).
#[track_caller]
pub(crate) fn queue_id_in(text: &str) -> String {
    let (_, after) = text
        .split_once("queued as ")
        .unwrap_or_else(|| panic!("250 after a message says where it is queued: {text:?}"));
    let id = after.split(' ').next().unwrap_or_default();
    assert!(!id.is_empty(), "queue id is not empty: {text:?}");
    id.to_owned()
}

/// A message whose body has lines starting with `.`, `..`, a lone `.`, `...`, and a `.` line
/// right after the header/body separator, so that every client must dot-stuff it. It has no
/// final CRLF: each client adds exactly one before its terminating `.` line, so the server must
/// receive [`received_form`] of it.
pub(crate) fn dotted_message(tag: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@client.example>\r\n\
         To: Bob <bob@failmail.test>, Carol <carol@failmail.test>\r\n\
         Subject: leading dots via {tag}\r\n\
         Message-ID: <{tag}.dots@client.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         .first body line starts with a dot\r\n\
         first line with a dot . in the middle\r\n\
         ..two leading dots\r\n\
         .\r\n\
         ...\r\n\
         . space after a dot\r\n\
         \r\n\
         .\r\n\
         line after a lone dot line\r\n\
         ..\r\n\
         last line ({tag})"
    )
    .into_bytes()
}

/// What the server must keep for a message sent as `raw` without a final CRLF.
pub(crate) fn received_form(raw: &[u8]) -> Vec<u8> {
    let mut expected = raw.to_vec();
    expected.extend_from_slice(b"\r\n");
    expected
}

/// Dot-stuffs `body` as RFC 5321 §4.5.2 says (for raw DATA tests); `body` must end with CRLF.
pub(crate) fn dot_stuff(body: &[u8]) -> Vec<u8> {
    assert!(body.ends_with(b"\r\n"), "a DATA body ends with CRLF");
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut line_start = true;
    for (i, &byte) in body.iter().enumerate() {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n' && i > 0 && body[i - 1] == b'\r';
    }
    out
}

/// Shows bytes readably in assertion messages.
pub(crate) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
