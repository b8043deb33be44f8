//! The retry report: for each message and recipient followed, its attempts, the delays between
//! them, whether it was delivered, and the verdicts on the client's behaviour, each with the
//! attempts that show it. Serialized as `GET /api/report`; read back by `failmail report`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::attempt::{Attempt, EndKind, Ending};
use super::book::FollowedMessage;
use super::verdicts::{self, Entry};
use super::AttemptsConfig;
use crate::scenario::compile::Scenario;
use crate::scenario::settings::{DEFAULT_GREYLIST_DELAY, DEFAULT_GREYLIST_RETRY_WINDOW};

/// How a report judges: the attempt history's settings and the live scenario's greylist. All in
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSettings {
    /// How long after a temporary failure a retry is expected.
    pub retry_window_ms: u64,
    /// Retry delays shorter than this fail the backoff verdict.
    pub backoff_threshold_ms: u64,
    /// The greylist's minimum delay before a retry.
    pub greylist_delay_ms: u64,
    /// The greylist's retry window: a greylisted attempt's retry is expected within it.
    pub greylist_retry_window_ms: u64,
}

impl ReportSettings {
    /// The settings of `config`, with the greylist of `scenario` (postgrey's defaults when it
    /// has no `[greylisting]`).
    pub fn new(config: &AttemptsConfig, scenario: Option<&Scenario>) -> Self {
        let greylist = scenario.and_then(|s| s.greylisting.as_ref());
        Self {
            retry_window_ms: millis(config.retry_window),
            backoff_threshold_ms: millis(config.backoff_threshold),
            greylist_delay_ms: millis(greylist.map_or(DEFAULT_GREYLIST_DELAY, |g| g.delay)),
            greylist_retry_window_ms: millis(
                greylist.map_or(DEFAULT_GREYLIST_RETRY_WINDOW, |g| g.retry_window),
            ),
        }
    }

    /// How long a retry may take after `ending`: the greylist's window for a greylisted one.
    pub(super) fn window_after(&self, ending: &Ending) -> u64 {
        if ending.greylisted() {
            self.greylist_retry_window_ms
        } else {
            self.retry_window_ms
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A verdict's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// The client did the right thing.
    Pass,
    /// It did not.
    Fail,
    /// Not yet known: the time by which the client should act has not passed on the clock.
    Pending,
}

/// One verdict with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Pass, fail or pending.
    pub result: Judgement,
    /// Why, in a sentence that quotes the replies and attempts.
    pub detail: String,
    /// The ids of the attempts that show it.
    pub evidence: Vec<u64>,
    /// The delays it judged, in ms (`retried_after_temporary`, `backoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delays_ms: Option<Vec<u64>>,
    /// Whether the delays grow (`backoff`, with two delays or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growing: Option<bool>,
    /// The shortest delay, in ms (`backoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortest_ms: Option<u64>,
    /// How many: attempts after a permanent failure, or duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Verdict {
    pub(super) fn new(result: Judgement, detail: String, evidence: Vec<u64>) -> Self {
        Self {
            result,
            detail,
            evidence,
            delays_ms: None,
            growing: None,
            shortest_ms: None,
            count: None,
        }
    }
}

/// The verdicts on one recipient of one message; a verdict that does not apply is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdicts {
    /// Every temporary failure (4xx, no reply, a lost 250) was followed by a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_after_temporary: Option<Verdict>,
    /// No attempt came after a permanent failure (5xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_after_permanent: Option<Verdict>,
    /// No retry before the greylist's minimum delay, and one within its retry window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respected_greylist_delay: Option<Verdict>,
    /// No retry delay shorter than the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Verdict>,
    /// After a 421, a new connection came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnected_after_421: Option<Verdict>,
    /// After `452 4.5.3` (too many recipients), the recipient came back in another transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_remaining_after_452: Option<Verdict>,
    /// Accepted more than once: fails unless the 250 before was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<Verdict>,
}

impl Verdicts {
    /// Every verdict present, with its name.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &Verdict)> {
        [
            ("retried_after_temporary", &self.retried_after_temporary),
            ("stopped_after_permanent", &self.stopped_after_permanent),
            ("respected_greylist_delay", &self.respected_greylist_delay),
            ("backoff", &self.backoff),
            ("reconnected_after_421", &self.reconnected_after_421),
            (
                "resent_remaining_after_452",
                &self.resent_remaining_after_452,
            ),
            ("duplicates", &self.duplicates),
        ]
        .into_iter()
        .filter_map(|(name, verdict)| Some((name, verdict.as_ref()?)))
    }

    /// The verdict called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Verdict> {
        self.named().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// How an attempt ended for a recipient, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndingView {
    /// The recipient (`null` when MAIL ended the attempt: it applies to every recipient).
    pub rcpt: Option<String>,
    /// `mail`, `rcpt`, `data` or `data_end`.
    pub phase: String,
    /// `accepted`, `reply_lost`, `temporary`, `permanent`, `no_reply` or `abandoned`.
    pub result: String,
    /// When it ended, ms since the Unix epoch on the server's clock.
    pub at_ms: u64,
    /// The reply code, if a reply ended it.
    pub code: Option<u16>,
    /// Its enhanced status code.
    pub status: Option<String>,
    /// Its catalog name.
    pub catalog: Option<String>,
    /// The scenario rule (index from 0) that decided it.
    pub rule: Option<u32>,
    /// That rule's name.
    pub rule_name: Option<String>,
    /// That rule's place: `file:line`.
    pub rule_at: Option<String>,
}

impl EndingView {
    /// The view of `ending` for `rcpt`.
    pub fn new(rcpt: Option<&str>, ending: &Ending) -> Self {
        let rule = ending.rule.as_deref();
        Self {
            rcpt: rcpt.map(str::to_owned),
            phase: ending.phase.as_str().to_owned(),
            result: ending.kind.as_str().to_owned(),
            at_ms: ending.at_ms,
            code: ending.code,
            status: ending.status.map(|s| s.to_string()),
            catalog: ending.catalog.map(str::to_owned),
            rule: rule.map(|r| r.index),
            rule_name: rule.and_then(|r| r.name.as_deref()).map(str::to_owned),
            rule_at: rule.map(|r| r.location()),
        }
    }
}

/// The attempt-wide facts the API and the report show with each ending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptFacts {
    /// The attempt's id.
    pub attempt: u64,
    /// The session that carried it.
    pub session: u64,
    /// The client's IP address.
    pub client_ip: String,
    /// Whether it ran under TLS.
    pub tls: bool,
    /// The AUTH identity, if any.
    pub auth_user: Option<String>,
    /// When MAIL was answered, ms since the Unix epoch on the server's clock.
    pub started_ms: u64,
}

impl AttemptFacts {
    /// The facts of `attempt`.
    pub fn new(attempt: &Attempt) -> Self {
        Self {
            attempt: attempt.id,
            session: attempt.session,
            client_ip: attempt.client_ip.to_string(),
            tls: attempt.tls,
            auth_user: attempt.auth_user.as_deref().map(str::to_owned),
            started_ms: attempt.started_ms,
        }
    }
}

/// One attempt in a recipient's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptEntry {
    /// The attempt.
    #[serde(flatten)]
    pub facts: AttemptFacts,
    /// How it ended for the recipient.
    #[serde(flatten)]
    pub ending: EndingView,
    /// Whether the message was stored for the recipient (its 250 sent or lost).
    pub accepted: bool,
}

/// One recipient of one message: its history, its state and the verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipientReport {
    /// The recipient (`null` for a message refused at MAIL before any was named).
    pub rcpt: Option<String>,
    /// The kept attempts, oldest first.
    pub attempts: Vec<AttemptEntry>,
    /// Attempts in all, kept or not.
    pub attempts_total: u64,
    /// The delay before each retry, in ms: from the end of one attempt to the start of the next.
    pub delays_ms: Vec<u64>,
    /// Stored at least once.
    pub delivered: bool,
    /// Acceptances after the first.
    pub duplicates: u64,
    /// `delivered`, `bounced` (refused for good), `still_pending` or `gave_up`.
    pub status: String,
    /// Not delivered, and the client stopped: after a permanent failure, or with no retry within
    /// the retry window after a temporary one.
    pub gave_up: bool,
    /// Not delivered, and the retry window after its latest temporary failure is still open.
    pub still_pending: bool,
    /// No verdict failed.
    pub ok: bool,
    /// The verdicts that apply.
    pub verdicts: Verdicts,
}

/// One message followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageReport {
    /// Names the message when it has no `Message-ID`.
    pub key: u64,
    /// Its `Message-ID`, if an attempt reached the end of data with one.
    pub message_id: Option<String>,
    /// Its sender (empty for `<>`).
    pub sender: String,
    /// Attempts in all.
    pub attempts: u64,
    /// Each recipient.
    pub recipients: Vec<RecipientReport>,
}

impl MessageReport {
    /// `<id@host>`, or `#key` for a message without a `Message-ID`.
    pub fn name(&self) -> String {
        self.message_id
            .clone()
            .unwrap_or_else(|| format!("#{}", self.key))
    }
}

/// The retry report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When it was judged, ms since the Unix epoch on the server's clock.
    pub now_ms: u64,
    /// No verdict failed.
    pub ok: bool,
    /// Each failed verdict: `recipient (message): verdict: detail`.
    pub failed: Vec<String>,
    /// Each pending verdict, in the same form.
    pub pending: Vec<String>,
    /// How it was judged.
    pub settings: ReportSettings,
    /// Messages that fell out of the history since the start.
    pub messages_dropped: u64,
    /// Attempts not kept since the start.
    pub attempts_dropped: u64,
    /// Every message followed, oldest first.
    pub messages: Vec<MessageReport>,
}

impl Report {
    /// The message and report of `rcpt` (case ignored), latest message first.
    pub fn recipient(&self, rcpt: &str) -> Option<(&MessageReport, &RecipientReport)> {
        self.messages.iter().rev().find_map(|message| {
            let found = message.recipients.iter().find(|r| {
                r.rcpt
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(rcpt))
            })?;
            Some((message, found))
        })
    }

    /// The report as a table, one line per message and recipient, then the failed and pending
    /// verdicts: what `failmail report` prints.
    pub fn table(&self) -> String {
        super::table::render(self)
    }
}

/// Judges every message followed at `now_ms`.
pub(super) fn judge(
    messages: &[FollowedMessage],
    settings: &ReportSettings,
    now_ms: u64,
) -> Report {
    let mut report = Report {
        now_ms,
        ok: true,
        failed: Vec::new(),
        pending: Vec::new(),
        settings: settings.clone(),
        messages_dropped: 0,
        attempts_dropped: 0,
        messages: Vec::new(),
    };
    for message in messages {
        let mut judged = MessageReport {
            key: message.key,
            message_id: message.message_id.as_deref().map(str::to_owned),
            sender: message.sender.to_string(),
            attempts: message.attempts_total,
            recipients: Vec::new(),
        };
        let rcpts: Vec<Option<&str>> = if message.recipients.is_empty() {
            vec![None]
        } else {
            message.recipients.iter().map(|t| Some(&*t.rcpt)).collect()
        };
        for rcpt in rcpts {
            let recipient = judge_recipient(message, rcpt, settings, now_ms);
            for (name, verdict) in recipient.verdicts.named() {
                let line = format!(
                    "{} ({}): {name}: {}",
                    rcpt.unwrap_or("no recipient"),
                    judged.name(),
                    verdict.detail
                );
                match verdict.result {
                    Judgement::Fail => report.failed.push(line),
                    Judgement::Pending => report.pending.push(line),
                    Judgement::Pass => {}
                }
            }
            report.ok &= recipient.ok;
            judged.recipients.push(recipient);
        }
        report.messages.push(judged);
    }
    report
}

/// The report of one recipient (or of a message refused at MAIL before any, for `None`).
fn judge_recipient(
    message: &FollowedMessage,
    rcpt: Option<&str>,
    settings: &ReportSettings,
    now_ms: u64,
) -> RecipientReport {
    let entries: Vec<Entry<'_>> = message
        .attempts
        .iter()
        .filter_map(|attempt| {
            let ending = match rcpt {
                Some(rcpt) => attempt.ending_for(rcpt)?,
                None => attempt.mail_ending.as_ref()?,
            };
            Some(Entry { attempt, ending })
        })
        .collect();
    let tally = rcpt.and_then(|r| message.tally(r));
    let verdicts = verdicts::all(&entries, tally, settings, now_ms);
    let delivered = tally.is_some_and(|t| t.accepted > 0);
    let status = status(&entries, delivered, settings, now_ms);
    let ok = verdicts.named().all(|(_, v)| v.result != Judgement::Fail);
    RecipientReport {
        rcpt: rcpt.map(str::to_owned),
        attempts: entries
            .iter()
            .map(|e| AttemptEntry {
                facts: AttemptFacts::new(e.attempt),
                ending: EndingView::new(rcpt, e.ending),
                accepted: e.ending.kind.accepted(),
            })
            .collect(),
        attempts_total: tally.map_or(entries.len() as u64, |t| t.attempts),
        delays_ms: verdicts::delays(&entries),
        delivered,
        duplicates: tally.map_or(0, |t| t.duplicates),
        status: status.to_owned(),
        gave_up: matches!(status, "bounced" | "gave_up"),
        still_pending: status == "still_pending",
        ok,
        verdicts,
    }
}

/// `delivered`, `bounced`, `still_pending` or `gave_up`, from the latest attempt.
fn status(
    entries: &[Entry<'_>],
    delivered: bool,
    settings: &ReportSettings,
    now_ms: u64,
) -> &'static str {
    if delivered {
        return "delivered";
    }
    match entries.last() {
        Some(last) if last.ending.kind == EndKind::Permanent => "bounced",
        Some(last)
            if now_ms
                < last
                    .ending
                    .at_ms
                    .saturating_add(settings.window_after(last.ending)) =>
        {
            "still_pending"
        }
        Some(_) => "gave_up",
        None => "still_pending",
    }
}

/// `1.2s`, `5m`, `1h05m`, `2d3h`: a duration for people.
pub fn duration_text(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..=59 => {
            let text = format!("{:.1}", ms as f64 / 1000.0);
            format!("{}s", text.strip_suffix(".0").unwrap_or(&text))
        }
        60..=3599 if seconds % 60 == 0 => format!("{}m", seconds / 60),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..=86_399 if seconds % 3600 == 0 => format!("{}h", seconds / 3600),
        3600..=86_399 => format!("{}h{:02}m", seconds / 3600, seconds / 60 % 60),
        _ if seconds % 86_400 == 0 => format!("{}d", seconds / 86_400),
        _ => format!("{}d{}h", seconds / 86_400, seconds / 3600 % 24),
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
