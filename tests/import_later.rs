//! Asynchronous bounces imported as later bounces, checked by an independent reader.
//!
//! The round trip: for every fixture bounce (`tests/fixtures/bounces/`) that `failmail import`
//! finds asynchronous (its rule is a `bounce`, not a `reply`) and that Sisimai reads, the
//! imported scenario is served, a message to the failed recipient is accepted (250), the clock
//! is moved past the bounce's time, and the DSN failmail sends is read by Sisimai (Debian
//! `libsisimai-perl`, `tests/bounces/read_sisimai.pl`) next to the original: the same reason and
//! the same status are expected. The test prints the share; every recipient where Sisimai reads
//! them otherwise is listed, with both readings and why, in `tests/sisimai/roundtrip.toml`, and
//! the table may hold nothing that does not happen.
//!
//! Also here: the command line's choice between the reply at SMTP and the later bounce
//! (`--later`, `--at-smtp`), what the rule's comment says, and `--as-magic` with `+async`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::binary::{binary_command, run_tool, run_tool_ok};
use common::bounce_fixtures::{fixtures, import, imported_rule, FIXTURES};
use common::Conn;
use failmail::clock::ManualClock;
use failmail::testing::TestServer;

const SENDER: &str = "bounces@app.example";
const TABLE: &str = "tests/sisimai/roundtrip.toml";

/// Sisimai's reading of one recipient: reason, status and the DSN's action.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reading {
    reason: String,
    status: String,
    action: String,
}

impl Reading {
    /// `reason status`, as the table writes a reading.
    fn key(&self) -> String {
        format!("{} {}", self.reason, self.status)
    }
}

/// Sisimai's readings of `paths`, by (file name without its folder, recipient in lower case);
/// `None` without Sisimai.
async fn read(paths: &[PathBuf]) -> Option<BTreeMap<(String, String), Reading>> {
    common::tools::need(&common::tools::SISIMAI)?;
    let mut command = Command::new("/usr/bin/perl");
    command
        .arg(common::repo_root().join("tests/bounces/read_sisimai.pl"))
        .args(paths);
    let output = run_tool_ok(command, "sisimai", Duration::from_secs(120)).await;
    let mut readings = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 6 {
            continue; // nothing found in that file
        }
        let reading = Reading {
            reason: f[2].to_owned(),
            status: f[3].to_owned(),
            action: f[5].to_owned(),
        };
        readings.insert((f[0].to_owned(), f[1].to_ascii_lowercase()), reading);
    }
    Some(readings)
}

/// Sends one message to `rcpt`, which must be accepted at RCPT and at the end of data.
async fn send(server: &TestServer, rcpt: &str) {
    let mut conn = Conn::ready(server.smtp_addr()).await;
    conn.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;
    conn.cmd_code(&format!("RCPT TO:<{rcpt}>"), 250).await;
    conn.cmd_code("DATA", 354).await;
    conn.send(format!(
        "From: <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: Invoice 42\r\nMessage-ID: <m42@app.example>\r\n\r\nHello.\r\n.\r\n"
    ))
    .await;
    conn.reply().await.assert_code(250);
    conn.quit().await;
}

/// The recipients a fixture's import turns into later bounces.
fn later_recipients(scenario: &str) -> Vec<String> {
    let value: toml::Value = toml::from_str(scenario).expect("the import is TOML");
    value["rule"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|rule| rule.get("bounce").is_some())
        .filter_map(|rule| rule.get("rcpt")?.as_str().map(str::to_owned))
        .collect()
}

/// Serves `scenario` on a clock that moves only when told, sends to `rcpt`, moves the clock
/// past every give-up, and returns the DSN of the kind the original is (delayed or failed).
async fn dsn_of(scenario: &str, rcpt: &str, delayed: bool) -> Vec<u8> {
    let server = TestServer::start_with(scenario, |config| {
        config.clock = Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
    })
    .await;
    send(&server, rcpt).await;
    server.advance_clock(Duration::from_secs(31 * 86_400)).await;
    let wanted = if delayed { "delayed" } else { "failed" };
    let (_, raw) = server
        .wait_for_bounce(
            |b| {
                b.action == Some(wanted)
                    && b.recipients
                        .iter()
                        .any(|r| r.recipient.eq_ignore_ascii_case(rcpt))
            },
            Duration::from_secs(10),
        )
        .await;
    raw.to_vec()
}

/// One explained disagreement of `tests/sisimai/roundtrip.toml`.
#[derive(Debug, serde::Deserialize)]
struct Explained {
    file: String,
    rcpt: String,
    original: String,
    failmail: String,
    why: String,
}

#[derive(Debug, serde::Deserialize)]
struct Table {
    mismatch: Vec<Explained>,
}

/// The round trip, for every asynchronous fixture Sisimai reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_bounces_read_as_the_originals() {
    let files = fixtures();
    let Some(originals) = read(&files).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let folder = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        let Ok(scenario) = try_import(file).await else {
            continue; // nothing to import (tests/import.rs checks which)
        };
        for rcpt in later_recipients(&scenario) {
            let key = (name.clone(), rcpt.to_ascii_lowercase());
            let Some(original) = originals.get(&key) else {
                continue; // Sisimai does not read this recipient
            };
            let delayed = original.action == "delayed";
            let dsn = dsn_of(&scenario, &rcpt, delayed).await;
            let path = dir
                .path()
                .join(format!("{folder}-{name}-{}.eml", cases.len()));
            std::fs::write(&path, &dsn).unwrap();
            cases.push((format!("{folder}/{name}"), rcpt, original.clone(), path));
        }
    }
    let paths: Vec<PathBuf> = cases.iter().map(|c| c.3.clone()).collect();
    let readings = read(&paths).await.expect("Sisimai is there");
    let (mut agree, mut same_reason) = (0, 0);
    let mut differ = Vec::new();
    for (file, rcpt, original, path) in &cases {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let key = (name, rcpt.to_ascii_lowercase());
        let failmail = readings
            .get(&key)
            .map_or_else(|| "(nothing found)".to_owned(), Reading::key);
        if failmail.split(' ').next() == Some(original.reason.as_str()) {
            same_reason += 1;
        }
        if failmail == original.key() {
            agree += 1;
        } else {
            differ.push((file.clone(), rcpt.clone(), original.key(), failmail));
        }
    }
    let share = |n: usize| 100.0 * n as f64 / cases.len().max(1) as f64;
    eprintln!(
        "round trip: {} asynchronous bounces Sisimai reads; failmail's DSN read with the same \
         reason and status: {agree} of {n} ({:.0}%); the same reason: {same_reason} of {n} \
         ({:.0}%)",
        cases.len(),
        share(agree),
        share(same_reason),
        n = cases.len(),
    );
    assert!(
        cases.len() >= 10,
        "too few asynchronous fixtures: {}",
        cases.len()
    );
    check_table(&differ);
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let figure = format!(
        "For the {n} asynchronous ones Sisimai reads, `tests/import_later.rs` has Sisimai read the \
         DSN failmail sends next to the original: {agree} get the same reason and status, \
         {same_reason} the same reason",
        n = cases.len()
    );
    assert!(
        fold(&readme).contains(&figure),
        "the README's import section should say: {figure}"
    );
}

/// Runs of whitespace as one space.
fn fold(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every disagreement is in the table with the readings seen, and the table holds nothing else.
fn check_table(differ: &[(String, String, String, String)]) {
    let text = std::fs::read_to_string(common::repo_root().join(TABLE)).expect(TABLE);
    let table: Table = toml::from_str(&text).expect("the table is TOML");
    let mut problems = Vec::new();
    for (file, rcpt, original, failmail) in differ {
        let explained = table.mismatch.iter().find(|e| {
            &e.file == file
                && e.rcpt.eq_ignore_ascii_case(rcpt)
                && &e.original == original
                && &e.failmail == failmail
        });
        if explained.is_none() {
            problems.push(format!(
                "not explained in {TABLE}: file = {file:?}, rcpt = {rcpt:?}, original = \
                 {original:?}, failmail = {failmail:?}"
            ));
        }
    }
    for entry in &table.mismatch {
        assert!(!entry.why.trim().is_empty(), "{entry:?} says no why");
        let seen = differ
            .iter()
            .any(|(file, rcpt, ..)| file == &entry.file && rcpt.eq_ignore_ascii_case(&entry.rcpt));
        if !seen {
            problems.push(format!(
                "{TABLE} explains what no longer happens: {} {}",
                entry.file, entry.rcpt
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `failmail import FILE`, or its error when the file gives nothing.
async fn try_import(file: &Path) -> Result<String, String> {
    let output = run_tool(
        binary_command(&[], &["import", file.to_str().unwrap()]),
        "failmail import",
        Duration::from_secs(30),
    )
    .await;
    match output.status.success() {
        true => Ok(String::from_utf8(output.stdout).expect("UTF-8")),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

/// Every rule of every imported fixture has a `name` (the file and the recipient) and a comment
/// that names the file, the MTA that reported the bounce, and whether and why the failure is
/// answered in the SMTP dialogue or bounced later.
#[tokio::test]
async fn every_rule_is_named_and_says_where_it_comes_from() {
    let mut rules = 0;
    for file in fixtures() {
        let Ok(scenario) = try_import(&file).await else {
            continue;
        };
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let blocks: Vec<&str> = scenario.split("[[rule]]").collect();
        for (before, rule) in blocks.iter().zip(&blocks[1..]) {
            rules += 1;
            let comment = before.rsplit("\n\n").next().unwrap();
            assert!(
                comment.contains(&format!("# From {}", file.display())),
                "{comment}"
            );
            assert!(comment.contains(" (reported by "), "{comment}");
            assert!(!comment.contains("reported by an unnamed MTA"), "{comment}");
            let timing = comment.contains("# Synchronous, answered at ")
                || comment.contains("# Asynchronous, a bounce (DSN) 1m after the 250: ");
            assert!(timing, "{comment}");
            assert!(rule.contains(&format!("name = \"{name}: ")), "{rule}");
        }
    }
    assert!(rules >= 45, "{rules} rules");
}

/// The import's choice and what forces it: Gmail's own bounce (no SMTP phase) becomes a later
/// bounce, Postfix's `in reply to RCPT TO command` a reply at RCPT; `--at-smtp` and `--later`
/// swap them and say so; `--as-magic` gives the `+async` address; an expiry gets its give-up.
#[tokio::test]
async fn the_import_chooses_and_the_command_line_forces() {
    let gmail = Path::new(FIXTURES).join("deltachat/gmail_ndn.eml");
    let postfix = Path::new(FIXTURES).join("flufl/dsn_10.txt");
    let rcpt = "assidhfaaspocwaeofi@gmail.com";

    let later = import(&gmail, &[]).await;
    let said = |scenario: &str| {
        scenario
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rule = imported_rule(&later, rcpt);
    assert_eq!(rule.get("at"), None, "{later}");
    let bounce = rule["bounce"].as_table().expect("a later bounce");
    assert_eq!(bounce["after"].as_str(), Some("1m"));
    assert_eq!(bounce["reply"]["code"].as_integer(), Some(550));
    assert_eq!(bounce["reply"]["status"].as_str(), Some("5.1.1"));
    assert!(
        later.contains("# From ") && later.contains("(reported by googlemail.com)"),
        "{later}"
    );
    assert!(
        said(&later).contains("the bounce names no SMTP phase"),
        "{later}"
    );

    let at_smtp = import(&gmail, &["--at-smtp"]).await;
    let rule = imported_rule(&at_smtp, rcpt);
    assert_eq!(rule["at"].as_str(), Some("rcpt"), "{at_smtp}");
    assert_eq!(rule["reply"]["code"].as_integer(), Some(550));
    assert!(
        said(&at_smtp).contains("--at-smtp asked for the reply"),
        "{at_smtp}"
    );

    let sync = import(&postfix, &[]).await;
    let rule = imported_rule(&sync, "anne.person@dom.ain");
    assert_eq!(rule["at"].as_str(), Some("rcpt"), "{sync}");
    assert!(
        said(&sync).contains("Synchronous, answered at rcpt: the bounce names the SMTP command"),
        "{sync}"
    );
    let forced = import(&postfix, &["--later"]).await;
    let rule = imported_rule(&forced, "anne.person@dom.ain");
    assert!(rule.get("bounce").is_some(), "{forced}");
    assert!(
        said(&forced).contains("--later asked for a bounce"),
        "{forced}"
    );

    let both = run_tool(
        binary_command(
            &[],
            &["import", "--later", "--at-smtp", gmail.to_str().unwrap()],
        ),
        "failmail import",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        !both.status.success(),
        "--later and --at-smtp exclude each other"
    );

    let magic = import(&gmail, &["--as-magic"]).await;
    assert!(
        magic.contains(&format!(
            "{rcpt}: user_unknown+gmail+async@gmail.com (a bounce"
        )),
        "{magic}"
    );

    let expiry = import(&Path::new(FIXTURES).join("sisimai/qmail-06.eml"), &[]).await;
    let bounce = imported_rule(&expiry, "kijitora@example.jp")["bounce"].clone();
    assert_eq!(bounce["reply"]["code"].as_integer(), Some(450), "{expiry}");
    assert_eq!(bounce["give_up"].as_str(), Some("5d"), "{expiry}");
    assert!(
        said(&expiry).contains("retried a temporary failure and gave up"),
        "{expiry}"
    );
}

/// A delay notice (`Action: delayed`) becomes a later bounce whose delay notice comes when the
/// original's did (its `Date` after its `Arrival-Date`) and whose give-up is its
/// `Will-Retry-Until`; served, failmail sends the "delayed" DSN then, and the failure at the
/// give-up.
#[tokio::test]
async fn a_delay_notice_comes_back_at_its_time() {
    let notice = "From: MAILER-DAEMON@mx.relay.example (Mail Delivery System)\r\n\
        Date: Tue, 9 Jun 2020 23:44:22 +0000\r\n\
        Subject: Delayed Mail (still being retried)\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
        --B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.relay.example.\r\n\r\n\
        <slow@full.example>: host mx.full.example[192.0.2.9] said: 452 4.2.2 Mailbox full\r\n\r\n\
        --B\r\nContent-Type: message/delivery-status\r\n\r\n\
        Reporting-MTA: dns; mx.relay.example\r\n\
        Arrival-Date: Tue, 9 Jun 2020 20:44:22 +0000\r\n\r\n\
        Final-Recipient: rfc822; slow@full.example\r\nAction: delayed\r\nStatus: 4.2.2\r\n\
        Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n\
        Will-Retry-Until: Thu, 11 Jun 2020 20:44:22 +0000\r\n\r\n--B--\r\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("delayed.eml");
    std::fs::write(&path, notice).unwrap();
    let scenario = import(&path, &[]).await;
    let bounce = imported_rule(&scenario, "slow@full.example")["bounce"].clone();
    assert_eq!(bounce["delay_notice"].as_str(), Some("3h"), "{scenario}");
    assert_eq!(bounce["give_up"].as_str(), Some("2d"), "{scenario}");
    assert!(
        scenario.contains("a delay notice: the reporting MTA"),
        "{scenario}"
    );

    let server = TestServer::start_with(&scenario, |config| {
        config.clock = Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
    })
    .await;
    send(&server, "slow@full.example").await;
    server.advance_clock(Duration::from_secs(3 * 3600)).await;
    let (delayed, _) = server
        .wait_for_bounce(|b| b.action == Some("delayed"), Duration::from_secs(10))
        .await;
    assert_eq!(delayed.recipients[0].status, "4.2.2");
    let sent_failure =
        |b: &failmail::bounces::view::BounceView| b.state == "sent" && b.action == Some("failed");
    assert!(
        !server.bounces().iter().any(sent_failure),
        "not before the give-up"
    );
    server.advance_clock(Duration::from_secs(2 * 86_400)).await;
    let (failed, _) = server
        .wait_for_bounce(|b| b.action == Some("failed"), Duration::from_secs(10))
        .await;
    assert_eq!(failed.kind, "expired");
}
