//! Receiving limits, proved over real SMTP sessions: what one recipient mailbox (or domain) takes
//! per window, answered in the recipient's provider's voice, from the command line (or its
//! presets) and from the scenario.
//!
//! Every test starts its own in-process server (or the real binary) on 127.0.0.1 port 0 and talks
//! to it with a raw pipelining SMTP client that checks each reply's code and enhanced status code.
//! Time is moved with the server's clock (never with sleeps); every wait on the network or on a
//! background release is bounded. Tests that need Redis start their own `redis-server` on a free
//! loopback port and stop it when they end (`.ci/run` installs the Debian package).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::limits::{
    for_each_store, manual_clock, open, options, quit_session, serve_builtin, serve_in_memory,
    start_binary_on_loopback, HOUR, IP_KEY,
};
use common::{PlainConn, Reply};
use failmail::clock::OffsetClock;
use failmail::limits::LimitStore;
use failmail::limits::{LimitOverrides, Window};
use failmail::scenario::catalog::Catalog;
use failmail::scenario::flavor::Flavor;

// ---------------------------------------------------------------------------------------------
// 10. Receiving limits: what one recipient mailbox (or domain) takes per window, answered in the
//    recipient's provider's voice.

/// The receiving limits alone.
fn receiving(per_recipient: Option<u64>, per_recipient_domain: Option<u64>) -> LimitOverrides {
    let window = |max| Window { max, per: HOUR };
    LimitOverrides {
        per_recipient: per_recipient.map(window),
        per_recipient_domain: per_recipient_domain.map(window),
        ..LimitOverrides::default()
    }
}

/// Sends `count` messages from `from` to `rcpt`, one transaction at a time on as few
/// connections as it can (a 421 closes one: the next message opens another); the accepted count
/// and the refusals of the recipient.
async fn send_to(addr: SocketAddr, from: &str, rcpt: &str, count: usize) -> (usize, Vec<Reply>) {
    let mut client: Option<PlainConn> = None;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for _ in 0..count {
        let conn = match client.as_mut() {
            Some(conn) => conn,
            None => client.insert(open(addr, None).await),
        };
        conn.command(&format!("MAIL FROM:<{from}>"))
            .await
            .assert(250, "2.1.0");
        let reply = conn.command(&format!("RCPT TO:<{rcpt}>")).await;
        if reply.code == 250 {
            conn.command("DATA").await.assert_code(354);
            conn.send(format!(
                "From: <{from}>\r\nTo: <{rcpt}>\r\nSubject: receiving\r\n\r\nHi.\r\n.\r\n"
            ))
            .await;
            conn.reply().await.assert(250, "2.0.0");
            accepted += 1;
            continue;
        }
        if reply.code == 421 {
            conn.finish(&reply).await;
            client = None;
        } else {
            conn.command("RSET").await.assert(250, "2.0.0");
        }
        refused.push(reply);
    }
    if let Some(client) = client {
        quit_session(client).await;
    }
    (accepted, refused)
}

/// Asserts a recipient was refused with `flavor`'s wording of catalog entry `name`.
#[track_caller]
fn assert_rcpt_refused_as(reply: &Reply, name: &str, flavor: Flavor) {
    let (variant, used) = Catalog::builtin()
        .get(name)
        .expect("catalog entry")
        .variant(flavor);
    assert_eq!(used, flavor, "{name} has a {flavor} variant");
    reply.assert(variant.code, &variant.status.to_string());
    let first = variant.text[0].split('{').next().unwrap_or("").trim();
    assert!(
        reply.catalog_text().starts_with(first),
        "{name} in {flavor}'s words expected: {reply:?}"
    );
}

/// 50 senders race 5 messages each to one Gmail mailbox whose window holds 100: exactly 100
/// are accepted, every other recipient gets Gmail's 450 4.2.1 ReceivingRate, and another
/// mailbox is not limited by it.
async fn fifty_racers_to_one_mailbox_get_exactly_100(store: Arc<dyn LimitStore>) {
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        store,
        receiving(Some(100), None),
    ))
    .await;
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..50 {
        tasks.spawn(async move {
            let from = format!("racer{task}@race.example");
            send_to(addr, &from, "Busy@Gmail.com", 5).await
        });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (ok, refusals) = result.expect("a racer panicked");
        for reply in &refusals {
            assert_rcpt_refused_as(reply, "recipient_rate_limited", Flavor::Gmail);
        }
        accepted += ok;
        refused += refusals.len();
    }
    assert_eq!((accepted, refused), (100, 150));
    assert_eq!(server.used("rcpt:busy@gmail.com").await, 100);
    let (other, _) = send_to(addr, "late@race.example", "calm@gmail.com", 3).await;
    assert_eq!(other, 3, "another mailbox has its own window");
}

for_each_store! {
    check: fifty_racers_to_one_mailbox_get_exactly_100,
    memory: per_recipient_is_exact_under_a_race_memory,
    redis: per_recipient_is_exact_under_a_race_redis,
    worker_threads: 8,
}

/// A domain's window counts every mailbox of the domain; the refusal is the provider's own
/// rate-limit wording (Yahoo's [TSS04]); a recipient refused takes nothing, and a transaction
/// that ends without a message gives its recipients' uses back.
async fn per_recipient_domain_counts_the_whole_domain(store: Arc<dyn LimitStore>) {
    let clock = manual_clock();
    let server = serve_builtin(options(clock.clone(), store, receiving(None, Some(3)))).await;
    let addr = server.addr();
    for rcpt in ["a@yahoo.com", "b@yahoo.com", "c@yahoo.com"] {
        assert_eq!(send_to(addr, "s@x.example", rcpt, 1).await.0, 1);
    }
    let (accepted, refused) = send_to(addr, "s@x.example", "d@yahoo.com", 1).await;
    assert_eq!(accepted, 0);
    assert_rcpt_refused_as(&refused[0], "rate_limited", Flavor::Yahoo);
    assert_eq!(
        send_to(addr, "s@x.example", "d@aol.com", 1).await.0,
        1,
        "another domain"
    );
    server.wait_used("rcpt-domain:yahoo.com", 3).await;

    // An hour later the domain takes mail again; a recipient accepted and then RSET gives its use
    // back.
    clock.advance(HOUR);
    let mut client = open(addr, None).await;
    client.cmd_code("MAIL FROM:<s@x.example>", 250).await;
    client.cmd_code("RCPT TO:<e@yahoo.com>", 250).await;
    server.wait_used("rcpt-domain:yahoo.com", 1).await;
    client.command("RSET").await.assert(250, "2.0.0");
    client.cmd_code("MAIL FROM:<s@x.example>", 250).await;
    server.wait_used("rcpt-domain:yahoo.com", 0).await;
    quit_session(client).await;
}

for_each_store! {
    check: per_recipient_domain_counts_the_whole_domain,
    memory: per_recipient_domain_counts_the_whole_domain_memory,
    redis: per_recipient_domain_counts_the_whole_domain_redis,
    worker_threads: 4,
}

/// The scenario keys: per_recipient and per_recipient_domain in `[limits]`, together with a
/// sending limit (count = recipient) in one reservation: a recipient refused by the receiving
/// limit takes no sending use.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiving_limits_from_the_scenario_share_the_reservation() {
    let server = serve_in_memory(
        "receiving.toml",
        "[limits]\nper_ip = { max = 10, per = \"1h\" }\ncount = \"recipient\"\n\
         per_recipient = { max = 2, per = \"1h\" }\nper_recipient_domain = { max = 5, per = \"1h\" }\n",
    )
    .await;
    let addr = server.addr();
    let (accepted, refused) = send_to(addr, "s@x.example", "one@icloud.com", 4).await;
    assert_eq!(accepted, 2);
    for reply in &refused {
        assert_rcpt_refused_as(reply, "recipient_rate_limited", Flavor::Icloud);
    }
    assert_eq!(
        server.used(IP_KEY).await,
        2,
        "refused recipients took no sending use"
    );
    assert_eq!(server.used("rcpt:one@icloud.com").await, 2);
    assert_eq!(server.used("rcpt-domain:icloud.com").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_limits_gmail_preset_is_60_per_minute_per_recipient() {
    let binary = start_binary_on_loopback(&["--limits", "gmail"]);
    let (accepted, refused) =
        send_to(binary.address("smtp"), "s@x.example", "bob@gmail.com", 61).await;
    assert_eq!(accepted, 60);
    assert_rcpt_refused_as(&refused[0], "recipient_rate_limited", Flavor::Gmail);
    let binary = start_binary_on_loopback(&["--limit-recipient-domain", "2/1h"]);
    let (accepted, _) = send_to(binary.address("smtp"), "s@x.example", "bob@example.org", 3).await;
    assert_eq!(accepted, 2);
}

/// Every `--limits` preset sets the windows it says, read back from `/api/limits` (the
/// configured windows, and each key's use with its window) after one message: `exchange` 3,600 an hour per recipient and `gmail` 60 a minute, each with OVHcloud's
/// sending limits (200 an hour per account, 300 per IP); `ovh` those alone; `none` nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limits_preset_sets_its_windows() {
    let rcpt = "bob@contoso.onmicrosoft.com";
    let ovh = [("account:s@x.example", 200, 3600.0), (IP_KEY, 300, 3600.0)];
    for (preset, receiving) in [
        ("exchange", Some((3600, 3600.0))),
        ("gmail", Some((60, 60.0))),
        ("ovh", None),
        ("none", None),
    ] {
        let binary = start_binary_on_loopback(&["--limits", preset]);
        let (accepted, _) = send_to(binary.address("smtp"), "s@x.example", rcpt, 1).await;
        assert_eq!(accepted, 1, "{preset}");
        let (status, body) = common::binary::http_get(binary.address("http"), "/api/limits").await;
        assert!(status.contains("200"), "{preset}: {status}");
        let limits: serde_json::Value = serde_json::from_str(&body).unwrap();
        let usage = limits["usage"].as_array().expect("usage");
        let window = |key: &str| {
            usage.iter().find(|u| u["key"] == key).map(|u| {
                let span = u["frees_at_ms"].as_u64().unwrap() - u["oldest_at_ms"].as_u64().unwrap();
                (u["max"].as_u64().unwrap(), span as f64 / 1000.0)
            })
        };
        let configured = &limits["limits"]["per_recipient"];
        let configured = configured.as_object().map(|w| {
            (
                w["max"].as_u64().unwrap(),
                w["per_seconds"].as_f64().unwrap(),
            )
        });
        assert_eq!(configured, receiving, "{preset}: {body}");
        assert_eq!(
            window(&format!("rcpt:{rcpt}")),
            receiving,
            "{preset}: {body}"
        );
        for (key, max, per) in ovh {
            let expected = (preset != "none").then_some((max, per));
            assert_eq!(window(key), expected, "{preset} {key}: {body}");
        }
    }
}
