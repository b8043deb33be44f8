//! `failmail import` against real bounces, checked by an independent reader.
//!
//! Every fixture in `tests/fixtures/bounces/` (public collections of real bounces, each source's
//! licence recorded in its README) is read twice: by Sisimai (Debian `libsisimai-perl`, through
//! `tests/sisimai/bounces.pl`), which says for each failed recipient the reply code, the status,
//! the SMTP command and the diagnostic text; and by `failmail import`, whose scenario a real
//! `failmail serve` then serves (imported with `--at-smtp`, so that the asynchronous ones are
//! checked on the wire too; `tests/import_later.rs` checks them as later bounces). For every
//! recipient Sisimai reads with a reply code, a raw SMTP client goes to the phase Sisimai names
//! (the one the import chose when Sisimai names none) and must get the same code, the same
//! enhanced status (the one the diagnostic quotes; Sisimai's status when the reply has none,
//! unless it is one of Sisimai's own 5.0.9xx guesses) and the same text, whitespace and line
//! folding aside: the whole of it, from the first word after the reply code to the last, with
//! nothing after it but the bounce's own words (`(in reply to … command)`, qmail's `Giving up
//! on`) or the next paragraph Sisimai runs on into. The test counts the files and recipients it
//! really checked (at least 40 bounces, from at least ten MTAs or providers as Sisimai names
//! them), prints the share reproduced and requires all of it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::binary::{binary_command, run_tool, start_binary_with};
use common::bounce_fixtures::{fixtures, import, imported_rule, sisimai, SisimaiRecord, FIXTURES};
use common::{PlainConn, Reply};

/// The `at` of the imported rule for `rcpt` (or the rule with no recipient).
fn imported_phase(scenario: &str, rcpt: &str) -> String {
    imported_rule(scenario, rcpt)["at"]
        .as_str()
        .expect("imported with --at-smtp: every rule has its phase")
        .to_owned()
}

/// Drives a session to `phase` for `rcpt` and returns the reply given there.
async fn reply_at(addr: std::net::SocketAddr, rcpt: &str, phase: &str) -> Reply {
    let mut client = PlainConn::ready(addr).await;
    let mail = client.command("MAIL FROM:<sender@import.example>").await;
    if phase == "mail" {
        return mail;
    }
    assert_eq!(mail.code, 250, "MAIL: {:?}", mail.wire);
    let reply = client.command(&format!("RCPT TO:<{rcpt}>")).await;
    if phase == "rcpt" {
        return reply;
    }
    assert_eq!(reply.code, 250, "RCPT: {:?}", reply.wire);
    let data = client.command("DATA").await;
    if phase == "data" {
        return data;
    }
    assert_eq!(data.code, 354, "DATA: {:?}", data.wire);
    client
        .send("From: <sender@import.example>\r\nSubject: import\r\n\r\nHello.\r\n.\r\n")
        .await;
    client.reply().await
}

/// Runs of whitespace as one space.
fn fold(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The enhanced status a diagnostic quotes right after `code`, if any.
fn quoted_status(diagnostic: &str, code: u16) -> Option<String> {
    let code = code.to_string();
    diagnostic.match_indices(&code).find_map(|(at, _)| {
        let rest = diagnostic[at + 3..].trim_start_matches([' ', '-', ':']);
        let token = rest.split([' ', ',']).next()?;
        let parts: Vec<&str> = token.split('.').collect();
        (parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        .then(|| token.to_owned())
    })
}

/// The diagnostic with every `CODE-STATUS` / `CODE STATUS` / `CODE:` marker taken out.
fn without_markers(diagnostic: &str, code: u16, status: &str) -> String {
    let mut text = format!(" {} ", fold(diagnostic));
    for marker in [
        format!(" {code}-{status} "),
        format!(" {code} {status} "),
        format!(" {code}: {status} "),
        format!(" {code}, ERROR_CODE :{status} "),
        format!(":{code}, ERROR_CODE :{status} "),
        format!(" {code}, ERROR_CODE :"),
        format!(" {code}-"),
        format!(" {code} "),
    ] {
        text = text.replace(&marker, " ");
    }
    fold(&text)
}

/// Where the reply starts in a diagnostic: its code standing alone (not inside an address, a
/// host name or a number), followed by a space, `-`, `:` or `,`.
fn reply_code_at(diagnostic: &str, code: u16) -> Option<usize> {
    let code = code.to_string();
    let bytes = diagnostic.as_bytes();
    diagnostic
        .match_indices(&code)
        .map(|(at, _)| at)
        .find(|&at| {
            let before = at.checked_sub(1).map(|b| bytes[b]);
            let after = bytes.get(at + 3).copied();
            !before.is_some_and(|b| b.is_ascii_alphanumeric() || b".-/=[@_".contains(&b))
                && matches!(after, None | Some(b' ' | b'-' | b':' | b','))
        })
}

/// The reply's text as the diagnostic tells it: from the reply code on (the bounce's own words
/// before it, such as `host … said:`, are no part of the reply), markers taken out (from the
/// text on the wire too: a reply may quote another, `… -> 550 Unknown user`, which Sisimai
/// shortens).
fn told_text(diagnostic: &str, code: u16, status: &str) -> String {
    let flat = fold(diagnostic);
    // Sisimai sometimes takes the codes out: then the reply starts after the words that
    // introduce it (Postfix's `host … said:`, Gmail's `The error that the other server returned
    // was:`).
    let lead_in = || {
        [" said: ", " returned was: "]
            .iter()
            .find_map(|words| flat.find(words).map(|at| at + words.len()))
    };
    let from = reply_code_at(&flat, code).or_else(lead_in).unwrap_or(0);
    without_markers(&flat[from..], code, status)
}

/// Checks one recipient: the reply on the wire against Sisimai's reading.
fn check(record: &SisimaiRecord, reply: &Reply, raw: &str) -> Result<(), String> {
    let code = record.code.expect("only records with a code are checked");
    if reply.code != code {
        return Err(format!(
            "code {} instead of {code}: {:?}",
            reply.code, reply.wire
        ));
    }
    let status = reply.status().unwrap_or("").to_owned();
    let sisimai_guess = record
        .status
        .split('.')
        .nth(2)
        .is_some_and(|d| d.len() == 3 && d.starts_with('9'));
    let expected_status = quoted_status(&record.diagnostic, code)
        .or_else(|| (!sisimai_guess).then(|| record.status.clone()));
    match expected_status {
        Some(expected) if expected != status => {
            return Err(format!(
                "status {status} instead of {expected}: {:?}",
                reply.wire
            ))
        }
        None if !status.starts_with(&format!("{}.", code / 100)) => {
            return Err(format!("status {status} is not of class {}", code / 100))
        }
        _ => {}
    }
    // Whitespace aside: compared with every blank taken out, anchored at the reply's start.
    let wire = squeeze(&without_markers(&reply.catalog_text(), code, &status));
    let told = squeeze(&told_text(&record.diagnostic, code, &status));
    if wire.is_empty() || !told.starts_with(&wire) {
        return Err(format!("text {wire:?} is not the bounce's {told:?}"));
    }
    let after = &told[wire.len()..];
    let bounce_words = ["(inreplyto", "Givingupon", "I'mnotgoingtotryagain"];
    if !after.is_empty()
        && !bounce_words.iter().any(|w| after.starts_with(w))
        && !in_another_paragraph(raw, &wire, after)
    {
        return Err(format!(
            "text {wire:?} leaves out {after:?} of the bounce's {told:?}"
        ));
    }
    Ok(())
}

/// `text` without any whitespace.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect()
}

/// Whether, in the bounce itself, `after` (what Sisimai's diagnostic adds after the reply) is
/// not what follows the reply in its paragraph: Sisimai's diagnostic sometimes runs on into the
/// bounce's next paragraphs, which are no part of the reply.
fn in_another_paragraph(raw: &str, wire: &str, after: &str) -> bool {
    let tail: String = wire
        .chars()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = after.chars().take(12).collect();
    let normalised = raw.replace("\r\n", "\n");
    !normalised.split("\n\n").any(|paragraph| {
        let paragraph = squeeze(paragraph);
        paragraph
            .find(&tail)
            .is_some_and(|at| paragraph[at + tail.len()..].starts_with(&head))
    })
}

/// The phase to drive to: Sisimai's command, else the import's own.
fn phase_for(record: &SisimaiRecord, imported: &str) -> String {
    match record.command.as_str() {
        "RCPT" => "rcpt".to_owned(),
        "MAIL" => "mail".to_owned(),
        "DATA" if imported == "data" => "data".to_owned(),
        "DATA" => "data_end".to_owned(),
        "HELO" | "EHLO" => "ehlo".to_owned(),
        _ => imported.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_reproduced_on_the_wire() {
    let files = fixtures();
    let Some(records) = sisimai(&files).await else {
        return;
    };
    // What is checked: the recipients Sisimai reads with a reply code, and their files.
    let readable: Vec<&SisimaiRecord> = records.iter().filter(|r| r.code.is_some()).collect();
    let checked: BTreeSet<&Path> = readable.iter().map(|r| r.file.as_path()).collect();
    let agents: BTreeSet<&str> = readable.iter().map(|r| r.agent.as_str()).collect();
    assert!(
        checked.len() >= 40,
        "at least 40 bounces checked: {} of the {} fixtures quote a reply Sisimai reads",
        checked.len(),
        files.len()
    );
    assert!(
        agents.len() >= 10,
        "bounces of at least ten MTAs or providers: {agents:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for file in &checked {
        let mine: Vec<&&SisimaiRecord> = readable.iter().filter(|r| r.file == *file).collect();
        let scenario = import(file, &["--at-smtp"]).await;
        let path = dir.path().join("imported.toml");
        std::fs::write(&path, &scenario).unwrap();
        let serve = [
            "serve",
            "--scenario",
            path.to_str().unwrap(),
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--no-tls",
        ];
        let server = start_binary_with(&[], &serve, &[("FAILMAIL_LOG", "warn")]);
        let raw = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        for record in mine {
            let phase = phase_for(record, &imported_phase(&scenario, &record.rcpt));
            let reply = reply_at(server.address("smtp"), &record.rcpt, &phase).await;
            if let Err(why) = check(record, &reply, &raw) {
                failures.push(format!(
                    "{} {} at {phase}: {why}",
                    file.display(),
                    record.rcpt
                ));
            }
        }
    }
    let reproduced = readable.len() - failures.len();
    eprintln!(
        "{} fixtures; checked: {} bounces whose {} recipients Sisimai reads with a reply code \
         ({} formats: {agents:?}); reproduced on the wire: {reproduced} of {} ({:.0}%)",
        files.len(),
        checked.len(),
        readable.len(),
        agents.len(),
        readable.len(),
        100.0 * reproduced as f64 / readable.len() as f64
    );
    assert!(
        failures.is_empty(),
        "not reproduced:\n{}",
        failures.join("\n")
    );
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let figure = format!(
        "`tests/import.rs` checks {} real bounces from public collections, from {} MTAs and \
         providers",
        checked.len(),
        agents.len()
    );
    assert!(
        fold(&readme).contains(&figure),
        "the README's import section should say: {figure}"
    );
}

#[test]
fn the_check_catches_a_wrong_reply() {
    let record = SisimaiRecord {
        file: PathBuf::new(),
        rcpt: "a@x".to_owned(),
        code: Some(550),
        status: "5.1.1".to_owned(),
        command: "RCPT".to_owned(),
        reason: "userunknown".to_owned(),
        agent: "Postfix".to_owned(),
        diagnostic: "host x said: 550 5.1.1 <a@x>: User unknown (in reply to RCPT TO command)"
            .to_owned(),
    };
    let reply = |wire: &[&str]| Reply {
        code: wire[0][..3].parse().unwrap(),
        lines: wire.iter().map(|l| l[4..].to_owned()).collect(),
        wire: wire.iter().map(|l| l.to_string()).collect(),
    };
    let raw = "host x said: 550 5.1.1 <a@x>: User unknown (in reply to RCPT TO command)\n";
    assert_eq!(
        check(&record, &reply(&["550 5.1.1 <a@x>: User unknown"]), raw),
        Ok(())
    );
    for wrong in [
        "551 5.1.1 <a@x>: User unknown",
        "550 5.1.2 <a@x>: User unknown",
        "550 5.1.1 <a@x>: User",
        "550 5.1.1 <a@x>: User unknown here",
        // Text lost at the start: the whole reply must be there.
        "550 5.1.1 User unknown",
        "550 5.1.1 unknown",
    ] {
        assert!(check(&record, &reply(&[wrong]), raw).is_err(), "{wrong}");
    }
}

/// What `failmail import` cannot read is named on stderr with its file and why, and the rest is
/// still imported; `--into` adds the rules to a scenario and keeps its comments; `--as-magic`
/// reads standard input (`-`) and names a magic address where the catalog has the very reply.
#[tokio::test]
async fn the_command_line_reads_what_it_can_and_says_what_it_cannot() {
    let good = Path::new(FIXTURES).join("sisimai/rhost-apple-01.eml");
    let no_reply = Path::new(FIXTURES).join("sisimai/qmail-07.eml");
    let files = [
        good.to_str().unwrap(),
        no_reply.to_str().unwrap(),
        "/nonexistent/bounce.eml",
    ];
    let mut args = vec!["import"];
    args.extend(files);
    let output = import_with(binary_command(&[], &args)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for said in [
        "qmail-07.eml: it quotes no SMTP failure reply",
        "/nonexistent/bounce.eml: cannot read it",
    ] {
        assert!(stderr.contains(said), "{stderr}");
    }
    let scenario = String::from_utf8_lossy(&output.stdout);
    for rule_part in [
        "rcpt = \"kijitora@example.jp\"",
        "text = [\"recipient no longer on server: kijitora@example.jp\"]",
    ] {
        assert!(scenario.contains(rule_part), "{scenario}");
    }

    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("mine.toml");
    let mine = "# my own scenario\n[server]\nhostname = \"mx.mine.test\" # stays\n";
    std::fs::write(&into, mine).unwrap();
    let args = [
        "import",
        good.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ];
    assert!(import_with(binary_command(&[], &args))
        .await
        .status
        .success());
    let updated = std::fs::read_to_string(&into).unwrap();
    assert!(updated.starts_with(mine), "{updated}");
    assert!(
        updated.contains("[[rule]]") && updated.contains("5.1.6"),
        "{updated}"
    );

    let mut command = binary_command(&[], &["import", "--as-magic", "-"]);
    let transcript = "<a@gmail.com>: host gmail-smtp-in.l.google.com said:\n550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1 unnecessary spaces. Learn more at\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser abc - gsmtp\n";
    let input = dir.path().join("transcript.txt");
    std::fs::write(&input, transcript).unwrap();
    command.stdin(std::fs::File::open(&input).unwrap());
    let output = import_with(command).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "-: a@gmail.com: user_unknown+gmail@gmail.com (the same code, status and text)"
    );

    let output = import_with(binary_command(&[], &["import", no_reply.to_str().unwrap()])).await;
    assert!(!output.status.success(), "nothing imported is a failure");
}

/// Runs a `failmail import` command (bounded), whatever its exit status.
async fn import_with(command: Command) -> std::process::Output {
    run_tool(command, "failmail import", Duration::from_secs(30)).await
}
