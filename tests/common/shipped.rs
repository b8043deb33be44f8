//! What the `tests/shipped_scenarios*.rs` files share: where the shipped scenario files are, a
//! shipped file served in-process, and the probes that meet its rules over SMTP with every reply
//! line compared exactly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use failmail::app::ScenarioConfig;
use failmail::clock::OffsetClock;
use failmail::RunningApp;
use regex::Regex;

use super::{rcpt_reply, PlainConn, Reply};

/// The host name of the servers under test (the default; no shipped file sets another).
pub(crate) const HOST: &str = "mx.failmail.test";

// ------------------------------------------------------------------------------------------------
// The files

/// The `scenarios/` directory of the repository.
pub(crate) fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// `scenarios/<name>`, which must exist.
pub(crate) fn scenario(name: &str) -> PathBuf {
    let path = scenarios_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

// ------------------------------------------------------------------------------------------------
// Serving a shipped file in-process

/// Serves `scenarios/<name>` on 127.0.0.1:0 with `seed` and `clock`, as `failmail serve` would.
pub(crate) async fn serve_with(name: &str, seed: u64, clock: Arc<OffsetClock>) -> RunningApp {
    let path = scenario(name);
    let config = super::scenario_with(|c| {
        c.scenario = Some(ScenarioConfig {
            path: Some(path),
            seed,
            ..ScenarioConfig::default()
        });
        c.clock = clock;
    });
    failmail::App::start(config)
        .await
        .unwrap_or_else(|e| panic!("{name} does not load:\n{e}"))
}

/// [`serve_with`] seed 7 and the real clock: the server and its SMTP address.
pub(crate) async fn serve(name: &str) -> (RunningApp, SocketAddr) {
    let server = serve_with(name, 7, Arc::new(OffsetClock::new())).await;
    let addr = server.addresses().smtp;
    (server, addr)
}

// ------------------------------------------------------------------------------------------------
// Meeting the rules over SMTP, every reply line compared exactly

/// The message every transaction here sends.
pub(crate) const BODY: &[u8] =
    b"From: sender@client.example\r\nSubject: shipped scenario\r\n\r\nhello\r\n.\r\n";

/// One connection: a whole message to `rcpt` (which must be accepted); returns the end-of-data
/// reply.
pub(crate) async fn data_reply(addr: SocketAddr, from: &str, rcpt: &str) -> Reply {
    let mut client = PlainConn::ready(addr).await;
    let reply = client.mail_rcpt(from, rcpt).await;
    assert_eq!(reply.wire, ["250 2.1.5 Ok"], "RCPT TO:<{rcpt}>");
    let reply = client.data(BODY).await;
    client.finish(&reply).await;
    reply
}

/// One connection: EHLO and AUTH PLAIN as `user`; returns the AUTH reply.
pub(crate) async fn auth_reply(addr: SocketAddr, user: &str) -> Reply {
    let mut client = PlainConn::ready(addr).await;
    let reply = client.auth_plain(user, "s3cret").await;
    client.finish(&reply).await;
    reply
}

/// How one new connection meets a rule of a shipped scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Probe {
    /// MAIL FROM the first, RCPT TO the second: the RCPT reply ([`rcpt_reply`]).
    Rcpt(&'static str, &'static str),
    /// A whole message from the first to the second: the end-of-data reply ([`data_reply`]).
    Data(&'static str, &'static str),
    /// AUTH PLAIN as this user: the AUTH reply ([`auth_reply`]).
    Auth(&'static str),
}

impl Probe {
    pub(crate) async fn reply(self, addr: SocketAddr) -> Reply {
        match self {
            Probe::Rcpt(from, rcpt) => rcpt_reply(addr, from, rcpt).await,
            Probe::Data(from, rcpt) => data_reply(addr, from, rcpt).await,
            Probe::Auth(user) => auth_reply(addr, user).await,
        }
    }
}

/// The same-shape checks of the wire tests as one table: each probe, in order and on its own
/// connection, must get exactly the expected lines.
pub(crate) async fn assert_probes(addr: SocketAddr, cases: &[(Probe, &[&str])]) {
    for (probe, expected) in cases {
        assert_eq!(probe.reply(addr).await.wire, *expected, "{probe:?}");
    }
}

/// Asserts each line against a regex (anchored).
pub(crate) fn assert_lines_match(reply: &Reply, patterns: &[String]) {
    let reply = &reply.wire;
    assert_eq!(
        reply.len(),
        patterns.len(),
        "expected {} lines, got {reply:#?}",
        patterns.len()
    );
    for (line, pattern) in reply.iter().zip(patterns) {
        let regex = Regex::new(&format!("^{pattern}$")).expect("valid test regex");
        assert!(regex.is_match(line), "{line:?} does not match {pattern:?}");
    }
}
