//! The real bounces of `tests/fixtures/bounces/` and the two readers of them, for
//! `tests/import*.rs`: Sisimai (Debian `libsisimai-perl`, through `tests/sisimai/bounces.pl`),
//! the independent one, and `failmail import` (the binary, as a user runs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::binary::{binary_command, run_tool_ok};

/// Where the fixtures are, one folder per public source.
pub(crate) const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bounces");
const SISIMAI_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sisimai/bounces.pl");

/// One failed recipient as Sisimai reads it.
#[derive(Debug, Clone)]
pub(crate) struct SisimaiRecord {
    /// The file read.
    pub file: PathBuf,
    /// The recipient.
    pub rcpt: String,
    /// The reply code, when Sisimai finds one.
    pub code: Option<u16>,
    /// The delivery status (`5.1.1`; Sisimai's own `5.0.9xx` when the bounce gives none).
    pub status: String,
    /// The SMTP command the reply answered, when Sisimai knows it.
    pub command: String,
    /// Sisimai's bounce reason (`userunknown`, `mailboxfull`, …).
    pub reason: String,
    /// The MTA or provider format Sisimai recognised.
    pub agent: String,
    /// The diagnostic, whitespace folded.
    pub diagnostic: String,
}

/// Every fixture file (the README and licence files aside), sorted.
pub(crate) fn fixtures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for source in std::fs::read_dir(FIXTURES).expect("tests/fixtures/bounces") {
        let source = source.unwrap().path();
        if !source.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&source).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("README") && !name.starts_with("LICENSE") {
                files.push(file);
            }
        }
    }
    files.sort();
    files
}

/// Sisimai's reading of `files`; `None` (the test skips) without Sisimai. A file Sisimai finds
/// nothing in gives no record.
pub(crate) async fn sisimai(files: &[PathBuf]) -> Option<Vec<SisimaiRecord>> {
    super::tools::need(&super::tools::SISIMAI)?;
    let mut command = Command::new("/usr/bin/perl");
    command.arg(SISIMAI_SCRIPT).args(files);
    let output = run_tool_ok(command, "sisimai", Duration::from_secs(120)).await;
    let records = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.splitn(8, '\t').collect();
            assert_eq!(f.len(), 8, "{line}");
            SisimaiRecord {
                file: PathBuf::from(f[0]),
                rcpt: f[1].to_owned(),
                code: f[2].parse().ok(),
                status: f[3].to_owned(),
                command: f[4].to_owned(),
                reason: f[5].to_owned(),
                agent: f[6].to_owned(),
                diagnostic: f[7].to_owned(),
            }
        })
        .filter(|r| !r.rcpt.is_empty())
        .collect();
    Some(records)
}

/// `failmail import FILE [FLAGS…]`: the scenario it prints.
pub(crate) async fn import(file: &Path, flags: &[&str]) -> String {
    let mut args = vec!["import", file.to_str().unwrap()];
    args.extend(flags);
    let command = binary_command(&[], &args);
    let output = run_tool_ok(command, "failmail import", Duration::from_secs(30)).await;
    String::from_utf8(output.stdout).expect("UTF-8 scenario")
}

/// The imported rule for `rcpt` (or the rule with no recipient).
pub(crate) fn imported_rule(scenario: &str, rcpt: &str) -> toml::Value {
    let value: toml::Value = toml::from_str(scenario).expect("the import is TOML");
    let rules = value["rule"].as_array().expect("rules");
    rules
        .iter()
        .find(|r| {
            r.get("rcpt")
                .and_then(|v| v.as_str())
                .is_some_and(|p| p.eq_ignore_ascii_case(rcpt))
        })
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.get("rcpt").is_none_or(|p| p.as_str() == Some("*")))
        })
        .unwrap_or_else(|| panic!("no rule for {rcpt} in\n{scenario}"))
        .clone()
}
