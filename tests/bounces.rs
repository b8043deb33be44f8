//! Bounces that arrive later: independent bounce parsers (Sisimai, flufl.bounce) recognise every
//! notification failmail makes — each flavor's failed, expired, delayed and delivered DSN, the
//! complaint and the auto-reply — as the committed table `tests/bounces/expected.tsv` says;
//! RET, ENVID, ORCPT and NOTIFY change the DSN as RFC 3461/3464 say; a five-day give-up comes
//! after one clock advance, its 4-hour delay notice first; nothing answers the null sender.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use common::binary::{http_get, run_tool};
use common::bounces::{advance, delivered_rules, dsn_parts, raw, send, sent, serve, DAY, SENDER};
use common::Conn;
use failmail::bounces::view::BounceView;
use failmail::scenario::flavor::Flavor;
use failmail::RunningApp;

/// Every flavor the library knows: a new one is covered, and must be in `expected.tsv`.
const FLAVORS: [Flavor; Flavor::ALL.len()] = Flavor::ALL;

/// Delivered-later rules, one per flavor, and a permanent mailbox-full bounce.
fn scenario() -> String {
    delivered_rules()
        + "[[rule]]\nrcpt = \"full@*\"\nbounce = { reply = { code = 552, status = \"5.2.2\", text = \"Mailbox full\" }, after = \"10m\" }\n"
}

/// failmail on a clock that moves only when told, with the HTTP API, serving `scenario()`.
async fn server() -> RunningApp {
    serve(&scenario(), |_| {}).await
}

/// The case a notification shows, as named in `expected.tsv`: `<flavor>-<kind>-<magic name>`,
/// with `-<n>rcpts` when it lists several recipients.
fn case_name(view: &BounceView) -> String {
    let rcpt = &view.recipients[0].recipient;
    let flavor = FLAVORS
        .into_iter()
        .find(|f| rcpt.contains(&format!("+{f}+")) || rcpt.starts_with(&format!("happy-{f}@")));
    let name = match (flavor, view.kind) {
        (Some(flavor), kind) => format!(
            "{flavor}-{kind}-{}",
            rcpt.split(['+', '-', '@']).next().unwrap_or("")
        ),
        (None, kind) => format!("{kind}-{}", rcpt.split(['+', '@']).next().unwrap_or("")),
    };
    match view.recipients.len() {
        1 => name,
        n => format!("{name}-{n}rcpts"),
    }
}

/// Sends one message per case: for every flavor a permanent failure, a 4xx retried until it
/// expires (with its delay notice), and a success DSN; then one DSN listing two recipients, the
/// other catalog reasons, the complaint and the auto-reply. Returns how many notifications come.
async fn send_every_case(app: &RunningApp) -> usize {
    let mut expected = 0;
    for flavor in FLAVORS {
        for rcpt in [
            format!("<user_unknown+{flavor}+async@failed.example>"),
            format!("<mailbox_full+{flavor}+async@retried.example>"),
            format!("<happy-{flavor}@delivered.example> NOTIFY=SUCCESS"),
        ] {
            send(app, SENDER, "", &[&rcpt]).await;
        }
        expected += 4;
    }
    send(
        app,
        SENDER,
        "",
        &[
            "<user_unknown+exim+async@one.example>",
            "<user_unknown+exim+async@two.example>",
        ],
    )
    .await;
    expected += 1;
    for rcpt in [
        "<domain_not_found+gmail+async@nowhere.example>",
        "<full@full.example>",
        "<complaint+async@fbl.example>",
        "<ooto+async@away.example>",
    ] {
        send(app, SENDER, "", &[rcpt]).await;
        expected += 1;
    }
    expected
}

/// What flufl.bounce found in one notification.
struct FluflReading {
    temporary: BTreeSet<String>,
    permanent: BTreeSet<String>,
    scanned: BTreeSet<String>,
}

/// `read_flufl.py`'s lines, by case.
fn flufl_readings(output: &str) -> BTreeMap<String, FluflReading> {
    let set = |field: &str| -> BTreeSet<String> {
        field
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    };
    output
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "read_flufl.py: {line}");
            let reading = FluflReading {
                temporary: set(fields[1]),
                permanent: set(fields[2]),
                scanned: set(fields[3]),
            };
            (fields[0].trim_end_matches(".eml").to_owned(), reading)
        })
        .collect()
}

/// `read_sisimai.pl`'s lines, by case and recipient: reason, status, reply code, action,
/// feedback type.
fn sisimai_readings(output: &str) -> BTreeMap<(String, String), String> {
    output
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let case = fields[0].trim_end_matches(".eml").to_owned();
            let recipient = fields.get(1).copied().unwrap_or("-").to_owned();
            ((case, recipient), fields.get(2..).unwrap_or(&[]).join("\t"))
        })
        .collect()
}

/// Every notification failmail makes, read by Sisimai and flufl.bounce, against the table; and
/// flufl.bounce's `scan_message` finds exactly the failed recipients of every failure DSN.
#[tokio::test]
async fn independent_parsers_recognise_every_notification() {
    let Some(_) = common::tools::need_all([&common::tools::SISIMAI, &common::tools::FLUFL_BOUNCE])
    else {
        return;
    };
    let app = server().await;
    let expected = send_every_case(&app).await;
    advance(&app, 6 * DAY).await;
    let views = sent(&app, expected).await;
    assert_eq!(views.len(), expected, "{views:#?}");

    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for view in &views {
        assert_eq!(
            view.to, SENDER,
            "a notification goes to the envelope sender exactly"
        );
        let path = dir.path().join(format!("{}.eml", case_name(view)));
        assert!(!path.exists(), "two notifications named {path:?}");
        std::fs::write(&path, raw(&app, view.id)).unwrap();
        paths.push(path);
    }
    let sisimai = parse_with("perl", "tests/bounces/read_sisimai.pl", &paths).await;
    let flufl = parse_with("/usr/bin/python3", "tests/bounces/read_flufl.py", &paths).await;
    let mut sisimai = sisimai_readings(&sisimai);
    let flufl = flufl_readings(&flufl);

    let mut table = BTreeSet::new();
    for view in &views {
        let case = case_name(view);
        let reading = &flufl[&case];
        let recipients: BTreeSet<String> = view
            .recipients
            .iter()
            .map(|r| r.recipient.clone())
            .collect();
        // scan_message finds the permanently failed recipients: every recipient of a failure
        // DSN (failed, or expired after its retries), by its address, and nothing else.
        let failure = matches!(view.kind, "failed" | "expired");
        let scanned = if failure {
            recipients.clone()
        } else {
            BTreeSet::new()
        };
        assert_eq!(
            reading.scanned, scanned,
            "{case}: flufl.bounce scan_message"
        );
        let named: BTreeSet<&String> = reading.temporary.union(&reading.permanent).collect();
        assert!(
            named.iter().all(|a| recipients.contains(*a)),
            "{case}: flufl.bounce names {named:?}, not among {recipients:?}"
        );
        for recipient in &recipients {
            let class = match (
                reading.temporary.contains(recipient),
                reading.permanent.contains(recipient),
            ) {
                (false, false) => "none",
                (true, false) => "temporary",
                (false, true) => "permanent",
                (true, true) => "both",
            };
            let found = sisimai
                .remove(&(case.clone(), recipient.clone()))
                .unwrap_or_else(|| "(not found by Sisimai)".to_owned());
            table.insert(format!("{case}\t{recipient}\t{found}\t{class}"));
        }
    }
    // Whatever else Sisimai reported (a recipient failmail did not list, or `-` for nothing).
    for ((case, recipient), found) in sisimai {
        table.insert(format!("{case}\t{recipient}\t{found}\t(not listed)"));
    }
    let table: String = table.into_iter().map(|l| l + "\n").collect();
    let committed =
        std::fs::read_to_string(common::repo_root().join("tests/bounces/expected.tsv")).unwrap();
    let committed: String = committed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        table, committed,
        "what the parsers found (left) differs from tests/bounces/expected.tsv"
    );
}

async fn parse_with(program: &str, script: &str, paths: &[std::path::PathBuf]) -> String {
    let mut command = Command::new(program);
    command.arg(common::repo_root().join(script)).args(paths);
    let output = run_tool(command, script, Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// RET, ENVID, ORCPT and NOTIFY each change the DSN as RFC 3461 and RFC 3464 say.
#[tokio::test]
async fn dsn_parameters_change_the_notification() {
    let app = server().await;
    // RET=FULL returns the message, ENVID is quoted decoded, ORCPT gives Original-Recipient.
    send(
        &app,
        SENDER,
        " RET=FULL ENVID=QQ+2B1",
        &["<user_unknown+async@a.example> ORCPT=rfc822;orig+2Bx@example.org"],
    )
    .await;
    // RET=HDRS returns the headers only, no ENVID means no Original-Envelope-Id.
    send(
        &app,
        SENDER,
        " RET=HDRS",
        &["<user_unknown+async@b.example>"],
    )
    .await;
    // NOTIFY=NEVER silences one recipient of a message; the other still gets its DSN.
    send(
        &app,
        SENDER,
        "",
        &[
            "<user_unknown+async@c.example> NOTIFY=NEVER",
            "<user_unknown+async@d.example>",
        ],
    )
    .await;
    // NOTIFY=DELAY asks only for the delay notice, NOTIFY=FAILURE only for the failure.
    send(
        &app,
        SENDER,
        "",
        &["<mailbox_full+async@e.example> NOTIFY=DELAY"],
    )
    .await;
    send(
        &app,
        SENDER,
        "",
        &["<mailbox_full+async@f.example> NOTIFY=FAILURE"],
    )
    .await;
    // A success DSN only when asked for.
    send(
        &app,
        SENDER,
        "",
        &[
            "<happy-generic@g.example> NOTIFY=SUCCESS,FAILURE",
            "<happy-generic@h.example>",
        ],
    )
    .await;
    advance(&app, 6 * DAY).await;
    let views = sent(&app, 6).await;
    let by_rcpt = |domain: &str| -> Vec<&BounceView> {
        views
            .iter()
            .filter(|v| v.recipients.iter().any(|r| r.recipient.ends_with(domain)))
            .collect()
    };

    let a = by_rcpt("@a.example");
    let parts = dsn_parts(&raw(&app, a[0].id));
    let (fields, kind, returned) = (parts.fields, parts.returned_type, parts.returned);
    assert!(
        fields.contains("Original-Envelope-Id: QQ+1\r\n"),
        "{fields}"
    );
    assert!(
        fields.contains("Original-Recipient: rfc822; orig+x@example.org\r\n"),
        "{fields}"
    );
    assert!(
        fields.contains("Final-Recipient: rfc822; user_unknown+async@a.example\r\n"),
        "{fields}"
    );
    assert_eq!(kind, "message/rfc822");
    assert!(returned.contains("The body line."), "{returned}");

    let b = by_rcpt("@b.example");
    let parts = dsn_parts(&raw(&app, b[0].id));
    let (fields, kind, returned) = (parts.fields, parts.returned_type, parts.returned);
    assert!(!fields.contains("Original-Envelope-Id"), "{fields}");
    assert!(!fields.contains("Original-Recipient"), "{fields}");
    assert_eq!(kind, "text/rfc822-headers");
    assert!(
        returned.contains("Subject: Invoice 42") && !returned.contains("The body line."),
        "{returned}"
    );

    assert!(by_rcpt("@c.example").is_empty(), "NOTIFY=NEVER: {views:#?}");
    let d = by_rcpt("@d.example");
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].recipients.len(),
        1,
        "only the recipient that asked: {:?}",
        d[0]
    );

    let kinds = |domain: &str| -> Vec<&str> { by_rcpt(domain).iter().map(|v| v.kind).collect() };
    assert_eq!(kinds("@e.example"), ["delayed"]);
    assert_eq!(kinds("@f.example"), ["expired"]);
    assert_eq!(kinds("@g.example"), ["delivered"]);
    assert!(kinds("@h.example").is_empty());
    let fields = dsn_parts(&raw(&app, by_rcpt("@g.example")[0].id)).fields;
    assert!(
        fields.contains("Action: delivered\r\n") && fields.contains("Status: 2.0.0\r\n"),
        "{fields}"
    );
    let fields = dsn_parts(&raw(&app, by_rcpt("@e.example")[0].id)).fields;
    assert!(
        fields.contains("Action: delayed\r\n") && fields.contains("Will-Retry-Until: "),
        "{fields}"
    );
}

/// Five days of retries pass in one `POST /api/clock/advance`: the 4-hour delay notice comes
/// first, then the give-up, in order, at once; the API lists both with their due times.
#[tokio::test]
async fn a_five_day_give_up_after_one_clock_advance() {
    let app = server().await;
    send(
        &app,
        SENDER,
        "",
        &["<mailbox_full+postfix+async@slow.example>"],
    )
    .await;
    let http = app.addresses().http.unwrap();
    let (_, listed) = http_get(http, "/api/bounces").await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["pending"], 2, "{listed}");
    let start = app.clock().now_ms();
    assert_eq!(listed["bounces"][0]["kind"], "delayed");
    assert_eq!(listed["bounces"][0]["due_at_ms"], start + 4 * 3_600_000);
    assert_eq!(listed["bounces"][1]["kind"], "expired");
    assert_eq!(listed["bounces"][1]["due_at_ms"], start + 5 * 86_400_000);
    advance(&app, 5 * DAY).await;
    let views = sent(&app, 2).await;
    let kinds: Vec<&str> = views.iter().map(|v| v.kind).collect();
    assert_eq!(kinds, ["delayed", "expired"]);
    assert!(views[0].message_id < views[1].message_id, "stored in order");
    let fields = dsn_parts(&raw(&app, views[1].id)).fields;
    assert!(
        fields.contains("Action: failed\r\nStatus: 4.4.7\r\n"),
        "{fields}"
    );
    let (status, raw_dsn) = http_get(http, &format!("/api/bounces/{}/raw", views[1].id)).await;
    assert!(
        status.contains("200") && raw_dsn.contains("Undelivered Mail Returned to Sender"),
        "{raw_dsn}"
    );
    // Stored as a message to the envelope sender, marked with its bounce id.
    let stored = app.messages().list();
    let dsn = stored
        .iter()
        .find(|m| m.bounce == Some(views[1].id))
        .expect("stored");
    assert_eq!(dsn.message.recipients, [SENDER]);
    assert_eq!(
        dsn.message.mail_from, "",
        "a DSN is sent from the null sender"
    );
}

/// No notification ever answers the null sender (RFC 5321 §4.5.5, RFC 3834 §2), not even
/// after days.
#[tokio::test]
async fn nothing_answers_the_null_sender() {
    let app = server().await;
    send(
        &app,
        "",
        "",
        &[
            "<user_unknown+async@x.example>",
            "<ooto+async@x.example>",
            "<complaint+async@x.example>",
        ],
    )
    .await;
    send(&app, SENDER, "", &["<user_unknown+async@y.example>"]).await;
    assert_eq!(
        app.bounces().list().0.len(),
        1,
        "only the message with a sender has one pending"
    );
    advance(&app, 6 * DAY).await;
    let views = sent(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.bounces().list().1.len(), 1, "{views:#?}");
    assert_eq!(views[0].to, SENDER);
}

/// Pending bounces survive a scenario reload: they belong to the messages, not the scenario.
#[tokio::test]
async fn pending_bounces_survive_a_reload() {
    let app = server().await;
    send(&app, SENDER, "", &["<user_unknown+async@x.example>"]).await;
    app.scenario().unwrap().replace("<api>", "").unwrap();
    advance(&app, Duration::from_secs(120)).await;
    assert_eq!(sent(&app, 1).await[0].kind, "failed");
}

/// A scenario's bounce keys are checked with file:line:column.
#[test]
fn bad_bounce_keys_are_refused_with_their_place() {
    let cases = [
        ("[[rule]]\nrcpt = \"x@*\"\nbounce = { reply = \"no_such_name\" }\n", 3, "unknown catalog name"),
        ("[[rule]]\nrcpt = \"x@*\"\nbounce = { reply = \"user_unknown\", give_up = \"5d\" }\n", 3, "give_up is for a retried"),
        ("[[rule]]\nrcpt = \"x@*\"\nbounce = { reply = \"mailbox_full\", delay_notice = \"6d\" }\n", 3, "delay_notice must come before"),
        ("[[rule]]\nrcpt = \"x@*\"\nreply = \"user_unknown\"\nbounce = { reply = \"user_unknown\" }\n", 3, "reply does not go with"),
        ("[[rule]]\nrcpt = \"x@*\"\nat = \"data\"\ndeliver = { after = \"1m\" }\n", 3, "act at rcpt"),
        ("[[rule]]\nrcpt = \"x@*\"\ndeliver = { after = \"soon\" }\n", 3, "bad duration"),
        ("[[rule]]\nrcpt = \"x@*\"\ndeliver = { later = \"1m\" }\n", 3, "unknown field"),
    ];
    for (text, line, message) in cases {
        let error = failmail::scenario::compile::Scenario::parse("s.toml", text).expect_err(text);
        assert_eq!(error.line, line, "{error}");
        assert!(error.to_string().contains(message), "{error}");
        assert!(error.column > 1, "{error}");
    }
}

/// The README's example scenario keys load.
#[test]
fn example_rules_load() {
    let scenario = failmail::scenario::compile::Scenario::parse(
        "s.toml",
        "[[rule]]\nrcpt = \"*@gone.example\"\nbounce = { reply = \"user_unknown\", after = \"10m\" }\n\n[[rule]]\nrcpt = \"slow@*\"\nbounce = { reply = \"mailbox_full\", after = \"30m\", delay_notice = \"4h\", give_up = \"5d\" }\n\n[[rule]]\nrcpt = \"happy@*\"\ndeliver = { after = \"1m\" }\n",
    )
    .unwrap();
    assert_eq!(scenario.rules.len(), 3);
}

/// Pending bounces are bounded: past `--max-pending-bounces`, a message that would add one is
/// refused with 451 4.3.0 (and counted), never accepted with a bounce that would not come; a
/// message without a later fate is still accepted.
#[tokio::test]
async fn a_full_schedule_refuses_with_451() {
    let config = common::scenario_with(|c| c.bounces.max_pending = 1);
    let app = common::start_toml(config, "bounces.toml", "").await;
    send(&app, SENDER, "", &["<user_unknown+async@x.example>"]).await;
    let mut conn = Conn::ready(app.addresses().smtp).await;
    conn.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;
    conn.cmd_code("RCPT TO:<user_unknown+async@y.example>", 250)
        .await;
    let refused = conn.data(b"Subject: s\r\n\r\nbody\r\n.\r\n").await;
    refused.assert(451, "4.3.0");
    conn.deliver(
        SENDER,
        "someone@y.example",
        b"Subject: s\r\n\r\nbody\r\n.\r\n",
    )
    .await
    .assert_code(250);
    conn.quit().await;
    assert_eq!(app.bounces().list().0.len(), 1);
    assert!(app
        .bounces()
        .metrics_text()
        .contains("failmail_bounces_refused_total 1\n"));
    let refusals = app.journal().events().unwrap().list(None, 0, 1000);
    assert!(refusals.iter().any(|e| matches!(
        e.kind,
        failmail::journal::EventKind::BounceRefused { pending: 1 }
    )));
}
