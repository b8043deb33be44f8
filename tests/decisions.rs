//! Every decision of a scenario rule can be traced back to the rule in the events: the reply it
//! sent names the rule's index, `name` and `file:line`; the refusal that ends an `abort` rule
//! does too; and a rule that closes or hangs the session, which sends no reply, leaves an event
//! of its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::PlainConn;
use failmail::journal::{Event, EventKind};
use failmail::testing::TestServer;

const SCENARIO: &str = r#"
[[rule]]
name = "gone mailbox"
rcpt = "gone@*"
reply = "user_unknown"

[[rule]]
name = "spam trap"
at = "data"
rcpt = "trap@*"
then = "abort"
reply = "spam_rejected"

[[rule]]
name = "cut"
rcpt = "cut@*"
then = "disconnect"

[[rule]]
rcpt = "stuck@*"
then = "hang"
"#;

/// Waits (bounded) until the events hold one matching `want`, and returns them all.
async fn events_until(server: &TestServer, want: impl Fn(&EventKind) -> bool) -> Vec<Arc<Event>> {
    for _ in 0..500 {
        let events = server.events();
        if events.iter().any(|e| want(&e.kind)) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no such event in {:#?}", server.events());
}

async fn ready(server: &TestServer) -> PlainConn {
    let mut conn = PlainConn::greeted(server.smtp_addr()).await;
    conn.ehlo("client.example").await;
    conn.cmd("MAIL FROM:<a@client.example>", 250, "2.1.0").await;
    conn
}

fn rule_of(kind: &EventKind) -> Option<(u32, Option<&str>, Option<&str>)> {
    match kind {
        EventKind::Reply {
            rule: Some(rule),
            rule_name,
            rule_at,
            ..
        }
        | EventKind::Silent {
            rule: Some(rule),
            rule_name,
            rule_at,
            ..
        } => Some((*rule, rule_name.as_deref(), rule_at.as_deref())),
        _ => None,
    }
}

#[tokio::test]
async fn a_rule_reply_names_its_rule() {
    let server = TestServer::start(SCENARIO).await;
    let mut conn = ready(&server).await;
    conn.cmd("RCPT TO:<gone@dest.example>", 550, "5.1.1").await;
    let events = events_until(&server, |k| matches!(k, EventKind::Reply { code: 550, .. })).await;
    let refusal = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Reply { code: 550, .. }))
        .unwrap();
    assert_eq!(
        rule_of(&refusal.kind),
        Some((0, Some("gone mailbox"), Some("<inline>:2")))
    );
    conn.quit().await;
}

#[tokio::test]
async fn the_refusal_that_ends_an_abort_rule_names_its_rule() {
    let server = TestServer::start(SCENARIO).await;
    let mut conn = ready(&server).await;
    conn.cmd("RCPT TO:<trap@dest.example>", 250, "2.1.5").await;
    conn.cmd("DATA", 354, "").await;
    conn.send("Subject: x\r\n").await;
    let refusal = conn.reply().await;
    assert_eq!(refusal.code, 554, "{}", refusal.text());
    let events = events_until(&server, |k| matches!(k, EventKind::Reply { code: 554, .. })).await;
    let abort = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Reply { code: 554, .. }))
        .unwrap();
    assert_eq!(
        rule_of(&abort.kind),
        Some((1, Some("spam trap"), Some("<inline>:7")))
    );
}

#[tokio::test]
async fn a_rule_that_disconnects_or_hangs_leaves_an_event() {
    let server = TestServer::start(SCENARIO).await;
    let mut cut = ready(&server).await;
    cut.send("RCPT TO:<cut@dest.example>\r\n").await;
    cut.expect_closed().await;
    let events = events_until(&server, |k| matches!(k, EventKind::Silent { .. })).await;
    let silent = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Silent { .. }))
        .unwrap();
    assert!(
        matches!(
            silent.kind,
            EventKind::Silent {
                action: "disconnect",
                phase: "rcpt",
                ..
            }
        ),
        "{silent:?}"
    );
    assert_eq!(
        rule_of(&silent.kind),
        Some((2, Some("cut"), Some("<inline>:14")))
    );

    let mut stuck = ready(&server).await;
    stuck.send("RCPT TO:<stuck@dest.example>\r\n").await;
    let events = events_until(&server, |k| {
        matches!(k, EventKind::Silent { action: "hang", .. })
    })
    .await;
    let hang = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Silent { action: "hang", .. }))
        .unwrap();
    assert_eq!(rule_of(&hang.kind), Some((3, None, Some("<inline>:19"))));
    let json = serde_json::to_value(&**hang).unwrap();
    assert_eq!(json["type"], "silent");
    assert_eq!(json["rule_at"], "<inline>:19");
}
