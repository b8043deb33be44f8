//! Limits around the server itself, proved over real SMTP sessions and the real binary: connections
//! per IP and messages per connection, the binary's limit flags, and Redis going down (temporary
//! refusals, never unlimited; exact again when it is back).
//!
//! Every test starts its own in-process server (or the real binary) on 127.0.0.1 port 0 and talks
//! to it with a raw pipelining SMTP client that checks each reply's code and enhanced status code.
//! Time is moved with the server's clock (never with sleeps); every wait on the network or on a
//! background release is bounded. Tests that need Redis start their own `redis-server` on a free
//! loopback port and stop it when they end (`.ci/run` installs the Debian package).

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::binary::binary_command;
use common::limits::{
    catalog, connect, open, options, per_account, quit_session, rate_limited, redis_store,
    send_many, serve, serve_builtin, start_binary_on_loopback, use_up, Instance, Pipelined, HOUR,
    IP_KEY, LOOPBACK,
};
use common::redis::RedisServer;
use common::PlainConn;
use failmail::clock::OffsetClock;
use failmail::limits::memory::MemoryStore;
use failmail::limits::{LimitOverrides, Window};

// ---------------------------------------------------------------------------------------------
// 7. Connections per IP and messages per connection.

async fn connection_caps_server() -> Instance {
    serve(
        options(
            Arc::new(OffsetClock::new()),
            Arc::new(MemoryStore::new()),
            LimitOverrides::default(),
        ),
        "caps.toml",
        "[limits]\nconnections_per_ip = 2\nmessages_per_connection = 3\n",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn third_simultaneous_connection_is_refused_at_the_greeting() {
    let server = connection_caps_server().await;
    let addr = server.addr();
    let too_many = catalog("too_many_connections");
    assert_eq!((too_many.0, too_many.1.as_str()), (421, "4.7.0"));

    let first = open(addr, None).await;
    let second = open(addr, None).await;
    let (mut third, greeting) = connect(addr).await;
    greeting.assert(421, "4.7.0");
    assert_eq!(
        greeting.catalog_text(),
        "mx.failmail.test Service not available, too many connections from 127.0.0.1, closing \
         transmission channel"
    );
    assert!(
        third.try_reply().await.is_none(),
        "a 421 greeting closes the connection"
    );

    // Once one of the two closes, a new connection is served. Its slot is given back when the
    // server's session ends, just after the client sees the close: retry, bounded.
    quit_session(first).await;
    let mut served = None;
    for _ in 0..50 {
        let (client, greeting) = connect(addr).await;
        if greeting.code == 220 {
            served = Some(client);
            break;
        }
        greeting.assert(421, "4.7.0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut served = served.expect("a connection is served again within 50 tries");
    served.command("EHLO client.example").await.assert(250, "");
    served
        .message("a@a.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    // Two open again (second, served): the next is refused again.
    let (mut refused, greeting) = connect(addr).await;
    greeting.assert(421, "4.7.0");
    assert!(refused.try_reply().await.is_none());
    quit_session(served).await;
    quit_session(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fourth_message_on_one_connection_is_refused() {
    let server = connection_caps_server().await;
    let mut client = open(server.addr(), None).await;
    for _ in 0..3 {
        client
            .message("a@a.example", &["rcpt@dest.example"])
            .await
            .assert_accepted();
    }
    for _ in 0..2 {
        client
            .message("a@a.example", &["rcpt@dest.example"])
            .await
            .assert_refused_at_mail(&rate_limited());
    }
    quit_session(client).await;
    // The cap is per connection: a new one sends again.
    let (accepted, _) = send_many(server.addr(), None, "a@a.example", 3).await;
    assert_eq!(accepted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_cap_holds_across_a_reload() {
    let scenario = "[limits]\nconnections_per_ip = 2\n";
    let options = options(
        Arc::new(OffsetClock::new()),
        Arc::new(MemoryStore::new()),
        LimitOverrides::default(),
    );
    let server = serve(options, "caps.toml", scenario).await;
    let first = open(server.addr(), None).await;
    let second = open(server.addr(), None).await;
    // What a reload on SIGHUP, a file change or `PUT /api/scenario` does.
    server
        .server
        .scenario()
        .expect("a scenario is served")
        .replace("caps.toml", scenario)
        .expect("the scenario loads again");
    let (mut third, greeting) = connect(server.addr()).await;
    greeting.assert(421, "4.7.0");
    assert!(third.try_reply().await.is_none());
    quit_session(first).await;
    quit_session(second).await;
}

// ---------------------------------------------------------------------------------------------
// 8. The binary's limit flags.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_limit_account_flag_takes_effect() {
    let binary = start_binary_on_loopback(&["--limits", "ovh", "--limit-account", "2/1h"]);
    let (accepted, refused) =
        send_many(binary.address("smtp"), Some("alice"), "a@a.example", 3).await;
    assert_eq!(accepted, 2);
    assert_eq!(refused.len(), 1);
    refused[0].assert_refused_at_mail(&rate_limited());
    // The per-IP part of the preset stays: other accounts send on.
    let (accepted, _) = send_many(binary.address("smtp"), Some("bob"), "b@b.example", 2).await;
    assert_eq!(accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_limits_ovh_preset_is_200_per_account_and_300_per_ip() {
    let binary = start_binary_on_loopback(&["--limits", "ovh"]);
    let (accepted, refused) =
        send_many(binary.address("smtp"), Some("alice"), "a@a.example", 201).await;
    assert_eq!(accepted, 200);
    refused[0].assert_refused_at_mail(&rate_limited());
    let (accepted, refused) =
        send_many(binary.address("smtp"), Some("bob"), "b@b.example", 101).await;
    assert_eq!(accepted, 100, "the IP had 100 left of 300");
    refused[0].assert_refused_at_mail(&rate_limited());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_limit_ip_flag_takes_effect() {
    let binary = start_binary_on_loopback(&["--limit-ip", "3/1h"]);
    let (a, _) = send_many(binary.address("smtp"), Some("alice"), "a@a.example", 2).await;
    let (b, refused) = send_many(binary.address("smtp"), Some("bob"), "b@b.example", 2).await;
    assert_eq!((a, b), (2, 1));
    refused[0].assert_refused_at_mail(&rate_limited());
}

#[test]
fn binary_refuses_bad_limit_flags() {
    for (flag, value, says) in [
        (
            "--limit-account",
            "0/1h",
            "the maximum must be a whole number of at least 1",
        ),
        ("--limit-account", "abc", "write max/window, e.g. 200/1h"),
        (
            "--limit-account",
            "200/0s",
            "the window must be a duration such as 1h or 30m",
        ),
        (
            "--limit-ip",
            "x/1h",
            "the maximum must be a whole number of at least 1",
        ),
        ("--limits", "yahoo", "invalid value 'yahoo' for '--limits"),
    ] {
        let output = binary_command(&[], &LOOPBACK)
            .args([flag, value])
            .stdin(Stdio::null())
            .output()
            .expect("the failmail binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{flag} {value} must fail: {stderr}"
        );
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{flag} {value}: unclear message: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{flag} {value} must not serve: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Redis down: temporary refusals, never unlimited; back when Redis is.

/// A Redis of its own, a server whose account limit (5 per hour) lives there, and alice's
/// session with one message accepted; `None` (skip) without `redis-server`.
async fn alice_on_redis() -> Option<(RedisServer, Instance, PlainConn)> {
    let redis = RedisServer::start()?;
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        redis_store(&redis).await,
        per_account(5),
    ))
    .await;
    let mut client = open(server.addr(), Some("alice")).await;
    client
        .message("a@a.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    Some((redis, server, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_gives_451_4_3_0_and_recovers() {
    let Some((mut redis, server, mut client)) = alice_on_redis().await else {
        return;
    };
    let addr = server.addr();

    redis.kill();
    // Every MAIL is refused temporarily while Redis is away: never accepted without limits.
    for _ in 0..3 {
        let tx = client.message("a@a.example", &["rcpt@dest.example"]).await;
        tx.mail.assert(451, "4.3.0");
        assert!(tx.end.is_none(), "{tx:?}");
    }
    // New sessions too.
    let mut other = open(addr, Some("bob")).await;
    other
        .message("b@b.example", &["rcpt@dest.example"])
        .await
        .mail
        .assert(451, "4.3.0");
    quit_session(other).await;

    // Back on the same port (empty: it keeps nothing on disk). The store reconnects by itself.
    let _redis = redis.restart();
    let mut recovered = false;
    for _ in 0..50 {
        let tx = client.message("a@a.example", &["rcpt@dest.example"]).await;
        if tx.accepted() {
            recovered = true;
            break;
        }
        tx.mail.assert(451, "4.3.0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "MAIL still refused 5 s after Redis came back");
    // Counting is right again: 1 used since the restart, so 4 more, then refused.
    assert_eq!(server.used("account:alice").await, 1);
    use_up(&server, &mut client, "account:alice", 4, 5).await;
    quit_session(client).await;
}

/// Redis frozen (SIGSTOP) while MAILs wait for their reservation: each gets 451 4.3.0 after the
/// store's response timeout, but the scripts stay queued in Redis's socket buffer and run when it
/// resumes (SIGCONT). None of them may leave a use behind: once Redis answers again the limit is
/// exactly as before the stall, and every allowed message still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stall_leaves_the_limit_as_it_was() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        redis_store(&redis).await,
        LimitOverrides {
            per_ip: Some(Window { max: 10, per: HOUR }),
            ..LimitOverrides::default()
        },
    ))
    .await;
    let addr = server.addr();
    let mut client = open(addr, None).await;
    for _ in 0..2 {
        client
            .message("a@a.example", &["rcpt@dest.example"])
            .await
            .assert_accepted();
    }
    assert_eq!(server.used(IP_KEY).await, 2);

    redis.signal("STOP");
    // Three MAILs at once, on three connections: each waits for the store's 2 s response timeout.
    let stalled: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = open(addr, None).await;
                let tx = client.message("b@b.example", &["rcpt@dest.example"]).await;
                tx.mail.assert(451, "4.3.0");
                assert!(tx.end.is_none(), "{tx:?}");
                quit_session(client).await;
            })
        })
        .collect();
    for session in stalled {
        session.await.expect("a stalled session ends with 451");
    }
    redis.signal("CONT");

    // Bounded: the queued scripts run at once when Redis resumes, and their cancellations after.
    let mut used = 0;
    for _ in 0..100 {
        used = server.used(IP_KEY).await;
        if used == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        used,
        2,
        "the stall left {} phantom uses",
        used.saturating_sub(2)
    );
    use_up(&server, &mut client, IP_KEY, 8, 10).await;
    quit_session(client).await;
}

/// Redis restarted while the store's connection was idle: the first call finds the connection
/// dropped ("broken pipe") and is sent once more on a new connection, so the first MAIL after
/// the restart is accepted instead of refused with 451.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_mail_after_a_redis_restart_is_served() {
    let Some((mut redis, server, mut client)) = alice_on_redis().await else {
        return;
    };
    redis.kill();
    let _redis = redis.restart();
    client
        .message("a@a.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    assert_eq!(server.used("account:alice").await, 1);
    quit_session(client).await;
}
