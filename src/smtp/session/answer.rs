//! Carrying out the policy's decision for the phase asked about: the normal reply or the
//! policy's, a close, a hang, an abort; and the one rule for an accepted message: it is handed
//! over with [`Step::Store`] and gets its 250 only once stored (or, for a lost reply, the
//! connection closes once it is stored).

use bytes::{Bytes, BytesMut};

use super::config::Message;
use super::output::{Decided, SilentAction, StoreFailed, Trace};
use super::transaction::{INITIAL_BODY_CAPACITY, REUSED_BODY_CAPACITY};
use super::write::{push_decimal, put_line, Writer};
use super::{Mode, Pending, Session, Storing};
use crate::smtp::data::DataDecoder;
use crate::smtp::policy::{Decision, Verdict};
use crate::smtp::reply::{fixed, Reply, START_DATA};

#[cfg(doc)]
use super::output::Step;

impl Session {
    /// Carries out the policy's decision for the phase asked about in [`Step::Decide`]. At the
    /// end of data, a decision that accepts makes the next [`Session::advance`] return
    /// [`Step::Store`]; the reply waits for [`Session::stored`].
    pub fn answer(&mut self, mut decision: Decision, out: &mut BytesMut) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if pending == Pending::Rcpt {
            self.transaction.dsn.decided(decision.later.take());
        }
        self.deciding = Some(Decided::of(pending.phase(), &decision));
        match decision.verdict {
            verdict @ (Verdict::Continue | Verdict::Reply(_)) if verdict.accepts() => {
                let custom = match verdict {
                    Verdict::Reply(reply) => Some(reply),
                    _ => None,
                };
                self.succeed(pending, custom, out);
            }
            Verdict::Reply(reply) => self.fail(pending, reply, out),
            Verdict::Abort(reply) if pending == Pending::Data => {
                // The refusal that follows the first body byte is this decision's too.
                let decided = self.deciding.clone();
                self.send(out, &START_DATA);
                self.mode = Mode::AbortOnData(reply, decided);
            }
            Verdict::Abort(reply) => self.fail(pending, reply, out),
            Verdict::LoseReply if pending == Pending::DataEnd => {
                self.succeed(pending, None, out);
                if let Some(storing) = &mut self.storing {
                    storing.lose_reply = true;
                }
            }
            Verdict::Disconnect | Verdict::LoseReply => {
                self.silent(SilentAction::Disconnect, Mode::Closed)
            }
            Verdict::Hang => self.silent(SilentAction::Hang, Mode::Hung),
            Verdict::Continue => unreachable!("Continue always accepts"),
        }
        self.deciding = None;
        self.candidate.clear();
        self.credentials = None;
    }

    /// Carries out a decision that writes no reply, and reports it.
    fn silent(&mut self, action: SilentAction, mode: Mode) {
        if let Some(decided) = self.deciding.take() {
            self.trace.push(Trace::Silent { action, decided });
        }
        self.mode = mode;
    }

    /// The message [`Step::Store`] asks to store, with its envelope (`None` if it was taken
    /// already). It is built only when taken: a caller that keeps nothing (a load test) skips
    /// the copy and goes straight to [`Session::stored`].
    pub fn message_to_store(&mut self) -> Option<Message> {
        let storing = self.storing.as_mut()?;
        if std::mem::replace(&mut storing.taken, true) {
            return None;
        }
        Some(self.take_message())
    }

    /// The size in octets of the message [`Step::Store`] asks to store.
    pub fn message_size(&self) -> usize {
        self.transaction.body.len()
    }

    /// Ends the [`Step::Store`] of an accepted message: its 250 once it is stored (or, for a
    /// lost reply, a close without it), else `451 4.3.0`; either way the transaction is over.
    pub fn stored(&mut self, result: Result<(), StoreFailed>, out: &mut BytesMut) {
        let Some(storing) = self.storing.take() else {
            return;
        };
        self.deciding = Some(storing.decided);
        match result {
            Ok(()) if storing.lose_reply => {
                self.silent(SilentAction::LoseReply, Mode::Closed);
                self.accepted += 1;
            }
            Ok(()) => {
                match &storing.reply {
                    Some(reply) => self.send(out, reply),
                    None => self.write_queued(out),
                }
                self.accepted += 1;
                self.errors = 0;
            }
            Err(StoreFailed) => self.send(out, &fixed::STORE_FAILED),
        }
        self.deciding = None;
        self.transaction.clear();
    }

    fn succeed(&mut self, pending: Pending, custom: Option<Reply>, out: &mut BytesMut) {
        let mut reply_or = |session: &mut Self, default: &Reply| {
            session.send(out, custom.as_ref().unwrap_or(default))
        };
        match pending {
            Pending::Connect => {
                let mark = out.len();
                let host = self.config.hostname.as_bytes();
                put_line(out, &[b"220 ", host, b" ", self.config.banner.as_bytes()]);
                self.sent(out, mark, 220, None);
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
                reply_or(self, &fixed::AUTH_OK);
            }
            Pending::Mail => {
                let spare = self.transaction.buffer();
                self.transaction.from = Some(std::mem::replace(&mut self.candidate, spare));
                self.transaction.smtputf8 = self.candidate_smtputf8;
                self.transaction.binary = self.candidate_binary;
                self.junk = 0;
                reply_or(self, &fixed::SENDER_OK);
            }
            Pending::Rcpt => {
                let spare = self.transaction.buffer();
                let recipient = std::mem::replace(&mut self.candidate, spare);
                self.transaction.recipients.push(recipient);
                self.transaction.dsn.accepted();
                reply_or(self, &fixed::RECIPIENT_OK);
            }
            Pending::Data => {
                self.transaction.body.clear();
                // One allocation for a typical message instead of a doubling one per size.
                self.transaction.body.reserve(INITIAL_BODY_CAPACITY);
                self.transaction.received = 0;
                self.mode = Mode::Data(DataDecoder::new(self.config.max_message_size));
                self.send(out, &START_DATA);
            }
            Pending::FirstChunk { size, last } => {
                self.mode = Mode::Chunk {
                    remaining: size,
                    last,
                    refusal: None,
                };
            }
            Pending::DataEnd => {
                self.storing = Some(Storing {
                    taken: false,
                    handed: false,
                    reply: custom,
                    decided: self.deciding.take().expect("set while answering"),
                    lose_reply: false,
                });
            }
        }
    }

    fn fail(&mut self, pending: Pending, reply: Reply, out: &mut BytesMut) {
        match pending {
            Pending::Connect => {
                self.send(out, &reply);
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
                self.send(out, &reply);
            }
            Pending::Ehlo { .. }
            | Pending::Auth
            | Pending::Mail
            | Pending::Rcpt
            | Pending::Data => self.send(out, &reply),
        }
        // A 421 closes the connection; for a refused chunk, once the chunk is read.
        if reply.closes_connection() && !matches!(self.mode, Mode::Chunk { .. }) {
            self.mode = Mode::Closed;
        }
    }

    /// The received message with its envelope, taken when the policy accepted it. Copied to
    /// its exact size (a grown buffer can be twice the message, and stored messages live long);
    /// the buffer is reused for the connection's next message unless it is big.
    fn take_message(&mut self) -> Message {
        let data = Bytes::copy_from_slice(&self.transaction.body);
        self.transaction.body.clear();
        if self.transaction.body.capacity() > REUSED_BODY_CAPACITY {
            self.transaction.body = BytesMut::new();
        }
        let mut queue_id = String::new();
        self.config
            .accepted
            .style
            .write(self.id, self.accepted, &mut queue_id);
        Message {
            session_id: self.id,
            queue_id,
            peer: self.peer,
            helo: self.helo.clone(),
            auth_user: self.auth_user.clone(),
            tls: self.tls,
            mail_from: self.transaction.from.clone().unwrap_or_default(),
            recipients: self.transaction.recipients.clone(),
            data,
            dsn: self.transaction.dsn.envelope(),
        }
    }

    /// The 250 after a stored message, in the flavor's wording, with its queue id.
    fn write_queued(&mut self, out: &mut BytesMut) {
        use std::fmt::Write as _;
        let accepted = &self.config.accepted;
        let mut id = std::mem::take(&mut self.transaction.queue_id);
        id.clear();
        accepted.style.write(self.id, self.accepted, &mut id);
        let mark = out.len();
        let _ = write!(
            Writer(out),
            "250 {} {}{}{}\r\n",
            accepted.status,
            accepted.before,
            id,
            accepted.after
        );
        let status = accepted.status;
        self.transaction.queue_id = id;
        self.sent(out, mark, 250, Some(status));
    }

    fn write_helo_reply(&mut self, extended: bool, out: &mut BytesMut) {
        let mark = out.len();
        let host = self.config.hostname.as_bytes();
        if !extended {
            put_line(out, &[b"250 ", host]);
            self.sent(out, mark, 250, None);
            return;
        }
        put_line(out, &[b"250-", host]);
        out.extend_from_slice(b"250-PIPELINING\r\n250-SIZE ");
        push_decimal(out, self.config.max_message_size);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(b"250-8BITMIME\r\n250-BINARYMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n");
        if self.config.tls_available && !self.tls {
            out.extend_from_slice(b"250-STARTTLS\r\n");
        }
        if self.auth_user.is_none() && (self.tls || self.config.auth.allow_plaintext) {
            out.extend_from_slice(b"250-AUTH PLAIN LOGIN\r\n");
        }
        out.extend_from_slice(b"250 DSN\r\n");
        self.sent(out, mark, 250, None);
    }
}
