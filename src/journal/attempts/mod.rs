//! The attempt history: every mail transaction is an attempt of a message; attempts are grouped
//! per message and recipient, bounded, and judged by the retry report ("did the mailer retry
//! correctly?").
//!
//! The connection feeds a [`Recorder`] what its session traced (typed envelope steps, replies
//! with their phase, rule and catalog name, silent ends); each finished transaction goes to the
//! [`AttemptBook`], which joins it to a message; [`report`] judges the messages followed.
//!
//! # Which message an attempt belongs to
//!
//! - An attempt that reached the end of data names its message by the `Message-ID` header:
//!   attempts with the same `Message-ID` are the same message.
//! - An attempt refused before that (at MAIL, at RCPT, at DATA), or a message without a
//!   `Message-ID`, is joined by envelope and order, as a retrying MTA presents it: to the latest
//!   message followed from the same sender (case ignored) that has one of its recipients not yet
//!   delivered (no 250 sent to it; a lost 250 leaves it open), or, for an attempt refused at
//!   MAIL, that is not delivered to every recipient. When an attempt with a `Message-ID` comes,
//!   such an envelope-only message takes that id if it had none.
//! - Otherwise the attempt starts a new message.
//!
//! Limits of the rule: two different messages from one sender to one recipient, both refused
//! before DATA, are taken for one message (nothing tells them apart); a message without a
//! `Message-ID` that is accepted twice counts as two messages, not as a duplicate, unless the
//! first 250 was lost; replies before MAIL (the greeting, EHLO, AUTH) belong to no attempt, so a
//! 421 at the greeting is not tied to any message.
//!
//! # Bounds
//!
//! [`AttemptsConfig::messages`] messages are followed (the oldest go first, counted), and
//! [`AttemptsConfig::attempts_per_message`] attempts kept per message: past it, the first ones
//! and the latest stay and those between are counted as dropped. Per-recipient counts (attempts,
//! acceptances, duplicates) go on over every attempt, kept or not.

mod attempt;
mod book;
mod followed;
mod recorder;
pub mod report;
mod table;
#[cfg(test)]
mod testkit;
mod verdicts;

use std::time::Duration;

pub use attempt::{Attempt, EndKind, Ending};
pub use book::{AttemptBook, AttemptFilter, FollowedMessage, ListedAttempt, Tally};
pub use recorder::Recorder;
pub use report::{Judgement, Report, ReportSettings, Verdict};

/// What the attempt history follows and how the report judges it: fields of the configuration
/// and flags of `failmail serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptsConfig {
    /// Follow attempts at all (off with `--no-attempts` or `--no-store`, for load tests).
    pub enabled: bool,
    /// How many messages are followed; the oldest go first.
    pub messages: usize,
    /// How many attempts are kept per message (at least 1).
    pub attempts_per_message: usize,
    /// How long after a temporary failure a retry is expected (greylisted attempts use the
    /// greylist's retry window instead). Until then a missing retry is pending; after it, a
    /// failure.
    pub retry_window: Duration,
    /// Retry delays shorter than this fail the backoff verdict.
    pub backoff_threshold: Duration,
}

impl Default for AttemptsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            messages: 10_000,
            attempts_per_message: 50,
            retry_window: Duration::from_secs(3600),
            backoff_threshold: Duration::from_secs(60),
        }
    }
}
