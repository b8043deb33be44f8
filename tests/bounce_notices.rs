//! What a later notification holds and how many may wait: one DSN lists every recipient of a
//! message that reached the same state together; its header fields (`From`, `To`,
//! `Auto-Submitted`, `Date`) and RFC 3464 fields (`Reporting-MTA`, `Arrival-Date`,
//! `Received-From-MTA`, and per recipient `Final-Recipient`, `Action`, `Status`, `Remote-MTA`,
//! `Diagnostic-Code`, `Last-Attempt-Date`, `Will-Retry-Until` on delays) are read one by one
//! with mail-parser against the clock; pending notifications are bounded in number
//! (`--max-pending-bounces`) and in bytes, past which a message that would add more gets
//! `451 4.3.0`, and room comes back once they are sent.

mod common;

use std::time::Duration;

use common::bounces::{
    advance, dsn_parts, field_blocks, raw, send, sent, serve, DAY, SENDER, START_SECS,
};
use common::{Conn, HOSTNAME};
use failmail::bounces::view::BounceView;
use mail_parser::{Address, MessageParser};

/// `gone@…` fails ten minutes after its 250 (generic style); `slow@…` meets a 4xx, is
/// retried, gets a delay notice at four hours and fails as expired at five days (Postfix
/// style).
const SCENARIO: &str = "\
[[rule]]
rcpt = \"gone@*\"
bounce = { reply = \"user_unknown\", after = \"10m\" }

[[rule]]
rcpt = \"slow@*\"
flavor = \"postfix\"
bounce = { reply = \"mailbox_full\", after = \"30m\", delay_notice = \"4h\", give_up = \"5d\" }
";

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;

/// One message to two recipients that fail together and one that is retried; every
/// notification sent after six days: the failure, the delay notice, the give-up.
async fn three_notifications() -> (failmail::RunningApp, [BounceView; 3]) {
    let app = serve(SCENARIO, |_| {}).await;
    send(
        &app,
        SENDER,
        "",
        &[
            "<gone@one.example>",
            "<gone@two.example>",
            "<slow@three.example>",
        ],
    )
    .await;
    advance(&app, 6 * DAY).await;
    let mut views = sent(&app, 3).await;
    assert_eq!(views.len(), 3, "{views:#?}");
    views.sort_by_key(|v| v.due_at_ms);
    let views: [BounceView; 3] = views.try_into().unwrap();
    (app, views)
}

fn rcpts(view: &BounceView) -> Vec<&str> {
    view.recipients
        .iter()
        .map(|r| r.recipient.as_str())
        .collect()
}

#[tokio::test]
async fn one_dsn_lists_every_recipient_that_failed_together() {
    let (app, [failed, delayed, expired]) = three_notifications().await;
    assert_eq!(failed.kind, "failed");
    assert_eq!(rcpts(&failed), ["gone@one.example", "gone@two.example"]);
    assert_eq!(
        (delayed.kind, rcpts(&delayed)),
        ("delayed", vec!["slow@three.example"])
    );
    assert_eq!(
        (expired.kind, rcpts(&expired)),
        ("expired", vec!["slow@three.example"])
    );
    assert_eq!(failed.original_message_id, delayed.original_message_id);

    let parts = dsn_parts(&raw(&app, failed.id));
    let blocks = field_blocks(&parts.fields);
    assert_eq!(
        blocks.len(),
        3,
        "per-message fields, then one block per recipient"
    );
    for (block, rcpt) in blocks[1..]
        .iter()
        .zip(["gone@one.example", "gone@two.example"])
    {
        assert_eq!(
            block.get("Final-Recipient"),
            Some(format!("rfc822; {rcpt}"))
        );
        assert_eq!(block.get("Action").as_deref(), Some("failed"));
        assert_eq!(block.get("Status").as_deref(), Some("5.1.1"));
        assert!(parts.human.contains(rcpt), "{rcpt} in {}", parts.human);
    }
}

#[tokio::test]
async fn header_and_status_fields_one_by_one() {
    let (app, [failed, delayed, expired]) = three_notifications().await;
    let start = START_SECS as i64;

    // The message: from the style's mailer daemon at failmail's host name, to the envelope
    // sender exactly, dated when it was sent on the clock, marked as an automatic reply.
    let bytes = raw(&app, failed.id);
    let message = MessageParser::default().parse(&bytes).expect("a message");
    let from = match message.from() {
        Some(Address::List(list)) => list[0].address.as_deref().map(str::to_owned),
        other => panic!("From: {other:?}"),
    };
    assert_eq!(from, Some(format!("MAILER-DAEMON@{HOSTNAME}")));
    let to = match message.to() {
        Some(Address::List(list)) => list[0].address.as_deref().map(str::to_owned),
        other => panic!("To: {other:?}"),
    };
    assert_eq!(to.as_deref(), Some(SENDER));
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(
        message.date().map(|d| d.to_timestamp()),
        Some(start + 10 * MINUTE)
    );
    assert!(message
        .message_id()
        .is_some_and(|id| id.ends_with(HOSTNAME)));

    // The per-message fields.
    let blocks = field_blocks(&dsn_parts(&bytes).fields);
    let about = &blocks[0];
    assert_eq!(about.get("Reporting-MTA"), Some(format!("dns; {HOSTNAME}")));
    assert_eq!(
        about.get("Received-From-MTA").as_deref(),
        Some("dns; client.example (127.0.0.1)")
    );
    assert_eq!(about.date("Arrival-Date"), Some(start));
    assert_eq!(
        about.get("Original-Envelope-Id"),
        None,
        "no ENVID was given"
    );

    // A permanent failure: the exact reply, attempted at its time, no retry.
    let one = &blocks[1];
    assert_eq!(one.get("Remote-MTA").as_deref(), Some("dns; one.example"));
    assert_eq!(
        one.get("Diagnostic-Code").as_deref(),
        Some("smtp; 550 5.1.1 Requested action not taken: mailbox unavailable")
    );
    assert_eq!(one.date("Last-Attempt-Date"), Some(start + 10 * MINUTE));
    assert_eq!(one.get("Will-Retry-Until"), None);

    // The delay notice: the 4xx, retried until the give-up time.
    let bytes = raw(&app, delayed.id);
    let blocks = field_blocks(&dsn_parts(&bytes).fields);
    let slow = &blocks[1];
    assert_eq!(slow.get("Action").as_deref(), Some("delayed"));
    assert_eq!(slow.get("Status").as_deref(), Some("4.2.2"));
    assert_eq!(
        slow.get("Remote-MTA").as_deref(),
        Some("dns; three.example")
    );
    assert_eq!(
        slow.get("Diagnostic-Code").as_deref(),
        Some("smtp; 452 4.2.2 Requested action not taken: mailbox full, try again later")
    );
    assert_eq!(slow.date("Last-Attempt-Date"), Some(start + 4 * HOUR));
    assert_eq!(slow.date("Will-Retry-Until"), Some(start + 5 * 24 * HOUR));

    // The give-up: failed as expired, with no more retries.
    let bytes = raw(&app, expired.id);
    let blocks = field_blocks(&dsn_parts(&bytes).fields);
    let slow = &blocks[1];
    assert_eq!(slow.get("Action").as_deref(), Some("failed"));
    assert_eq!(slow.get("Status").as_deref(), Some("4.4.7"));
    assert_eq!(slow.date("Last-Attempt-Date"), Some(start + 5 * 24 * HOUR));
    assert_eq!(slow.get("Will-Retry-Until"), None);
    assert!(slow
        .get("Diagnostic-Code")
        .is_some_and(|d| d.starts_with("smtp; 550 4.4.7 ")));
}

/// Sends a message with `RET=` `ret` and a body of `size` bytes to a recipient that bounces
/// later; returns the reply to the end of its data.
async fn send_sized(conn: &mut common::PlainConn, ret: &str, size: usize) -> common::Reply {
    conn.cmd_code(&format!("MAIL FROM:<{SENDER}> RET={ret}"), 250)
        .await;
    conn.cmd_code("RCPT TO:<user_unknown+async@x.example>", 250)
        .await;
    let line = "x".repeat(70);
    let mut body = String::from("Subject: big\r\n\r\n");
    while body.len() < size {
        body.push_str(&line);
        body.push_str("\r\n");
    }
    body.push_str(".\r\n");
    conn.data(body.as_bytes()).await
}

/// The bytes pending notifications hold are bounded (the originals they return included): a
/// message whose `RET=FULL` would go past the bound is refused with 451 4.3.0 and counted, the
/// same message with `RET=HDRS` (only its headers kept) is accepted.
#[tokio::test]
async fn pending_bounces_are_bounded_in_bytes() {
    let app = serve("", |c| c.bounces.max_bytes = 20_000).await;
    let mut conn = Conn::ready(app.addresses().smtp).await;
    send_sized(&mut conn, "FULL", 30_000)
        .await
        .assert(451, "4.3.0");
    send_sized(&mut conn, "HDRS", 30_000).await.assert_code(250);
    conn.quit().await;
    assert_eq!(app.bounces().list().0.len(), 1);
    let metrics = app.bounces().metrics_text();
    assert!(
        metrics.contains("failmail_bounces_refused_total 1\n"),
        "{metrics}"
    );
    let held = metrics
        .lines()
        .find_map(|l| l.strip_prefix("failmail_bounces_pending_bytes "))
        .and_then(|v| v.parse::<usize>().ok())
        .expect("the pending bytes gauge");
    assert!(held > 0 && held < 20_000, "{held}");
}

/// `--max-pending-bounces`: past it a message that would add a notification is refused with
/// 451 4.3.0; once the pending one is sent (the clock moved), there is room again.
#[tokio::test]
async fn room_comes_back_once_pending_bounces_are_sent() {
    let app = serve("", |c| c.bounces.max_pending = 1).await;
    send(&app, SENDER, "", &["<user_unknown+async@x.example>"]).await;
    let mut conn = Conn::ready(app.addresses().smtp).await;
    let refused = conn
        .deliver(
            SENDER,
            "user_unknown+async@y.example",
            b"Subject: s\r\n\r\nbody\r\n.\r\n",
        )
        .await;
    refused.assert(451, "4.3.0");
    advance(&app, Duration::from_secs(120)).await;
    sent(&app, 1).await;
    conn.deliver(
        SENDER,
        "user_unknown+async@z.example",
        b"Subject: s\r\n\r\nbody\r\n.\r\n",
    )
    .await
    .assert_code(250);
    conn.quit().await;
    let (pending, _) = app.bounces().list();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].recipients[0].recipient,
        "user_unknown+async@z.example"
    );
}
