//! The question the session asks at each phase: "what do I answer here?".
//!
//! The [`Session`](crate::smtp::session::Session) stays pure: when it reaches a phase it hands a
//! [`SessionView`] to a [`Policy`], which returns a [`Decision`]. Scenario rules, the reply catalog
//! and rate limits are all policies; [`AcceptAll`] is the plain sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::reply::Reply;
use crate::eventual::Eventual;

/// The points of an SMTP session where a policy may decide the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// A client connected; the greeting is next.
    Connect,
    /// EHLO or HELO was received.
    Ehlo,
    /// AUTH credentials were received.
    Auth,
    /// MAIL FROM was received (a transaction starts).
    Mail,
    /// One RCPT TO was received.
    Rcpt,
    /// DATA (or the first BDAT) was received; the body is next.
    Data,
    /// The whole message was received.
    DataEnd,
}

impl Phase {
    /// Every phase, in session order.
    pub const ALL: [Phase; 7] = [
        Phase::Connect,
        Phase::Ehlo,
        Phase::Auth,
        Phase::Mail,
        Phase::Rcpt,
        Phase::Data,
        Phase::DataEnd,
    ];

    /// The name used in scenario files and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Ehlo => "ehlo",
            Phase::Auth => "auth",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
            Phase::DataEnd => "data_end",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the session knows when it asks; borrowed, so asking allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    /// The session's id (unique within this process).
    pub session_id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the session runs under TLS.
    pub tls: bool,
    /// The EHLO/HELO argument, if given.
    pub helo: Option<&'a str>,
    /// The AUTH identity: authenticated, or (at the auth phase) the one being tried.
    pub auth_user: Option<&'a str>,
    /// The password being tried, at the auth phase only. Never log it.
    pub auth_password: Option<&'a str>,
    /// The MAIL FROM address (empty for `<>`).
    pub mail_from: Option<&'a str>,
    /// The recipient being asked about (rcpt phase), else the first accepted recipient.
    pub rcpt: Option<&'a str>,
    /// Every recipient accepted so far in the transaction.
    pub recipients: &'a [String],
    /// The received message (data_end phase).
    pub message: Option<&'a [u8]>,
}

/// How the session should answer at a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The normal protocol reply (accept).
    Continue,
    /// Send this reply instead (a failure, or an accept with other wording).
    Reply(Reply),
    /// Close the connection without a reply.
    Disconnect,
    /// Never answer; keep reading and discarding until the client gives up or times out.
    Hang,
    /// At the data phase: send 354, then this reply as soon as body bytes arrive, without
    /// reading the rest, and close.
    Abort(Reply),
    /// At the end of data: store the message as accepted, then close the connection without
    /// its 250, as if the reply was lost on the way (a client that retries sends a duplicate,
    /// which is what idempotency tests look for). At another phase, as [`Verdict::Disconnect`].
    LoseReply,
}

impl Verdict {
    /// Whether the phase goes on as the client asked (the normal reply, or a 2xx/3xx of other
    /// wording). At the end of data this is what makes the session store the message before it
    /// answers: the one place that rule is decided.
    pub fn accepts(&self) -> bool {
        match self {
            Verdict::Continue | Verdict::LoseReply => true,
            Verdict::Reply(reply) => reply.is_positive(),
            Verdict::Disconnect | Verdict::Hang | Verdict::Abort(_) => false,
        }
    }
}

/// A [`Verdict`] with an optional pause before it is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// What to answer.
    pub verdict: Verdict,
    /// The scenario rule that decided, for the journal (`None` for the default).
    pub rule: Option<Arc<RuleRef>>,
    /// The catalog name of the reply, for the journal.
    pub catalog: Option<&'static str>,
    /// The flavor whose wording the catalog reply uses, for the journal.
    pub flavor: Option<&'static str>,
    /// Whether a rate or connection limit refused (for the metrics).
    pub limited: bool,
    /// At the rcpt phase, for a recipient accepted now: what becomes of it later (a bounce, a
    /// delivery notice). The session keeps it with the recipient and hands it back with the
    /// stored message.
    pub later: Option<Arc<Later>>,
}

/// What becomes of an accepted recipient after its 250, as the scenario decided: the mail
/// system's later word about it, which the bounce scheduler turns into a notification to the
/// envelope sender at the right time on the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Later {
    /// What happens, and when (counted from the message's acceptance).
    pub fate: Fate,
    /// Whose style the notification is written in: a flavor name (`generic`, `postfix`, …).
    pub style: &'static str,
}

/// The later fates a recipient can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after `after`: a success DSN when the client asked `NOTIFY=SUCCESS`.
    Delivered {
        /// When it is delivered.
        after: Duration,
    },
    /// The next hop answered `reply`. A 5xx fails at `after`; a 4xx is retried until
    /// `give_up`, then fails as expired. `delay_notice`, when set, sends a "delayed" DSN first.
    Bounced {
        /// What the next hop said (its exact text goes into `Diagnostic-Code`).
        reply: Reply,
        /// The catalog name of the reply, when it came from the catalog.
        catalog: Option<&'static str>,
        /// When the first attempt met the reply (a 5xx fails then).
        after: Duration,
        /// When a "delayed" notice goes out, if at all.
        delay_notice: Option<Duration>,
        /// When a 4xx stops being retried and fails as expired.
        give_up: Duration,
    },
    /// The recipient reports the message as abuse (an RFC 5965 feedback report).
    Complaint {
        /// When the report comes.
        after: Duration,
    },
    /// The recipient's mailbox answers with an RFC 3834 auto-reply (out of office).
    AutoReply {
        /// When the auto-reply comes.
        after: Duration,
    },
}

impl Decision {
    /// The normal protocol reply, at once.
    pub const CONTINUE: Decision = Decision {
        delay: None,
        verdict: Verdict::Continue,
        rule: None,
        catalog: None,
        flavor: None,
        limited: false,
        later: None,
    };

    /// A decision that sends `reply` at once.
    pub fn reply(reply: Reply) -> Self {
        Self {
            verdict: Verdict::Reply(reply),
            ..Self::CONTINUE
        }
    }
}

/// Which scenario rule decided a reply: what the journal, the logs and the web page show, so
/// that a user finds the rule in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// Position in the file, from 0.
    pub index: u32,
    /// The rule's `name`, if it has one.
    pub name: Option<Arc<str>>,
    /// Where the scenario came from (a file name, `<api>`, `<inline>`).
    pub origin: Arc<str>,
    /// The line of the rule's `[[rule]]` header.
    pub line: u32,
}

impl RuleRef {
    /// `file:line`, as the web page and the logs show it.
    pub fn location(&self) -> String {
        format!("{}:{}", self.origin, self.line)
    }
}

impl From<Verdict> for Decision {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            ..Self::CONTINUE
        }
    }
}

/// A decision now, or one to wait for (a shared store across the network). The common path
/// answers now and allocates nothing.
pub type Answer<'a> = Eventual<'a, Decision>;

/// Who connected, as the server accepted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The client's address, canonical: an IPv4 client is IPv4 even through a dual-stack
    /// listener.
    pub peer: SocketAddr,
    /// Connections open from its IP now, this one included.
    pub connections_from_ip: u32,
}

/// Decides replies for the sessions of a server; one per loaded scenario.
pub trait Policy: Send + Sync + 'static {
    /// A new client connected: returns the object that decides for its session.
    fn open(&self, connected: &Connected) -> Box<dyn SessionPolicy>;
}

/// Decides the reply at each phase of one session, and keeps what the session holds (a
/// connection slot, a reserved place in a rate limit) until it is dropped.
pub trait SessionPolicy: Send + Sync {
    /// Called once per phase with what the session knows; must be cheap on the common path.
    fn decide<'a>(&'a mut self, phase: Phase, view: &'a SessionView<'a>) -> Answer<'a>;

    /// Called when the session has no transaction in progress (after RSET, a refused message,
    /// or an accepted one), so that uses reserved for an unfinished transaction go back.
    fn transaction_over(&mut self) -> Eventual<'_, ()> {
        Eventual::now(())
    }

    /// Called when a message was accepted (after it was stored), so that limits count it.
    fn accepted<'a>(&'a mut self, _view: &'a SessionView<'a>) -> Eventual<'a, ()> {
        Eventual::now(())
    }
}

/// The plain sink: every phase gets the normal reply.
#[derive(Debug, Default, Clone, Copy)]
pub struct AcceptAll;

impl Policy for AcceptAll {
    fn open(&self, _connected: &Connected) -> Box<dyn SessionPolicy> {
        Box::new(AcceptAll)
    }
}

impl SessionPolicy for AcceptAll {
    fn decide<'a>(&'a mut self, _phase: Phase, _view: &'a SessionView<'a>) -> Answer<'a> {
        Answer::now(Decision::CONTINUE)
    }
}

/// A view for unit tests: the given peer and addresses, nothing else set.
#[cfg(test)]
pub(crate) fn test_view<'a>(
    peer: &str,
    mail_from: Option<&'a str>,
    rcpt: Option<&'a str>,
    recipients: &'a [String],
) -> SessionView<'a> {
    SessionView {
        session_id: 1,
        peer: peer.parse().expect("a socket address"),
        tls: false,
        helo: None,
        auth_user: None,
        auth_password: None,
        mail_from,
        rcpt,
        recipients,
        message: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::fixed;

    #[test]
    fn only_continue_and_positive_replies_accept() {
        assert!(Verdict::Continue.accepts());
        assert!(Verdict::Reply(fixed::OK).accepts());
        assert!(Verdict::LoseReply.accepts());
        assert!(!Verdict::Reply(fixed::STORE_FAILED).accepts());
        assert!(!Verdict::Abort(fixed::OK).accepts());
        assert!(!Verdict::Disconnect.accepts());
        assert!(!Verdict::Hang.accepts());
    }
}
