//! What the `tests/limits*.rs` files share: the expected catalog replies, a pipelined
//! transaction on the shared raw client ([`Pipelined`]), servers with a chosen clock, limit store
//! and limits ([`Instance`]), the Redis store, [`for_each_store`] (one check as two tests, memory
//! and Redis) and the binary on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

use super::binary::{start_binary_with, Binary};
use super::redis::RedisServer;
use super::{PlainConn, Reply};

/// One hour: the window of the limits these tests use.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// Where a limit key lives for clients on loopback.
pub(crate) const IP_KEY: &str = "ip:127.0.0.1";

// ---------------------------------------------------------------------------------------------
// Expected replies, from the catalog (and pinned to the values the catalog documents).

/// The catalog's generic (code, enhanced status, text) for `name`.
pub(crate) fn catalog(name: &str) -> (u16, String, String) {
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
pub(crate) fn rate_limited() -> (u16, String, String) {
    let expected = catalog("rate_limited");
    assert_eq!((expected.0, expected.1.as_str()), (451, "4.7.1"));
    expected
}

// ---------------------------------------------------------------------------------------------
// Sessions, on the shared raw client.

/// What one transaction got.
#[derive(Debug)]
pub(crate) struct Tx {
    pub(crate) mail: Reply,
    pub(crate) rcpts: Vec<Reply>,
    pub(crate) data: Reply,
    /// The reply after the body, when DATA was answered with 354.
    pub(crate) end: Option<Reply>,
}

impl Tx {
    pub(crate) fn accepted(&self) -> bool {
        self.end.as_ref().is_some_and(|r| r.code == 250)
    }

    /// Asserts the message was accepted with 250 2.0.0.
    #[track_caller]
    pub(crate) fn assert_accepted(&self) {
        assert!(self.accepted(), "message not accepted: {self:?}");
        self.end.as_ref().unwrap().assert(250, "2.0.0");
    }

    /// Asserts the transaction was refused at MAIL with `expected`, nothing after it accepted.
    #[track_caller]
    pub(crate) fn assert_refused_at_mail(&self, expected: &(u16, String, String)) {
        self.mail.assert_catalog(expected);
        assert!(
            self.end.is_none() && self.data.code >= 500,
            "a refused MAIL must not let a message through: {self:?}"
        );
    }
}

/// The transaction every test here sends, pipelined as a client that uses PIPELINING does.
pub(crate) trait Pipelined {
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
pub(crate) async fn connect(addr: SocketAddr) -> (PlainConn, Reply) {
    let mut client = PlainConn::connect(addr).await;
    let greeting = client.reply().await;
    (client, greeting)
}

/// Connects, expects 220, says EHLO and, with `user`, authenticates with AUTH PLAIN.
pub(crate) async fn open(addr: SocketAddr, user: Option<&str>) -> PlainConn {
    let (mut client, greeting) = connect(addr).await;
    assert_eq!(greeting.code, 220, "greeting: {greeting:?}");
    client.command("EHLO client.example").await.assert(250, "");
    if let Some(user) = user {
        client.auth_plain(user, "pw").await.assert(235, "2.7.0");
    }
    client
}

/// QUIT, answered with 221 2.0.0.
pub(crate) async fn quit_session(mut client: PlainConn) {
    client.command("QUIT").await.assert(221, "2.0.0");
}

/// `left` more messages, each accepted, then one refused at MAIL with the rate-limit reply;
/// `key` is then used `max` times (waited for, bounded: releases go back in the background).
pub(crate) async fn use_up(
    server: &Instance,
    client: &mut PlainConn,
    key: &str,
    left: usize,
    max: u64,
) {
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
pub(crate) async fn send_many(
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

pub(crate) struct Instance {
    pub(crate) server: RunningApp,
}

impl Instance {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addresses().smtp
    }

    /// The live scenario's engine: its limits, rule state and store.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        self.server
            .scenario()
            .expect("a scenario is served")
            .engine()
    }

    /// The current use of `key` (0 when absent).
    pub(crate) async fn used(&self, key: &str) -> u64 {
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
    pub(crate) async fn wait_used(&self, key: &str, expected: u64) {
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

pub(crate) fn options(
    clock: Arc<dyn Clock>,
    store: Arc<dyn LimitStore>,
    limits: LimitOverrides,
) -> AppConfig {
    super::scenario_with(|c| {
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
pub(crate) async fn serve(config: AppConfig, origin: &str, text: &str) -> Instance {
    Instance {
        server: super::start_toml(config, origin, text).await,
    }
}

/// Starts a server for the scenario `text` (named `origin`), with the memory store, the real
/// clock and no command-line limits.
pub(crate) async fn serve_in_memory(origin: &str, text: &str) -> Instance {
    let config = options(
        Arc::new(OffsetClock::new()),
        Arc::new(MemoryStore::new()),
        LimitOverrides::default(),
    );
    serve(config, origin, text).await
}

/// Starts a server for the built-in scenario with the command line's limits.
pub(crate) async fn serve_builtin(config: AppConfig) -> Instance {
    Instance {
        server: super::start(config).await,
    }
}

pub(crate) fn per_account(max: u64) -> LimitOverrides {
    LimitOverrides {
        per_account: Some(Window { max, per: HOUR }),
        ..LimitOverrides::default()
    }
}

/// A clock standing still at a fixed time, moved only by `advance`.
pub(crate) fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)))
}

// ---------------------------------------------------------------------------------------------
// Redis.

pub(crate) async fn redis_store(redis: &RedisServer) -> Arc<dyn LimitStore> {
    Arc::new(
        RedisStore::connect(&redis.url())
            .await
            .expect("connects to the test redis-server"),
    )
}

/// A check that must hold whatever the limit store, as two tests: `$memory` against the
/// in-process store, `$redis` against a `redis-server` of its own.
#[allow(unused_macros)] // only the files with such checks use it
macro_rules! for_each_store {
    (
        check: $check:ident,
        memory: $memory:ident,
        redis: $redis:ident,
        worker_threads: $threads:tt $(,)?
    ) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $memory() {
            $check(::std::sync::Arc::new(
                ::failmail::limits::memory::MemoryStore::new(),
            ))
            .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
        async fn $redis() {
            let Some(redis) = $crate::common::redis::RedisServer::start() else {
                return;
            };
            $check($crate::common::limits::redis_store(&redis).await).await;
        }
    };
}
#[allow(unused_imports)] // only the files with such checks use it
pub(crate) use for_each_store;

// ---------------------------------------------------------------------------------------------
// The binary.

/// The listeners of every binary run here: SMTP and HTTP on loopback port 0, no TLS.
pub(crate) const LOOPBACK: [&str; 5] =
    ["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-tls"];

/// Starts the `failmail` binary on [`LOOPBACK`] with `args`; killed when dropped.
pub(crate) fn start_binary_on_loopback(args: &[&str]) -> Binary {
    let args: Vec<&str> = LOOPBACK.iter().chain(args).copied().collect();
    start_binary_with(&[], &args, &[("FAILMAIL_LOG", "warn")])
}
