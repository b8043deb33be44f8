//! The compiled rule model: what a rule matches, what it does and the replies it sends. The
//! compiler in [`super::compile`] builds it, the index and the engine read it.

use std::sync::Arc;
use std::time::Duration;

use super::catalog::{Catalog, Entry};
use super::flavor::Flavor;
use super::pattern::{Cidr, PatternList};
use crate::smtp::policy::{Phase, RuleRef};
use crate::smtp::reply::Reply;

/// A reply chosen by a rule: a catalog entry in a flavor, or an inline reply.
#[derive(Debug, Clone)]
pub enum ReplySpec {
    /// A catalog entry; rendered with the flavor's wording.
    Catalog {
        /// The entry.
        entry: &'static Entry,
        /// Whose wording (when `by_domain`: unless the recipient's domain has a voice).
        flavor: Flavor,
        /// Whether the recipient's domain picks the wording (see [`super::domains`]): no flavor
        /// was named for this reply.
        by_domain: bool,
    },
    /// A reply written in the scenario.
    Inline(Reply),
}

impl ReplySpec {
    /// The catalog name, for the journal.
    pub fn catalog_name(&self) -> Option<&'static str> {
        match self {
            ReplySpec::Catalog { entry, .. } => Some(entry.name.as_str()),
            ReplySpec::Inline(_) => None,
        }
    }

    /// The reply code the spec produces.
    pub fn code(&self) -> u16 {
        match self {
            ReplySpec::Catalog { entry, flavor, .. } => entry.variant(*flavor).0.code,
            ReplySpec::Inline(reply) => reply.code(),
        }
    }
}

/// What a rule (or one step of a sequence) does.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The normal reply.
    Accept,
    /// Close without a reply.
    Disconnect,
    /// Never answer.
    Hang,
    /// Send this failure.
    Reply(ReplySpec),
    /// At data: 354, then this failure as soon as the body starts, then close.
    Abort(ReplySpec),
    /// At rcpt: the normal 250 now, and this fate later (a bounce, a delivery notice).
    Later(Box<super::later::LaterSpec>),
    /// At data_end: store the message as accepted, then close without its 250.
    LoseReply,
}

/// The word for [`Outcome::LoseReply`] in `then` and in sequences, and the local part of its
/// magic address.
pub const LOSE_REPLY: &str = "lose_reply";

/// A rule's action.
#[derive(Debug, Clone)]
pub enum Action {
    /// The same outcome every time.
    Always(Outcome),
    /// The n-th attempt of a (client IP, sender, recipient) gets the n-th outcome; the last repeats.
    Sequence(Vec<Outcome>),
}

/// Which values a rule looks at.
#[derive(Debug, Clone, Default)]
pub struct Matchers {
    /// Recipient (at rcpt: the one asked about; later: any accepted one).
    pub rcpt: Option<PatternList>,
    /// Sender.
    pub mail_from: Option<PatternList>,
    /// AUTH identity.
    pub auth_user: Option<PatternList>,
    /// EHLO/HELO argument.
    pub helo: Option<PatternList>,
    /// Client IP.
    pub client_ip: Option<Box<[Cidr]>>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in the file, from 0.
    pub index: u32,
    /// The phase it acts at.
    pub phase: Phase,
    /// What it matches.
    pub matchers: Matchers,
    /// What it does.
    pub action: Action,
    /// The chance it acts.
    pub probability: Option<f64>,
    /// How many times it acts in all.
    pub times: Option<u64>,
    /// Wait before answering.
    pub delay: Option<Duration>,
    /// The rule as decisions name it (index, name, file and line), shared by every decision.
    pub reference: Arc<RuleRef>,
}

impl Rule {
    /// The rule's label, if any (kept once, in its [`RuleRef`]).
    pub fn name(&self) -> Option<&str> {
        self.reference.name.as_deref()
    }

    /// The line of its `[[rule]]` header.
    pub fn line(&self) -> usize {
        self.reference.line as usize
    }
}

/// Whose wording a reply takes: a flavor, and whether the recipient's domain may choose instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    /// The flavor named (a rule's `flavor`), else the server's.
    pub flavor: Flavor,
    /// True when no flavor was named for the reply: the recipient's domain decides first.
    pub by_domain: bool,
}

impl Voice {
    /// The server's flavor, unless the recipient's domain has a voice of its own.
    pub fn default_for(flavor: Flavor) -> Self {
        Self {
            flavor,
            by_domain: true,
        }
    }
}

/// A catalog entry as a reply: the defaults of `[limits]` and `[greylisting]` name one.
pub(super) fn catalog_reply(name: &str, voice: Voice) -> ReplySpec {
    ReplySpec::Catalog {
        entry: Catalog::builtin().get(name).expect("built-in catalog name"),
        flavor: voice.flavor,
        by_domain: voice.by_domain,
    }
}
