//! The `failmail` binary as a child process: started (optionally under a wrapper such as strace),
//! its ready line read, signalled, and waited for with a bound, never left running.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::IO_TIMEOUT;

/// Kills the child if the test fails before it exited.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub struct Binary {
    /// The process.
    pub child: ChildGuard,
    /// Its first stdout line.
    pub ready: String,
    stderr: std::sync::mpsc::Receiver<String>,
    stdout: std::sync::mpsc::Receiver<String>,
    /// Started under a wrapper: signals go to the wrapper's child, failmail itself.
    wrapped: bool,
}

impl Binary {
    /// The address printed for `name` (`smtp`, `smtps`, `http`) on the ready line.
    pub fn address(&self, name: &str) -> SocketAddr {
        let prefix = format!("{name}=");
        self.ready
            .split(' ')
            .find_map(|field| field.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name}= on the ready line {:?}", self.ready))
            .parse()
            .expect("the ready line holds socket addresses")
    }

    /// Sends a signal with `kill(1)` (no libc dependency) to failmail (not to its wrapper).
    pub fn signal(&self, name: &str) {
        let pid = self.child.0.id();
        let target = if self.wrapped {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .expect("the wrapper's children are listed in /proc");
            children
                .split_whitespace()
                .next()
                .expect("the wrapper runs failmail as its child")
                .to_owned()
        } else {
            pid.to_string()
        };
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(target)
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit; returns its status, its stderr and the stdout
    /// lines after the ready line.
    pub fn wait_with_output(mut self) -> (ExitStatus, String, String) {
        let (_, empty) = std::sync::mpsc::channel();
        let stdout = std::mem::replace(&mut self.stdout, empty);
        let (status, stderr) = self.wait();
        let stdout = stdout
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        (status, stderr, stdout)
    }

    /// Waits (bounded) for the process to exit; returns its status and its stderr.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.0.kill();
                let _ = self.child.0.wait();
                let stderr = self
                    .stderr
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                panic!("failmail did not exit within 30 s of the signal; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self
            .stderr
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        (status, stderr)
    }
}

/// Starts `failmail` with `args` and waits (bounded) for its ready line.
pub fn start_binary(args: &[&str]) -> Binary {
    start_binary_with(&[], args, &[("FAILMAIL_LOG", "info")])
}

/// Starts `failmail` with `args` under `wrapper` (e.g. `strace -f -o FILE`; empty for none),
/// with `env` added, and waits (bounded) for its ready line.
pub fn start_binary_with(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Binary {
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut command = Command::new(program);
            command
                .args(wrapper_args)
                .arg(env!("CARGO_BIN_EXE_failmail"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_failmail")),
    };
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the failmail binary starts");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = ChildGuard(child);
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = line_tx.send(lines.next());
        // Keep draining so that the child never blocks on a full pipe; the rest is kept.
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = out_tx.send(rest.join("\n"));
    });
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        let _ = err_tx.send(text);
    });
    let ready = match line_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(line))) => line,
        other => {
            drop(child);
            let stderr = err_rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            panic!("no ready line from failmail ({other:?}); stderr:\n{stderr}");
        }
    };
    assert!(
        ready.starts_with("failmail ready smtp="),
        "unexpected ready line {ready:?}"
    );
    Binary {
        child,
        ready,
        stderr: err_rx,
        stdout: out_rx,
        wrapped: !wrapper.is_empty(),
    }
}

/// `GET path` over a raw HTTP/1.1 connection: (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("HTTP connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .expect("HTTP response within 10 s")
        .expect("HTTP read");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed HTTP response {response:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked response {head:?}"
    );
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}
