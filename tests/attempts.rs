//! The retry report against real mailers: Python smtplib senders with good and bad retry logic
//! (tests/retry_client.py) meet greylisting, a lost reply, the recipient limit and a 421, and
//! the report, read in-process, over HTTP and with `failmail report`, judges what they did. All
//! times follow the server's clock: the tests move it instead of waiting.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::binary::run_tool;
use common::{repo_root, tools};
use failmail::journal::attempts::{Judgement, Report};
use failmail::journal::EventKind;
use failmail::testing::TestServer;

/// How long one external program may take.
const TOOL_LIMIT: Duration = Duration::from_secs(60);

const MINUTE: Duration = Duration::from_secs(60);

/// Runs tests/retry_client.py against `server`; returns its output lines.
async fn mailer(
    server: &TestServer,
    mode: &str,
    message_id: &str,
    to: &[&str],
    n: u32,
) -> Option<Vec<String>> {
    let python = tools::need(&tools::PYTHON3)?;
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("tests/retry_client.py"))
        .arg(mode)
        .arg(server.smtp_addr().port().to_string())
        .arg(message_id)
        .arg(to.join(","))
        .arg(n.to_string());
    let output = run_tool(command, "tests/retry_client.py", TOOL_LIMIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "retry_client.py {mode} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout.lines().map(str::to_owned).collect())
}

/// `failmail report --http ADDR` with `args`, against the in-process server.
async fn failmail_report(server: &TestServer, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_failmail"));
    command
        .args(["report", "--http", &server.http_addr().to_string()])
        .args(args);
    run_tool(command, "failmail report", TOOL_LIMIT).await
}

/// The verdict `name` on `rcpt`, which must apply.
fn verdict(report: &Report, rcpt: &str, name: &str) -> failmail::journal::attempts::Verdict {
    let (_, recipient) = report
        .recipient(rcpt)
        .unwrap_or_else(|| panic!("no {rcpt} in\n{}", report.table()));
    recipient
        .verdicts
        .get(name)
        .unwrap_or_else(|| panic!("{name} does not apply to {rcpt}:\n{}", report.table()))
        .clone()
}

const GREYLISTED: &str =
    "[greylisting]\nrcpt = \"grey@*\"\ndelay = \"5m\"\nretry_window = \"1h\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_never_retries_is_pending_until_the_window_passes_then_fails() {
    let server = TestServer::start(GREYLISTED).await;
    let Some(lines) = mailer(
        &server,
        "once",
        "<naive@client.example>",
        &["grey@x.example"],
        1,
    )
    .await
    else {
        return;
    };
    assert!(
        lines[0].starts_with("attempt 1: refused grey@x.example 451 4.7.1"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 1, "{lines:?}");

    let report = server.report();
    let retried = verdict(&report, "grey@x.example", "retried_after_temporary");
    assert_eq!(retried.result, Judgement::Pending, "{}", report.table());
    assert!(report.ok);
    let output = failmail_report(&server, &[]).await;
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{table}");
    assert!(table.contains("pending retried_after_temporary"), "{table}");
    assert!(table.contains("still_pending"), "{table}");

    // Past the greylist's retry window, on the clock: the missing retry is a failure.
    server.advance_clock(61 * MINUTE).await;
    let report = server.report();
    let retried = verdict(&report, "grey@x.example", "retried_after_temporary");
    assert_eq!(retried.result, Judgement::Fail);
    assert!(
        retried
            .detail
            .contains("no retry within 1h after 451 4.7.1"),
        "{}",
        retried.detail
    );
    let output = failmail_report(&server, &[]).await;
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{table}");
    assert!(table.contains("FAIL retried_after_temporary"), "{table}");
    assert!(table.contains("gave_up"), "{table}");
    let output = failmail_report(&server, &["--format", "json"]).await;
    assert_eq!(output.status.code(), Some(1));
    let json: Report =
        serde_json::from_slice(&output.stdout).expect("failmail report --format json");
    assert_eq!(json.messages[0].message_id, None, "never reached DATA");
    assert!(!json.ok);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_retries_at_once_fails_the_greylist_delay_and_the_backoff() {
    let server = TestServer::start(GREYLISTED).await;
    let Some(lines) = mailer(
        &server,
        "loop",
        "<eager@client.example>",
        &["grey@x.example"],
        5,
    )
    .await
    else {
        return;
    };
    assert_eq!(lines.len(), 5, "{lines:?}");
    let report = server.report();
    let greylist = verdict(&report, "grey@x.example", "respected_greylist_delay");
    assert_eq!(greylist.result, Judgement::Fail, "{}", report.table());
    assert!(
        greylist.detail.contains("before the greylist's 5m delay"),
        "{}",
        greylist.detail
    );
    let backoff = verdict(&report, "grey@x.example", "backoff");
    assert_eq!(backoff.result, Judgement::Fail);
    assert_eq!(backoff.delays_ms.as_ref().map(Vec::len), Some(4));
    assert!(backoff.shortest_ms < Some(60_000));
    // Each attempt is its own session, and all of them are one message.
    let (_, recipient) = report.recipient("grey@x.example").unwrap();
    assert_eq!(recipient.attempts_total, 5);
    let sessions: std::collections::BTreeSet<u64> =
        recipient.attempts.iter().map(|a| a.facts.session).collect();
    assert_eq!(sessions.len(), 5);
    assert!(!report.ok);
    // The assertion names what went wrong and quotes the attempts.
    let failed = std::panic::catch_unwind(|| {
        report.assert_verdict("grey@x.example", "backoff", Judgement::Pass);
    })
    .expect_err("backoff failed");
    let text = failed.downcast_ref::<String>().unwrap();
    assert!(text.contains("backoff on grey@x.example is Fail"), "{text}");
    assert!(
        text.contains("rcpt 451 4.7.1 greylisted: temporary"),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_follow_the_clock_so_a_retry_five_minutes_later_takes_no_wait() {
    let server = TestServer::start(GREYLISTED).await;
    let Some(_) = mailer(
        &server,
        "once",
        "<patient@client.example>",
        &["grey@x.example"],
        1,
    )
    .await
    else {
        return;
    };
    server.advance_clock(5 * MINUTE).await;
    let Some(lines) = mailer(
        &server,
        "once",
        "<patient@client.example>",
        &["grey@x.example"],
        1,
    )
    .await
    else {
        return;
    };
    assert_eq!(lines, ["attempt 1: accepted 1"]);
    let report = server.report();
    report
        .assert_ok()
        .assert_retried("grey@x.example")
        .assert_delivered("grey@x.example")
        .assert_no_duplicates()
        .assert_verdict(
            "grey@x.example",
            "respected_greylist_delay",
            Judgement::Pass,
        )
        .assert_verdict("grey@x.example", "backoff", Judgement::Pass);
    let (message, recipient) = report.recipient("grey@x.example").unwrap();
    assert_eq!(
        message.message_id.as_deref(),
        Some("<patient@client.example>")
    );
    let delay = recipient.delays_ms[0];
    assert!(
        (300_000..330_000).contains(&delay),
        "{delay} ms: five minutes on the clock"
    );
    assert_eq!(recipient.status, "delivered");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_makes_the_sender_retry_and_the_report_shows_the_duplicate() {
    let scenario = "[[rule]]\nname = \"lose once\"\nrcpt = \"dup@*\"\nsequence = [\"lose_reply\", \"accept\"]\n";
    let server = TestServer::start(scenario).await;
    let Some(lines) = mailer(
        &server,
        "lost-reply",
        "<twice@client.example>",
        &["dup@x.example"],
        1,
    )
    .await
    else {
        return;
    };
    assert_eq!(
        lines,
        [
            "attempt 1: disconnected without a reply",
            "attempt 2: accepted 1"
        ]
    );
    let messages = server.messages();
    assert_eq!(
        messages.len(),
        2,
        "stored before the connection closed, and again"
    );
    assert_eq!(messages[0].message.data, messages[1].message.data);
    let silent = server
        .events()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Silent {
                    action: "lose_reply",
                    ..
                }
            )
        })
        .count();
    assert_eq!(silent, 1);

    let report = server.report();
    assert_eq!(report.messages.len(), 1, "one message, by its Message-ID");
    let (message, recipient) = report.recipient("dup@x.example").unwrap();
    assert_eq!(
        message.message_id.as_deref(),
        Some("<twice@client.example>")
    );
    assert_eq!(recipient.duplicates, 1);
    let results: Vec<&str> = recipient
        .attempts
        .iter()
        .map(|a| a.ending.result.as_str())
        .collect();
    assert_eq!(results, ["reply_lost", "accepted"]);
    assert_eq!(
        recipient.attempts[0].ending.rule_name.as_deref(),
        Some("lose once")
    );
    let duplicates = verdict(&report, "dup@x.example", "duplicates");
    assert_eq!(
        (duplicates.result, duplicates.count),
        (Judgement::Pass, Some(1))
    );
    assert!(
        duplicates.detail.contains("after a lost 250"),
        "{}",
        duplicates.detail
    );
    assert_eq!(
        verdict(&report, "dup@x.example", "retried_after_temporary").result,
        Judgement::Pass
    );
    let failed = std::panic::catch_unwind(|| {
        report.assert_no_duplicates();
    })
    .expect_err("there is a duplicate");
    let text = failed.downcast_ref::<String>().unwrap();
    assert!(
        text.contains("dup@x.example was accepted 1 time(s) more than once"),
        "{text}"
    );

    // The magic address loses the reply every time.
    let Some(lines) = mailer(
        &server,
        "once",
        "<magic@client.example>",
        &["lose_reply@x.example"],
        1,
    )
    .await
    else {
        return;
    };
    assert_eq!(lines, ["attempt 1: disconnected without a reply"]);
    assert_eq!(server.messages().len(), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_refused_with_452_4_5_3_come_back_in_another_transaction() {
    let server = TestServer::start("[server]\nmax_recipients = 2\n").await;
    let to = ["a@x.example", "b@x.example", "c@x.example"];
    let Some(lines) = mailer(&server, "split", "<split@client.example>", &to, 1).await else {
        return;
    };
    assert_eq!(
        lines,
        [
            "attempt 1: refused c@x.example 452 4.5.3 Error: too many recipients",
            "attempt 1: accepted 2",
            "attempt 2: accepted 1",
        ]
    );
    let report = server.report();
    let resent = verdict(&report, "c@x.example", "resent_remaining_after_452");
    assert_eq!(resent.result, Judgement::Pass, "{}", report.table());
    assert_eq!(resent.evidence.len(), 2);
    assert!(report
        .recipient("c@x.example")
        .unwrap()
        .1
        .verdicts
        .backoff
        .is_none());
    report.assert_ok().assert_no_duplicates();
    for rcpt in to {
        report.assert_delivered(rcpt);
    }
    assert_eq!(report.messages.len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_then_a_new_connection_is_a_reconnection() {
    let scenario =
        "[[rule]]\nrcpt = \"r421@*\"\nsequence = [\"service_unavailable\", \"accept\"]\n";
    let server = TestServer::start(scenario).await;
    let Some(lines) = mailer(
        &server,
        "reconnect",
        "<again@client.example>",
        &["r421@x.example"],
        1,
    )
    .await
    else {
        return;
    };
    assert!(
        lines[0].starts_with("attempt 1: refused r421@x.example 421 4.3.2"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "attempt 2: accepted 1");
    let report = server.report();
    let reconnected = verdict(&report, "r421@x.example", "reconnected_after_421");
    assert_eq!(reconnected.result, Judgement::Pass, "{}", report.table());
    let (_, recipient) = report.recipient("r421@x.example").unwrap();
    assert_ne!(
        recipient.attempts[0].facts.session,
        recipient.attempts[1].facts.session
    );
    report.assert_delivered("r421@x.example");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_attempts_the_report_is_refused_with_exit_status_2() {
    let server = TestServer::start_with("", |config| config.attempts.enabled = false).await;
    let output = failmail_report(&server, &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("409") && stderr.contains("follows no attempts"),
        "{stderr}"
    );
    server.shutdown().await;
}
