//! A probe session's latency while the server reloads a large scenario, and what the reload
//! costs in time and memory.
//!
//! `cargo build --release && cargo bench --bench reload -- [--binary target/release/failmail]
//! [--rules 100000] [--threads 1]`. It writes the load-test rule mix scaled to `--rules`
//! (`python3 benches/load_report.py scenario N`), starts the release binary with a one-rule
//! scenario and `--threads 1` (one event loop: where anything done on the loop stalls every
//! session), and keeps one SMTP session sending NOOP, one at a time, timing each reply. After a
//! second of that, the large file replaces the small one and the server gets SIGHUP; the probe goes
//! on until `GET /api/scenario` shows the new rules, and one second more. Prints the probe's
//! p50/p99/max before and during the reload, the reload's duration (SIGHUP to applied, as seen by
//! polling every 20 ms) and the server's memory: resident before, peak (VmHWM) after.
//!
//! A reload compiled on the event loop showed here as a probe maximum as long as the reload;
//! compiled on a blocking thread, the probe's maximum stays in milliseconds. Run it on a quiet
//! machine: on a busy one, the probe waits for a CPU too.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

struct Options {
    binary: String,
    rules: usize,
    threads: usize,
}

fn options() -> Options {
    let mut options = Options {
        binary: "target/release/failmail".into(),
        rules: 100_000,
        threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} VALUE"));
        match arg.as_str() {
            "--binary" => options.binary = value("--binary"),
            "--rules" => options.rules = value("--rules").parse().expect("--rules N"),
            "--threads" => options.threads = value("--threads").parse().expect("--threads N"),
            // `cargo bench` passes --bench; anything else is a mistake.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// The failmail process, killed when dropped.
struct Server {
    child: Child,
    smtp: String,
    http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(options: &Options, scenario: &std::path::Path) -> Server {
    let mut child = Command::new(&options.binary)
        .args([
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--threads",
        ])
        .arg(options.threads.to_string())
        .arg("--scenario")
        .arg(scenario)
        // The probe sends nothing but NOOPs.
        .args(["--max-junk-commands", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (cargo build --release)",
                options.binary
            )
        });
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("the ready line");
    let field = |name: &str| {
        ready
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {ready:?}"))
            .to_owned()
    };
    Server {
        smtp: field("smtp="),
        http: field("http="),
        child,
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// The live scenario's rule count, from `GET /api/scenario`.
async fn live_rules(http: &str) -> u64 {
    let mut stream = TcpStream::connect(http).await.expect("HTTP connect");
    let request =
        format!("GET /api/scenario HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("HTTP write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("HTTP read");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let view: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    view["rules"].as_u64().unwrap_or(0)
}

/// Reads one reply (all its lines); returns its code.
async fn reply(reader: &mut AsyncBufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("reply line");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .expect("reply code");
        }
    }
}

/// Sends NOOP one at a time until `stop`; returns (time since `origin`, latency) of each.
async fn probe(
    smtp: String,
    origin: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(Duration, Duration)> {
    let mut reader = AsyncBufReader::new(TcpStream::connect(&smtp).await.expect("SMTP connect"));
    assert_eq!(reply(&mut reader).await, 220);
    reader
        .get_mut()
        .write_all(b"EHLO probe.example\r\n")
        .await
        .unwrap();
    assert_eq!(reply(&mut reader).await, 250);
    let mut samples = Vec::new();
    while !*stop.borrow() {
        let sent = Instant::now();
        reader.get_mut().write_all(b"NOOP\r\n").await.unwrap();
        assert_eq!(reply(&mut reader).await, 250);
        samples.push((sent - origin, sent.elapsed()));
    }
    samples
}

fn summary(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{label:<16} {:>8} NOOPs  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>9.3} ms",
        latencies.len(),
        at(0.50),
        at(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("temporary directory");
    let live = dir.path().join("live.toml");
    let large = dir.path().join("large.toml");
    std::fs::write(
        &live,
        "[[rule]]\nrcpt = \"old@*\"\nreply = \"user_unknown\"\n",
    )
    .unwrap();
    let generated = Command::new("python3")
        .args([
            "benches/load_report.py",
            "scenario",
            &options.rules.to_string(),
        ])
        .output()
        .expect("python3 runs benches/load_report.py");
    assert!(generated.status.success(), "the generator failed");
    std::fs::write(&large, &generated.stdout).unwrap();
    let server = spawn(&options, &live);
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let origin = Instant::now();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let probe = tokio::spawn(probe(server.smtp.clone(), origin, stopped));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_before = memory_kib(pid, "VmRSS");
        std::fs::rename(&large, &live).expect("replace the scenario");
        let hup = Instant::now();
        let signalled = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status();
        assert!(signalled.is_ok_and(|s| s.success()), "kill -HUP failed");
        while live_rules(&server.http).await != options.rules as u64 {
            assert!(
                hup.elapsed() < Duration::from_secs(600),
                "no reload within 10 min"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (start, applied) = (hup - origin, hup.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        let samples = probe.await.expect("the probe session");
        let (during, before): (Vec<_>, Vec<_>) = samples
            .into_iter()
            .partition(|(at, _)| *at >= start && *at <= start + applied);
        println!(
            "reload of {} rules with --threads {}: applied {:.3} s after SIGHUP",
            options.rules,
            options.threads,
            applied.as_secs_f64()
        );
        summary(
            "probe outside",
            before.into_iter().map(|(_, l)| l).collect(),
        );
        summary("probe during", during.into_iter().map(|(_, l)| l).collect());
        println!(
            "server memory: {} MiB resident before the reload, {} MiB peak (VmHWM) after",
            rss_before / 1024,
            memory_kib(pid, "VmHWM") / 1024
        );
    });
}
