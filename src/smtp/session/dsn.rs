//! What a transaction asked of delivery status notifications (RFC 3461: `RET`, `ENVID` on MAIL,
//! `NOTIFY`, `ORCPT` on each RCPT) and what the policy said becomes of each recipient later,
//! kept per recipient and handed back with the stored message ([`DsnEnvelope`]).
//!
//! The common transaction asks for nothing and has no later fate: then nothing is copied and
//! the message carries `None`.

use std::sync::Arc;

use crate::smtp::command::{Notify, Ret};
use crate::smtp::policy::Later;

/// The DSN side of an accepted message's envelope, one entry per recipient.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnEnvelope {
    /// `RET=` of MAIL FROM: the whole message or its headers in a DSN.
    pub ret: Option<Ret>,
    /// `ENVID=` of MAIL FROM, still xtext-encoded as received.
    pub envid: Option<String>,
    /// Per accepted recipient, in the order of the message's recipients.
    pub recipients: Vec<DsnRecipient>,
}

/// One accepted recipient's DSN parameters and later fate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnRecipient {
    /// `NOTIFY=` of its RCPT TO.
    pub notify: Option<Notify>,
    /// `ORCPT=` of its RCPT TO (`addr-type;xtext`), as received.
    pub orcpt: Option<String>,
    /// What the policy said becomes of it after the 250.
    pub later: Option<Arc<Later>>,
}

impl DsnRecipient {
    fn is_plain(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none() && self.later.is_none()
    }
}

/// The DSN parameters being gathered by the transaction in progress: those of the command being
/// decided, then those of each accepted recipient. Buffers are reused between transactions.
#[derive(Debug, Default)]
pub(super) struct DsnParams {
    ret: Option<Ret>,
    envid: Option<String>,
    recipients: Vec<DsnRecipient>,
    /// The RCPT being decided.
    candidate: DsnRecipient,
}

impl DsnParams {
    /// MAIL FROM's parameters, kept whatever the decision (a refused MAIL is followed by another
    /// MAIL, which sets them again).
    pub(super) fn mail(&mut self, ret: Option<Ret>, envid: Option<&str>) {
        self.ret = ret;
        self.envid = envid.map(str::to_owned);
    }

    /// The parameters of the RCPT being decided.
    pub(super) fn rcpt(&mut self, notify: Option<Notify>, orcpt: Option<&str>) {
        self.candidate = DsnRecipient {
            notify,
            orcpt: orcpt.map(str::to_owned),
            later: None,
        };
    }

    /// The policy's later fate for the RCPT being decided.
    pub(super) fn decided(&mut self, later: Option<Arc<Later>>) {
        self.candidate.later = later;
    }

    /// The RCPT being decided was accepted.
    pub(super) fn accepted(&mut self) {
        let candidate = std::mem::take(&mut self.candidate);
        self.recipients.push(candidate);
    }

    /// Whether any accepted recipient has a later fate.
    pub(super) fn has_later(&self) -> bool {
        self.recipients.iter().any(|r| r.later.is_some())
    }

    /// What the stored message carries: `None` when nothing was asked nor decided.
    pub(super) fn envelope(&self) -> Option<Box<DsnEnvelope>> {
        if self.ret.is_none()
            && self.envid.is_none()
            && self.recipients.iter().all(|r| r.is_plain())
        {
            return None;
        }
        Some(Box::new(DsnEnvelope {
            ret: self.ret,
            envid: self.envid.clone(),
            recipients: self.recipients.clone(),
        }))
    }

    /// Forgets the transaction (the recipients' buffer is kept).
    pub(super) fn clear(&mut self) {
        self.ret = None;
        self.envid = None;
        self.recipients.clear();
        self.candidate = DsnRecipient::default();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;

    use super::*;
    use crate::smtp::policy::{Decision, Fate, Phase, Verdict};
    use crate::smtp::reply::fixed;
    use crate::smtp::session::{drive, Message, Session, SessionConfig};

    /// A pipelined transaction: RET/ENVID, three recipients (one refused), each with its own
    /// NOTIFY/ORCPT, the accepted ones with the policy's later fate or none.
    #[test]
    fn parameters_and_later_fates_are_kept_per_accepted_recipient() {
        let later = Arc::new(Later {
            fate: Fate::Delivered {
                after: Duration::from_secs(60),
            },
            style: "generic",
        });
        let mut session = Session::new(
            Arc::new(SessionConfig::default()),
            1,
            "192.0.2.1:4000".parse().unwrap(),
            false,
        );
        let (mut input, mut out) = (BytesMut::new(), BytesMut::new());
        let mut stored: Vec<Message> = Vec::new();
        let step = session.start();
        let decide =
            |phase: Phase, view: &crate::smtp::policy::SessionView<'_>| match (phase, view.rcpt) {
                (Phase::Rcpt, Some(r)) if r.starts_with("refused") => {
                    Decision::reply(fixed::NEED_HELO)
                }
                (Phase::Rcpt, Some(r)) if r.starts_with("later") => Decision {
                    later: Some(later.clone()),
                    ..Decision::CONTINUE
                },
                _ => Decision::from(Verdict::Continue),
            };
        drive::run(&mut session, &mut input, &mut out, step, decide, |m| {
            stored.push(m);
            Ok(())
        });
        let script = b"EHLO c\r\nMAIL FROM:<a@x> RET=FULL ENVID=QQ+2B1\r\nRCPT TO:<later@y> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;o+2Bx@y\r\nRCPT TO:<refused@y> NOTIFY=NEVER ORCPT=rfc822;r@y\r\nRCPT TO:<plain@y>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<plain@y>\r\nDATA\r\n\r\n.\r\n";
        drive::feed(&mut session, &mut input, &mut out, script, decide, |m| {
            stored.push(m);
            Ok(())
        });
        assert_eq!(stored.len(), 2, "{}", String::from_utf8_lossy(&out));
        let dsn = stored[0].dsn.as_deref().expect("parameters were given");
        assert_eq!(stored[0].recipients, ["later@y", "plain@y"]);
        assert_eq!(dsn.ret, Some(Ret::Full));
        assert_eq!(dsn.envid.as_deref(), Some("QQ+2B1"));
        assert_eq!(dsn.recipients.len(), 2);
        let first = &dsn.recipients[0];
        assert_eq!(first.orcpt.as_deref(), Some("rfc822;o+2Bx@y"));
        assert!(first
            .notify
            .is_some_and(|n| n.success && n.delay && !n.never));
        assert_eq!(first.later.as_ref(), Some(&later));
        assert_eq!(
            dsn.recipients[1],
            DsnRecipient::default(),
            "the refused one's are not kept"
        );
        assert_eq!(
            stored[1].dsn, None,
            "the next transaction starts clean and carries nothing"
        );
    }
}
