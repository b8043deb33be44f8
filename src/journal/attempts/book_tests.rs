//! Joining attempts to messages, the bounds and the counters.

use super::*;
use crate::journal::attempts::testkit::{attempt, greylisted, refused_at_mail, reply, silent};

fn book() -> AttemptBook {
    AttemptBook::new(AttemptsConfig::default())
}

fn all(book: &AttemptBook) -> AttemptFilter<'static> {
    let _ = book;
    AttemptFilter {
        limit: usize::MAX,
        ..AttemptFilter::default()
    }
}

/// (message key, Message-ID, attempt ids) of every message followed.
fn grouping(book: &AttemptBook) -> Vec<(u64, Option<String>, Vec<u64>)> {
    book.messages()
        .into_iter()
        .map(|m| {
            (
                m.key,
                m.message_id.as_deref().map(str::to_owned),
                m.attempts.iter().map(|a| a.id).collect(),
            )
        })
        .collect()
}

#[test]
fn a_message_id_names_the_message_and_adopts_its_earlier_refusals() {
    let book = book();
    let s = "app@example.org";
    // A retrying MTA: refused at RCPT twice (no DATA, so no Message-ID), then delivered.
    book.record(attempt(
        1,
        s,
        None,
        &[("a@x", greylisted(0)), ("b@x", greylisted(1))],
    ));
    book.record(attempt(
        2,
        "other@example.org",
        None,
        &[("a@x", greylisted(2))],
    ));
    book.record(attempt(3, s, None, &[("b@x", greylisted(5))]));
    book.record(attempt(
        4,
        s,
        Some("<m1@x>"),
        &[
            ("a@x", reply(250, "2.0.0", 9)),
            ("b@x", reply(250, "2.0.0", 9)),
        ],
    ));
    // The same Message-ID again (a lost 250, say) joins it too, however it is addressed.
    book.record(attempt(
        5,
        "SomeoneElse@x",
        Some("<m1@x>"),
        &[("A@X", reply(250, "2.0.0", 20))],
    ));
    assert_eq!(
        grouping(&book),
        [
            (1, Some("<m1@x>".to_owned()), vec![1, 3, 4, 5]),
            (2, None, vec![2]),
        ]
    );
    let messages = book.messages();
    let a = messages[0].tally("a@x").unwrap();
    assert_eq!(
        (a.attempts, a.accepted, a.duplicates, a.unexplained),
        (3, 2, 1, 1)
    );
    assert_eq!(book.messages()[0].tally("B@x").unwrap().attempts, 3);
}

#[test]
fn after_a_250_the_same_envelope_is_a_new_message_but_not_after_a_lost_one() {
    let book = book();
    let s = "app@example.org";
    book.record(attempt(1, s, None, &[("a@x", reply(250, "2.0.0", 0))]));
    book.record(attempt(2, s, None, &[("a@x", reply(451, "4.3.0", 10))]));
    assert_eq!(grouping(&book).len(), 2, "a 250 was sent: a new message");
    book.record(attempt(
        3,
        s,
        None,
        &[("b@x", silent(EndKind::ReplyLost, 20))],
    ));
    book.record(attempt(4, s, None, &[("b@x", reply(250, "2.0.0", 30))]));
    let groups = grouping(&book);
    assert_eq!(groups.len(), 3);
    assert_eq!(
        groups[2].2,
        [3, 4],
        "the client never saw the 250: the same message"
    );
    let tally = book.messages()[2].tally("b@x").cloned().unwrap();
    assert_eq!((tally.duplicates, tally.unexplained), (1, 0));
}

#[test]
fn different_message_ids_never_join_and_mail_refusals_join_the_sender() {
    let book = book();
    let s = "app@example.org";
    book.record(attempt(
        1,
        s,
        Some("<1@x>"),
        &[("a@x", reply(451, "4.3.0", 0))],
    ));
    book.record(attempt(
        2,
        s,
        Some("<2@x>"),
        &[("a@x", reply(451, "4.3.0", 1))],
    ));
    assert_eq!(grouping(&book).len(), 2);
    // Refused at MAIL: no recipient named; joins the sender's latest open message.
    book.record(refused_at_mail(3, s, reply(451, "4.7.0", 2)));
    assert_eq!(grouping(&book)[1].2, [2, 3]);
    assert_eq!(book.messages()[1].tally("a@x").unwrap().attempts, 2);
    // A sender with nothing open: a message of its own, without recipients, which the
    // sender's next attempt continues.
    book.record(refused_at_mail(4, "new@x", reply(421, "4.3.2", 3)));
    book.record(attempt(
        5,
        "new@x",
        Some("<3@x>"),
        &[("c@x", reply(250, "2.0.0", 4))],
    ));
    let groups = grouping(&book);
    assert_eq!(groups[2], (3, Some("<3@x>".to_owned()), vec![4, 5]));
}

#[test]
fn bounded_messages_and_attempts_with_counters() {
    let book = AttemptBook::new(AttemptsConfig {
        messages: 2,
        attempts_per_message: 3,
        ..AttemptsConfig::default()
    });
    for n in 0..6 {
        book.record(attempt(
            n,
            "s@x",
            None,
            &[("loop@x", reply(451, "4.3.0", n * 10))],
        ));
    }
    let kept: Vec<u64> = book.messages()[0].attempts.iter().map(|a| a.id).collect();
    assert_eq!(kept, [1, 2, 6], "the first ones and the latest stay");
    assert_eq!(book.messages()[0].attempts_total, 6);
    assert_eq!(book.messages()[0].tally("loop@x").unwrap().attempts, 6);
    assert_eq!(book.attempts_dropped(), 3);
    for sender in ["a@x", "b@x"] {
        book.record(attempt(
            9,
            sender,
            None,
            &[("r@x", reply(250, "2.0.0", 100))],
        ));
    }
    assert_eq!(book.messages_dropped(), 1);
    // The evicted message's indexes are gone: its retry starts a new message.
    book.record(attempt(
        10,
        "s@x",
        None,
        &[("loop@x", reply(250, "2.0.0", 200))],
    ));
    assert_eq!(book.messages().len(), 2);
    assert_eq!(book.messages()[1].attempts_total, 1);
    let mut text = String::new();
    book.render_metrics(&mut text);
    for line in [
        "failmail_attempts_total 9",
        "failmail_attempt_retries_total 5",
        "failmail_attempts_dropped_total 3",
        "failmail_attempt_messages_dropped_total 2",
        // Observed once each: when settled (three delivered at once) or evicted unsettled
        // (the loop of 6).
        "failmail_attempts_per_message_count 4",
        "failmail_attempts_per_message_bucket{le=\"1\"} 3",
        "failmail_attempts_per_message_bucket{le=\"5\"} 3",
        "failmail_attempts_per_message_bucket{le=\"10\"} 4",
        "failmail_attempts_per_message_sum 9",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    book.clear();
    assert!(book.messages().is_empty());
    assert!(book.attempts(&all(&book)).is_empty());
}

#[test]
fn listing_filters_by_recipient_message_and_id() {
    let book = book();
    book.record(attempt(
        1,
        "s@x",
        Some("<1@x>"),
        &[
            ("a@x", reply(250, "2.0.0", 0)),
            ("b@x", reply(550, "5.1.1", 0)),
        ],
    ));
    book.record(attempt(
        2,
        "s@x",
        Some("<2@x>"),
        &[("c@x", reply(452, "4.2.2", 1))],
    ));
    book.record(refused_at_mail(3, "s@x", reply(451, "4.7.0", 2)));
    let ids = |filter: AttemptFilter<'_>| -> Vec<u64> {
        book.attempts(&filter)
            .iter()
            .map(|l| l.attempt.id)
            .collect()
    };
    assert_eq!(ids(all(&book)), [1, 2, 3]);
    assert_eq!(
        ids(AttemptFilter {
            rcpt: Some("B@X"),
            ..all(&book)
        }),
        [1]
    );
    // The MAIL refusal joined <2@x>, not yet delivered: it concerns c@x.
    assert_eq!(
        ids(AttemptFilter {
            rcpt: Some("c@x"),
            ..all(&book)
        }),
        [2, 3]
    );
    assert_eq!(
        ids(AttemptFilter {
            message_id: Some("<1@x>"),
            ..all(&book)
        }),
        [1]
    );
    assert_eq!(
        ids(AttemptFilter {
            since: 1,
            limit: 1,
            ..all(&book)
        }),
        [2]
    );
    let listed = book.attempts(&all(&book));
    assert_eq!(
        (listed[2].message, listed[2].message_id.as_deref()),
        (2, Some("<2@x>"))
    );
}

#[test]
fn a_message_counts_a_bounded_number_of_recipients() {
    let book = book();
    book.record(attempt(
        1,
        "s@x",
        Some("<big@x>"),
        &[("a@x", reply(250, "2.0.0", 0))],
    ));
    for n in 0..1200 {
        let rcpt = format!("r{n}@x");
        // Another sender, the same Message-ID: joined, but it adds no index entries.
        book.record(attempt(
            2,
            "other@x",
            Some("<big@x>"),
            &[(rcpt.as_str(), reply(451, "4.3.0", 1))],
        ));
    }
    let messages = book.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].recipients.len(), MAX_RECIPIENTS);
    assert_eq!(messages[0].attempts_total, 1201);
    let followed = book.lock();
    assert_eq!(
        (followed.by_envelope.len(), followed.by_sender.len()),
        (1, 1)
    );
}
