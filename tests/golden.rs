//! The wire bytes of whole sessions, byte for byte, against a committed transcript.
//!
//! For every flavor, a fresh server (session ids from 1, so queue ids and provider trace ids are
//! reproducible) runs one session of the protocol's own replies (greeting, EHLO, HELO, NOOP, RSET,
//! VRFY, EXPN, HELP, errors, AUTH, a whole DATA and a BDAT transaction, QUIT) and then one session
//! per catalog entry, through its magic address, up to the phase where the entry answers. Every
//! reply line is written to the transcript exactly as received; only the clock-derived timestamp
//! in Outlook's trace id is masked. `tests/golden/transcript.txt` is the expected result; run with
//! `FAILMAIL_BLESS=1` to write it anew after an intended change of wording, and review the diff.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;

use common::PlainConn;
use failmail::testing::TestServer;
use serde::Deserialize;

const FLAVORS: [&str; 14] = [
    "generic", "ovh", "gmail", "outlook", "yahoo", "postfix", "exim", "exchange", "icloud", "zoho",
    "gmx", "orange", "yandex", "mailru",
];

const CATALOG_TOML: &str = include_str!("../src/scenario/catalog.toml");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/transcript.txt");

#[derive(Deserialize)]
struct CatalogFile {
    entry: Vec<EntryFile>,
}

#[derive(Deserialize)]
struct EntryFile {
    name: String,
    phase: String,
}

/// Records what one client sent and every reply line it received.
struct Recorder {
    conn: PlainConn,
    out: String,
}

impl Recorder {
    async fn open(addr: SocketAddr, out: String) -> Self {
        let mut recorder = Self {
            conn: PlainConn::connect(addr).await,
            out,
        };
        recorder.reply().await;
        recorder
    }

    /// Reads one whole reply (or the end of the stream) into the transcript; `false` at the end.
    async fn reply(&mut self) -> bool {
        loop {
            let Some(line) = self.conn.line().await else {
                self.out.push_str("S: <closed>\n");
                return false;
            };
            let _ = writeln!(self.out, "S: {}", mask_time(&line));
            if line.as_bytes().get(3) != Some(&b'-') {
                return true;
            }
        }
    }

    /// Sends `line` (CRLF added), then records its reply; `false` if the server closed.
    async fn say(&mut self, line: &str) -> bool {
        let _ = writeln!(self.out, "C: {line}");
        self.conn.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Sends raw bytes (a body) without recording them, then records the reply.
    async fn body(&mut self, bytes: &str) -> bool {
        let _ = writeln!(self.out, "C: <body of {} octets>", bytes.len());
        self.conn.send(bytes).await;
        self.reply().await
    }
}

/// Outlook's trace id carries the reply's time (`2026-08-05T12:37:17.626Z`): the only part of a
/// transcript that depends on the clock.
fn mask_time(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < bytes.len() {
        let candidate = &bytes[i..];
        let is_stamp = candidate.len() >= 24
            && candidate[..24].iter().enumerate().all(|(k, &b)| match k {
                4 | 7 => b == b'-',
                10 => b == b'T',
                13 | 16 => b == b':',
                19 => b == b'.',
                23 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if is_stamp {
            out.push_str("<TIME>");
            i += 24;
        } else {
            let ch = line[i..].chars().next().expect("a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The protocol's own replies, in one session.
async fn protocol_session(addr: SocketAddr, out: String) -> String {
    let mut r = Recorder::open(addr, out).await;
    for line in [
        "EHLO client.example",
        "HELO client.example",
        "NOOP",
        "RSET",
        "VRFY someone",
        "EXPN list",
        "HELP",
        "FROB",
        "MAIL",
        "RCPT TO:<bob@dest.example>",
        "DATA",
        "EHLO client.example",
        "AUTH LOGIN",
        "*",
        // "user" / "secret" in base64, PLAIN with an initial response.
        "AUTH PLAIN AHVzZXIAc2VjcmV0",
        "MAIL FROM:<alice@client.example> SIZE=100",
        "RCPT TO:<bob@dest.example>",
        "RCPT TO:<carol@dest.example>",
        "DATA",
    ] {
        assert!(r.say(line).await, "the session stays open after {line}");
    }
    assert!(r.body("Subject: golden\r\n\r\nHello.\r\n.\r\n").await);
    for line in [
        "MAIL FROM:<alice@client.example>",
        "RCPT TO:<bob@dest.example>",
    ] {
        assert!(r.say(line).await);
    }
    let _ = writeln!(r.out, "C: BDAT 8 / BDAT 0 LAST");
    r.conn.send("BDAT 8\r\nSubject:").await;
    assert!(r.reply().await);
    r.conn.send("BDAT 0 LAST\r\n").await;
    assert!(r.reply().await);
    r.say("QUIT").await;
    r.out
}

/// One session that reaches the phase where the catalog entry `name` answers.
async fn entry_session(
    addr: SocketAddr,
    out: String,
    name: &str,
    flavor: &str,
    phase: &str,
) -> String {
    let mut r = Recorder::open(addr, out).await;
    let _ = writeln!(r.out, "# {name} ({flavor})");
    let rcpt = format!("RCPT TO:<{name}+{flavor}@dest.example>");
    let steps: &[&str] = &["HELO client.example", "MAIL FROM:<alice@client.example>"];
    for step in steps {
        if !r.say(step).await {
            return r.out;
        }
    }
    if !r.say(&rcpt).await || !matches!(phase, "data" | "data_end") {
        r.say("QUIT").await;
        return r.out;
    }
    if !r.say("DATA").await || phase == "data" {
        r.say("QUIT").await;
        return r.out;
    }
    if r.body("Subject: golden\r\n\r\nHello.\r\n.\r\n").await {
        r.say("QUIT").await;
    }
    r.out
}

async fn transcript() -> String {
    let catalog: CatalogFile = toml::from_str(CATALOG_TOML).expect("the catalog parses");
    let mut out = String::new();
    for flavor in FLAVORS {
        let server = TestServer::start(&format!("[server]\nflavor = \"{flavor}\"\n")).await;
        let addr = server.smtp_addr();
        let _ = writeln!(out, "=== flavor {flavor}");
        out = protocol_session(addr, out).await;
        for entry in &catalog.entry {
            out = entry_session(addr, out, &entry.name, flavor, &entry.phase).await;
        }
        server.shutdown().await;
    }
    out
}

#[tokio::test]
async fn sessions_are_byte_identical_to_the_golden_transcript() {
    let actual = transcript().await;
    if std::env::var_os("FAILMAIL_BLESS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(GOLDEN).expect("tests/golden/transcript.txt exists");
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .enumerate()
            .find(|(_, (a, e))| a != e);
        match first {
            Some((n, (a, e))) => panic!(
                "transcript differs at line {}:\n  expected: {e}\n  actual:   {a}\n(FAILMAIL_BLESS=1 rewrites it after an intended change)",
                n + 1
            ),
            None => panic!(
                "transcript differs in length: {} lines expected, {} actual",
                expected.lines().count(),
                actual.lines().count()
            ),
        }
    }
}

#[test]
fn outlook_time_is_the_only_mask() {
    assert_eq!(
        mask_time("550 5.1.10 [2026-08-05T12:37:17.626Z 08DC] x"),
        "550 5.1.10 [<TIME> 08DC] x"
    );
    assert_eq!(
        mask_time("250 2.0.0 Ok: queued as 0000000A0001"),
        "250 2.0.0 Ok: queued as 0000000A0001"
    );
}
