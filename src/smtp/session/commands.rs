//! One method per SMTP verb: the checks the protocol itself makes (order, syntax, limits), and,
//! where a policy may decide, the question asked with [`Step::Decide`].

use bytes::BytesMut;

use super::output::{EnvelopeTrace, Step};
use super::write::{set, Writer};
use super::{Mode, Pending, Session};
use crate::smtp::command::{parse_command, Body, Command, MailCommand, RcptCommand};
use crate::smtp::reply::{fixed, Reply};

/// HELP's reply: the verbs this server knows.
const HELP: Reply = Reply::from_static(
    214,
    Some(crate::smtp::reply::status(2, 0, 0)),
    b"214-2.0.0 failmail: an SMTP test server\r\n214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH\r\n",
);

impl Session {
    /// A complete command line: refused outright while shutting down or after a connect-time
    /// refusal, else parsed and handed to its verb's method.
    pub(super) fn command(&mut self, line: &[u8], out: &mut BytesMut) -> Option<Step> {
        let command = parse_command(line);
        // While shutting down, a chunked message in progress may still finish.
        let continues_chunks =
            self.transaction.chunking && matches!(command, Ok(Command::Bdat { .. }));
        if self.shutting_down && !continues_chunks {
            return self.closing(&fixed::SHUTTING_DOWN, out);
        }
        if self.refused_at_connect {
            if command == Ok(Command::Quit) {
                return self.closing(&fixed::BYE, out);
            }
            return self.refuse(&fixed::NO_SERVICE, out);
        }
        match command {
            Ok(command) => self.dispatch(command, out),
            Err(error) => {
                self.syntax_error(&error.reply(), out);
                None
            }
        }
    }

    /// The verb table.
    fn dispatch(&mut self, command: Command<'_>, out: &mut BytesMut) -> Option<Step> {
        match command {
            Command::Ehlo(domain) => self.helo(domain, true),
            Command::Helo(domain) => self.helo(domain, false),
            Command::Mail(mail) => self.mail(&mail, out),
            Command::Rcpt(rcpt) => self.rcpt(&rcpt, out),
            Command::Data => self.data(out),
            Command::Bdat { size, last } => self.bdat(size, last, out),
            Command::Rset => {
                self.transaction.clear();
                self.envelope(|| EnvelopeTrace::Reset);
                self.junk(&fixed::OK, out)
            }
            Command::Noop => self.junk(&fixed::OK, out),
            Command::Quit => self.closing(&fixed::BYE, out),
            Command::Vrfy(_) => self.junk(&fixed::CANNOT_VRFY, out),
            Command::Expn(_) => self.junk(&fixed::EXPN_NOT_IMPLEMENTED, out),
            Command::Help => self.junk(&HELP, out),
            Command::StartTls => self.starttls(out),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial, out),
        }
    }

    /// Writes `reply` and goes on reading commands (used for refusals and for the plain
    /// answers of NOOP, RSET, VRFY…).
    fn refuse(&mut self, reply: &Reply, out: &mut BytesMut) -> Option<Step> {
        self.send(out, reply);
        None
    }

    /// Answers a command that moves no mail (NOOP, RSET, VRFY, EXPN, HELP) with `reply`; past
    /// [`SessionConfig::max_junk_commands`](super::SessionConfig::max_junk_commands) since the
    /// last transaction start, it also counts as an error, which may close the session.
    fn junk(&mut self, reply: &Reply, out: &mut BytesMut) -> Option<Step> {
        self.junk = self.junk.saturating_add(1);
        let max = self.config.max_junk_commands;
        if max > 0 && self.junk > max {
            self.syntax_error(reply, out);
            return None;
        }
        self.refuse(reply, out)
    }

    /// Writes `reply` and closes.
    fn closing(&mut self, reply: &Reply, out: &mut BytesMut) -> Option<Step> {
        self.send(out, reply);
        self.mode = Mode::Closed;
        Some(Step::Close)
    }

    fn helo(&mut self, domain: &str, extended: bool) -> Option<Step> {
        self.transaction.clear();
        self.envelope(|| EnvelopeTrace::Reset);
        set(&mut self.candidate, domain);
        self.ask(Pending::Ehlo { extended })
    }

    fn mail(&mut self, mail: &MailCommand<'_>, out: &mut BytesMut) -> Option<Step> {
        self.envelope(|| EnvelopeTrace::Mail(mail.from.into()));
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
            return self.refuse(&reply, out);
        }
        set(&mut self.candidate, mail.from);
        self.transaction.dsn.mail(mail.ret, mail.envid);
        self.candidate_smtputf8 = mail.smtputf8;
        self.candidate_binary = mail.body == Some(Body::BinaryMime);
        self.ask(Pending::Mail)
    }

    fn rcpt(&mut self, rcpt: &RcptCommand<'_>, out: &mut BytesMut) -> Option<Step> {
        self.envelope(|| EnvelopeTrace::Rcpt(rcpt.to.into()));
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
            return self.refuse(&reply, out);
        }
        self.transaction.recipient_attempted = true;
        set(&mut self.candidate, rcpt.to);
        self.transaction.dsn.rcpt(rcpt.notify, rcpt.orcpt);
        self.ask(Pending::Rcpt)
    }

    fn data(&mut self, out: &mut BytesMut) -> Option<Step> {
        self.envelope(|| EnvelopeTrace::Data);
        match self.transaction_refusal() {
            Some(reply) => self.refuse(&reply, out),
            None if self.transaction.binary || self.transaction.chunking => {
                self.refuse(&fixed::DATA_BDAT_MIXED, out)
            }
            None => self.ask(Pending::Data),
        }
    }

    fn bdat(&mut self, size: u64, last: bool, out: &mut BytesMut) -> Option<Step> {
        if !self.transaction.chunking {
            self.envelope(|| EnvelopeTrace::Data);
        }
        let refusal = self.transaction_refusal().or_else(|| {
            self.transaction
                .chunk_failed
                .then_some(fixed::BDAT_AFTER_FAILURE)
        });
        if refusal.is_none()
            && self.transaction.received.saturating_add(size) > self.config.max_message_size
        {
            // RFC 1870/3030: a chunk that cannot fit is refused at once, before any of it is
            // read, so a client declaring a huge size gets its 552 without sending it; the chunk
            // is still read and dropped, so the stream stays in sync, and nothing of it is kept.
            self.send(out, &fixed::MESSAGE_TOO_BIG);
            // The transaction is a BDAT one from here on: a DATA after it is refused (RFC 3030
            // §3), as after any other BDAT.
            self.transaction.chunking = true;
            self.transaction.chunk_failed = true;
            self.mode = Mode::Skip {
                remaining: size,
                last,
            };
            return None;
        }
        match refusal {
            // The chunk is read and dropped, so the stream stays in sync.
            Some(reply) => self.read_chunk(size, last, Some(reply)),
            None if !self.transaction.chunking => {
                self.transaction.chunking = true;
                self.ask(Pending::FirstChunk { size, last })
            }
            None => self.read_chunk(size, last, None),
        }
    }

    fn read_chunk(&mut self, size: u64, last: bool, refusal: Option<Reply>) -> Option<Step> {
        self.mode = Mode::Chunk {
            remaining: size,
            last,
            refusal,
        };
        None
    }

    fn starttls(&mut self, out: &mut BytesMut) -> Option<Step> {
        if self.tls {
            return self.refuse(&fixed::TLS_ALREADY_ACTIVE, out);
        }
        if !self.config.tls_available {
            return self.refuse(&fixed::TLS_UNAVAILABLE, out);
        }
        self.send(out, &fixed::READY_FOR_TLS);
        Some(Step::StartTls)
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

    /// The 250 after each BDAT chunk but the last (RFC 3030).
    pub(super) fn chunk_received(&mut self, out: &mut BytesMut) {
        use std::fmt::Write as _;
        let mark = out.len();
        let _ = write!(
            Writer(out),
            "250 2.0.0 Ok: {} octets received\r\n",
            self.transaction.received
        );
        self.sent(out, mark, 250, Some(crate::smtp::reply::status(2, 0, 0)));
    }
}
