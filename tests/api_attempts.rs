//! The HTTP API's views of what happened to mail after the session, over real sockets: bounces
//! (and their events), the attempt history and the retry report, all checked against the document;
//! each attempt's TLS and AUTH state, and the attempt counters of `/metrics`.

mod common;

use std::time::Duration;

use common::api::{Api, Harness, BLOCKING_SCENARIO};
use common::binary::start_binary;
use common::prometheus::Exposition;
use common::{PlainConn, TlsConn};
use failmail::testing::TestServer;
use failmail::{App, AppConfig};
use serde_json::{json, Value};

/// `/api/bounces`, `/api/bounces/{id}/raw`, the bounce events and a stored DSN in
/// `/api/messages` (marked, with its report type) all match the document, pending and sent.
#[tokio::test]
async fn bounces_and_their_events_match_the_document() {
    let harness = Harness::start(None).await;
    let mut conn = PlainConn::ready(harness.smtp).await;
    conn.cmd_code("MAIL FROM:<app@x.example>", 250).await;
    for rcpt in ["user_unknown+async@y.example", "complaint+async@y.example"] {
        conn.cmd_code(&format!("RCPT TO:<{rcpt}>"), 250).await;
    }
    conn.data(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        .await
        .assert_code(250);
    conn.quit().await;
    let pending = harness.api.get("/api/bounces").await;
    assert_eq!(pending["pending"], 2, "{pending}");
    let first = pending["bounces"][0]["id"].as_u64().unwrap();
    let not_yet = harness
        .api
        .call("GET", &format!("/api/bounces/{first}/raw"), None)
        .await;
    assert_eq!(not_yet.status, 404);
    let advanced = harness
        .api
        .post_json("/api/clock/advance", json!({"seconds": 120}))
        .await;
    assert_eq!(advanced.status, 200);
    for _ in 0..500 {
        if harness.api.get("/api/bounces").await["pending"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = harness.api.get("/api/bounces").await;
    assert_eq!(sent["bounces"].as_array().unwrap().len(), 2, "{sent}");
    let raw = harness
        .api
        .call("GET", &format!("/api/bounces/{first}/raw"), None)
        .await;
    assert_eq!(raw.status, 200);
    assert!(raw.text().contains("multipart/report"), "{}", raw.text());
    let events = harness.api.get("/api/events?limit=1000").await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"bounce_scheduled") && types.contains(&"bounce_sent"),
        "{types:?}"
    );
    // Stored as messages to the sender, marked as notifications, each saying what it is: a
    // DSN is a multipart/report of type delivery-status, a complaint one of feedback-report.
    let messages = harness.api.get("/api/messages").await;
    let mut kinds: Vec<(bool, Value, Value)> = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["bounce"].is_u64(),
                m["content_type"].clone(),
                m.get("report_type").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    kinds.sort_by_key(|k| k.2.as_str().unwrap_or("").to_owned());
    assert_eq!(
        kinds,
        [
            (false, Value::Null, Value::Null),
            (true, json!("multipart/report"), json!("delivery-status")),
            (true, json!("multipart/report"), json!("feedback-report")),
        ],
        "{messages}"
    );
    let metrics = harness.api.call("GET", "/metrics", None).await.text();
    assert!(
        metrics.contains("failmail_bounces_sent_total 2\n"),
        "{metrics}"
    );
    let reset = harness.api.call("POST", "/api/reset", None).await;
    assert_eq!(reset.status, 204);
    assert_eq!(harness.api.get("/api/bounces").await["bounces"], json!([]));
    harness.stop().await;
}

/// `GET /api/attempts` until it lists `n` attempts (the last one is recorded when its session
/// ends).
async fn attempts(api: &Api, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let page = api.get("/api/attempts").await;
        let listed = page["attempts"].as_array().unwrap().clone();
        if listed.len() >= n {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} attempts were recorded");
}

#[tokio::test]
async fn attempts_and_the_retry_report_are_documented_filtered_and_reset() {
    let harness = Harness::start(Some(BLOCKING_SCENARIO)).await;
    let api = &harness.api;
    let mut smtp = PlainConn::ready(harness.smtp).await;
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<blocked@x.example>", 550).await;
    smtp.cmd_code("RCPT TO:<mailbox_full@x.example>", 452).await;
    smtp.cmd_code("RCPT TO:<ok@x.example>", 250).await;
    smtp.data(b"Message-ID: <api@x.example>\r\n\r\nbody\r\n.\r\n")
        .await
        .assert_code(250);
    smtp.cmd_code("MAIL FROM:<a@example.com>", 250).await;
    smtp.cmd_code("RCPT TO:<mailbox_full@x.example>", 452).await;
    smtp.cmd_code("QUIT", 221).await;

    let listed = attempts(api, 2).await;
    let first = &listed[0];
    assert_eq!(first["message_id"], "<api@x.example>");
    assert_eq!(first["sender"], "a@example.com");
    let endings: Vec<(Value, Value, Value, Value)> = first["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["rcpt"].clone(),
                e["phase"].clone(),
                e["result"].clone(),
                e["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        endings,
        [
            (
                json!("blocked@x.example"),
                json!("rcpt"),
                json!("permanent"),
                json!(550)
            ),
            (
                json!("mailbox_full@x.example"),
                json!("rcpt"),
                json!("temporary"),
                json!(452)
            ),
            (
                json!("ok@x.example"),
                json!("data_end"),
                json!("accepted"),
                json!(250)
            ),
        ]
    );
    assert_eq!(first["recipients"][0]["rule_name"], "blocked");
    // The retry, refused at RCPT, has no Message-ID of its own: joined by envelope.
    assert_eq!(listed[1]["message"], first["message"]);
    assert_eq!(listed[1]["message_id"], "<api@x.example>");
    let count = |page: Value| page["attempts"].as_array().unwrap().len();
    assert_eq!(count(api.get("/api/attempts?rcpt=OK@x.example").await), 1);
    assert_eq!(
        count(
            api.get("/api/attempts?message_id=%3Capi%40x.example%3E")
                .await
        ),
        2
    );
    assert_eq!(
        count(api.get("/api/attempts?message_id=%3Cother%3E").await),
        0
    );
    let since = first["attempt"].as_u64().unwrap();
    assert_eq!(
        count(api.get(&format!("/api/attempts?since={since}")).await),
        1
    );
    assert_eq!(
        api.call("GET", "/api/attempts?limit=0", None).await.status,
        400
    );
    assert_eq!(
        api.call("GET", "/api/attempts?bogus=1", None).await.status,
        400
    );

    let report = api.get("/api/report").await;
    // The retry at once after the 452 fails the backoff, and only that.
    assert_eq!(report["ok"], false, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0]
            .as_str()
            .unwrap()
            .starts_with("mailbox_full@x.example (<api@x.example>): backoff: retried 0s after 452 4.2.2 (attempt"),
        "{report}"
    );
    let recipients = &report["messages"][0]["recipients"];
    assert_eq!(recipients.as_array().unwrap().len(), 3);
    let full = &recipients[1];
    assert_eq!(full["rcpt"], "mailbox_full@x.example");
    assert_eq!(full["status"], "still_pending");
    assert_eq!(
        full["verdicts"]["retried_after_temporary"]["result"],
        "pass"
    );
    assert_eq!(
        recipients[0]["verdicts"]["stopped_after_permanent"]["result"],
        "pass"
    );
    assert_eq!(recipients[2]["delivered"], true);

    let metrics = Exposition::parse(&api.call("GET", "/metrics", None).await.text());
    assert_eq!(metrics.value("failmail_attempts_total", &[]), Some(2.0));
    assert_eq!(
        metrics.value("failmail_attempt_retries_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("failmail_attempt_duplicates_total", &[]),
        Some(0.0)
    );
    assert_eq!(metrics.types["failmail_attempts_per_message"], "histogram");

    assert_eq!(api.call("POST", "/api/reset", None).await.status, 204);
    assert_eq!(api.get("/api/attempts").await["attempts"], json!([]));
    assert_eq!(api.get("/api/report").await["messages"], json!([]));
    harness.stop().await;
}

#[tokio::test]
async fn without_attempts_the_routes_say_409() {
    let mut config = AppConfig::loopback();
    config.attempts.enabled = false;
    let server = App::start(config).await.expect("the server starts");
    let api = Api {
        addr: server.addresses().http.unwrap(),
        token: None,
    };
    for path in ["/api/attempts", "/api/report"] {
        let response = api.call("GET", path, None).await;
        assert_eq!(response.status, 409, "{path}");
        assert_eq!(response.json()["error"], "this server follows no attempts");
    }
    server.shutdown().await;
}

/// A message retried over a plain connection, then over STARTTLS after AUTH, then over SMTPS
/// after AUTH as another user: each attempt carries its own TLS and AUTH state, in
/// `/api/attempts` and in the in-process report.
#[tokio::test]
async fn each_attempt_records_its_tls_and_auth_identity() {
    let scenario =
        "[[rule]]\nrcpt = \"bob@*\"\nsequence = [\"greylisted\", \"greylisted\", \"accept\"]\n";
    let server = TestServer::start(scenario).await;
    let body = b"Message-ID: <secure@client.example>\r\n\r\nbody\r\n.\r\n";

    let mut plain = PlainConn::ready(server.smtp_addr()).await;
    plain
        .mail_rcpt("app@client.example", "bob@x.example")
        .await
        .assert(451, "4.7.1");
    plain.quit_221().await;

    let mut conn = PlainConn::ready(server.smtp_addr()).await;
    conn.cmd("STARTTLS", 220, "2.0.0").await;
    let mut tls = conn.starttls().await;
    tls.cmd_code("EHLO client.example", 250).await;
    tls.auth_plain("alice", "s3cret").await.assert(235, "2.7.0");
    tls.mail_rcpt("app@client.example", "bob@x.example")
        .await
        .assert(451, "4.7.1");
    tls.quit_221().await;

    let mut smtps = TlsConn::connect_tls(server.smtps_addr()).await;
    smtps.expect_greeting().await;
    smtps.cmd_code("EHLO client.example", 250).await;
    smtps
        .auth_plain("carol", "s3cret")
        .await
        .assert(235, "2.7.0");
    smtps
        .deliver("app@client.example", "bob@x.example", body)
        .await
        .assert_code(250);
    smtps.quit_221().await;

    let api = Api {
        addr: server.http_addr(),
        token: None,
    };
    let listed = attempts(&api, 3).await;
    let states: Vec<(Value, Value)> = listed
        .iter()
        .map(|a| (a["tls"].clone(), a["auth_user"].clone()))
        .collect();
    assert_eq!(
        states,
        [
            (json!(false), Value::Null),
            (json!(true), json!("alice")),
            (json!(true), json!("carol")),
        ]
    );
    assert!(listed.iter().all(|a| a["message"] == listed[0]["message"]));

    let report = server.report();
    let (message, recipient) = report.recipient("bob@x.example").expect("bob's history");
    assert_eq!(
        message.message_id.as_deref(),
        Some("<secure@client.example>")
    );
    let facts: Vec<(bool, Option<&str>)> = recipient
        .attempts
        .iter()
        .map(|a| (a.facts.tls, a.facts.auth_user.as_deref()))
        .collect();
    assert_eq!(
        facts,
        [(false, None), (true, Some("alice")), (true, Some("carol"))]
    );
    assert!(recipient.delivered);
    server.shutdown().await;
}

/// The attempt counters of `/metrics` move: a lost 250 and its retry make a duplicate, every
/// attempt of a message already followed is a retry, and past `--keep-attempts` and
/// `--follow-messages` (the flags of the binary) attempts and messages fall out and are counted.
#[tokio::test]
async fn attempt_metrics_count_duplicates_retries_and_what_fell_out() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("lose.toml");
    std::fs::write(
        &scenario,
        "[[rule]]\nrcpt = \"dup@*\"\nsequence = [\"lose_reply\", \"accept\"]\n",
    )
    .unwrap();
    let binary = start_binary(&[
        "--smtp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--limits",
        "none",
        "--keep-attempts",
        "2",
        "--follow-messages",
        "2",
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    let smtp = binary.address("smtp");
    let api = Api {
        addr: binary.address("http"),
        token: None,
    };
    let metric = |text: &str, name: &str| Exposition::parse(text).value(name, &[]);
    let body = b"Message-ID: <dup@client.example>\r\n\r\nbody\r\n.\r\n";
    // The first 250 is lost: the connection closes after the message is stored.
    let mut lost = PlainConn::ready(smtp).await;
    lost.mail_rcpt("app@client.example", "dup@x.example")
        .await
        .assert_code(250);
    lost.cmd_code("DATA", 354).await;
    lost.send(body).await;
    lost.expect_closed().await;
    let mut again = PlainConn::ready(smtp).await;
    again
        .deliver("app@client.example", "dup@x.example", body)
        .await
        .assert_code(250);
    again.quit_221().await;
    attempts(&api, 2).await;
    let text = api.call("GET", "/metrics", None).await.text();
    assert_eq!(
        metric(&text, "failmail_attempt_duplicates_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "failmail_attempt_retries_total"), Some(1.0));

    // Four attempts of one message (452 each time) with two kept: two not kept.
    let mut full = PlainConn::ready(smtp).await;
    for _ in 0..4 {
        full.mail_rcpt("other@client.example", "mailbox_full@x.example")
            .await
            .assert_code(452);
        full.cmd_code("RSET", 250).await;
    }
    full.quit_221().await;
    // A third message with two followed: the oldest falls out.
    let mut third = PlainConn::ready(smtp).await;
    third
        .deliver(
            "third@client.example",
            "ok@x.example",
            b"Subject: 3\r\n\r\nx\r\n.\r\n",
        )
        .await
        .assert_code(250);
    third.quit_221().await;
    for _ in 0..500 {
        let text = api.call("GET", "/metrics", None).await.text();
        if metric(&text, "failmail_attempts_total") == Some(7.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exposition = Exposition::parse(&api.call("GET", "/metrics", None).await.text());
    let value = |name: &str| exposition.value(name, &[]);
    assert_eq!(value("failmail_attempts_total"), Some(7.0));
    assert_eq!(value("failmail_attempt_retries_total"), Some(4.0), "1 + 3");
    assert_eq!(value("failmail_attempt_duplicates_total"), Some(1.0));
    assert_eq!(value("failmail_attempts_dropped_total"), Some(2.0));
    assert_eq!(value("failmail_attempt_messages_dropped_total"), Some(1.0));
    // Each message counted once, when settled: the first at its first attempt (stored,
    // though its 250 was lost), the third at its only one; the 452s are still pending.
    assert_eq!(value("failmail_attempts_per_message_count"), Some(2.0));
    assert_eq!(value("failmail_attempts_per_message_sum"), Some(2.0));
    let report = api.get("/api/report").await;
    assert_eq!(report["messages_dropped"], 1, "{report}");
    assert_eq!(report["attempts_dropped"], 2, "{report}");
    let senders: Vec<&Value> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["sender"])
        .collect();
    assert_eq!(
        senders,
        [
            &json!("other@client.example"),
            &json!("third@client.example")
        ],
        "{report}"
    );
    binary.terminate().await;
}
