//! The sans-IO SMTP session: bytes in, replies and steps out.
//!
//! The connection task feeds whatever it read into [`Session::advance`], which processes every
//! complete command already buffered (PIPELINING, RFC 2920) and appends their replies to one output
//! buffer, so that they are written with one flush. When a policy must decide a reply the session
//! stops with [`Step::Decide`]; the caller asks its [`Policy`](crate::policy::Policy) and hands the
//! verdict to [`Session::answer`]. No sockets, no clock: everything here is tested without a network.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::command::{parse_command, Body, Command};
use super::data::{keep_within_limit, DataDecoder};
use super::queue_id::AcceptedReply;
use super::reply::{fixed, Reply, START_DATA};
use super::sasl::{decode_login, decode_plain, Credentials};
use crate::policy::{Phase, SessionView, Verdict};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 §4: AUTH lines may be up to 12288 octets; nothing longer is ever buffered.
pub const MAX_AUTH_LINE: usize = 12288;
/// Default of [`SessionConfig::max_errors`]: Postfix's `smtpd_hard_error_limit`.
pub const DEFAULT_MAX_ERRORS: usize = 20;
/// A message buffer up to this size is kept for the connection's next message; a larger one is
/// freed, so that idle connections that once received a big message stay small.
const REUSED_BODY_CAPACITY: usize = 64 * 1024;

/// Room made for a message body when DATA starts: most test messages fit.
const INITIAL_BODY_CAPACITY: usize = 8 * 1024;

/// When AUTH is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Offer and accept AUTH before STARTTLS (handy in tests; real providers say no).
    pub allow_plaintext: bool,
    /// Refuse MAIL until the client authenticated (530 5.7.0).
    pub required: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            allow_plaintext: true,
            required: false,
        }
    }
}

/// Everything a session needs to know about the server; shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// Text after `220 <hostname> ` in the greeting.
    pub banner: String,
    /// Largest accepted message in octets (advertised as SIZE).
    pub max_message_size: u64,
    /// Most recipients per transaction; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Whether STARTTLS can be offered (a certificate is loaded).
    pub tls_available: bool,
    /// When AUTH is offered and whether it is required.
    pub auth: AuthPolicy,
    /// The 250 after an accepted message, in the flavor's style.
    pub accepted: AcceptedReply,
    /// Syntax errors (unrecognized commands, bad arguments, overlong lines, undecodable AUTH
    /// responses) a client may make before the session answers `421 4.7.0 <hostname> Error: too
    /// many errors` and closes, as Postfix's `smtpd_hard_error_limit` does. An accepted message
    /// starts the count over; refusals by the policy and bad sequence (503) do not count. 0 means
    /// no limit.
    pub max_errors: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hostname: "mx.failmail.test".to_owned(),
            banner: "ESMTP failmail".to_owned(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            tls_available: true,
            auth: AuthPolicy::default(),
            accepted: AcceptedReply::default(),
            max_errors: DEFAULT_MAX_ERRORS,
        }
    }
}

/// A message the server accepted, with its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The session that carried it.
    pub session_id: u64,
    /// The queue id given in the 250 reply.
    pub queue_id: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The EHLO/HELO argument.
    pub helo: Option<String>,
    /// The AUTH identity, if any.
    pub auth_user: Option<String>,
    /// Whether it came under TLS.
    pub tls: bool,
    /// The MAIL FROM address (empty for `<>`).
    pub mail_from: String,
    /// The accepted recipients.
    pub recipients: Vec<String>,
    /// The message exactly as received (dot-unstuffed, without the final `.` line).
    pub data: Bytes,
}

/// What the caller must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the output, then read more input.
    NeedInput,
    /// Ask the policy about this phase and pass its verdict to [`Session::answer`].
    Decide(Phase),
    /// Write the output, then run the TLS handshake and call [`Session::tls_established`]. The
    /// session has already discarded any input that followed the STARTTLS command.
    StartTls,
    /// Write the output, then close the connection.
    Close,
}

/// What the session is waiting for, so the connection can pick the RFC 5321 timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The next command.
    Command,
    /// More of a DATA body or BDAT chunk.
    Data,
}

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
    /// The policy said abort: the first body byte gets this reply, then the connection closes.
    AbortOnData(Reply),
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

#[derive(Debug, Default)]
struct Transaction {
    from: Option<String>,
    smtputf8: bool,
    binary: bool,
    recipients: Vec<String>,
    recipient_attempted: bool,
    chunking: bool,
    chunk_failed: bool,
    body: BytesMut,
    received: u64,
    /// Address buffers of earlier transactions, reused so that MAIL and RCPT need no allocation.
    spare: Vec<String>,
    /// A buffer for the queue id in the 250 reply, reused.
    queue_id: String,
}

/// At most this many address buffers are kept for reuse, each at most this large.
const SPARE_ADDRESSES: usize = 8;
const SPARE_ADDRESS_CAPACITY: usize = 512;

impl Transaction {
    fn clear(&mut self) {
        if let Some(from) = self.from.take() {
            self.keep_spare(from);
        }
        self.smtputf8 = false;
        self.binary = false;
        while let Some(recipient) = self.recipients.pop() {
            self.keep_spare(recipient);
        }
        self.recipient_attempted = false;
        self.chunking = false;
        self.chunk_failed = false;
        self.body.clear();
        // A buffer grown by a big message that was refused or reset is not kept for the
        // connection's life.
        if self.body.capacity() > REUSED_BODY_CAPACITY {
            self.body = BytesMut::new();
        }
        self.received = 0;
    }

    fn keep_spare(&mut self, mut buffer: String) {
        if self.spare.len() < SPARE_ADDRESSES && buffer.capacity() <= SPARE_ADDRESS_CAPACITY {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    /// A buffer to receive the next address: a spare one if any.
    fn buffer(&mut self) -> String {
        self.spare.pop().unwrap_or_default()
    }
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
    /// Complete lines read in the line modes (commands, AUTH responses, overlong lines).
    lines: u64,
    accepted: u64,
    trace: Option<Vec<Trace>>,
}

/// What a session said and heard, for the journal (when tracing is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    /// A command line as received; AUTH credentials are replaced by `****`.
    Command(String),
    /// One or more replies, exactly as sent.
    Reply(Bytes),
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
            transaction: Transaction::default(),
            candidate: String::new(),
            candidate_smtputf8: false,
            candidate_binary: false,
            credentials: None,
            refused_at_connect: false,
            shutting_down: false,
            discarding: false,
            errors: 0,
            lines: 0,
            accepted: 0,
            trace: None,
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

    /// Processes buffered input until a decision is needed, the input runs out, or the session
    /// must change transport or close. Replies are appended to `out`.
    pub fn advance(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Step {
        loop {
            let mark = out.len();
            let step = self.step_once(input, out);
            self.trace_replies(out, mark);
            if let Some(step) = step {
                return step;
            }
        }
    }

    /// One unit of work: a command line, a piece of body, or a mode change.
    fn step_once(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Option<Step> {
        if let Some(pending) = self.pending {
            return Some(Step::Decide(pending.phase()));
        }
        match &mut self.mode {
            Mode::Closed => {
                input.clear();
                return Some(Step::Close);
            }
            Mode::Hung => {
                input.clear();
                return Some(Step::NeedInput);
            }
            Mode::Skip { remaining, last } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                input.advance(take);
                *remaining -= take as u64;
                if *remaining > 0 {
                    return Some(Step::NeedInput);
                }
                if *last {
                    self.transaction.clear();
                }
                self.mode = Mode::Command;
            }
            Mode::AbortOnData(reply) => {
                if input.is_empty() {
                    return Some(Step::NeedInput);
                }
                put(out, reply);
                input.clear();
                self.mode = Mode::Closed;
            }
            Mode::Data(decoder) => {
                let decoded = decoder.decode(input, &mut self.transaction.body);
                input.advance(decoded.consumed);
                if !decoded.finished {
                    return Some(Step::NeedInput);
                }
                let overflowed = decoder.overflowed();
                self.mode = Mode::Command;
                self.end_of_message(overflowed, out);
            }
            Mode::Chunk {
                remaining,
                last,
                refusal,
            } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if refusal.is_none() {
                    keep_within_limit(
                        &mut self.transaction.received,
                        self.config.max_message_size,
                        &input[..take],
                        &mut self.transaction.body,
                    );
                }
                input.advance(take);
                *remaining -= take as u64;
                if *remaining > 0 {
                    return Some(Step::NeedInput);
                }
                let (last, refusal) = (*last, refusal.take());
                self.mode = Mode::Command;
                self.end_of_chunk(last, refusal, out);
            }
            Mode::Command | Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPassword(_) => {
                let Some(newline) = memchr::memchr(b'\n', input) else {
                    if self.discarding || input.len() >= MAX_AUTH_LINE {
                        // An overlong line is dropped as it comes; its reply follows its end.
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
                let line = strip_line_end(&input[..newline]);
                let step = self.line(line, length, out);
                if step == Some(Step::StartTls) {
                    // RFC 3207 §4.2 / CVE-2011-0411: nothing sent in plaintext after
                    // STARTTLS may be taken as coming over TLS.
                    input.clear();
                    return Some(Step::StartTls);
                }
                input.advance(length);
                if step.is_some() {
                    return step;
                }
            }
        }
        None
    }

    /// Records the replies written since `mark`, when tracing.
    fn trace_replies(&mut self, out: &BytesMut, mark: usize) {
        if let Some(trace) = &mut self.trace {
            if out.len() > mark {
                trace.push(Trace::Reply(Bytes::copy_from_slice(&out[mark..])));
            }
        }
    }

    /// Turns tracing of commands and replies on or off (off for load tests: nothing recorded).
    pub fn set_tracing(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// Takes what was traced since the last call, in order.
    pub fn take_trace(&mut self) -> Vec<Trace> {
        match &mut self.trace {
            Some(trace) => std::mem::take(trace),
            None => Vec::new(),
        }
    }
}

impl Session {
    fn overlong_line(&mut self, out: &mut BytesMut) {
        if matches!(self.mode, Mode::Command) {
            self.syntax_error(&fixed::LINE_TOO_LONG, out);
        } else {
            self.mode = Mode::Command;
            self.credentials = None;
            self.syntax_error(&fixed::AUTH_LINE_TOO_LONG, out);
        }
    }

    /// Answers a syntax error and counts it; past [`SessionConfig::max_errors`] the session
    /// also says `421 4.7.0` and closes (RFC 5321 §3.8), as Postfix does.
    fn syntax_error(&mut self, reply: &Reply, out: &mut BytesMut) {
        put(out, reply);
        self.errors += 1;
        let max = self.config.max_errors;
        if max > 0 && self.errors >= max {
            let _ = write!(
                Writer(out),
                "421 4.7.0 {} Error: too many errors\r\n",
                self.config.hostname
            );
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
                if let Some(trace) = &mut self.trace {
                    trace.push(Trace::Command(redact(line)));
                }
                if length > MAX_COMMAND_LINE && !starts_with_ignore_case(line, b"AUTH ") {
                    self.syntax_error(&fixed::LINE_TOO_LONG, out);
                    return None;
                }
                self.command(line, out)
            }
            mode @ (Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPassword(_))
                if self.trace.is_some() && !line.is_empty() =>
            {
                if let Some(trace) = &mut self.trace {
                    trace.push(Trace::Command("****".to_owned()));
                }
                self.mode = mode;
                self.line_after_trace(line, out)
            }
            mode => {
                self.mode = mode;
                self.line_after_trace(line, out)
            }
        }
    }

    /// A line in an AUTH exchange (already traced).
    fn line_after_trace(&mut self, line: &[u8], out: &mut BytesMut) -> Option<Step> {
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::AuthPlain => self.auth_response(line, out, |session, text| {
                let credentials = decode_plain(text).ok()?;
                session.credentials = Some(credentials);
                Some(())
            }),
            Mode::AuthLoginUser => self.auth_response(line, out, |session, text| {
                let user = decode_login(text).ok().filter(|u| !u.is_empty())?;
                session.mode = Mode::AuthLoginPassword(user);
                Some(())
            }),
            Mode::AuthLoginPassword(user) => self.auth_response(line, out, |session, text| {
                let password = decode_login(text).ok()?;
                session.credentials = Some(Credentials { user, password });
                Some(())
            }),
            other => {
                self.mode = other;
                None
            }
        }
    }

    /// A line answering a 334 challenge: `*` cancels, else `decode` takes it.
    fn auth_response(
        &mut self,
        line: &[u8],
        out: &mut BytesMut,
        decode: impl FnOnce(&mut Self, &str) -> Option<()>,
    ) -> Option<Step> {
        let text = std::str::from_utf8(line).unwrap_or("\u{0}");
        if text == "*" {
            put(out, &fixed::AUTH_CANCELLED);
            return None;
        }
        if decode(self, text).is_none() {
            self.syntax_error(&fixed::AUTH_UNDECODABLE, out);
            return None;
        }
        match self.mode {
            Mode::AuthLoginPassword(_) => {
                put_raw(out, b"334 UGFzc3dvcmQ6\r\n");
                None
            }
            _ => self.ask(Pending::Auth),
        }
    }

    fn ask(&mut self, pending: Pending) -> Option<Step> {
        self.pending = Some(pending);
        Some(Step::Decide(pending.phase()))
    }

    fn command(&mut self, line: &[u8], out: &mut BytesMut) -> Option<Step> {
        let command = parse_command(line);
        // While shutting down, a chunked message in progress may still finish.
        let continues_chunks =
            self.transaction.chunking && matches!(command, Ok(Command::Bdat { .. }));
        if self.shutting_down && !continues_chunks {
            put(out, &fixed::SHUTTING_DOWN);
            self.mode = Mode::Closed;
            return Some(Step::Close);
        }
        if self.refused_at_connect {
            if command == Ok(Command::Quit) {
                put(out, &fixed::BYE);
                self.mode = Mode::Closed;
                return Some(Step::Close);
            }
            put(out, &fixed::NO_SERVICE);
            return None;
        }
        let command = match command {
            Ok(command) => command,
            Err(error) => {
                self.syntax_error(&error.reply(), out);
                return None;
            }
        };
        match command {
            Command::Ehlo(domain) | Command::Helo(domain) => {
                self.transaction.clear();
                set(&mut self.candidate, domain);
                let extended = matches!(command, Command::Ehlo(_));
                self.ask(Pending::Ehlo { extended })
            }
            Command::Mail(mail) => {
                let refusal = if self.helo.is_none() {
                    Some(fixed::NEED_HELO)
                } else if self.transaction.from.is_some() {
                    Some(fixed::NESTED_MAIL)
                } else if self.config.auth.required && self.auth_user.is_none() {
                    Some(fixed::AUTH_REQUIRED)
                } else if !mail.from.is_ascii() && !mail.smtputf8 {
                    Some(fixed::NEEDS_SMTPUTF8)
                } else if mail.size.is_some_and(|s| s > self.config.max_message_size) {
                    Some(fixed::MESSAGE_TOO_BIG)
                } else {
                    None
                };
                if let Some(reply) = refusal {
                    put(out, &reply);
                    return None;
                }
                set(&mut self.candidate, mail.from);
                self.candidate_smtputf8 = mail.smtputf8;
                self.candidate_binary = mail.body == Some(Body::BinaryMime);
                self.ask(Pending::Mail)
            }
            Command::Rcpt(rcpt) => {
                let refusal = if self.helo.is_none() {
                    Some(fixed::NEED_HELO)
                } else if self.transaction.from.is_none() {
                    Some(fixed::NEED_MAIL)
                } else if self.transaction.recipients.len() >= self.config.max_recipients {
                    Some(fixed::TOO_MANY_RECIPIENTS)
                } else if !rcpt.to.is_ascii() && !self.transaction.smtputf8 {
                    Some(fixed::NEEDS_SMTPUTF8)
                } else {
                    None
                };
                if let Some(reply) = refusal {
                    put(out, &reply);
                    return None;
                }
                self.transaction.recipient_attempted = true;
                set(&mut self.candidate, rcpt.to);
                self.ask(Pending::Rcpt)
            }
            Command::Data => match self.transaction_refusal() {
                Some(reply) => {
                    put(out, &reply);
                    None
                }
                None if self.transaction.binary || self.transaction.chunking => {
                    put(out, &fixed::DATA_BDAT_MIXED);
                    None
                }
                None => self.ask(Pending::Data),
            },
            Command::Bdat { size, last } => {
                let refusal = self.transaction_refusal().or_else(|| {
                    self.transaction
                        .chunk_failed
                        .then_some(fixed::BDAT_AFTER_FAILURE)
                });
                if refusal.is_none()
                    && self.transaction.received.saturating_add(size) > self.config.max_message_size
                {
                    // RFC 1870/3030: a chunk that cannot fit is refused at once, before any of
                    // it is read, so a client declaring a huge size gets its 552 without
                    // sending it; the chunk is still read and dropped, so the stream stays in
                    // sync, and nothing of it is kept.
                    put(out, &fixed::MESSAGE_TOO_BIG);
                    // The transaction is a BDAT one from here on: a DATA after it is refused
                    // (RFC 3030 §3), as after any other BDAT.
                    self.transaction.chunking = true;
                    self.transaction.chunk_failed = true;
                    self.mode = Mode::Skip {
                        remaining: size,
                        last,
                    };
                    return None;
                }
                match refusal {
                    Some(reply) => {
                        // The chunk is read and dropped, so the stream stays in sync.
                        self.mode = Mode::Chunk {
                            remaining: size,
                            last,
                            refusal: Some(reply),
                        };
                        None
                    }
                    None if !self.transaction.chunking => {
                        self.transaction.chunking = true;
                        self.ask(Pending::FirstChunk { size, last })
                    }
                    None => {
                        self.mode = Mode::Chunk {
                            remaining: size,
                            last,
                            refusal: None,
                        };
                        None
                    }
                }
            }
            Command::Rset => {
                self.transaction.clear();
                put(out, &fixed::OK);
                None
            }
            Command::Noop => {
                put(out, &fixed::OK);
                None
            }
            Command::Quit => {
                put(out, &fixed::BYE);
                self.mode = Mode::Closed;
                Some(Step::Close)
            }
            Command::Vrfy(_) => {
                put(out, &fixed::CANNOT_VRFY);
                None
            }
            Command::Expn(_) => {
                put(out, &fixed::EXPN_NOT_IMPLEMENTED);
                None
            }
            Command::Help => {
                put_raw(
                    out,
                    b"214-2.0.0 failmail: an SMTP test server\r\n214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH\r\n",
                );
                None
            }
            Command::StartTls => {
                let refusal = if self.tls {
                    Some(fixed::TLS_ALREADY_ACTIVE)
                } else if !self.config.tls_available {
                    Some(fixed::TLS_UNAVAILABLE)
                } else {
                    None
                };
                if let Some(reply) = refusal {
                    put(out, &reply);
                    return None;
                }
                put(out, &fixed::READY_FOR_TLS);
                Some(Step::StartTls)
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial, out),
        }
    }

    /// The refusal for DATA/BDAT when the transaction is not ready for a body.
    fn transaction_refusal(&self) -> Option<Reply> {
        if self.helo.is_none() {
            Some(fixed::NEED_HELO)
        } else if self.transaction.from.is_none() {
            Some(fixed::NEED_MAIL)
        } else if self.transaction.recipients.is_empty() {
            Some(if self.transaction.recipient_attempted {
                fixed::NO_VALID_RECIPIENTS
            } else {
                fixed::NEED_RCPT
            })
        } else {
            None
        }
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>, out: &mut BytesMut) -> Option<Step> {
        let refusal = if self.helo.is_none() {
            Some(fixed::NEED_HELO)
        } else if self.auth_user.is_some() {
            Some(fixed::ALREADY_AUTHENTICATED)
        } else if self.transaction.from.is_some() {
            Some(fixed::AUTH_IN_TRANSACTION)
        } else if !self.tls && !self.config.auth.allow_plaintext {
            Some(fixed::AUTH_NEEDS_TLS)
        } else {
            None
        };
        if let Some(reply) = refusal {
            put(out, &reply);
            return None;
        }
        if mechanism.eq_ignore_ascii_case("PLAIN") {
            match initial {
                None => {
                    self.mode = Mode::AuthPlain;
                    put_raw(out, b"334 \r\n");
                    None
                }
                Some(text) => match decode_plain(text) {
                    Ok(credentials) => {
                        self.credentials = Some(credentials);
                        self.ask(Pending::Auth)
                    }
                    Err(_) => {
                        self.syntax_error(&fixed::AUTH_UNDECODABLE, out);
                        None
                    }
                },
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            match initial {
                None => {
                    self.mode = Mode::AuthLoginUser;
                    put_raw(out, b"334 VXNlcm5hbWU6\r\n");
                    None
                }
                Some(text) => match decode_login(text) {
                    Ok(user) if !user.is_empty() => {
                        self.mode = Mode::AuthLoginPassword(user);
                        put_raw(out, b"334 UGFzc3dvcmQ6\r\n");
                        None
                    }
                    _ => {
                        self.syntax_error(&fixed::AUTH_UNDECODABLE, out);
                        None
                    }
                },
            }
        } else {
            put(out, &fixed::AUTH_MECHANISM_UNKNOWN);
            None
        }
    }

    fn end_of_message(&mut self, overflowed: bool, out: &mut BytesMut) {
        if overflowed {
            self.transaction.clear();
            put(out, &fixed::MESSAGE_TOO_BIG);
        } else {
            self.pending = Some(Pending::DataEnd);
        }
    }

    fn end_of_chunk(&mut self, last: bool, refusal: Option<Reply>, out: &mut BytesMut) {
        if let Some(reply) = refusal {
            put(out, &reply);
            if reply.closes_connection() {
                self.mode = Mode::Closed;
            }
            if last {
                self.transaction.clear();
            }
            return;
        }
        let overflowed = self.transaction.received > self.config.max_message_size;
        if last {
            self.end_of_message(overflowed, out);
        } else if overflowed {
            self.transaction.chunk_failed = true;
            put(out, &fixed::MESSAGE_TOO_BIG);
        } else {
            let _ = write!(
                Writer(out),
                "250 2.0.0 Ok: {} octets received\r\n",
                self.transaction.received
            );
        }
    }

    /// Takes the received message at the data_end phase, before [`Session::answer`] accepts it.
    ///
    /// The caller stores it first, so that a 250 is only ever sent for a stored message.
    pub fn take_message(&mut self) -> Message {
        // Copied to its exact size (a grown buffer can be twice the message, and stored messages
        // live long); the buffer is reused for the connection's next message unless it is big.
        let data = Bytes::copy_from_slice(&self.transaction.body);
        self.transaction.body.clear();
        if self.transaction.body.capacity() > REUSED_BODY_CAPACITY {
            self.transaction.body = BytesMut::new();
        }
        Message {
            session_id: self.id,
            queue_id: self.queue_id(),
            peer: self.peer,
            helo: self.helo.clone(),
            auth_user: self.auth_user.clone(),
            tls: self.tls,
            mail_from: self.transaction.from.clone().unwrap_or_default(),
            recipients: self.transaction.recipients.clone(),
            data,
        }
    }

    /// The queue id of the latest accepted message: unique per server process.
    fn queue_id(&self) -> String {
        let mut id = String::new();
        self.config
            .accepted
            .style
            .write(self.id, self.accepted, &mut id);
        id
    }

    /// Carries out the policy's verdict for the phase asked about in [`Step::Decide`].
    pub fn answer(&mut self, verdict: Verdict, out: &mut BytesMut) {
        let mark = out.len();
        self.answer_untraced(verdict, out);
        self.trace_replies(out, mark);
    }

    fn answer_untraced(&mut self, verdict: Verdict, out: &mut BytesMut) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match verdict {
            Verdict::Continue => self.succeed(pending, None, out),
            Verdict::Reply(reply) if reply.is_positive() => self.succeed(pending, Some(reply), out),
            Verdict::Reply(reply) => self.fail(pending, reply, out),
            Verdict::Abort(reply) if pending == Pending::Data => {
                put(out, &START_DATA);
                self.mode = Mode::AbortOnData(reply);
            }
            Verdict::Abort(reply) => self.fail(pending, reply, out),
            Verdict::Disconnect => self.mode = Mode::Closed,
            Verdict::Hang => self.mode = Mode::Hung,
        }
        self.candidate.clear();
        self.credentials = None;
    }

    fn succeed(&mut self, pending: Pending, custom: Option<Reply>, out: &mut BytesMut) {
        let reply_or =
            |out: &mut BytesMut, default: &Reply| put(out, custom.as_ref().unwrap_or(default));
        match pending {
            Pending::Connect => {
                put_line(
                    out,
                    &[
                        b"220 ",
                        self.config.hostname.as_bytes(),
                        b" ",
                        self.config.banner.as_bytes(),
                    ],
                );
            }
            Pending::Ehlo { extended } => {
                let helo = std::mem::take(&mut self.candidate);
                if let Some(mut old) = self.helo.replace(helo) {
                    old.clear();
                    self.candidate = old;
                }
                self.write_helo_reply(extended, out);
            }
            Pending::Auth => {
                self.auth_user = self.credentials.take().map(|c| c.user);
                reply_or(out, &fixed::AUTH_OK);
            }
            Pending::Mail => {
                let spare = self.transaction.buffer();
                self.transaction.from = Some(std::mem::replace(&mut self.candidate, spare));
                self.transaction.smtputf8 = self.candidate_smtputf8;
                self.transaction.binary = self.candidate_binary;
                reply_or(out, &fixed::SENDER_OK);
            }
            Pending::Rcpt => {
                let spare = self.transaction.buffer();
                let recipient = std::mem::replace(&mut self.candidate, spare);
                self.transaction.recipients.push(recipient);
                reply_or(out, &fixed::RECIPIENT_OK);
            }
            Pending::Data => {
                self.transaction.body.clear();
                // One allocation for a typical message instead of a doubling one per size.
                self.transaction.body.reserve(INITIAL_BODY_CAPACITY);
                self.transaction.received = 0;
                self.mode = Mode::Data(DataDecoder::new(self.config.max_message_size));
                put(out, &START_DATA);
            }
            Pending::FirstChunk { size, last } => {
                self.mode = Mode::Chunk {
                    remaining: size,
                    last,
                    refusal: None,
                };
            }
            Pending::DataEnd => {
                match custom {
                    Some(reply) => put(out, &reply),
                    None => {
                        let accepted = &self.config.accepted;
                        let mut id = std::mem::take(&mut self.transaction.queue_id);
                        id.clear();
                        accepted.style.write(self.id, self.accepted, &mut id);
                        let _ = write!(
                            Writer(out),
                            "250 {} {}{}{}\r\n",
                            accepted.status,
                            accepted.before,
                            id,
                            accepted.after
                        );
                        self.transaction.queue_id = id;
                    }
                }
                self.accepted += 1;
                self.errors = 0;
                self.transaction.clear();
            }
        }
    }

    fn fail(&mut self, pending: Pending, reply: Reply, out: &mut BytesMut) {
        match pending {
            Pending::Connect => {
                put(out, &reply);
                self.refused_at_connect = true;
            }
            Pending::FirstChunk { size, last } => {
                // RFC 3030: the refused chunk is still read; its reply follows it.
                self.transaction.chunk_failed = true;
                self.mode = Mode::Chunk {
                    remaining: size,
                    last,
                    refusal: Some(reply.clone()),
                };
            }
            Pending::DataEnd => {
                self.transaction.clear();
                put(out, &reply);
            }
            Pending::Ehlo { .. }
            | Pending::Auth
            | Pending::Mail
            | Pending::Rcpt
            | Pending::Data => put(out, &reply),
        }
        // A 421 closes the connection; for a refused chunk, once the chunk is read.
        if reply.closes_connection() && !matches!(self.mode, Mode::Chunk { .. }) {
            self.mode = Mode::Closed;
        }
    }

    fn write_helo_reply(&self, extended: bool, out: &mut BytesMut) {
        let host = &self.config.hostname;
        if !extended {
            put_line(out, &[b"250 ", host.as_bytes()]);
            return;
        }
        put_line(out, &[b"250-", host.as_bytes()]);
        put_raw(out, b"250-PIPELINING\r\n250-SIZE ");
        push_decimal(out, self.config.max_message_size);
        put_raw(out, b"\r\n");
        put_raw(out, b"250-8BITMIME\r\n250-BINARYMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n");
        if self.config.tls_available && !self.tls {
            put_raw(out, b"250-STARTTLS\r\n");
        }
        if self.auth_user.is_none() && (self.tls || self.config.auth.allow_plaintext) {
            put_raw(out, b"250-AUTH PLAIN LOGIN\r\n");
        }
        put_raw(out, b"250 DSN\r\n");
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

/// A command line for the journal, with AUTH credentials hidden.
fn redact(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    if starts_with_ignore_case(line, b"AUTH ") {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or("AUTH");
        let mechanism = words.next().unwrap_or("");
        return match words.next() {
            Some(_) => format!("{verb} {mechanism} ****"),
            None => format!("{verb} {mechanism}"),
        };
    }
    text.into_owned()
}

fn set(slot: &mut String, value: &str) {
    slot.clear();
    slot.push_str(value);
}

fn put(out: &mut BytesMut, reply: &Reply) {
    out.put_slice(reply.wire());
}

fn put_raw(out: &mut BytesMut, bytes: &[u8]) {
    out.put_slice(bytes);
}

/// Writes `parts` and CRLF: a reply line built without the formatting machinery.
fn put_line(out: &mut BytesMut, parts: &[&[u8]]) {
    for part in parts {
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
}

/// Writes `value` in decimal.
fn push_decimal(out: &mut BytesMut, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `fmt::Write` into a `BytesMut` without an intermediate `String`.
struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.put_slice(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
