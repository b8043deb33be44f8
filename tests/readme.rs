//! The README is checked against the code, so it cannot drift: every key the scenario loader
//! accepts and every flag `failmail serve` takes is documented; and every command and example is
//! run and its output compared with what the README shows: the swaks transcript and the TLS
//! example, each row of the magic-address table on the wire, the curl examples against a running
//! server, and the CI step with its pytest example, for several seeds; the files it names exist,
//! and it promises no binary that is not published. (The retry section is run by
//! tests/readme_retry.rs.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::binary::{run_tool, start_binary};
use common::readme::{blocks, ci_workdir, github_env_vars, readme, run_step, section};
use common::tools::{self, need};
use common::{repo_root, PlainConn};
use failmail::scenario::compile::Scenario;
use failmail::server::tls::CertificateSource;
use failmail::AppConfig;

/// The keys the loader accepts in a section, read from its "unknown field" error.
fn accepted_keys(section_source: &str) -> Vec<String> {
    let error =
        Scenario::parse("probe.toml", section_source).expect_err("the probe key is unknown");
    let message = error.message;
    let list = message
        .split("expected one of")
        .nth(1)
        .or_else(|| message.split("expected").nth(1))
        .unwrap_or_else(|| panic!("unexpected error shape: {message}"));
    list.split(',')
        .map(|k| k.trim().trim_matches('`').trim_matches('.').to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

/// The README table that follows the line starting with `heading`.
fn table_after<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start..];
    let table_start = rest.find("\n|").expect("a table follows");
    let table = &rest[table_start + 1..];
    let end = table.find("\n\n").unwrap_or(table.len());
    &table[..end]
}

#[test]
fn every_scenario_key_is_in_the_reference() {
    let readme = readme();
    let sections = [
        ("[server]\nzz_probe = 1\n", "`[server]`"),
        ("[limits]\nzz_probe = 1\n", "`[limits]`"),
        ("[greylisting]\nzz_probe = 1\n", "`[greylisting]`"),
        ("[[rule]]\nzz_probe = 1\n", "`[[rule]]`"),
    ];
    for (probe, heading) in sections {
        let keys = accepted_keys(probe);
        assert!(keys.len() >= 3, "{heading}: {keys:?}");
        let table = table_after(&readme, heading);
        for key in keys {
            assert!(
                table.contains(&format!("| `{key}` |")),
                "README's {heading} table does not document `{key}`"
            );
        }
    }
    let top = accepted_keys("zz_probe = 1\n");
    for section in ["server", "limits", "greylisting", "rule"] {
        assert!(top.contains(&section.to_owned()), "{top:?}");
    }
}

#[test]
fn every_serve_flag_is_in_the_readme() {
    let readme = readme();
    let table = table_after(&readme, "`failmail serve` (the default) takes:");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failmail"))
        .args(["serve", "--help"])
        .output()
        .expect("run failmail serve --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '.']))
        .filter(|w| *w != "--help" && *w != "--version")
        .collect();
    assert!(flags.len() > 10, "{flags:?}");
    for flag in flags {
        assert!(
            table.contains(&format!("`{flag}")),
            "README's flag table does not document {flag}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Every command and example of the README, run and compared with what it says.

/// Whether `line` matches `pattern`, where `…` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Checks `actual` against a README transcript: each line must come next, in order, except
/// that a `...` line stands for any number of lines, and `…` in a line for any text.
fn assert_transcript(expected: &str, actual: &str) {
    let actual: Vec<&str> = actual.lines().collect();
    let mut at = 0;
    let mut skipping = false;
    for pattern in expected.lines() {
        if pattern == "..." {
            skipping = true;
            continue;
        }
        let found = if skipping {
            actual[at..]
                .iter()
                .position(|l| line_matches(pattern, l))
                .map(|i| at + i)
        } else {
            (at < actual.len() && line_matches(pattern, actual[at])).then_some(at)
        };
        let Some(index) = found else {
            panic!(
                "README line {pattern:?} is not what comes next (after line {at}):\n{}",
                actual.join("\n")
            );
        };
        at = index + 1;
        skipping = false;
    }
    assert!(
        skipping || at == actual.len(),
        "more output than the README shows:\n{}",
        actual[at..].join("\n")
    );
}

/// The words of a README shell command (no quoting in these), `\` continuations joined, the
/// README's addresses replaced by the server's.
fn words(command: &str, smtp: std::net::SocketAddr) -> Vec<String> {
    command
        .replace("\\\n", " ")
        .split_whitespace()
        .map(|w| w.replace("127.0.0.1:1025", &smtp.to_string()))
        .collect()
}

async fn run(words: &[String]) -> std::process::Output {
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]).current_dir(repo_root());
    run_tool(command, &words.join(" "), Duration::from_secs(60)).await
}

/// "A first session with swaks": the README's command against `failmail serve` on its defaults
/// prints the README's transcript (the 250 after the message is the default flavor's).
#[tokio::test]
async fn the_first_swaks_session_is_the_readme_transcript() {
    let Some(_) = need(&tools::SWAKS) else {
        return;
    };
    let readme = readme();
    let console = &blocks(section(&readme, "## A first session with swaks"), "console")[0];
    let (command, transcript) = console.split_once('\n').unwrap();
    let command = command.strip_prefix("$ ").expect("a $ command line");
    let binary = start_binary(&["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    let smtp = binary.address("smtp");
    let output = run(&words(command, smtp)).await;
    assert!(output.status.success(), "{output:?}");
    let shown =
        String::from_utf8_lossy(&output.stdout).replace(&smtp.to_string(), "127.0.0.1:1025");
    assert_transcript(transcript, &shown);
}

/// The TLS example verifies the certificate: it passes with the development CA and fails with
/// any other (before `--tls-verify` it passed with any CA).
#[tokio::test]
async fn the_tls_example_verifies_the_certificate() {
    let Some(_) = need(&tools::SWAKS) else {
        return;
    };
    let readme = readme();
    let example = &blocks(section(&readme, "## A first session with swaks"), "sh")[0];
    assert!(example.contains("--tls-verify"), "{example}");
    // As `failmail serve` runs (the built-in scenario), with the development certificate.
    let mut config = AppConfig::loopback();
    config.server.certificate = Some(CertificateSource::Development);
    let server = common::start(config).await;
    let smtp = server.addresses().smtp;
    let command = words(example, smtp);
    let output = run(&command).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{output:?}");
    assert!(
        stdout.contains("<~  250 2.0.0 Message accepted"),
        "{stdout}"
    );

    // The same command trusting other CAs (the system's) must fail: it really verifies.
    let other_cas = "/etc/ssl/certs/ca-certificates.crt";
    let Some(_) = need(&tools::SYSTEM_CAS) else {
        return;
    };
    let mut untrusted = command.clone();
    let at = untrusted.iter().position(|w| w == "--tls-ca-path").unwrap() + 1;
    untrusted[at] = other_cas.to_owned();
    let output = run(&untrusted).await;
    assert!(
        !output.status.success(),
        "a wrong CA must fail the example: {output:?}"
    );
    assert_eq!(
        server.messages().list().len(),
        1,
        "only the verified session delivered"
    );
    server.shutdown().await;
}

/// One row of the magic-address table: the recipient, and what the README says it gets.
struct MagicRow {
    rcpt: String,
    reply: String,
    at_end_of_data: bool,
}

fn magic_rows(readme: &str) -> Vec<MagicRow> {
    let table = table_after(readme, "| recipient | reply | given at |");
    table
        .lines()
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 3, "{row}");
            MagicRow {
                rcpt: cells[0].trim_matches('`').to_owned(),
                reply: cells[1].to_owned(),
                at_end_of_data: match cells[2] {
                    "RCPT" => false,
                    "end of data" => true,
                    other => panic!("unknown phase {other:?} in {row}"),
                },
            }
        })
        .collect()
}

/// The failure swaks printed (`<**` lines) and what it sent just before it.
fn failure(output: &str) -> (Vec<&str>, &str) {
    let lines: Vec<&str> = output.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("<** "))
        .unwrap_or_else(|| panic!("no failure in\n{output}"));
    let reply = lines[first..]
        .iter()
        .take_while(|l| l.starts_with("<** "))
        .map(|l| &l[4..])
        .collect();
    (reply, lines[first - 1])
}

/// "Reproduce a bounce": the command, then every row of the table on the wire with swaks: the
/// code and enhanced code, the number of lines, the phase, the close after a 421 and every other
/// `word` the row names.
#[tokio::test]
async fn every_magic_address_row_is_true_on_the_wire() {
    let Some(_) = need(&tools::SWAKS) else {
        return;
    };
    let readme = readme();
    let text = section(&readme, "## Reproduce a bounce");
    let server = common::start(AppConfig::loopback()).await;
    let smtp = server.addresses().smtp;
    for command in blocks(text, "sh")[0].lines() {
        let output = run(&words(command, smtp)).await;
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("<** 550-5.1.1"),
            "{output:?}"
        );
    }
    let rows = magic_rows(&readme);
    assert!(rows.len() >= 12, "{} rows", rows.len());
    for row in rows {
        let command = words(
            &format!("swaks --server 127.0.0.1:1025 --to {}", row.rcpt),
            smtp,
        );
        let output = run(&command).await;
        // swaks writes its own notes (`*** …`) to stderr.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let (reply, sent) = failure(&stdout);
        let mut named = row.reply.split('`').skip(1).step_by(2);
        let head = named
            .next()
            .expect("the reply column starts with `CODE STATUS`");
        assert!(
            reply[0].starts_with(&format!("{head} ")),
            "{}: {reply:?}",
            row.rcpt
        );
        let lines = row
            .reply
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[1].starts_with("lines"))
            .map_or(1, |w| w[0].parse::<usize>().expect("N lines"));
        assert_eq!(reply.len(), lines, "{}: {reply:?}", row.rcpt);
        let expected_sent = if row.at_end_of_data {
            " -> ."
        } else {
            " -> RCPT TO:<"
        };
        assert!(
            sent.starts_with(expected_sent),
            "{}: the failure came after {sent:?}",
            row.rcpt
        );
        let closes = stderr.contains("*** Remote host closed connection unexpectedly.");
        assert_eq!(
            row.reply.contains("then the server closes"),
            closes,
            "{}",
            row.rcpt
        );
        for word in named {
            assert!(
                reply.join(" ").contains(word),
                "{}: no {word:?} in {reply:?}",
                row.rcpt
            );
        }
    }
    server.shutdown().await;
}

/// The curl examples of the API reference, run with curl against a running server: each
/// command's output is what the README shows (`…` for what varies).
#[tokio::test]
async fn the_curl_examples_print_what_the_readme_shows() {
    let Some(_) = need(&tools::CURL) else {
        return;
    };
    let readme = readme();
    let console = blocks(section(&readme, "## API reference"), "console")
        .pop()
        .expect("a console block of curl examples");
    // What `failmail serve` does (TLS off, OVHcloud's limits), on free ports.
    let mut config = AppConfig::default();
    config.server.smtp = "127.0.0.1:0".parse().unwrap();
    config.http = Some(failmail::app::HttpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: None,
        hosts: Vec::new(),
    });
    let server = common::start(config).await;
    let http = server.addresses().http.expect("an HTTP listener");
    // "after the swaks sessions above": one of them met user_unknown.
    let mut conn = PlainConn::greeted_ehlo(server.addresses().smtp).await;
    conn.cmd("MAIL FROM:<me@example.org>", 250, "2.1.0").await;
    conn.cmd("RCPT TO:<user_unknown@example.com>", 550, "5.1.1")
        .await;
    conn.quit().await;
    let mut commands = 0;
    for example in console.split("$ ").skip(1) {
        let (command, expected) = example.split_once('\n').unwrap();
        assert!(command.starts_with("curl "), "{command}");
        let command = command.replace("127.0.0.1:8025", &http.to_string());
        let mut shell = Command::new("sh");
        shell.args(["-c", &command]).current_dir(repo_root());
        let output = run_tool(shell, &command, Duration::from_secs(30)).await;
        assert!(output.status.success(), "{command}: {output:?}");
        assert_transcript(expected, &String::from_utf8_lossy(&output.stdout));
        commands += 1;
    }
    assert!(commands >= 5, "{commands} curl examples");
    server.shutdown().await;
}

/// The "Use it in CI" step run as written (`failmail` on PATH instead of `cargo install`) with
/// each seed, then the README's pytest example against it: with `flaky.toml` it must pass for
/// every seed (seed 42 once passed by luck and 1, 2 and 10 failed).
#[tokio::test]
async fn the_ci_example_and_its_pytest_hold_for_every_seed() {
    let Some(_) = need(&tools::PYTEST) else {
        return;
    };
    let readme = readme();
    let text = section(&readme, "## Use it in CI");
    let yaml = &blocks(text, "yaml")[0];
    let script: String = yaml
        .split_once("run: |\n")
        .expect("a run step")
        .1
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .filter(|l| !l.starts_with("cargo install"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(script.contains("--seed 42"), "{script}");
    let pytest = &blocks(text, "python")[0];
    let (dir, path) = ci_workdir();
    std::fs::write(dir.path().join("test_readme.py"), pytest).unwrap();
    for seed in [1, 2, 10, 42, 7, 1234] {
        let github_env = dir.path().join(format!("github_env_{seed}"));
        let env = [
            ("PATH".to_owned(), path.clone()),
            ("GITHUB_ENV".to_owned(), github_env.display().to_string()),
        ];
        let step = script.replace("--seed 42", &format!("--seed {seed}"));
        let (output, _group) = run_step(&step, dir.path(), &env).await;
        assert!(
            output.status.success(),
            "seed {seed}: the CI step failed: {output:?}"
        );
        let vars = github_env_vars(&github_env);
        assert_eq!(vars.len(), 2, "{vars:?}");
        let mut python = Command::new("/usr/bin/python3");
        python
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "test_readme.py",
            ])
            .current_dir(dir.path())
            .envs(vars.iter().map(|(k, v)| (k, v)));
        let output = run_tool(python, "pytest", Duration::from_secs(120)).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "seed {seed}: the pytest example failed:\n{stdout}"
        );
        assert!(stdout.contains("3 passed"), "seed {seed}:\n{stdout}");
        let log = std::fs::read_to_string(dir.path().join("failmail.log")).unwrap_or_default();
        assert!(!log.contains("ERROR"), "seed {seed}: {log}");
    }
}

/// Every file of the repository the README names exists (a script it says to run, a test it
/// points to), except the outputs of commands it shows; and it promises no prebuilt binary
/// (none is published): where it says how to get one, it names `release/build-static.sh`.
#[test]
fn the_readme_names_only_files_that_exist() {
    let readme = readme();
    // Named as what a command makes: (file, the command's script or line that makes it).
    let made = [
        (
            "dist/failmail-x86_64-unknown-linux-gnu",
            "release/build-static.sh",
        ),
        ("scenarios/mine.toml", "--into scenarios/mine.toml"),
    ];
    let top = [
        ".ci/",
        "benches/",
        "certs/",
        "dist/",
        "fuzz/",
        "release/",
        "scenarios/",
        "src/",
        "tests/",
    ];
    let mut named = 0;
    for token in readme.split(|c: char| c.is_whitespace() || "`()[]<>,;:'\"|*".contains(c)) {
        let token = token.trim_end_matches('.');
        if !top.iter().any(|t| token.starts_with(t)) {
            continue;
        }
        named += 1;
        if let Some((_, maker)) = made.iter().find(|(file, _)| *file == token) {
            let made_here = readme.contains(maker)
                || std::fs::read_to_string(repo_root().join(maker))
                    .is_ok_and(|script| script.contains("dist/failmail-"));
            assert!(made_here, "README names {token}, which nothing makes");
            continue;
        }
        assert!(
            repo_root().join(token).exists(),
            "README names {token}, which is not in the repository"
        );
    }
    assert!(named >= 30, "{named} files named");
    let lower = readme.to_lowercase();
    for claim in [
        "prebuilt",
        "pre-built",
        "binary release",
        "releases page",
        "download failmail",
    ] {
        assert!(!lower.contains(claim), "README speaks of a {claim:?}");
    }
    for heading in ["## Use it in CI", "## Test your mailer's retry logic"] {
        let install = section(&readme, heading);
        assert!(
            install.contains("release/build-static.sh"),
            "{heading}: where to get a binary"
        );
    }
}

/// The files a user reads cite public sources, never the project's private notes.
#[test]
fn shipped_files_cite_public_sources() {
    let private = ["shared", "/REFERENCE.md"].concat();
    let this_file = repo_root().join("tests/readme.rs");
    let mut files = vec![repo_root().join("README.md")];
    for dir in [
        "src",
        "scenarios",
        "tests",
        "benches",
        "release",
        ".ci",
        "fuzz/fuzz_targets",
    ] {
        shipped_text_files(&repo_root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "walked too few files: {}", files.len());
    for file in files.into_iter().filter(|f| *f != this_file) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        for needle in [private.as_str(), "shared/seeds", "REFERENCE.md"] {
            assert!(!text.contains(needle), "{} cites {needle}", file.display());
        }
    }
}

/// Every file under `dir` that ships with the project (not build output or installed packages).
fn shipped_text_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == "target" || name == "corpus" || name == "artifacts" {
            continue;
        }
        if path.is_dir() {
            shipped_text_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The HTTP port serves the whole API, and the README says so: every route the router serves is
/// in its API table, and the `--http` flag is described as the API (it said "health").
#[test]
fn every_api_route_is_in_the_readme() {
    let readme = readme();
    let table = table_after(&readme, "| route | what |");
    for route in failmail::api::ROUTES {
        let path = route.path.split('{').next().unwrap_or(route.path);
        assert!(
            table.contains(&format!("{} {path}", route.method))
                || table
                    .lines()
                    .any(|l| l.contains(path) && l.contains(route.method)),
            "README's API table does not list {} {}",
            route.method,
            route.path
        );
    }
    let flags = table_after(&readme, "`failmail serve` (the default) takes:");
    let http = flags
        .lines()
        .find(|l| l.starts_with("| `--http ADDR`"))
        .expect("the --http row");
    assert!(http.contains("API") && http.contains("/api/"), "{http}");
}
