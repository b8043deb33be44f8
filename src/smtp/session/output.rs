//! What the session hands its caller: the next [`Step`], and what it did as typed values
//! ([`Trace`]), so that the journal, the metrics and the attempt history read fields instead of
//! parsing the reply bytes back.

use std::sync::Arc;

use crate::smtp::policy::{Decision, Phase, RuleRef};
use crate::smtp::reply::{EnhancedStatus, Reply};

/// What the caller must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write the output, then read more input.
    NeedInput,
    /// Ask the policy about this phase and pass its decision to [`Session::answer`].
    ///
    /// [`Session::answer`]: super::Session::answer
    Decide(Phase),
    /// The policy accepted the message at the end of data: take it with
    /// [`Session::message_to_store`], store it, then call [`Session::stored`] with the result.
    /// The 250 is written only then, so that a message the client saw accepted is never lost.
    /// (The message stays in the session until taken, so that every step stays small to move.)
    ///
    /// [`Session::message_to_store`]: super::Session::message_to_store
    /// [`Session::stored`]: super::Session::stored
    Store,
    /// Write the output, then run the TLS handshake and call [`Session::tls_established`]. The
    /// session has already discarded any input that followed the STARTTLS command.
    ///
    /// [`Session::tls_established`]: super::Session::tls_established
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

/// Why a message handed over with [`Step::Store`] could not be kept; the client gets
/// `451 4.3.0` instead of the 250.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFailed;

/// What the session did, in order: the journal, the metrics and the attempts read these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    /// A command line as received; AUTH credentials are replaced by `****`. Only while tracing
    /// ([`Session::set_tracing`](super::Session::set_tracing)).
    Command(String),
    /// A reply the session wrote.
    Reply(ReplyTrace),
    /// The policy ended the session without a reply: closed it, told it never to answer, or
    /// had it close after storing a message instead of sending the 250.
    Silent {
        /// Closed, hung, or the reply lost.
        action: SilentAction,
        /// Who decided it.
        decided: Decided,
    },
    /// A step of the mail transaction, reported just before the reply that answers it; only
    /// while following the envelope ([`Session::set_envelope_tracing`]).
    ///
    /// [`Session::set_envelope_tracing`]: super::Session::set_envelope_tracing
    Envelope(EnvelopeTrace),
}

/// A step of the mail transaction as values, so that the attempt history follows messages
/// without parsing command lines back. The reply that answers a step (or a silent end) is the
/// next [`Trace::Reply`] (or [`Trace::Silent`]) after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeTrace {
    /// MAIL FROM, with its address (empty for `<>`), shared so that it is copied once.
    Mail(Arc<str>),
    /// RCPT TO, with its address, shared so that it is copied once.
    Rcpt(Arc<str>),
    /// DATA, or the first BDAT of a message.
    Data,
    /// The whole message was received.
    DataEnd {
        /// Its `Message-ID` header field, unfolded and trimmed, if it has one.
        message_id: Option<Arc<str>>,
    },
    /// The transaction was forgotten (RSET, HELO, EHLO); no reply belongs to this step.
    Reset,
}

/// What a decision that writes no reply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilentAction {
    /// The connection was closed without a reply.
    Disconnect,
    /// The session stopped answering (the client waits until its own timeout).
    Hang,
    /// The message was stored as accepted, then the connection closed before its 250.
    LoseReply,
}

impl SilentAction {
    /// The name used in events: `disconnect`, `hang` or `lose_reply`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilentAction::Disconnect => "disconnect",
            SilentAction::Hang => "hang",
            SilentAction::LoseReply => "lose_reply",
        }
    }
}

/// One reply the session wrote, as values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTrace {
    /// The reply code.
    pub code: u16,
    /// The enhanced status code, if the reply carries one.
    pub status: Option<EnhancedStatus>,
    /// Who decided it, when a policy did.
    pub decided: Option<Decided>,
    /// The whole reply as written, while tracing (else nothing is copied).
    pub reply: Option<Reply>,
    /// How many times in a row it was written: while not tracing, equal replies are reported
    /// together, so that a pipelined burst of a thousand NOOPs takes one entry, not a thousand.
    pub times: u32,
}

/// The policy decision behind a reply: at which phase, by which rule, with which catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The phase the policy was asked about.
    pub phase: Phase,
    /// The scenario rule that decided.
    pub rule: Option<Arc<RuleRef>>,
    /// The catalog name of the reply.
    pub catalog: Option<&'static str>,
    /// The flavor whose wording the catalog reply uses.
    pub flavor: Option<&'static str>,
    /// Whether a rate or connection limit refused.
    pub limited: bool,
}

impl Decided {
    /// The attribution of `decision`, taken at `phase`.
    pub fn of(phase: Phase, decision: &Decision) -> Self {
        Self {
            phase,
            rule: decision.rule.clone(),
            catalog: decision.catalog,
            flavor: decision.flavor,
            limited: decision.limited,
        }
    }
}
