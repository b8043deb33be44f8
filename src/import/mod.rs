//! Reading real bounces back into scenarios (`failmail import`): each failed recipient of a
//! bounce becomes a rule that gives that recipient the exact reply (code, enhanced status, every
//! line of text): in the SMTP dialogue at the phase the bounce names when the failure was
//! synchronous, or as a later bounce (accepted with 250, a DSN on the clock) when it was
//! asynchronous ([`timing`] says which, and why).
//!
//! The pieces: `message` takes a bounce apart (MIME by the `mail-parser` crate), [`dsn`] reads
//! RFC 3464 delivery status fields, `vendor` reads the human-readable formats of Postfix, Exim,
//! Sendmail, qmail, Exchange, Zoho and MTA log lines, [`reply`] finds the SMTP reply they quote,
//! [`timing`] decides between the SMTP reply and the later bounce, and [`emit`] writes the rules
//! (a new scenario, rules added to one with its comments kept, or magic addresses). This module
//! combines them per recipient.

pub mod dsn;
pub mod emit;
mod message;
pub mod reply;
pub mod timing;
mod vendor;

use crate::scenario::phase_codes;
use crate::smtp::policy::Phase;
use crate::smtp::reply::EnhancedStatus;
use reply::{find_reply, FoundReply};
use timing::{Clues, Decision, Timing};

/// The largest bounce read (a bounce that returns a large message is cut, not refused: what is
/// read comes first in it).
pub const MAX_BOUNCE_BYTES: usize = 4 * 1024 * 1024;

/// One failed recipient, ready to become a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The recipient; `None` when the input names none (a bare reply transcript).
    pub rcpt: Option<String>,
    /// The reply code.
    pub code: u16,
    /// The enhanced status code.
    pub status: EnhancedStatus,
    /// Where the status comes from.
    pub status_from: StatusFrom,
    /// The reply's lines, without code and status.
    pub lines: Vec<String>,
    /// The phase to answer at.
    pub phase: Phase,
    /// Whether the bounce names that phase (else it is the first one the code fits).
    pub phase_named: bool,
    /// The server that gave the reply, when the bounce names it.
    pub remote_mta: Option<String>,
    /// Temporary failures the bounce shows before this one, oldest first.
    pub earlier: Vec<FoundReply>,
    /// In the SMTP dialogue or as a later bounce, and why.
    pub decision: Decision,
}

/// Where a failure's enhanced status code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFrom {
    /// The reply itself carries it.
    Reply,
    /// The reply has none; the delivery status report's `Status` field gives it.
    StatusField,
    /// Neither: `X.0.0` from the code's class.
    CodeClass,
}

/// What one bounce gave.
#[derive(Debug, Clone)]
pub struct Bounce {
    /// The file it came from (`-` for standard input).
    pub origin: String,
    /// The MTA that wrote the bounce (`Reporting-MTA`, else the sender of the bounce).
    pub reporter: Option<String>,
    /// The failures that can be reproduced.
    pub failures: Vec<Failure>,
    /// What could not be read, one sentence each (a recipient without an SMTP reply, …).
    pub problems: Vec<String>,
}

impl Bounce {
    /// Every failure reproduced `timing`'s way, whatever the bounce shows (`--at-smtp`,
    /// `--later`); the rule's comment says it was asked for.
    pub fn force(&mut self, timing: Timing) {
        for failure in &mut self.failures {
            failure.decision = timing::forced(failure.decision, timing);
        }
    }
}

/// Why a file gave nothing to import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{file}: cannot read it: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing in it is a failed recipient with an SMTP reply.
    #[error("{file}: {why}")]
    NothingToImport {
        /// The file.
        file: String,
        /// What it holds instead.
        why: String,
    },
    /// The scenario to add to does not take the rules.
    #[error("{file}: {why}")]
    Scenario {
        /// The scenario file.
        file: String,
        /// Why.
        why: String,
    },
}

/// Reads one bounce. Fails only when not one failure in it can be reproduced; the recipients it
/// cannot read are listed in [`Bounce::problems`].
pub fn read_bounce(origin: &str, raw: &[u8]) -> Result<Bounce, ImportError> {
    let raw = &raw[..raw.len().min(MAX_BOUNCE_BYTES)];
    let parts = message::split(raw);
    let reports: Vec<dsn::DeliveryStatus> = parts.dsn.iter().map(|d| dsn::parse(d)).collect();
    let records: Vec<vendor::Record> = parts.text.iter().flat_map(|t| vendor::records(t)).collect();
    let statuses: Vec<&dsn::RecipientStatus> = reports
        .iter()
        .flat_map(|r| &r.recipients)
        .filter(|r| r.action.is_empty() || r.action.starts_with("fail") || r.action == "delayed")
        .collect();
    let reporter = reports
        .iter()
        .find_map(|r| r.reporting_mta.clone())
        .or(parts.from.clone());
    let mut bounce = Bounce {
        origin: origin.to_owned(),
        reporter,
        failures: Vec::new(),
        problems: Vec::new(),
    };
    let clues = Clues {
        is_message: parts.is_message,
        delayed: parts.text.iter().any(|t| timing::says_delayed(t)),
        arrival: reports
            .iter()
            .find_map(|r| r.arrival_date.as_deref().and_then(timing::timestamp)),
        reported: parts.date,
        ..Clues::default()
    };
    if statuses.is_empty() {
        from_text(&mut bounce, &records, &parts.failed_recipients, &clues);
    } else {
        from_reports(&mut bounce, &statuses, &records, &clues);
    }
    if bounce.failures.is_empty() {
        let why = match bounce.problems.is_empty() {
            true => "it quotes no SMTP failure reply (4xx or 5xx) for any recipient: not a \
                     bounce, a bounce for a connection or local delivery failure, or a format \
                     failmail does not read"
                .to_owned(),
            false => bounce.problems.join("; "),
        };
        return Err(ImportError::NothingToImport {
            file: origin.to_owned(),
            why,
        });
    }
    Ok(bounce)
}

/// One failure per recipient of the delivery status reports; the text supplies the phase, and
/// the reply where the report's `Diagnostic-Code` has none.
fn from_reports(
    bounce: &mut Bounce,
    statuses: &[&dsn::RecipientStatus],
    records: &[vendor::Record],
    clues: &Clues,
) {
    let single = statuses.len() == 1;
    for status in statuses {
        let own = |r: &&vendor::Record| {
            r.rcpt
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(&status.recipient))
        };
        let unclaimed = |r: &&vendor::Record| {
            single
                && !r
                    .rcpt
                    .as_deref()
                    .is_some_and(|a| statuses.iter().any(|s| s.recipient.eq_ignore_ascii_case(a)))
        };
        let mut related: Vec<&vendor::Record> = records.iter().filter(own).collect();
        related.extend(records.iter().filter(unclaimed));
        let reply = status
            .diagnostic
            .as_deref()
            .and_then(find_reply)
            .or_else(|| related.last().map(|r| r.reply.clone()))
            .or_else(|| find_reply(&status.status_text));
        let Some(reply) = reply else {
            let said = status
                .diagnostic
                .as_deref()
                .map(reply::fold)
                .unwrap_or_default();
            bounce.problems.push(format!(
                "{}: the bounce quotes no SMTP reply code for it{}",
                status.recipient,
                if said.is_empty() {
                    String::new()
                } else {
                    format!(" (it says only {said:?})")
                }
            ));
            continue;
        };
        let phase = related.iter().find_map(|r| r.phase);
        let expiry = EnhancedStatus::parse(&status.status);
        let clues = Clues {
            // The report's Action decides; without one, what the text says.
            delayed: status.action == "delayed" || status.action.is_empty() && clues.delayed,
            expiry_status: expiry.is_some_and(|s| s.subject == 4 && s.detail == 7),
            retry_until: status
                .will_retry_until
                .as_deref()
                .and_then(timing::timestamp),
            ..clues.clone()
        };
        let failure = failure(
            Some(status.recipient.clone()),
            reply,
            Some(&status.status),
            phase,
            &related,
            clues,
        );
        push(bounce, failure, status.remote_mta.clone());
    }
}

/// One failure per recipient the text tells of (no delivery status report).
fn from_text(bounce: &mut Bounce, records: &[vendor::Record], failed: &[String], clues: &Clues) {
    let mut seen: Vec<Option<String>> = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let rcpt = match &record.rcpt {
            Some(rcpt) => Some(rcpt.clone()),
            // A recipient the text does not name: the X-Failed-Recipients header does.
            None => failed
                .get(index.min(failed.len().saturating_sub(1)))
                .cloned(),
        };
        let key = rcpt.as_ref().map(|r| r.to_ascii_lowercase());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        let related: Vec<&vendor::Record> = records
            .iter()
            .filter(|r| r.rcpt.as_ref().map(|a| a.to_ascii_lowercase()) == key || r.rcpt.is_none())
            .collect();
        // The last reply the text gives for this recipient is the one that ended delivery.
        let last = related.last().map_or(record, |r| *r);
        let phase = last.phase.or_else(|| related.iter().find_map(|r| r.phase));
        let failure = failure(
            rcpt,
            last.reply.clone(),
            None,
            phase,
            &related,
            clues.clone(),
        );
        push(bounce, failure, None);
    }
}

/// Keeps a failure, or says why it cannot be served.
fn push(bounce: &mut Bounce, failure: Result<Failure, String>, remote_mta: Option<String>) {
    match failure {
        Ok(mut failure) => {
            failure.remote_mta = remote_mta;
            bounce.failures.push(failure);
        }
        Err(problem) => bounce.problems.push(problem),
    }
}

/// A failure from its reply: the status from the reply, else the report's `Status` field, else
/// the code's class; the phase named, else the first the code fits (RCPT, then end of data); at
/// SMTP or later as `clues` and the reply say.
fn failure(
    rcpt: Option<String>,
    reply: FoundReply,
    status_field: Option<&str>,
    phase: Option<Phase>,
    related: &[&vendor::Record],
    clues: Clues,
) -> Result<Failure, String> {
    let who = rcpt.clone().unwrap_or_else(|| "the reply".to_owned());
    let class = (reply.code / 100) as u8;
    let field = status_field
        .and_then(EnhancedStatus::parse)
        .filter(|s| s.class == class);
    let (status, status_from) = match (reply.status, field) {
        (Some(status), _) => (status, StatusFrom::Reply),
        (None, Some(status)) => (status, StatusFrom::StatusField),
        (None, None) => (
            EnhancedStatus {
                class,
                subject: 0,
                detail: 0,
            },
            StatusFrom::CodeClass,
        ),
    };
    if status.class != class {
        return Err(format!(
            "{who}: the reply {} {status} disagrees with itself (the class digits differ)",
            reply.code
        ));
    }
    let phase_named = phase.is_some();
    let phase = phase.unwrap_or(if phase_codes::is_allowed(Phase::Rcpt, reply.code) {
        Phase::Rcpt
    } else {
        Phase::DataEnd
    });
    let earlier = if reply.code >= 500 {
        let mut earlier: Vec<FoundReply> = Vec::new();
        for record in related {
            if record.reply.code < 500 && !earlier.contains(&record.reply) {
                earlier.push(record.reply.clone());
            }
        }
        earlier
    } else {
        Vec::new()
    };
    let decision = timing::decide(&Clues {
        code: reply.code,
        phase_named,
        ..clues
    });
    Ok(Failure {
        decision,
        rcpt,
        code: reply.code,
        status,
        status_from,
        lines: reply.lines,
        phase,
        phase_named,
        remote_mta: None,
        earlier,
    })
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
