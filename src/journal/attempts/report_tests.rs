//! The verdicts, judged at chosen moments of the clock.

use super::*;
use crate::journal::attempts::testkit::{attempt, greylisted, refused_at_mail, reply, silent};
use crate::journal::attempts::AttemptBook;

const S: &str = "app@example.org";
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

fn settings() -> ReportSettings {
    ReportSettings {
        retry_window_ms: HOUR,
        backoff_threshold_ms: MINUTE,
        greylist_delay_ms: 5 * MINUTE,
        greylist_retry_window_ms: 2 * HOUR,
    }
}

/// The result of `verdict`, which must apply.
fn result(recipient: &RecipientReport, verdict: &str) -> Judgement {
    recipient
        .verdicts
        .get(verdict)
        .expect("the verdict applies")
        .result
}

fn book_of(attempts: Vec<Attempt>) -> AttemptBook {
    let book = AttemptBook::new(AttemptsConfig::default());
    for attempt in attempts {
        book.record(attempt);
    }
    book
}

/// The report at `now_ms`, and the result of `verdict` for `rcpt` (`None`: does not apply).
fn judged(
    book: &AttemptBook,
    now_ms: u64,
    rcpt: &str,
    verdict: &str,
) -> (Report, Option<Judgement>) {
    let report = book.report(now_ms, &settings());
    let result = report
        .recipient(rcpt)
        .and_then(|(_, r)| r.verdicts.get(verdict))
        .map(|v| v.result);
    (report, result)
}

#[test]
fn a_client_that_never_retries_is_pending_then_fails() {
    let book = book_of(vec![attempt(1, S, None, &[("g@x", greylisted(0))])]);
    let (report, result) = judged(&book, MINUTE, "g@x", "retried_after_temporary");
    assert_eq!(result, Some(Judgement::Pending));
    assert!(report.ok, "pending is not a failure");
    let (_, recipient) = report.recipient("g@x").unwrap();
    assert!(recipient.still_pending && !recipient.gave_up && !recipient.delivered);
    let verdict = recipient.verdicts.get("retried_after_temporary").unwrap();
    assert!(
        verdict
            .detail
            .starts_with("451 4.7.1 (attempt 1): a retry is expected by"),
        "{}",
        verdict.detail
    );
    assert_eq!(verdict.evidence, [1]);
    assert_eq!(
        judged(&book, MINUTE, "g@x", "respected_greylist_delay").1,
        Some(Judgement::Pending)
    );
    // A greylisted attempt is expected back within the greylist's window (2h), not 1h.
    assert_eq!(
        judged(&book, 90 * MINUTE, "g@x", "retried_after_temporary").1,
        Some(Judgement::Pending)
    );
    let (report, result) = judged(&book, 2 * HOUR, "g@x", "retried_after_temporary");
    assert_eq!(result, Some(Judgement::Fail));
    assert!(!report.ok);
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert!(
        report.failed[0].starts_with(
            "g@x (#1): retried_after_temporary: no retry within 2h after 451 4.7.1 (attempt 1)"
        ),
        "{:?}",
        report.failed
    );
    let (_, recipient) = report.recipient("g@x").unwrap();
    assert!(recipient.gave_up && !recipient.still_pending);
    assert_eq!(recipient.status, "gave_up");
}

#[test]
fn a_client_that_loops_fails_the_greylist_and_backoff() {
    let attempts = (0..4)
        .map(|n| attempt(n, S, None, &[("g@x", greylisted(n * 100))]))
        .collect();
    let book = book_of(attempts);
    let (report, _) = judged(&book, 1000, "g@x", "backoff");
    let (_, recipient) = report.recipient("g@x").unwrap();
    let backoff = recipient.verdicts.backoff.as_ref().unwrap();
    assert_eq!(backoff.result, Judgement::Fail);
    assert_eq!(backoff.delays_ms.as_deref(), Some(&[100, 100, 100][..]));
    assert_eq!(
        (backoff.shortest_ms, backoff.growing),
        (Some(100), Some(true))
    );
    let greylist = recipient
        .verdicts
        .respected_greylist_delay
        .as_ref()
        .unwrap();
    assert_eq!(greylist.result, Judgement::Fail);
    assert!(
        greylist.detail.contains("before the greylist's 5m delay"),
        "{}",
        greylist.detail
    );
    // It did retry, though.
    assert_eq!(
        result(recipient, "retried_after_temporary"),
        Judgement::Pass
    );
    assert_eq!(recipient.attempts.len(), 4);
    assert_eq!(recipient.delays_ms, [100, 100, 100]);
}

#[test]
fn a_good_mta_passes_everything() {
    let t = |minutes: u64| minutes * MINUTE;
    let book = book_of(vec![
        attempt(
            1,
            S,
            None,
            &[
                ("g@x", greylisted(0)),
                ("u@x", reply(550, "5.1.1", 0)),
                ("f@x", reply(452, "4.2.2", 0)),
            ],
        ),
        attempt(
            2,
            S,
            Some("<m@x>"),
            &[
                ("g@x", reply(250, "2.0.0", t(6))),
                ("f@x", reply(452, "4.2.2", t(6))),
            ],
        ),
        attempt(3, S, None, &[("f@x", reply(452, "4.2.2", t(20)))]),
    ]);
    let report = book.report(t(21), &settings());
    assert!(report.ok, "{}", report.table());
    assert_eq!(report.messages.len(), 1);
    assert_eq!(report.messages[0].message_id.as_deref(), Some("<m@x>"));
    let (_, g) = report.recipient("g@x").unwrap();
    assert!(g.delivered && g.ok && g.status == "delivered");
    assert_eq!(g.delays_ms, [t(6)]);
    assert_eq!(g.verdicts.duplicates.as_ref().unwrap().count, Some(0));
    assert_eq!(
        g.verdicts.respected_greylist_delay.as_ref().unwrap().result,
        Judgement::Pass
    );
    let (_, u) = report.recipient("u@x").unwrap();
    assert_eq!(u.status, "bounced");
    assert!(u.gave_up);
    let stopped = u.verdicts.stopped_after_permanent.as_ref().unwrap();
    assert_eq!((stopped.result, stopped.count), (Judgement::Pass, Some(0)));
    assert!(u.verdicts.retried_after_temporary.is_none());
    // Retried twice, and its latest 452 still waits for its retry: still pending, and passes.
    let (_, f) = report.recipient("f@x").unwrap();
    assert!(f.still_pending);
    let retried = f.verdicts.retried_after_temporary.as_ref().unwrap();
    assert_eq!(retried.result, Judgement::Pass);
    assert_eq!(retried.delays_ms.as_deref(), Some(&[t(6), t(14)][..]));
    assert_eq!(f.verdicts.backoff.as_ref().unwrap().growing, Some(true));
    let table = report.table();
    for expected in [
        "<m@x>    g@x",
        "451 250",
        "452×3",
        "6m 14m",
        "still_pending",
        "ok: no verdict failed",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
}

#[test]
fn permanent_421_452_and_duplicate_verdicts() {
    let book = book_of(vec![
        attempt(1, S, Some("<1@x>"), &[("u@x", reply(550, "5.1.1", 0))]),
        attempt(
            2,
            S,
            Some("<1@x>"),
            &[("u@x", reply(550, "5.1.1", 10 * MINUTE))],
        ),
        attempt(3, S, None, &[("r@x", reply(421, "4.3.2", 0))]),
        attempt(
            4,
            S,
            Some("<2@x>"),
            &[("r@x", reply(250, "2.0.0", 2 * MINUTE))],
        ),
        attempt(
            5,
            S,
            None,
            &[
                ("a@x", reply(250, "2.0.0", 0)),
                ("b@x", reply(452, "4.5.3", 0)),
            ],
        ),
        attempt(5, S, Some("<3@x>"), &[("b@x", reply(250, "2.0.0", 10))]),
        attempt(6, S, Some("<4@x>"), &[("d@x", reply(250, "2.0.0", 0))]),
        attempt(
            7,
            S,
            Some("<4@x>"),
            &[("d@x", reply(250, "2.0.0", 5 * MINUTE))],
        ),
        attempt(
            8,
            S,
            Some("<5@x>"),
            &[("l@x", silent(EndKind::ReplyLost, 0))],
        ),
        attempt(
            9,
            S,
            Some("<5@x>"),
            &[("l@x", reply(250, "2.0.0", 5 * MINUTE))],
        ),
    ]);
    let report = book.report(HOUR, &settings());
    let verdict = |rcpt: &str, name: &str| {
        report
            .recipient(rcpt)
            .unwrap()
            .1
            .verdicts
            .get(name)
            .cloned()
            .unwrap()
    };
    let stopped = verdict("u@x", "stopped_after_permanent");
    assert_eq!((stopped.result, stopped.count), (Judgement::Fail, Some(1)));
    assert_eq!(stopped.evidence, [1, 2]);
    assert_eq!(
        verdict("r@x", "reconnected_after_421").result,
        Judgement::Pass
    );
    // The rest after 452 4.5.3 went at once, and that is no backoff failure.
    assert_eq!(
        verdict("b@x", "resent_remaining_after_452").result,
        Judgement::Pass
    );
    assert!(report
        .recipient("b@x")
        .unwrap()
        .1
        .verdicts
        .backoff
        .is_none());
    let duplicate = verdict("d@x", "duplicates");
    assert_eq!(
        (duplicate.result, duplicate.count),
        (Judgement::Fail, Some(1))
    );
    let lost = verdict("l@x", "duplicates");
    assert_eq!((lost.result, lost.count), (Judgement::Pass, Some(1)));
    assert!(lost.detail.contains("after a lost 250"), "{}", lost.detail);
    assert_eq!(
        verdict("l@x", "retried_after_temporary").result,
        Judgement::Pass
    );
    assert_eq!(report.recipient("l@x").unwrap().1.duplicates, 1);
    assert!(!report.ok);
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
}

#[test]
fn a_refusal_at_mail_is_a_row_of_its_own_and_the_report_round_trips() {
    let book = book_of(vec![refused_at_mail(1, S, reply(451, "4.7.0", 0))]);
    let report = book.report(MINUTE, &settings());
    let recipient = &report.messages[0].recipients[0];
    assert_eq!(recipient.rcpt, None);
    assert_eq!(recipient.attempts[0].ending.phase, "mail");
    assert_eq!(
        result(recipient, "retried_after_temporary"),
        Judgement::Pending
    );
    let json = serde_json::to_string(&report).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert!(json.contains(r#""result":"pending""#), "{json}");
    assert!(
        !json.contains("stopped_after_permanent"),
        "absent when it does not apply"
    );
}

#[test]
fn durations_for_people() {
    let cases = [
        (0, "0s"),
        (1_200, "1.2s"),
        (59_999, "60s"),
        (60_000, "1m"),
        (61_000, "1m01s"),
        (HOUR, "1h"),
        (HOUR + 5 * MINUTE, "1h05m"),
        (48 * HOUR, "2d"),
        (51 * HOUR, "2d3h"),
    ];
    for (ms, text) in cases {
        assert_eq!(duration_text(ms), text, "{ms}");
    }
}
