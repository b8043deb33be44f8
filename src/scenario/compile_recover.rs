//! The errors of every part of a scenario file that does not fit the format.
//!
//! serde stops at the first unknown key or wrong type. When that happens and the file is valid
//! TOML, each section and each `[[rule]]` is checked again on its own, from its own text, and
//! their errors are put back at their lines in the file: one run of `failmail check` shows a
//! misspelt key in one rule and a bad catalog name in another. A TOML syntax error still stops
//! everything (what follows it cannot be read reliably), and past [`MAX_PARTS`] parts the check
//! stops.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{Context, Scenario, ScenarioError, ScenarioErrors};

/// The most parts (sections and rules) checked one by one.
pub(super) const MAX_PARTS: usize = 200;

/// What a valid TOML scenario is made of, whatever is inside each part.
#[derive(Deserialize)]
struct Outline {
    server: Option<Spanned<toml::Value>>,
    limits: Option<Spanned<toml::Value>>,
    greylisting: Option<Spanned<toml::Value>>,
    #[serde(default)]
    rule: Vec<Spanned<toml::Value>>,
    /// Top-level keys the format does not have.
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, toml::Value>,
}

/// Every error found: `first` (serde's), then each part's own, each once.
pub(super) fn each_part(context: &Context<'_>, first: &toml::de::Error) -> ScenarioErrors {
    let mut errors = ScenarioErrors::from(context.toml_error(first));
    let Ok(outline) = toml::from_str::<Outline>(context.source) else {
        return errors;
    };
    // Rules are checked in the server's flavor when the [server] section reads well.
    let mut server_text = None;
    if let Some(server) = &outline.server {
        let text = &context.source[server.span()];
        if Scenario::check_one(context.origin, text, false).is_ok() {
            server_text = Some(text);
        }
    }
    for key in outline.unknown.keys().take(MAX_PARTS) {
        if let Some(error) = unknown_key(context, key) {
            if !errors.errors.contains(&error) {
                errors.push(error);
            }
        }
    }
    let sections = [&outline.server, &outline.limits, &outline.greylisting];
    let parts = sections
        .into_iter()
        .flatten()
        .map(|s| (s.span(), false))
        .chain(outline.rule.iter().map(|r| (r.span(), true)));
    for (index, (span, is_rule)) in parts.enumerate() {
        if index == MAX_PARTS {
            errors.push(context.error(
                span,
                format!("the check stops here: more than {MAX_PARTS} sections and rules"),
                Some("fix the errors above, then check again"),
            ));
            break;
        }
        let prefix = if is_rule { server_text } else { None };
        for error in part_errors(context, span, prefix) {
            if !errors.errors.contains(&error) {
                errors.push(error);
            }
        }
    }
    errors.errors.sort_by_key(|e| (e.line, e.column));
    errors
}

/// The errors of the part at `span`, checked alone after `prefix` (the [server] section), at
/// their place in the whole file.
fn part_errors(
    context: &Context<'_>,
    span: Range<usize>,
    prefix: Option<&str>,
) -> Vec<ScenarioError> {
    let prefix = prefix.map(|p| format!("{p}\n")).unwrap_or_default();
    let prefix_lines = prefix.matches('\n').count();
    let text = format!("{prefix}{}", &context.source[span.clone()]);
    let Err(found) = Scenario::check_one(context.origin, &text, false) else {
        return Vec::new();
    };
    let start = context.error(span, "", None);
    found
        .errors
        .into_iter()
        .filter(|e| e.line > prefix_lines)
        .map(|mut e| {
            let line_in_part = e.line - prefix_lines;
            if line_in_part == 1 {
                e.column += start.column - 1;
            }
            e.line = start.line + line_in_part - 1;
            e
        })
        .collect()
}

/// The error for a top-level key the format does not have, at the line that sets it (`[key]`,
/// `[[key]]`, `[key.…]` or `key = …`), in serde's words.
fn unknown_key(context: &Context<'_>, key: &str) -> Option<ScenarioError> {
    let mut offset = 0;
    let mut at = None;
    for line in context.source.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let header = trimmed.trim_start_matches('[').trim_start();
        let sets = header.strip_prefix(key).is_some_and(|rest| {
            let rest = rest.trim_start();
            (trimmed.starts_with('[') && (rest.starts_with(']') || rest.starts_with('.')))
                || (!trimmed.starts_with('[') && rest.starts_with('='))
        });
        if sets {
            // At the key, as serde points (after `[` in a header).
            at = Some(offset + line.len() - header.len());
            break;
        }
        offset += line.len();
    }
    let at = at?;
    let probe = format!("{key} = 0\n");
    let Err(found) = Scenario::check_one(context.origin, &probe, false) else {
        return None;
    };
    let mut error = found.errors.into_iter().next()?;
    let place = context.error(at..at, "", None);
    (error.line, error.column) = (place.line, place.column);
    Some(error)
}
