//! The session's debug log (`FAILMAIL_LOG=debug`): one line per command, per reply (with the
//! phase, the scenario rule by index, name and `file:line`, and the catalog name when a policy
//! decided it) and per decision that closed or hung the session without a reply.
//!
//! Commands come from the session's trace, where AUTH credentials are already `****`: no
//! credential reaches a log line.

use tracing::{debug, Level};

use crate::smtp::policy::RuleRef;
use crate::smtp::session::{Decided, ReplyTrace, SilentAction};

/// Whether the debug lines are wanted: then the session must copy commands and replies for them.
pub(super) fn wanted() -> bool {
    tracing::enabled!(Level::DEBUG)
}

/// A command line as received (credentials hidden).
pub(super) fn command(line: &str) {
    debug!(line, "command");
}

/// A reply, and the decision behind it.
pub(super) fn reply(reply: &ReplyTrace) {
    if !wanted() {
        return;
    }
    let decided = reply.decided.as_ref();
    let rule = decided.and_then(|d| d.rule.as_deref());
    // One log line per reply: a multi-line reply's lines are joined by " / ".
    let text = reply.reply.as_ref().map(|r| r.text().replace('\n', " / "));
    let status = reply.status.map(|s| s.to_string());
    debug!(
        code = reply.code,
        status = status.as_deref(),
        text = text.as_deref(),
        times = (reply.times > 1).then_some(reply.times),
        phase = decided.map(|d| d.phase.as_str()),
        rule = rule.map(|r| r.index),
        rule_name = rule.and_then(|r| r.name.as_deref()),
        rule_at = rule.map(RuleRef::location).as_deref(),
        catalog = decided.and_then(|d| d.catalog),
        limited = decided.is_some_and(|d| d.limited).then_some(true),
        "reply"
    );
}

/// A decision that closed the session, or left it hanging, without a reply.
pub(super) fn silent(action: SilentAction, decided: &Decided) {
    let rule = decided.rule.as_deref();
    debug!(
        action = action.as_str(),
        phase = decided.phase.as_str(),
        rule = rule.map(|r| r.index),
        rule_name = rule.and_then(|r| r.name.as_deref()),
        rule_at = rule.map(RuleRef::location).as_deref(),
        "no reply"
    );
}
