//! One attempt: a mail transaction as the attempt history keeps it, with how it ended for each
//! recipient (the reply, its phase, who decided it).

use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::smtp::policy::{Phase, RuleRef};
use crate::smtp::reply::{status, EnhancedStatus};

/// How an attempt ended for one recipient, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndKind {
    /// Stored, and its 250 sent.
    Accepted,
    /// Stored as accepted, but the connection closed before the 250 (`lose_reply`): the client
    /// cannot know, and a correct one retries.
    ReplyLost,
    /// Refused with a 4xx reply: the client should come back later.
    Temporary,
    /// Refused with a 5xx reply: the client should give up.
    Permanent,
    /// The server closed the connection or stopped answering without a reply (a `disconnect`
    /// or `hang` decision): RFC 5321 §3.8 says to treat it as a temporary failure.
    NoReply,
    /// The client ended the transaction (RSET, EHLO, QUIT, a closed connection) before a final
    /// reply, or every other recipient was refused and nothing was sent.
    Abandoned,
}

impl EndKind {
    /// The name in the API and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            EndKind::Accepted => "accepted",
            EndKind::ReplyLost => "reply_lost",
            EndKind::Temporary => "temporary",
            EndKind::Permanent => "permanent",
            EndKind::NoReply => "no_reply",
            EndKind::Abandoned => "abandoned",
        }
    }

    /// The kind of a reply with this code: 2xx/3xx accepted, 4xx temporary, else permanent.
    pub fn of_code(code: u16) -> Self {
        match code {
            200..=399 => EndKind::Accepted,
            400..=499 => EndKind::Temporary,
            _ => EndKind::Permanent,
        }
    }

    /// Whether the message was stored for the recipient (its 250 sent or not).
    pub fn accepted(self) -> bool {
        matches!(self, EndKind::Accepted | EndKind::ReplyLost)
    }

    /// Whether a correct client retries after it: a 4xx, no reply, or a lost 250.
    pub fn asks_for_retry(self) -> bool {
        matches!(
            self,
            EndKind::Temporary | EndKind::NoReply | EndKind::ReplyLost
        )
    }
}

/// How one attempt ended for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// In a word.
    pub kind: EndKind,
    /// The phase of the step that ended it: `mail`, `rcpt`, `data` or `data_end`.
    pub phase: Phase,
    /// When, on the server's clock (ms since the Unix epoch).
    pub at_ms: u64,
    /// The reply code, when a reply ended it.
    pub code: Option<u16>,
    /// Its enhanced status code.
    pub status: Option<EnhancedStatus>,
    /// Its catalog name, when the policy chose a catalog reply.
    pub catalog: Option<&'static str>,
    /// The scenario rule that decided it.
    pub rule: Option<Arc<RuleRef>>,
}

impl Ending {
    /// Whether it is the catalog's `greylisted` refusal (from `[greylisting]`, a rule or a
    /// magic address), which the greylist verdict judges.
    pub fn greylisted(&self) -> bool {
        self.kind == EndKind::Temporary && self.catalog == Some("greylisted")
    }

    /// Whether it is `452 4.5.3` (too many recipients): the rest must come in another
    /// transaction, at once.
    pub fn too_many_recipients(&self) -> bool {
        self.code == Some(452) && self.status == Some(status(4, 5, 3))
    }

    /// Whether it is a 421: the server closed the connection, and the client must reconnect.
    pub fn closed_with_421(&self) -> bool {
        self.code == Some(421)
    }

    /// `451 4.7.1`, `250`, `no reply`: the reply as a table shows it.
    pub fn short(&self) -> String {
        match (self.kind, self.code, self.status) {
            (EndKind::ReplyLost, ..) => "lost 250".to_owned(),
            (EndKind::NoReply, ..) => "no reply".to_owned(),
            (_, Some(code), Some(status)) => format!("{code} {status}"),
            (_, Some(code), None) => code.to_string(),
            (kind, None, _) => kind.as_str().to_owned(),
        }
    }
}

/// One mail transaction: who sent it, over which session, and how it ended for each recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Increasing from 1 across the history (0 until the history records it).
    pub id: u64,
    /// The session that carried it.
    pub session: u64,
    /// The client's IP address.
    pub client_ip: IpAddr,
    /// Whether the session ran under TLS when the transaction started.
    pub tls: bool,
    /// The AUTH identity when the transaction started, if any.
    pub auth_user: Option<Arc<str>>,
    /// When MAIL was answered, on the server's clock (ms since the Unix epoch).
    pub started_ms: u64,
    /// The MAIL FROM address (empty for `<>`), shared with the message it joins.
    pub sender: Arc<str>,
    /// The message's `Message-ID`, when the attempt reached the end of data and it had one.
    pub message_id: Option<Arc<str>>,
    /// When MAIL itself ended the attempt (refused, or no reply): the ending of every
    /// recipient, since none was named.
    pub mail_ending: Option<Ending>,
    /// Each recipient named (RCPT TO), in order, with how the attempt ended for it (one
    /// inline: most attempts name one).
    pub recipients: SmallVec<[(Arc<str>, Ending); 1]>,
}

impl Attempt {
    /// How the attempt ended for `rcpt` (case ignored): its own ending, or the MAIL ending,
    /// which applies to every recipient of the message.
    pub fn ending_for(&self, rcpt: &str) -> Option<&Ending> {
        if let Some(ending) = &self.mail_ending {
            return Some(ending);
        }
        self.recipients
            .iter()
            .rev()
            .find(|(r, _)| r.eq_ignore_ascii_case(rcpt))
            .map(|(_, ending)| ending)
    }

    /// When the attempt ended: its latest ending.
    pub fn ended_ms(&self) -> u64 {
        self.mail_ending
            .iter()
            .chain(self.recipients.iter().map(|(_, e)| e))
            .map(|e| e.at_ms)
            .max()
            .unwrap_or(self.started_ms)
    }
}
