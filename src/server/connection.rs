//! One client connection: moves bytes between the socket and the [`Session`], nothing more.
//!
//! Reads what the client sent, lets the session process every complete command in it, writes all
//! the replies with one flush, asks the policy when the session needs a decision, upgrades to TLS
//! on STARTTLS, applies the RFC 5321 timeouts and the shutdown rules, and reports to the journal,
//! the attempt history and the metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn, Instrument};

use super::tls_stream::FlushingTls;
use super::{Shared, ShutdownState};
use crate::bounces::{Full, Reservation};
use crate::journal::attempts::Recorder;
use crate::journal::EventKind;
use crate::limits::connections::ConnectionSlot;
use crate::smtp::policy::{Connected, Phase, SessionPolicy};
use crate::smtp::reply::{fixed, Reply};
use crate::smtp::session::{Message, Session, Step, StoreFailed, Trace, Waiting};

/// Read buffer growth step; a session never buffers more than one such read plus one line.
const READ_CHUNK: usize = 16 * 1024;

enum Outcome {
    Closed,
    StartTls,
}

/// Everything one connection works with.
struct Connection {
    session: Session,
    policy: Box<dyn SessionPolicy>,
    input: BytesMut,
    output: BytesMut,
    shared: Arc<Shared>,
    shutdown: ShutdownWatch,
    /// Journal events of one step, gathered to be recorded under one lock (reused).
    events: Vec<EventKind>,
    /// Follows the session's transactions for the attempt history, when it is on.
    attempts: Option<Recorder>,
    /// When the batch whose replies are pending was read (for the latency histogram).
    read_at: Option<Instant>,
    /// While waiting for a command: when the command timeout expires, and the session's
    /// [`Session::lines_received`] it was set at (a new line starts a new timeout).
    command_deadline: Option<(tokio::time::Instant, u64)>,
    /// The read timeout's timer. Armed lazily: it is moved only when a deadline comes earlier
    /// than where it is set; when it fires early (the deadline moved on since) it is re-armed.
    /// So a busy connection touches the runtime's timer wheel about once per timeout period,
    /// not once per read.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Where `timer` is set.
    timer_at: tokio::time::Instant,
}

/// The server's shutdown as one connection sees it: the state now, and a wait for its next
/// change made once and kept across reads (a fresh `changed()` future per read registers and
/// unregisters a waiter each time, on the hot path).
struct ShutdownWatch {
    state: watch::Receiver<ShutdownState>,
    next: std::pin::Pin<Box<dyn std::future::Future<Output = ShutdownState> + Send + Sync>>,
}

impl ShutdownWatch {
    fn new(state: watch::Receiver<ShutdownState>) -> Self {
        let next = Self::wait(state.clone());
        Self { state, next }
    }

    fn wait(
        mut state: watch::Receiver<ShutdownState>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ShutdownState> + Send + Sync>> {
        Box::pin(async move {
            match state.changed().await {
                Ok(()) => *state.borrow(),
                Err(_) => ShutdownState::Force,
            }
        })
    }

    /// The state now.
    fn now(&self) -> ShutdownState {
        *self.state.borrow()
    }

    /// The next state the server moves to (cancel-safe: the wait is kept if this is dropped).
    async fn changed(&mut self) -> ShutdownState {
        let state = (&mut self.next).await;
        // Seen: the next wait starts from here.
        self.state.borrow_and_update();
        self.next = Self::wait(self.state.clone());
        state
    }
}

/// A deadline that never comes (about 30 years on; tokio's timer does not take `Instant::MAX`).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86400 * 365 * 30)
}

/// Serves one accepted TCP connection from `peer` (canonical) until it ends; `slot` counts it
/// among the connections from its IP.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    slot: &ConnectionSlot,
    implicit_tls: bool,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<ShutdownState>,
) {
    let _ = stream.set_nodelay(true);
    let id = shared.next_session_id();
    let span = tracing::debug_span!("session", id, %peer);
    let connected = Connected {
        peer,
        connections_from_ip: slot.count(),
    };
    run(stream, implicit_tls, shared, shutdown, id, connected)
        .instrument(span)
        .await;
}

async fn run(
    stream: TcpStream,
    implicit_tls: bool,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<ShutdownState>,
    id: u64,
    connected: Connected,
) {
    let peer = connected.peer;
    debug!(implicit_tls, "connected");
    shared.journal.metrics().session_opened();
    let mut session = Session::new(shared.session_config.load_full(), id, peer, implicit_tls);
    session.set_tracing(shared.journal.events().is_some() || super::log::wanted());
    let attempts = shared
        .journal
        .attempts()
        .map(|book| Recorder::new(book.clone(), id, peer.ip(), implicit_tls));
    session.set_envelope_tracing(attempts.is_some());
    let policy = shared.policy.load().open(&connected);
    let never = far_future();
    let mut connection = Connection {
        session,
        policy,
        input: BytesMut::with_capacity(1024),
        output: BytesMut::with_capacity(1024),
        shared: shared.clone(),
        shutdown: ShutdownWatch::new(shutdown),
        events: Vec::new(),
        attempts,
        read_at: None,
        command_deadline: None,
        timer: Box::pin(tokio::time::sleep_until(never)),
        timer_at: never,
    };
    connection.journal_event(|| EventKind::SessionStart {
        peer: peer.to_string(),
        tls: implicit_tls,
    });
    let first = connection.session.start();
    let result = if implicit_tls {
        match connection.handshake(stream).await {
            Some(mut tls) => connection.drive(&mut tls, first).await,
            None => Ok(Outcome::Closed),
        }
    } else {
        let mut plain = stream;
        match connection.drive(&mut plain, first).await {
            Ok(Outcome::StartTls) => match connection.handshake(plain).await {
                Some(mut tls) => {
                    connection.session.tls_established();
                    connection.journal_event(|| EventKind::TlsStarted);
                    connection.drive(&mut tls, Step::NeedInput).await
                }
                None => Ok(Outcome::Closed),
            },
            other => other,
        }
    };
    if let Err(error) = result {
        debug!(%error, "connection ended by I/O error");
    }
    if let Some(recorder) = &mut connection.attempts {
        recorder.finish(shared.clock.now_ms());
    }
    connection.journal_event(|| EventKind::SessionEnd {
        tls: connection.session.is_tls(),
        auth_user: connection.session.auth_user().map(str::to_owned),
    });
    shared.journal.metrics().session_closed();
    debug!("closed");
}

impl Connection {
    async fn handshake(&self, stream: TcpStream) -> Option<FlushingTls<TcpStream>> {
        let acceptor = self.shared.tls.acceptor()?;
        let handshake = acceptor.accept(stream);
        let result = match tokio::time::timeout(self.shared.timeouts.command, handshake).await {
            Ok(Ok(tls)) => Some(FlushingTls(tls)),
            Ok(Err(error)) => {
                debug!(%error, "TLS handshake failed");
                None
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                None
            }
        };
        self.shared
            .journal
            .metrics()
            .tls_handshake(result.is_some());
        result
    }

    async fn drive<IO: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        mut step: Step,
    ) -> std::io::Result<Outcome> {
        loop {
            self.carry_trace();
            match step {
                Step::Decide(phase) => self.decide(io, phase).await?,
                Step::Store => self.store().await,
                Step::StartTls => {
                    self.flush(io).await?;
                    return Ok(Outcome::StartTls);
                }
                Step::Close => {
                    self.flush(io).await?;
                    self.close(io).await;
                    return Ok(Outcome::Closed);
                }
                Step::NeedInput => {
                    if let Some(outcome) = self.read(io).await? {
                        return Ok(outcome);
                    }
                }
            }
            step = self.session.advance(&mut self.input, &mut self.output);
        }
    }

    /// Writes what is pending and reads more input, within the timeout; `Some` when the
    /// connection ends instead (end of stream, timeout, shutdown).
    async fn read<IO: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
    ) -> std::io::Result<Option<Outcome>> {
        loop {
            self.flush(io).await?;
            if !self.session.in_transaction() {
                self.policy.transaction_over().await;
            }
            if self.shutdown.now() != ShutdownState::Running {
                // New commands get 421; a message being received may finish.
                self.session.begin_shutdown();
                if !self.session.in_message() {
                    return self.close_with(io, &fixed::SHUTTING_DOWN).await.map(Some);
                }
            }
            let (timeout, deadline) = self.read_deadline();
            if deadline < self.timer_at {
                self.arm_timer(deadline);
            }
            if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
                self.input.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = io.read_buf(&mut self.input) => {
                    if read? == 0 {
                        return Ok(Some(Outcome::Closed));
                    }
                    self.read_at.get_or_insert_with(Instant::now);
                    return Ok(None);
                }
                _ = &mut self.timer => {
                    if tokio::time::Instant::now() < deadline {
                        // Set for an earlier deadline that has moved on: re-arm.
                        self.arm_timer(deadline);
                        continue;
                    }
                    self.timer_at = far_future();
                    if self.session.is_hung() {
                        return Ok(Some(Outcome::Closed));
                    }
                    debug!(?timeout, "timeout");
                    return self.close_with(io, &fixed::TIMEOUT).await.map(Some);
                }
                state = self.shutdown.changed() => {
                    if state == ShutdownState::Force || !self.session.in_message() {
                        return self.close_with(io, &fixed::SHUTTING_DOWN).await.map(Some);
                    }
                    self.session.begin_shutdown();
                    // Draining: let the message in progress finish.
                }
            }
        }
    }

    /// Sets the read timer to `deadline`.
    fn arm_timer(&mut self, deadline: tokio::time::Instant) {
        self.timer.as_mut().reset(deadline);
        self.timer_at = deadline;
    }

    /// The timeout of the read about to start and when it expires.
    ///
    /// Waiting for a command, the RFC 5321 §4.5.3.2 timeout bounds the time to receive the whole
    /// command line (as Exim's `smtp_receive_timeout` and Postfix's `smtpd_per_record_deadline`
    /// do), so a client trickling a byte at a time ("slowloris") is closed with 421 4.4.2 like an
    /// idle one. Inside a message body it bounds each read, as RFC 5321's "data block" timeout.
    fn read_deadline(&mut self) -> (std::time::Duration, tokio::time::Instant) {
        let now = tokio::time::Instant::now();
        match self.session.waiting() {
            Waiting::Data => {
                self.command_deadline = None;
                let timeout = self.shared.timeouts.data;
                (timeout, now + timeout)
            }
            Waiting::Command => {
                let timeout = self.shared.timeouts.command;
                let lines = self.session.lines_received();
                let deadline = match self.command_deadline {
                    Some((deadline, at)) if at == lines => deadline,
                    _ => now + timeout,
                };
                self.command_deadline = Some((deadline, lines));
                (timeout, deadline)
            }
        }
    }

    /// Asks the policy about a phase and hands its decision to the session.
    async fn decide<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        phase: Phase,
    ) -> std::io::Result<()> {
        let decision = self.policy.decide(phase, &self.session.view()).await;
        if let Some(delay) = decision.delay {
            self.flush(io).await?;
            tokio::time::sleep(delay).await;
        }
        self.session.answer(decision, &mut self.output);
        Ok(())
    }

    /// Stores a message the session handed over, then lets the session answer (250, or 451
    /// when it could not be stored), and the policy count it.
    async fn store(&mut self) {
        let journal = self.shared.journal.clone();
        let size = self.session.message_size();
        let later = self.shared.bounces.is_some() && self.session.message_has_later();
        if !journal.wants_messages() && !later {
            // Nothing keeps it: not even copied.
            journal.pass_over();
            journal.metrics().message_accepted(size);
            self.policy.accepted(&self.session.view()).await;
            return self.session.stored(Ok(()), &mut self.output);
        }
        let Some(message) = self.session.message_to_store() else {
            return self.session.stored(Ok(()), &mut self.output);
        };
        let Ok(bounces) = self.reserve_bounces(&message) else {
            return self.session.stored(Err(StoreFailed), &mut self.output);
        };
        let queue_id = message.queue_id.clone();
        // The envelope for the event, when events are recorded (the message itself is handed
        // over).
        let envelope = journal
            .events()
            .is_some()
            .then(|| (message.mail_from.clone(), message.recipients.clone()));
        let result = match journal.deliver(message).await {
            Ok(message_id) => {
                if let Some(reservation) = bounces {
                    reservation.commit(message_id);
                }
                journal.metrics().message_accepted(size);
                self.journal_event(|| {
                    let (from, rcpts) = envelope.unwrap_or_default();
                    EventKind::Message {
                        message_id,
                        queue_id,
                        size,
                        from,
                        rcpts,
                    }
                });
                self.policy.accepted(&self.session.view()).await;
                Ok(())
            }
            Err(error) => {
                warn!(%error, "message could not be stored");
                Err(StoreFailed)
            }
        };
        self.session.stored(result, &mut self.output);
    }

    /// Keeps room for the later notifications of a message about to be stored; a message whose
    /// notifications would not fit is refused (451 4.3.0) rather than accepted without them.
    fn reserve_bounces(&self, message: &Message) -> Result<Option<Reservation>, Full> {
        let Some(bounces) = self
            .shared
            .bounces
            .as_ref()
            .filter(|_| message.dsn.is_some())
        else {
            return Ok(None);
        };
        let hostname = self.shared.session_config.load().hostname.clone();
        bounces.reserve(message, &hostname).inspect_err(|full| {
            warn!(%full, "message refused: no room for its later notifications");
        })
    }

    /// Writes the pending replies. A client that does not read them (its receive window stays
    /// full) gets the command timeout, then the connection is dropped: writes never wait forever.
    async fn flush<IO: AsyncWrite + Unpin>(&mut self, io: &mut IO) -> std::io::Result<()> {
        if !self.output.is_empty() {
            let write = async {
                io.write_all(&self.output).await?;
                io.flush().await
            };
            match tokio::time::timeout(self.shared.timeouts.command, write).await {
                Ok(written) => written?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client did not read its replies",
                    ))
                }
            }
            self.output.clear();
            if let Some(read_at) = self.read_at.take() {
                self.shared
                    .journal
                    .metrics()
                    .reply_latency(read_at.elapsed());
            }
        }
        Ok(())
    }

    /// Ends the stream (a TLS close_notify, then FIN). Bounded like a write: a client that
    /// reads nothing cannot hold the connection open here.
    async fn close<IO: AsyncWrite + Unpin>(&self, io: &mut IO) {
        let _ = tokio::time::timeout(self.shared.timeouts.command, io.shutdown()).await;
    }

    async fn close_with<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        reply: &Reply,
    ) -> std::io::Result<Outcome> {
        self.session.close_with(reply, &mut self.output);
        self.carry_trace();
        self.flush(io).await?;
        self.close(io).await;
        Ok(Outcome::Closed)
    }

    /// Carries what the session reported to the metrics and, when they are on, the journal
    /// and the attempt history.
    fn carry_trace(&mut self) {
        let journal = &self.shared.journal;
        let metrics = journal.metrics();
        let recording = journal.events().is_some();
        let clock = &self.shared.clock;
        let mut now = None;
        let mut at = || *now.get_or_insert_with(|| clock.now_ms());
        if let Some(recorder) = &mut self.attempts {
            recorder.observe(self.session.is_tls(), self.session.auth_user());
        }
        for item in self.session.drain_trace() {
            match item {
                Trace::Command(line) => {
                    super::log::command(&line);
                    if recording {
                        self.events.push(EventKind::Command { line });
                    }
                }
                Trace::Reply(reply) => {
                    metrics.replies_sent(reply.code, reply.times);
                    if reply.decided.as_ref().is_some_and(|d| d.limited) {
                        metrics.limit_refused(reply.times);
                    }
                    super::log::reply(&reply);
                    if let Some(recorder) = &mut self.attempts {
                        recorder.reply(&reply, at());
                    }
                    if recording {
                        self.events.extend(EventKind::reply(reply));
                    }
                }
                Trace::Silent { action, decided } => {
                    super::log::silent(action, &decided);
                    if let Some(recorder) = &mut self.attempts {
                        recorder.silent(action, &decided, at());
                    }
                    if recording {
                        self.events.push(EventKind::silent(action, &decided));
                    }
                }
                Trace::Envelope(step) => {
                    if let Some(recorder) = &mut self.attempts {
                        recorder.envelope(step, at());
                    }
                }
            }
        }
        if let (Some(events), false) = (journal.events(), self.events.is_empty()) {
            events.record(at(), self.session.id(), self.events.drain(..));
        }
    }

    /// Records the event `kind` makes, if the journal is on (nothing is built when it is off).
    fn journal_event(&self, kind: impl FnOnce() -> EventKind) {
        if let Some(events) = self.shared.journal.events() {
            events.record(self.shared.clock.now_ms(), self.session.id(), [kind()]);
        }
    }
}
