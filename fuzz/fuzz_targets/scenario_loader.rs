//! Arbitrary text as a scenario file, through the compiler `failmail check` uses.
//!
//! Scenario files are written by hand and reloaded into a running server, so a typo must come
//! back as an error that points at a line, never as a panic that takes the server down. Whatever
//! compiles must also turn into session settings without panicking.
#![no_main]

use failmail::scenario::compile::Scenario;
use failmail::smtp::policy::Phase;
use failmail::smtp::session::SessionConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match Scenario::parse("fuzz.toml", source) {
        Ok(scenario) => {
            scenario.session_config(&SessionConfig::default());
            let rules: usize = Phase::ALL
                .iter()
                .map(|&p| scenario.rules_at(p).count())
                .sum();
            assert_eq!(rules, scenario.rules.len(), "a rule at no phase or at two");
        }
        Err(error) => {
            let shown = error.to_string();
            let place = format!("fuzz.toml:{}:{}: ", error.line, error.column);
            assert!(
                shown.starts_with(&place),
                "{shown:?} does not start with {place:?}"
            );
            let lines: Vec<&str> = source.split('\n').collect();
            assert!(
                (1..=lines.len()).contains(&error.line),
                "line {} of {}: {shown}",
                error.line,
                lines.len()
            );
            let width = lines[error.line - 1].chars().count();
            assert!(
                (1..=width + 1).contains(&error.column),
                "column {} of {width}: {shown}",
                error.column
            );
        }
    }
});
