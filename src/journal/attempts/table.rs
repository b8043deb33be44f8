//! The retry report as text: one line per message and recipient (attempts, replies, delays,
//! status, verdicts), then every failed and pending verdict with its reason.

use std::fmt::Write as _;

use super::report::{duration_text, Judgement, RecipientReport, Report};
use crate::scenario::catalog::iso_time;

/// The widest a column but the last gets; longer cells are cut with `…`.
const MAX_CELL: usize = 40;

/// The whole report as `failmail report` prints it.
pub(super) fn render(report: &Report) -> String {
    let header = [
        "MESSAGE",
        "RECIPIENT",
        "TRIES",
        "REPLIES",
        "DELAYS",
        "STATUS",
        "VERDICTS",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for message in &report.messages {
        for recipient in &message.recipients {
            rows.push([
                message.name(),
                recipient.rcpt.clone().unwrap_or_else(|| "-".to_owned()),
                recipient.attempts_total.to_string(),
                replies(recipient),
                delays(recipient),
                recipient.status.clone(),
                verdicts(recipient),
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for row in &mut rows {
        for (at, (cell, width)) in row.iter_mut().zip(&mut widths).enumerate() {
            // The verdicts, last, are never cut.
            if at < 6 && cell.chars().count() > MAX_CELL {
                *cell = cell.chars().take(MAX_CELL - 1).collect::<String>() + "…";
            }
            *width = (*width).max(cell.chars().count());
        }
    }
    let recipients = rows.len();
    let mut out = format!(
        "failmail retry report at {}: {} message(s), {recipients} recipient(s); {} failed, {} pending\n",
        iso_time(report.now_ms),
        report.messages.len(),
        report.failed.len(),
        report.pending.len()
    );
    line(&mut out, &header.map(str::to_owned), &widths);
    for row in &rows {
        line(&mut out, row, &widths);
    }
    for (title, lines) in [("failed", &report.failed), ("pending", &report.pending)] {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{title}:");
            for text in lines {
                let _ = writeln!(out, "  {text}");
            }
        }
    }
    if report.messages_dropped > 0 || report.attempts_dropped > 0 {
        let _ = writeln!(
            out,
            "\n{} message(s) fell out of the history and {} attempt(s) were not kept",
            report.messages_dropped, report.attempts_dropped
        );
    }
    out.push_str(if report.ok {
        "\nok: no verdict failed\n"
    } else {
        "\nFAILED: a verdict failed\n"
    });
    out
}

/// One row, columns padded (TRIES right-aligned), trailing spaces trimmed.
fn line(out: &mut String, cells: &[String; 7], widths: &[usize; 7]) {
    let mut text = String::new();
    for (at, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let pad = width.saturating_sub(cell.chars().count());
        if at == 2 {
            text.push_str(&" ".repeat(pad));
            text.push_str(cell);
        } else {
            text.push_str(cell);
            text.push_str(&" ".repeat(pad));
        }
        text.push_str("  ");
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// The reply of each kept attempt, runs folded: `451 451 250`, `452×6`.
fn replies(recipient: &RecipientReport) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for entry in &recipient.attempts {
        let ending = &entry.ending;
        let word = match (ending.result.as_str(), ending.code) {
            ("reply_lost", _) => "lost".to_owned(),
            ("no_reply", _) => "none".to_owned(),
            (_, Some(code)) => code.to_string(),
            (result, None) => result.to_owned(),
        };
        match runs.last_mut() {
            Some((last, count)) if *last == word => *count += 1,
            _ => runs.push((word, 1)),
        }
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(word, count)| match count {
            1 => word,
            n => format!("{word}×{n}"),
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

fn delays(recipient: &RecipientReport) -> String {
    if recipient.delays_ms.is_empty() {
        return "-".to_owned();
    }
    let parts: Vec<String> = recipient
        .delays_ms
        .iter()
        .map(|d| duration_text(*d))
        .collect();
    parts.join(" ")
}

/// `ok`, or the failed and pending verdicts by name.
fn verdicts(recipient: &RecipientReport) -> String {
    let named = |wanted: Judgement| -> Vec<&str> {
        recipient
            .verdicts
            .named()
            .filter(|(_, v)| v.result == wanted)
            .map(|(name, _)| name)
            .collect()
    };
    let (failed, pending) = (named(Judgement::Fail), named(Judgement::Pending));
    let mut parts = Vec::new();
    if !failed.is_empty() {
        parts.push(format!("FAIL {}", failed.join(",")));
    }
    if !pending.is_empty() {
        parts.push(format!("pending {}", pending.join(",")));
    }
    if parts.is_empty() {
        "ok".to_owned()
    } else {
        parts.join("; ")
    }
}
