//! The sans-IO SMTP session: bytes in; replies, steps and typed events out.
//!
//! The connection task feeds whatever it read into [`Session::advance`], which processes every
//! complete command already buffered (PIPELINING, RFC 2920) and appends their replies to one output
//! buffer, so that they are written with one flush. When a policy must decide a reply the session
//! stops with [`Step::Decide`]; the caller asks its [`Policy`](crate::smtp::policy::Policy) and
//! hands the decision to [`Session::answer`]. A message the policy accepts comes back as
//! [`Step::Store`], and its 250 is written only once the caller says it was stored
//! ([`Session::stored`]). What the session did is reported as [`Trace`] values. No sockets, no
//! clock: everything here is tested without a network.
//!
//! The session is split by concept: [`config`] (what it is told), [`output`] (what it hands
//! back), `commands` (one method per verb), `auth` (the AUTH exchange), `body` (DATA and BDAT),
//! `answer` (carrying out decisions), `transaction` (the envelope and body being received),
//! `write` (writing and tracing replies) and [`drive`] (a synchronous driver).

mod answer;
mod auth;
mod body;
mod commands;
pub mod config;
pub mod drive;
mod dsn;
pub mod output;
mod transaction;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};

pub use config::{
    AuthPolicy, Message, SessionConfig, DEFAULT_MAX_ERRORS, DEFAULT_MAX_JUNK_COMMANDS,
    MAX_AUTH_LINE, MAX_COMMAND_LINE,
};
pub use dsn::{DsnEnvelope, DsnRecipient};
pub use output::{
    Decided, EnvelopeTrace, ReplyTrace, SilentAction, Step, StoreFailed, Trace, Waiting,
};

use super::data::DataDecoder;
use super::reply::Reply;
use super::sasl::Credentials;
use crate::smtp::policy::{Phase, SessionView};
use transaction::Transaction;

#[derive(Debug)]
enum Mode {
    Command,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword(String),
    Data(DataDecoder),
    Chunk {
        remaining: u64,
        last: bool,
        refusal: Option<Reply>,
    },
    /// A chunk already answered (its declared size is over the limit): read and dropped.
    Skip {
        remaining: u64,
        last: bool,
    },
    /// The policy said abort: the first body byte gets this reply (attributed to the decision),
    /// then the connection closes.
    AbortOnData(Reply, Option<Decided>),
    Hung,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Connect,
    Ehlo { extended: bool },
    Auth,
    Mail,
    Rcpt,
    Data,
    FirstChunk { size: u64, last: bool },
    DataEnd,
}

impl Pending {
    fn phase(self) -> Phase {
        match self {
            Pending::Connect => Phase::Connect,
            Pending::Ehlo { .. } => Phase::Ehlo,
            Pending::Auth => Phase::Auth,
            Pending::Mail => Phase::Mail,
            Pending::Rcpt => Phase::Rcpt,
            Pending::Data | Pending::FirstChunk { .. } => Phase::Data,
            Pending::DataEnd => Phase::DataEnd,
        }
    }
}

/// An accepted message between [`Step::Store`] and [`Session::stored`]: the 250 it will get
/// (the policy's wording, else the flavor's queued reply) and who decided it.
#[derive(Debug)]
struct Storing {
    /// Whether the message was taken (it is built only then, from the transaction).
    taken: bool,
    /// Whether [`Step::Store`] was returned already.
    handed: bool,
    reply: Option<Reply>,
    decided: Decided,
    /// Once stored, close without the 250 ([`Verdict::LoseReply`]).
    ///
    /// [`Verdict::LoseReply`]: crate::smtp::policy::Verdict::LoseReply
    lose_reply: bool,
}

/// One SMTP session's protocol state.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    id: u64,
    peer: SocketAddr,
    tls: bool,
    helo: Option<String>,
    auth_user: Option<String>,
    mode: Mode,
    pending: Option<Pending>,
    storing: Option<Storing>,
    transaction: Transaction,
    /// The argument of the command being decided (HELO domain, MAIL/RCPT address).
    candidate: String,
    candidate_smtputf8: bool,
    candidate_binary: bool,
    credentials: Option<Credentials>,
    refused_at_connect: bool,
    shutting_down: bool,
    discarding: bool,
    /// Syntax errors since the session began or the last accepted message.
    errors: usize,
    /// NOOP, RSET, VRFY, EXPN and HELP since the session began or the last transaction start.
    junk: usize,
    /// Complete lines read in the line modes (commands, AUTH responses, overlong lines).
    lines: u64,
    accepted: u64,
    /// Commands and reply copies are traced (for the journal); replies are always reported.
    tracing: bool,
    /// The steps of the mail transaction are traced (for the attempt history).
    envelope_tracing: bool,
    trace: Vec<Trace>,
    /// The decision being carried out, attributed to the first reply it writes.
    deciding: Option<Decided>,
}

impl Session {
    /// A new session for a client at `peer`; call [`Session::start`] first.
    pub fn new(config: Arc<SessionConfig>, id: u64, peer: SocketAddr, tls: bool) -> Self {
        Self {
            config,
            id,
            peer,
            tls,
            helo: None,
            auth_user: None,
            mode: Mode::Command,
            pending: None,
            storing: None,
            transaction: Transaction::default(),
            candidate: String::new(),
            candidate_smtputf8: false,
            candidate_binary: false,
            credentials: None,
            refused_at_connect: false,
            shutting_down: false,
            discarding: false,
            errors: 0,
            junk: 0,
            lines: 0,
            accepted: 0,
            tracing: false,
            envelope_tracing: false,
            trace: Vec::new(),
            deciding: None,
        }
    }

    /// Begins the session: the greeting waits for the connect-phase decision.
    pub fn start(&mut self) -> Step {
        self.pending = Some(Pending::Connect);
        Step::Decide(Phase::Connect)
    }

    /// The session's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the session runs under TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated identity, if any.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// What the session waits for, to choose a timeout.
    pub fn waiting(&self) -> Waiting {
        match self.mode {
            Mode::Data(_) | Mode::Chunk { .. } | Mode::Skip { .. } => Waiting::Data,
            _ => Waiting::Command,
        }
    }

    /// How many complete lines the session has read while waiting for commands (an overlong
    /// line counts once, at its end). The connection restarts the command timeout when it grows,
    /// so that the timeout bounds the time to send one whole command, not each read: a client
    /// sending a byte at a time cannot hold the connection forever.
    pub fn lines_received(&self) -> u64 {
        self.lines
    }

    /// Whether a message body is being received (shutdown lets it finish).
    pub fn in_message(&self) -> bool {
        matches!(self.mode, Mode::Data(_) | Mode::Chunk { .. }) || self.transaction.chunking
    }

    /// Whether an accepted recipient of the transaction has a later fate (a bounce to send):
    /// its message must then be taken even when nothing else keeps messages.
    pub fn message_has_later(&self) -> bool {
        self.transaction.dsn.has_later()
    }

    /// Whether a mail transaction is in progress (MAIL accepted, message not yet ended).
    pub fn in_transaction(&self) -> bool {
        self.transaction.from.is_some()
    }

    /// Whether the policy told the session never to answer again.
    pub fn is_hung(&self) -> bool {
        matches!(self.mode, Mode::Hung)
    }

    /// From now on, every new command gets 421 and the session closes.
    pub fn begin_shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Turns tracing of commands and reply copies on or off (off for load tests: nothing is
    /// copied). Reply codes and decisions are reported either way, for the metrics.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Turns tracing of the mail transaction's steps ([`Trace::Envelope`]) on or off: on, each
    /// MAIL and RCPT copies its address and the end of data reads the message's `Message-ID`.
    pub fn set_envelope_tracing(&mut self, on: bool) {
        self.envelope_tracing = on;
    }

    /// Reports a step of the mail transaction, while following the envelope.
    fn envelope(&mut self, step: impl FnOnce() -> EnvelopeTrace) {
        if self.envelope_tracing {
            self.trace.push(Trace::Envelope(step()));
        }
    }

    /// What the session did since the last call, in order.
    pub fn drain_trace(&mut self) -> std::vec::Drain<'_, Trace> {
        self.trace.drain(..)
    }

    /// What the policy sees.
    pub fn view(&self) -> SessionView<'_> {
        let deciding = self.pending;
        let candidate = (!self.candidate.is_empty() || matches!(deciding, Some(Pending::Mail)))
            .then_some(self.candidate.as_str());
        SessionView {
            session_id: self.id,
            peer: self.peer,
            tls: self.tls,
            helo: match deciding {
                Some(Pending::Ehlo { .. }) => candidate,
                _ => self.helo.as_deref(),
            },
            auth_user: match (&self.credentials, deciding) {
                (Some(creds), Some(Pending::Auth)) => Some(creds.user.as_str()),
                _ => self.auth_user.as_deref(),
            },
            auth_password: match (&self.credentials, deciding) {
                (Some(creds), Some(Pending::Auth)) => Some(creds.password.as_str()),
                _ => None,
            },
            mail_from: match deciding {
                Some(Pending::Mail) => candidate,
                _ => self.transaction.from.as_deref(),
            },
            rcpt: match deciding {
                Some(Pending::Rcpt) => candidate,
                _ => self.transaction.recipients.first().map(String::as_str),
            },
            recipients: &self.transaction.recipients,
            message: matches!(deciding, Some(Pending::DataEnd))
                .then_some(&self.transaction.body[..]),
        }
    }

    /// Processes buffered input until a decision is needed, a message must be stored, the input
    /// runs out, or the session must change transport or close. Replies are appended to `out`.
    pub fn advance(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Step {
        loop {
            if let Some(step) = self.step_once(input, out) {
                return step;
            }
        }
    }

    /// One unit of work: a command line, a piece of body, or a mode change.
    fn step_once(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Option<Step> {
        if let Some(storing) = &mut self.storing {
            // Until `stored` is called nothing more is read: the next reply is this message's.
            let handed = std::mem::replace(&mut storing.handed, true);
            return Some(if handed { Step::NeedInput } else { Step::Store });
        }
        if let Some(pending) = self.pending {
            return Some(Step::Decide(pending.phase()));
        }
        match &mut self.mode {
            Mode::Closed => {
                input.clear();
                Some(Step::Close)
            }
            Mode::Hung => {
                input.clear();
                Some(Step::NeedInput)
            }
            Mode::Skip { .. } | Mode::AbortOnData(..) | Mode::Data(_) | Mode::Chunk { .. } => {
                self.body_input(input, out)
            }
            Mode::Command | Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPassword(_) => {
                self.line_input(input, out)
            }
        }
    }

    /// Takes the next complete line in a line mode (commands, AUTH responses); an overlong line
    /// is dropped as it comes and answered at its end.
    fn line_input(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Option<Step> {
        let Some(newline) = memchr::memchr(b'\n', input) else {
            if self.discarding || input.len() >= MAX_AUTH_LINE {
                input.clear();
                self.discarding = true;
            }
            return Some(Step::NeedInput);
        };
        let length = newline + 1;
        self.lines += 1;
        if self.discarding {
            self.discarding = false;
            input.advance(length);
            self.overlong_line(out);
            return None;
        }
        let line = write::strip_line_end(&input[..newline]);
        let step = self.line(line, length, out);
        if step == Some(Step::StartTls) {
            // RFC 3207 §4.2 / CVE-2011-0411: nothing sent in plaintext after STARTTLS may be
            // taken as coming over TLS.
            input.clear();
            return Some(Step::StartTls);
        }
        input.advance(length);
        step
    }

    fn overlong_line(&mut self, out: &mut BytesMut) {
        if matches!(self.mode, Mode::Command) {
            self.syntax_error(&super::reply::fixed::LINE_TOO_LONG, out);
        } else {
            self.mode = Mode::Command;
            self.credentials = None;
            self.syntax_error(&super::reply::fixed::AUTH_LINE_TOO_LONG, out);
        }
    }

    /// Answers a syntax error and counts it; past [`SessionConfig::max_errors`] the session
    /// also says `421 4.7.0` and closes (RFC 5321 §3.8), as Postfix does.
    fn syntax_error(&mut self, reply: &Reply, out: &mut BytesMut) {
        self.send(out, reply);
        self.errors += 1;
        let max = self.config.max_errors;
        if max > 0 && self.errors >= max {
            let mark = out.len();
            write::put_line(
                out,
                &[
                    b"421 4.7.0 ",
                    self.config.hostname.as_bytes(),
                    b" Error: too many errors",
                ],
            );
            self.sent(out, mark, 421, Some(super::reply::status(4, 7, 0)));
            self.mode = Mode::Closed;
        }
    }

    /// One complete line in a line mode; `length` is its size on the wire with the line end.
    fn line(&mut self, line: &[u8], length: usize, out: &mut BytesMut) -> Option<Step> {
        if length > MAX_AUTH_LINE {
            self.overlong_line(out);
            return None;
        }
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Command => {
                if self.tracing {
                    self.trace.push(Trace::Command(write::redact(line)));
                }
                if length > MAX_COMMAND_LINE && !write::starts_with_ignore_case(line, b"AUTH ") {
                    self.syntax_error(&super::reply::fixed::LINE_TOO_LONG, out);
                    return None;
                }
                self.command(line, out)
            }
            mode => {
                if self.tracing && !line.is_empty() {
                    self.trace.push(Trace::Command("****".to_owned()));
                }
                self.mode = mode;
                self.auth_line(line, out)
            }
        }
    }

    fn ask(&mut self, pending: Pending) -> Option<Step> {
        self.pending = Some(pending);
        Some(Step::Decide(pending.phase()))
    }

    /// Ends the session with `reply` (a timeout, a shutdown): written, reported, and the
    /// session is closed.
    pub fn close_with(&mut self, reply: &Reply, out: &mut BytesMut) {
        self.send(out, reply);
        self.mode = Mode::Closed;
    }

    /// After the TLS handshake: RFC 3207 §4.2 says to forget everything learnt before it.
    pub fn tls_established(&mut self) {
        self.tls = true;
        self.helo = None;
        self.auth_user = None;
        self.credentials = None;
        self.transaction.clear();
        self.mode = Mode::Command;
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
