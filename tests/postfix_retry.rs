//! Against a real MTA: a private Postfix (its own `config_directory`, queue and data under a
//! temporary folder, started with `postfix -c DIR start`, stopped at the end) relays through the
//! failmail under test (`relayhost`), with short backoff times. It meets a greylisted recipient,
//! a `["greylisted", "greylisted", "accept"]` sequence, `user_unknown` and `mailbox_full`, retries
//! on its own schedule, and the retry report says it did what an MTA should: retried after the
//! temporary failures (with the delays Postfix used), stopped after the permanent one, delivered
//! the first two once each, and `ok`.
//!
//! Postfix's master runs as root and its daemons as `mail_owner`: the test needs root (CI runs
//! as root) and Debian's `postfix` package, installed without configuring a system mailer.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::binary::run_tool;
use common::{tools, PlainConn};
use failmail::journal::attempts::{Judgement, Report};
use failmail::testing::TestServer;

/// How long Postfix has to deliver what it can and retry the rest a few times.
const DELIVERY_LIMIT: Duration = Duration::from_secs(90);

/// How long one `postfix` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// The scenario under test: postgrey-style greylisting for one recipient (its delay shorter than
/// Postfix's backoff, so Postfix respects it), a sequence for another; `user_unknown@…` and
/// `mailbox_full@…` are magic addresses.
const SCENARIO: &str = r#"
[greylisting]
rcpt = "grey@example.com"
delay = "200ms"
retry_window = "1h"

[[rule]]
name = "greylisted twice"
rcpt = "flaky@example.com"
sequence = ["greylisted", "greylisted", "accept"]
"#;

const RECIPIENTS: [&str; 4] = [
    "grey@example.com",
    "flaky@example.com",
    "user_unknown@example.com",
    "mailbox_full@example.com",
];

/// A private Postfix instance; stopped (and, failing that, aborted) when dropped.
struct Postfix {
    /// The `postfix` program.
    program: PathBuf,
    dir: tempfile::TempDir,
    /// Where its smtpd listens, for the message to relay.
    smtpd: SocketAddr,
}

impl Postfix {
    fn config(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Its log (`maillog_file`), for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Writes the configuration and starts Postfix relaying everything to `relay`.
    /// `None` (the test skips) without Postfix or root.
    async fn start(relay: SocketAddr) -> Option<Self> {
        let program = tools::need(&tools::POSTFIX)?;
        if !tools::need_root() {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary folder");
        // Postfix's daemons run as `postfix`: they must reach the queue and data folders.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let smtpd = free_port();
        write_config(dir.path(), relay, smtpd);
        let postfix = Self {
            program,
            dir,
            smtpd,
        };
        let mut chown = Command::new("chown");
        chown.arg("postfix").arg(postfix.dir.path().join("data"));
        let output = run_tool(chown, "chown", COMMAND_LIMIT).await;
        assert!(output.status.success(), "chown postfix: {output:?}");
        let output = postfix.command("start").await;
        assert!(
            output.status.success(),
            "postfix start failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            postfix.log()
        );
        postfix.wait_listening().await;
        Some(postfix)
    }

    async fn command(&self, verb: &str) -> std::process::Output {
        let mut command = Command::new(&self.program);
        command.arg("-c").arg(self.config()).arg(verb);
        run_tool(command, "postfix", COMMAND_LIMIT).await
    }

    async fn wait_listening(&self) {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(self.smtpd).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "Postfix's smtpd does not listen on {}\n{}",
            self.smtpd,
            self.log()
        );
    }

    /// Stops it and waits for its master to exit (bounded).
    async fn stop(self) {
        let output = self.command("stop").await;
        assert!(
            output.status.success(),
            "postfix stop: {output:?}\n{}",
            self.log()
        );
        for _ in 0..300 {
            if self.command("status").await.status.code() != Some(0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Postfix did not stop\n{}", self.log());
    }
}

impl Drop for Postfix {
    /// A test that failed half-way never leaves a Postfix running.
    fn drop(&mut self) {
        let config = self.config();
        let run = |verb: &str| {
            Command::new("timeout")
                .arg("30")
                .arg(&self.program)
                .arg("-c")
                .arg(&config)
                .arg(verb)
                .output()
        };
        if run("status").is_ok_and(|o| o.status.success()) {
            let stopped = run("stop").is_ok_and(|o| o.status.success());
            if !stopped {
                let _ = run("abort");
            }
        }
    }
}

/// A port nothing listens on now, for Postfix's smtpd.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// main.cf and a master.cf with only the services a relay needs, none chrooted.
fn write_config(dir: &Path, relay: SocketAddr, smtpd: SocketAddr) {
    let d = dir.display();
    let main = format!(
        "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = mta.failmail.test
mydomain = failmail.test
myorigin = client.example
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [{ip}]:{port}
smtp_tls_security_level = none
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
",
        ip = relay.ip(),
        port = relay.port()
    );
    std::fs::write(dir.join("etc/main.cf"), main).unwrap();
    let master = format!(
        "{smtpd} inet n - n - - smtpd
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"
    );
    std::fs::write(dir.join("etc/master.cf"), master).unwrap();
}

/// Hands one message for the four recipients to Postfix's smtpd.
async fn submit(postfix: &Postfix) {
    let mut smtp = PlainConn::open(postfix.smtpd).await;
    smtp.cmd_code("EHLO client.example", 250).await;
    smtp.cmd_code("MAIL FROM:<app@client.example>", 250).await;
    for rcpt in RECIPIENTS {
        smtp.cmd_code(&format!("RCPT TO:<{rcpt}>"), 250).await;
    }
    let body = b"From: app@client.example\r\nSubject: retries\r\nMessage-ID: <postfix-retry@client.example>\r\n\r\nhello\r\n.\r\n";
    smtp.data(body).await.assert_code(250);
    smtp.quit_221().await;
}

/// Delivered to the first two, and `mailbox_full` retried at least twice.
fn settled(report: &Report) -> bool {
    let delivered = |rcpt| report.recipient(rcpt).is_some_and(|(_, r)| r.delivered);
    let retries = report
        .recipient("mailbox_full@example.com")
        .map_or(0, |(_, r)| r.attempts_total);
    delivered("grey@example.com") && delivered("flaky@example.com") && retries >= 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_retries_as_an_mta_should() {
    let server = TestServer::start_with(SCENARIO, |config| {
        // Postfix's backoff here is seconds, not the 30 minutes of RFC 5321 §4.5.4.1.
        config.attempts.backoff_threshold = Duration::from_millis(200);
    })
    .await;
    let Some(postfix) = Postfix::start(server.smtp_addr()).await else {
        return;
    };
    submit(&postfix).await;
    let report = tokio::time::timeout(
        DELIVERY_LIMIT,
        server.wait_for_report(DELIVERY_LIMIT, settled),
    )
    .await
    .unwrap_or_else(|_| panic!("Postfix did not deliver in time\n{}", postfix.log()));
    println!("{}", report.table());

    report
        .assert_ok()
        .assert_no_duplicates()
        .assert_retried("grey@example.com")
        .assert_retried("flaky@example.com")
        .assert_retried("mailbox_full@example.com")
        .assert_delivered("grey@example.com")
        .assert_delivered("flaky@example.com")
        .assert_stopped_after_permanent("user_unknown@example.com")
        .assert_verdict(
            "grey@example.com",
            "respected_greylist_delay",
            Judgement::Pass,
        )
        .assert_verdict("flaky@example.com", "backoff", Judgement::Pass);

    let (message, grey) = report.recipient("grey@example.com").unwrap();
    assert_eq!(
        message.message_id.as_deref(),
        Some("<postfix-retry@client.example>")
    );
    assert_eq!(message.sender, "app@client.example");
    let (_, flaky) = report.recipient("flaky@example.com").unwrap();
    let replies = |r: &failmail::journal::attempts::report::RecipientReport| -> Vec<Option<u16>> {
        r.attempts.iter().map(|a| a.ending.code).collect()
    };
    assert_eq!(replies(grey), [Some(451), Some(250)]);
    assert_eq!(replies(flaky), [Some(451), Some(451), Some(250)]);
    // The delays Postfix used: its queue runs, a second or more apart.
    for delay in grey.delays_ms.iter().chain(&flaky.delays_ms) {
        assert!(
            (500..30_000).contains(delay),
            "a Postfix retry {delay} ms later"
        );
    }
    let (_, unknown) = report.recipient("user_unknown@example.com").unwrap();
    assert_eq!(
        (unknown.attempts_total, unknown.status.as_str()),
        (1, "bounced")
    );
    let (_, full) = report.recipient("mailbox_full@example.com").unwrap();
    assert!(full.still_pending && !full.delivered);
    assert!(full.attempts.iter().all(|a| a.ending.code == Some(452)));
    // Postfix's bounce for user_unknown came back through the relay too: a message of its own.
    let bounce = report
        .messages
        .iter()
        .find(|m| m.sender.is_empty())
        .unwrap_or_else(|| panic!("no bounce in\n{}", report.table()));
    assert_eq!(
        bounce.recipients[0].rcpt.as_deref(),
        Some("app@client.example")
    );
    assert!(bounce.recipients[0].delivered);

    postfix.stop().await;
    server.shutdown().await;
}
