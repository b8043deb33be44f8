//! The skip helper of the integration tests (tests/common/tools.rs) on its own: a test whose
//! program is missing (or does not work) skips itself with one `SKIPPED` line naming what is
//! missing and how to install it, its binary ends with a summary line counting the skips, and
//! under `FAILMAIL_REQUIRE_ALL=1` the same test fails instead.
//!
//! The helper prints to the real stderr, counts in a process-wide table and reads environment
//! variables, so each case runs in a child process: this test binary run again on the one test
//! [`child_needs_the_tool_the_parent_names`], with `CHILD` saying which tool it asks for.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::tools::{self, Tool, REQUIRE_ALL};

/// Which tool the child asks for: `missing`, `broken` or `present`, or `several` (all three at
/// once); unset outside a child.
const CHILD: &str = "FAILMAIL_SKIPS_CHILD";

/// A tool whose program is nowhere.
const MISSING: Tool = Tool {
    name: "no-such-tool",
    program: "failmail-test-no-such-program",
    env: None,
    probe: &["--version"],
    needs_file: None,
    install: "apt-get install -y no-such-tool",
};

/// A tool whose program is there but whose probe fails (as a Python without a module).
const BROKEN: Tool = Tool {
    name: "broken-tool",
    program: "sh",
    env: None,
    probe: &["-c", "exit 3"],
    needs_file: None,
    install: "apt-get install -y broken-tool",
};

/// A tool that is there and works.
const PRESENT: Tool = Tool {
    name: "present-tool",
    program: "sh",
    env: None,
    probe: &["-c", "exit 0"],
    needs_file: None,
    install: "apt-get install -y dash",
};

/// The child half: asks for the tool `CHILD` names and says what it got. Passes at once when
/// run on its own (no `CHILD`).
#[test]
fn child_needs_the_tool_the_parent_names() {
    let tool = match std::env::var(CHILD).as_deref() {
        Ok("several") => {
            let found = tools::need_all([&MISSING, &PRESENT, &BROKEN]);
            println!(
                "\nneed_all: {}",
                if found.is_some() { "found" } else { "none" }
            );
            return;
        }
        Ok("missing") => &MISSING,
        Ok("broken") => &BROKEN,
        Ok("present") => &PRESENT,
        _ => return,
    };
    match tools::need(tool) {
        // On a line of its own: libtest has written "test NAME ... " without a newline.
        Some(path) => println!("\nneed: found {}", path.display()),
        None => println!("\nneed: none"),
    }
}

/// Runs the child half for `tool`, with `FAILMAIL_REQUIRE_ALL` set to `require_all` (or not at
/// all); stdout and stderr go to one file, so their lines keep their order.
fn child(tool: &str, require_all: Option<&str>) -> (Output, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let log = tempfile::NamedTempFile::new().unwrap();
    // Both appending to one file: each write lands at its end, in order.
    let append = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
    };
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "child_needs_the_tool_the_parent_names",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, tool)
        .env_remove(REQUIRE_ALL)
        .stdin(Stdio::null())
        .stdout(append())
        .stderr(append());
    if let Some(value) = require_all {
        command.env(REQUIRE_ALL, value);
    }
    let output = command.output().expect("the test binary runs again");
    let text = std::fs::read_to_string(log.path()).unwrap();
    (output, text)
}

/// The index of the first line of `text` that contains `needle`.
#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[test]
fn a_missing_or_broken_program_is_a_skip_with_one_line_and_a_summary() {
    for (mode, tool) in [("missing", &MISSING), ("broken", &BROKEN)] {
        let (output, text) = child(mode, None);
        assert!(output.status.success(), "{mode}: the skip passes:\n{text}");
        let said = line_of(&text, "need: ");
        assert_eq!(
            text.lines().nth(said),
            Some("need: none"),
            "{mode}:\n{text}"
        );
        let skipped = format!(
            "SKIPPED child_needs_the_tool_the_parent_names: `{}` is missing; install it with \
             `{}` ({REQUIRE_ALL}=1 makes this a failure)",
            tool.name, tool.install
        );
        // (With --nocapture, after libtest's "test NAME ... ", on the same line.)
        assert_eq!(
            text.lines().filter(|l| l.ends_with(&skipped)).count(),
            1,
            "{mode}: one skip line:\n{text}"
        );
        // The summary comes after libtest's result line (it is printed at exit) and names
        // the binary, the count and what to install.
        let result = line_of(&text, "test result: ok. 1 passed");
        let summary = line_of(&text, "SKIPPED: 1 test of skips skipped: ");
        assert!(
            summary > result,
            "{mode}: summary after the result:\n{text}"
        );
        let line = text.lines().nth(summary).unwrap();
        assert!(
            line.contains(&format!("`{}` (1; install: {})", tool.name, tool.install)),
            "{mode}: {line}"
        );
        assert_eq!(text.matches("SKIPPED").count(), 2, "{mode}:\n{text}");
    }
}

#[test]
fn a_working_program_is_found_and_nothing_is_skipped() {
    let (output, text) = child("present", None);
    assert!(output.status.success(), "{text}");
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("need: found "))
        .unwrap_or_else(|| panic!("the tool is found:\n{text}"));
    assert_eq!(PathBuf::from(found).file_name().unwrap(), "sh");
    assert!(!text.contains("SKIPPED"), "{text}");
}

#[test]
fn with_require_all_a_missing_program_fails_the_test() {
    let (output, text) = child("missing", Some("1"));
    assert_eq!(output.status.code(), Some(101), "the test fails:\n{text}");
    assert!(
        text.contains(&format!(
            "child_needs_the_tool_the_parent_names needs `no-such-tool`, which is missing \
             ({REQUIRE_ALL}=1): install it with `{}`",
            MISSING.install
        )),
        "{text}"
    );
    assert!(
        text.contains("test result: FAILED. 0 passed; 1 failed"),
        "{text}"
    );
    assert!(!text.contains("need: none"), "need did not return:\n{text}");
    assert!(!text.contains("SKIPPED"), "a failure is no skip:\n{text}");
    // Any other value leaves the skip a skip.
    let (output, text) = child("missing", Some("0"));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("need: none"), "{text}");
}

#[test]
fn a_test_missing_several_programs_skips_with_one_line_naming_them() {
    let (output, text) = child("several", None);
    assert!(output.status.success(), "the skip passes:\n{text}");
    assert!(text.contains("need_all: none"), "{text}");
    let skipped = format!(
        "SKIPPED child_needs_the_tool_the_parent_names: `{}`, `{}` are missing; install them \
         with `{}` and `{}` ({REQUIRE_ALL}=1 makes this a failure)",
        MISSING.name, BROKEN.name, MISSING.install, BROKEN.install
    );
    assert_eq!(
        text.lines().filter(|l| l.ends_with(&skipped)).count(),
        1,
        "one skip line naming both missing tools, not the present one:\n{text}"
    );
    // One test skipped, though for want of two programs.
    let summary = line_of(&text, "SKIPPED: 1 test of skips skipped: ");
    let line = text.lines().nth(summary).unwrap();
    for tool in [&MISSING, &BROKEN] {
        assert!(
            line.contains(&format!("`{}` (1; install: {})", tool.name, tool.install)),
            "{line}"
        );
    }
    assert!(!line.contains(PRESENT.name), "{line}");
    assert_eq!(text.matches("SKIPPED").count(), 2, "{text}");
}
