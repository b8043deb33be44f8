//! With `failmail serve`'s defaults (no flag but port 0), four real clients, each called the way
//! most code calls it, deliver a message and meet a catalog failure: nodemailer from the npm
//! registry with its default options, Go's `net/smtp.SendMail`, Python's smtplib and lettre.
//!
//! nodemailer and `SendMail` upgrade with STARTTLS whenever the server offers it, then refuse a
//! certificate they do not trust ("unable to verify the first certificate", "x509: certificate
//! signed by unknown authority"): these tests fail if the defaults offer TLS, as they once did.
//! (The TLS variants of smtplib and lettre are in `tests/clients.rs`.)

mod common;

use std::process::Command;
use std::time::Duration;

use common::binary::{http_get, run_tool, start_binary, Binary};
use common::{repo_root, tools};
use failmail::scenario::catalog::Catalog;
use failmail::scenario::flavor::Flavor;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

/// How long one external client may take (Go compiles its program first).
const TOOL_LIMIT: Duration = Duration::from_secs(120);

const FROM: &str = "app@example.org";
const TO: &str = "bob@dest.example";
const MAGIC: &str = "user_unknown@example.com";

/// `failmail serve` with its defaults, on free ports.
fn serve() -> Binary {
    start_binary(&["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
}

fn port(binary: &Binary) -> String {
    binary.address("smtp").port().to_string()
}

/// The built-in scenario's `user_unknown` refusal: code, then `status text`.
fn user_unknown() -> (u16, String) {
    let entry = Catalog::builtin()
        .get("user_unknown")
        .expect("in the catalog");
    let (variant, _) = entry.variant(Flavor::Generic);
    (
        variant.code,
        format!("{} {}", variant.status, variant.text.join(" ")),
    )
}

/// The server kept the one delivered message, refused the magic address with the catalog's
/// reply (`refused`: the client's view of it, `CODE [CODE] STATUS TEXT`), and its events name the
/// catalog entry.
async fn assert_served(binary: &Binary, client: &str, refused: &str) {
    let (code, text) = user_unknown();
    let refused = refused.trim();
    let rest = refused
        .strip_prefix(&format!("{code} "))
        .unwrap_or_else(|| panic!("{client}: refused with {refused:?}, not {code}"));
    // Some clients repeat the code in the reply text they report.
    let rest = rest.strip_prefix(&format!("{code} ")).unwrap_or(rest);
    assert_eq!(rest, text, "{client}: the refusal's text");

    let http = binary.address("http");
    let (_, body) = http_get(http, "/api/messages").await;
    let messages: Value = serde_json::from_str(&body).unwrap();
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{client}: {body}");
    assert_eq!(messages[0]["mail_from"], FROM, "{client}");
    assert_eq!(
        messages[0]["recipients"],
        serde_json::json!([TO]),
        "{client}"
    );
    assert_eq!(messages[0]["tls"], false, "{client}: no TLS by default");
    let (_, events) = http_get(http, "/api/events").await;
    let events: Value = serde_json::from_str(&events).unwrap();
    let named = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "reply" && e["catalog"] == "user_unknown");
    assert!(
        named,
        "{client}: no reply event names user_unknown: {events}"
    );
}

/// Runs an external client script with the server's port; returns its `DELIVERED` and
/// `REFUSED` lines after checking it succeeded.
async fn run_client(mut command: Command, binary: &Binary, what: &str) -> (String, String) {
    command.arg(port(binary)).current_dir(repo_root());
    let output = run_tool(command, what, TOOL_LIMIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{what}: no {prefix:?} line in {stdout:?}"))
            .to_owned()
    };
    (line("DELIVERED"), line("REFUSED "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodemailer_with_default_options() {
    let Some(node) = tools::need(&tools::NODEMAILER) else {
        return;
    };
    let binary = serve();
    let mut command = Command::new(node);
    command.arg("tests/node/send.mjs");
    let (delivered, refused) = run_client(command, &binary, "node tests/node/send.mjs").await;
    assert!(delivered.starts_with(" 250 2.0.0 "), "{delivered:?}");
    assert_served(&binary, "nodemailer", &refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_smtp_send_mail() {
    let Some(go) = tools::need(&tools::GO) else {
        return;
    };
    let binary = serve();
    // Go's build cache goes under target/, so that a read-only or missing HOME does not matter.
    let cache = repo_root().join("target/go-build");
    let mut command = Command::new(go);
    command
        .args(["run", "tests/go/sendmail.go"])
        .env("GOCACHE", &cache)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "");
    let (delivered, refused) = run_client(command, &binary, "go run tests/go/sendmail.go").await;
    assert_eq!(delivered, "");
    assert_served(&binary, "net/smtp", &refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_as_most_code_calls_it() {
    let Some(python) = tools::need(&tools::PYTHON3) else {
        return;
    };
    let binary = serve();
    let mut command = Command::new(python);
    command.arg("tests/smtplib_defaults.py");
    let (delivered, refused) =
        run_client(command, &binary, "python3 tests/smtplib_defaults.py").await;
    assert!(delivered.starts_with(" 250 2.0.0 "), "{delivered:?}");
    assert_served(&binary, "smtplib", &refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettre_from_an_smtp_url() {
    let binary = serve();
    let url = format!("smtp://127.0.0.1:{}", port(&binary));
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
        .expect("an smtp:// URL")
        .timeout(Some(common::IO_TIMEOUT))
        .build();
    let message = |to: &str| {
        Message::builder()
            .from(FROM.parse::<Mailbox>().unwrap())
            .to(to.parse::<Mailbox>().unwrap())
            .subject("from lettre")
            .body(String::from("hello from lettre\n"))
            .unwrap()
    };
    let response = mailer.send(message(TO)).await.expect("lettre delivers");
    assert_eq!(response.code().to_string(), "250");
    let error = mailer
        .send(message(MAGIC))
        .await
        .expect_err("the magic address is refused");
    assert!(error.is_permanent(), "{error}");
    let code = error.status().expect("an SMTP reply").to_string();
    // lettre's error shows the reply's text after "permanent error (550): ".
    let shown = error.to_string();
    let text = shown
        .split_once("): ")
        .map_or(shown.as_str(), |(_, text)| text);
    assert_served(&binary, "lettre", &format!("{code} {text}")).await;
}
