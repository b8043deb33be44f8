//! Receiving limits: how many messages one recipient mailbox, or one recipient domain, takes per
//! window (`[limits] per_recipient`, `per_recipient_domain`), as real providers limit what their
//! users receive. Checked at RCPT in the same atomic reservation as the sending limits, so that
//! a refused recipient takes nothing; answered in the recipient's provider's voice.

use super::rule::ReplySpec;
use super::settings::LimitSettings;
use crate::limits::{keys, LimitCheck, Window};

/// The receiving checks for `rcpt`, each with the reply that refuses it when its window is full.
pub(crate) fn receiving_checks<'a>(
    limits: &'a LimitSettings,
    rcpt: &str,
) -> impl Iterator<Item = (LimitCheck, &'a ReplySpec)> + 'a {
    let check = |window: Option<Window>, key: fn(&str) -> String, reply: &'a ReplySpec| {
        window.map(|window| {
            let check = LimitCheck {
                key: key(rcpt),
                max: window.max,
                per: window.per,
            };
            (check, reply)
        })
    };
    let mailbox = check(
        limits.per_recipient,
        keys::recipient_key,
        &limits.recipient_reply,
    );
    let domain = check(
        limits.per_recipient_domain,
        keys::recipient_domain_key,
        &limits.domain_reply,
    );
    mailbox.into_iter().chain(domain)
}

/// Whether any receiving limit is set.
pub(crate) fn any(limits: &LimitSettings) -> bool {
    limits.per_recipient.is_some() || limits.per_recipient_domain.is_some()
}
