//! An embeddable failmail for Rust tests: start a server in-process on loopback port 0, point the
//! code under test at it, then look at what it captured.
//!
//! This is the library form of "start failmail beside the app under test": no child process, no
//! port to pick, no HTTP round trips to read the journal, and time that can be fast-forwarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{Addresses, App, AppConfig, RunningApp};
use crate::bounces::view::BounceView;
use crate::journal::attempts::{Report, ReportSettings};
use crate::journal::{Event, Journal, StoredMessage};
use crate::limits::Usage;
use crate::scenario::engine::Engine;
use crate::scenario::error::ScenarioError;
use crate::scenario::live::Reloader;

/// How long a dropped [`TestServer`] lets messages in progress finish before it closes them.
const DROP_GRACE: Duration = Duration::from_secs(1);

/// How often [`TestServer::wait_for_messages`] looks at the store.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// The origin scenario errors name for text given to [`TestServer::start`] or
/// [`TestServer::set_scenario`].
const ORIGIN: &str = "<inline>";

mod retries;

/// A failmail server running inside the test process, so that a Rust test can make its mailer
/// meet real SMTP replies (and scenario failures) and then assert on what arrived.
///
/// It listens on 127.0.0.1 port 0 for SMTP (STARTTLS with the development certificate), SMTPS and
/// HTTP. Dropping it stops the server: the listeners close and open sessions are ended; call
/// [`TestServer::shutdown`] instead to let messages in progress finish.
///
/// ```
/// use std::time::Duration;
///
/// use failmail::testing::TestServer;
/// use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     // "" serves the built-in scenario: every message accepted, magic addresses answered.
///     let server = TestServer::start("").await;
///
///     let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
///         .port(server.smtp_addr().port())
///         .build();
///     let email = Message::builder()
///         .from("app@example.com".parse().unwrap())
///         .to("user@example.com".parse().unwrap())
///         .subject("Welcome")
///         .body(String::from("Hello!"))
///         .unwrap();
///     mailer.send(email).await.expect("failmail accepts the message");
///
///     let messages = server.wait_for_messages(1, Duration::from_secs(10)).await;
///     assert_eq!(messages[0].message.mail_from, "app@example.com");
///     assert_eq!(messages[0].message.recipients, ["user@example.com"]);
///     let text = String::from_utf8_lossy(&messages[0].message.data);
///     assert!(text.contains("Subject: Welcome\r\n"), "{text}");
///
///     // A scenario makes the same mailer meet a bounce.
///     server
///         .set_scenario("[[rule]]\nrcpt = \"user@*\"\nreply = \"user_unknown\"\n")
///         .unwrap();
///     let bounce = Message::builder()
///         .from("app@example.com".parse().unwrap())
///         .to("user@example.com".parse().unwrap())
///         .body(String::from("again"))
///         .unwrap();
///     let error = mailer.send(bounce).await.unwrap_err();
///     assert!(error.is_permanent());
///     assert_eq!(server.messages().len(), 1);
///
///     server.shutdown().await;
/// }
/// ```
pub struct TestServer {
    /// `None` once shut down (or while being dropped).
    app: Option<RunningApp>,
    journal: Arc<Journal>,
    reloader: Reloader,
    addresses: Addresses,
    /// The configured size of the message ring.
    message_capacity: usize,
}

impl TestServer {
    /// Starts a server with `scenario` (TOML text; `""` for the built-in scenario) on loopback
    /// port 0, so that a test needs one line to get an SMTP server that behaves as the scenario
    /// says.
    ///
    /// Panics when the scenario is refused, with its `<inline>:line:column` and the reason: a
    /// broken scenario is a bug in the test.
    pub async fn start(scenario: &str) -> TestServer {
        Self::start_with(scenario, |_| {}).await
    }

    /// Like [`TestServer::start`], but lets the test change the [`AppConfig`] first (ring
    /// sizes, Maildir, timeouts, TLS, listeners, the clock…), for tests that need more than the
    /// defaults.
    ///
    /// The configuration starts as [`AppConfig::loopback`] with a fresh clock; a scenario is
    /// always served (the built-in one until `scenario` replaces it).
    pub async fn start_with(scenario: &str, configure: impl FnOnce(&mut AppConfig)) -> TestServer {
        let mut config = AppConfig::loopback();
        configure(&mut config);
        let message_capacity = config.journal.message_capacity;
        config.scenario.get_or_insert_with(Default::default);
        let app = App::start(config)
            .await
            .unwrap_or_else(|e| panic!("failmail::testing: the test server did not start: {e}"));
        let reloader = app
            .scenario()
            .expect("a test server always serves a scenario")
            .clone();
        let test_server = TestServer {
            addresses: app.addresses(),
            journal: app.journal().clone(),
            app: Some(app),
            reloader,
            message_capacity,
        };
        if !scenario.trim().is_empty() {
            if let Err(error) = test_server.set_scenario(scenario) {
                panic!("failmail::testing: the scenario was refused: {error}");
            }
        }
        test_server
    }

    /// The SMTP (STARTTLS) address, for the mailer under test to connect to.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.addresses.smtp
    }

    /// The implicit-TLS (SMTPS) address, for mailers configured for port 465 style TLS.
    ///
    /// Panics if the configuration turned SMTPS (or TLS) off.
    pub fn smtps_addr(&self) -> SocketAddr {
        self.addresses.smtps.expect(
            "failmail::testing: this server has no SMTPS listener (smtps or certificate is None)",
        )
    }

    /// The HTTP API address, for tests that exercise the API or a client of it.
    ///
    /// Panics if the configuration turned HTTP off.
    pub fn http_addr(&self) -> SocketAddr {
        self.addresses
            .http
            .expect("failmail::testing: this server has no HTTP listener (http is None)")
    }

    /// The accepted messages kept in memory, oldest first: what the test asserts on.
    pub fn messages(&self) -> Vec<Arc<StoredMessage>> {
        self.journal.messages().list()
    }

    /// The kept events (sessions, commands, replies, messages), oldest first, to assert on what
    /// the client sent and which replies it was given. Empty when events are not recorded.
    pub fn events(&self) -> Vec<Arc<Event>> {
        self.journal
            .events()
            .map(|log| log.list(None, 0, usize::MAX))
            .unwrap_or_default()
    }

    /// The kept events of one session (the `session` of an event or of a captured message), to
    /// follow one client's conversation when several ran.
    pub fn events_of(&self, session: u64) -> Vec<Arc<Event>> {
        self.journal
            .events()
            .map(|log| log.list(Some(session), 0, usize::MAX))
            .unwrap_or_default()
    }

    /// Waits until at least `n` messages are kept, then returns them (oldest first): mailers
    /// often send in the background, and a test needs a bounded wait instead of a sleep.
    ///
    /// Panics after `timeout`, saying how many arrived, or at once if the message ring is smaller
    /// than `n` (it could never hold them).
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Arc<StoredMessage>> {
        let capacity = self.message_capacity;
        assert!(
            n <= capacity,
            "failmail::testing: waiting for {n} messages, but the message ring keeps only {capacity}"
        );
        let store = self.journal.messages().clone();
        let poll = async move {
            loop {
                let kept = store.list();
                if kept.len() >= n {
                    return kept;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        };
        match tokio::time::timeout(timeout, poll).await {
            Ok(kept) => kept,
            Err(_) => panic!(
                "failmail::testing: {n} messages expected within {timeout:?}, {} arrived",
                self.journal.messages().list().len()
            ),
        }
    }

    /// The later notifications (DSNs, complaints, auto-replies): pending ones first (earliest
    /// due first), then the sent ones (oldest first).
    pub fn bounces(&self) -> Vec<BounceView> {
        let (pending, sent) = self.app().bounces().list();
        let mut all: Vec<BounceView> = pending.iter().map(BounceView::pending).collect();
        all.extend(sent.iter().map(|s| BounceView::sent(s)));
        all
    }

    /// Waits until a sent notification matches `wanted` and returns it with its bytes; panics
    /// after `timeout`. Sending follows the clock: move it with [`TestServer::advance_clock`].
    pub async fn wait_for_bounce(
        &self,
        wanted: impl Fn(&BounceView) -> bool,
        timeout: Duration,
    ) -> (BounceView, bytes::Bytes) {
        let bounces = self.app().bounces().clone();
        let poll = async {
            loop {
                let (_, sent) = bounces.list();
                let found = sent
                    .iter()
                    .map(|s| (BounceView::sent(s), s))
                    .find(|(view, _)| wanted(view));
                if let Some((view, sent)) = found {
                    return (view, sent.raw.clone());
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        };
        match tokio::time::timeout(timeout, poll).await {
            Ok(found) => found,
            Err(_) => panic!(
                "failmail::testing: no matching bounce within {timeout:?}; bounces: {:?}",
                self.bounces()
            ),
        }
    }

    /// The retry report now, on the server's clock: for each message and recipient, its
    /// attempts, the delays between them and the verdicts on the mailer's behaviour, to assert
    /// that it retried as it should (`assert_retried`, `assert_no_duplicates`, `assert_ok`…).
    ///
    /// Panics if the configuration turned the attempt history off.
    pub fn report(&self) -> Report {
        let book = self.journal.attempts().expect(
            "failmail::testing: this server follows no attempts (AppConfig::attempts.enabled)",
        );
        let settings = ReportSettings::new(book.config(), Some(self.engine().scenario()));
        book.report(self.app().clock().now_ms(), &settings)
    }

    /// Waits until the retry report satisfies `done`, then returns it: a mailer (or an MTA)
    /// retries on its own schedule, and a test needs a bounded wait instead of a sleep.
    ///
    /// Panics after `timeout`, with the last report as a table.
    ///
    /// The README's "Test your mailer's retry logic" shows the visible lines of this example
    /// (tests/readme.rs checks that they are the same); the hidden ones play the mailer under
    /// test: lettre, retrying a minute and a half after each temporary failure (moving the
    /// server's clock instead of waiting).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use failmail::testing::TestServer;
    /// # use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = TestServer::start("[greylisting]\ndelay = \"1s\"\n").await;
    /// // ... let the mailer under test send to user@example.com ...
    /// # let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
    /// #     .port(server.smtp_addr().port())
    /// #     .build();
    /// # let email = Message::builder()
    /// #     .from("app@example.com".parse().unwrap())
    /// #     .to("user@example.com".parse().unwrap())
    /// #     .subject("Welcome")
    /// #     .body(String::from("Hello!"))
    /// #     .unwrap();
    /// # let mut tries = 0;
    /// # while let Err(error) = mailer.send(email.clone()).await {
    /// #     assert!(error.is_transient() && tries < 3, "{error}");
    /// #     tries += 1;
    /// #     server.advance_clock(Duration::from_secs(90)).await;
    /// # }
    /// # assert_eq!(tries, 1, "greylisted once");
    /// let report = server
    ///     .wait_for_report(Duration::from_secs(30), |r| {
    ///         r.recipient("user@example.com").is_some_and(|(_, r)| r.delivered)
    ///     })
    ///     .await;
    /// report.assert_retried("user@example.com").assert_no_duplicates().assert_ok();
    /// # server.shutdown().await;
    /// # }
    /// ```
    pub async fn wait_for_report(
        &self,
        timeout: Duration,
        done: impl Fn(&Report) -> bool,
    ) -> Report {
        let poll = async {
            loop {
                let report = self.report();
                if done(&report) {
                    return report;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        };
        match tokio::time::timeout(timeout, poll).await {
            Ok(report) => report,
            Err(_) => panic!(
                "failmail::testing: the retry report did not come to the expected state within \
                 {timeout:?}; it is now:\n{}",
                self.report().table()
            ),
        }
    }

    /// Moves the server's clock (limit windows, greylisting, sequences, event stamps) forward,
    /// so that a test can pass "one hour later" at once. (Awaited, because a clock shared through
    /// `--state redis://…` moves in Redis.)
    pub async fn advance_clock(&self, by: Duration) {
        self.app()
            .clock()
            .advance(by)
            .await
            .unwrap_or_else(|e| panic!("failmail::testing: the clock did not move: {e}"));
    }

    /// Forgets the captured messages, the events, the attempts, and the limit, greylist,
    /// sequence and rule state, so that one server can serve several independent test cases.
    ///
    /// Ids go on increasing; the clock is not moved back; the scenario stays.
    pub async fn reset(&self) {
        self.journal.clear();
        self.engine()
            .reset()
            .await
            .unwrap_or_else(|e| panic!("failmail::testing: reset failed: {e:?}"));
    }

    /// Replaces the live scenario with `text` (TOML) for new sessions, so that one server can
    /// play several scenarios. On error the old one stays live and the error says where.
    pub fn set_scenario(&self, text: &str) -> Result<(), ScenarioError> {
        self.reloader.replace(ORIGIN, text)
    }

    /// How much of each rate limit (per account, per IP) is used now, to assert on what was
    /// counted.
    pub async fn limit_usage(&self) -> Vec<Usage> {
        self.engine()
            .usage()
            .await
            .unwrap_or_else(|e| panic!("failmail::testing: limit usage failed: {e:?}"))
    }

    /// The Prometheus text of the server's counters (what `/metrics` shows), to assert on
    /// counts without an HTTP client.
    pub fn metrics_text(&self) -> String {
        self.journal.metrics_text()
    }

    /// The running failmail behind this test server, for what the helpers above do not cover
    /// (the journal, the scenario reloader, the server's control handle).
    pub fn app(&self) -> &RunningApp {
        self.app
            .as_ref()
            .expect("a test server has its app until it is shut down")
    }

    /// Stops the server gracefully: no new connections, messages in progress may finish (within
    /// the configured grace), then everything is closed. Use it when the test must know the
    /// server is gone before it goes on.
    pub async fn shutdown(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    fn engine(&self) -> Arc<Engine> {
        self.reloader.engine()
    }
}

impl Drop for TestServer {
    /// Stops serving: the listeners close and sessions end. Inside a Tokio runtime the graceful
    /// shutdown is spawned with a short grace; without one (or if the runtime is going away) the
    /// server is dropped, which ends its tasks the same way, only without a grace.
    fn drop(&mut self) {
        // The kept messages and events are not reachable any more: free them now.
        self.journal.clear();
        let Some(app) = self.app.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    // Timing out drops the app: the remaining sessions are closed.
                    let _ = tokio::time::timeout(DROP_GRACE, app.shutdown()).await;
                });
            }
            Err(_) => drop(app),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    const IO_TIMEOUT: Duration = Duration::from_secs(10);

    /// The code of the next reply (multi-line replies read whole).
    async fn reply_code(stream: &mut BufReader<TcpStream>) -> u16 {
        loop {
            let mut line = String::new();
            assert!(stream.read_line(&mut line).await.unwrap() >= 4, "closed");
            if line.as_bytes()[3] != b'-' {
                return line[..3].parse().unwrap();
            }
        }
    }

    /// Runs one SMTP conversation: sends each line, returns the code of each reply (the
    /// greeting first).
    async fn converse(addr: SocketAddr, lines: &[&str]) -> Vec<u16> {
        tokio::time::timeout(IO_TIMEOUT, async {
            let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
            let mut codes = vec![reply_code(&mut stream).await];
            for line in lines {
                stream
                    .get_mut()
                    .write_all(format!("{line}\r\n").as_bytes())
                    .await
                    .unwrap();
                codes.push(reply_code(&mut stream).await);
            }
            codes
        })
        .await
        .expect("the conversation ends within the timeout")
    }

    async fn send_one(addr: SocketAddr, from: &str) -> Vec<u16> {
        let mail = format!("MAIL FROM:<{from}>");
        converse(
            addr,
            &[
                "EHLO t.example",
                &mail,
                "RCPT TO:<b@example.com>",
                "DATA",
                "Subject: t\r\n\r\nhi\r\n.",
                "QUIT",
            ],
        )
        .await
    }

    /// Connects until the port refuses (bounded); a connection that still got through must not
    /// be served a greeting for long: the listener is closing.
    async fn until_refused(addr: SocketAddr) {
        tokio::time::timeout(IO_TIMEOUT, async {
            loop {
                match TcpStream::connect(addr).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                    // Reset while the listener was closing: try again.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        tokio::task::yield_now().await;
                    }
                    Err(e) => panic!("unexpected connect error: {e}"),
                    Ok(mut stream) => {
                        // Accepted by the kernel before the listener closed: it is closed or
                        // reset without a transaction.
                        let mut rest = Vec::new();
                        let _ = stream.read_to_end(&mut rest).await;
                        tokio::task::yield_now().await;
                    }
                }
            }
        })
        .await
        .expect("the dropped server stops accepting within the timeout");
    }

    #[tokio::test]
    async fn captures_messages_and_events() {
        let server = TestServer::start("").await;
        assert_eq!(
            send_one(server.smtp_addr(), "a@example.com").await,
            [220, 250, 250, 250, 354, 250, 221]
        );
        let messages = server.wait_for_messages(1, IO_TIMEOUT).await;
        assert_eq!(
            messages[0].message.data.as_ref(),
            b"Subject: t\r\n\r\nhi\r\n"
        );
        let session = messages[0].message.session_id;
        let events = server.events_of(session);
        assert!(events.iter().all(|e| e.session == session));
        assert!(events
            .iter()
            .any(|e| matches!(e.kind, crate::journal::EventKind::Message { .. })));
        assert!(server.events().len() >= events.len());
        assert!(server
            .metrics_text()
            .lines()
            .any(|l| l == "failmail_messages_total 1"));
        assert_ne!(server.smtps_addr(), server.smtp_addr());
        assert_ne!(server.http_addr(), server.smtp_addr());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn limits_clock_reset_and_scenario_swaps() {
        let server = TestServer::start("[limits]\nper_account = { max = 2, per = \"1h\" }\n").await;
        let addr = server.smtp_addr();
        for _ in 0..2 {
            assert_eq!(send_one(addr, "a@example.com").await[5], 250);
        }
        let refused = send_one(addr, "a@example.com").await;
        assert!(
            (400..600).contains(&refused[2]),
            "MAIL refused: {refused:?}"
        );
        let usage = server.limit_usage().await;
        assert!(usage.iter().any(|u| u.used == 2), "{usage:?}");

        // An hour later the window has room again.
        server.advance_clock(Duration::from_secs(3601)).await;
        assert_eq!(send_one(addr, "a@example.com").await[5], 250);

        // reset forgets messages, events and limit uses.
        server.reset().await;
        assert!(server.messages().is_empty());
        assert!(server.events().is_empty());
        assert!(server.limit_usage().await.iter().all(|u| u.used == 0));
        for _ in 0..2 {
            assert_eq!(send_one(addr, "a@example.com").await[5], 250);
        }

        // A bad scenario is refused with its place; the old one stays live.
        let error = server
            .set_scenario("[limits]\nper_account = { max = 2, per = \"1h\" }\nbogus = 1\n")
            .unwrap_err();
        assert_eq!(
            (error.origin.as_str(), error.line),
            ("<inline>", 3),
            "{error}"
        );
        assert!((400..600).contains(&send_one(addr, "a@example.com").await[2]));
        // A good one replaces it for new sessions.
        server.set_scenario("").unwrap();
        assert_eq!(send_one(addr, "a@example.com").await[5], 250);
        server.shutdown().await;
    }

    #[tokio::test]
    #[should_panic(expected = "the scenario was refused: <inline>:2:")]
    async fn bad_scenario_panics_with_its_place() {
        TestServer::start("[[rule]]\nnot_a_key = 1\n").await;
    }

    #[tokio::test]
    async fn dropped_server_stops_accepting() {
        let server = TestServer::start("").await;
        let addresses = [server.smtp_addr(), server.smtps_addr(), server.http_addr()];
        assert_eq!(send_one(addresses[0], "a@example.com").await[5], 250);
        drop(server);
        for addr in addresses {
            until_refused(addr).await;
        }
    }

    #[test]
    fn dropped_outside_a_runtime_stops_accepting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(TestServer::start(""));
        let addr = server.smtp_addr();
        runtime.block_on(async {
            assert_eq!(send_one(addr, "a@example.com").await[5], 250);
        });
        drop(server);
        runtime.block_on(until_refused(addr));
    }

    #[tokio::test]
    async fn a_session_open_at_drop_is_closed() {
        let server = TestServer::start("").await;
        let mut stream = BufReader::new(TcpStream::connect(server.smtp_addr()).await.unwrap());
        let mut greeting = String::new();
        stream.read_line(&mut greeting).await.unwrap();
        assert!(greeting.starts_with("220 "), "{greeting}");
        drop(server);
        let mut rest = String::new();
        tokio::time::timeout(IO_TIMEOUT, stream.read_to_string(&mut rest))
            .await
            .expect("the session is closed within the timeout")
            .unwrap();
        assert!(rest.starts_with("421 "), "{rest:?}");
    }
}
