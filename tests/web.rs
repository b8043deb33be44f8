//! The web page in a real browser: Debian's headless Chromium, driven by Selenium
//! (`tests/web/driver.py`, one check per test below), against failmail started in-process here.
//! Mail is sent with real clients (swaks, smtplib, smtp-source); what the page shows is asserted in
//! the browser, and what the page changed is asserted here, on the wire and through the API.
//!
//! Screenshots of each view are taken on the way: into a temporary folder, or into the folder
//! `FAILMAIL_SCREENSHOTS` names (`FAILMAIL_SCREENSHOTS=docs/screenshots cargo test --test web`
//! refreshes the README's).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::tools;
use common::PlainConn;
use failmail::app::Addresses;
use failmail::app::HttpConfig;
use failmail::scenario::catalog::Catalog;
use failmail::scenario::flavor::Flavor;
use failmail::{AppConfig, RunningApp};

const PYTHON: &str = "/usr/bin/python3";
/// How long one browser check may take, Chromium's start included.
const LIMIT: Duration = Duration::from_secs(240);

/// Whether the browser and the programs the checks use are here (when some are missing, one
/// skip line names them).
fn browser_here() -> bool {
    tools::need_all([
        &tools::CHROMIUM,
        &tools::CHROMEDRIVER,
        &tools::SELENIUM,
        &tools::SWAKS,
    ])
    .is_some()
}

/// Runs the browser check `check` against `app`; fails the test with the driver's report.
/// `false` when the test skipped itself for want of a program.
async fn drive(check: &str, app: &RunningApp, token: Option<&str>, extra: &[&str]) -> bool {
    drive_at(check, app.addresses(), token, extra).await
}

/// [`drive`] against the server at `addresses`.
async fn drive_at(check: &str, addresses: Addresses, token: Option<&str>, extra: &[&str]) -> bool {
    if !browser_here() {
        return false;
    }
    let temporary = tempfile::tempdir().unwrap();
    let shots = match std::env::var_os("FAILMAIL_SCREENSHOTS") {
        Some(dir) => common::repo_root().join(PathBuf::from(dir)),
        None => temporary.path().to_path_buf(),
    };
    std::fs::create_dir_all(&shots).unwrap();
    let mut command = Command::new(PYTHON);
    command
        .arg(common::repo_root().join("tests/web/driver.py"))
        .arg(check)
        .args(["--http", &addresses.http.expect("HTTP").to_string()])
        .args(["--smtp", &addresses.smtp.to_string()])
        .args(["--shots", shots.to_str().unwrap()]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    for arg in extra {
        command.args(["--arg", arg]);
    }
    let output = common::binary::run_tool(command, "the browser driver", LIMIT).await;
    assert!(
        output.status.success(),
        "browser check {check} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

async fn start() -> RunningApp {
    common::start(AppConfig::loopback()).await
}

#[tokio::test]
async fn a_refused_message_appears_live_with_its_transcript() {
    let app = start().await;
    drive("live_session", &app, None, &[]).await;
}

/// The list reads only what it needs; an open session's transcript is read on its own and
/// follows the session live, every command and reply, until it ends.
#[tokio::test]
async fn an_open_transcript_follows_its_session_live() {
    let app = start().await;
    drive("open_transcript", &app, None, &[]).await;
}

/// The server restarts on the same addresses while the page is open (the driver asks for it
/// with a file): the page notices that the stream names another run of the journal and reads
/// the new run's events from the start, showing its sessions only.
#[tokio::test]
async fn after_a_restart_the_page_shows_the_new_runs_sessions() {
    let app = start().await;
    let addresses = app.addresses();
    let signals = tempfile::tempdir().unwrap();
    let dir = signals.path().to_path_buf();
    let restarter = tokio::spawn(async move {
        // Bounded: two minutes at most.
        for _ in 0..2400 {
            if dir.join("restart").exists() {
                app.shutdown().await;
                let mut config = AppConfig::loopback();
                config.server.smtp = addresses.smtp;
                config.server.smtps = addresses.smtps;
                if let (Some(http), Some(addr)) = (config.http.as_mut(), addresses.http) {
                    http.addr = addr;
                }
                let again = common::start(config).await;
                std::fs::write(dir.join("restarted"), b"").unwrap();
                return Some(again);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app.shutdown().await;
        None
    });
    let ran = drive_at(
        "restart",
        addresses,
        None,
        &[signals.path().to_str().unwrap()],
    )
    .await;
    if !ran {
        std::fs::write(signals.path().join("restart"), b"").unwrap();
    }
    if let Some(again) = restarter.await.unwrap() {
        again.shutdown().await;
    }
}

#[tokio::test]
async fn a_rule_decided_refusal_names_its_rule_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[server]\nflavor = \"gmail\"\n\n[[rule]]\nname = \"gone mailbox\"\nrcpt = \"gone@*\"\nreply = \"user_unknown\"\n",
    )
    .unwrap();
    let mut config = AppConfig::loopback();
    config.scenario = Some(failmail::app::ScenarioConfig {
        path: Some(file.clone()),
        ..Default::default()
    });
    let app = common::start(config).await;
    let at = format!("{}:4", file.display());
    drive("rule_refusal", &app, None, &["gone mailbox", &at]).await;
}

#[tokio::test]
async fn the_limits_chart_moves_under_a_burst() {
    let app = common::start_toml(
        AppConfig::loopback(),
        "<inline>",
        "[limits]\nper_account = { max = 10, per = \"1h\" }\n",
    )
    .await;
    if !drive("limits_chart", &app, None, &[]).await {
        return;
    }
    let refused = app.journal().metrics().counters();
    assert_eq!(refused.messages, 40, "{refused:?}");
    assert_eq!(refused.limit_refusals, 20, "{refused:?}");
}

#[tokio::test]
async fn the_scenario_editor_shows_errors_in_place_and_applies_a_good_one() {
    let app = start().await;
    let smtp = app.addresses().smtp;
    // Before: the built-in scenario accepts blocked@.
    common::rcpt_reply(smtp, "a@example.com", "blocked@example.net")
        .await
        .assert_code(250);
    if !drive("scenario_editor", &app, None, &[]).await {
        return;
    }
    // After: the rule applied in the page refuses it, on the wire.
    let (variant, _) = Catalog::builtin()
        .get("mailbox_full")
        .unwrap()
        .variant(Flavor::Generic);
    let reply = common::rcpt_reply(smtp, "a@example.com", "blocked@example.net").await;
    assert_eq!(reply.code, variant.code, "{:?}", reply.wire);
    assert_eq!(reply.status(), Some(variant.status.to_string().as_str()));
    let live = app.scenario().unwrap().live();
    assert_eq!(live.policy.engine().scenario().origin, "<api>");
}

#[tokio::test]
async fn the_clock_buttons_move_the_server_clock() {
    let app = start().await;
    if !drive("clock_buttons", &app, None, &[]).await {
        return;
    }
    assert_eq!(
        app.clock().offset(),
        Duration::from_secs(60 + 3600 + 86400 + 7200)
    );
}

#[tokio::test]
async fn script_payloads_from_clients_never_run() {
    let app = start().await;
    if !drive("xss", &app, None, &[]).await {
        return;
    }
    // The payloads did reach the server as sent: the page had them to show.
    let messages = app.messages().list();
    assert_eq!(messages.len(), 1);
    assert!(messages[0]
        .message
        .helo
        .as_deref()
        .unwrap()
        .starts_with("<img"));
}

#[tokio::test]
async fn with_a_token_the_page_and_its_stream_refuse_requests_without_it() {
    let mut config = AppConfig::loopback();
    config.http = Some(HttpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: Some("s3cret-token".into()),
        hosts: Vec::new(),
    });
    let app = common::start(config).await;
    let http = app.addresses().http.unwrap();
    // The page itself is public code without data; the data and the stream need the token.
    let (status, page) = common::binary::http_get(http, "/").await;
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("<script type=\"module\""), "{page}");
    for path in [
        "/api/events/stream",
        "/api/counters/stream",
        "/api/messages",
    ] {
        let (status, _) = common::binary::http_get(http, path).await;
        assert!(status.contains("401"), "{path}: {status}");
    }
    drive("token", &app, Some("s3cret-token"), &[]).await;
}

#[tokio::test]
async fn a_cross_site_form_post_is_refused() {
    let app = start().await;
    let mut smtp = PlainConn::ready(app.addresses().smtp).await;
    smtp.deliver(
        "a@example.com",
        "b@example.net",
        b"Subject: keep me\r\n\r\nx\r\n.\r\n",
    )
    .await
    .assert_code(250);
    smtp.quit().await;
    if !drive("cross_site_post", &app, None, &[]).await {
        return;
    }
    assert_eq!(
        app.messages().list().len(),
        1,
        "a form on another site reset the server"
    );
}

/// A scenario with greylisting (for `grey@` only), a two-step sequence (`flaky@`: a 452, then
/// accepted) and a permanent refusal (`gone@`), served from a file; with the `file:line` of the
/// sequence rule.
async fn retries_app() -> (RunningApp, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retries.toml");
    std::fs::write(
        &file,
        "[greylisting]\ndelay = \"5m\"\nretry_window = \"1h\"\nrcpt = \"grey@*\"\n\n\
         [[rule]]\nname = \"flaky mailbox\"\nrcpt = \"flaky@*\"\nsequence = [\"mailbox_full\", \"accept\"]\n\n\
         [[rule]]\nname = \"gone\"\nrcpt = \"gone@*\"\nreply = \"user_unknown\"\n",
    )
    .unwrap();
    let mut config = AppConfig::loopback();
    config.scenario = Some(failmail::app::ScenarioConfig {
        path: Some(file.clone()),
        ..Default::default()
    });
    let at = format!("{}:6", file.display());
    (common::start(config).await, dir, at)
}

#[tokio::test]
async fn the_retry_report_shows_each_attempt_and_verdict_live() {
    let (app, _dir, at) = retries_app().await;
    if !drive("retry_report", &app, None, &["flaky mailbox", &at]).await {
        return;
    }
    // What the page showed is what the server judged.
    let http = app.addresses().http.unwrap();
    let (_, report) = common::binary::http_get(http, "/api/report").await;
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["messages"].as_array().unwrap().len(), 1, "{report}");
}

#[tokio::test]
async fn greylisting_and_sequences_in_progress_show_on_the_limits_view() {
    let (app, _dir, at) = retries_app().await;
    drive(
        "greylist_and_sequences",
        &app,
        None,
        &["flaky mailbox", &at],
    )
    .await;
}

#[tokio::test]
async fn later_bounces_show_live_with_a_token_and_their_dsns_are_marked_in_messages() {
    let mut config = AppConfig::loopback();
    config.http = Some(HttpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: Some("bounce-token".into()),
        hosts: Vec::new(),
    });
    let app = common::start(config).await;
    if !drive("bounces", &app, Some("bounce-token"), &[]).await {
        return;
    }
    let (pending, sent) = app.bounces().list();
    assert_eq!(sent.len(), 2, "the page showed two sent");
    assert!(
        pending.iter().all(|n| n.kind.as_str() != "failed"),
        "{pending:?}"
    );
}

#[tokio::test]
async fn ten_thousand_sessions_render_only_the_rows_in_view() {
    let Some(_) = tools::need(&tools::SMTP_SOURCE) else {
        return;
    };
    let mut config = AppConfig::loopback();
    // About 15 events per session: keep them all.
    config.journal.event_capacity = 200_000;
    let app = common::start(config).await;
    drive("many_sessions", &app, None, &["10000"]).await;
}

#[tokio::test]
async fn messages_and_catalog_views() {
    let app = start().await;
    drive("views", &app, None, &[]).await;
}

#[test]
fn the_readme_shows_every_view() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    for name in [
        "sessions",
        "transcript",
        "message",
        "messages-dsn",
        "bounces",
        "report",
        "limits",
        "limits-state",
        "catalog",
        "scenario-error",
        "clock",
        "sessions-mobile",
        "token",
        "xss-session",
        "xss-message",
    ] {
        let path = format!("docs/screenshots/{name}.png");
        assert!(
            readme.contains(&format!("]({path})")),
            "README.md does not show {path}"
        );
        let bytes = std::fs::read(common::repo_root().join(&path))
            .unwrap_or_else(|e| panic!("{path}: {e} (FAILMAIL_SCREENSHOTS=docs/screenshots cargo test --test web takes it)"));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{path} is a PNG");
    }
}
