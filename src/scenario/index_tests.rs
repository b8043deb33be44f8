//! The index finds exactly the rules a full scan finds, in file order.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::super::compile::Scenario;
use super::super::engine::matches;
use crate::smtp::policy::{test_view, Phase, SessionView};

const ADDRESSES: [&str; 7] = [
    "a@x.example",
    "B@Y.example",
    "ab@xy.example",
    "user1@x.example",
    "a@x.example.org",
    "", // the null sender
    "ünï@x.example",
];
const PATTERNS: [&str; 19] = [
    "a@x.example",
    "A@X.EXAMPLE",
    "*@x.example",
    "a@*",
    "a*",
    "*",
    "*example",
    "?@x.example",
    "*@*.example",
    "/^a/",
    "/b@y/",
    "/(?i)^B@/",
    "",
    "ab*@xy.example",
    "ünï@*",
    "user1@x.example",
    "a?@*.example",
    "u*1@*",
    "*@*",
];
const HELOS: [&str; 4] = ["mail.x.example", "MAIL.X.EXAMPLE", "bot-1.invalid", "a"];
const BLOCKS: [&str; 7] = [
    "127.0.0.1",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "10.1.2.0/24",
    "::1",
    "::/0",
    "0.0.0.0/0",
];
const PEERS: [&str; 5] = [
    "127.0.0.1:25",
    "10.1.2.3:25",
    "[::1]:25",
    "[::ffff:10.0.0.1]:25",
    "192.0.2.1:25",
];
const PHASES: [&str; 7] = [
    "connect", "ehlo", "auth", "mail", "rcpt", "data", "data_end",
];

/// One generated rule: indices into the tables above (`None`: no such matcher).
#[derive(Debug, Clone)]
struct RuleSpec {
    rcpt: Option<Vec<usize>>,
    mail_from: Option<Vec<usize>>,
    auth_user: Option<Vec<usize>>,
    helo: Option<Vec<usize>>,
    client_ip: Option<Vec<usize>>,
    phase: usize,
}

fn list(len: usize) -> impl Strategy<Value = Option<Vec<usize>>> {
    proptest::option::weighted(0.4, proptest::collection::vec(0..len, 1..3))
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        list(PATTERNS.len()),
        list(PATTERNS.len()),
        list(PATTERNS.len()),
        list(PATTERNS.len()),
        list(BLOCKS.len()),
        0..PHASES.len(),
    )
        .prop_map(
            |(rcpt, mail_from, auth_user, helo, client_ip, phase)| RuleSpec {
                rcpt,
                mail_from,
                auth_user,
                helo,
                client_ip,
                phase,
            },
        )
}

fn toml_list(values: &[usize], table: &[&str]) -> String {
    let items: Vec<String> = values.iter().map(|&i| format!("'{}'", table[i])).collect();
    format!("[{}]", items.join(", "))
}

fn scenario_text(rules: &[RuleSpec]) -> String {
    let mut text = String::new();
    for rule in rules {
        // The earliest phase at which every matched value is known (the compiler insists).
        let needed = [
            (rule.client_ip.is_some(), 0),
            (rule.helo.is_some(), 1),
            (rule.auth_user.is_some(), 2),
            (rule.mail_from.is_some(), 3),
            (rule.rcpt.is_some(), 4),
        ]
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, phase)| phase)
        .max()
        .unwrap_or(0);
        text.push_str("[[rule]]\n");
        for (key, values, table) in [
            ("rcpt", &rule.rcpt, &PATTERNS[..]),
            ("mail_from", &rule.mail_from, &PATTERNS[..]),
            ("auth_user", &rule.auth_user, &PATTERNS[..]),
            ("helo", &rule.helo, &PATTERNS[..]),
            ("client_ip", &rule.client_ip, &BLOCKS[..]),
        ] {
            if let Some(values) = values {
                text.push_str(&format!("{key} = {}\n", toml_list(values, table)));
            }
        }
        text.push_str(&format!(
            "at = \"{}\"\nthen = \"accept\"\n\n",
            PHASES[rule.phase.max(needed)]
        ));
    }
    text
}

/// One generated session: indices into the tables above.
#[derive(Debug, Clone)]
struct ViewSpec {
    peer: usize,
    helo: Option<usize>,
    auth_user: Option<usize>,
    mail_from: Option<usize>,
    rcpt: Option<usize>,
    recipients: Vec<usize>,
}

fn view_spec() -> impl Strategy<Value = ViewSpec> {
    (
        0..PEERS.len(),
        proptest::option::of(0..HELOS.len()),
        proptest::option::of(0..ADDRESSES.len()),
        proptest::option::of(0..ADDRESSES.len()),
        proptest::option::of(0..ADDRESSES.len()),
        proptest::collection::vec(0..ADDRESSES.len(), 0..3),
    )
        .prop_map(
            |(peer, helo, auth_user, mail_from, rcpt, recipients)| ViewSpec {
                peer,
                helo,
                auth_user,
                mail_from,
                rcpt,
                recipients,
            },
        )
}

fn assert_same_rules(scenario: &Scenario, spec: &ViewSpec) {
    let peer: SocketAddr = PEERS[spec.peer].parse().unwrap();
    let recipients: Vec<String> = spec
        .recipients
        .iter()
        .map(|&i| ADDRESSES[i].to_owned())
        .collect();
    let view = SessionView {
        session_id: 1,
        peer,
        tls: false,
        helo: spec.helo.map(|i| HELOS[i]),
        auth_user: spec.auth_user.map(|i| ADDRESSES[i]),
        auth_password: None,
        mail_from: spec.mail_from.map(|i| ADDRESSES[i]),
        rcpt: spec.rcpt.map(|i| ADDRESSES[i]),
        recipients: &recipients,
        message: None,
    };
    for phase in Phase::ALL {
        let scanned: Vec<u32> = scenario
            .rules_at(phase)
            .filter(|rule| matches(rule, phase, &view))
            .map(|rule| rule.index)
            .collect();
        let candidates: Vec<u32> = scenario
            .candidates(phase, &view)
            .map(|rule| rule.index)
            .collect();
        assert!(
            candidates.windows(2).all(|pair| pair[0] < pair[1]),
            "candidates out of file order at {phase}: {candidates:?}"
        );
        let indexed: Vec<u32> = scenario
            .candidates(phase, &view)
            .filter(|rule| matches(rule, phase, &view))
            .map(|rule| rule.index)
            .collect();
        assert_eq!(indexed, scanned, "at {phase} for {view:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn index_finds_what_a_scan_finds(
        rules in proptest::collection::vec(rule_spec(), 0..24),
        views in proptest::collection::vec(view_spec(), 1..8),
    ) {
        let text = scenario_text(&rules);
        let scenario = Scenario::parse("generated.toml", &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        for view in &views {
            assert_same_rules(&scenario, view);
        }
    }
}

#[test]
fn exact_and_domain_rules_are_found_without_a_scan() {
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!(
            "[[rule]]\nrcpt = \"user{i}@customer.example\"\nreply = \"user_unknown\"\n\n"
        ));
    }
    text.push_str("[[rule]]\nrcpt = \"*@dead.example\"\nreply = \"user_unknown\"\n\n");
    text.push_str("[[rule]]\nrcpt = \"*@*\"\nat = \"rcpt\"\nthen = \"accept\"\n");
    let scenario = Scenario::parse("many.toml", &text).unwrap();
    let view = |rcpt| test_view("127.0.0.1:25", Some("a@x.example"), Some(rcpt), &[]);
    let found = |rcpt| -> Vec<u32> {
        scenario
            .candidates(Phase::Rcpt, &view(rcpt))
            .map(|rule| rule.index)
            .collect()
    };
    // The exact hit, then the unindexable catch-all.
    assert_eq!(found("USER999@customer.example"), vec![999, 1001]);
    assert_eq!(found("someone@dead.example"), vec![1000, 1001]);
    assert_eq!(found("nobody@elsewhere.example"), vec![1001]);
}

#[test]
fn client_ip_rules_are_found_by_block() {
    let text = "[[rule]]\nclient_ip = \"192.0.2.0/24\"\nreply = \"no_smtp_service\"\n\n\
                [[rule]]\nclient_ip = [\"198.51.100.7\", \"2001:db8::/32\"]\nreply = \"no_smtp_service\"\n";
    let scenario = Scenario::parse("ip.toml", text).unwrap();
    let found = |peer: &str| -> Vec<u32> {
        let view = test_view(peer, None, None, &[]);
        scenario
            .candidates(Phase::Connect, &view)
            .map(|rule| rule.index)
            .collect()
    };
    assert_eq!(found("192.0.2.77:25"), vec![0]);
    assert_eq!(found("[::ffff:192.0.2.77]:25"), vec![0]);
    assert_eq!(found("198.51.100.7:25"), vec![1]);
    assert_eq!(found("[2001:db8:5::1]:25"), vec![1]);
    assert_eq!(found("203.0.113.1:25"), Vec::<u32>::new());
}

#[test]
fn regexes_too_big_for_one_set_are_split_and_still_found() {
    use super::{RuleIndex, REGEX_SET_SIZE_LIMIT};
    // Twelve rules of regexes; the last has two, so it would be filed twice if it fits no set.
    let mut text = String::new();
    for i in 0..11 {
        text.push_str(&format!(
            "[[rule]]\nrcpt = \"/^u{i}[a-z]{{2,40}}@(x|y)\\\\.example$/\"\nreply = \"user_unknown\"\n\n"
        ));
    }
    text.push_str("[[rule]]\nrcpt = [\"/^b@y/\", \"/(?i)^B@Y/\"]\nreply = \"user_unknown\"\n");
    let scenario = Scenario::parse("regexes.toml", &text).unwrap();
    let views = [
        "u3abc@x.example",
        "b@y.example",
        "B@Y.example",
        "u10zz@y.example",
        "no@z",
    ];
    let mut set_counts = Vec::new();
    for limit in [1, 4_000, 16_000, 64_000, REGEX_SET_SIZE_LIMIT] {
        let index = RuleIndex::build_with(&scenario.rules, limit);
        let rcpt = &index.phases[Phase::Rcpt as usize];
        set_counts.push(rcpt.text[0].regexes.len());
        assert!(
            rcpt.always.windows(2).all(|pair| pair[0] < pair[1]),
            "limit {limit}: always-candidates repeat: {:?}",
            rcpt.always
        );
        for rcpt_value in views {
            let view = test_view("127.0.0.1:25", Some("a@x.example"), Some(rcpt_value), &[]);
            let scanned: Vec<u32> = scenario
                .rules_at(Phase::Rcpt)
                .filter(|rule| matches(rule, Phase::Rcpt, &view))
                .map(|rule| rule.index)
                .collect();
            let candidates: Vec<u32> = index.candidates(Phase::Rcpt, &view).collect();
            assert!(
                candidates.windows(2).all(|pair| pair[0] < pair[1]),
                "limit {limit}: candidates out of order or repeated: {candidates:?}"
            );
            let indexed: Vec<u32> = candidates
                .into_iter()
                .filter(|&i| matches(&scenario.rules[i as usize], Phase::Rcpt, &view))
                .collect();
            assert_eq!(indexed, scanned, "limit {limit}, rcpt {rcpt_value}");
        }
    }
    // No set fits a limit of one byte: every rule is always a candidate, each once.
    assert_eq!(set_counts[0], 0);
    // The full limit takes every regex in one set; some limit between makes several.
    assert_eq!(*set_counts.last().unwrap(), 1);
    assert!(
        set_counts.iter().any(|&count| count > 1),
        "no limit split the set: {set_counts:?}"
    );
}

#[test]
fn many_recipients_hitting_the_same_rule_hold_it_once() {
    let text = "[[rule]]\nrcpt = \"*@x.example\"\nat = \"data\"\nreply = \"user_unknown\"\n";
    let scenario = Scenario::parse("many.toml", text).unwrap();
    let recipients: Vec<String> = (0..1000).map(|i| format!("r{i}@x.example")).collect();
    let view = test_view("127.0.0.1:25", Some("a@x.example"), None, &recipients);
    let found: Vec<u32> = scenario
        .candidates(Phase::Data, &view)
        .map(|rule| rule.index)
        .collect();
    assert_eq!(found, vec![0]);
    // The hits never held the rule once per recipient.
    let index = super::RuleIndex::build(&scenario.rules);
    let hits = index.hits(Phase::Data, &view);
    assert!(
        hits.capacity() <= 4 * super::HITS_BEFORE_DEDUP,
        "{}",
        hits.capacity()
    );
}
