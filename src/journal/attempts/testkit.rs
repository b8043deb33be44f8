//! Attempts built by hand, for the unit tests of the book and the report.

use std::net::{IpAddr, Ipv4Addr};

use super::attempt::{Attempt, EndKind, Ending};
use crate::smtp::policy::Phase;
use crate::smtp::reply::EnhancedStatus;

/// A reply at RCPT with `code` and `status`, at `at_ms`.
pub(super) fn reply(code: u16, status: &str, at_ms: u64) -> Ending {
    Ending {
        kind: EndKind::of_code(code),
        phase: if code < 400 {
            Phase::DataEnd
        } else {
            Phase::Rcpt
        },
        at_ms,
        code: Some(code),
        status: EnhancedStatus::parse(status),
        catalog: None,
        rule: None,
    }
}

/// The catalog's `greylisted` refusal at `at_ms`.
pub(super) fn greylisted(at_ms: u64) -> Ending {
    Ending {
        catalog: Some("greylisted"),
        ..reply(451, "4.7.1", at_ms)
    }
}

/// An ending of `kind` without a reply at `at_ms`.
pub(super) fn silent(kind: EndKind, at_ms: u64) -> Ending {
    Ending {
        kind,
        phase: Phase::DataEnd,
        at_ms,
        code: None,
        status: None,
        catalog: None,
        rule: None,
    }
}

/// An attempt from `sender` in session `session`, started at the first ending's time.
pub(super) fn attempt(
    session: u64,
    sender: &str,
    message_id: Option<&str>,
    recipients: &[(&str, Ending)],
) -> Attempt {
    Attempt {
        id: 0,
        session,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls: false,
        auth_user: None,
        started_ms: recipients.iter().map(|(_, e)| e.at_ms).min().unwrap_or(0),
        sender: sender.into(),
        message_id: message_id.map(Into::into),
        mail_ending: None,
        recipients: recipients
            .iter()
            .map(|(rcpt, ending)| ((*rcpt).into(), ending.clone()))
            .collect(),
    }
}

/// An attempt that MAIL ended with `ending`.
pub(super) fn refused_at_mail(session: u64, sender: &str, ending: Ending) -> Attempt {
    Attempt {
        started_ms: ending.at_ms,
        mail_ending: Some(Ending {
            phase: Phase::Mail,
            ..ending
        }),
        ..attempt(session, sender, None, &[])
    }
}
