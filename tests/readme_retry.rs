//! The README's "Test your mailer's retry logic" run as written: its CI job (the heredoc scenario
//! served by `failmail serve` with its flags, a real smtplib mailer in place of the app's tests,
//! the clock moved and `failmail report` as the gate), and its Rust example, which is the
//! example `cargo test --doc` runs on `TestServer::wait_for_report`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::binary::run_tool;
use common::readme::{blocks, ci_workdir, github_env_vars, readme, run_step, section, step_script};
use common::repo_root;
use common::tools::{self, need};
use failmail::scenario::compile::Scenario;

/// The README's retry CI job, run as written: "Start failmail" (its heredoc is the scenario
/// served, with `--retry-window 2m --backoff-threshold 1s`), the app's tests (a Python smtplib
/// mailer, tests/retry_client.py, in place of `make test`), then the clock moved and
/// `failmail report` as the gate. A mailer with backoff passes (exit 0); one that never
/// retries is only pending before the clock moves, and fails the gate (exit 1) after.
#[tokio::test]
async fn the_retry_ci_job_gates_on_the_report() {
    let (Some(python), Some(_)) = (need(&tools::PYTHON3), need(&tools::CURL)) else {
        return;
    };
    let readme = readme();
    let text = section(&readme, "## Test your mailer's retry logic");
    let job = &blocks(text, "yaml")[0];
    let start = step_script(job, "Start failmail");
    assert!(
        start.contains("cat > retries.toml <<'EOF'")
            && start.contains("--retry-window 2m --backoff-threshold 1s"),
        "{start}"
    );
    let app = step_script(job, "Run the app's tests, its mailer pointed at failmail");
    assert!(app.contains("make test"), "{app}");
    let gate = step_script(job, "Did the mailer retry correctly?");
    assert!(
        gate.contains("/api/clock/advance") && gate.contains("failmail report --http"),
        "{gate}"
    );
    for (mode, status) in [("backoff", 0), ("once", 1)] {
        // A fresh directory per job, as a CI run has (an old failmail.out would be read).
        let (dir, path) = ci_workdir();
        let github_env = dir.path().join("github_env");
        let mut env = vec![
            ("PATH".to_owned(), path.clone()),
            ("GITHUB_ENV".to_owned(), github_env.display().to_string()),
        ];
        let (output, _failmail) = run_step(&start, dir.path(), &env).await;
        let log = std::fs::read_to_string(dir.path().join("failmail.log")).unwrap_or_default();
        assert!(output.status.success(), "{mode}: start: {output:?}\n{log}");
        let served = std::fs::read_to_string(dir.path().join("retries.toml")).unwrap();
        Scenario::parse("retries.toml", &served).expect("the heredoc is a scenario");
        env.extend(github_env_vars(&github_env));
        // One message per recipient, as an app sends its mails; in one command, which the
        // step's SMTP_HOST and SMTP_PORT are given to.
        let mailer = ["flaky", "once-more"]
            .map(|user| {
                format!(
                    "{} {} {mode} env \"<{mode}-{user}@client.example>\" {user}@example.com 6",
                    python.display(),
                    repo_root().join("tests/retry_client.py").display()
                )
            })
            .join(" && ");
        let mailer = format!("bash -ec '{mailer}'");
        let (output, _) = run_step(&app.replace("make test", &mailer), dir.path(), &env).await;
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{mode}: the mailer: {output:?}");
        assert!(!said.contains("gave up"), "{mode}:\n{said}");
        if mode == "once" {
            // Before the clock moves, a retry not made yet is only pending.
            let mut report = Command::new(env!("CARGO_BIN_EXE_failmail"));
            let http = &env.iter().find(|(k, _)| k == "FAILMAIL_HTTP").unwrap().1;
            report.args(["report", "--http", http]);
            let output = run_tool(report, "failmail report", Duration::from_secs(30)).await;
            let table = String::from_utf8_lossy(&output.stdout);
            assert_eq!(output.status.code(), Some(0), "{table}");
            assert!(table.contains("pending retried_after_temporary"), "{table}");
        }
        let (output, _) = run_step(&gate, dir.path(), &env).await;
        let table = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(status),
            "{mode}: the gate:\n{table}\n{}\nthe mailer said:\n{said}",
            String::from_utf8_lossy(&output.stderr)
        );
        if mode == "backoff" {
            assert!(table.contains(" 0 failed, 0 pending"), "{table}");
            assert!(table.ends_with("\nok: no verdict failed\n"), "{table}");
            // As the scenario's comments say: flaky@ greylisted twice by its rule; once-more@
            // greylisted once (by [greylisting]), then its first 250 lost.
            for (rcpt, replies) in [
                ("flaky@example.com", " 451×2 250 "),
                ("once-more@example.com", " 451 lost 250 "),
            ] {
                let row = table.lines().find(|l| l.contains(rcpt));
                assert!(
                    row.is_some_and(|r| r.contains(replies)
                        && r.contains("delivered")
                        && r.ends_with(" ok")),
                    "{rcpt}:\n{table}"
                );
            }
        } else {
            assert!(table.contains("FAIL retried_after_temporary"), "{table}");
            assert!(table.ends_with("\nFAILED: a verdict failed\n"), "{table}");
        }
    }
}

/// The lines of the ```` ``` ```` example in the doc comment just above `item` in `file` (a
/// path in the repository) that rustdoc shows: hidden lines (`# …`) left out.
fn doctest_shown(file: &str, item: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let at = text
        .find(item)
        .unwrap_or_else(|| panic!("{file} has no {item:?}"));
    let doc: Vec<&str> = text[..at]
        .lines()
        .rev()
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("///"))
        .map(|l| l.trim_start().trim_start_matches("///"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let open = doc
        .iter()
        .position(|l| *l == "```")
        .unwrap_or_else(|| panic!("no example in the doc of {item:?}"));
    let close = open
        + 1
        + doc[open + 1..]
            .iter()
            .position(|l| *l == "```")
            .expect("a closed example");
    doc[open + 1..close]
        .iter()
        .filter(|l| !(l.trim_start().starts_with("# ") || l.trim() == "#"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The README's Rust retry example is what rustdoc shows of the example of
/// `TestServer::wait_for_report`, which `cargo test --doc` compiles and runs (its hidden lines
/// play the mailer): the README's code cannot drift from code that works.
#[test]
fn the_rust_retry_example_is_the_doctest_of_wait_for_report() {
    let readme = readme();
    let text = section(&readme, "## Test your mailer's retry logic");
    let example = &blocks(text, "rust")[0];
    let shown = doctest_shown("src/testing.rs", "pub async fn wait_for_report(");
    assert_eq!(example, &shown, "README:\n{example}\ndoctest:\n{shown}");
    assert!(shown.contains("assert_retried"), "{shown}");
}
