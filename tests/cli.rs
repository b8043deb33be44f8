//! The command line as a new user meets it: `failmail check` reports every error of a file with
//! suggestions and counts in good English, errors are one plain chain of causes (no stack
//! backtrace, whatever `RUST_BACKTRACE` says), logs written to a pipe carry no colour codes, and
//! `failmail catalog --format json` gives every flavor's wording; `failmail health` tells a
//! healthy server from none or a sick one, and `FAILMAIL_HTTP_TOKEN` sets the API's token.

mod common;

use std::path::Path;
use std::process::Output;

use common::binary::{binary_command, start_binary, start_binary_with};
use common::PlainConn;
use serde_json::Value;

fn failmail(args: &[&str], env: &[(&str, &str)]) -> Output {
    binary_command(&[], args)
        .envs(env.iter().copied())
        .output()
        .expect("the failmail binary runs")
}

fn check(dir: &Path, name: &str, text: &str) -> (bool, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let output = failmail(&["check", path.to_str().unwrap()], &[]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `failmail check` on a broken file: its stderr, and each of its lines about the file with the
/// `path:` in front taken off (`line:column: message`, then ` N errors`).
fn check_broken(name: &str, text: &str) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = check(dir.path(), name, text);
    assert!(!ok, "{stderr}");
    let prefix = format!("{}:", dir.path().join(name).display());
    let positions = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect();
    (stderr, positions)
}

/// Three broken rules and a broken section: each is reported at its own line (not only the
/// first), in file order, then the count; `then = "acept"` is told about `accept`.
#[test]
fn check_prints_every_error_of_a_file() {
    let text = r#"[greylisting]
delay = "soon"

[[rule]]
rcpt = "a@*"
then = "acept"

[[rule]]
rcpt = "b@*"
reply = "user_unkown"

[[rule]]
rcpt = "c@*"
reply = "user_unknown"

[[rule]]
rcpt = "d@*"
sequence = ["greylisted", "acept"]
"#;
    let (stderr, positions) = check_broken("broken.toml", text);
    assert_eq!(positions.len(), 5, "four errors and the count:\n{stderr}");
    for (found, line) in positions.iter().zip(["2:", "6:", "10:", "18:"]) {
        assert!(
            found.starts_with(line),
            "{found:?} is not at {line}\n{stderr}"
        );
    }
    assert!(
        stderr
            .contains("unknown action \"acept\"\n  hint: did you mean \"accept\"? then is one of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown sequence step \"acept\"\n  hint: did you mean \"accept\"?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean \"user_unknown\"?"),
        "{stderr}"
    );
    assert_eq!(positions[4], " 4 errors", "{stderr}");
    assert!(
        stderr.ends_with("error: 1 of 1 scenario file has errors\n"),
        "{stderr}"
    );
}

/// A TOML syntax error stops the check at that error: nothing after it can be read reliably.
#[test]
fn check_stops_at_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = check(
        dir.path(),
        "syntax.toml",
        "[[rule]]\nrcpt = \"a@*\nthen = \"acept\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains(": 1 error\n"), "{stderr}");
}

#[test]
fn check_counts_rules_in_good_english() {
    let dir = tempfile::tempdir().unwrap();
    let one = "[[rule]]\nrcpt = \"a@*\"\nreply = \"user_unknown\"\n";
    let (ok, stdout, stderr) = check(dir.path(), "one.toml", one);
    assert!(ok, "{stderr}");
    assert!(stdout.ends_with(": ok (1 rule)\n"), "{stdout}");
    let (ok, stdout, _) = check(dir.path(), "two.toml", &format!("{one}{one}"));
    assert!(ok);
    assert!(stdout.ends_with(": ok (2 rules)\n"), "{stdout}");
}

/// With `RUST_BACKTRACE=1`, a user's mistake is still one line of causes, not a stack backtrace.
#[test]
fn errors_are_a_chain_of_causes_without_a_backtrace() {
    for (args, needle) in [
        (
            &["check", "/nonexistent/scenario.toml"][..],
            "cannot read the file",
        ),
        (
            &["serve", "--state", "nowhere://x"][..],
            "--state is `memory`",
        ),
    ] {
        let output = failmail(args, &[("RUST_BACKTRACE", "1")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(
            !stderr.to_ascii_lowercase().contains("backtrace"),
            "failmail {args:?} printed a backtrace:\n{stderr}"
        );
        assert!(
            stderr.lines().last().unwrap_or("").starts_with("error: "),
            "{stderr}"
        );
    }
}

/// Logs that go to a pipe (a file, a CI log) carry no ANSI colour codes.
#[tokio::test]
async fn logs_to_a_pipe_have_no_colour_codes() {
    let binary = start_binary_with(
        &[],
        &["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        &[("FAILMAIL_LOG", "debug")],
    );
    let mut conn = PlainConn::greeted_ehlo(binary.address("smtp")).await;
    conn.quit().await;
    let stderr = binary.terminate().await;
    assert!(stderr.contains("connected"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a piped log:\n{stderr:?}"
    );
}

/// `--format json` gives, per entry, every flavor's own code, status, text and source; each is
/// what `--flavor F` shows for that flavor.
#[test]
fn catalog_json_gives_every_flavor() {
    let json = |flavor: &str| -> Vec<Value> {
        let output = failmail(&["catalog", "--format", "json", "--flavor", flavor], &[]);
        assert!(output.status.success());
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let generic = json("generic");
    let user_unknown = generic
        .iter()
        .find(|e| e["name"] == "user_unknown")
        .unwrap();
    assert_eq!(
        user_unknown["variants"]["gmail"]["text"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{user_unknown}"
    );
    for flavor in [
        "generic", "ovh", "gmail", "outlook", "yahoo", "postfix", "exim",
    ] {
        for (entry, shown) in generic.iter().zip(json(flavor)) {
            let flavors: Vec<&str> = entry["flavors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            let variants = entry["variants"].as_object().unwrap();
            assert_eq!(
                variants
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .len(),
                flavors.len(),
                "{entry}"
            );
            if flavors.contains(&flavor) {
                let variant = &variants[flavor];
                for field in ["code", "status", "text", "source"] {
                    assert_eq!(
                        variant[field], shown[field],
                        "{} {flavor} {field}",
                        entry["name"]
                    );
                }
            }
        }
    }
}

/// `FAILMAIL_LOG=debug` logs one line per command, per reply (with the deciding rule's name and
/// place) and per rule that closed the session without a reply; with or without the event
/// journal (`--no-store`); and never the password.
#[tokio::test]
async fn debug_logs_show_each_command_reply_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("named.toml");
    std::fs::write(
        &scenario,
        "[[rule]]\nname = \"gone mailbox\"\nrcpt = \"gone@*\"\nreply = \"user_unknown\"\n\n\
         [[rule]]\nname = \"cut\"\nrcpt = \"cut@*\"\nthen = \"disconnect\"\n",
    )
    .unwrap();
    let password = "Debug-Log-S3cret";
    for extra in [&[][..], &["--no-store"][..]] {
        let mut args = vec!["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"];
        args.extend(["--scenario", scenario.to_str().unwrap()]);
        args.extend(extra);
        let binary = start_binary_with(&[], &args, &[("FAILMAIL_LOG", "debug")]);
        let mut conn = PlainConn::greeted_ehlo(binary.address("smtp")).await;
        let plain = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("\0alice\0{password}"),
        );
        conn.cmd(&format!("AUTH PLAIN {plain}"), 235, "2.7.0").await;
        conn.cmd("MAIL FROM:<a@client.example>", 250, "2.1.0").await;
        conn.cmd("RCPT TO:<gone@dest.example>", 550, "5.1.1").await;
        conn.send_line("RCPT TO:<cut@dest.example>").await;
        conn.expect_closed().await;
        let log = binary.terminate().await;
        let scenario_at = format!("rule_at=\"{}:", scenario.display());
        for expected in [
            "command line=\"AUTH PLAIN ****\"",
            "command line=\"MAIL FROM:<a@client.example>\"",
            "reply code=250 status=\"2.1.0\"",
            "command line=\"RCPT TO:<gone@dest.example>\"",
            "reply code=550 status=\"5.1.1\"",
            "phase=\"rcpt\" rule=0 rule_name=\"gone mailbox\"",
            "catalog=\"user_unknown\"",
            "no reply action=\"disconnect\" phase=\"rcpt\" rule=1 rule_name=\"cut\"",
            &scenario_at,
        ] {
            assert!(
                log.contains(expected),
                "{extra:?}: no {expected:?} in\n{log}"
            );
        }
        assert!(
            !log.contains(password),
            "{extra:?}: the password is logged:\n{log}"
        );
        assert!(
            !log.contains(&plain),
            "{extra:?}: the credentials are logged:\n{log}"
        );
    }
}

/// An unknown key or a value of the wrong type stops serde at once; the check then reads each
/// section and rule on its own (and finds unknown top-level keys), so the errors of the other
/// rules are reported too, at their lines and columns.
#[test]
fn check_reports_unknown_keys_in_several_rules() {
    let text = r#"[server]
flavor = "gmail"

[[rule]]
rcpt_to = "a@*"
reply = "user_unknown"

[[rule]]
rcpt = "b@*"
reply = "user_unkown"

[[rule]]
rcpt = "c@*"
probability = "half"
reply = "user_unknown"

[[rule]]
rcpt = "d@*"
reply = "user_unknown"
[limit]
per_ip = 1
"#;
    let (stderr, positions) = check_broken("keys.toml", text);
    assert_eq!(positions.len(), 5, "four errors and the count:\n{stderr}");
    assert!(
        positions[0].starts_with("5:1: unknown field `rcpt_to`"),
        "{stderr}"
    );
    assert!(
        positions[1].starts_with("10:9: unknown catalog name"),
        "{stderr}"
    );
    assert!(positions[2].starts_with("14:15: invalid type"), "{stderr}");
    assert!(
        positions[3].starts_with("20:2: unknown field `limit`"),
        "{stderr}"
    );
    assert_eq!(positions[4], " 4 errors", "{stderr}");
}

/// A one-shot HTTP server on loopback: answers the first request with `answer`, then closes.
fn answer_once(answer: &'static str) -> std::net::SocketAddr {
    use std::io::{BufRead as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("failmail health connects");
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        // The request's head, up to its empty line.
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let _ = reader.get_mut().write_all(answer.as_bytes());
    });
    addr
}

/// `failmail health --http ADDR` (the image's health check) exits 0 and prints the answer when
/// failmail answers `ok`, and fails when nothing listens there or the answer is not `ok`.
#[test]
fn health_exits_0_only_when_the_server_answers_ok() {
    let binary = start_binary(&["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    let http = binary.address("http").to_string();
    let output = failmail(&["health", "--http", &http], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.starts_with("ok"), "{stdout}");

    // A port nothing listens on (bound, then freed).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let output = failmail(&["health", "--http", &free], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to {free}")),
        "{stderr}"
    );

    for (answer, shown) in [
        (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n\r\nstarting",
            "\"HTTP/1.1 503 Service Unavailable\" \"starting\"",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nnot ok\r\n",
            "\"HTTP/1.1 200 OK\" \"not ok\\r\\n\"",
        ),
    ] {
        let addr = answer_once(answer);
        let output = failmail(&["health", "--http", &addr.to_string()], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{answer:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{addr} is not healthy: {shown}")),
            "{answer:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{answer:?}");
    }
}

/// `FAILMAIL_HTTP_TOKEN` is `--http-token`: with it set, every API route wants
/// `Authorization: Bearer <token>` (and `failmail report` its `--http-token`); `/healthz`
/// and `failmail health` need none.
#[tokio::test]
async fn failmail_http_token_sets_the_api_token() {
    use common::api::http;
    let binary = start_binary_with(
        &[],
        &["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        &[("FAILMAIL_HTTP_TOKEN", "t")],
    );
    let api = binary.address("http");
    for (headers, status) in [
        (&[][..], 401),
        (&[("Authorization", "Bearer wrong")][..], 401),
        (&[("Authorization", "Basic dDp0")][..], 401),
        (&[("Authorization", "Bearer t")][..], 200),
    ] {
        let response = http(api, "GET", "/api/messages", headers, b"").await;
        assert_eq!(response.status, status, "{headers:?}: {}", response.text());
    }
    assert_eq!(http(api, "GET", "/healthz", &[], b"").await.status, 200);
    let addr = api.to_string();
    let health = failmail(&["health", "--http", &addr], &[]);
    assert!(health.status.success(), "{health:?}");
    let report = failmail(&["report", "--http", &addr], &[]);
    assert_eq!(report.status.code(), Some(2), "{report:?}");
    assert!(
        String::from_utf8_lossy(&report.stderr).contains("401"),
        "{report:?}"
    );
    let report = failmail(&["report", "--http", &addr, "--http-token", "t"], &[]);
    assert_eq!(report.status.code(), Some(0), "{report:?}");
    binary.terminate().await;
}
