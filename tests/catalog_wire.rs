//! Every reply of the catalog, on the wire.
//!
//! The expectations come from `src/scenario/catalog.toml` itself, parsed here with `toml`, not from
//! the renderer: for every entry and every flavor, a server runs a one-rule
//! scenario acting at the entry's phase, a raw TCP client drives a real SMTP conversation to that
//! phase, and the whole (multi-line) reply must be exactly `CODE-STATUS text` ... `CODE STATUS text`
//! with the flavor's own lines (or the generic ones where the flavor has none) and every
//! placeholder filled in. A 421 must be followed by the end of the stream; any other failure leaves
//! the session usable (QUIT gets 221). Then: a real client (lettre) sees Gmail's four-line
//! user_unknown in its error, and the magic addresses work over the wire (and not with no_magic).

mod common;

use std::collections::BTreeMap;

use common::IO_TIMEOUT;
use common::{PlainConn, Reply};
use failmail::app::ScenarioConfig;
use failmail::{AppConfig, RunningApp};
use regex::Regex;
use serde::Deserialize;

/// The catalog data, read by the test itself.
const CATALOG_TOML: &str = include_str!("../src/scenario/catalog.toml");

/// Every flavor, in the catalog's order.
const FLAVORS: [&str; 14] = [
    "generic", "ovh", "gmail", "outlook", "yahoo", "postfix", "exim", "exchange", "icloud", "zoho",
    "gmx", "orange", "yandex", "mailru",
];

/// The phases, in session order.
const PHASES: [&str; 7] = [
    "connect", "ehlo", "auth", "mail", "rcpt", "data", "data_end",
];

/// What the client says, and so what every placeholder must become.
const HOST: &str = "mx.wire.test";
const HELO: &str = "client.example";
const SENDER: &str = "alice@client.example";
const RCPT: &str = "bob@dest.example";
const SENDER_DOMAIN: &str = "client.example";
const IP: &str = "127.0.0.1";

// ------------------------------------------------------------------------------------------------
// The catalog, as data

#[derive(Debug, Deserialize)]
struct CatalogFile {
    entry: Vec<EntryFile>,
}

#[derive(Debug, Deserialize)]
struct EntryFile {
    name: String,
    phase: String,
    flavor: BTreeMap<String, VariantFile>,
}

#[derive(Debug, Clone, Deserialize)]
struct VariantFile {
    code: u16,
    status: String,
    text: Vec<String>,
}

fn catalog() -> Vec<EntryFile> {
    let file: CatalogFile = toml::from_str(CATALOG_TOML).expect("catalog.toml parses");
    assert!(!file.entry.is_empty(), "the catalog has entries");
    file.entry
}

fn entry<'a>(entries: &'a [EntryFile], name: &str) -> &'a EntryFile {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("catalog.toml has no entry {name:?}"))
}

impl EntryFile {
    /// The variant a flavor gets: its own, else the generic one; with the flavor actually used.
    fn variant<'a>(&'a self, flavor: &'a str) -> (&'a VariantFile, &'a str) {
        match self.flavor.get(flavor) {
            Some(variant) => (variant, flavor),
            None => (
                self.flavor
                    .get("generic")
                    .unwrap_or_else(|| panic!("{} has no generic variant", self.name)),
                "generic",
            ),
        }
    }
}

/// The `{id}` a flavor renders: Outlook's and Exchange's are `<ISO-8601 UTC time> <16 upper-case
/// hex>` (as the catalog documents); the others are one token.
fn id_pattern(used_flavor: &str) -> &'static str {
    if matches!(used_flavor, "outlook" | "exchange") {
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z [0-9A-F]{16}"
    } else {
        r"[^ \[\]]+"
    }
}

/// One regex per expected wire line: every line `CODE-STATUS text` but the last `CODE STATUS text`,
/// with the placeholders filled in literally and `{id}` as a wildcard.
fn expected_lines(variant: &VariantFile, used_flavor: &str) -> Vec<Regex> {
    expected_lines_to(variant, used_flavor, RCPT)
}

/// [`expected_lines`] for a recipient other than [`RCPT`].
fn expected_lines_to(variant: &VariantFile, used_flavor: &str, rcpt: &str) -> Vec<Regex> {
    const ID_MARK: char = '\u{1}';
    let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
    let count = variant.text.len().max(1);
    (0..count)
        .map(|index| {
            let text = variant.text.get(index).map(String::as_str).unwrap_or("");
            let filled = text
                .replace("{rcpt}", rcpt)
                .replace("{sender}", SENDER)
                .replace("{ip}", IP)
                .replace("{host}", HOST)
                .replace("{domain}", domain)
                .replace("{sender_domain}", SENDER_DOMAIN)
                .replace("{helo}", HELO)
                .replace("{id}", &ID_MARK.to_string());
            let separator = if index + 1 == count { ' ' } else { '-' };
            let mut line = format!("{}{}{}", variant.code, separator, variant.status);
            if !filled.is_empty() {
                line.push(' ');
                line.push_str(&filled);
            }
            // Trailing spaces are not sent (the line would end in invisible whitespace).
            let line = line.trim_end_matches(' ');
            let pattern: Vec<String> = line.split(ID_MARK).map(regex::escape).collect();
            Regex::new(&format!("^{}$", pattern.join(id_pattern(used_flavor))))
                .expect("expected-line regex compiles")
        })
        .collect()
}

/// Checks a reply against the expected lines; describes the first difference.
fn compare(got: &[String], expected: &[Regex]) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!(
            "{} lines instead of {}:\n  got      {got:#?}\n  expected {:#?}",
            got.len(),
            expected.len(),
            expected.iter().map(Regex::as_str).collect::<Vec<_>>()
        ));
    }
    for (line, pattern) in got.iter().zip(expected) {
        if !pattern.is_match(line) {
            return Err(format!(
                "line differs:\n  got      {line:?}\n  expected /{}/",
                pattern.as_str()
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Servers and the conversation

/// The built-in scenario, seed 7, with or without magic addresses.
fn config(no_magic: bool) -> AppConfig {
    common::scenario_with(|c| {
        c.scenario = Some(ScenarioConfig {
            seed: 7,
            no_magic,
            ..ScenarioConfig::default()
        })
    })
}

async fn start_toml(text: &str) -> RunningApp {
    common::start_toml(config(false), "inline.toml", text).await
}

const BODY: &str = "From: alice@client.example\r\nSubject: catalog\r\n\r\nhello\r\n.\r\n";

/// Drives a conversation up to `phase` and returns the reply given there. Every earlier step must
/// succeed (the scenario has one rule, at `phase`).
async fn reply_at(client: &mut PlainConn, phase: &str) -> Reply {
    // Each step: the phase it reaches, what the client sends for it, and the code the reply
    // before it must have. AUTH is a step of its own only when it is the phase under test.
    let steps = [
        ("ehlo", format!("EHLO {HELO}\r\n"), 220),
        ("mail", format!("MAIL FROM:<{SENDER}>\r\n"), 250),
        ("rcpt", format!("RCPT TO:<{RCPT}>\r\n"), 250),
        ("data", "DATA\r\n".to_owned(), 250),
        ("data_end", BODY.to_owned(), 354),
    ];
    let mut reply = client.reply().await;
    let mut reached = "connect";
    for (step, sent, before) in steps {
        if reached == phase {
            return reply;
        }
        assert_eq!(reply.code, before, "{reached}: {:?}", reply.wire);
        if reached == "ehlo" && phase == "auth" {
            return client.auth_plain("alice", "s3cret").await;
        }
        client.send(sent).await;
        reply = client.reply().await;
        reached = step;
    }
    assert_eq!(phase, "data_end", "unknown phase");
    reply
}

/// One entry in one flavor: a server with the one rule, the conversation, the exact reply, and
/// what follows it (the end of the stream after 421, else a working session).
async fn run_case(name: String, phase: String, flavor: String, expected: Vec<Regex>, code: u16) {
    let server = start_toml(&format!(
        "[server]\nhostname = \"{HOST}\"\n\n[[rule]]\nat = \"{phase}\"\nreply = \"{name}\"\nflavor = \"{flavor}\"\n"
    ))
    .await;
    let mut client = PlainConn::connect(server.addresses().smtp).await;
    let reply = reply_at(&mut client, &phase).await;
    if let Err(difference) = compare(&reply.wire, &expected) {
        panic!("{name} ({flavor}) at {phase}: {difference}");
    }
    assert_eq!(reply.code, code);
    // RFC 5321 §3.8: the server closes the channel after a 421.
    client.finish(&reply).await;
    drop(client);
    server.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// The catalog on the wire

/// The data itself is usable for the test: known phases and flavors, a generic variant everywhere,
/// and no placeholder that is not known yet at the entry's phase (it would render empty).
#[test]
fn catalog_data_is_consistent_with_the_phases() {
    for entry in catalog() {
        let phase = PHASES
            .iter()
            .position(|p| *p == entry.phase)
            .unwrap_or_else(|| panic!("{}: unknown phase {:?}", entry.name, entry.phase));
        assert!(entry.flavor.contains_key("generic"), "{}", entry.name);
        for (flavor, variant) in &entry.flavor {
            assert!(
                FLAVORS.contains(&flavor.as_str()),
                "{}: unknown flavor {flavor}",
                entry.name
            );
            let text = variant.text.join("\n");
            let known_from = [
                ("{helo}", 1),
                ("{sender}", 3),
                ("{rcpt}", 4),
                ("{domain}", 4),
            ];
            for (placeholder, from) in known_from {
                assert!(
                    !text.contains(placeholder) || phase >= from,
                    "{} ({flavor}) uses {placeholder} at {}, before it is known",
                    entry.name,
                    entry.phase
                );
            }
        }
    }
}

/// Every entry × every flavor, each on its own server: the exact reply lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_catalog_entry_in_every_flavor_on_the_wire() {
    let entries = catalog();
    let mut failures = Vec::new();
    let (mut own, mut fallback, mut closing) = (0, 0, 0);
    for entry in &entries {
        for flavor in FLAVORS {
            let (variant, used) = entry.variant(flavor);
            if used == flavor {
                own += 1;
            } else {
                fallback += 1;
            }
            if variant.code == 421 {
                closing += 1;
            }
            let case = format!("{} ({flavor}) at {}", entry.name, entry.phase);
            // Each case in its own task, so that one failure names itself and the rest still run.
            let task = tokio::spawn(run_case(
                entry.name.clone(),
                entry.phase.clone(),
                flavor.to_owned(),
                expected_lines(variant, used),
                variant.code,
            ));
            if let Err(error) = task.await {
                let message = match error.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default(),
                    Err(error) => error.to_string(),
                };
                failures.push(format!("{case}: {message}"));
            }
        }
    }
    let own_in_data: usize = entries.iter().map(|e| e.flavor.len()).sum();
    assert_eq!(own, own_in_data, "every variant in the data was tested");
    assert!(fallback > 0, "some flavor falls back to generic");
    assert!(closing > 0, "some reply is a 421");
    eprintln!(
        "{} entries × {} flavors = {} conversations: {own} own variants, {fallback} generic \
         fallbacks, {closing} ending in 421",
        entries.len(),
        FLAVORS.len(),
        own + fallback
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        own + fallback,
        failures.join("\n")
    );
}

/// A real client: lettre's error for Gmail's four-line user_unknown holds every line's text.
#[tokio::test]
async fn lettre_sees_every_line_of_gmails_user_unknown() {
    use lettre::address::Envelope;
    use lettre::transport::smtp::client::Tls;
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let entries = catalog();
    let gmail = entry(&entries, "user_unknown")
        .flavor
        .get("gmail")
        .expect("user_unknown has a gmail variant")
        .clone();
    assert!(gmail.text.len() > 1, "the gmail variant is multi-line");
    let server = start_toml(
        "[[rule]]\nrcpt = \"*@dest.example\"\nreply = \"user_unknown\"\nflavor = \"gmail\"\n",
    )
    .await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.addresses().smtp.port())
        .hello_name(ClientId::Domain(HELO.to_owned()))
        .timeout(Some(IO_TIMEOUT))
        .tls(Tls::None)
        .build();
    let envelope = Envelope::new(Some(SENDER.parse().unwrap()), vec![RCPT.parse().unwrap()])
        .expect("envelope");
    let error = mailer
        .send_raw(&envelope, BODY.trim_end_matches(".\r\n").as_bytes())
        .await
        .expect_err("the recipient is refused");
    assert!(error.is_permanent(), "550 is permanent: {error}");
    assert_eq!(
        error.status().map(|c| c.to_string()),
        Some(gmail.code.to_string())
    );
    let message = error.to_string();
    assert!(message.contains(&gmail.status), "{message}");
    for line in &gmail.text {
        // lettre joins the lines with single spaces and trims each continuation line.
        for part in line.trim().split("{id}") {
            let part = part.trim();
            assert!(
                message.contains(part),
                "lettre's error lacks {part:?}:\n{message}"
            );
        }
    }
    server.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Magic addresses

/// `user_unknown@…`, `user_unknown+gmail@…`, `550-5.7.1@…` at RCPT; `spam_rejected@…` accepted at
/// RCPT and refused at the end of data (the built-in scenario: no file, magic addresses on).
#[tokio::test]
async fn magic_addresses_over_the_wire() {
    let entries = catalog();
    let server = common::start(config(false)).await;
    let mut client = PlainConn::ready(server.addresses().smtp).await;
    client.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;

    // The server's flavor (generic) wording.
    let generic = entry(&entries, "user_unknown").variant("generic").0.clone();
    let reply = client
        .command("RCPT TO:<user_unknown@anything.example>")
        .await;
    compare(&reply.wire, &expected_lines(&generic, "generic")).unwrap();

    // The flavor named in the address; {rcpt} is the whole address.
    let gmail = entry(&entries, "user_unknown").variant("gmail").0.clone();
    let reply = client
        .command("RCPT TO:<user_unknown+gmail@x.example>")
        .await;
    assert_eq!(reply.wire.len(), gmail.text.len(), "{reply:#?}");
    compare(&reply.wire, &expected_lines(&gmail, "gmail")).unwrap();

    // Case does not matter; an unknown flavor is refused (see below), not let through.
    let reply = client.command("RCPT TO:<User_Unknown@x.example>").await;
    compare(&reply.wire, &expected_lines(&generic, "generic")).unwrap();
    client
        .cmd(
            "RCPT TO:<user_unknown+nosuchflavor@x.example>",
            501,
            "5.1.3",
        )
        .await;

    // A code address: that code and status, one line, in the catalog's generic wording for that
    // code and status where it has one.
    let reply = client.command("RCPT TO:<550-5.7.1@x.example>").await;
    assert_eq!(reply.wire.len(), 1, "{reply:?}");
    let text = reply.wire[0]
        .strip_prefix("550 5.7.1 ")
        .unwrap_or_else(|| panic!("{reply:?} is not 550 5.7.1"));
    let candidates: Vec<String> = entries
        .iter()
        .map(|e| e.variant("generic").0)
        .filter(|v| v.code == 550 && v.status == "5.7.1")
        .map(|v| v.text.join(" "))
        .collect();
    assert!(
        candidates.iter().any(|c| c == text) || candidates.is_empty(),
        "{text:?} is none of the generic 550 5.7.1 texts {candidates:?}"
    );
    client.cmd_code("RSET", 250).await;

    // A failure that belongs to the end of data: accepted at RCPT, refused after the body.
    client.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;
    client
        .cmd_code("RCPT TO:<spam_rejected@x.example>", 250)
        .await;
    let reply = client.data(BODY.as_bytes()).await;
    let spam = entry(&entries, "spam_rejected")
        .variant("generic")
        .0
        .clone();
    compare(&reply.wire, &expected_lines(&spam, "generic")).unwrap();
    assert!(server.messages().list().is_empty(), "nothing was stored");
    client.quit_221().await;
    server.shutdown().await;
}

/// With `no_magic` every magic address is an ordinary one: accepted, and the message stored.
#[tokio::test]
async fn no_magic_accepts_every_magic_address() {
    let server = common::start(config(true)).await;
    let mut client = PlainConn::ready(server.addresses().smtp).await;
    client.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;
    for rcpt in [
        "user_unknown@anything.example",
        "user_unknown+gmail@x.example",
        "550-5.7.1@x.example",
        "spam_rejected@x.example",
    ] {
        client.cmd_code(&format!("RCPT TO:<{rcpt}>"), 250).await;
    }
    assert_eq!(client.data(BODY.as_bytes()).await.code, 250);
    assert_eq!(server.messages().list().len(), 1, "the message was stored");
    client.quit_221().await;
    server.shutdown().await;
}

/// A recipient that asks for a failure the scenario checker would refuse gets `501 5.1.3` with
/// the reason, on the wire: a misspelt flavor names the closest one (it used to turn the failure
/// off: 250), a code that is no failure at RCPT (`599 5.9.9` used to be sent as asked) or whose
/// status class disagrees (`550-4.2.0` used to be accepted) says what the checker says.
#[tokio::test]
async fn magic_addresses_the_checker_refuses_say_why() {
    let server = common::start(config(false)).await;
    let mut client = PlainConn::ready(server.addresses().smtp).await;
    client.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;
    let cases = [
        (
            "user_unknown+gmial@x",
            "501 5.1.3 <user_unknown+gmial@x>: unknown flavor \"gmial\" in a magic address; \
             did you mean \"gmail\"?",
        ),
        (
            "599-5.9.9@x",
            "501 5.1.3 <599-5.9.9@x>: reply code 599 does not fit RCPT: a failure at rcpt must \
             be one of 420, 421, 432, 449, 450, 451, 452, 455, 500, 501, 502, 503, 530, 550, \
             551, 552, 553, 554, 555 (as in a scenario file)",
        ),
        (
            "550-4.2.0@x",
            "501 5.1.3 <550-4.2.0@x>: reply code 550 and enhanced status 4.2.0 disagree: the \
             class must be 5 (as in a scenario file)",
        ),
    ];
    for (rcpt, expected) in cases {
        let reply = client.command(&format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(reply.wire, [expected], "{rcpt}");
    }
    // Nothing was accepted: DATA has no recipient.
    client.cmd_code("DATA", 554).await;
    client.quit_221().await;
    server.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Each provider's voice by recipient domain

/// The reply to `RCPT TO:<rcpt>` must be `flavor`'s `user_unknown`, exactly.
async fn assert_user_unknown_in(client: &mut PlainConn, rcpt: &str, flavor: &str) {
    let entries = catalog();
    let (variant, used) = entry(&entries, "user_unknown").variant(flavor);
    assert_eq!(used, flavor, "user_unknown has a {flavor} variant");
    let reply = client.command(&format!("RCPT TO:<{rcpt}>")).await;
    let expected = expected_lines_to(variant, used, rcpt);
    if let Err(difference) = compare(&reply.wire, &expected) {
        panic!("{rcpt} should answer as {flavor}: {difference}");
    }
}

/// One transaction that asks for every `(recipient, flavor)`: each gets `flavor`'s
/// `user_unknown`.
async fn assert_voices(server: &RunningApp, cases: &[(&str, &str)]) {
    let mut client = PlainConn::ready(server.addresses().smtp).await;
    client.cmd_code(&format!("MAIL FROM:<{SENDER}>"), 250).await;
    for (rcpt, flavor) in cases {
        assert_user_unknown_in(&mut client, rcpt, flavor).await;
    }
    client.quit_221().await;
}

/// With no scenario at all, `user_unknown@gmail.com`, `@outlook.com` and `@yahoo.com` (and the
/// other providers' domains) answer in their provider's wording; elsewhere the server's.
#[tokio::test]
async fn provider_domains_answer_in_their_voice_with_no_scenario() {
    let mut no_scenario = config(false);
    no_scenario.session.hostname = HOST.to_owned();
    let server = common::start(no_scenario).await;
    assert_voices(
        &server,
        &[
            ("user_unknown@gmail.com", "gmail"),
            ("user_unknown@outlook.com", "outlook"),
            ("user_unknown@yahoo.com", "yahoo"),
            ("User_Unknown@Hotmail.co.uk", "outlook"),
            ("user_unknown@aol.com", "yahoo"),
            ("user_unknown@contoso.onmicrosoft.com", "exchange"),
            ("user_unknown@icloud.com", "icloud"),
            ("user_unknown@zohomail.eu", "zoho"),
            ("user_unknown@orange.fr", "orange"),
            ("user_unknown@yandex.ru", "yandex"),
            ("user_unknown@mail.ru", "mailru"),
            ("user_unknown@ovh.net", "ovh"),
            ("user_unknown@dest.example", "generic"),
            // A flavor named in the address wins over the domain's.
            ("user_unknown+postfix@gmail.com", "postfix"),
        ],
    )
    .await;
    server.shutdown().await;
}

/// `[server] flavor_by_domain` extends the table and wins over it, for magic addresses and for
/// rules that name no flavor; a rule's own flavor wins over both.
#[tokio::test]
async fn flavor_by_domain_extends_and_overrides_the_table() {
    let server = start_toml(
        "[server]\nhostname = \"mx.wire.test\"\nflavor_by_domain = { \"gmail.com\" = \"postfix\", \"corp.example\" = \"exchange\" }\n\n\
         [[rule]]\nrcpt = \"lost@*\"\nreply = \"user_unknown\"\n\n\
         [[rule]]\nrcpt = \"pinned@*\"\nreply = \"user_unknown\"\nflavor = \"gmail\"\n",
    )
    .await;
    assert_voices(
        &server,
        &[
            ("user_unknown@gmail.com", "postfix"),
            ("user_unknown@corp.example", "exchange"),
            ("user_unknown@googlemail.com", "gmail"),
            ("lost@gmail.com", "postfix"),
            ("lost@corp.example", "exchange"),
            ("lost@yahoo.com", "yahoo"),
            ("lost@dest.example", "generic"),
            ("pinned@yahoo.com", "gmail"),
        ],
    )
    .await;
    server.shutdown().await;
}

/// `flavor_by_domain_builtin = false`: the scenario's table replaces the built-in one, for magic
/// addresses and rules alike; without a table of its own, no domain has a voice; `failmail
/// catalog --domains --scenario` lists the scenario's rows alone.
#[tokio::test]
async fn flavor_by_domain_can_replace_the_table() {
    let replaced = "[server]\nhostname = \"mx.wire.test\"\nflavor_by_domain_builtin = false\nflavor_by_domain = { \"corp.example\" = \"exchange\" }\n\n\
         [[rule]]\nrcpt = \"lost@*\"\nreply = \"user_unknown\"\n";
    let server = start_toml(replaced).await;
    assert_voices(
        &server,
        &[
            ("user_unknown@corp.example", "exchange"),
            ("user_unknown@gmail.com", "generic"),
            ("lost@outlook.com", "generic"),
            ("lost@corp.example", "exchange"),
            ("user_unknown+gmail@yahoo.com", "gmail"),
        ],
    )
    .await;
    server.shutdown().await;
    let server =
        start_toml("[server]\nhostname = \"mx.wire.test\"\nflavor_by_domain_builtin = false\n")
            .await;
    assert_voices(
        &server,
        &[
            ("user_unknown@gmail.com", "generic"),
            ("user_unknown@yahoo.com", "generic"),
        ],
    )
    .await;
    server.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replaced.toml");
    std::fs::write(&file, replaced).unwrap();
    let output = common::binary::binary_command(
        &[],
        &[
            "catalog",
            "--domains",
            "--format",
            "json",
            "--scenario",
            file.to_str().unwrap(),
        ],
    )
    .output()
    .expect("failmail runs");
    assert!(output.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        rows,
        serde_json::json!([{"domain": "corp.example", "flavor": "exchange", "origin": "scenario"}])
    );
}

/// `failmail catalog --domains` lists the table, the scenario's entries first; a bad flavor in
/// `flavor_by_domain` is refused with the file's position.
#[test]
fn catalog_domains_lists_the_table() {
    let run = |args: &[&str]| {
        let output = common::binary::binary_command(&[], args)
            .output()
            .expect("failmail runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, table, _) = run(&["catalog", "--domains"]);
    assert!(ok);
    for row in [
        "gmail.com",
        "hotmail.*",
        "*.onmicrosoft.com",
        "yandex.*",
        "orange.fr",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(row)),
            "{row} in\n{table}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corp.toml");
    std::fs::write(
        &file,
        "[server]\nflavor_by_domain = { \"corp.example\" = \"exchange\" }\n",
    )
    .unwrap();
    let (ok, json, _) = run(&[
        "catalog",
        "--domains",
        "--format",
        "json",
        "--scenario",
        file.to_str().unwrap(),
    ]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["domain"], "corp.example");
    assert_eq!(rows[0]["flavor"], "exchange");
    assert_eq!(rows[0]["origin"], "scenario");
    std::fs::write(
        &file,
        "[server]\nflavor_by_domain = { \"corp.example\" = \"lotus\" }\n",
    )
    .unwrap();
    let (ok, _, error) = run(&["catalog", "--domains", "--scenario", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        error.contains("corp.toml:2:") && error.contains("lotus"),
        "{error}"
    );
}
