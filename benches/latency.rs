//! Reply latency under load: 1,000 concurrent senders, each on its own connection, each sending
//! 20 messages of about 1 KiB without pipelining (one command, wait for its reply, next command).
//!
//! `cargo bench --bench latency -- [--binary target/release/failmail] [--senders 1000]
//! [--messages 20] [--size 1024]` (run by `benches/load.sh` after `ulimit -n 65536`). It starts
//! the release binary as a subprocess (`--smtp 127.0.0.1:0 --http 127.0.0.1:0 --no-store --limits
//! none`), opens every connection and says EHLO first, then releases all senders at once and
//! times every reply of MAIL, RCPT, DATA and the end of data (write of the command to the last
//! line of its reply).
//! Prints p50/p90/p99/p99.9/max overall and per command, against the target p99 ≤ 5 ms.
//!
//! By default every sender sends its next command as soon as it has the reply (a closed loop):
//! the server then always has `--senders` commands waiting, and by Little's law the mean latency
//! is senders ÷ replies per second, whatever the server does. `--interval-ms N` paces each sender
//! to one message every N ms instead (senders spread evenly over the first interval), which
//! measures latency at a fixed offered load of senders × 1000 ÷ N messages per second.
//!
//! The client runs on the same machine as the server: on a small machine the measured latency
//! includes the time the client's own tasks wait for a CPU.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

const TARGET_P99_MS: f64 = 5.0;
const KINDS: [&str; 4] = ["MAIL", "RCPT", "DATA", "end of data"];

struct Options {
    binary: String,
    senders: usize,
    messages: usize,
    size: usize,
    interval_ms: u64,
}

fn options() -> Options {
    let mut options = Options {
        binary: "target/release/failmail".into(),
        senders: 1000,
        messages: 20,
        size: 1024,
        interval_ms: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} N"))
        };
        match arg.as_str() {
            "--binary" => options.binary = args.next().expect("--binary PATH"),
            "--senders" => options.senders = number("--senders"),
            "--messages" => options.messages = number("--messages"),
            "--size" => options.size = number("--size"),
            "--interval-ms" => options.interval_ms = number("--interval-ms") as u64,
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

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The server's user+system CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
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

async fn command(
    reader: &mut AsyncBufReader<TcpStream>,
    line: &mut String,
    bytes: &[u8],
    expect: u16,
) -> std::io::Result<Duration> {
    let sent = Instant::now();
    reader.get_mut().write_all(bytes).await?;
    let code = reply(reader, line).await?;
    let took = sent.elapsed();
    if code != expect {
        return Err(std::io::Error::other(format!(
            "expected {expect}, got {}",
            line.trim_end()
        )));
    }
    Ok(took)
}

async fn connect(addr: &str) -> std::io::Result<AsyncBufReader<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut reader = AsyncBufReader::new(stream);
    let mut line = String::new();
    if reply(&mut reader, &mut line).await? != 220 {
        return Err(std::io::Error::other(format!("greeting {line:?}")));
    }
    command(
        &mut reader,
        &mut line,
        b"EHLO latency.bench.example\r\n",
        250,
    )
    .await?;
    Ok(reader)
}

/// One sender's timed conversation: (kind, microseconds) per reply.
async fn send(
    mut reader: AsyncBufReader<TcpStream>,
    sender: usize,
    messages: usize,
    body: Arc<Vec<u8>>,
    pace: Option<(Duration, Duration)>,
) -> (Vec<(u8, u32)>, Option<String>) {
    let start = tokio::time::Instant::now();
    let mut timings = Vec::with_capacity(messages * 4);
    let mut line = String::new();
    let mail = format!("MAIL FROM:<sender{sender}@latency.example>\r\n");
    let rcpt = format!("RCPT TO:<rcpt{sender}@sink.example>\r\n");
    for message in 0..messages {
        if let Some((offset, interval)) = pace {
            tokio::time::sleep_until(start + offset + interval * message as u32).await;
        }
        let steps: [(&[u8], u16); 4] = [
            (mail.as_bytes(), 250),
            (rcpt.as_bytes(), 250),
            (b"DATA\r\n", 354),
            (&body, 250),
        ];
        for (kind, (bytes, expect)) in steps.into_iter().enumerate() {
            match command(&mut reader, &mut line, bytes, expect).await {
                Ok(took) => {
                    timings.push((kind as u8, took.as_micros().min(u32::MAX as u128) as u32))
                }
                Err(e) => return (timings, Some(format!("{}: {e}", KINDS[kind]))),
            }
        }
    }
    let _ = command(&mut reader, &mut line, b"QUIT\r\n", 221).await;
    (timings, None)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn summary(label: &str, sorted: &[u32]) -> String {
    format!(
        "  {label:<12} n={:<7} p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms",
        sorted.len(),
        percentile(sorted, 50.0),
        percentile(sorted, 90.0),
        percentile(sorted, 99.0),
        percentile(sorted, 99.9),
        sorted.last().copied().unwrap_or(0) as f64 / 1000.0
    )
}

fn body(size: usize) -> Vec<u8> {
    let mut body = b"From: <sender@latency.example>\r\nTo: <rcpt@sink.example>\r\nSubject: latency bench\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while body.len() < size {
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b".\r\n");
    body
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
    println!("latency: {} {}", options.binary, args.join(" "));
    println!(
        "  {} concurrent senders × {} messages of {} bytes, no pipelining (4 timed replies per message), {}",
        options.senders,
        options.messages,
        options.size,
        if options.interval_ms == 0 {
            "closed loop (next command as soon as the reply is in)".to_string()
        } else {
            format!(
                "paced: one message per sender every {} ms = {:.0} messages/s offered",
                options.interval_ms,
                options.senders as f64 * 1000.0 / options.interval_ms as f64
            )
        }
    );

    runtime.block_on(async {
        let body = Arc::new(body(options.size));
        let (go, ready) = watch::channel(false);
        let connected = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(options.senders);
        for sender in 0..options.senders {
            let (addr, body, mut ready, connected, gate) =
                (server.smtp.clone(), body.clone(), ready.clone(), connected.clone(), gate.clone());
            let messages = options.messages;
            let pace = (options.interval_ms > 0).then(|| {
                let interval = Duration::from_millis(options.interval_ms);
                (interval * sender as u32 / options.senders as u32, interval)
            });
            tasks.push(tokio::spawn(async move {
                let reader = {
                    let _permit = gate.acquire_owned().await.expect("semaphore");
                    tokio::time::timeout(Duration::from_secs(30), connect(&addr)).await
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let reader = match reader {
                    Ok(Ok(reader)) => reader,
                    Ok(Err(e)) => return (Vec::new(), Some(format!("connect: {e}"))),
                    Err(_) => return (Vec::new(), Some("connect: timed out".to_string())),
                };
                let _ = ready.wait_for(|go| *go).await;
                match tokio::time::timeout(Duration::from_secs(120), send(reader, sender, messages, body, pace)).await {
                    Ok(result) => result,
                    Err(_) => (Vec::new(), Some("timed out after 120 s".to_string())),
                }
            }));
        }
        let waited = Instant::now();
        while connected.load(Ordering::SeqCst) < options.senders && waited.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cpu_before = cpu_ticks(pid);
        let started = Instant::now();
        go.send(true).expect("senders wait");

        let mut all: Vec<Vec<u32>> = vec![Vec::new(); KINDS.len()];
        let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
        for task in tasks {
            let (timings, error) = task.await.expect("sender task");
            for (kind, micros) in timings {
                all[kind as usize].push(micros);
            }
            if let Some(error) = error {
                *errors.entry(error).or_default() += 1;
            }
        }
        let elapsed = started.elapsed();
        let cpu_after = cpu_ticks(pid);
        let messages = all[3].len();
        let mut overall: Vec<u32> = all.iter().flatten().copied().collect();
        overall.sort_unstable();
        for kind in &mut all {
            kind.sort_unstable();
        }

        println!(
            "  {messages} messages accepted in {:.2} s ({:.0} messages/s, {:.0} replies/s); senders with an error: {}",
            elapsed.as_secs_f64(),
            messages as f64 / elapsed.as_secs_f64(),
            overall.len() as f64 / elapsed.as_secs_f64(),
            errors.values().sum::<usize>()
        );
        for (error, n) in &errors {
            println!("    {n} × {error}");
        }
        if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
            // Clock ticks are 1/100 s on Linux.
            let cpu = (after - before) as f64 / 100.0;
            println!(
                "  server CPU during the run: {cpu:.2} s over {:.2} s wall ({:.0}% of one core); VmHWM {:.1} MiB",
                elapsed.as_secs_f64(),
                100.0 * cpu / elapsed.as_secs_f64(),
                status_kib(pid, "VmHWM").unwrap_or(0) as f64 / 1024.0
            );
        }
        let mean = overall.iter().map(|&m| m as f64).sum::<f64>() / overall.len().max(1) as f64 / 1000.0;
        if options.interval_ms == 0 {
            println!(
                "  mean {mean:.3} ms = Little's law for a closed loop: senders ÷ replies/s = {:.3} ms",
                options.senders as f64 * 1000.0 / (overall.len() as f64 / elapsed.as_secs_f64())
            );
        } else {
            println!("  mean {mean:.3} ms");
        }
        println!("{}", summary("all replies", &overall));
        for (kind, sorted) in KINDS.iter().zip(&all) {
            println!("{}", summary(kind, sorted));
        }
        let p99 = percentile(&overall, 99.0);
        println!(
            "  p99 {p99:.3} ms (target ≤ {TARGET_P99_MS:.0} ms): {}",
            if p99 <= TARGET_P99_MS && errors.is_empty() { "PASS" } else { "FAIL" }
        );
    });
    drop(server);
}
