//! Child processes that a test starts: the `failmail` binary (optionally under a wrapper such as
//! strace), its ready line read, signalled, and waited for with a bound; and the guard that makes
//! sure no child (failmail, redis-server) is ever left running.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::IO_TIMEOUT;

/// Owns a child process and kills (and reaps) it when dropped, unless it exited already: a test
/// that fails half-way never leaves a failmail or a redis-server behind.
pub(crate) struct ChildGuard(pub Child);

impl ChildGuard {
    /// The process id.
    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    /// How it exited, if it has; `None` while it runs.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("try_wait")
    }

    /// Waits up to `limit` for the process to exit (std has no timed wait, so this polls);
    /// `None` if it still runs then.
    pub(crate) fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process now and reaps it, if it still runs.
    pub(crate) fn kill(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `failmail` (started by [`start_binary`] and friends): its ready line, its
/// output, and the means to signal it and wait for it.
pub(crate) struct Binary {
    /// The process.
    pub child: ChildGuard,
    /// Its first stdout line.
    pub ready: String,
    /// Everything it wrote to stderr so far.
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Says when stderr has ended (the process and its wrapper are gone).
    stderr_ended: mpsc::Receiver<()>,
    stdout: mpsc::Receiver<String>,
    /// Started under a wrapper: signals go to the wrapper's child, failmail itself.
    wrapped: bool,
}

impl Binary {
    /// The address printed for `name` (`smtp`, `smtps`, `http`) on the ready line.
    pub(crate) fn address(&self, name: &str) -> SocketAddr {
        let prefix = format!("{name}=");
        self.ready
            .split(' ')
            .find_map(|field| field.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name}= on the ready line {:?}", self.ready))
            .parse()
            .expect("the ready line holds socket addresses")
    }

    /// Sends the signal `name` (`TERM`, `INT`, `HUP`, `KILL`) to failmail (not to its wrapper).
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id();
        let target: libc::pid_t = if self.wrapped {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .expect("the wrapper's children are listed in /proc");
            children
                .split_whitespace()
                .next()
                .expect("the wrapper runs failmail as its child")
                .parse()
                .expect("a process id")
        } else {
            pid as libc::pid_t
        };
        let number = match name {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "HUP" => libc::SIGHUP,
            "KILL" => libc::SIGKILL,
            other => panic!("no signal {other} in this helper"),
        };
        // SAFETY: kill(2) only reads its two integer arguments.
        let sent = unsafe { libc::kill(target, number) };
        assert_eq!(sent, 0, "kill -{name} {target} failed");
    }

    /// What the process wrote to stderr so far, while it runs (e.g. to wait for a log line).
    pub(crate) fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) for the process to exit; returns its status, its stderr and the stdout
    /// lines after the ready line.
    pub(crate) fn wait_with_output(mut self) -> (ExitStatus, String, String) {
        let (_, empty) = mpsc::channel();
        let stdout = std::mem::replace(&mut self.stdout, empty);
        let (status, stderr) = self.wait();
        let stdout = stdout
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        (status, stderr, stdout)
    }

    /// Stops the process with SIGTERM from async code, checks that it exited cleanly, and
    /// returns its stderr (its whole log).
    pub(crate) async fn terminate(self) -> String {
        self.signal("TERM");
        let (status, stderr) = tokio::task::spawn_blocking(move || self.wait())
            .await
            .expect("the wait does not panic");
        assert!(
            status.success(),
            "exit status {status:?}; stderr:\n{stderr}"
        );
        stderr
    }

    /// Waits (bounded) for the process to exit; returns its status and its stderr.
    pub(crate) fn wait(mut self) -> (ExitStatus, String) {
        let Some(status) = self.child.wait_within(Duration::from_secs(30)) else {
            self.child.kill();
            let _ = self.stderr_ended.recv_timeout(Duration::from_secs(5));
            panic!(
                "failmail did not exit within 30 s of the signal; stderr:\n{}",
                self.stderr_so_far()
            );
        };
        let _ = self.stderr_ended.recv_timeout(Duration::from_secs(10));
        (status, self.stderr_so_far())
    }
}

/// The command that runs `failmail` with `args`, under `wrapper` (e.g. `strace -f -o FILE`; empty
/// for none), for a test to add arguments or environment to before [`start_command`].
pub(crate) fn binary_command(wrapper: &[&str], args: &[&str]) -> Command {
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
    command.args(args);
    command
}

/// Starts `failmail` with `args` and waits (bounded) for its ready line.
pub(crate) fn start_binary(args: &[&str]) -> Binary {
    start_binary_with(&[], args, &[("FAILMAIL_LOG", "info")])
}

/// Starts `failmail` with `args` under `wrapper` (e.g. `strace -f -o FILE`; empty for none),
/// with `env` added, and waits (bounded) for its ready line.
pub(crate) fn start_binary_with(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Binary {
    let mut command = binary_command(wrapper, args);
    command.envs(env.iter().copied());
    start_command(command, !wrapper.is_empty())
}

/// Starts `command` from [`binary_command`] (`wrapped` if it has a wrapper) with stdin closed
/// and stdout and stderr read here, and waits (bounded) for failmail's ready line.
pub(crate) fn start_command(mut command: Command, wrapped: bool) -> Binary {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} does not start: {e}",
                command.get_program().to_string_lossy()
            )
        });
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let child = ChildGuard(child);
    let (line_tx, line_rx) = mpsc::channel();
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = line_tx.send(lines.next());
        // Keep draining so that the child never blocks on a full pipe; the rest is kept.
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = out_tx.send(rest.join("\n"));
    });
    let log = Arc::new(Mutex::new(Vec::new()));
    let writer = log.clone();
    let (ended_tx, ended_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            writer.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
        let _ = ended_tx.send(());
    });
    let binary = |ready| Binary {
        child,
        ready,
        stderr: log,
        stderr_ended: ended_rx,
        stdout: out_rx,
        wrapped,
    };
    let ready = match line_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let mut binary = binary(String::new());
            binary.child.kill();
            let _ = binary.stderr_ended.recv_timeout(Duration::from_secs(5));
            panic!(
                "no ready line from failmail ({other:?}); stderr:\n{}",
                binary.stderr_so_far()
            );
        }
    };
    assert!(
        ready.starts_with("failmail ready smtp="),
        "unexpected ready line {ready:?}"
    );
    binary(ready)
}

/// Runs an external client (swaks, python3, smtp-source) to its end without blocking the
/// runtime that serves it; past `limit` the test fails, and the child is killed, not left behind.
pub(crate) async fn run_tool(
    command: Command,
    what: &str,
    limit: Duration,
) -> std::process::Output {
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (.ci/run installs it)"))
}

/// [`run_tool`], and the tool must succeed (its stderr is the failure message).
pub(crate) async fn run_tool_ok(
    command: Command,
    what: &str,
    limit: Duration,
) -> std::process::Output {
    let output = run_tool(command, what, limit).await;
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `GET path` over a raw HTTP/1.1 connection: (status line, body).
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    http_request(addr, "GET", path, None).await
}

/// `POST path` with a JSON body (none for `None`): (status line, body).
pub(crate) async fn http_post(
    addr: SocketAddr,
    path: &str,
    json: Option<&str>,
) -> (String, String) {
    http_request(addr, "POST", path, json).await
}

async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("HTTP connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(json) = json {
        request.push_str("Content-Type: application/json\r\n");
        request.push_str(&format!("Content-Length: {}\r\n\r\n{json}", json.len()));
    } else {
        request.push_str(if method == "GET" {
            "\r\n"
        } else {
            "Content-Length: 0\r\n\r\n"
        });
    }
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
