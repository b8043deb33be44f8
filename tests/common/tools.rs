//! The external programs the integration tests drive (swaks, Postfix's smtp-source, Python,
//! redis-server, strace, Node with nodemailer, Go), found in one place; a test that needs a
//! missing one skips itself, unless `FAILMAIL_REQUIRE_ALL=1` (set by `.ci/run`) makes that a
//! failure.
//!
//! A test asks with `let Some(program) = need(&SWAKS) else { return };`. A skip writes one line to
//! the real stderr at once (not through `eprintln!`, which the test harness captures and hides for
//! a passing test), naming the test, the missing program and the command that installs it. When a
//! test binary ends, a summary line says how many of its tests skipped themselves and for what:
//! ``SKIPPED: 3 tests of readme skipped: … for want of `swaks` (3; install: …); …``.
//!
//! Why a summary at process exit: libtest has no "skipped" outcome and no hook after the last
//! test, and it runs tests in any order on several threads, under any name filter. A test meant
//! to "run last" and read marker files may run first, may be filtered out, and reads whatever an
//! older run left on disk. The count here lives in the test process's memory, is kept by the
//! skips themselves, and is printed by an `atexit` handler, which runs once after libtest has
//! printed its own result line, whether the binary passed or failed, whatever ran. Each test
//! binary prints its own summary (cargo runs them one after another), so `cargo test` shows, right
//! under each binary's result, how many of its passing tests did not really run, and
//! `cargo test 2>&1 | grep '^SKIPPED: '` lists them for the whole run. (A grand total would need
//! the binaries to share a file and one of them to run last and read it: cargo gives them no run
//! id, runs them in an order of its own, stops at the first failing one without
//! `--no-fail-fast`, and `--test NAME` runs only some; such a total would often be wrong.)
//! tests/skips.rs checks all of this in child processes of its own.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

/// The environment variable that turns a missing program into a failure (`.ci/run` sets it).
pub(crate) const REQUIRE_ALL: &str = "FAILMAIL_REQUIRE_ALL";

/// An external program some tests need, and how to get it.
#[derive(Debug)]
pub(crate) struct Tool {
    /// What the summary and the skip line call it.
    pub name: &'static str,
    /// A program looked up on `PATH`, or an absolute path.
    pub program: &'static str,
    /// An environment variable that names another program to use instead (e.g. `REDIS_SERVER`).
    pub env: Option<&'static str>,
    /// Arguments that make the program show that it works and exit 0 (`--version`; for Python,
    /// importing the modules the tests use); empty to only check that the file is there.
    pub probe: &'static [&'static str],
    /// A file (relative to the repository) that must exist as well, e.g. an installed npm package.
    pub needs_file: Option<&'static str>,
    /// The command that installs what is missing.
    pub install: &'static str,
}

/// swaks, with the Perl TLS module it needs for `--tls` and `--tls-on-connect`.
pub(crate) const SWAKS: Tool = Tool {
    name: "swaks",
    program: "swaks",
    env: None,
    probe: &["--version"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends swaks libnet-ssleay-perl",
};

/// Postfix itself, started privately by the retry test (its master must run as root).
pub(crate) const POSTFIX: Tool = Tool {
    name: "postfix",
    program: "/usr/sbin/postfix",
    env: None,
    probe: &[],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends postfix",
};

/// Not a program: root, which a private Postfix's master needs. [`need_root`] checks it.
pub(crate) const ROOT: Tool = Tool {
    name: "root",
    program: "",
    env: None,
    probe: &[],
    needs_file: None,
    install: "sudo -E cargo test (CI runs as root)",
};

/// Postfix's load generator (Postfix itself is never started).
pub(crate) const SMTP_SOURCE: Tool = Tool {
    name: "smtp-source",
    program: "/usr/sbin/smtp-source",
    env: None,
    probe: &[],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends postfix",
};

/// Python 3 with the standard modules the client scripts import.
pub(crate) const PYTHON3: Tool = Tool {
    name: "python3",
    program: "python3",
    env: None,
    probe: &["-c", "import smtplib, ssl, socket"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends python3",
};

/// A Redis server the tests start on a port of their own (`REDIS_SERVER` names another binary).
pub(crate) const REDIS_SERVER: Tool = Tool {
    name: "redis-server",
    program: "redis-server",
    env: Some("REDIS_SERVER"),
    probe: &["--version"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends redis-server",
};

/// strace, which shows every connection the server opens.
pub(crate) const STRACE: Tool = Tool {
    name: "strace",
    program: "strace",
    env: None,
    probe: &["-V"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends strace",
};

/// Node.js with nodemailer installed from `tests/node/package-lock.json`.
pub(crate) const NODEMAILER: Tool = Tool {
    name: "node + nodemailer",
    program: "node",
    env: None,
    probe: &["--version"],
    needs_file: Some("tests/node/node_modules/nodemailer/package.json"),
    install: "apt-get install -y --no-install-recommends nodejs npm && npm ci --prefix tests/node",
};

/// Go's toolchain, for `net/smtp` (standard library only: nothing is downloaded).
pub(crate) const GO: Tool = Tool {
    name: "go",
    program: "go",
    env: None,
    probe: &["version"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends golang-go",
};

/// Sisimai, the Perl bounce parser that judges the notifications failmail makes.
pub(crate) const SISIMAI: Tool = Tool {
    name: "sisimai",
    program: "perl",
    env: None,
    probe: &["-MSisimai", "-e", "1"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends libsisimai-perl",
};

/// flufl.bounce, the Python bounce parser, in the system Python that Debian installs it for.
pub(crate) const FLUFL_BOUNCE: Tool = Tool {
    name: "flufl.bounce",
    program: "/usr/bin/python3",
    env: None,
    probe: &["-c", "import flufl.bounce"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends python3-flufl.bounce",
};

/// curl, which runs the README's API examples as written.
pub(crate) const CURL: Tool = Tool {
    name: "curl",
    program: "curl",
    env: None,
    probe: &["--version"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends curl",
};

/// pytest and requests in the system Python, which run the README's pytest example.
pub(crate) const PYTEST: Tool = Tool {
    name: "pytest + requests",
    program: "/usr/bin/python3",
    env: None,
    probe: &["-c", "import pytest, requests"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends python3-pytest python3-requests",
};

/// OpenSSL's command-line client, which can ask for a TLS 1.2 renegotiation.
pub(crate) const OPENSSL: Tool = Tool {
    name: "openssl",
    program: "/usr/bin/openssl",
    env: None,
    probe: &["version"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends openssl",
};

/// The system's CA bundle (a CA other than the development one, to show a check that fails).
pub(crate) const SYSTEM_CAS: Tool = Tool {
    name: "ca-certificates",
    program: "/etc/ssl/certs/ca-certificates.crt",
    env: None,
    probe: &[],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends ca-certificates",
};

/// Debian's Chromium, which the web page's browser tests drive headless.
pub(crate) const CHROMIUM: Tool = Tool {
    name: "chromium",
    program: "/usr/bin/chromium",
    env: None,
    probe: &[],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends chromium",
};

/// The ChromeDriver that matches Debian's Chromium.
pub(crate) const CHROMEDRIVER: Tool = Tool {
    name: "chromedriver",
    program: "/usr/bin/chromedriver",
    env: None,
    probe: &[],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends chromium-driver",
};

/// Selenium for the system Python, which drives the browser.
pub(crate) const SELENIUM: Tool = Tool {
    name: "selenium",
    program: "/usr/bin/python3",
    env: None,
    probe: &["-c", "import selenium"],
    needs_file: None,
    install: "apt-get install -y --no-install-recommends python3-selenium",
};

/// How many tests of this process skipped themselves, per missing tool.
static SKIPS: Mutex<BTreeMap<&'static str, (usize, &'static str)>> = Mutex::new(BTreeMap::new());
/// How many tests of this process skipped themselves (one may want several tools).
static SKIPPED_TESTS: AtomicUsize = AtomicUsize::new(0);
static SUMMARY: Once = Once::new();

/// The program to run for `tool`, if it is there and works.
pub(crate) fn find(tool: &Tool) -> Option<PathBuf> {
    if let Some(file) = tool.needs_file {
        if !super::repo_root().join(file).is_file() {
            return None;
        }
    }
    let program = tool
        .env
        .and_then(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(tool.program));
    let path = locate(&program)?;
    if tool.probe.is_empty() {
        return Some(path);
    }
    let works = Command::new(&path)
        .args(tool.probe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    works.then_some(path)
}

/// `program` itself if it names a file, else the first executable file of that name on `PATH`.
fn locate(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program for `tool`; when it is missing, the calling test should return at once: this
/// reports the skip (or, under `FAILMAIL_REQUIRE_ALL=1`, fails the test).
pub(crate) fn need(tool: &Tool) -> Option<PathBuf> {
    let found = find(tool);
    if found.is_none() {
        skip(&[tool]);
    }
    found
}

/// The programs for every one of `tools`; when some are missing, the calling test should return
/// at once: this reports one skip naming them all (or, under `FAILMAIL_REQUIRE_ALL=1`, fails).
pub(crate) fn need_all<const N: usize>(tools: [&Tool; N]) -> Option<[PathBuf; N]> {
    let found = tools.map(find);
    let missing: Vec<&Tool> = tools
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(tool, _)| *tool)
        .collect();
    if !missing.is_empty() {
        skip(&missing);
        return None;
    }
    Some(found.map(|path| path.expect("every tool was found")))
}

/// Whether the tests run as root; when not, the calling test should return at once: this
/// reports the skip (or, under `FAILMAIL_REQUIRE_ALL=1`, fails the test).
pub(crate) fn need_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        skip(&[&ROOT]);
    }
    root
}

/// Reports one test's skip for want of `missing` (at least one tool): one line, counted for the
/// binary's summary.
fn skip(missing: &[&Tool]) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let names = missing
        .iter()
        .map(|tool| format!("`{}`", tool.name))
        .collect::<Vec<_>>()
        .join(", ");
    let installs = missing
        .iter()
        .map(|tool| format!("`{}`", tool.install))
        .collect::<Vec<_>>()
        .join(" and ");
    let (is, it) = if missing.len() == 1 {
        ("is", "it")
    } else {
        ("are", "them")
    };
    if std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1") {
        panic!("{test} needs {names}, which {is} missing ({REQUIRE_ALL}=1): install {it} with {installs}");
    }
    {
        let mut skips = SKIPS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for tool in missing {
            skips.entry(tool.name).or_insert((0, tool.install)).0 += 1;
        }
    }
    SKIPPED_TESTS.fetch_add(1, Ordering::Relaxed);
    SUMMARY.call_once(|| {
        // SAFETY: `summarise` is a plain `extern "C" fn()` that never unwinds.
        unsafe {
            libc::atexit(summarise);
        }
    });
    write_stderr(&format!(
        "SKIPPED {test}: {names} {is} missing; install {it} with {installs} ({REQUIRE_ALL}=1 \
         makes this a failure)\n"
    ));
}

/// Writes past the test harness's capture, so that the line is seen even when the test passes.
fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

extern "C" fn summarise() {
    let skips = SKIPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tests = SKIPPED_TESTS.load(Ordering::Relaxed);
    if let Some(line) = summary(&binary_name(), tests, &skips) {
        write_stderr(&line);
    }
}

/// The test binary's name as cargo calls it (`readme` for `tests/readme.rs`): its file name
/// without the hash cargo appends (`readme-0123456789abcdef`).
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let file = exe
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "a test binary".to_owned());
    match file.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => file,
    }
}

/// The line a test binary ends with when some of its tests skipped themselves: how many, of
/// which binary, for want of what; `None` when none did.
fn summary(
    binary: &str,
    total: usize,
    skips: &BTreeMap<&'static str, (usize, &'static str)>,
) -> Option<String> {
    if total == 0 {
        return None;
    }
    let missing: Vec<String> = skips
        .iter()
        .map(|(name, (count, install))| format!("`{name}` ({count}; install: {install})"))
        .collect();
    let tests = if total == 1 { "test" } else { "tests" };
    Some(format!(
        "SKIPPED: {total} {tests} of {binary} skipped: counted as passed in the result above, \
         they did not run for want of {}; {REQUIRE_ALL}=1 makes a missing program a failure\n",
        missing.join(", ")
    ))
}
