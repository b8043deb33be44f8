//! Evaluation of rules, sequences, chances and magic addresses, without sockets.

use std::time::Duration;

use super::*;
use crate::clock::ManualClock;

struct Harness {
    policy: ScenarioPolicy,
}

impl Harness {
    /// Decides one phase in a fresh session from the view's peer.
    fn decide(&self, phase: Phase, view: &SessionView<'_>, _ip: &str) -> Decision {
        let mut session = self.policy.open(&Connected {
            peer: view.peer,
            connections_from_ip: 1,
        });
        let decision = match session.decide(phase, view).ready() {
            Ok(decision) => decision,
            Err(_) => panic!("the memory store answers at once"),
        };
        decision
    }

    /// Decides `phase` for a session from 192.0.2.1 whose one recipient is `rcpt`.
    fn for_rcpt(&self, phase: Phase, rcpt: &str) -> Decision {
        let recipients = vec![rcpt.to_owned()];
        let view = view("192.0.2.1:1", Some("a@x"), Some(rcpt), &recipients);
        self.decide(phase, &view, "192.0.2.1")
    }

    fn reset(&self) {
        poll_now(self.policy.engine().reset()).unwrap().unwrap();
    }
}

fn engine(source: &str, seed: u64) -> Harness {
    let scenario = Scenario::parse("t.toml", source).unwrap();
    let engine = Engine::new(
        Arc::new(scenario),
        Arc::new(ManualClock::new(Duration::from_secs(1_700_000_000))),
        Arc::new(crate::limits::memory::MemoryStore::new()),
        seed,
        "mx.test".into(),
    );
    Harness {
        policy: ScenarioPolicy::new(Arc::new(engine)),
    }
}

fn view<'a>(
    peer: &'a str,
    from: Option<&'a str>,
    rcpt: Option<&'a str>,
    recipients: &'a [String],
) -> SessionView<'a> {
    SessionView {
        helo: Some("client.example"),
        ..crate::smtp::policy::test_view(peer, from, rcpt, recipients)
    }
}

fn code(decision: &Decision) -> Option<u16> {
    match &decision.verdict {
        Verdict::Reply(reply) => Some(reply.code()),
        Verdict::Continue => Some(250),
        _ => None,
    }
}

#[test]
fn first_matching_rule_decides() {
    let e = engine(
        "[[rule]]\nrcpt = \"*@nowhere.example\"\nreply = \"user_unknown\"\n\n[[rule]]\nrcpt = \"*\"\nreply = \"mailbox_full\"\n",
        0,
    );
    let d = e.decide(
        Phase::Rcpt,
        &view("192.0.2.1:1", Some("a@x"), Some("b@nowhere.example"), &[]),
        "192.0.2.1",
    );
    assert_eq!(code(&d), Some(550));
    assert_eq!(d.rule.as_ref().map(|r| r.index), Some(0));
    assert_eq!(d.catalog, Some("user_unknown"));
    let d = e.decide(
        Phase::Rcpt,
        &view("192.0.2.1:1", Some("a@x"), Some("b@elsewhere"), &[]),
        "192.0.2.1",
    );
    assert_eq!(code(&d), Some(452));
    assert_eq!(d.rule.as_ref().map(|r| r.index), Some(1));
    assert_eq!(
        e.decide(
            Phase::Mail,
            &view("192.0.2.1:1", Some("a@x"), None, &[]),
            "ip"
        )
        .verdict,
        Verdict::Continue
    );
}

#[test]
fn sequence_per_triplet_then_last_repeats() {
    let e = engine(
        "[[rule]]\nrcpt = \"flaky@*\"\nsequence = [\"greylisted\", \"greylisted\", \"accept\"]\n",
        0,
    );
    let ask = |from: &str, ip: &str| {
        let peer = format!("{ip}:25");
        code(&e.decide(
            Phase::Rcpt,
            &view(&peer, Some(from), Some("flaky@y.example"), &[]),
            ip,
        ))
    };
    assert_eq!(
        [
            ask("a@x", "192.0.2.1"),
            ask("a@x", "192.0.2.1"),
            ask("a@x", "192.0.2.1"),
            ask("a@x", "192.0.2.1")
        ],
        [Some(451), Some(451), Some(250), Some(250)]
    );
    // A fresh triplet (other sender, other IP) starts again.
    assert_eq!(ask("b@x", "192.0.2.1"), Some(451));
    assert_eq!(ask("a@x", "192.0.2.2"), Some(451));
    e.reset();
    assert_eq!(ask("a@x", "192.0.2.1"), Some(451));
}

#[test]
fn probability_is_seeded_and_near_its_rate() {
    let source =
        "[[rule]]\nat = \"mail\"\nmail_from = \"*\"\nreply = \"local_error\"\nprobability = 0.3\n";
    let run = |seed| {
        let e = engine(source, seed);
        (0..1000)
            .map(|_| {
                let failed = code(&e.decide(
                    Phase::Mail,
                    &view("192.0.2.1:1", Some("a@x"), None, &[]),
                    "ip",
                )) == Some(451);
                if failed {
                    'F'
                } else {
                    '.'
                }
            })
            .collect::<String>()
    };
    let first = run(7);
    assert_eq!(first, run(7), "same seed, same replies");
    assert_ne!(first, run(8), "another seed, other replies");
    let failures = first.matches('F').count();
    assert!(
        (240..=360).contains(&failures),
        "{failures} failures in 1000 at p = 0.3"
    );
}

#[test]
fn times_then_falls_through() {
    let e = engine(
        "[[rule]]\nat = \"mail\"\nmail_from = \"*\"\nreply = \"local_error\"\ntimes = 2\n\n[[rule]]\nmail_from = \"*\"\nreply = \"sender_rejected\"\n",
        0,
    );
    let ask = || {
        code(&e.decide(
            Phase::Mail,
            &view("192.0.2.1:1", Some("a@x"), None, &[]),
            "ip",
        ))
    };
    assert_eq!([ask(), ask(), ask()], [Some(451), Some(451), Some(550)]);
}

#[test]
fn client_ip_helo_and_data_end_matching() {
    let e = engine(
        "[[rule]]\nclient_ip = \"10.0.0.0/8\"\nreply = \"too_many_connections\"\n\n[[rule]]\nrcpt = \"spam@*\"\nat = \"data_end\"\nreply = \"spam_rejected\"\n",
        0,
    );
    assert_eq!(
        code(&e.decide(
            Phase::Connect,
            &view("10.1.2.3:1", None, None, &[]),
            "10.1.2.3"
        )),
        Some(421)
    );
    assert_eq!(
        code(&e.decide(Phase::Connect, &view("192.0.2.1:1", None, None, &[]), "x")),
        Some(250)
    );
    let recipients = vec!["ok@y".to_owned(), "spam@y".to_owned()];
    assert_eq!(
        code(&e.decide(
            Phase::DataEnd,
            &view("192.0.2.1:1", Some("a@x"), Some("ok@y"), &recipients),
            "x"
        )),
        Some(554)
    );
}

#[test]
fn actions_and_delay() {
    let e = engine(
        "[[rule]]\nrcpt = \"slow@*\"\nat = \"data_end\"\ndelay = \"20s\"\nthen = \"disconnect\"\n",
        0,
    );
    let recipients = vec!["slow@y".to_owned()];
    let d = e.decide(
        Phase::DataEnd,
        &view("192.0.2.1:1", Some("a@x"), None, &recipients),
        "x",
    );
    assert_eq!(d.verdict, Verdict::Disconnect);
    assert_eq!(d.delay, Some(Duration::from_secs(20)));
}

#[test]
fn magic_addresses() {
    let e = engine("", 0);
    let ask = |phase, rcpt: &str| {
        let recipients = vec![rcpt.to_owned()];
        e.decide(
            phase,
            &view("192.0.2.1:1", Some("a@x"), Some(rcpt), &recipients),
            "192.0.2.1",
        )
    };
    let d = ask(Phase::Rcpt, "user_unknown@anything.example");
    assert_eq!(code(&d), Some(550));
    assert_eq!(d.catalog, Some("user_unknown"));
    let d = ask(Phase::Rcpt, "user_unknown+gmail@anything.example");
    let Verdict::Reply(reply) = &d.verdict else {
        panic!()
    };
    assert!(reply.to_string().contains("gsmtp"), "{reply}");
    let d = ask(Phase::Rcpt, "550-5.7.1@x.example");
    let Verdict::Reply(reply) = &d.verdict else {
        panic!()
    };
    assert!(reply.to_string().starts_with("550 5.7.1 "), "{reply}");
    // Failures that belong to the end of data are given there, not at RCPT.
    assert_eq!(
        code(&ask(Phase::Rcpt, "spam_rejected@x.example")),
        Some(250)
    );
    assert_eq!(
        code(&ask(Phase::DataEnd, "spam_rejected@x.example")),
        Some(554)
    );
    // lose_reply@… loses the 250 of the message, at the end of data only.
    assert_eq!(
        ask(Phase::DataEnd, "Lose_Reply@x.example").verdict,
        Verdict::LoseReply
    );
    assert_eq!(code(&ask(Phase::Rcpt, "lose_reply@x.example")), Some(250));
    // Ordinary and malformed addresses are not magic.
    assert_eq!(code(&ask(Phase::Rcpt, "someone@x.example")), Some(250));
    assert_eq!(code(&ask(Phase::Rcpt, "555-1234@x")), Some(250));
    // Asking for what the checker refuses gets a 501 that says why, not a silent 250.
    for refused in [
        "user_unknown+hotmail@x",
        "250-2.0.0@x",
        "550-4.1.1@x",
        "599-5.9.9@x",
    ] {
        assert_eq!(code(&ask(Phase::Rcpt, refused)), Some(501), "{refused}");
    }
    // Off when the scenario says so.
    let e = engine("[server]\nmagic_addresses = false\n", 0);
    let d = e.decide(
        Phase::Rcpt,
        &view("192.0.2.1:1", Some("a@x"), Some("user_unknown@x"), &[]),
        "x",
    );
    assert_eq!(d.verdict, Verdict::Continue);
}

#[test]
fn session_config_takes_server_section_and_flavor_wording() {
    let scenario = Scenario::parse(
        "t.toml",
        "[server]\nhostname = \"mx.example\"\ngreeting = \"ESMTP ready\"\nflavor = \"exim\"\nmax_message_size = 1000\nauth = \"required\"\n",
    )
    .unwrap();
    let config = scenario.session_config(&SessionConfig::default());
    assert_eq!(config.hostname, "mx.example");
    assert_eq!(config.banner, "ESMTP ready");
    assert_eq!(config.max_message_size, 1000);
    assert!(config.auth.required);
    assert_eq!(
        config.accepted.style,
        crate::smtp::queue_id::QueueIdStyle::Exim
    );
}

#[test]
fn async_magic_addresses_accept_now_and_bounce_later() {
    use crate::smtp::policy::Fate;
    let e = engine("", 0);
    let ask = |phase, rcpt: &str| e.for_rcpt(phase, rcpt);
    for rcpt in ["user_unknown+gmail+async@x", "user_unknown+ASYNC+gmail@x"] {
        let d = ask(Phase::Rcpt, rcpt);
        assert_eq!(d.verdict, Verdict::Continue, "250 now: {rcpt}");
        let later = d.later.expect("a later fate");
        assert_eq!(later.style, "gmail");
        let Fate::Bounced {
            reply,
            after,
            delay_notice,
            ..
        } = &later.fate
        else {
            panic!("{later:?}")
        };
        assert_eq!(reply.code(), 550);
        assert!(reply.to_string().contains("gsmtp"), "{reply}");
        assert_eq!((*after, *delay_notice), (Duration::from_secs(60), None));
    }
    // A 4xx is retried: a delay notice at 4 hours, the give-up at 5 days.
    let later = ask(Phase::Rcpt, "mailbox_full+async@x").later.unwrap();
    let Fate::Bounced {
        delay_notice,
        give_up,
        ..
    } = later.fate
    else {
        panic!()
    };
    assert_eq!(delay_notice, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(give_up, Duration::from_secs(5 * 86_400));
    assert!(matches!(
        ask(Phase::Rcpt, "complaint+async@x").later.unwrap().fate,
        Fate::Complaint { .. }
    ));
    assert!(matches!(
        ask(Phase::Rcpt, "ooto+exim+async@x").later.unwrap().fate,
        Fate::AutoReply { .. }
    ));
    // complaint and ooto are magic only with +async; an async failure of the end of data is
    // not given there.
    let plain = ask(Phase::Rcpt, "complaint@x");
    assert!(plain.verdict == Verdict::Continue && plain.later.is_none());
    assert!(ask(Phase::Rcpt, "spam_rejected+async@x").later.is_some());
    assert_eq!(
        code(&ask(Phase::DataEnd, "spam_rejected+async@x")),
        Some(250)
    );
    // A tag given twice asks for what no scenario could say: a 501 that says why.
    assert_eq!(
        code(&ask(Phase::Rcpt, "user_unknown+async+async@x")),
        Some(501)
    );
}

#[test]
fn a_bounce_rule_accepts_now_with_its_later_fate() {
    use crate::smtp::policy::Fate;
    let e = engine(
        "[server]\nflavor = \"exim\"\n[[rule]]\nrcpt = \"*@gone.example\"\nbounce = { reply = \"user_unknown\", after = \"10m\" }\n",
        0,
    );
    let d = e.for_rcpt(Phase::Rcpt, "x@gone.example");
    assert_eq!(d.verdict, Verdict::Continue);
    assert!(d.rule.is_some(), "the rule is named");
    let later = d.later.expect("a later fate");
    assert_eq!(later.style, "exim");
    let Fate::Bounced { reply, after, .. } = &later.fate else {
        panic!()
    };
    assert_eq!((reply.code(), *after), (550, Duration::from_secs(600)));
}

#[test]
fn a_later_bounce_may_quote_a_reply_without_a_status_but_a_reply_on_the_wire_may_not() {
    use crate::smtp::policy::Fate;
    let e = engine(
        "[[rule]]\nrcpt = \"big@x\"\nbounce = { reply = { code = 553, text = \"Exceeded maximum inbound message size\" } }\n",
        0,
    );
    let later = e
        .for_rcpt(Phase::Rcpt, "big@x")
        .later
        .expect("a later fate");
    let Fate::Bounced { reply, .. } = &later.fate else {
        panic!()
    };
    assert_eq!(reply.status(), None);
    assert_eq!(
        reply.lines().collect::<Vec<_>>(),
        ["Exceeded maximum inbound message size"]
    );
    let error = Scenario::parse(
        "t.toml",
        "[[rule]]\nrcpt = \"big@x\"\nreply = { code = 553, text = \"too big\" }\n",
    )
    .unwrap_err();
    assert!(
        error.message.contains("an inline reply needs status"),
        "{error}"
    );
}
