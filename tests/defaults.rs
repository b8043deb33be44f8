//! What `failmail serve` does with no flags, on the real binary: no TLS unless asked for (so that
//! mailers that upgrade whenever STARTTLS is offered, and then refuse the development
//! certificate, work out of the box), and OVHcloud's limits (200 mails/hour/account, 300
//! mails/hour/IP) until the clock moves, `--limits none` or a scenario's `[limits]` says
//! otherwise. The ready line and `/healthz` say whether TLS is on.

mod common;

use std::process::Stdio;

use common::binary::{binary_command, http_get, http_post, start_binary, Binary};
use common::*;
use failmail::app::ScenarioConfig;
use failmail::server::tls::CertificateSource;
use serde_json::Value;

/// Port 0 for SMTP and HTTP, and nothing else: the defaults.
const LOOPBACK: [&str; 4] = ["--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"];

fn serve(args: &[&str]) -> Binary {
    let args: Vec<&str> = LOOPBACK.iter().chain(args).copied().collect();
    start_binary(&args)
}

/// A scenario file in a temporary directory (kept while the directory lives).
fn scenario_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// The ready line, `/healthz` and EHLO agree that TLS is `on` (STARTTLS works with the
/// development CA) or off (not offered, and refused if tried).
async fn assert_tls(binary: &Binary, on: bool) {
    let word = if on { "tls=on" } else { "tls=off" };
    assert!(
        binary.ready.ends_with(&format!(" {word}")),
        "{}",
        binary.ready
    );
    let (status, body) = http_get(binary.address("http"), "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, format!("ok {word}\n"));
    let mut conn = PlainConn::greeted(binary.address("smtp")).await;
    let ehlo = conn.ehlo("client.example").await;
    assert_eq!(announces(&ehlo, "STARTTLS"), on, "{:?}", ehlo.wire);
    if on {
        conn.cmd("STARTTLS", 220, "2.0.0").await;
        let mut tls = conn.starttls().await;
        tls.ehlo("client.example").await;
        tls.quit().await;
    } else {
        conn.cmd("STARTTLS", 454, "4.7.0").await;
        conn.quit().await;
    }
}

#[tokio::test]
async fn serve_with_no_flags_offers_no_tls_and_says_so() {
    let binary = serve(&[]);
    assert!(!binary.ready.contains("smtps="), "{}", binary.ready);
    assert_tls(&binary, false).await;
}

#[tokio::test]
async fn tls_is_on_with_tls_a_certificate_or_the_scenario_and_never_with_no_tls() {
    let (_dir, tls_scenario) = scenario_file("[server]\ntls = true\n");
    let cert = ca_path().with_file_name("localhost.pem");
    let key = ca_path().with_file_name("localhost-key.pem");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    for (args, on) in [
        (vec!["--tls"], true),
        (vec!["--tls-cert", cert, "--tls-key", key], true),
        (vec!["--scenario", &tls_scenario], true),
        (vec!["--scenario", &tls_scenario, "--no-tls"], false),
    ] {
        let binary = serve(&args);
        assert_tls(&binary, on).await;
    }
    // SMTPS comes with TLS only.
    let binary = serve(&["--tls", "--smtps", "127.0.0.1:0"]);
    let mut smtps = TlsConn::connect_tls(binary.address("smtps")).await;
    smtps.expect_greeting().await;
    smtps.quit().await;
}

#[test]
fn smtps_without_tls_is_refused_at_start() {
    let output = binary_command(&[], &LOOPBACK)
        .args(["--smtps", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("the failmail binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--smtps 127.0.0.1:0 needs TLS") && stderr.contains("--tls"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no ready line");
}

#[test]
fn the_scenario_tls_key_is_checked_like_every_key() {
    let (_dir, file) = scenario_file("[server]\ntls = \"yes\"\n");
    let output = binary_command(&[], &["check", &file])
        .stdin(Stdio::null())
        .output()
        .expect("the failmail binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{file}:2:")), "{stderr}");
}

/// A scenario reload turns TLS on or off for new sessions, with the development certificate
/// when the command line gave none; `/healthz` follows.
#[tokio::test]
async fn a_reloaded_scenario_turns_tls_on_and_off() {
    let app = start(sink_with(|c| {
        c.scenario = Some(ScenarioConfig::default());
        c.server.smtps = None;
        c.server.certificate = None;
    }))
    .await;
    let smtp = app.addresses().smtp;
    let http = app.addresses().http.unwrap();
    assert!(!app.addresses().tls);
    let reloader = app.scenario().unwrap();
    for (text, on) in [
        ("[server]\ntls = true\n", true),
        ("[server]\ntls = false\n", false),
        ("", false),
    ] {
        reloader.replace("tls.toml", text).unwrap();
        let mut conn = PlainConn::greeted(smtp).await;
        let ehlo = conn.ehlo("client.example").await;
        assert_eq!(announces(&ehlo, "STARTTLS"), on, "{text:?}");
        if on {
            conn.cmd("STARTTLS", 220, "2.0.0").await;
            conn.starttls().await.quit().await;
        } else {
            conn.quit().await;
        }
        let word = if on { "on" } else { "off" };
        assert_eq!(
            http_get(http, "/healthz").await.1,
            format!("ok tls={word}\n")
        );
    }
    // With --tls-cert's certificate, the scenario's `tls = false` wins too.
    let app = start(sink_with(|c| {
        c.scenario = Some(ScenarioConfig::default());
        c.server.smtps = None;
        c.server.certificate = Some(CertificateSource::Development);
    }))
    .await;
    assert!(app.addresses().tls);
    app.scenario()
        .unwrap()
        .replace("no-tls.toml", "[server]\ntls = false\n")
        .unwrap();
    let mut conn = PlainConn::greeted(app.addresses().smtp).await;
    assert!(!announces(&conn.ehlo("client.example").await, "STARTTLS"));
    conn.quit().await;
}

/// One new connection sends `count` messages from `from`; returns how many were accepted and
/// the first refusal (at MAIL).
async fn send(binary: &Binary, from: &str, count: usize) -> (usize, Option<Reply>) {
    let mut conn = PlainConn::greeted(binary.address("smtp")).await;
    conn.ehlo("client.example").await;
    let mut accepted = 0;
    for _ in 0..count {
        let mail = conn.command(&format!("MAIL FROM:<{from}>")).await;
        if mail.code != 250 {
            conn.quit().await;
            return (accepted, Some(mail));
        }
        conn.cmd("RCPT TO:<rcpt@dest.example>", 250, "2.1.5").await;
        let end = conn.data(b"Subject: limits\r\n\r\nx\r\n.\r\n").await;
        assert_eq!(end.code, 250, "{:?}", end.wire);
        accepted += 1;
    }
    conn.quit().await;
    (accepted, None)
}

#[track_caller]
fn assert_rate_limited(refusal: Option<Reply>) {
    let refusal = refusal.expect("a refusal");
    refusal.assert(451, "4.7.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_flags_enforces_200_per_account_and_300_per_ip_until_the_clock_moves() {
    let binary = serve(&[]);
    // 200 for one account (no AUTH: the account is MAIL FROM), then refused.
    let (accepted, refused) = send(&binary, "alice@example.org", 201).await;
    assert_eq!(accepted, 200);
    assert_rate_limited(refused);
    // Another account from the same IP: 100 more make the IP's 300, then refused.
    let (accepted, refused) = send(&binary, "bob@example.org", 101).await;
    assert_eq!(accepted, 100);
    assert_rate_limited(refused);
    // An hour later both windows are free again.
    let (status, body) = http_post(
        binary.address("http"),
        "/api/clock/advance",
        Some(r#"{"seconds": 3600}"#),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let (accepted, refused) = send(&binary, "alice@example.org", 1).await;
    assert_eq!((accepted, refused.is_none()), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_none_turns_them_off_and_a_scenario_limits_section_overrides_them() {
    let binary = serve(&["--limits", "none"]);
    let (accepted, refused) = send(&binary, "alice@example.org", 301).await;
    assert_eq!((accepted, refused.is_none()), (301, true));
    let (_, limits) = http_get(binary.address("http"), "/api/limits").await;
    let limits: Value = serde_json::from_str(&limits).unwrap();
    assert_eq!(limits["limits"]["per_account"], Value::Null, "{limits}");
    assert_eq!(limits["limits"]["per_ip"], Value::Null, "{limits}");

    // With no flag, the scenario's own [limits] decide, and only they.
    let (_dir, file) = scenario_file("[limits]\nper_account = { max = 2, per = \"1h\" }\n");
    let binary = serve(&["--scenario", &file]);
    let (accepted, refused) = send(&binary, "alice@example.org", 3).await;
    assert_eq!(accepted, 2);
    assert_rate_limited(refused);
    let (_, limits) = http_get(binary.address("http"), "/api/limits").await;
    let limits: Value = serde_json::from_str(&limits).unwrap();
    assert_eq!(limits["limits"]["per_account"]["max"], 2, "{limits}");
    assert_eq!(limits["limits"]["per_ip"], Value::Null, "{limits}");

    // And with no flag and no [limits], OVHcloud's.
    let binary = serve(&[]);
    let (_, limits) = http_get(binary.address("http"), "/api/limits").await;
    let limits: Value = serde_json::from_str(&limits).unwrap();
    assert_eq!(limits["limits"]["per_account"]["max"], 200, "{limits}");
    assert_eq!(limits["limits"]["per_ip"]["max"], 300, "{limits}");
}
