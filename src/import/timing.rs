//! When a bounce's failure met the sender, and so how `failmail import` reproduces it.
//!
//! **Synchronous** (answered in the SMTP dialogue, a `reply` rule at the phase): the remote
//! server gave the reply during the SMTP session, so the bounce names the command it answered
//! (`in reply to RCPT TO command`, `after end of data`, a `>>> RCPT To:` transcript line,
//! `SMTP:RCPT host …`, qmail's `does not like recipient`), or the input is the reply itself (an
//! MTA log line, a pasted reply transcript).
//!
//! **Asynchronous** (accepted with 250 and bounced later, a `bounce` rule): the reporting MTA
//! met the failure after it had accepted the message. That is so for
//!
//! - a delay notice (`Action: delayed`, or a text that says the message is delayed and still
//!   being retried): reproduced with a `delay_notice`;
//! - an expiry: the reporting MTA gave up on a temporary failure (a 4xx reply in a final
//!   bounce, or `Status: 4.4.7` / `5.4.7`): reproduced with the 4xx and a `give_up`;
//! - any other bounce message that names no SMTP phase: an Exchange / Office 365 or Gmail
//!   "Undeliverable" or "Delivery Status Notification", a DSN with only a `Diagnostic-Code`,
//!   the recipient's own server bouncing a message it had taken.
//!
//! The order: a log line or transcript is always synchronous; then a delay notice, then an
//! expiry (a bounce that tells of retries is asynchronous even when it names the phase of the
//! temporary reply: the sender got 250 and notices later); then a named phase; else
//! asynchronous. `failmail import --at-smtp` / `--later` force either way.
//!
//! Times: a delay notice's `delay_notice` is the time from the report's `Arrival-Date` to the
//! bounce's `Date`, and its `give_up` the time to `Will-Retry-Until`; an expiry's `give_up` the
//! time from arrival to the bounce. Without those dates (or with dates that make no sense: in
//! the future, negative, over 30 days), Postfix's usual 4 hours and 5 days.

use std::time::Duration;

use crate::scenario::later::{DEFAULT_AFTER, DEFAULT_GIVE_UP, MAGIC_DELAY_NOTICE};

/// How a failure is reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Answered in the SMTP dialogue at the failure's phase (a `reply` or `sequence` rule).
    AtSmtp,
    /// Accepted at RCPT, then a delivery status notification (a `bounce` rule).
    Later,
}

/// Why a failure got its [`Timing`]: said in the rule's comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `--at-smtp` or `--later` asked for it.
    Forced,
    /// The input is the reply itself: an MTA log line or a pasted reply transcript.
    Transcript,
    /// The bounce names the SMTP command the remote server answered.
    PhaseNamed,
    /// A delay notice: the reporting MTA holds the message and retries it.
    Delayed,
    /// The reporting MTA retried a temporary failure and gave up.
    Expired,
    /// A bounce message naming no SMTP phase: the failure came after acceptance.
    NoPhase,
}

impl Why {
    /// The reason, as the rule's comment gives it.
    pub fn sentence(self, timing: Timing) -> &'static str {
        match (self, timing) {
            (Why::Forced, Timing::AtSmtp) => "--at-smtp asked for the reply in the SMTP dialogue",
            (Why::Forced, Timing::Later) => "--later asked for a bounce after acceptance",
            (Why::Transcript, _) => {
                "the input is the reply itself (an MTA log line or a pasted transcript)"
            }
            (Why::PhaseNamed, _) => "the bounce names the SMTP command the remote server answered",
            (Why::Delayed, _) => {
                "a delay notice: the reporting MTA accepted the message and is retrying it"
            }
            (Why::Expired, _) => {
                "the reporting MTA accepted the message, retried a temporary failure and gave up"
            }
            (Why::NoPhase, _) => {
                "the bounce names no SMTP phase: the reporting MTA met the failure after it had \
                 accepted the message"
            }
        }
    }
}

/// What a bounce shows of when its failure happened.
#[derive(Debug, Clone, Default)]
pub struct Clues {
    /// The input is a message (not a log excerpt or a transcript).
    pub is_message: bool,
    /// It is a delay notice.
    pub delayed: bool,
    /// The report's `Status` says the delivery time expired (`X.4.7`).
    pub expiry_status: bool,
    /// The bounce names the SMTP phase.
    pub phase_named: bool,
    /// The reply code.
    pub code: u16,
    /// `Arrival-Date`, in seconds since the epoch.
    pub arrival: Option<i64>,
    /// The bounce's `Date`, in seconds since the epoch.
    pub reported: Option<i64>,
    /// `Will-Retry-Until`, in seconds since the epoch.
    pub retry_until: Option<i64>,
}

/// How one failure is reproduced, and why; for a later bounce of a 4xx, its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// At SMTP or later.
    pub timing: Timing,
    /// Why.
    pub why: Why,
    /// A later bounce's "delayed" notice, counted from acceptance (4xx only).
    pub delay_notice: Option<Duration>,
    /// When a later 4xx bounce gives up, counted from acceptance; `None`: the default (5 days).
    pub give_up: Option<Duration>,
}

/// The longest span a bounce's dates are believed for.
const MAX_SPAN: Duration = Duration::from_secs(30 * 86_400);

/// Words of a plain-text delay notice (Gmail's, Exim's, Sendmail's, Postfix's).
const DELAY_WORDS: [&str; 5] = [
    "has been delayed",
    "has not yet been delivered",
    "warning message only",
    "delivery attempts will continue",
    "will continue trying",
];

/// Whether a bounce's text says it is a delay notice.
pub fn says_delayed(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    DELAY_WORDS.iter().any(|w| lower.contains(w))
}

/// Reads a date as bounces write it (RFC 5322), in seconds since the epoch.
pub fn timestamp(text: &str) -> Option<i64> {
    mail_parser::DateTime::parse_rfc822(text.trim()).map(|d| d.to_timestamp())
}

/// Decides how a failure is reproduced from what its bounce shows.
pub fn decide(clues: &Clues) -> Decision {
    let retried = (400..500).contains(&clues.code);
    let at_smtp = |why| Decision {
        timing: Timing::AtSmtp,
        why,
        delay_notice: None,
        give_up: None,
    };
    let later = |why| Decision {
        timing: Timing::Later,
        why,
        delay_notice: None,
        give_up: None,
    };
    if !clues.is_message {
        return at_smtp(Why::Transcript);
    }
    if clues.delayed {
        let mut decision = later(Why::Delayed);
        if retried {
            let give_up = span(clues.arrival, clues.retry_until);
            let notice = span(clues.arrival, clues.reported).unwrap_or(MAGIC_DELAY_NOTICE);
            let limit = give_up.unwrap_or(DEFAULT_GIVE_UP);
            decision.delay_notice = Some(notice.min(limit.saturating_sub(DEFAULT_AFTER)));
            decision.give_up = give_up;
        }
        return decision;
    }
    if retried || clues.expiry_status {
        let mut decision = later(Why::Expired);
        if retried {
            decision.give_up = Some(span(clues.arrival, clues.reported).unwrap_or(DEFAULT_GIVE_UP));
        }
        return decision;
    }
    if clues.phase_named {
        return at_smtp(Why::PhaseNamed);
    }
    later(Why::NoPhase)
}

/// The same failure forced one way.
pub fn forced(decision: Decision, timing: Timing) -> Decision {
    if decision.timing == timing {
        return decision;
    }
    Decision {
        timing,
        why: Why::Forced,
        delay_notice: None,
        give_up: None,
    }
}

/// The time from `from` to `to` when both are known and it is believable (at least the
/// bounce's first attempt after acceptance, at most [`MAX_SPAN`]), to the minute.
fn span(from: Option<i64>, to: Option<i64>) -> Option<Duration> {
    let seconds = u64::try_from(to? - from?).ok()?;
    let minutes = Duration::from_secs(seconds / 60 * 60);
    (DEFAULT_AFTER < minutes && minutes <= MAX_SPAN).then_some(minutes)
}

/// A duration as a scenario writes it: the largest whole unit (`5d`, `4h`, `90m`, `30s`).
pub fn duration_text(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
#[path = "timing_tests.rs"]
mod tests;
