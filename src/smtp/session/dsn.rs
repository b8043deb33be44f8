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
