//! Rate limits, greylisting and connection caps, proved over real SMTP sessions.
//!
//! Every test starts its own in-process server (or the real binary) on 127.0.0.1 port 0 and talks
//! to it with a raw pipelining SMTP client that checks each reply's code and enhanced status code.
//! Time is moved with the server's clock (never with sleeps); every wait on the network or on a
//! background release is bounded. Tests that need Redis start their own `redis-server` on a free
//! loopback port and stop it when they end (`.ci/run` installs the Debian package).

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::binary::{binary_command, start_binary_with, Binary};
use common::redis::RedisServer;
use common::{PlainConn, Reply};
use failmail::app::{ScenarioConfig, StateConfig};
use failmail::clock::{Clock, ManualClock, OffsetClock};
use failmail::limits::memory::MemoryStore;
use failmail::limits::redis::RedisStore;
use failmail::limits::LimitStore;
use failmail::limits::{LimitOverrides, Window};
use failmail::scenario::catalog::Catalog;
use failmail::scenario::engine::Engine;
use failmail::scenario::flavor::Flavor;
use failmail::{AppConfig, RunningApp};
const HOUR: Duration = Duration::from_secs(3600);
/// Where a limit key lives for clients on loopback.
const IP_KEY: &str = "ip:127.0.0.1";

// ---------------------------------------------------------------------------------------------
// Expected replies, from the catalog (and pinned to the values the catalog documents).

/// The catalog's generic (code, enhanced status, text) for `name`.
fn catalog(name: &str) -> (u16, String, String) {
    let entry = Catalog::builtin()
        .get(name)
        .unwrap_or_else(|| panic!("catalog has {name}"));
    let (variant, _) = entry.variant(Flavor::Generic);
    (
        variant.code,
        variant.status.to_string(),
        variant.text.join(" "),
    )
}

/// The generic `rate_limited` refusal: 451 4.7.1.
fn rate_limited() -> (u16, String, String) {
    let expected = catalog("rate_limited");
    assert_eq!((expected.0, expected.1.as_str()), (451, "4.7.1"));
    expected
}

// ---------------------------------------------------------------------------------------------
// Sessions, on the shared raw client.

/// What one transaction got.
#[derive(Debug)]
struct Tx {
    mail: Reply,
    rcpts: Vec<Reply>,
    data: Reply,
    /// The reply after the body, when DATA was answered with 354.
    end: Option<Reply>,
}

impl Tx {
    fn accepted(&self) -> bool {
        self.end.as_ref().is_some_and(|r| r.code == 250)
    }

    /// Asserts the message was accepted with 250 2.0.0.
    #[track_caller]
    fn assert_accepted(&self) {
        assert!(self.accepted(), "message not accepted: {self:?}");
        self.end.as_ref().unwrap().assert(250, "2.0.0");
    }

    /// Asserts the transaction was refused at MAIL with `expected`, nothing after it accepted.
    #[track_caller]
    fn assert_refused_at_mail(&self, expected: &(u16, String, String)) {
        self.mail.assert_catalog(expected);
        assert!(
            self.end.is_none() && self.data.code >= 500,
            "a refused MAIL must not let a message through: {self:?}"
        );
    }
}

/// The transaction every test here sends, pipelined as a client that uses PIPELINING does.
trait Pipelined {
    /// MAIL, every RCPT and DATA in one write, then the body if DATA got 354.
    async fn message(&mut self, from: &str, rcpts: &[&str]) -> Tx;
}

impl Pipelined for PlainConn {
    async fn message(&mut self, from: &str, rcpts: &[&str]) -> Tx {
        let mut batch = format!("MAIL FROM:<{from}>\r\n");
        for rcpt in rcpts {
            batch.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
        }
        batch.push_str("DATA\r\n");
        self.send(&batch).await;
        let mail = self.reply().await;
        let mut replies = Vec::new();
        for _ in rcpts {
            replies.push(self.reply().await);
        }
        let data = self.reply().await;
        let end = if data.code == 354 {
            self.send(format!(
                "From: <{from}>\r\nTo: <{}>\r\nSubject: limits\r\n\r\nHello.\r\n.\r\n",
                rcpts[0]
            ))
            .await;
            Some(self.reply().await)
        } else {
            None
        };
        Tx {
            mail,
            rcpts: replies,
            data,
            end,
        }
    }
}

/// Connects and reads the greeting, whatever it is.
async fn connect(addr: SocketAddr) -> (PlainConn, Reply) {
    let mut client = PlainConn::connect(addr).await;
    let greeting = client.reply().await;
    (client, greeting)
}

/// Connects, expects 220, says EHLO and, with `user`, authenticates with AUTH PLAIN.
async fn open(addr: SocketAddr, user: Option<&str>) -> PlainConn {
    let (mut client, greeting) = connect(addr).await;
    assert_eq!(greeting.code, 220, "greeting: {greeting:?}");
    client.command("EHLO client.example").await.assert(250, "");
    if let Some(user) = user {
        client.auth_plain(user, "pw").await.assert(235, "2.7.0");
    }
    client
}

/// QUIT, answered with 221 2.0.0.
async fn quit_session(mut client: PlainConn) {
    client.command("QUIT").await.assert(221, "2.0.0");
}

/// `left` more messages, each accepted, then one refused at MAIL with the rate-limit reply;
/// `key` is then used `max` times (waited for, bounded: releases go back in the background).
async fn use_up(server: &Instance, client: &mut PlainConn, key: &str, left: usize, max: u64) {
    for _ in 0..left {
        client
            .message("a@a.example", &["rcpt@dest.example"])
            .await
            .assert_accepted();
    }
    client
        .message("a@a.example", &["rcpt@dest.example"])
        .await
        .assert_refused_at_mail(&rate_limited());
    server.wait_used(key, max).await;
}

/// Sends `count` messages from `from` on one connection (authenticated as `user` if given);
/// returns how many were accepted and the first refusal seen at MAIL.
async fn send_many(
    addr: SocketAddr,
    user: Option<&str>,
    from: &str,
    count: usize,
) -> (usize, Vec<Tx>) {
    let mut client = open(addr, user).await;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for _ in 0..count {
        let tx = client.message(from, &["rcpt@dest.example"]).await;
        if tx.accepted() {
            tx.assert_accepted();
            accepted += 1;
        } else {
            refused.push(tx);
        }
    }
    quit_session(client).await;
    (accepted, refused)
}

// ---------------------------------------------------------------------------------------------
// Servers.

struct Instance {
    server: RunningApp,
}

impl Instance {
    fn addr(&self) -> SocketAddr {
        self.server.addresses().smtp
    }

    /// The live scenario's engine: its limits, rule state and store.
    fn engine(&self) -> Arc<Engine> {
        self.server
            .scenario()
            .expect("a scenario is served")
            .engine()
    }

    /// The current use of `key` (0 when absent).
    async fn used(&self, key: &str) -> u64 {
        self.engine()
            .usage()
            .await
            .expect("usage is readable")
            .into_iter()
            .find(|u| u.key == key)
            .map_or(0, |u| u.used)
    }

    /// Waits (bounded: 50 × 20 ms) until `key` is used `expected` times; released reservations
    /// of a closed connection go back when its session ends, just after the client saw the close.
    async fn wait_used(&self, key: &str, expected: u64) {
        let mut last = 0;
        for _ in 0..50 {
            last = self.used(key).await;
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{key} is used {last} times, expected {expected}");
    }
}

fn options(clock: Arc<dyn Clock>, store: Arc<dyn LimitStore>, limits: LimitOverrides) -> AppConfig {
    common::scenario_with(|c| {
        c.server.certificate = None;
        c.clock = clock;
        c.state = StateConfig::Store(store);
        c.scenario = Some(ScenarioConfig {
            limits,
            ..ScenarioConfig::default()
        });
    })
}

/// Starts a server for the scenario `text` (named `origin`) with `config`'s limits and store.
async fn serve(config: AppConfig, origin: &str, text: &str) -> Instance {
    Instance {
        server: common::start_toml(config, origin, text).await,
    }
}

/// Starts a server for the scenario `text` (named `origin`), with the memory store, the real
/// clock and no command-line limits.
async fn serve_in_memory(origin: &str, text: &str) -> Instance {
    let config = options(
        Arc::new(OffsetClock::new()),
        Arc::new(MemoryStore::new()),
        LimitOverrides::default(),
    );
    serve(config, origin, text).await
}

/// Starts a server for the built-in scenario with the command line's limits.
async fn serve_builtin(config: AppConfig) -> Instance {
    Instance {
        server: common::start(config).await,
    }
}

fn per_account(max: u64) -> LimitOverrides {
    LimitOverrides {
        per_account: Some(Window { max, per: HOUR }),
        ..LimitOverrides::default()
    }
}

/// A clock standing still at a fixed time, moved only by `advance`.
fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)))
}

// ---------------------------------------------------------------------------------------------
// Redis.

async fn redis_store(redis: &RedisServer) -> Arc<dyn LimitStore> {
    Arc::new(
        RedisStore::connect(&redis.url())
            .await
            .expect("connects to the test redis-server"),
    )
}

/// A check that must hold whatever the limit store, as two tests: `$memory` against the
/// in-process store, `$redis` against a `redis-server` of its own.
macro_rules! for_each_store {
    (
        check: $check:ident,
        memory: $memory:ident,
        redis: $redis:ident,
        worker_threads: $threads:tt $(,)?
    ) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $memory() {
            $check(Arc::new(MemoryStore::new())).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $redis() {
            let Some(redis) = RedisServer::start() else {
                return;
            };
            $check(redis_store(&redis).await).await;
        }
    };
}

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

// ---------------------------------------------------------------------------------------------
// 8. The binary's limit flags.

/// The listeners of every binary run here: SMTP and HTTP on loopback port 0, no TLS.
const LOOPBACK: [&str; 5] = ["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-tls"];

/// Starts the `failmail` binary on [`LOOPBACK`] with `args`; killed when dropped.
fn start_binary_on_loopback(args: &[&str]) -> Binary {
    let args: Vec<&str> = LOOPBACK.iter().chain(args).copied().collect();
    start_binary_with(&[], &args, &[("FAILMAIL_LOG", "warn")])
}

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
