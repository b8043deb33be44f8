//! Following one session's mail transactions: the connection hands over what the session
//! traced (envelope steps, replies, silent ends) as typed values, and each transaction, once it
//! ends, goes to the [`AttemptBook`] as an [`Attempt`]. Nothing here parses bytes.
//!
//! A step of the envelope ([`EnvelopeTrace`]) is answered by the next reply the session reports
//! (or by a silent end). Replies nothing asked for are skipped, but for two that end the
//! transaction on their own: a decided refusal at `data` or `data_end` (the one after an abort's
//! 354), and a 421 (the session closes after it).

use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use super::attempt::{Attempt, EndKind, Ending};
use super::book::AttemptBook;
use crate::smtp::policy::Phase;
use crate::smtp::session::{Decided, EnvelopeTrace, ReplyTrace, SilentAction};

/// The envelope step waiting for its reply.
#[derive(Debug)]
enum Asked {
    Mail(Arc<str>),
    Rcpt(Arc<str>),
    Data,
    DataEnd,
}

/// The transaction in progress: MAIL was accepted.
#[derive(Debug)]
struct Open {
    started_ms: u64,
    tls: bool,
    auth_user: Option<Arc<str>>,
    sender: Arc<str>,
    message_id: Option<Arc<str>>,
    /// Each recipient named, with its ending once it has one (a refusal at RCPT, else the end
    /// of the transaction); one inline, as most transactions name one.
    recipients: SmallVec<[(Arc<str>, Option<Ending>); 1]>,
    /// The furthest phase reached.
    phase: Phase,
}

/// Turns one session's trace into attempts; one per connection.
#[derive(Debug)]
pub struct Recorder {
    book: Arc<AttemptBook>,
    session: u64,
    client_ip: IpAddr,
    tls: bool,
    auth_user: Option<Arc<str>>,
    asked: Option<Asked>,
    open: Option<Open>,
}

impl Recorder {
    /// Follows session `session` from `client_ip` (`tls` for implicit TLS), recording into
    /// `book`.
    pub fn new(book: Arc<AttemptBook>, session: u64, client_ip: IpAddr, tls: bool) -> Self {
        Self {
            book,
            session,
            client_ip,
            tls,
            auth_user: None,
            asked: None,
            open: None,
        }
    }

    /// The session's TLS and AUTH state now, kept for the next transaction (copied only when
    /// it changes).
    #[inline]
    pub fn observe(&mut self, tls: bool, auth_user: Option<&str>) {
        self.tls = tls;
        if self.auth_user.as_deref() != auth_user {
            self.auth_user = auth_user.map(Arc::from);
        }
    }

    /// A step of the envelope; its reply comes next.
    pub fn envelope(&mut self, step: EnvelopeTrace, at_ms: u64) {
        self.asked = match step {
            EnvelopeTrace::Mail(sender) => Some(Asked::Mail(sender)),
            EnvelopeTrace::Rcpt(rcpt) => Some(Asked::Rcpt(rcpt)),
            EnvelopeTrace::Data => Some(Asked::Data),
            EnvelopeTrace::DataEnd { message_id } => {
                if let Some(open) = &mut self.open {
                    open.message_id = message_id;
                    open.phase = Phase::DataEnd;
                }
                Some(Asked::DataEnd)
            }
            EnvelopeTrace::Reset => {
                self.abandon(at_ms);
                None
            }
        };
    }

    /// A reply the session wrote.
    pub fn reply(&mut self, reply: &ReplyTrace, at_ms: u64) {
        // 503: a command out of sequence, which the session refused without changing anything.
        if reply.code == 503 {
            self.asked = None;
            return;
        }
        let decided = reply.decided.as_ref();
        let ending = |phase| Ending {
            kind: EndKind::of_code(reply.code),
            phase,
            at_ms,
            code: Some(reply.code),
            status: reply.status,
            catalog: decided.and_then(|d| d.catalog),
            rule: decided.and_then(|d| d.rule.clone()),
        };
        let positive = reply.code < 400;
        match self.asked.take() {
            Some(Asked::Mail(sender)) => {
                self.abandon(at_ms);
                if positive {
                    self.open = Some(self.begin(sender, at_ms));
                } else {
                    self.record_mail_ending(sender, ending(Phase::Mail), at_ms);
                }
            }
            Some(Asked::Rcpt(rcpt)) => {
                let Some(open) = &mut self.open else {
                    return;
                };
                open.phase = open.phase.max(Phase::Rcpt);
                let refused = (!positive).then(|| ending(Phase::Rcpt));
                open.recipients.push((rcpt, refused));
                if reply.code == 421 {
                    self.close(ending(Phase::Rcpt));
                }
            }
            Some(Asked::Data) => {
                if let Some(open) = &mut self.open {
                    open.phase = open.phase.max(Phase::Data);
                    if !positive {
                        self.close(ending(Phase::Data));
                    }
                }
            }
            Some(Asked::DataEnd) => self.close(ending(Phase::DataEnd)),
            None => {
                let ends = decided.is_some_and(|d| d.phase >= Phase::Data) || reply.code == 421;
                if let (Some(open), false, true) = (&self.open, positive, ends) {
                    let phase = open.phase;
                    self.close(ending(phase));
                }
            }
        }
    }

    /// A decision that wrote no reply: a close, a hang, or a lost 250.
    pub fn silent(&mut self, action: SilentAction, decided: &Decided, at_ms: u64) {
        let kind = match action {
            SilentAction::LoseReply => EndKind::ReplyLost,
            SilentAction::Disconnect | SilentAction::Hang => EndKind::NoReply,
        };
        let ending = Ending {
            kind,
            phase: decided.phase,
            at_ms,
            code: None,
            status: None,
            catalog: decided.catalog,
            rule: decided.rule.clone(),
        };
        match (self.asked.take(), &mut self.open) {
            (Some(Asked::Mail(sender)), None) => self.record_mail_ending(sender, ending, at_ms),
            (Some(Asked::Rcpt(rcpt)), Some(open)) => {
                open.recipients.push((rcpt, Some(ending.clone())));
                self.close(ending);
            }
            _ => self.close(ending),
        }
    }

    /// The session ended: a transaction still open was abandoned.
    pub fn finish(&mut self, at_ms: u64) {
        self.asked = None;
        self.abandon(at_ms);
    }

    /// The client ended the open transaction, if any, before its final reply.
    fn abandon(&mut self, at_ms: u64) {
        let phase = self.open.as_ref().map_or(Phase::Mail, |o| o.phase);
        self.close(abandoned(phase, at_ms));
    }

    fn begin(&self, sender: Arc<str>, at_ms: u64) -> Open {
        Open {
            started_ms: at_ms,
            tls: self.tls,
            auth_user: self.auth_user.clone(),
            sender,
            message_id: None,
            recipients: SmallVec::new(),
            phase: Phase::Mail,
        }
    }

    /// Records an attempt that MAIL itself ended (refused, or closed without a reply).
    fn record_mail_ending(&mut self, sender: Arc<str>, ending: Ending, at_ms: u64) {
        let open = self.begin(sender, at_ms);
        let attempt = self.attempt(open, Some(ending), None);
        self.book.record(attempt);
    }

    /// Ends the open transaction, if any: every recipient without an ending gets `ending`. A
    /// transaction the client abandoned before naming any recipient attempted nothing, and is
    /// not recorded.
    fn close(&mut self, ending: Ending) {
        let Some(open) = self.open.take() else {
            return;
        };
        let attempt = if !open.recipients.is_empty() {
            self.attempt(open, None, Some(&ending))
        } else if ending.kind != EndKind::Abandoned {
            self.attempt(open, Some(ending), None)
        } else {
            return;
        };
        self.book.record(attempt);
    }

    /// The attempt `open` made: `mail_ending` when MAIL ended it, `rest` for each recipient
    /// that has no ending of its own.
    fn attempt(&self, open: Open, mail_ending: Option<Ending>, rest: Option<&Ending>) -> Attempt {
        Attempt {
            id: 0,
            session: self.session,
            client_ip: self.client_ip,
            tls: open.tls,
            auth_user: open.auth_user,
            started_ms: open.started_ms,
            sender: open.sender,
            message_id: open.message_id,
            mail_ending,
            recipients: open
                .recipients
                .into_iter()
                .filter_map(|(rcpt, own)| Some((rcpt, own.or_else(|| rest.cloned())?)))
                .collect(),
        }
    }
}

/// The client ended the transaction before a final reply.
fn abandoned(phase: Phase, at_ms: u64) -> Ending {
    Ending {
        kind: EndKind::Abandoned,
        phase,
        at_ms,
        code: None,
        status: None,
        catalog: None,
        rule: None,
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
