//! THE raw SMTP client of the integration tests ([`Conn`], over plain TCP as [`PlainConn`] or
//! TLS as [`TlsConn`]) and the [`Reply`] it parses: every reply is read whole and checked
//! exactly, and every wait is bounded.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{assert_ehlo, tls_handshake, HOSTNAME, IO_TIMEOUT};

/// One parsed SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The three-digit code, the same on every line.
    pub code: u16,
    /// The text of each line after `NNN-` / `NNN `.
    pub lines: Vec<String>,
    /// Every line exactly as it came on the wire, without its CRLF (`NNN-…` lines, then the
    /// `NNN …` line): for tests that pin a reply byte for byte.
    pub wire: Vec<String>,
}

impl Reply {
    /// The enhanced status code at the start of the first line, if it has one.
    pub(crate) fn status(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }

    /// The whole reply as text, for messages.
    pub(crate) fn text(&self) -> String {
        self.lines.join(" | ")
    }

    /// The text after the enhanced status code, the lines joined by a space: what a catalog
    /// entry's `text` renders to, to compare with the catalog.
    pub(crate) fn catalog_text(&self) -> String {
        let status = self.status().unwrap_or("");
        self.lines
            .iter()
            .map(|l| {
                l.strip_prefix(status)
                    .map_or(l.as_str(), |rest| rest.strip_prefix(' ').unwrap_or(rest))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Asserts the code, enhanced status and text ([`Reply::catalog_text`]) of a catalog reply,
    /// given as the catalog has it: (code, status, text).
    #[track_caller]
    pub(crate) fn assert_catalog(&self, expected: &(u16, String, String)) {
        self.assert(expected.0, &expected.1);
        assert_eq!(
            self.catalog_text(),
            expected.2,
            "unexpected text in {self:?}"
        );
    }

    /// Asserts the code only, for replies whose enhanced status a test does not pin (scenario
    /// flavors word and number them differently).
    #[track_caller]
    pub(crate) fn assert_code(&self, code: u16) -> &Self {
        assert_eq!(self.code, code, "unexpected reply: {:?}", self.wire);
        self
    }

    /// Asserts the code and the enhanced status code (`""` for a reply that must carry none).
    #[track_caller]
    pub(crate) fn assert(&self, code: u16, status: &str) -> &Self {
        assert_eq!(
            (self.code, self.status().unwrap_or("")),
            (code, status),
            "unexpected reply: {} {}",
            self.code,
            self.text()
        );
        self
    }
}

/// A raw SMTP client over any byte stream; every wait is bounded by its hang guard
/// ([`IO_TIMEOUT`] unless [`Conn::with_timeout`] set another).
pub(crate) struct Conn<S> {
    stream: S,
    buffer: Vec<u8>,
    timeout: Duration,
}

/// A raw client over plain TCP.
pub(crate) type PlainConn = Conn<TcpStream>;
/// A raw client over TLS.
pub(crate) type TlsConn = Conn<TlsStream<TcpStream>>;

impl PlainConn {
    /// Connects to `addr` (does not read the greeting).
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect within 10 s")
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Self::new(stream)
    }

    /// Connects to `addr` from the local address `from` (e.g. 127.0.0.2, to be another client
    /// IP on loopback); does not read the greeting.
    pub(crate) async fn connect_from(from: IpAddr, addr: SocketAddr) -> Self {
        let socket = match from {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .expect("a TCP socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .unwrap_or_else(|e| panic!("cannot bind the client to {from}: {e}"));
        let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
            .await
            .expect("connect within 10 s")
            .unwrap_or_else(|e| panic!("cannot connect from {from} to {addr}: {e}"));
        Self::new(stream)
    }

    /// The client's own address: how the server's events name this session's peer.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("a connected socket")
    }

    /// Waits up to `wait` for the server to send something (or close), without reading it.
    pub(crate) async fn readable_within(&self, wait: Duration) -> bool {
        !self.buffer.is_empty()
            || tokio::time::timeout(wait, self.stream.readable())
                .await
                .is_ok()
    }

    /// Splits into a reading client (which keeps whatever was already buffered, and the hang
    /// guard) and the raw write half, to write and read at the same time.
    pub(crate) fn into_split(self) -> (Conn<OwnedReadHalf>, OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        (
            Conn {
                stream: read,
                buffer: self.buffer,
                timeout: self.timeout,
            },
            write,
        )
    }

    /// Connects and checks the 220 greeting of the sink (one line, naming [`HOSTNAME`]).
    pub(crate) async fn greeted(addr: SocketAddr) -> Self {
        let mut conn = Self::connect(addr).await;
        conn.expect_greeting().await;
        conn
    }

    /// [`PlainConn::greeted`], then EHLO `client.example` checked as [`Conn::ehlo`] does: where
    /// most sink tests start.
    pub(crate) async fn greeted_ehlo(addr: SocketAddr) -> Self {
        let mut conn = Self::greeted(addr).await;
        conn.ehlo("client.example").await;
        conn
    }

    /// Connects and checks only that the greeting is a 220, whatever its text: for servers
    /// whose scenario names another host or words the greeting its own way.
    pub(crate) async fn open(addr: SocketAddr) -> Self {
        let mut conn = Self::connect(addr).await;
        let greeting = conn.reply().await;
        assert_eq!(greeting.code, 220, "greeting: {:?}", greeting.wire);
        conn
    }

    /// [`PlainConn::open`], then `EHLO client.example` answered with 250 (its extensions not
    /// checked): where a scenario test starts its transactions.
    pub(crate) async fn ready(addr: SocketAddr) -> Self {
        let mut conn = Self::open(addr).await;
        conn.cmd_code("EHLO client.example", 250).await;
        conn
    }

    /// After a `220 2.0.0` to STARTTLS: runs the handshake. Fails if the server sent anything
    /// in plaintext after that 220.
    pub(crate) async fn starttls(self) -> TlsConn {
        assert!(
            self.buffer.is_empty(),
            "the server sent plaintext after its 220 to STARTTLS: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        Conn::new(tls_handshake(self.stream).await).with_timeout(self.timeout)
    }
}

impl TlsConn {
    /// Connects to an implicit-TLS (SMTPS) listener and runs the handshake.
    pub(crate) async fn connect_tls(addr: SocketAddr) -> Self {
        let plain = PlainConn::connect(addr).await;
        Conn::new(tls_handshake(plain.stream).await)
    }
}

impl<S> Conn<S> {
    /// Wraps a connected stream.
    pub(crate) fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
            timeout: IO_TIMEOUT,
        }
    }

    /// Another hang guard for every later wait on this connection: for tests under heavy load
    /// (a debug build writing 100,000 messages, a binary killed mid-session) where 10 s is short.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<S: AsyncWrite + Unpin> Conn<S> {
    /// Writes `bytes` in one write call and flushes.
    pub(crate) async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let timeout = self.timeout;
        self.try_send(bytes)
            .await
            .unwrap_or_else(|e| panic!("write failed (hang guard {timeout:?}): {e}"));
    }

    /// Sends one command line, CRLF added.
    pub(crate) async fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n")).await;
    }

    /// Writes `bytes` and flushes, returning the error instead of failing (the server may have
    /// closed the connection already).
    pub(crate) async fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        let bytes = bytes.as_ref();
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .unwrap_or_else(|_| panic!("write within {:?}", self.timeout))
    }

    /// Closes the sending direction (the server reads the end of the stream); replies can
    /// still be read.
    pub(crate) async fn shutdown_write(&mut self) {
        tokio::time::timeout(self.timeout, self.stream.shutdown())
            .await
            .unwrap_or_else(|_| panic!("shutdown within {:?}", self.timeout))
            .expect("shutdown succeeds");
    }
}

impl<S: AsyncRead + Unpin> Conn<S> {
    /// Everything the server sends until it closes the connection (a reset counts as the end),
    /// as raw bytes: for a peer that speaks no SMTP (a failed TLS handshake).
    pub(crate) async fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buffer)
    }

    /// Reads more bytes into the buffer; `false` at end of stream. A reset counts as the end.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing from the server within {:?} (buffered: {:?})",
                    self.timeout,
                    String::from_utf8_lossy(&self.buffer)
                )
            });
        match read {
            Ok(0) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// One CRLF-terminated line without its CRLF, or `None` at a clean end of stream.
    pub(crate) async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..pos + 2).take(pos).collect();
                return Some(String::from_utf8(line).expect("replies are UTF-8"));
            }
            if !self.fill().await {
                assert!(
                    self.buffer.is_empty(),
                    "connection closed in the middle of a line: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
                return None;
            }
        }
    }

    /// The next complete reply, or `None` if the server closed the connection cleanly first.
    pub(crate) async fn try_reply(&mut self) -> Option<Reply> {
        let mut code = None;
        let mut lines = Vec::new();
        let mut wire = Vec::new();
        loop {
            let Some(line) = self.line().await else {
                assert!(
                    lines.is_empty(),
                    "connection closed inside a multi-line reply: {wire:?}"
                );
                return None;
            };
            assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "malformed reply line {line:?}"
            );
            let this: u16 = line[..3].parse().unwrap();
            if let Some(code) = code {
                assert_eq!(code, this, "reply code changed inside a multi-line reply");
            }
            code = Some(this);
            let (last, text) = match line.as_bytes().get(3) {
                None => (true, ""),
                Some(b' ') => (true, &line[4..]),
                Some(b'-') => (false, &line[4..]),
                Some(_) => panic!("malformed reply line {line:?}"),
            };
            lines.push(text.to_owned());
            wire.push(line);
            if last {
                return Some(Reply {
                    code: this,
                    lines,
                    wire,
                });
            }
        }
    }

    /// The next complete reply; fails if the connection closed instead.
    #[track_caller]
    pub(crate) fn reply(&mut self) -> impl std::future::Future<Output = Reply> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            self.try_reply()
                .await
                .unwrap_or_else(|| panic!("connection closed, a reply was expected ({caller})"))
        }
    }

    /// Reads the next reply and checks its code and enhanced status code.
    #[track_caller]
    pub(crate) fn expect(
        &mut self,
        code: u16,
        status: &'static str,
    ) -> impl std::future::Future<Output = Reply> + '_ {
        self.expect_from(std::panic::Location::caller(), code, status)
    }

    /// [`Conn::expect`], its failures naming the test's line `caller`.
    async fn expect_from(
        &mut self,
        caller: &'static std::panic::Location<'static>,
        code: u16,
        status: &'static str,
    ) -> Reply {
        let reply = self
            .try_reply()
            .await
            .unwrap_or_else(|| panic!("connection closed, {code} {status} expected ({caller})"));
        assert_eq!(
            (reply.code, reply.status().unwrap_or("")),
            (code, status),
            "unexpected reply {} {} ({caller})",
            reply.code,
            reply.text()
        );
        reply
    }

    /// Reads the next reply and checks its code only (scenario flavors word and number their
    /// statuses differently; a test that pins them compares [`Reply::wire`]).
    #[track_caller]
    pub(crate) fn expect_code(
        &mut self,
        code: u16,
    ) -> impl std::future::Future<Output = Reply> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let reply = self
                .try_reply()
                .await
                .unwrap_or_else(|| panic!("connection closed, {code} expected ({caller})"));
            assert_eq!(
                reply.code, code,
                "unexpected reply {:?} ({caller})",
                reply.wire
            );
            reply
        }
    }

    /// Checks the `220 <hostname> ...` greeting.
    pub(crate) async fn expect_greeting(&mut self) -> Reply {
        let reply = self.reply().await;
        assert_eq!(reply.code, 220, "greeting: {}", reply.text());
        assert_eq!(reply.lines.len(), 1, "greeting: {}", reply.text());
        assert!(
            reply.lines[0].starts_with(HOSTNAME),
            "greeting names the host: {}",
            reply.text()
        );
        reply
    }

    /// Asserts that the server closes the connection with nothing more to say.
    pub(crate) async fn expect_closed(&mut self) {
        if let Some(line) = self.line().await {
            panic!("expected the connection to close, got {line:?}");
        }
    }

    /// Reads a 421 with `status` and then the end of the stream: how the server ends a session
    /// (RFC 5321 §3.8: timeouts, shutdown, caps).
    #[track_caller]
    pub(crate) fn expect_421_closed(
        &mut self,
        status: &'static str,
    ) -> impl std::future::Future<Output = Reply> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let reply = self.expect_from(caller, 421, status).await;
            self.expect_closed().await;
            reply
        }
    }

    /// Asserts that nothing at all arrives within `wait`: no byte and no end of stream (a
    /// session told to hang). `wait` bounds the read; how long it took is not asserted.
    pub(crate) async fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.buffer.is_empty(),
            "unread bytes {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        let mut chunk = [0u8; 512];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_elapsed) => {}
            Ok(Ok(0)) => panic!("the server closed the connection instead of hanging"),
            Ok(Ok(n)) => panic!(
                "the server answered: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Ok(Err(error)) => panic!("read failed: {error}"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Sends one command line (CRLF added) and returns its reply, whatever it is.
    pub(crate) async fn command(&mut self, line: &str) -> Reply {
        self.send_line(line).await;
        self.reply().await
    }

    /// Sends one command line (CRLF added) and checks the reply.
    pub(crate) async fn cmd(&mut self, line: &str, code: u16, status: &'static str) -> Reply {
        self.send_line(line).await;
        self.expect(code, status).await
    }

    /// Sends one command line (CRLF added) and checks the reply's code only.
    #[track_caller]
    pub(crate) fn cmd_code<'a>(
        &'a mut self,
        line: &str,
        code: u16,
    ) -> impl std::future::Future<Output = Reply> + 'a {
        let caller = std::panic::Location::caller();
        let line = line.to_owned();
        async move {
            self.send_line(&line).await;
            let reply = self.reply().await;
            assert_eq!(reply.code, code, "{line} got {:?} ({caller})", reply.wire);
            reply
        }
    }

    /// EHLO and checks the multi-line 250 with the extensions every session offers.
    pub(crate) async fn ehlo(&mut self, domain: &str) -> Reply {
        self.send_line(&format!("EHLO {domain}")).await;
        let reply = self.reply().await;
        assert_ehlo(&reply);
        reply
    }

    /// AUTH PLAIN with its initial response for `user` and `password`; the reply, whatever it is.
    pub(crate) async fn auth_plain(&mut self, user: &str, password: &str) -> Reply {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        self.command(&format!("AUTH PLAIN {token}")).await
    }

    /// MAIL FROM and RCPT TO as the sink answers them (250 2.1.0, 250 2.1.5): the start of a
    /// transaction that the test is not about.
    pub(crate) async fn envelope(&mut self, from: &str, rcpt: &str) {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250, "2.1.0").await;
        self.cmd(&format!("RCPT TO:<{rcpt}>"), 250, "2.1.5").await;
    }

    /// [`Conn::envelope`] then DATA answered with 354: ready for a body.
    pub(crate) async fn begin_data(&mut self, from: &str, rcpt: &str) {
        self.envelope(from, rcpt).await;
        self.cmd("DATA", 354, "").await;
    }

    /// MAIL FROM `from`, which must get a 250, then RCPT TO `rcpt`; returns the RCPT reply,
    /// whatever it is: how a scenario's recipient rules are met.
    pub(crate) async fn mail_rcpt(&mut self, from: &str, rcpt: &str) -> Reply {
        self.cmd_code(&format!("MAIL FROM:<{from}>"), 250).await;
        self.command(&format!("RCPT TO:<{rcpt}>")).await
    }

    /// DATA, which must get 354, then `body` (which ends with its `.` line); returns the reply
    /// to the end of data, whatever it is.
    pub(crate) async fn data(&mut self, body: &[u8]) -> Reply {
        self.cmd_code("DATA", 354).await;
        self.send(body).await;
        self.reply().await
    }

    /// A whole transaction, one command at a time: MAIL FROM, RCPT TO (each must get 250), then
    /// [`Conn::data`]; returns the reply to the end of data, whatever it is.
    pub(crate) async fn deliver(&mut self, from: &str, rcpt: &str, body: &[u8]) -> Reply {
        self.mail_rcpt(from, rcpt).await.assert_code(250);
        self.data(body).await
    }

    /// Sends QUIT, expects `221 2.0.0` and the end of the stream.
    pub(crate) async fn quit(&mut self) {
        self.cmd("QUIT", 221, "2.0.0").await;
        self.expect_closed().await;
    }

    /// Sends QUIT, expects a 221 (whatever its status: flavors differ) and the end of the
    /// stream.
    pub(crate) async fn quit_221(&mut self) {
        self.cmd_code("QUIT", 221).await;
        self.expect_closed().await;
    }

    /// After `last`, the reply a test stops at: the end of the stream after a 421 (RFC 5321
    /// §3.8), else QUIT as in [`Conn::quit_221`], so that no stray reply goes unnoticed.
    pub(crate) async fn finish(&mut self, last: &Reply) {
        if last.code == 421 {
            self.expect_closed().await;
        } else {
            self.quit_221().await;
        }
    }
}
