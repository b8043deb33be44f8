//! Where later bounces go: `--bounce-to` delivers each one by SMTP to the listener the user
//! named (here a second failmail), from `<>` to the original envelope sender, and retries when
//! that listener first answers 4xx; an endpoint that is down is retried on the clock, logged
//! clearly, and given up after the configured attempts; a `+async` magic address sent with
//! swaks gets 250 now and its DSN once the clock moves; under strace, the only connection
//! failmail ever opens is to the `--bounce-to` address. Each DSN is also stored as a message to
//! the envelope sender: in `--maildir`, and in `TestServer` (`bounces()`, `wait_for_bounce`).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::binary::{http_get, http_post, run_tool, start_binary_with};
use common::bounces::{advance, dsn_parts, raw, send, sent, serve, SENDER, START_SECS};
use common::Conn;
use failmail::bounces::ForwardConfig;
use failmail::clock::ManualClock;
use failmail::journal::EventKind;
use failmail::testing::TestServer;
use failmail::RunningApp;

const WAIT: Duration = Duration::from_secs(20);

/// A second failmail that receives the bounces: `scenario` decides what it answers.
async fn receiver(scenario: &str) -> RunningApp {
    common::start_toml(common::scenario_with(|_| {}), "receiver.toml", scenario).await
}

/// Waits until `app` keeps `n` messages.
async fn messages(app: &RunningApp, n: usize) -> Vec<Arc<failmail::journal::StoredMessage>> {
    common::eventually(&format!("{n} messages kept"), || {
        let kept = app.messages().list();
        (kept.len() >= n).then_some(kept)
    })
    .await
}

/// The `--bounce-to` attempts recorded so far: (attempt, delivered).
fn forward_attempts(app: &RunningApp) -> Vec<(u32, bool)> {
    app.journal()
        .events()
        .unwrap()
        .list(None, 0, 1000)
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BounceForwarded { attempt, ok, .. } => Some((*attempt, *ok)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn bounce_to_delivers_and_retries_after_a_4xx() {
    // The application's bounce endpoint greylists the first attempt, then accepts.
    let endpoint =
        receiver("[[rule]]\nrcpt = \"*@app.test\"\nsequence = [\"greylisted\", \"accept\"]\n")
            .await;
    let port = endpoint.addresses().smtp.port();
    let config = common::scenario_with(|c| {
        c.clock = Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
        let mut forward = ForwardConfig::parse(&format!("smtp://127.0.0.1:{port}")).unwrap();
        forward.first_retry = Duration::from_millis(50);
        c.bounces.forward = Some(forward);
    });
    let app = common::start_toml(config, "sender.toml", "").await;
    let mut conn = Conn::ready(app.addresses().smtp).await;
    let reply = conn
        .deliver(
            SENDER,
            "user_unknown+async@outside.example",
            b"Subject: hi\r\n\r\nhello\r\n.\r\n",
        )
        .await;
    reply.assert_code(250);
    conn.quit().await;
    assert!(
        endpoint.messages().list().is_empty(),
        "nothing before the clock moves"
    );
    app.clock()
        .advance(Duration::from_secs(61))
        .await
        .expect("the clock moves");

    // The first attempt meets the greylisting 451; the retry waits on the clock.
    let attempts = || forward_attempts(&app);
    common::eventually("the first attempt", || {
        (attempts().len() == 1).then_some(())
    })
    .await;
    assert_eq!(attempts(), [(1, false)]);
    app.clock()
        .advance(Duration::from_secs(1))
        .await
        .expect("the clock moves");

    let received = messages(&endpoint, 1).await;
    let dsn = &received[0].message;
    assert_eq!(dsn.mail_from, "", "a DSN comes from the null sender");
    assert_eq!(
        dsn.recipients,
        [SENDER],
        "to the envelope sender, byte for byte"
    );
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(
        text.contains("report-type=\"delivery-status\"")
            && text.contains("Final-Recipient: rfc822; user_unknown+async@outside.example"),
        "{text}"
    );

    // The first attempt met the greylisting 451, the second was accepted.
    let attempts = common::eventually("two attempts recorded", || {
        let attempts = attempts();
        (attempts.len() >= 2).then_some(attempts)
    })
    .await;
    assert_eq!(attempts, [(1, false), (2, true)]);
    let endpoint_saw_451 = endpoint
        .journal()
        .events()
        .unwrap()
        .list(None, 0, 1000)
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Reply { code: 451, .. }));
    assert!(endpoint_saw_451, "the endpoint answered 4xx first");
    let views = app.bounces().list().1;
    assert_eq!(
        failmail::bounces::view::BounceView::sent(&views[0]).forwarded,
        Some("delivered")
    );
}

/// swaks sends to a `+async` address: 250 now, the DSN once the clock moves, delivered to
/// `--bounce-to` — and strace sees failmail connect to that address and nowhere else, though
/// the recipients are at outside domains.
#[tokio::test]
async fn an_async_address_sent_with_swaks_bounces_later_and_only_to_bounce_to() {
    let Some([swaks, strace]) =
        common::tools::need_all([&common::tools::SWAKS, &common::tools::STRACE])
    else {
        return;
    };
    let strace = strace.to_str().expect("a UTF-8 path").to_owned();
    let endpoint = receiver("").await;
    let port = endpoint.addresses().smtp.port();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let bounce_to = format!("smtp://127.0.0.1:{port}");
    let binary = start_binary_with(
        &[
            &strace,
            "-f",
            "-qq",
            "-e",
            "trace=connect",
            "-o",
            trace.to_str().unwrap(),
        ],
        &[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--bounce-to",
            &bounce_to,
        ],
        &[("FAILMAIL_LOG", "info")],
    );
    let smtp = binary.address("smtp");
    let http = binary.address("http");

    let mut command = Command::new(&swaks);
    command
        .args(["--server", "127.0.0.1", "--port"])
        .arg(smtp.port().to_string())
        .args([
            "--from",
            SENDER,
            "--to",
            "user_unknown+gmail+async@gmail.com,ooto+async@example.org",
        ])
        .args(["--header", "Subject: async", "--timeout", "10"]);
    let output = run_tool(command, "swaks", Duration::from_secs(30)).await;
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{transcript}");
    assert!(
        transcript.contains("<-  250 ") && transcript.contains("queued"),
        "250 now: {transcript}"
    );

    let (_, listed) = http_get(http, "/api/bounces").await;
    assert!(listed.contains("\"pending\":2"), "{listed}");
    let (status, body) = http_post(http, "/api/clock/advance", Some("{\"seconds\": 120}")).await;
    assert!(status.contains("200"), "{status} {body}");
    let received = messages(&endpoint, 2).await;
    assert!(received
        .iter()
        .all(|m| m.message.recipients == [SENDER] && m.message.mail_from.is_empty()));
    let (_, listed) = http_get(http, "/api/bounces").await;
    assert!(
        listed.contains("\"pending\":0") && listed.contains("\"state\":\"sent\""),
        "{listed}"
    );
    let poll = async {
        loop {
            let (_, listed) = http_get(http, "/api/bounces").await;
            if listed.matches("\"forwarded\":\"delivered\"").count() == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .expect("both delivered to --bounce-to");

    binary.signal("TERM");
    let (status, stderr) = tokio::task::spawn_blocking(move || binary.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    let trace = std::fs::read_to_string(&trace).expect("strace wrote its trace");
    let outbound: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET") || l.contains("AF_INET6")))
        .collect();
    assert!(
        !outbound.is_empty(),
        "the bounces were delivered by connecting: {trace}"
    );
    let elsewhere: Vec<&&str> = outbound
        .iter()
        .filter(|l| !(l.contains(&format!("sin_port=htons({port})")) && l.contains("127.0.0.1")))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "failmail connected elsewhere than --bounce-to: {elsewhere:#?}"
    );
}

/// A loopback port nothing listens on: an endpoint that is down.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// Waits until `n` `--bounce-to` attempts are recorded and returns them.
async fn attempts_reach(app: &RunningApp, n: usize) -> Vec<(u32, bool)> {
    common::eventually(&format!("{n} --bounce-to attempts"), || {
        let attempts = forward_attempts(app);
        (attempts.len() >= n).then_some(attempts)
    })
    .await
}

/// The `--bounce-to` state of the first sent notification.
fn forwarded(app: &RunningApp) -> Option<&'static str> {
    let (_, sent) = app.bounces().list();
    failmail::bounces::view::BounceView::sent(&sent[0]).forwarded
}

/// An endpoint that is down: each retry waits on the clock (an hour, then two: the test passes
/// only because moving the clock ends those waits), and after the configured three attempts
/// failmail gives up on the notification, counts it, and tries no more.
#[tokio::test]
async fn a_down_endpoint_is_retried_on_the_clock_then_given_up() {
    let port = closed_port();
    let app = serve("", |c| {
        let mut forward = ForwardConfig::parse(&format!("smtp://127.0.0.1:{port}")).unwrap();
        forward.attempts = 3;
        forward.first_retry = Duration::from_secs(3600);
        c.bounces.forward = Some(forward);
    })
    .await;
    send(&app, SENDER, "", &["<user_unknown+async@x.example>"]).await;
    advance(&app, Duration::from_secs(120)).await;
    assert_eq!(attempts_reach(&app, 1).await, [(1, false)]);
    assert_eq!(forwarded(&app), Some("pending"));
    advance(&app, Duration::from_secs(3600)).await;
    assert_eq!(attempts_reach(&app, 2).await, [(1, false), (2, false)]);
    advance(&app, Duration::from_secs(2 * 3600)).await;
    assert_eq!(
        attempts_reach(&app, 3).await,
        [(1, false), (2, false), (3, false)]
    );
    common::eventually("given up", || {
        (forwarded(&app) == Some("failed")).then_some(())
    })
    .await;
    let metrics = app.bounces().metrics_text();
    assert!(
        metrics.contains("failmail_bounces_forward_failed_total 1\n"),
        "{metrics}"
    );
    let errors: Vec<String> = app
        .journal()
        .events()
        .unwrap()
        .list(None, 0, 1000)
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BounceForwarded { error, target, .. } => {
                assert_eq!(target, &format!("smtp://127.0.0.1:{port}"));
                error.clone()
            }
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 3, "each failed attempt says why: {errors:?}");
    advance(&app, Duration::from_secs(86_400)).await;
    assert_eq!(
        forward_attempts(&app).len(),
        3,
        "no attempt after giving up"
    );
}

/// The failmail binary, its `--bounce-to` down: each failed attempt is one clear log line
/// naming the bounce, the target, the attempt and the error, and the last says it gives up
/// (after the default five attempts; moving the clock through the API hurries the retries).
#[tokio::test]
async fn a_down_endpoint_is_logged_clearly_and_given_up() {
    let target = format!("smtp://127.0.0.1:{}", closed_port());
    let binary = start_binary_with(
        &[],
        &[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--bounce-to",
            &target,
        ],
        &[("FAILMAIL_LOG", "info"), ("NO_COLOR", "1")],
    );
    let (smtp, http) = (binary.address("smtp"), binary.address("http"));
    let mut conn = Conn::ready(smtp).await;
    conn.deliver(
        SENDER,
        "user_unknown+async@x.example",
        b"Subject: s\r\n\r\nbody\r\n.\r\n",
    )
    .await
    .assert_code(250);
    conn.quit().await;
    let poll = async {
        loop {
            let (status, _) =
                http_post(http, "/api/clock/advance", Some("{\"seconds\": 3600}")).await;
            assert!(status.contains("200"), "{status}");
            if binary.stderr_so_far().contains("giving up") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("not given up: {}", binary.stderr_so_far()));
    let log = binary.stderr_so_far();
    let lines = |what: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect()
    };
    let retrying = lines("bounce not delivered to --bounce-to; retrying");
    assert_eq!(retrying.len(), 4, "{log}");
    for (i, line) in retrying.iter().enumerate() {
        for part in [
            "WARN".to_owned(),
            "bounce=1".to_owned(),
            format!("target={target}"),
            format!("attempt={}", i + 1),
            "of=5".to_owned(),
            "error=".to_owned(),
        ] {
            assert!(line.contains(&part), "{part} missing from {line}");
        }
    }
    let given_up = lines("bounce not delivered to --bounce-to; giving up");
    assert_eq!(given_up.len(), 1, "{log}");
    for part in [
        "ERROR",
        "bounce=1",
        &format!("target={target}"),
        "attempt=5",
        "of=5",
    ] {
        assert!(
            given_up[0].contains(part),
            "{part} missing from {}",
            given_up[0]
        );
    }
    let (_, listed) = http_get(http, "/api/bounces").await;
    assert!(listed.contains("\"forwarded\":\"failed\""), "{listed}");
    binary.terminate().await;
}

/// A DSN is stored as a captured message to the envelope sender, so it lands in `--maildir`
/// beside the message it answers, its file named after its bounce id, its bytes those the
/// API serves.
#[tokio::test]
async fn a_dsn_lands_in_the_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let app = serve("", |c| c.journal.maildir = Some(maildir.clone())).await;
    send(&app, SENDER, "", &["<user_unknown+async@x.example>"]).await;
    advance(&app, Duration::from_secs(120)).await;
    let view = sent(&app, 1).await.remove(0);
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "the message and its DSN: {files:?}");
    let mark = format!("_bounce{}.", view.id);
    let (dsn, original): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|p| p.to_string_lossy().contains(&mark));
    assert_eq!(dsn.len(), 1, "{files:?}");
    let bytes = std::fs::read(dsn[0]).unwrap();
    assert_eq!(bytes, raw(&app, view.id));
    let parts = dsn_parts(&bytes);
    assert!(parts
        .fields
        .contains("Final-Recipient: rfc822; user_unknown+async@x.example"));
    assert!(String::from_utf8_lossy(&bytes).contains(&format!("To: <{SENDER}>\r\n")));
    let original = std::fs::read(original[0]).unwrap();
    assert!(String::from_utf8_lossy(&original).contains("Subject: Invoice 42"));
}

/// `TestServer::bounces` lists a pending bounce with its due time, and, once the clock moves,
/// `TestServer::wait_for_bounce` returns it sent, with its bytes; it is also among the
/// captured messages, marked with its bounce id.
#[tokio::test]
async fn test_server_lists_bounces_and_waits_for_one() {
    let server = TestServer::start_with(
        "[[rule]]\nrcpt = \"gone@*\"\nbounce = { reply = \"user_unknown\", after = \"10m\" }\n",
        |c| c.clock = Arc::new(ManualClock::new(Duration::from_secs(START_SECS))),
    )
    .await;
    let mut conn = Conn::ready(server.smtp_addr()).await;
    conn.deliver(SENDER, "gone@x.example", b"Subject: s\r\n\r\nbody\r\n.\r\n")
        .await
        .assert_code(250);
    conn.quit().await;
    let listed = server.bounces();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].state, listed[0].kind), ("pending", "failed"));
    assert_eq!(listed[0].due_at_ms, START_SECS * 1000 + 600_000);
    assert_eq!(listed[0].recipients[0].recipient, "gone@x.example");

    server.advance_clock(Duration::from_secs(600)).await;
    let (view, bytes) = server
        .wait_for_bounce(
            |b| b.kind == "failed" && b.recipients[0].recipient == "gone@x.example",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!((view.state, view.to.as_str()), ("sent", SENDER));
    assert!(dsn_parts(&bytes)
        .fields
        .contains("Final-Recipient: rfc822; gone@x.example"));
    assert_eq!(server.bounces(), std::slice::from_ref(&view));
    let stored = server.messages();
    let dsn = stored
        .iter()
        .find(|m| m.bounce == Some(view.id))
        .expect("the DSN among the messages");
    assert_eq!(dsn.message.data, bytes);
    server.shutdown().await;
}

/// `wait_for_bounce` gives up after its timeout, naming what it saw.
#[tokio::test]
#[should_panic(expected = "no matching bounce within")]
async fn wait_for_bounce_gives_up_after_its_timeout() {
    let server = TestServer::start("").await;
    server
        .wait_for_bounce(|_| true, Duration::from_millis(50))
        .await;
}
