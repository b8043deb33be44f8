//! Memory per idle connection: 10,000 plaintext connections that each said EHLO and then wait.
//!
//! `cargo bench --bench idle_connections -- [--binary target/release/failmail] [--connections 10000]
//! [--concurrency 256]` (run by `benches/load.sh` after `ulimit -n 65536`; each connection costs
//! one descriptor here and one in the server). It starts the release binary as a subprocess
//! (`--smtp 127.0.0.1:0 --http 127.0.0.1:0 --no-store --limits none`), so the server's RSS is its
//! own and not mixed with the client's, reads the server's VmRSS from /proc before and after opening the
//! connections, and prints the growth per connection against the target (≤ 16 KiB). At the end
//! every connection sends QUIT and must get its 221, which shows that none was dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const TARGET_KIB: f64 = 16.0;

struct Options {
    binary: String,
    connections: usize,
    concurrency: usize,
}

fn options() -> Options {
    let mut options = Options {
        binary: "target/release/failmail".into(),
        connections: 10_000,
        concurrency: 256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--binary" => options.binary = args.next().expect("--binary PATH"),
            "--connections" => {
                options.connections = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--connections N")
            }
            "--concurrency" => {
                options.concurrency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency N")
            }
            // `cargo bench` passes `--bench`; anything else is ignored too.
            _ => {}
        }
    }
    options
}

/// Kills the server when the bench ends, however it ends.
struct Server {
    child: Child,
    smtp: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &str, args: &[&str]) -> Server {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary}: {e} (run `cargo build --release` first)")
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let smtp = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("smtp="))
        .unwrap_or_else(|| panic!("no smtp= in the ready line {line:?}"))
        .to_string();
    Server { child, smtp }
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn threads(pid: u32) -> u64 {
    status_kib(pid, "Threads")
}

/// Reads one SMTP reply (all its lines); returns its code.
async fn reply(reader: &mut AsyncBufReader<TcpStream>, line: &mut String) -> std::io::Result<u16> {
    loop {
        line.clear();
        if reader.read_line(line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() < 4 {
            return Err(std::io::Error::other(format!("short reply line {line:?}")));
        }
        let code = line[..3]
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad reply line {line:?}")))?;
        if line.as_bytes()[3] != b'-' {
            return Ok(code);
        }
    }
}

/// Connects, reads the greeting, says EHLO and reads its reply: an idle, greeted session.
async fn open(addr: &str) -> std::io::Result<AsyncBufReader<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    let mut reader = AsyncBufReader::new(stream);
    let mut line = String::new();
    let greeting = reply(&mut reader, &mut line).await?;
    if greeting != 220 {
        return Err(std::io::Error::other(format!("greeting {line:?}")));
    }
    reader
        .get_mut()
        .write_all(b"EHLO idle.bench.example\r\n")
        .await?;
    let ehlo = reply(&mut reader, &mut line).await?;
    if ehlo != 250 {
        return Err(std::io::Error::other(format!("EHLO reply {line:?}")));
    }
    Ok(reader)
}

async fn quit(mut reader: AsyncBufReader<TcpStream>) -> std::io::Result<()> {
    reader.get_mut().write_all(b"QUIT\r\n").await?;
    let mut line = String::new();
    match reply(&mut reader, &mut line).await? {
        221 => Ok(()),
        _ => Err(std::io::Error::other(format!("QUIT reply {line:?}"))),
    }
}

fn main() {
    let options = options();
    let args = [
        "--smtp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--no-store",
        "--limits",
        "none",
    ];
    let server = start(&options.binary, &args);
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!("idle connections: {} {}", options.binary, args.join(" "));
    println!(
        "  {} connections, greeting + EHLO on each, {} connecting at a time",
        options.connections, options.concurrency
    );

    runtime.block_on(async {
        // Warm up: a few sessions so that the worker threads, their allocator arenas and the
        // accept path exist before the baseline is taken.
        for _ in 0..64 {
            if let Ok(reader) = open(&server.smtp).await {
                let _ = quit(reader).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = status_kib(pid, "VmRSS");
        let threads_before = threads(pid);

        let started = Instant::now();
        let gate = Arc::new(Semaphore::new(options.concurrency));
        let mut tasks = Vec::with_capacity(options.connections);
        for _ in 0..options.connections {
            let gate = gate.clone();
            let addr = server.smtp.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                tokio::time::timeout(Duration::from_secs(30), open(&addr))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            }));
        }
        let mut open_sessions = Vec::with_capacity(options.connections);
        let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
        for task in tasks {
            match task.await.expect("task") {
                Ok(reader) => open_sessions.push(reader),
                Err(e) => *errors.entry(e.to_string()).or_default() += 1,
            }
        }
        let opened = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = status_kib(pid, "VmRSS");
        let peak = status_kib(pid, "VmHWM");
        let threads_after = threads(pid);

        let count = open_sessions.len();
        let per = (after.saturating_sub(before)) as f64 / count.max(1) as f64;
        println!(
            "  opened {count} of {} in {:.2} s ({:.0} connections/s); refused or failed: {}",
            options.connections,
            opened.as_secs_f64(),
            count as f64 / opened.as_secs_f64(),
            options.connections - count
        );
        for (error, n) in &errors {
            println!("    {n} × {error}");
        }
        println!(
            "  server VmRSS: {:.1} MiB before, {:.1} MiB with {count} idle connections (VmHWM {:.1} MiB); threads {threads_before} -> {threads_after}",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        println!(
            "  RSS growth per idle connection: {per:.2} KiB (target ≤ {TARGET_KIB:.0} KiB): {}",
            if per <= TARGET_KIB && count == options.connections { "PASS" } else { "FAIL" }
        );

        // Every connection must still be served.
        let mut quits = Vec::with_capacity(count);
        for reader in open_sessions {
            let gate = gate.clone();
            quits.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("semaphore");
                tokio::time::timeout(Duration::from_secs(30), quit(reader))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            }));
        }
        let mut quit_errors = 0;
        for task in quits {
            if task.await.expect("task").is_err() {
                quit_errors += 1;
            }
        }
        println!("  QUIT on every connection afterwards: {} ok, {quit_errors} failed", count - quit_errors);
    });
    drop(server);
}
