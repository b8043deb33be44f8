//! The README's scenario reference and flag table are checked against the code, so they cannot
//! drift: every key the scenario loader accepts and every flag `failmail serve` takes is documented.

use failmail::scenario::compile::Scenario;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The keys the loader accepts in a section, read from its "unknown field" error.
fn accepted_keys(section_source: &str) -> Vec<String> {
    let error =
        Scenario::parse("probe.toml", section_source).expect_err("the probe key is unknown");
    let message = error.message;
    let list = message
        .split("expected one of")
        .nth(1)
        .or_else(|| message.split("expected").nth(1))
        .unwrap_or_else(|| panic!("unexpected error shape: {message}"));
    list.split(',')
        .map(|k| k.trim().trim_matches('`').trim_matches('.').to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

/// The README table that follows the line starting with `heading`.
fn table_after<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start..];
    let table_start = rest.find("\n|").expect("a table follows");
    let table = &rest[table_start + 1..];
    let end = table.find("\n\n").unwrap_or(table.len());
    &table[..end]
}

#[test]
fn every_scenario_key_is_in_the_reference() {
    let readme = readme();
    let sections = [
        ("[server]\nzz_probe = 1\n", "`[server]`"),
        ("[limits]\nzz_probe = 1\n", "`[limits]`"),
        ("[greylisting]\nzz_probe = 1\n", "`[greylisting]`"),
        ("[[rule]]\nzz_probe = 1\n", "`[[rule]]`"),
    ];
    for (probe, heading) in sections {
        let keys = accepted_keys(probe);
        assert!(keys.len() >= 3, "{heading}: {keys:?}");
        let table = table_after(&readme, heading);
        for key in keys {
            assert!(
                table.contains(&format!("| `{key}` |")),
                "README's {heading} table does not document `{key}`"
            );
        }
    }
    let top = accepted_keys("zz_probe = 1\n");
    for section in ["server", "limits", "greylisting", "rule"] {
        assert!(top.contains(&section.to_owned()), "{top:?}");
    }
}

#[test]
fn every_serve_flag_is_in_the_readme() {
    let readme = readme();
    let table = table_after(&readme, "`failmail serve` (the default) takes:");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_failmail"))
        .args(["serve", "--help"])
        .output()
        .expect("run failmail serve --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '.']))
        .filter(|w| *w != "--help" && *w != "--version")
        .collect();
    assert!(flags.len() > 10, "{flags:?}");
    for flag in flags {
        assert!(
            table.contains(&format!("`{flag}")),
            "README's flag table does not document {flag}"
        );
    }
}
