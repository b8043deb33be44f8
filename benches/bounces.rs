//! 100,000 later bounces due at once: how long failmail takes to make and store them all after
//! one clock jump, and how much memory that takes.
//!
//! `cargo bench --bench bounces -- [--bounces 100000]`. It schedules the bounces through the
//! same path the server takes (`Bounces::reserve`, then `Reservation::commit`), each for a
//! message with one `user_unknown+async` recipient, moves the clock past their due time, and times
//! `Bounces::send_due`, which makes every DSN (the `mail-builder` MIME writer), stores it in the
//! journal's message ring (bounded: 10,000 messages) and keeps it for `/api/bounces` (bounded:
//! 10,000). It prints the time against the 5 s target, the schedule's bytes while pending, and the
//! process's peak resident memory (VmHWM) before and after sending: the sending runs in batches
//! of 1,000, so the peak grows by about one batch and the kept rings, not by 100,000 messages.
//! Timings mean something only on a quiet machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use failmail::bounces::{BounceConfig, Bounces};
use failmail::clock::ManualClock;
use failmail::journal::{Journal, JournalConfig};
use failmail::smtp::policy::{Fate, Later};
use failmail::smtp::reply::{EnhancedStatus, Reply};
use failmail::smtp::session::{DsnEnvelope, DsnRecipient, Message};

const TARGET: Duration = Duration::from_secs(5);

fn bounces_wanted() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bounces" {
            return args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--bounces N");
        }
    }
    100_000
}

/// The process's peak resident memory, in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn message(n: usize, later: &Arc<Later>) -> Message {
    let data = format!(
        "From: <app@x.example>\r\nTo: <user_unknown+async@y.example>\r\nSubject: message {n}\r\nMessage-ID: <{n}@x.example>\r\n\r\nHello.\r\n"
    );
    Message {
        session_id: n as u64,
        queue_id: format!("Q{n:08}"),
        peer: "127.0.0.1:4000".parse().unwrap(),
        helo: Some("client.example".into()),
        auth_user: None,
        tls: false,
        mail_from: format!("bounces+{n}-user=x@app.test"),
        recipients: vec!["user_unknown+async@y.example".into()],
        data: Bytes::from(data),
        dsn: Some(Box::new(DsnEnvelope {
            ret: None,
            envid: None,
            recipients: vec![DsnRecipient {
                notify: None,
                orcpt: None,
                later: Some(later.clone()),
            }],
        })),
    }
}

fn main() {
    let wanted = bounces_wanted();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let clock = Arc::new(ManualClock::new(Duration::from_secs(1_800_000_000)));
    let journal = Arc::new(
        Journal::open(&JournalConfig {
            record_events: false,
            ..JournalConfig::default()
        })
        .expect("a journal in memory"),
    );
    let config = BounceConfig {
        max_pending: wanted,
        ..BounceConfig::default()
    };
    let bounces = Bounces::new(config, clock.clone(), journal.clone(), Arc::default());
    let reply = Reply::new(
        550,
        EnhancedStatus::parse("5.1.1"),
        &["Requested action not taken: mailbox unavailable"],
    )
    .expect("a reply");
    let later = Arc::new(Later {
        fate: Fate::Bounced {
            reply,
            catalog: Some("user_unknown"),
            after: Duration::from_secs(60),
            delay_notice: None,
            give_up: Duration::from_secs(60),
        },
        style: "postfix",
    });

    let scheduling = Instant::now();
    for n in 0..wanted {
        let reservation = bounces
            .reserve(&message(n, &later), "mx.failmail.test")
            .expect("room for every bounce")
            .expect("one bounce per message");
        reservation.commit(n as u64 + 1);
    }
    let scheduled_in = scheduling.elapsed();
    let pending_mib = bounces_pending_mib(&bounces);
    let peak_before = peak_mib();

    clock.advance(Duration::from_secs(120));
    let sending = Instant::now();
    let sent = runtime.block_on(bounces.send_due());
    let sent_in = sending.elapsed();
    let peak_after = peak_mib();

    assert_eq!(sent, wanted, "every bounce was due");
    assert!(bounces.list().0.is_empty(), "none left pending");
    let kept = journal.messages().list().len();
    println!("bounces: {wanted} scheduled in {scheduled_in:.2?} ({pending_mib:.1} MiB pending)");
    println!(
        "bounces: {sent} made and stored in {sent_in:.2?} ({:.0}/s); target < {TARGET:?}: {}",
        sent as f64 / sent_in.as_secs_f64(),
        if sent_in < TARGET { "met" } else { "MISSED" }
    );
    println!(
        "bounces: peak RSS {peak_before:.0} MiB before sending, {peak_after:.0} MiB after; {kept} kept in the message ring"
    );
}

/// The bytes the schedule holds, read from the metrics.
fn bounces_pending_mib(bounces: &Bounces) -> f64 {
    bounces
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("failmail_bounces_pending_bytes "))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |b| b / (1024.0 * 1024.0))
}
