//! Three real SMTP clients (lettre, Python's smtplib, swaks) deliver a message whose body has
//! lines starting with dots, over plain SMTP, STARTTLS and implicit TLS, with AUTH PLAIN and
//! LOGIN; the server must keep exactly the bytes the client meant to send.

mod common;

use std::process::Command;

use common::binary::run_tool;
use common::*;
use failmail::journal::StoredMessage;
use failmail::server::tls::DEV_CA_PEM;
use failmail::RunningApp;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

const FROM: &str = "alice@client.example";
const TO: [&str; 2] = ["bob@failmail.test", "carol@failmail.test"];
const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    StartTls,
    Smtps,
}

/// Checks the one message the server holds: exact bytes and envelope; returns it.
#[track_caller]
fn assert_received(
    server: &RunningApp,
    raw: &[u8],
    transport: Transport,
    auth_user: Option<&str>,
    queue_id: &str,
) -> std::sync::Arc<StoredMessage> {
    let messages = server.messages().list();
    assert_eq!(messages.len(), 1, "exactly one message stored");
    let stored = messages[0].clone();
    let message = &stored.message;
    let expected = received_form(raw);
    assert!(
        message.data[..] == expected[..],
        "received bytes differ from what the client sent\n--- received\n{}\n--- sent\n{}",
        show(&message.data),
        show(&expected)
    );
    assert_eq!(message.mail_from, FROM);
    assert_eq!(message.recipients, TO);
    assert_eq!(message.helo.as_deref(), Some("client.example"));
    assert_eq!(message.tls, transport != Transport::Plain, "TLS flag");
    assert_eq!(message.auth_user.as_deref(), auth_user, "AUTH identity");
    assert_eq!(message.queue_id, queue_id, "queue id in the 250 reply");
    stored
}

fn port(server: &RunningApp, transport: Transport) -> u16 {
    let addresses = server.addresses();
    match transport {
        Transport::Smtps => addresses.smtps.expect("SMTPS listener").port(),
        _ => addresses.smtp.port(),
    }
}

// ---------------------------------------------------------------------------------------------
// lettre

fn lettre_tls_parameters() -> TlsParameters {
    TlsParameters::builder("localhost".to_owned())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(Certificate::from_pem(DEV_CA_PEM).expect("dev CA parses"))
        .build_rustls()
        .expect("TLS parameters")
}

async fn lettre_case(transport: Transport, mechanism: Option<Mechanism>) {
    let server = start_loopback().await;
    let tls = match transport {
        Transport::Plain => Tls::None,
        Transport::StartTls => Tls::Required(lettre_tls_parameters()),
        Transport::Smtps => Tls::Wrapper(lettre_tls_parameters()),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port(&server, transport))
        .hello_name(ClientId::Domain("client.example".to_owned()))
        .timeout(Some(IO_TIMEOUT))
        .tls(tls);
    if let Some(mechanism) = mechanism {
        builder = builder
            .credentials(Credentials::new(USER.to_owned(), PASSWORD.to_owned()))
            .authentication(vec![mechanism]);
    }
    let mailer = builder.build();
    let tag = format!("lettre-{transport:?}-{mechanism:?}");
    let raw = dotted_message(&tag);
    let envelope = Envelope::new(
        Some(FROM.parse().unwrap()),
        TO.iter().map(|to| to.parse().unwrap()).collect(),
    )
    .unwrap();
    let response = tokio::time::timeout(IO_TIMEOUT, mailer.send_raw(&envelope, &raw))
        .await
        .expect("lettre finishes within 10 s")
        .unwrap_or_else(|e| panic!("{tag}: lettre send failed: {e}"));
    assert_eq!(response.code().to_string(), "250", "{tag}");
    let first = response.first_line().expect("250 has text");
    assert!(first.starts_with("2.0.0 "), "{tag}: {first:?}");
    let queue_id = &queue_id_in(first);
    let auth_user = mechanism.map(|_| USER);
    assert_received(&server, &raw, transport, auth_user, queue_id);
    server.shutdown().await;
}

#[tokio::test]
async fn lettre_plain() {
    lettre_case(Transport::Plain, None).await;
}

#[tokio::test]
async fn lettre_plain_auth_plain() {
    lettre_case(Transport::Plain, Some(Mechanism::Plain)).await;
}

#[tokio::test]
async fn lettre_starttls() {
    lettre_case(Transport::StartTls, None).await;
}

#[tokio::test]
async fn lettre_starttls_auth_plain() {
    lettre_case(Transport::StartTls, Some(Mechanism::Plain)).await;
}

#[tokio::test]
async fn lettre_starttls_auth_login() {
    lettre_case(Transport::StartTls, Some(Mechanism::Login)).await;
}

#[tokio::test]
async fn lettre_implicit_tls() {
    lettre_case(Transport::Smtps, None).await;
}

#[tokio::test]
async fn lettre_implicit_tls_auth_login() {
    lettre_case(Transport::Smtps, Some(Mechanism::Login)).await;
}

// ---------------------------------------------------------------------------------------------
// Python smtplib (tests/smtplib_client.py)

/// How long one external client may take.
const TOOL_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn smtplib_case(transport: Transport, auth: &str) {
    let Some(python) = tools::need(&tools::PYTHON3) else {
        return;
    };
    let server = start_loopback().await;
    let tag = format!("smtplib-{transport:?}-{auth}");
    let raw = dotted_message(&tag);
    let dir = tempfile::tempdir().unwrap();
    let message_file = dir.path().join("message.eml");
    std::fs::write(&message_file, &raw).unwrap();
    let mode = match transport {
        Transport::Plain => "plain",
        Transport::StartTls => "starttls",
        Transport::Smtps => "smtps",
    };
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("tests/smtplib_client.py"))
        .arg(mode)
        .arg(auth)
        .arg(port(&server, transport).to_string())
        .arg(ca_path())
        .arg(&message_file);
    let output = run_tool(command, "python3 tests/smtplib_client.py", TOOL_LIMIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{tag}: smtplib failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DATA "))
        .unwrap_or_else(|| panic!("{tag}: no DATA line in {stdout:?}"));
    assert!(
        line.starts_with("250 2.0.0 "),
        "{tag}: unexpected reply to the end of data {line:?}"
    );
    let queue_id = &queue_id_in(line);
    let auth_user = (auth != "none").then_some(USER);
    assert_received(&server, &raw, transport, auth_user, queue_id);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_plain() {
    smtplib_case(Transport::Plain, "none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_starttls_login_plain() {
    smtplib_case(Transport::StartTls, "plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_starttls_auth_login() {
    smtplib_case(Transport::StartTls, "login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_implicit_tls_login_plain() {
    smtplib_case(Transport::Smtps, "plain").await;
}

// ---------------------------------------------------------------------------------------------
// swaks

async fn swaks_case(transport: Transport, auth: Option<&str>) {
    let Some(swaks) = tools::need(&tools::SWAKS) else {
        return;
    };
    let server = start_loopback().await;
    let tag = format!("swaks-{transport:?}-{auth:?}");
    let raw = dotted_message(&tag);
    let dir = tempfile::tempdir().unwrap();
    let message_file = dir.path().join("message.eml");
    std::fs::write(&message_file, &raw).unwrap();
    let mut command = Command::new(swaks);
    command
        .args(["--server", "127.0.0.1", "--port"])
        .arg(port(&server, transport).to_string())
        .args(["--helo", "client.example", "--from", FROM, "--to"])
        .arg(TO.join(","))
        .arg("--data")
        .arg(format!("@{}", message_file.display()))
        .args(["--timeout", "10"]);
    let tls_flag = match transport {
        Transport::Plain => None,
        Transport::StartTls => Some("--tls"),
        Transport::Smtps => Some("--tls-on-connect"),
    };
    if let Some(flag) = tls_flag {
        command
            .arg(flag)
            .args(["--tls-verify", "--tls-sni", "localhost", "--tls-ca-path"])
            .arg(ca_path());
    }
    if let Some(mechanism) = auth {
        command.args([
            "--auth",
            mechanism,
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
        ]);
    }
    let output = run_tool(command, "swaks", TOOL_LIMIT).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{tag}: swaks failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // swaks prints what it received as "<-  " (plain) or "<~  " (TLS) followed by the line.
    let marker = if transport == Transport::Plain {
        "<-  "
    } else {
        "<~  "
    };
    let queued = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix(marker)?
                .strip_prefix("250 2.0.0 ")
                .filter(|text| text.contains("queued as "))
        })
        .unwrap_or_else(|| panic!("{tag}: no queued reply in the transcript:\n{stdout}"));
    let queue_id = &queue_id_in(queued);
    if transport == Transport::StartTls {
        assert!(
            stdout.contains("-> STARTTLS") && stdout.contains("<-  220 2.0.0"),
            "{tag}: swaks used STARTTLS:\n{stdout}"
        );
    }
    assert_received(&server, &raw, transport, auth.map(|_| USER), queue_id);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_plain() {
    swaks_case(Transport::Plain, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_auth_plain() {
    swaks_case(Transport::StartTls, Some("PLAIN")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_auth_login() {
    swaks_case(Transport::StartTls, Some("LOGIN")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_implicit_tls_auth_login() {
    swaks_case(Transport::Smtps, Some("LOGIN")).await;
}
