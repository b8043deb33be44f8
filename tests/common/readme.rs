//! Reading the README as tests/readme*.rs check it: its sections and code blocks, and the CI
//! steps it shows run as written (a step's script with bash, in a process group the test
//! kills when it ends, and the variables it writes to `$GITHUB_ENV`).

use std::process::Command;
use std::time::Duration;

use super::repo_root;

/// The README's text.
pub(crate) fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The README from `heading` to the next heading of any level (a `#` line outside code blocks).
pub(crate) fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"))
        + 1;
    let mut at = start + heading.len() + 1;
    let mut in_code = false;
    for line in readme[at..].split_inclusive('\n') {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if line.starts_with('#') && !in_code {
            break;
        }
        at += line.len();
    }
    &readme[start..at]
}

/// The fenced code blocks of `text` whose info string is `lang`.
pub(crate) fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("a closed code block");
        found.push(body[..end].to_owned());
        rest = &body[end + 3..];
    }
    found
}

/// A process group started by a test (a shell and what it left running in the background),
/// killed as a whole when dropped.
pub(crate) struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Quietly: the group is often gone already.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Runs a CI step's `script` with `bash -e` in `dir` with `env` added, in a process group of
/// its own (bounded: 60 s); returns its output and the group, which kills what the step left
/// running (a failmail started with `&`) when dropped.
pub(crate) async fn run_step(
    script: &str,
    dir: &std::path::Path,
    env: &[(String, String)],
) -> (std::process::Output, ProcessGroup) {
    let mut step = Command::new("bash");
    // What the step leaves running in the background writes to files of its own (as in the
    // README), so the pipes close when bash exits.
    step.args(["-e", "-c", script])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut step, 0);
    let mut step = tokio::process::Command::from(step);
    let child = step.spawn().expect("bash runs the CI step");
    let group = ProcessGroup(child.id().expect("a process id"));
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the CI step ends within 60 s:\n{script}"))
        .unwrap();
    (output, group)
}

/// The variables a step wrote to `$GITHUB_ENV` (`NAME=value` lines), which the next steps get.
pub(crate) fn github_env_vars(file: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).expect("the step wrote $GITHUB_ENV");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A directory for running the README's CI steps: `bin/failmail` (the binary under test, as
/// `cargo install` would put it on PATH) and `scenarios/`; and the PATH that finds it first.
pub(crate) fn ci_workdir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_failmail"), bin.join("failmail")).unwrap();
    std::os::unix::fs::symlink(repo_root().join("scenarios"), dir.path().join("scenarios"))
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (dir, path)
}

/// The script of the step named `name` in a GitHub Actions job: its `run: |` block, dedented,
/// or its one-line `run:`.
pub(crate) fn step_script(yaml: &str, name: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no step {name:?} in\n{yaml}"));
    let step_indent = indent(lines[start]);
    let step: Vec<&str> = lines[start + 1..]
        .iter()
        .copied()
        .take_while(|l| l.trim().is_empty() || indent(l) > step_indent)
        .collect();
    let run = step
        .iter()
        .position(|l| l.trim_start().starts_with("run:"))
        .unwrap_or_else(|| panic!("step {name:?} runs nothing"));
    let value = step[run].trim_start()["run:".len()..].trim();
    if value != "|" {
        return format!("{value}\n");
    }
    let body: Vec<&str> = step[run + 1..]
        .iter()
        .copied()
        .take_while(|l| l.trim().is_empty() || indent(l) > indent(step[run]))
        .collect();
    let margin = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| format!("{}\n", l.get(margin..).unwrap_or("")))
        .collect()
}
