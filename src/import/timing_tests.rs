use super::*;

/// A bounce message quoting a 550 at a named phase.
fn named() -> Clues {
    Clues {
        is_message: true,
        phase_named: true,
        code: 550,
        ..Clues::default()
    }
}

#[test]
fn a_named_phase_or_a_transcript_is_answered_at_smtp() {
    assert_eq!(decide(&named()).timing, Timing::AtSmtp);
    assert_eq!(decide(&named()).why, Why::PhaseNamed);
    let transcript = Clues {
        is_message: false,
        phase_named: false,
        code: 451,
        delayed: true,
        ..Clues::default()
    };
    assert_eq!(
        (decide(&transcript).timing, decide(&transcript).why),
        (Timing::AtSmtp, Why::Transcript)
    );
}

#[test]
fn a_bounce_naming_no_phase_comes_later() {
    let clues = Clues {
        phase_named: false,
        ..named()
    };
    let decision = decide(&clues);
    assert_eq!(
        (decision.timing, decision.why),
        (Timing::Later, Why::NoPhase)
    );
    assert_eq!((decision.delay_notice, decision.give_up), (None, None));
}

#[test]
fn a_delay_notice_comes_later_with_its_times() {
    let day = 86_400;
    let clues = Clues {
        delayed: true,
        code: 451,
        arrival: Some(1_000_000),
        reported: Some(1_000_000 + 3 * 3600 + 59),
        retry_until: Some(1_000_000 + 2 * day),
        ..named()
    };
    let decision = decide(&clues);
    assert_eq!(
        (decision.timing, decision.why),
        (Timing::Later, Why::Delayed)
    );
    assert_eq!(decision.delay_notice, Some(Duration::from_secs(3 * 3600)));
    assert_eq!(decision.give_up, Some(Duration::from_secs(2 * day as u64)));
    // Without dates: Postfix's usual 4 hours, the default give-up.
    let bare = decide(&Clues {
        arrival: None,
        ..clues.clone()
    });
    assert_eq!(
        (bare.delay_notice, bare.give_up),
        (Some(MAGIC_DELAY_NOTICE), None)
    );
    // A date in the past of the arrival, or weeks away, is not believed.
    let odd = decide(&Clues {
        reported: Some(1_000_000 - 60),
        retry_until: Some(1_000_000 + 90 * day),
        ..clues
    });
    assert_eq!(
        (odd.delay_notice, odd.give_up),
        (Some(MAGIC_DELAY_NOTICE), None)
    );
}

#[test]
fn a_temporary_reply_in_a_final_bounce_is_an_expiry() {
    let clues = Clues {
        code: 452,
        arrival: Some(0),
        reported: Some(2 * 86_400),
        ..named()
    };
    let decision = decide(&clues);
    assert_eq!(
        (decision.timing, decision.why),
        (Timing::Later, Why::Expired)
    );
    assert_eq!(decision.give_up, Some(Duration::from_secs(2 * 86_400)));
    let status_only = decide(&Clues {
        expiry_status: true,
        ..named()
    });
    assert_eq!(
        (status_only.why, status_only.give_up),
        (Why::Expired, None),
        "a 5xx fails at once: no give-up"
    );
}

#[test]
fn forcing_overrides_and_says_so() {
    let later = decide(&Clues {
        phase_named: false,
        ..named()
    });
    let forced_now = forced(later, Timing::AtSmtp);
    assert_eq!(
        (forced_now.timing, forced_now.why),
        (Timing::AtSmtp, Why::Forced)
    );
    assert_eq!(forced(later, Timing::Later), later, "already so: unchanged");
}

#[test]
fn delay_words_and_durations() {
    assert!(says_delayed(
        "Delivery to the following recipient has been delayed:"
    ));
    assert!(!says_delayed("Delivery to the following recipient failed"));
    assert_eq!(duration_text(Duration::from_secs(5 * 86_400)), "5d");
    assert_eq!(duration_text(Duration::from_secs(4 * 3600)), "4h");
    assert_eq!(duration_text(Duration::from_secs(90 * 60)), "90m");
    assert_eq!(duration_text(Duration::from_secs(61)), "61s");
    assert_eq!(
        timestamp("Fri, 13 Nov 2020 09:42:35 +0900 (JST)"),
        Some(1_605_228_155)
    );
}
