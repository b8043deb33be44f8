//! The verdicts of the retry report, one function each, judged on one recipient's attempts at
//! a moment of the clock: a verdict whose deadline has not passed yet is pending, not failed.

use super::attempt::{Attempt, EndKind, Ending};
use super::book::Tally;
use super::report::{duration_text, Judgement, ReportSettings, Verdict, Verdicts};
use crate::scenario::catalog::iso_time;

/// One attempt in a recipient's history, with how it ended for that recipient.
pub(super) struct Entry<'a> {
    pub(super) attempt: &'a Attempt,
    pub(super) ending: &'a Ending,
}

impl Entry<'_> {
    /// `451 4.7.1 (attempt 3)`.
    fn quote(&self) -> String {
        format!("{} (attempt {})", self.ending.short(), self.attempt.id)
    }
}

/// Every verdict that applies to these attempts (`tally` counts every attempt, kept or not).
pub(super) fn all(
    entries: &[Entry<'_>],
    tally: Option<&Tally>,
    settings: &ReportSettings,
    now_ms: u64,
) -> Verdicts {
    let retry = |e: &Ending| settings.window_after(e);
    let window = |_: &Ending| settings.retry_window_ms;
    Verdicts {
        retried_after_temporary: follow_up(entries, |e| e.kind.asks_for_retry(), retry).map(|f| {
            let mut verdict = f.verdict(entries, now_ms, "temporary failure(s)", "retry");
            verdict.delays_ms = Some(f.followed.iter().map(|(_, delay)| *delay).collect());
            verdict
        }),
        stopped_after_permanent: stopped_after_permanent(entries),
        respected_greylist_delay: respected_greylist_delay(entries, settings, now_ms),
        backoff: backoff(entries, settings),
        reconnected_after_421: follow_up(entries, Ending::closed_with_421, window)
            .map(|f| f.verdict(entries, now_ms, "421(s)", "new connection")),
        resent_remaining_after_452: follow_up(entries, Ending::too_many_recipients, window).map(
            |f| {
                f.verdict(
                    entries,
                    now_ms,
                    "452 4.5.3(s)",
                    "resend in another transaction",
                )
            },
        ),
        duplicates: tally.and_then(|t| duplicates(entries, t)),
    }
}

/// The delay before each retry, in ms: from the end of one attempt to the start of the next.
pub(super) fn delays(entries: &[Entry<'_>]) -> Vec<u64> {
    entries.windows(2).map(|w| delay(&w[0], &w[1])).collect()
}

fn delay(before: &Entry<'_>, after: &Entry<'_>) -> u64 {
    after.attempt.started_ms.saturating_sub(before.ending.at_ms)
}

/// How the attempts that matched a verdict's trigger were followed up.
struct FollowUp {
    /// Each one followed by another attempt: its position and the delay.
    followed: Vec<(usize, u64)>,
    /// The last attempt, when it matched: its position and when its follow-up is due.
    waiting: Option<(usize, u64)>,
}

/// The follow-up of the attempts whose ending is `matched`, each due within `window` ms; `None`
/// when none matched (the verdict does not apply).
fn follow_up(
    entries: &[Entry<'_>],
    matched: impl Fn(&Ending) -> bool,
    window: impl Fn(&Ending) -> u64,
) -> Option<FollowUp> {
    let mut found = FollowUp {
        followed: Vec::new(),
        waiting: None,
    };
    let mut any = false;
    for (at, entry) in entries.iter().enumerate() {
        if !matched(entry.ending) {
            continue;
        }
        any = true;
        match entries.get(at + 1) {
            Some(next) => found.followed.push((at, delay(entry, next))),
            None => {
                let due = entry.ending.at_ms.saturating_add(window(entry.ending));
                found.waiting = Some((at, due));
            }
        }
    }
    any.then_some(found)
}

impl FollowUp {
    /// Fails when the last one was not followed up by its due time; pending while none was
    /// followed up and the last one's time has not come; passes otherwise.
    fn judgement(&self, now_ms: u64) -> Judgement {
        match self.waiting {
            Some((_, due)) if now_ms >= due => Judgement::Fail,
            Some(_) if self.followed.is_empty() => Judgement::Pending,
            _ => Judgement::Pass,
        }
    }

    /// The attempts that show it: each matched one and the one after it.
    fn evidence(&self, entries: &[Entry<'_>]) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .followed
            .iter()
            .flat_map(|(at, _)| [entries[*at].attempt.id, entries[*at + 1].attempt.id])
            .chain(self.waiting.map(|(at, _)| entries[at].attempt.id))
            .collect();
        ids.dedup();
        ids
    }

    /// The verdict that each `what` was followed by a `then` (retry, new connection…).
    fn verdict(&self, entries: &[Entry<'_>], now_ms: u64, what: &str, then: &str) -> Verdict {
        let result = self.judgement(now_ms);
        let waiting = self.waiting.map(|(at, due)| (&entries[at], due));
        let detail = match (result, waiting) {
            (Judgement::Fail, Some((entry, due))) => format!(
                "no {then} within {} after {}",
                duration_text(due - entry.ending.at_ms),
                entry.quote()
            ),
            (Judgement::Pending, Some((entry, due))) => format!(
                "{}: a {then} is expected by {} (in {})",
                entry.quote(),
                iso_time(due),
                duration_text(due.saturating_sub(now_ms))
            ),
            _ => {
                let delays: Vec<String> = self
                    .followed
                    .iter()
                    .map(|(at, delay)| {
                        format!("{} {}", entries[*at].quote(), duration_text(*delay))
                    })
                    .collect();
                let mut text = format!(
                    "{} {what} followed by a {then}: {}",
                    self.followed.len(),
                    delays.join(", ")
                );
                if let Some((entry, due)) = waiting {
                    text += &format!(
                        "; after {}, a {then} is expected by {}",
                        entry.quote(),
                        iso_time(due)
                    );
                }
                text
            }
        };
        Verdict::new(result, detail, self.evidence(entries))
    }
}

/// No attempt after the first permanent failure.
fn stopped_after_permanent(entries: &[Entry<'_>]) -> Option<Verdict> {
    let first = entries
        .iter()
        .position(|e| e.ending.kind == EndKind::Permanent)?;
    let after = &entries[first + 1..];
    let evidence = entries[first..].iter().map(|e| e.attempt.id).collect();
    let quote = entries[first].quote();
    let mut verdict = if after.is_empty() {
        Verdict::new(
            Judgement::Pass,
            format!("no attempt after {quote}"),
            evidence,
        )
    } else {
        Verdict::new(
            Judgement::Fail,
            format!("{} attempt(s) came after {quote}", after.len()),
            evidence,
        )
    };
    verdict.count = Some(after.len() as u64);
    Some(verdict)
}

/// After each greylisted attempt: no retry before the greylist's delay, one within its window.
fn respected_greylist_delay(
    entries: &[Entry<'_>],
    settings: &ReportSettings,
    now_ms: u64,
) -> Option<Verdict> {
    let (least, window) = (
        settings.greylist_delay_ms,
        settings.greylist_retry_window_ms,
    );
    let follow = follow_up(entries, Ending::greylisted, |_| window)?;
    let evidence = follow.evidence(entries);
    let early = follow.followed.iter().find(|(_, delay)| *delay < least);
    let late = follow.followed.iter().find(|(_, delay)| *delay > window);
    let (result, detail) = match (early, late) {
        (Some((at, delay)), _) => (
            Judgement::Fail,
            format!(
                "retried {} after {}, before the greylist's {} delay",
                duration_text(*delay),
                entries[*at].quote(),
                duration_text(least)
            ),
        ),
        (None, Some((at, delay))) => (
            Judgement::Fail,
            format!(
                "retried only {} after {}, past the greylist's {} retry window",
                duration_text(*delay),
                entries[*at].quote(),
                duration_text(window)
            ),
        ),
        (None, None) => {
            let verdict = follow.verdict(entries, now_ms, "greylisting(s)", "retry");
            let detail = match verdict.result {
                Judgement::Pass => format!(
                    "{}, each between the greylist's {} delay and {} window",
                    verdict.detail,
                    duration_text(least),
                    duration_text(window)
                ),
                _ => verdict.detail,
            };
            (verdict.result, detail)
        }
    };
    Some(Verdict::new(result, detail, evidence))
}

/// The delays of the retries after temporary failures (not after `452 4.5.3`, whose rest is
/// to be sent at once): fails when one is shorter than the threshold.
fn backoff(entries: &[Entry<'_>], settings: &ReportSettings) -> Option<Verdict> {
    let retried = |e: &Ending| e.kind.asks_for_retry() && !e.too_many_recipients();
    let follow = follow_up(entries, retried, |_| 0)?;
    let delays: Vec<u64> = follow.followed.iter().map(|(_, delay)| *delay).collect();
    let (&(at, shortest), _) = follow
        .followed
        .iter()
        .zip(&delays)
        .min_by_key(|(_, delay)| **delay)?;
    let growing = (delays.len() >= 2).then(|| delays.windows(2).all(|w| w[1] >= w[0]));
    let listed: Vec<String> = delays.iter().map(|d| duration_text(*d)).collect();
    let threshold = settings.backoff_threshold_ms;
    let (result, detail) = if shortest < threshold {
        (
            Judgement::Fail,
            format!(
                "retried {} after {}, under the {} backoff threshold (delays: {})",
                duration_text(shortest),
                entries[at].quote(),
                duration_text(threshold),
                listed.join(", ")
            ),
        )
    } else {
        let trend = match growing {
            Some(true) => ", growing",
            Some(false) => ", not growing",
            None => "",
        };
        (
            Judgement::Pass,
            format!(
                "delays {}{trend}; the shortest, {}, is at least {}",
                listed.join(", "),
                duration_text(shortest),
                duration_text(threshold)
            ),
        )
    };
    let mut verdict = Verdict::new(result, detail, follow.evidence(entries));
    verdict.delays_ms = Some(delays);
    verdict.growing = growing;
    verdict.shortest_ms = Some(shortest);
    Some(verdict)
}

/// Accepted more than once for the recipient: a duplicate after a lost 250 is expected (the
/// receiving side must deduplicate it); one after a 250 the client was sent is its fault.
fn duplicates(entries: &[Entry<'_>], tally: &Tally) -> Option<Verdict> {
    if tally.accepted == 0 {
        return None;
    }
    let evidence: Vec<u64> = entries
        .iter()
        .filter(|e| e.ending.kind.accepted())
        .map(|e| e.attempt.id)
        .collect();
    let (result, detail) = match (tally.duplicates, tally.unexplained) {
        (0, _) => (Judgement::Pass, "accepted once".to_owned()),
        (d, 0) => (
            Judgement::Pass,
            format!(
                "accepted {} times: {d} duplicate(s) after a lost 250, which the receiving \
                 side must deduplicate",
                tally.accepted
            ),
        ),
        (_, u) => (
            Judgement::Fail,
            format!(
                "accepted {} times: {u} after a 250 the client was sent",
                tally.accepted
            ),
        ),
    };
    let mut verdict = Verdict::new(result, detail, evidence);
    verdict.count = Some(tally.duplicates);
    Some(verdict)
}
