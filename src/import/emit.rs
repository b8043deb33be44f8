//! Writing imported failures out: as a new scenario, as rules added to an existing scenario
//! (edited with the `toml_edit` crate, so its comments, order and layout stay as they were), or
//! as magic addresses. Every rule is checked by the scenario compiler before it is written.
//!
//! A synchronous failure becomes a `reply` (or a `sequence`) at its phase; an asynchronous one a
//! later bounce, `bounce = { reply = { code, status, text }, after = "1m" }` (with
//! `delay_notice` and `give_up` for a delay notice or an expiry), or a `+async` magic address.
//! The rule's comment names the file, the MTA that reported it, and which of the two was
//! chosen and why.

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::timing::{duration_text, Timing};
use super::{Bounce, Failure, ImportError, StatusFrom};
use crate::scenario::catalog::Catalog;
use crate::scenario::compile::Scenario;
use crate::scenario::flavor::Flavor;
use crate::scenario::later::DEFAULT_AFTER;
use crate::smtp::policy::Phase;

/// A new scenario holding a rule for every failure; with the failures the compiler refused, one
/// sentence each.
pub fn new_scenario(bounces: &[Bounce]) -> (String, Vec<String>) {
    let mut doc = DocumentMut::new();
    doc.decor_mut().set_prefix(
        "# Imported by `failmail import`: each rule gives one recipient the exact reply its\n\
         # bounce quotes: at the SMTP phase the bounce names, or, where the failure came after\n\
         # the message was accepted, as a bounce (a DSN) a minute after a 250. Serve it with\n\
         # `failmail serve --scenario FILE`.\n",
    );
    let problems = add_rules(&mut doc, bounces);
    (doc.to_string(), problems)
}

/// `existing` (a scenario's text) with a rule added for every failure, its comments kept; the
/// result must load as a scenario, else nothing is added.
pub fn add_to_scenario(
    origin: &str,
    existing: &str,
    bounces: &[Bounce],
) -> Result<(String, Vec<String>), ImportError> {
    let refused = |why: String| ImportError::Scenario {
        file: origin.to_owned(),
        why,
    };
    let mut doc: DocumentMut = existing
        .parse()
        .map_err(|e: toml_edit::TomlError| refused(format!("not valid TOML: {e}")))?;
    if doc.get("rule").is_some_and(|r| !r.is_array_of_tables()) {
        return Err(refused(
            "`rule` is not a list of [[rule]] tables".to_owned(),
        ));
    }
    let problems = add_rules(&mut doc, bounces);
    let text = doc.to_string();
    Scenario::parse(origin, &text)
        .map_err(|e| refused(format!("the result would not load: {e}")))?;
    Ok((text, problems))
}

/// Appends a `[[rule]]` per failure that the compiler takes; returns why the others were not.
fn add_rules(doc: &mut DocumentMut, bounces: &[Bounce]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rules = ArrayOfTables::new();
    for bounce in bounces {
        for failure in &bounce.failures {
            let rule = rule_table(bounce, failure);
            let mut alone = DocumentMut::new();
            let mut one = ArrayOfTables::new();
            one.push(rule.clone());
            alone.insert("rule", Item::ArrayOfTables(one));
            match Scenario::parse(&bounce.origin, &alone.to_string()) {
                Ok(_) => rules.push(rule),
                Err(e) => problems.push(format!(
                    "{}: {}: cannot be served: {}",
                    bounce.origin,
                    failure.rcpt.as_deref().unwrap_or("the reply"),
                    e.message
                )),
            }
        }
    }
    match doc.get_mut("rule").and_then(Item::as_array_of_tables_mut) {
        Some(existing) => existing.extend(rules),
        None => {
            doc.insert("rule", Item::ArrayOfTables(rules));
        }
    }
    problems
}

/// One failure's `[[rule]]`, its comment citing the bounce.
fn rule_table(bounce: &Bounce, failure: &Failure) -> Table {
    let mut table = Table::new();
    table.decor_mut().set_prefix(comment(bounce, failure));
    let rcpt = failure.rcpt.as_deref().unwrap_or("*");
    table.insert(
        "name",
        value(format!("{}: {rcpt}", file_name(&bounce.origin))),
    );
    let last = reply_value(failure.code, &failure.status.to_string(), &failure.lines);
    if failure.decision.timing == Timing::Later {
        // The next hop's reply, quoted in the DSN as that host said it: without an enhanced
        // status code when neither it nor the bounce gave one (the DSN's Status is then X.0.0).
        let last = match failure.status_from {
            StatusFrom::CodeClass => reply_without_status(failure.code, &failure.lines),
            _ => last,
        };
        table.insert("rcpt", value(rcpt_pattern(failure.rcpt.as_deref())));
        table.insert("bounce", value(later_bounce(failure, last)));
        return table;
    }
    // Before RCPT no recipient is known: the rule matches every transaction there.
    if failure.phase >= Phase::Rcpt {
        table.insert("rcpt", value(rcpt_pattern(failure.rcpt.as_deref())));
    }
    table.insert("at", value(failure.phase.as_str()));
    if failure.earlier.is_empty() {
        table.insert("reply", value(last));
    } else {
        let mut steps = Array::new();
        for earlier in &failure.earlier {
            let status = earlier
                .status
                .map_or_else(|| format!("{}.0.0", earlier.code / 100), |s| s.to_string());
            steps.push(reply_value(earlier.code, &status, &earlier.lines));
        }
        steps.push(last);
        table.insert("sequence", value(steps));
    }
    table
}

/// `{ reply = {…}, after = "1m" }`, with the delay notice and the give-up a delay or an expiry
/// shows.
fn later_bounce(failure: &Failure, reply: Value) -> Value {
    let mut bounce = InlineTable::new();
    bounce.insert("reply", reply);
    bounce.insert("after", duration_text(DEFAULT_AFTER).into());
    if let Some(notice) = failure.decision.delay_notice {
        bounce.insert("delay_notice", duration_text(notice).into());
    }
    if let Some(give_up) = failure.decision.give_up {
        bounce.insert("give_up", duration_text(give_up).into());
    }
    Value::InlineTable(bounce)
}

/// `{ code = 553, text = [...] }`: a later bounce's reply as a host without enhanced status
/// codes said it.
fn reply_without_status(code: u16, lines: &[String]) -> Value {
    let mut reply = InlineTable::new();
    reply.insert("code", i64::from(code).into());
    let text: Array = lines.iter().map(String::as_str).collect();
    reply.insert("text", Value::Array(text));
    Value::InlineTable(reply)
}

/// `{ code = 550, status = "5.1.1", text = [...] }`.
fn reply_value(code: u16, status: &str, lines: &[String]) -> Value {
    let mut reply = InlineTable::new();
    reply.insert("code", i64::from(code).into());
    reply.insert("status", status.into());
    let text: Array = lines.iter().map(String::as_str).collect();
    reply.insert("text", Value::Array(text));
    Value::InlineTable(reply)
}

/// The comment above a rule: which file, which MTA reported it, where the phase and the status
/// come from.
fn comment(bounce: &Bounce, failure: &Failure) -> String {
    let mut lines = vec![format!(
        "# From {} (reported by {}{})",
        bounce.origin,
        bounce.reporter.as_deref().unwrap_or("an unnamed MTA"),
        failure
            .remote_mta
            .as_deref()
            .map(|mta| format!("; the reply came from {mta}"))
            .unwrap_or_default()
    )];
    let decision = failure.decision;
    let why = decision.why.sentence(decision.timing);
    let timing = match decision.timing {
        Timing::AtSmtp => format!(
            "Synchronous, answered at {}: {why} (`--later` makes it a bounce after a 250).",
            failure.phase
        ),
        Timing::Later => format!(
            "Asynchronous, a bounce (DSN) {} after the 250: {why} (`--at-smtp` answers in the \
             SMTP dialogue instead).",
            duration_text(DEFAULT_AFTER)
        ),
    };
    lines.extend(wrapped(&timing));
    if decision.timing == Timing::AtSmtp && !failure.phase_named {
        lines.push(format!(
            "# The bounce names no SMTP phase: answered at {}, the first the code fits.",
            failure.phase
        ));
    }
    match failure.status_from {
        StatusFrom::Reply => {}
        StatusFrom::StatusField => lines.push(
            "# The reply carries no enhanced status code: this one is the bounce's Status field."
                .to_owned(),
        ),
        StatusFrom::CodeClass if decision.timing == Timing::Later => lines.extend(wrapped(
            "Neither the reply nor the bounce gives an enhanced status code: the DSN quotes the \
             reply without one, and its Status field is X.0.0 of the reply's class.",
        )),
        StatusFrom::CodeClass => lines.push(
            "# Neither the reply nor the bounce gives an enhanced status code: X.0.0 of its class."
                .to_owned(),
        ),
    }
    match (failure.earlier.is_empty(), decision.timing) {
        (true, _) => {}
        (false, Timing::AtSmtp) => lines.push(
            "# The bounce shows temporary failures first: the sequence repeats them in order."
                .to_owned(),
        ),
        (false, Timing::Later) => lines.push(
            "# The bounce shows temporary failures first; the later bounce brings the last reply."
                .to_owned(),
        ),
    }
    if failure.phase < Phase::Rcpt && decision.timing == Timing::AtSmtp {
        lines.push(format!(
            "# Refused at {} before any recipient was named: every transaction gets it there.",
            failure.phase
        ));
    }
    if failure.rcpt.is_none() {
        lines.push("# The input names no recipient: every recipient gets it.".to_owned());
    }
    format!("\n{}\n", lines.join("\n"))
}

/// `text` as comment lines of at most 100 columns.
fn wrapped(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 100 && line.len() > 1 {
            lines.push(std::mem::replace(&mut line, String::from("#")));
        }
        line.push(' ');
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// The recipient as a pattern: the address (exact, case ignored), as a regex when it holds a
/// glob character; `*` when there is none.
fn rcpt_pattern(rcpt: Option<&str>) -> String {
    match rcpt {
        None => "*".to_owned(),
        Some(rcpt) if rcpt.contains(['*', '?']) || rcpt.starts_with('/') => {
            format!("/(?i)^{}$/", regex::escape(rcpt))
        }
        Some(rcpt) => rcpt.to_owned(),
    }
}

/// The last path component, for rule names.
fn file_name(origin: &str) -> &str {
    origin.rsplit(['/', '\\']).next().unwrap_or(origin)
}

/// For each failure, a magic address that reproduces it where one does: a catalog entry in a
/// flavor whose reply has the same code, status and text; else `CODE-X.Y.Z@…` (the same code and
/// status, in failmail's words), said so. An asynchronous failure gets the `+async` tag: accepted,
/// then bounced a minute later (a 4xx retried as `+async` addresses are: a delay notice at 4
/// hours, the give-up at 5 days).
pub fn magic_addresses(bounces: &[Bounce]) -> Vec<String> {
    let mut out = Vec::new();
    for bounce in bounces {
        for failure in &bounce.failures {
            let rcpt = failure.rcpt.as_deref().unwrap_or("");
            let domain = rcpt.rsplit_once('@').map_or("example.com", |(_, d)| d);
            let later = failure.decision.timing == Timing::Later;
            let (tag, when) = match (later, failure.code < 500) {
                (false, _) => ("", ""),
                (true, false) => ("+async", "a bounce a minute after the 250, "),
                (true, true) => (
                    "+async",
                    "a bounce after the 250 (a delay notice at 4h, the give-up at 5d), ",
                ),
            };
            let line = match catalog_match(failure) {
                Some((name, flavor)) => format!(
                    "{rcpt}: {name}+{flavor}{tag}@{domain} ({when}the same code, status and text)"
                ),
                None => format!(
                    "{rcpt}: {}-{}{tag}@{domain} ({when}the same code and status; no catalog entry words it this way: import the bounce as a scenario for its text)",
                    failure.code, failure.status
                ),
            };
            out.push(format!("{}: {line}", bounce.origin));
        }
    }
    out
}

/// The catalog entry and flavor whose reply is this failure's, placeholders standing for any
/// text; only where a magic address answers at the failure's phase (any phase for a later
/// bounce, which a `+async` address brings after accepting at RCPT).
fn catalog_match(failure: &Failure) -> Option<(String, Flavor)> {
    let wanted = super::reply::fold(&failure.lines.join(" "));
    let later = failure.decision.timing == Timing::Later;
    for entry in Catalog::builtin().entries() {
        let magic_phase = if entry.phase >= Phase::Data {
            entry.phase
        } else {
            Phase::Rcpt
        };
        if magic_phase != failure.phase && !later {
            continue;
        }
        for flavor in entry.flavors() {
            let (variant, _) = entry.variant(flavor);
            if variant.code != failure.code || variant.status != failure.status {
                continue;
            }
            let pattern = placeholder_regex(&variant.text.join(" "));
            if pattern.is_some_and(|p| p.is_match(&wanted)) {
                return Some((entry.name.clone(), flavor));
            }
        }
    }
    None
}

/// A catalog text as a whole-string regex, whitespace folded, each placeholder any text.
fn placeholder_regex(text: &str) -> Option<regex::Regex> {
    let folded = super::reply::fold(text);
    let mut pattern = String::from("^");
    let mut rest = folded.as_str();
    while let Some(open) = rest.find('{') {
        pattern.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..].find('}')? + open;
        pattern.push_str(".+?");
        rest = &rest[close + 1..];
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    regex::Regex::new(&pattern).ok()
}

#[cfg(test)]
#[path = "emit_tests.rs"]
mod tests;
