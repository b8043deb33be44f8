//! Postfix's `smtp-source` sends 2,000 messages over 20 parallel sessions to the in-process
//! server: no error, and exactly 2,000 messages accepted, each with the right envelope.

mod common;

use std::time::Duration;

use common::binary::run_tool;
use common::*;

const MESSAGES: usize = 2_000;
const SESSIONS: usize = 20;
/// Payload octets per message (`-l`), on top of the headers smtp-source writes.
const PAYLOAD: usize = 2_048;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_source_2000_messages_over_20_sessions() {
    let Some(smtp_source) = tools::need(&tools::SMTP_SOURCE) else {
        return;
    };
    let server = start(sink_with(|c| c.journal.message_capacity = MESSAGES)).await;
    let target = format!("127.0.0.1:{}", server.addresses().smtp.port());
    let args = [
        "-s".to_owned(),
        SESSIONS.to_string(),
        "-m".to_owned(),
        MESSAGES.to_string(),
        "-l".to_owned(),
        PAYLOAD.to_string(),
        "-c".to_owned(),
        "-f".to_owned(),
        "a@x.example".to_owned(),
        "-t".to_owned(),
        "b@y.example".to_owned(),
        target,
    ];
    let mut command = std::process::Command::new(smtp_source);
    command.args(&args);
    let output = run_tool(command, "smtp-source", Duration::from_secs(300)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "smtp-source {} failed: {}\nstderr:\n{stderr}",
        args.join(" "),
        output.status
    );
    assert!(
        stderr.trim().is_empty(),
        "smtp-source wrote errors:\n{stderr}"
    );
    // -c prints a running count of completed DATA commands; the last one is the total.
    let last_count = stdout
        .split(['\r', '\n'])
        .filter_map(|field| field.trim().parse::<usize>().ok())
        .next_back();
    assert_eq!(
        last_count,
        Some(MESSAGES),
        "smtp-source's own count: {stdout:?}"
    );

    assert_eq!(server.messages().accepted(), MESSAGES as u64);
    let messages = server.messages().list();
    assert_eq!(messages.len(), MESSAGES);
    let mut ids = std::collections::HashSet::new();
    for stored in &messages {
        let message = &stored.message;
        assert_eq!(message.mail_from, "a@x.example");
        assert_eq!(message.recipients, ["b@y.example"]);
        assert!(
            message.data.len() > PAYLOAD && message.data.ends_with(b"\r\n"),
            "message of {} octets",
            message.data.len()
        );
        assert!(ids.insert(message.queue_id.clone()), "queue ids are unique");
    }
    // smtp-source closes each session after its message: nothing is left open.
    assert_eq!(dropped_sessions(&server).await, 0);
    server.shutdown().await;
}

/// Waits (bounded) for the connections to be released and returns how many are still open.
async fn dropped_sessions(server: &failmail::RunningApp) -> usize {
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    while server.open_connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.open_connections()
}
