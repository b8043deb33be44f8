//! A `redis-server` of a test's own, on a free loopback port, killed when dropped; a test whose
//! machine has no Redis skips itself (see [`super::tools`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::binary::ChildGuard;
use super::tools;

/// A free loopback port (bound, read, released).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A `redis-server` of our own on a loopback port, killed when dropped.
pub(crate) struct RedisServer {
    child: Option<ChildGuard>,
    program: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts a fresh Redis on a free port; `None` when `redis-server` is missing (the test
    /// returns: it is reported as skipped, or fails under `FAILMAIL_REQUIRE_ALL=1`).
    pub(crate) fn start() -> Option<Self> {
        let program = tools::need(&tools::REDIS_SERVER)?;
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start_on(&program, free_port()) {
                Ok(redis) => return Some(redis),
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// Starts Redis again on this one's port (after [`RedisServer::kill`]).
    pub(crate) fn restart(&self) -> Self {
        Self::try_start_on(&self.program, self.port)
            .unwrap_or_else(|e| panic!("redis-server did not start: {e}"))
    }

    fn try_start_on(program: &PathBuf, port: u16) -> Result<Self, String> {
        let child = std::process::Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
        let mut child = ChildGuard(child);
        for _ in 0..100 {
            if let Some(status) = child.exited() {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if ping(port) {
                return Ok(RedisServer {
                    child: Some(child),
                    program: program.clone(),
                    port,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("redis-server on port {port} does not answer PING"))
    }

    /// Its `redis://` URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`STOP`, `CONT`) with `kill(1)`: SIGSTOP freezes Redis with its sockets
    /// open, as a stalled server or a paused VM does.
    pub(crate) fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server runs");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} redis-server failed");
    }

    /// Kills the server now (its data is gone: it keeps nothing on disk).
    pub(crate) fn kill(&mut self) {
        // Dropping the guard kills and reaps the process.
        self.child = None;
    }
}

/// Whether a Redis on `port` answers PING with PONG.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}
