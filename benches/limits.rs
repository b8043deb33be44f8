//! Limit checks per second: the memory store alone and under contention, and Redis round trips.
//!
//! `cargo bench --bench limits` (about 40 s). Every benchmark reports one limit decision as one
//! element, so criterion's `thrpt` line is decisions per second (all threads together for the
//! contended ones). The Redis benchmarks start their own `redis-server` on a free loopback port
//! (Debian package `redis-server`; `.ci/run` installs it).

use std::hint::black_box;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use failmail::eventual::Eventual;
use failmail::limits::memory::MemoryStore;
use failmail::limits::redis::RedisStore;
use failmail::limits::{LimitCheck, LimitStore, Reserve};

const HOUR: Duration = Duration::from_secs(3600);
const NOW_MS: u64 = 1_800_000_000_000;
const THREADS: u64 = 8;

fn check(key: String, max: u64) -> LimitCheck {
    LimitCheck {
        key,
        max,
        per: HOUR,
    }
}

/// The memory store answers at once.
fn now<T>(maybe: Eventual<'_, T>) -> T {
    match maybe {
        Eventual::Now(Some(value)) => value,
        _ => panic!("the memory store answers at once"),
    }
}

/// One limit decision as a MAIL makes it, and the release of a transaction without a message.
fn reserve_release(store: &MemoryStore, checks: &[LimitCheck], keys: &[String], token: u64) {
    let reserved = now(store.reserve(checks, NOW_MS.into(), token)).unwrap();
    assert_eq!(black_box(reserved), Reserve::Reserved);
    now(store.release(keys, token)).unwrap();
}

fn memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));

    // One account and one IP, as every MAIL checks them; one thread.
    let store = MemoryStore::new();
    let checks = [
        check("account:alice@example.com".to_owned(), 200),
        check("ip:192.0.2.1".to_owned(), 300),
    ];
    let keys: Vec<String> = checks.iter().map(|c| c.key.clone()).collect();
    let mut token = 0u64;
    group.bench_function("reserve+release, key pair, 1 thread", |b| {
        b.iter(|| {
            token += 1;
            reserve_release(&store, &checks, &keys, token);
        })
    });

    // 8 threads, each doing its share of the iterations; the time is the wall time of all.
    for (name, key_count) in [
        ("reserve+release, 1 key, 8 threads", 1u64),
        ("reserve+release, 1000 keys, 8 threads", 1000),
    ] {
        let store = MemoryStore::new();
        let tokens = AtomicU64::new(0);
        // Built beforehand, so that only the store's work is measured.
        let checks: Vec<[LimitCheck; 1]> = (0..key_count)
            .map(|k| [check(format!("account:user{k}@example.com"), 1_000_000)])
            .collect();
        let keys: Vec<[String; 1]> = checks.iter().map(|c| [c[0].key.clone()]).collect();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(THREADS);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for thread in 0..THREADS {
                        let (store, tokens, checks, keys) = (&store, &tokens, &checks, &keys);
                        scope.spawn(move || {
                            let first = tokens.fetch_add(per_thread, Ordering::Relaxed);
                            for i in 0..per_thread {
                                let k = ((thread * 7919 + i) % key_count) as usize;
                                reserve_release(store, &checks[k], &keys[k], first + i);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// A `redis-server` of our own on a free loopback port, killed when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install the Debian package `redis-server` \
                     (.ci/run installs it)"
                )
            });
        let server = RedisServer { child, port };
        for _ in 0..100 {
            if ping(port) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} does not answer PING");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

fn redis(c: &mut Criterion) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let store = Arc::new(
        runtime
            .block_on(RedisStore::connect(&format!(
                "redis://127.0.0.1:{}",
                server.port
            )))
            .expect("connects to the bench redis-server"),
    );
    let tokens = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));

    // One reserve (a script round trip) at a time; the sets are kept small by a short window.
    let checks: Arc<[LimitCheck]> = Arc::from([
        LimitCheck {
            key: "account:alice@example.com".to_owned(),
            max: 1_000_000_000,
            per: Duration::from_millis(50),
        },
        LimitCheck {
            key: "ip:192.0.2.1".to_owned(),
            max: 1_000_000_000,
            per: Duration::from_millis(50),
        },
    ]);
    group.bench_function("reserve, key pair, sequential", |b| {
        b.iter_custom(|iters| {
            let (store, checks, tokens) = (store.clone(), checks.clone(), tokens.clone());
            runtime.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let token = tokens.fetch_add(1, Ordering::Relaxed);
                    let now_ms = NOW_MS + token;
                    let reserved = store.reserve(&checks, now_ms.into(), token).await.unwrap();
                    assert_eq!(black_box(reserved), Reserve::Reserved);
                }
                start.elapsed()
            })
        })
    });

    // 64 reserves in flight at once over the one multiplexed connection, as busy sessions make.
    group.bench_function("reserve, key pair, 64 in flight", |b| {
        b.iter_custom(|iters| {
            let (store, checks, tokens) = (store.clone(), checks.clone(), tokens.clone());
            runtime.block_on(async move {
                let per_task = iters.div_ceil(64);
                let start = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..64 {
                    let (store, checks, tokens) = (store.clone(), checks.clone(), tokens.clone());
                    tasks.spawn(async move {
                        for _ in 0..per_task {
                            let token = tokens.fetch_add(1, Ordering::Relaxed);
                            let now_ms = NOW_MS + token;
                            let reserved =
                                store.reserve(&checks, now_ms.into(), token).await.unwrap();
                            assert_eq!(black_box(reserved), Reserve::Reserved);
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("a bench task panicked");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(store);
    drop(runtime);
    drop(server);
}

// criterion_group! makes a public function that cannot carry a doc comment.
#[allow(missing_docs)]
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = memory, redis
    }
}
criterion_main!(group::benches);
