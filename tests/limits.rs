//! Sending limits and greylisting, proved over real SMTP sessions: OVH's 200 per hour per account
//! and 300 per hour per IP, refusals and transactions without a message taking nothing, exactness
//! under concurrency, two instances sharing one Redis, greylisting, and counting recipients.
//! Connection caps, the binary's flags and Redis down are in `tests/limits_server.rs`; receiving
//! limits in `tests/limits_receiving.rs`; their shared helpers in `tests/common/limits.rs`.
//!
//! Every test starts its own in-process server (or the real binary) on 127.0.0.1 port 0 and talks
//! to it with a raw pipelining SMTP client that checks each reply's code and enhanced status code.
//! Time is moved with the server's clock (never with sleeps); every wait on the network or on a
//! background release is bounded. Tests that need Redis start their own `redis-server` on a free
//! loopback port and stop it when they end (`.ci/run` installs the Debian package).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::limits::{
    catalog, for_each_store, manual_clock, open, options, per_account, quit_session, rate_limited,
    redis_store, send_many, serve, serve_builtin, serve_in_memory, use_up, Pipelined, HOUR, IP_KEY,
};
use common::redis::RedisServer;
use failmail::clock::{Clock, OffsetClock};
use failmail::limits::memory::MemoryStore;
use failmail::limits::LimitStore;
use failmail::limits::{LimitOverrides, Window};

// ---------------------------------------------------------------------------------------------
// 1. OVH limits: 200 per hour per account.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ovh_account_limit_is_200_per_hour_over_many_connections() {
    let clock = Arc::new(OffsetClock::new());
    let server = serve_builtin(options(
        clock.clone(),
        Arc::new(MemoryStore::new()),
        LimitOverrides::OVH,
    ))
    .await;
    let refusal = rate_limited();

    // 200 messages as alice over connections of different lengths, each with another MAIL
    // FROM: the AUTH identity is the account, not the sender address.
    let mut sent = 0;
    for (i, count) in [1, 5, 20, 20, 50, 4, 100].into_iter().enumerate() {
        let from = format!("sender{i}@alice.example");
        let (accepted, refused) = send_many(server.addr(), Some("alice"), &from, count).await;
        assert_eq!(accepted, count, "refused: {refused:?}");
        sent += accepted;
    }
    assert_eq!(sent, 200);
    assert_eq!(server.used("account:alice").await, 200);
    assert_eq!(server.used(IP_KEY).await, 200);

    // The 201st is refused at MAIL with the rate_limited reply, and takes nothing.
    let mut client = open(server.addr(), Some("alice")).await;
    let tx = client
        .message("sender0@alice.example", &["rcpt@dest.example"])
        .await;
    tx.assert_refused_at_mail(&refusal);
    // The refusal is per account: another account from the same IP (at 200 of 300) still sends.
    let mut other = open(server.addr(), Some("dave")).await;
    other
        .message("dave@dave.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    // Same connection, alice still refused; nothing of it counted.
    client
        .message("sender0@alice.example", &["rcpt@dest.example"])
        .await
        .assert_refused_at_mail(&refusal);
    assert_eq!(server.used("account:alice").await, 200);
    assert_eq!(server.used(IP_KEY).await, 201);

    // One hour later the window is free again: the next one goes through, on the same connection.
    clock.advance(HOUR);
    client
        .message("sender0@alice.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    assert_eq!(server.used("account:alice").await, 1);
    quit_session(client).await;
    quit_session(other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_auth_the_case_folded_mail_from_is_the_account() {
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        Arc::new(MemoryStore::new()),
        LimitOverrides::OVH,
    ))
    .await;
    let (a, _) = send_many(server.addr(), None, "Bob@X.example", 100).await;
    let (b, _) = send_many(server.addr(), None, "bob@x.example", 100).await;
    assert_eq!((a, b), (100, 100));
    assert_eq!(server.used("account:bob@x.example").await, 200);

    let mut client = open(server.addr(), None).await;
    for from in ["BOB@X.EXAMPLE", "bob@x.example", "Bob@X.example"] {
        client
            .message(from, &["rcpt@dest.example"])
            .await
            .assert_refused_at_mail(&rate_limited());
    }
    // Another address is another account.
    client
        .message("bob2@x.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    quit_session(client).await;
}

// ---------------------------------------------------------------------------------------------
// 2. OVH limits: 300 per hour per IP, whatever the accounts.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ovh_ip_limit_is_300_per_hour_across_accounts() {
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        Arc::new(MemoryStore::new()),
        LimitOverrides::OVH,
    ))
    .await;
    let (alice, bob) = tokio::join!(
        send_many(server.addr(), Some("alice"), "alice@a.example", 150),
        send_many(server.addr(), Some("bob"), "bob@b.example", 150),
    );
    assert_eq!((alice.0, bob.0), (150, 150));
    assert_eq!(server.used(IP_KEY).await, 300);

    // alice (150 of 200) and a brand new account are both refused: the IP is full.
    for user in ["alice", "carol"] {
        let mut client = open(server.addr(), Some(user)).await;
        client
            .message("x@a.example", &["rcpt@dest.example"])
            .await
            .assert_refused_at_mail(&rate_limited());
        quit_session(client).await;
    }
    assert_eq!(server.used("account:alice").await, 150);
    assert_eq!(server.used("account:carol").await, 0);
    assert_eq!(server.used(IP_KEY).await, 300);
}

// ---------------------------------------------------------------------------------------------
// 3. Refusals take nothing; transactions without a message give their reservation back.

async fn reservations_are_given_back(store: Arc<dyn LimitStore>) {
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        store,
        LimitOverrides {
            per_account: Some(Window { max: 3, per: HOUR }),
            per_ip: Some(Window { max: 6, per: HOUR }),
            ..LimitOverrides::default()
        },
    ))
    .await;
    let addr = server.addr();
    let (accepted, _) = send_many(addr, Some("alice"), "a@a.example", 2).await;
    assert_eq!(accepted, 2);
    server.wait_used("account:alice", 2).await;

    // MAIL + RSET, again and again: every new MAIL gives back what the last one reserved.
    let mut client = open(addr, Some("alice")).await;
    for _ in 0..5 {
        client
            .command("MAIL FROM:<a@a.example>")
            .await
            .assert(250, "2.1.0");
        client.command("RSET").await.assert(250, "2.0.0");
    }
    // Still room for exactly one more message.
    use_up(&server, &mut client, "account:alice", 1, 3).await;
    quit_session(client).await;

    // Refused MAILs take nothing, not even from the IP limit that had room.
    let mut client = open(addr, Some("alice")).await;
    for _ in 0..10 {
        client
            .message("a@a.example", &["rcpt@dest.example"])
            .await
            .assert_refused_at_mail(&rate_limited());
    }
    quit_session(client).await;
    server.wait_used(IP_KEY, 3).await;
    let (bob, refused) = send_many(addr, Some("bob"), "b@b.example", 4).await;
    assert_eq!(bob, 3, "the IP had room for exactly 3 more");
    refused[0].assert_refused_at_mail(&rate_limited());
    server.wait_used(IP_KEY, 6).await;

    // A transaction that ends by disconnect (with or without QUIT) gives its reservation back.
    server.engine().reset().await.unwrap();
    let (accepted, _) = send_many(addr, Some("carol"), "c@c.example", 1).await;
    assert_eq!(accepted, 1);
    for quit in [false, true] {
        let mut client = open(addr, Some("carol")).await;
        client
            .command("MAIL FROM:<c@c.example>")
            .await
            .assert(250, "2.1.0");
        client
            .command("RCPT TO:<rcpt@dest.example>")
            .await
            .assert(250, "2.1.5");
        server.wait_used("account:carol", 2).await;
        if quit {
            quit_session(client).await;
        } else {
            drop(client);
        }
        server.wait_used("account:carol", 1).await;
        server.wait_used(IP_KEY, 1).await;
    }
    // And so the account still has exactly 2 of 3 left.
    let (accepted, _) = send_many(addr, Some("carol"), "c@c.example", 3).await;
    assert_eq!(accepted, 2);
}

for_each_store! {
    check: reservations_are_given_back,
    memory: reservations_are_given_back_memory,
    redis: reservations_are_given_back_redis,
    worker_threads: 4,
}

/// RSET (and EHLO, which RFC 5321 4.1.4 says also resets) ends the transaction: its reservation
/// must go back then, not only at the next MAIL or at the end of the session.
async fn reset_gives_the_reservation_back_at_once(store: Arc<dyn LimitStore>) {
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        store,
        per_account(200),
    ))
    .await;
    let mut client = open(server.addr(), Some("alice")).await;
    client
        .message("a@a.example", &["rcpt@dest.example"])
        .await
        .assert_accepted();
    server.wait_used("account:alice", 1).await;
    for reset in ["RSET", "EHLO client.example"] {
        client
            .command("MAIL FROM:<a@a.example>")
            .await
            .assert(250, "2.1.0");
        server.wait_used("account:alice", 2).await;
        let reply = client.command(reset).await;
        assert_eq!(reply.code, 250, "{reset}: {reply:?}");
        // The session idles with no transaction: usage must be back to 1.
        client.command("NOOP").await.assert(250, "2.0.0");
        server.wait_used("account:alice", 1).await;
    }
    quit_session(client).await;
}

for_each_store! {
    check: reset_gives_the_reservation_back_at_once,
    memory: reset_gives_the_reservation_back_at_once_memory,
    redis: reset_gives_the_reservation_back_at_once_redis,
    worker_threads: 4,
}

/// `engine.usage()` (what the HTTP API shows) counts each key over its own window.
async fn usage_reports_each_key_over_its_own_window(store: Arc<dyn LimitStore>) {
    let clock = Arc::new(OffsetClock::new());
    let server = serve_builtin(options(
        clock.clone(),
        store,
        LimitOverrides {
            per_account: Some(Window { max: 2, per: HOUR }),
            per_ip: Some(Window {
                max: 100,
                per: 24 * HOUR,
            }),
            ..LimitOverrides::default()
        },
    ))
    .await;
    let before = clock.now_ms();
    let (accepted, _) = send_many(server.addr(), Some("alice"), "a@a.example", 2).await;
    assert_eq!(accepted, 2);
    // Each key tells when its oldest use was taken (so when its window frees the next use).
    let usage = server.engine().usage().await.expect("usage is readable");
    assert_eq!(usage.len(), 2, "{usage:?}");
    for key in &usage {
        assert!(
            (before..=clock.now_ms()).contains(&key.oldest_ms),
            "{key:?}"
        );
    }
    clock.advance(HOUR);
    // The account's hour is over (the IP's day is not): usage must say the account is free...
    assert_eq!(server.used(IP_KEY).await, 2);
    assert_eq!(
        server.used("account:alice").await,
        0,
        "account:alice's 1 h window is empty, yet usage counts its uses over the IP's 24 h"
    );
    // ...as the limit itself does.
    let (accepted, _) = send_many(server.addr(), Some("alice"), "a@a.example", 2).await;
    assert_eq!(accepted, 2);
}

for_each_store! {
    check: usage_reports_each_key_over_its_own_window,
    memory: usage_reports_each_key_over_its_own_window_memory,
    redis: usage_reports_each_key_over_its_own_window_redis,
    worker_threads: 4,
}

// ---------------------------------------------------------------------------------------------
// 4. Exact under concurrency.

async fn fifty_racers_get_exactly_200(store: Arc<dyn LimitStore>) {
    let server = serve_builtin(options(
        Arc::new(OffsetClock::new()),
        store,
        per_account(200),
    ))
    .await;
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..50 {
        tasks.spawn(async move {
            // Every racer is the same account (AUTH identity), from its own MAIL FROM.
            let from = format!("racer{task}@race.example");
            send_many(addr, Some("racer"), &from, 10).await
        });
    }
    let (mut accepted, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (ok, refusals) = result.expect("a racer panicked");
        for tx in &refusals {
            tx.assert_refused_at_mail(&rate_limited());
        }
        accepted += ok;
        refused += refusals.len();
    }
    assert_eq!((accepted, refused), (200, 300));
    assert_eq!(server.used("account:racer").await, 200);
}

for_each_store! {
    check: fifty_racers_get_exactly_200,
    memory: concurrent_senders_never_exceed_the_limit_memory,
    redis: concurrent_senders_never_exceed_the_limit_redis,
    worker_threads: 8,
}

// ---------------------------------------------------------------------------------------------
// 5. Two instances sharing one Redis act as one server.

async fn two_instances_one_redis(
    clock_a: Arc<dyn Clock>,
    clock_b: Arc<dyn Clock>,
) -> Option<usize> {
    let redis = RedisServer::start()?;
    let a = serve_builtin(options(
        clock_a,
        redis_store(&redis).await,
        per_account(200),
    ))
    .await;
    let b = serve_builtin(options(
        clock_b,
        redis_store(&redis).await,
        per_account(200),
    ))
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for instance in [a.addr(), b.addr()] {
        for part in 0..5 {
            let from = format!("part{part}@shared.example");
            tasks.spawn(async move { send_many(instance, Some("shared"), &from, 30).await });
        }
    }
    let mut accepted = 0;
    while let Some(result) = tasks.join_next().await {
        let (ok, refusals) = result.expect("a sender panicked");
        for tx in &refusals {
            tx.assert_refused_at_mail(&rate_limited());
        }
        accepted += ok;
    }
    Some(accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_instances_sharing_redis_enforce_one_limit() {
    let Some(accepted) =
        two_instances_one_redis(Arc::new(OffsetClock::new()), Arc::new(OffsetClock::new())).await
    else {
        return;
    };
    assert_eq!(accepted, 200, "150 sent to each instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_instances_with_the_same_manual_clock_enforce_one_limit() {
    let clock = manual_clock();
    let Some(accepted) = two_instances_one_redis(clock.clone(), clock).await else {
        return;
    };
    assert_eq!(accepted, 200, "150 sent to each instance");
}

// ---------------------------------------------------------------------------------------------
// 6. Greylisting.

async fn greylisting_delays_each_triplet(store: Arc<dyn LimitStore>) {
    let clock = manual_clock();
    let server = serve(
        options(clock.clone(), store, LimitOverrides::default()),
        "greylisting.toml",
        "[greylisting]\ndelay = \"300s\"\n",
    )
    .await;
    let greylisted = catalog("greylisted");
    assert_eq!((greylisted.0, greylisted.1.as_str()), (451, "4.7.1"));
    let attempt = |rcpt: &'static str| {
        let addr = server.addr();
        async move {
            let mut client = open(addr, None).await;
            let tx = client.message("sender@s.example", &[rcpt]).await;
            quit_session(client).await;
            tx
        }
    };

    // First sight of the triplet: greylisted at RCPT, no message.
    let tx = attempt("bob@dest.example").await;
    tx.mail.assert(250, "2.1.0");
    tx.rcpts[0].assert_catalog(&greylisted);
    assert!(tx.end.is_none(), "{tx:?}");

    // 299 s later: still too early (and the retry does not restart the delay).
    clock.advance(Duration::from_secs(299));
    attempt("bob@dest.example").await.rcpts[0].assert_catalog(&greylisted);

    // 300 s after the first attempt: through.
    clock.advance(Duration::from_secs(1));
    attempt("bob@dest.example").await.assert_accepted();

    // Another recipient is another triplet with its own delay, while bob keeps passing.
    attempt("carol@dest.example").await.rcpts[0].assert_catalog(&greylisted);
    attempt("bob@dest.example").await.assert_accepted();
    clock.advance(Duration::from_secs(299));
    attempt("carol@dest.example").await.rcpts[0].assert_catalog(&greylisted);
    clock.advance(Duration::from_secs(1));
    attempt("carol@dest.example").await.assert_accepted();
}

for_each_store! {
    check: greylisting_delays_each_triplet,
    memory: greylisting_memory,
    redis: greylisting_redis,
    worker_threads: 4,
}

// ---------------------------------------------------------------------------------------------
// Counting recipients instead of messages.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn count_recipient_reserves_one_use_per_rcpt() {
    let server = serve_in_memory(
        "recipients.toml",
        "[limits]\nper_account = { max = 5, per = \"1h\" }\ncount = \"recipient\"\n",
    )
    .await;
    let refusal = rate_limited();
    let mut client = open(server.addr(), Some("alice")).await;
    let three = ["r1@dest.example", "r2@dest.example", "r3@dest.example"];
    client
        .message("a@a.example", &three)
        .await
        .assert_accepted();
    assert_eq!(server.used("account:alice").await, 3);

    // Two recipients fit, the third is refused at RCPT; the message goes to the two.
    let tx = client.message("a@a.example", &three).await;
    tx.rcpts[0].assert(250, "2.1.5");
    tx.rcpts[1].assert(250, "2.1.5");
    tx.rcpts[2].assert_catalog(&refusal);
    tx.assert_accepted();
    assert_eq!(server.used("account:alice").await, 5);

    // Full: the next recipient is refused (MAIL itself still passes).
    let tx = client.message("a@a.example", &three[..1]).await;
    tx.mail.assert(250, "2.1.0");
    tx.rcpts[0].assert_catalog(&refusal);
    assert!(tx.end.is_none(), "{tx:?}");
    quit_session(client).await;
    assert_eq!(server.used("account:alice").await, 5);
}
