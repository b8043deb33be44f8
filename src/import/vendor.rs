//! The human-readable part of a bounce, read per recipient: which reply each failed recipient
//! got and after which command. The formats: Postfix's `<rcpt>: host … said: … (in reply to RCPT
//! TO command)`, Exim's `SMTP error from remote mail server after RCPT TO:<rcpt>:`, Sendmail's
//! `>>> RCPT To:` / `<<< 550 …` transcript and `(reason: …)`, qmail's `does not like recipient.
//! Remote host said:`, Exchange's `Remote Server returned '…'`, Zoho's `ERROR_CODE`, MTA log
//! lines (`to=<rcpt>, … status=bounced (host … said: …)`, Exim's `** rcpt … SMTP error …`) and a
//! bare reply transcript (`550-5.1.1 … / 550 5.1.1 …`), optionally after the client's commands.

use super::reply::{find_reply, fold, reply_start, FoundReply};
use crate::smtp::policy::Phase;

/// One failure told by the text: the recipient (when it names one), the reply, the phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// The recipient the text ties the reply to.
    pub rcpt: Option<String>,
    /// The reply.
    pub reply: FoundReply,
    /// The phase the text names, if it names one.
    pub phase: Option<Phase>,
}

/// Every failure `text` tells, in order.
pub(super) fn records(text: &str) -> Vec<Record> {
    let mut found = Vec::new();
    // The last recipient named by a paragraph without a reply ("… to a@b for the following
    // reason:"), for a reply paragraph that names none.
    let mut mentioned: Option<String> = None;
    for chunk in chunks(text) {
        let Some(reply) = find_reply(&chunk).filter(|r| r.code >= 400) else {
            mentioned = first_address(&chunk)
                .filter(|a| !is_a_mailer_address(a))
                .or(mentioned);
            continue;
        };
        found.push(Record {
            rcpt: recipient(&chunk).or_else(|| mentioned.clone()),
            phase: phase(&chunk),
            reply,
        });
    }
    found
}

/// Postmasters and mailer daemons are named in bounces, but are no failed recipients.
fn is_a_mailer_address(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("").to_ascii_lowercase();
    matches!(
        local.as_str(),
        "postmaster" | "mailer-daemon" | "root" | "abuse"
    )
}

/// The text cut into pieces that each tell of one recipient: blank lines separate, and so does
/// a line that starts a new recipient (an address alone, `<rcpt>:`, a log line of its own).
fn chunks(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        // A reply that ends with the recipient's address on a line of its own goes on.
        let repeats = address_line(line)
            .is_some_and(|a| first_address(&current).is_some_and(|b| a.eq_ignore_ascii_case(&b)));
        let starts_new = line.trim().is_empty() || starts_a_recipient(line) && !repeats;
        if starts_new && !current.trim().is_empty() {
            chunks.push(std::mem::take(&mut current));
        }
        if !line.trim().is_empty() {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        chunks.push(current);
    }
    join_continuations(chunks)
}

/// A chunk that only names a recipient (qmail's `<rcpt>:` before its paragraph, Sendmail's
/// address before `(reason: …)` on the next lines) joins the chunk after it; a Sendmail
/// transcript (`... while talking to`) joins the chunk before it when it names no recipient.
fn join_continuations(chunks: Vec<String>) -> Vec<String> {
    let mut joined: Vec<String> = Vec::with_capacity(chunks.len());
    let mut pending: Option<String> = None;
    for chunk in chunks {
        let chunk = match pending.take() {
            Some(head) => head + &chunk,
            None => chunk,
        };
        if reply_start(&chunk).is_none() && only_an_address(&chunk) {
            pending = Some(chunk);
        } else {
            joined.push(chunk);
        }
    }
    joined.extend(pending);
    joined
}

/// Whether a chunk is nothing but an address line.
fn only_an_address(chunk: &str) -> bool {
    let mut lines = chunk.lines().filter(|l| !l.trim().is_empty());
    matches!((lines.next(), lines.next()), (Some(line), None) if address_line(line).is_some())
}

/// Whether `line` starts a new recipient's part.
fn starts_a_recipient(line: &str) -> bool {
    address_line(line).is_some()
        || line.contains(" status=") && line.contains("to=<")
        || line.trim_start().starts_with("** ")
        || postfix_recipient(line).is_some()
}

/// `a@b`, `<a@b>`, `<a@b>:`, `"a@b":` alone on a line, indented by two spaces at most (Exim
/// lists recipients indented by two and their details by four; an address indented deeper
/// continues the text above it). Exim's unqualified `  kijitora` has no `@` and is not taken.
fn address_line(line: &str) -> Option<String> {
    if line.len() - line.trim_start().len() > 2 {
        return None;
    }
    let trimmed = line.trim();
    let bare = trimmed
        .trim_end_matches(':')
        .trim_matches(['<', '>', '"'])
        .trim();
    let is_address = !bare.is_empty()
        && bare.contains('@')
        && !bare.contains([' ', '\t', '<', '>', '(', ')', ',', ';', '\''])
        && !bare.starts_with('@')
        && !bare.ends_with('@');
    is_address.then(|| bare.to_owned())
}

/// Postfix's `<a@b>: host …` / `<a@b> (expanded from …): …`.
fn postfix_recipient(line: &str) -> Option<String> {
    let rest = line.strip_prefix('<')?;
    let (address, after) = rest.split_once('>')?;
    let is_postfix = after.starts_with(": ") || after.starts_with(" (expanded from");
    (is_postfix && address.contains('@') && !address.contains(' ')).then(|| address.to_owned())
}

/// The recipient a chunk names: in a log line's `to=<…>`, a Postfix or address line, an SMTP
/// command's `RCPT TO:<…>`, else the first address before the reply.
fn recipient(chunk: &str) -> Option<String> {
    if let Some(at) = chunk.find("to=<") {
        let rest = &chunk[at + 4..];
        return rest.split_once('>').map(|(a, _)| a.to_owned());
    }
    for line in chunk.lines() {
        if let Some(found) = postfix_recipient(line).or_else(|| address_line(line)) {
            return Some(found);
        }
    }
    let lower = chunk.to_ascii_lowercase();
    if let Some(at) = lower.find("rcpt to:<") {
        let rest = &chunk[at + "rcpt to:<".len()..];
        return rest.split_once('>').map(|(a, _)| a.to_owned());
    }
    let before = &chunk[..reply_start(chunk).unwrap_or(chunk.len())];
    first_address(&without_senders(before))
}

/// `text` without its `MAIL FROM:<…>` arguments: the sender is no recipient.
fn without_senders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("mail from:<") {
        out.push_str(&rest[..at]);
        rest = rest[at..].split_once('>').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

/// The first `local@domain` token in `text`.
fn first_address(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || "<>\"'(),;:[]".contains(c))
        .find(|t| {
            let (local, domain) = t.split_once('@').unwrap_or(("", ""));
            !local.is_empty() && domain.contains('.') && !domain.ends_with('.')
        })
        .map(str::to_owned)
}

/// The phase a chunk names: Postfix's `in reply to … command`, Exim's `after …`, `SMTP:RCPT
/// host …`, qmail's wording, else the last client command before the reply.
fn phase(chunk: &str) -> Option<Phase> {
    let flat = fold(chunk).to_ascii_lowercase();
    if let Some(at) = flat.find("in reply to ") {
        return command_phase(&flat[at + "in reply to ".len()..]);
    }
    if let Some(at) = flat.find("smtp error from remote ") {
        let rest = &flat[at..];
        if let Some(after) = rest.find(" after ").or_else(|| rest.find(" for ")) {
            let words = rest[after..]
                .trim_start_matches(" after ")
                .trim_start_matches(" for ");
            return command_phase(words);
        }
    }
    // `SMTP:RCPT host 192.0.2.8: 553 5.3.0 …`, as some Delivery Status Notifications write
    // the command a reply answered (Sisimai reads it so: lib/Sisimai/Lhost/X3.pm).
    if let Some(at) = flat.find("smtp:") {
        let named = &flat[at + "smtp:".len()..];
        if named.split(' ').nth(1) == Some("host") {
            if let Some(phase) = command_phase(named) {
                return Some(phase);
            }
        }
    }
    for (words, phase) in [
        ("does not like recipient", Phase::Rcpt),
        ("does not like sender", Phase::Mail),
        ("failed after i sent the message", Phase::DataEnd),
        ("refused to talk to me", Phase::Connect),
    ] {
        if flat.contains(words) {
            return Some(phase);
        }
    }
    last_command(chunk)
}

/// The phase an SMTP command's name stands for, from the start of `words`.
fn command_phase(words: &str) -> Option<Phase> {
    let words = words.trim_start_matches("pipelined ");
    let table = [
        ("rcpt", Phase::Rcpt),
        ("mail", Phase::Mail),
        ("end of data", Phase::DataEnd),
        ("end of text", Phase::DataEnd),
        ("data", Phase::Data),
        ("text", Phase::DataEnd),
        ("bdat", Phase::DataEnd),
        ("initial connection", Phase::Connect),
        ("connect", Phase::Connect),
        ("ehlo", Phase::Ehlo),
        ("helo", Phase::Ehlo),
        ("auth", Phase::Auth),
    ];
    table
        .iter()
        .find(|(name, _)| words.starts_with(name))
        .map(|(_, phase)| *phase)
}

/// The last client command before the reply in a transcript: `>>> RCPT To:<…>`, `C: DATA`,
/// `RCPT TO:<…>` alone on a line; `.` ends the data.
fn last_command(chunk: &str) -> Option<Phase> {
    let before = &chunk[..reply_start(chunk)?];
    let mut phase = None;
    for line in before.lines() {
        let line = line
            .trim()
            .trim_start_matches(">>>")
            .trim_start_matches("C:")
            .trim_start_matches("->")
            .trim();
        let upper = line.to_ascii_uppercase();
        let found = if upper.starts_with("RCPT TO") {
            Some(Phase::Rcpt)
        } else if upper.starts_with("MAIL FROM") {
            Some(Phase::Mail)
        } else if upper == "DATA" {
            Some(Phase::Data)
        } else if upper == "." || upper.starts_with("BDAT") {
            Some(Phase::DataEnd)
        } else if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            Some(Phase::Ehlo)
        } else {
            None
        };
        phase = found.or(phase);
    }
    phase
}

#[cfg(test)]
#[path = "vendor_tests.rs"]
mod tests;
