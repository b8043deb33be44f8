//! Assertions on the retry report, for Rust tests: each one panics with the verdict's reason and
//! the recipient's attempts quoted, so that a failing test says what the mailer did.

use crate::journal::attempts::report::{
    AttemptEntry, Judgement, MessageReport, RecipientReport, Report,
};
use crate::scenario::catalog::iso_time;

impl Report {
    /// Asserts that no verdict failed; the panic lists each failed one with its attempts.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        if !self.ok {
            let mut text = String::from("failmail::testing: the retry report has failed verdicts");
            for message in &self.messages {
                for recipient in message.recipients.iter().filter(|r| !r.ok) {
                    text += &format!("\n{}", quote(message, recipient));
                }
            }
            panic!("{text}");
        }
        self
    }

    /// Asserts that every temporary failure of `rcpt` was followed by a retry
    /// (`retried_after_temporary` passed).
    #[track_caller]
    pub fn assert_retried(&self, rcpt: &str) -> &Self {
        self.assert_verdict(rcpt, "retried_after_temporary", Judgement::Pass)
    }

    /// Asserts that no attempt for `rcpt` came after its permanent failure
    /// (`stopped_after_permanent` passed).
    #[track_caller]
    pub fn assert_stopped_after_permanent(&self, rcpt: &str) -> &Self {
        self.assert_verdict(rcpt, "stopped_after_permanent", Judgement::Pass)
    }

    /// Asserts that the message was stored for `rcpt` at least once.
    #[track_caller]
    pub fn assert_delivered(&self, rcpt: &str) -> &Self {
        let (message, recipient) = self.expect_recipient(rcpt);
        assert!(
            recipient.delivered,
            "failmail::testing: {rcpt} was not delivered ({})\n{}",
            recipient.status,
            quote(message, recipient)
        );
        self
    }

    /// Asserts that no message was accepted twice for a recipient.
    #[track_caller]
    pub fn assert_no_duplicates(&self) -> &Self {
        for message in &self.messages {
            for recipient in &message.recipients {
                assert!(
                    recipient.duplicates == 0,
                    "failmail::testing: {} was accepted {} time(s) more than once\n{}",
                    recipient.rcpt.as_deref().unwrap_or("-"),
                    recipient.duplicates,
                    quote(message, recipient)
                );
            }
        }
        self
    }

    /// Asserts that the verdict `name` on `rcpt` (its latest message) is present and `expected`.
    #[track_caller]
    pub fn assert_verdict(&self, rcpt: &str, name: &str, expected: Judgement) -> &Self {
        let (message, recipient) = self.expect_recipient(rcpt);
        match recipient.verdicts.get(name) {
            Some(verdict) if verdict.result == expected => {}
            Some(verdict) => panic!(
                "failmail::testing: {name} on {rcpt} is {:?}, not {expected:?}: {}\n{}",
                verdict.result,
                verdict.detail,
                quote(message, recipient)
            ),
            None => panic!(
                "failmail::testing: {name} does not apply to {rcpt}\n{}",
                quote(message, recipient)
            ),
        }
        self
    }

    #[track_caller]
    fn expect_recipient(&self, rcpt: &str) -> (&MessageReport, &RecipientReport) {
        self.recipient(rcpt).unwrap_or_else(|| {
            panic!(
                "failmail::testing: the retry report has no attempt for {rcpt}\n{}",
                self.table()
            )
        })
    }
}

/// A recipient's verdicts and attempts, one per line.
fn quote(message: &MessageReport, recipient: &RecipientReport) -> String {
    let mut text = format!(
        "{} of message {} from <{}>: {}, {} attempt(s)",
        recipient.rcpt.as_deref().unwrap_or("(no recipient)"),
        message.name(),
        message.sender,
        recipient.status,
        recipient.attempts_total
    );
    for (name, verdict) in recipient.verdicts.named() {
        text += &format!("\n  {name}: {:?}: {}", verdict.result, verdict.detail);
    }
    for entry in &recipient.attempts {
        text += &format!("\n    {}", attempt_line(entry));
    }
    text
}

/// `attempt 3 at …Z, session 5 from 127.0.0.1 (TLS, AUTH alice): rcpt 451 4.7.1 greylisted
/// (rule 0 "name" at file:3): temporary`.
fn attempt_line(entry: &AttemptEntry) -> String {
    let (facts, ending) = (&entry.facts, &entry.ending);
    let mut state = Vec::new();
    if facts.tls {
        state.push("TLS".to_owned());
    }
    if let Some(user) = &facts.auth_user {
        state.push(format!("AUTH {user}"));
    }
    let state = if state.is_empty() {
        String::new()
    } else {
        format!(" ({})", state.join(", "))
    };
    let mut reply = match (ending.code, &ending.status) {
        (Some(code), Some(status)) => format!(" {code} {status}"),
        (Some(code), None) => format!(" {code}"),
        _ => String::new(),
    };
    if let Some(catalog) = &ending.catalog {
        reply += &format!(" {catalog}");
    }
    if let (Some(rule), Some(at)) = (ending.rule, &ending.rule_at) {
        let name = ending
            .rule_name
            .as_deref()
            .map(|n| format!(" {n:?}"))
            .unwrap_or_default();
        reply += &format!(" (rule {rule}{name} at {at})");
    }
    format!(
        "attempt {} at {}, session {} from {}{state}: {}{reply}: {}",
        facts.attempt,
        iso_time(ending.at_ms),
        facts.session,
        facts.client_ip,
        ending.phase,
        ending.result
    )
}
