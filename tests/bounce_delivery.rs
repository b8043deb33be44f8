//! Where later bounces go: `--bounce-to` delivers each one by SMTP to the listener the user
//! named (here a second failmail), from `<>` to the original envelope sender, and retries when
//! that listener first answers 4xx; a `+async` magic address sent with swaks gets 250 now and
//! its DSN once the clock moves; under strace, the only connection failmail ever opens is to
//! the `--bounce-to` address.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::binary::{http_get, http_post, run_tool, start_binary_with};
use common::Conn;
use failmail::bounces::ForwardConfig;
use failmail::clock::ManualClock;
use failmail::journal::EventKind;
use failmail::RunningApp;

const SENDER: &str = "bounces+42-user=x@app.test";
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
    let attempts = || -> Vec<(u32, bool)> {
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
    };
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
    let (Some(swaks), Some(strace)) = (
        common::tools::need(&common::tools::SWAKS),
        common::tools::need(&common::tools::STRACE),
    ) else {
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
