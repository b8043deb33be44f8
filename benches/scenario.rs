//! Scenario evaluation: the decisions of one transaction under 10,000 rules (generated here,
//! deterministically) and under the 1,000 rules of `benches/scenario_1000.toml`.
//!
//! `cargo bench --bench scenario` (about 50 s). Each scenario is compiled once; then
//! `transaction/*` opens a policy session (`Policy::open`, as a connection does) and decides
//! connect, ehlo, mail, rcpt ×3 and data, reporting transactions per second; `rcpt/*` decides
//! the first RCPT alone on an open session, reporting decisions per second. Cases:
//!
//! - `no match`: nothing matches at any phase (nor a magic address), so every rule of every
//!   phase asked must be ruled out: the worst case of a linear matcher. Under 10,000 rules the
//!   first recipient looks like the exact rules' addresses (same shape and length); under the
//!   1,000-rule file the envelope is the load test's (`load-rcpt@sink.example`, …).
//! - `exact near end`: the first recipient equals the last exact-recipient rule of the file and
//!   is refused by it; the two others match nothing.
//! - `glob`: the first recipient falls under a `*@domain` rule in the middle of the rcpt rules
//!   and is refused by it; the two others match nothing.
//!
//! The other phases and recipients match nothing, so a refusal never shortens the path: every
//! phase is asked, and DATA sees the recipients the policy accepted (as a session would). The
//! setup checks each decision (rule index or none) before measuring.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use failmail::scenario::compile::Scenario;
use failmail::scenario::live::ScenarioOptions;
use failmail::smtp::policy::{Answer, Connected, Decision, Phase, Policy, SessionView, Verdict};
use tokio::runtime::Runtime;

const SEED: u64 = 0x5CE7_A210_0001;
const RULES: usize = 10_000;

/// splitmix64: a fixed seed gives the same scenario on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `client_ip` only (connect).
    Ip,
    /// `client_ip` and `helo` (ehlo).
    IpHelo,
    /// `helo` glob, exact or regex (ehlo).
    Helo,
    /// `auth_user` globs (auth: not asked in the measured transaction).
    Auth,
    /// `mail_from` exact, glob or regex, refused at MAIL.
    Mail,
    /// `mail_from` domain glob with `sender_domain_not_found`, which acts at RCPT.
    MailAtRcpt,
    /// `rcpt` exact address.
    RcptExact,
    /// `rcpt = "*@domain"`.
    RcptDomain,
    /// `rcpt` suffix globs (`*@*.parked-N.example`, `full-N-*@*`, `quotaN?@*.example`).
    RcptSuffix,
    /// `rcpt` regex.
    RcptRegex,
    /// `rcpt` glob with a greylisting sequence.
    RcptSequence,
    /// `mail_from` and `rcpt` together.
    MailRcpt,
    /// `at = "data"` on recipients or sender.
    Data,
    /// `data_end` spam refusals with a probability (not asked in the measured transaction).
    DataEnd,
}

impl Kind {
    fn at_rcpt(self) -> bool {
        matches!(
            self,
            Kind::MailAtRcpt
                | Kind::RcptExact
                | Kind::RcptDomain
                | Kind::RcptSuffix
                | Kind::RcptRegex
                | Kind::RcptSequence
                | Kind::MailRcpt
        )
    }
}

/// How many rules of each kind: 10,000 in all, about 400 of them regexes.
const MIX: &[(Kind, usize)] = &[
    (Kind::Ip, 300),
    (Kind::IpHelo, 50),
    (Kind::Helo, 300),
    (Kind::Auth, 150),
    (Kind::Mail, 850),
    (Kind::MailAtRcpt, 200),
    (Kind::RcptExact, 5_450),
    (Kind::RcptDomain, 1_200),
    (Kind::RcptSuffix, 500),
    (Kind::RcptRegex, 200),
    (Kind::RcptSequence, 50),
    (Kind::MailRcpt, 200),
    (Kind::Data, 300),
    (Kind::DataEnd, 250),
];

const RCPT_FAILURES: &[&str] = &[
    "user_unknown",
    "mailbox_disabled",
    "mailbox_full",
    "mailbox_full_permanent",
    "mailbox_busy",
    "relay_denied",
    "user_not_local",
];

struct GeneratedRule {
    kind: Kind,
    body: String,
    /// For `RcptExact`: the address; for `RcptDomain`: the domain.
    target: Option<String>,
}

/// One rule's TOML lines (without `[[rule]]` and `name`), numbered `n` within its kind.
fn rule_body(kind: Kind, n: usize, random: &mut Random) -> GeneratedRule {
    let mut target = None;
    let body = match kind {
        Kind::Ip => match n % 3 {
            0 => format!(
                "client_ip = \"10.{}.{}.0/24\"\nreply = \"no_smtp_service\"\n",
                n / 256 % 256,
                n % 256
            ),
            1 => format!(
                "client_ip = [\"198.51.100.{}/32\", \"203.0.113.{}/32\"]\nreply = \"service_unavailable\"\n",
                n % 256,
                (n * 7) % 256
            ),
            _ => format!("client_ip = \"2001:db8:{n:x}::/48\"\nreply = \"no_smtp_service\"\n"),
        },
        Kind::IpHelo => format!(
            "client_ip = \"172.{}.{}.0/24\"\nhelo = \"*.pool-{n}.isp.example\"\nreply = \"command_unrecognized\"\n",
            16 + n % 16,
            n % 256
        ),
        Kind::Helo => match n % 6 {
            0 => format!("helo = \"unknown-host-{n}.example\"\nreply = \"syntax_error\"\n"),
            1 => format!(
                "helo = '/^(?i)[a-z]+-{n}-[0-9]+\\.dyn\\.example$/'\nreply = \"command_unrecognized\"\n"
            ),
            2 | 3 => format!("helo = \"bot{n}-*.invalid\"\nreply = \"command_unrecognized\"\n"),
            _ => format!("helo = \"*.dynamic-{n}.isp.example\"\nreply = \"not_implemented\"\n"),
        },
        Kind::Auth => format!(
            "auth_user = [\"blocked{n}@*\", \"spammer{n}-*\"]\nreply = \"{}\"\n",
            random.pick(&["account_blocked_spam", "account_locked", "account_expired"])
        ),
        Kind::Mail => match n % 6 {
            0..=2 => format!(
                "mail_from = \"noreply{n}@newsletter{}.example\"\nreply = \"sender_rejected\"\n",
                n % 97
            ),
            3 | 4 => format!("mail_from = \"*@spam-sender-{n}.example\"\nreply = \"sender_rejected\"\n"),
            _ => format!(
                "mail_from = '/^bounce\\+{n}-[0-9a-f]+@mailer[0-9]*\\.example$/'\nreply = \"sender_rejected\"\n"
            ),
        },
        Kind::MailAtRcpt => format!(
            "mail_from = \"*@spam-domain-{n}.example\"\nreply = \"sender_domain_not_found\"\n"
        ),
        Kind::RcptExact => {
            let address = format!("user{n:05}@customer{}.example", n % 211);
            let body = format!(
                "rcpt = \"{address}\"\nreply = \"{}\"\n",
                random.pick(RCPT_FAILURES)
            );
            target = Some(address);
            body
        }
        Kind::RcptDomain => {
            let domain = format!("dead-domain-{n}.example");
            let body = format!(
                "rcpt = \"*@{domain}\"\nreply = \"{}\"\n",
                random.pick(&["domain_not_found", "user_unknown", "relay_denied"])
            );
            target = Some(domain);
            body
        }
        Kind::RcptSuffix => match n % 2 {
            0 => format!("rcpt = \"*@*.parked-{n}.example\"\nreply = \"domain_not_found\"\n"),
            _ => format!(
                "rcpt = [\"full{n}-*@*\", \"quota{n}?@*.example\"]\nreply = \"{}\"\n",
                random.pick(&["mailbox_full", "mailbox_full_permanent"])
            ),
        },
        Kind::RcptRegex => format!(
            "rcpt = '/^list-[0-9]+-{n}@lists\\.example$/'\nreply = \"{}\"\n",
            random.pick(RCPT_FAILURES)
        ),
        Kind::RcptSequence => {
            format!("rcpt = \"flaky{n}@*\"\nsequence = [\"greylisted\", \"greylisted\", \"accept\"]\n")
        }
        Kind::MailRcpt => format!(
            "mail_from = \"*@partner{n}.example\"\nrcpt = \"ops{n}@*\"\nreply = \"relay_denied\"\n"
        ),
        Kind::Data => match n % 3 {
            0 => format!(
                "rcpt = \"*@slow-{n}.example\"\nat = \"data\"\ndelay = \"2s\"\nthen = \"disconnect\"\n"
            ),
            _ => format!(
                "mail_from = \"alerts{n}@*\"\nat = \"data\"\nreply = \"transaction_failed\"\n"
            ),
        },
        Kind::DataEnd => format!(
            "mail_from = \"*@bulk-{n}.example\"\nreply = \"spam_rejected\"\nprobability = 0.5\n"
        ),
    };
    GeneratedRule { kind, body, target }
}

/// A rule the measured recipient will match: its index in the file and its place among the rules
/// asked at RCPT.
struct Target {
    index: u32,
    rcpt_position: usize,
    address: String,
}

struct Generated {
    toml: String,
    rcpt_rules: usize,
    exact: Target,
    glob: Target,
}

/// The 10,000-rule scenario: the mix above, shuffled as a file grown over years would be.
fn generate() -> Generated {
    let mut random = Random(SEED);
    let mut rules = Vec::with_capacity(RULES);
    for &(kind, count) in MIX {
        for n in 0..count {
            rules.push(rule_body(kind, n, &mut random));
        }
    }
    assert_eq!(rules.len(), RULES);
    for i in (1..rules.len()).rev() {
        let j = random.below(i + 1);
        rules.swap(i, j);
    }

    let mut toml = String::with_capacity(RULES * 100);
    toml.push_str(
        "# Generated by benches/scenario.rs: 10,000 rules.\n\n[server]\nflavor = \"ovh\"\n",
    );
    for (index, rule) in rules.iter().enumerate() {
        let _ = write!(
            toml,
            "\n[[rule]]\nname = \"{:?}_{index}\"\n{}",
            rule.kind, rule.body
        );
    }

    let at_rcpt: Vec<usize> = (0..rules.len())
        .filter(|&i| rules[i].kind.at_rcpt())
        .collect();
    let target = |position: usize, address: String| Target {
        index: at_rcpt[position] as u32,
        rcpt_position: position + 1,
        address,
    };
    let exact_position = (0..at_rcpt.len())
        .rev()
        .find(|&p| rules[at_rcpt[p]].kind == Kind::RcptExact)
        .expect("exact rules");
    let glob_position = (at_rcpt.len() / 2..at_rcpt.len())
        .find(|&p| rules[at_rcpt[p]].kind == Kind::RcptDomain)
        .expect("domain globs");
    let exact_address = rules[at_rcpt[exact_position]]
        .target
        .clone()
        .expect("an address");
    let glob_domain = rules[at_rcpt[glob_position]]
        .target
        .as_deref()
        .expect("a domain");
    Generated {
        exact: target(exact_position, exact_address),
        glob: target(glob_position, format!("someone@{glob_domain}")),
        rcpt_rules: at_rcpt.len(),
        toml,
    }
}

/// The envelope of one measured transaction.
struct Case {
    name: &'static str,
    peer: SocketAddr,
    helo: String,
    mail_from: String,
    rcpts: [String; 3],
    /// The rule expected to decide each RCPT (`None`: no rule, accepted).
    rcpt_rules: [Option<u32>; 3],
}

impl Case {
    /// The recipients a session would have accepted (those no rule refused), in order.
    fn accepted(&self) -> Vec<String> {
        self.rcpts
            .iter()
            .zip(&self.rcpt_rules)
            .filter(|(_, rule)| rule.is_none())
            .map(|(rcpt, _)| rcpt.clone())
            .collect()
    }

    /// The views the session would show the policy, phase by phase.
    fn views<'a>(&'a self, accepted: &'a [String]) -> Vec<(Phase, SessionView<'a>)> {
        let base = SessionView {
            session_id: 1,
            peer: self.peer,
            tls: false,
            helo: None,
            auth_user: None,
            auth_password: None,
            mail_from: None,
            rcpt: None,
            recipients: &[],
            message: None,
        };
        let greeted = SessionView {
            helo: Some(&self.helo),
            ..base
        };
        let mail = SessionView {
            mail_from: Some(&self.mail_from),
            ..greeted
        };
        let mut views = vec![
            (Phase::Connect, base),
            (Phase::Ehlo, greeted),
            (Phase::Mail, mail),
        ];
        let mut so_far = 0;
        for (rcpt, rule) in self.rcpts.iter().zip(&self.rcpt_rules) {
            views.push((
                Phase::Rcpt,
                SessionView {
                    rcpt: Some(rcpt),
                    recipients: &accepted[..so_far],
                    ..mail
                },
            ));
            if rule.is_none() {
                so_far += 1;
            }
        }
        views.push((
            Phase::Data,
            SessionView {
                rcpt: accepted.first().map(String::as_str),
                recipients: accepted,
                ..mail
            },
        ));
        views
    }
}

fn resolve(runtime: &Runtime, answer: Answer<'_>) -> Decision {
    match answer.ready() {
        Ok(decision) => decision,
        Err(future) => runtime.block_on(future),
    }
}

/// A client that is alone from its IP.
fn connected(peer: SocketAddr) -> Connected {
    Connected {
        peer,
        connections_from_ip: 1,
    }
}

/// Decides every phase of `views` on a new policy session, as one connection does.
fn transaction(
    runtime: &Runtime,
    policy: &dyn Policy,
    peer: SocketAddr,
    views: &[(Phase, SessionView<'_>)],
) {
    let mut session = policy.open(&connected(peer));
    for (phase, view) in views {
        black_box(resolve(runtime, session.decide(*phase, view)));
    }
}

/// Checks that each phase is decided by the rule the case expects, so that the path measured is
/// the one described.
fn check(runtime: &Runtime, policy: &dyn Policy, case: &Case, views: &[(Phase, SessionView<'_>)]) {
    let mut session = policy.open(&connected(case.peer));
    let mut rcpt = 0;
    for (phase, view) in views {
        let decision = resolve(runtime, session.decide(*phase, view));
        let expected = if *phase == Phase::Rcpt {
            rcpt += 1;
            case.rcpt_rules[rcpt - 1]
        } else {
            None
        };
        assert_eq!(
            decision.rule.as_ref().map(|r| r.index),
            expected,
            "{}: {phase} of {view:?} decided by {decision:?}",
            case.name
        );
        let refused = !matches!(decision.verdict, Verdict::Continue);
        assert_eq!(
            refused,
            expected.is_some(),
            "{}: {phase}: {decision:?}",
            case.name
        );
    }
}

fn bench_cases(c: &mut Criterion, group_name: &str, scenario: Scenario, cases: &[Case]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (policy, _config) = ScenarioOptions::default().build(scenario);
    let accepted: Vec<Vec<String>> = cases.iter().map(Case::accepted).collect();
    let views: Vec<_> = cases
        .iter()
        .zip(&accepted)
        .map(|(case, accepted)| case.views(accepted))
        .collect();
    for (case, views) in cases.iter().zip(&views) {
        check(&runtime, &policy, case, views);
    }

    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    for (case, views) in cases.iter().zip(&views) {
        group.bench_with_input(
            BenchmarkId::new("transaction", case.name),
            views,
            |b, views| b.iter(|| transaction(&runtime, &policy, case.peer, views)),
        );
    }
    for (case, views) in cases.iter().zip(&views) {
        let (phase, view) = views
            .iter()
            .find(|(phase, _)| *phase == Phase::Rcpt)
            .expect("a RCPT");
        let mut session = policy.open(&connected(case.peer));
        group.bench_function(BenchmarkId::new("rcpt", case.name), |b| {
            b.iter(|| black_box(resolve(&runtime, session.decide(*phase, view))))
        });
    }
    group.finish();
}

fn address(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

fn cases(
    peer: &str,
    helo: &str,
    mail_from: &str,
    plain: [&str; 3],
    exact: (&str, u32),
    glob: (&str, u32),
) -> Vec<Case> {
    let case = |name, first: &str, rule| Case {
        name,
        peer: address(peer),
        helo: helo.to_owned(),
        mail_from: mail_from.to_owned(),
        rcpts: [first.to_owned(), plain[1].to_owned(), plain[2].to_owned()],
        rcpt_rules: [rule, None, None],
    };
    vec![
        case("no match", plain[0], None),
        case("exact near end", exact.0, Some(exact.1)),
        case("glob", glob.0, Some(glob.1)),
    ]
}

fn scenario_10000(c: &mut Criterion) {
    let generated = generate();
    let start = Instant::now();
    let scenario = Scenario::parse("scenario_10000 (generated)", &generated.toml)
        .unwrap_or_else(|e| panic!("the generated scenario does not compile: {e}"));
    eprintln!(
        "scenario_10000: {} rules ({} asked at RCPT) compiled in {:?}; exact rule #{} is {}/{} at RCPT, \
         glob rule #{} is {}/{}",
        scenario.rules.len(),
        generated.rcpt_rules,
        start.elapsed(),
        generated.exact.index,
        generated.exact.rcpt_position,
        generated.rcpt_rules,
        generated.glob.index,
        generated.glob.rcpt_position,
        generated.rcpt_rules,
    );
    let cases = cases(
        "192.0.2.10:40000",
        "mta1.shop.example",
        "orders@shop.example",
        // The unmatched first recipient has the shape and length of the exact rules' addresses
        // (`userNNNNN@customerN.example`), so that no comparison stops at a length difference.
        [
            "user09999@customer45.example",
            "bob@example.net",
            "carol@example.org",
        ],
        (&generated.exact.address, generated.exact.index),
        (&generated.glob.address, generated.glob.index),
    );
    bench_cases(c, "scenario_10000", scenario, &cases);
}

/// The 1,000-rule file of the load test: its documented load envelope matches nothing; the exact
/// and glob targets are found in the file.
fn scenario_1000(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/scenario_1000.toml");
    let text = std::fs::read_to_string(path).expect("benches/scenario_1000.toml");
    let file: toml::Value = toml::from_str(&text).expect("TOML");
    let rules = file["rule"].as_array().expect("rules");
    let rcpt_of = |index: usize| rules[index].get("rcpt").and_then(toml::Value::as_str);
    let exact = (0..rules.len())
        .rev()
        .find_map(|i| {
            rcpt_of(i)
                .filter(|r| !r.contains(['*', '?', '/']))
                .map(|r| (r, i))
        })
        .expect("an exact rcpt rule");
    let glob = (rules.len() / 2..rules.len())
        .find_map(|i| {
            rcpt_of(i)
                .and_then(|r| r.strip_prefix("*@"))
                .map(|d| (d, i))
        })
        .expect("a *@domain rcpt rule");
    let glob_address = format!("someone@{}", glob.0);
    let start = Instant::now();
    let scenario = Scenario::parse(path, &text).unwrap_or_else(|e| panic!("{e}"));
    let compiled_in = start.elapsed();
    let cases = cases(
        "127.0.0.1:40000",
        "load.example",
        "load-sender@load.example",
        [
            "load-rcpt@sink.example",
            "load-rcpt2@sink.example",
            "load-rcpt3@sink.example",
        ],
        (exact.0, exact.1 as u32),
        (&glob_address, glob.1 as u32),
    );
    eprintln!(
        "scenario_1000: {} rules compiled in {compiled_in:?}; exact rule #{} ({}), glob rule #{} (*@{})",
        scenario.rules.len(),
        exact.1,
        exact.0,
        glob.1,
        glob.0
    );
    bench_cases(c, "scenario_1000", scenario, &cases);
}

/// Loading (checking and compiling) the 10,000-rule scenario: what a reload costs. Linear in the
/// file's size since rule positions are found by binary search (it was quadratic: seconds).
fn scenario_compile(c: &mut Criterion) {
    let generated = generate();
    let mut group = c.benchmark_group("scenario_compile");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RULES as u64));
    group.bench_function("10000_rules", |b| {
        b.iter(|| Scenario::parse("scenario_10000 (generated)", &generated.toml).unwrap())
    });
    group.finish();
}

// criterion_group! makes a public function that cannot carry a doc comment.
#[allow(missing_docs)]
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = scenario_10000, scenario_1000, scenario_compile
    }
}
criterion_main!(group::benches);
