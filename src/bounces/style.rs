//! How each mail system words its notifications: the sender, the subject and the human-readable
//! first part of a DSN, in the style of Postfix, Exim, Gmail, Outlook / Exchange, or a generic
//! one of our own. The machine-readable part is the same for all (RFC 3464).
//!
//! Each style names the public source its wording follows ([`Style::source`]). Each flavor
//! writes in the style of the mail system it is known to run ([`Style::of_flavor`]), the
//! evidence for each cited by [`Style::evidence`]; a flavor without public evidence writes the
//! generic style. `failmail catalog --styles` and `GET /api/catalog` list both, as the catalog
//! lists the replies with their sources.

use std::fmt::Write as _;

use super::notice::{Kind, Notice};
use crate::scenario::flavor::Flavor;

/// A notification wording style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Style {
    /// Our own plain wording.
    Generic,
    /// Postfix's bounce templates.
    Postfix,
    /// Exim's bounce and delay-warning messages.
    Exim,
    /// Gmail's "Delivery Status Notification".
    Gmail,
    /// Outlook.com / Exchange Online's "Undeliverable:" reports.
    Outlook,
}

impl Style {
    /// Every style.
    pub const ALL: [Style; 5] = [
        Style::Generic,
        Style::Postfix,
        Style::Exim,
        Style::Gmail,
        Style::Outlook,
    ];

    /// The style a flavor writes its notifications in, by the flavor's name (the generic style
    /// for a name that is no flavor).
    pub fn of(flavor: &str) -> Self {
        flavor
            .parse::<Flavor>()
            .map_or(Style::Generic, Style::of_flavor)
    }

    /// The style a flavor writes its notifications in: that of the mail system the provider is
    /// known to run, where public evidence shows it, else the generic one ([`Style::evidence`]
    /// says which and why). The match names every flavor, so that a new flavor cannot be added
    /// without deciding its style.
    pub fn of_flavor(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Postfix | Flavor::Ovh | Flavor::Yandex => Style::Postfix,
            Flavor::Exim | Flavor::Mailru => Style::Exim,
            Flavor::Gmail => Style::Gmail,
            Flavor::Outlook | Flavor::Exchange => Style::Outlook,
            Flavor::Generic
            | Flavor::Yahoo
            | Flavor::Icloud
            | Flavor::Zoho
            | Flavor::Gmx
            | Flavor::Orange => Style::Generic,
        }
    }

    /// Why `flavor` writes in the style it does: the public evidence of the software its
    /// provider runs, or why it writes the generic one (shown by `failmail catalog --styles`).
    pub fn evidence(flavor: Flavor) -> &'static str {
        match flavor {
            Flavor::Generic => "failmail's own wording",
            Flavor::Postfix => "Postfix's own templates",
            Flavor::Exim => "Exim's own messages",
            Flavor::Gmail => "Gmail's own notices",
            Flavor::Outlook => "Outlook.com's own reports (it runs on Exchange Online)",
            Flavor::Exchange => "Exchange Online writes the same \"Undeliverable:\" reports as Outlook.com, which runs on it",
            Flavor::Ovh => "OVHcloud's MX Plan servers run Postfix",
            Flavor::Yandex => "Yandex's notices are Postfix's template (\"This is the mail system at host yandex.ru.\", \"(in reply to RCPT TO command)\", a Postfix queue id in the boundary) after a Russian preface: sisimai set-of-emails ru-yandex-01.eml, parsed by sisimai lib/Sisimai/Lhost/Yandex.pm",
            Flavor::Mailru => "Mail.ru runs Exim: its notices carry Exim's \"This message was created automatically by mail delivery software.\" and \"------ This is a copy of the message, including all the headers. ------\", an Exim message id and X-Failed-Recipients: sisimai set-of-emails ru-mailru-01.eml and lib/Sisimai/Lhost/MailRu.pm",
            Flavor::Zoho => "generic: Zoho's notices have a layout of their own (\"<addr> Invalid Address, ERROR_CODE :550, …\", sisimai lib/Sisimai/Lhost/Zoho.pm) that no style here imitates",
            Flavor::Gmx => "generic: GMX's notices have a layout of their own (the address in double quotes followed by a colon, then \"SMTP error from remote server after RCPT command:\", sisimai lib/Sisimai/Lhost/GMX.pm) that no style here imitates",
            Flavor::Yahoo => "generic: Yahoo's notices have a layout of their own (\"Sorry, we were unable to deliver your message to the following address.\", sisimai lib/Sisimai/Lhost/Yahoo.pm) that no style here imitates",
            Flavor::Icloud | Flavor::Orange => "generic: no public notice of theirs was found that shows the software writing it",
        }
    }

    /// The flavors that write in this style.
    pub fn flavors(self) -> impl Iterator<Item = Flavor> {
        Flavor::ALL
            .into_iter()
            .filter(move |f| Style::of_flavor(*f) == self)
    }

    /// The style's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Generic => "generic",
            Style::Postfix => "postfix",
            Style::Exim => "exim",
            Style::Gmail => "gmail",
            Style::Outlook => "outlook",
        }
    }

    /// Where the wording comes from.
    pub fn source(self) -> &'static str {
        match self {
            Style::Generic => "failmail's own wording, after the example of RFC 3464 §6",
            Style::Postfix => "Postfix source, src/bounce/bounce_templates.c (def_bounce_fail_body and the delay and success templates); real notices say \"This is the mail system at host …\"",
            Style::Exim => "Exim source, src/deliver.c (\"This message was created automatically by mail delivery software.\") and src/retry.c (\"retry timeout exceeded\"), as quoted in sisimai lib/Sisimai/Lhost/Exim.pm",
            Style::Gmail => "Gmail's \"Delivery Status Notification\" with its \"** … **\" heading and \"The response from the remote server was:\", as parsed by sisimai lib/Sisimai/Lhost/GSuite.pm",
            Style::Outlook => "Exchange / Office 365 \"Undeliverable:\" reports with \"Delivery has failed to these recipients or groups:\", each recipient as \"addr<mailto:addr>\", \"Diagnostic information for administrators\", \"Remote Server returned '…'\" (for a give-up '550 4.4.7 QUEUE.Expired; message expired', the last reply in its [Message=…]) and \"Original message headers:\", as parsed by sisimai lib/Sisimai/Lhost/Exchange2007.pm and Office365.pm and shown by sisimai set-of-emails email-exchange2007-05.eml; the headers Content-Language, X-MS-Exchange-Message-Is-Ndr and X-MS-Exchange-CrossTenant-OriginalArrivalTime / -FromEntityHeader: Hosted, which Office365.pm lists and Exchange Online stamps on what it sends (Outlook.com's mail in public mailing-list archives carries them)",
        }
    }

    /// The `From` header's display name and local part.
    pub fn sender(self) -> (&'static str, &'static str) {
        match self {
            Style::Generic | Style::Exim => ("Mail Delivery System", "MAILER-DAEMON"),
            Style::Postfix => ("Mail Delivery System", "MAILER-DAEMON"),
            Style::Gmail => ("Mail Delivery Subsystem", "mailer-daemon"),
            Style::Outlook => ("Microsoft Outlook", "postmaster"),
        }
    }

    /// The subject of a DSN of `kind` about a message titled `subject`.
    pub fn subject(self, kind: Kind, subject: &str) -> String {
        let fixed = match (self, kind) {
            (Style::Postfix, Kind::Delayed) => "Delayed Mail (still being retried)",
            (Style::Postfix, Kind::Delivered) => "Successful Mail Delivery Report",
            (Style::Postfix, _) => "Undelivered Mail Returned to Sender",
            (Style::Exim, Kind::Delayed) => "Warning: message delayed",
            (Style::Exim, Kind::Delivered) => "Delivery Status Notification",
            (Style::Exim, _) => "Mail delivery failed: returning message to sender",
            (Style::Gmail | Style::Generic, Kind::Delayed) => {
                "Delivery Status Notification (Delay)"
            }
            (Style::Gmail | Style::Generic, Kind::Delivered) => {
                "Delivery Status Notification (Success)"
            }
            (Style::Gmail | Style::Generic, _) => "Delivery Status Notification (Failure)",
            (Style::Outlook, Kind::Delayed) => return format!("Delivery delayed:{subject}"),
            (Style::Outlook, Kind::Delivered) => return format!("Delivered: {subject}"),
            (Style::Outlook, _) => return format!("Undeliverable: {subject}"),
        };
        fixed.to_owned()
    }

    /// Header fields the style's mail system adds to its notices beyond those every notice has
    /// (only Outlook / Exchange adds any).
    pub fn headers(self, notice: &Notice) -> Vec<(&'static str, String)> {
        match self {
            Style::Outlook => outlook_headers(notice),
            _ => Vec::new(),
        }
    }

    /// The human-readable first part of a DSN.
    pub fn human(self, notice: &Notice) -> String {
        let mut text = String::new();
        match self {
            Style::Postfix => postfix(notice, &mut text),
            Style::Exim => exim(notice, &mut text),
            Style::Gmail => gmail(notice, &mut text),
            Style::Outlook => outlook(notice, &mut text),
            Style::Generic => generic(notice, &mut text),
        }
        text
    }
}

/// A duration in whole hours or days, as MTAs word it.
pub(super) fn span(ms: u64) -> String {
    let hours = ms / 3_600_000;
    if hours >= 48 && hours % 24 == 0 {
        format!("{} days", hours / 24)
    } else if hours >= 1 {
        format!("{hours} hour(s)")
    } else {
        format!("{} minute(s)", (ms / 60_000).max(1))
    }
}

/// The reply of a recipient on one line, as Postfix and Exim quote it.
fn said(notice: &Notice, index: usize) -> String {
    notice.recipients[index]
        .reply()
        .map(super::dsn::joined_reply)
        .unwrap_or_else(|| "250 2.0.0 Ok".to_owned())
}

fn postfix(notice: &Notice, t: &mut String) {
    let host = &notice.original.reporting_mta;
    if notice.kind == Kind::Delayed {
        t.push_str("####################################################################\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\n");
    }
    let _ = writeln!(t, "This is the mail system at host {host}.\n");
    match notice.kind {
        Kind::Delayed => {
            let waited = notice.due_ms.saturating_sub(notice.original.arrival_ms);
            let until = notice
                .retry_until_ms
                .unwrap_or(notice.due_ms)
                .saturating_sub(notice.original.arrival_ms);
            let _ = writeln!(
                t,
                "Your message could not be delivered for more than {}. It will\nbe retried until it is {} old.\n\nFor further assistance, please send mail to postmaster.\n\nIf you do so, please include this problem report. You can\ndelete your own text from the attached returned message.\n\n                   The mail system\n",
                span(waited),
                span(until)
            );
        }
        Kind::Delivered => t.push_str("Your message was successfully delivered to the destination(s)\nlisted below. If the message was delivered to mailbox you will\nreceive no further notifications. Otherwise you may still receive\nnotifications of mail delivery errors from other systems.\n\n                   The mail system\n\n"),
        _ => t.push_str("I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\nFor further assistance, please send mail to postmaster.\n\nIf you do so, please include this problem report. You can\ndelete your own text from the attached returned message.\n\n                   The mail system\n\n"),
    }
    for (i, r) in notice.recipients.iter().enumerate() {
        let what = match notice.kind {
            Kind::Delivered => "delivery via",
            Kind::Expired => "message delivery time exceeded; host",
            _ => "host",
        };
        let _ = writeln!(
            t,
            "<{}>: {what} {}[127.0.0.1] said: {} (in reply to RCPT TO command)\n",
            r.recipient,
            r.domain(),
            said(notice, i)
        );
    }
}

fn exim(notice: &Notice, t: &mut String) {
    t.push_str("This message was created automatically by mail delivery software.\n\n");
    let host = &notice.original.reporting_mta;
    match notice.kind {
        Kind::Delayed => {
            let waited = notice.due_ms.saturating_sub(notice.original.arrival_ms);
            let _ = writeln!(t, "A message that you sent has not yet been delivered to one or more of its\nrecipients after more than {} on the queue on {host}.\n\nThe message identifier is:     {}\n\nThe address(es) that have not yet been delivered are:\n", span(waited), notice.original.queue_id);
        }
        Kind::Delivered => t.push_str("Your message has been delivered to the following address(es):\n\n"),
        Kind::Expired => t.push_str("A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"),
        _ => t.push_str("A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"),
    }
    for (i, r) in notice.recipients.iter().enumerate() {
        let _ = writeln!(t, "  {}", r.recipient);
        let detail = match notice.kind {
            Kind::Expired => format!("retry timeout exceeded\n    host {} said: {}", r.domain(), said(notice, i)),
            Kind::Delivered => format!("host {} said: {}", r.domain(), said(notice, i)),
            _ => format!("host {} [127.0.0.1]\n    SMTP error from remote mail server after RCPT TO:<{}>:\n    {}", r.domain(), r.recipient, said(notice, i)),
        };
        let _ = writeln!(t, "    {detail}");
    }
    if notice.kind == Kind::Delayed {
        t.push_str("\nNo action is required on your part. Delivery attempts will continue for\nsome time, and this warning may be repeated at intervals if the message\nremains undelivered. Eventually the mail delivery software will give up,\nand when that happens, the message will be returned to you.\n");
    }
}

fn gmail(notice: &Notice, t: &mut String) {
    let to: Vec<&str> = notice
        .recipients
        .iter()
        .map(|r| r.recipient.as_str())
        .collect();
    let to = to.join(", ");
    match notice.kind {
        Kind::Delayed => {
            let left = notice
                .retry_until_ms
                .unwrap_or(notice.due_ms)
                .saturating_sub(notice.due_ms);
            let _ = writeln!(t, "** Message not delivered yet **\n\nThere was a temporary problem delivering your message to {to}. Gmail will retry for {} more. You'll be notified if the delivery fails permanently.\n", span(left));
        }
        Kind::Delivered => {
            let _ = writeln!(
                t,
                "** Message delivered **\n\nYour message was delivered to {to}.\n"
            );
        }
        _ => {
            let _ = writeln!(t, "** Message not delivered **\n\nThere was a problem delivering your message to {to}. See the technical details below.\n");
        }
    }
    if notice.kind != Kind::Delivered {
        t.push_str("The response from the remote server was:\n");
        for i in 0..notice.recipients.len() {
            let _ = writeln!(t, "{}", said(notice, i));
        }
    }
}

fn outlook(notice: &Notice, t: &mut String) {
    let host = &notice.original.reporting_mta;
    let heading = match notice.kind {
        Kind::Delayed => "Delivery is delayed to these recipients or groups:",
        Kind::Delivered => "Your message has been delivered to the following recipients:",
        _ => "Delivery has failed to these recipients or groups:",
    };
    let _ = writeln!(t, "{heading}\n");
    // Exchange writes each recipient as the link of its HTML part, flattened to text.
    for r in &notice.recipients {
        let _ = writeln!(t, "{0}<mailto:{0}>", r.recipient);
    }
    match notice.kind {
        Kind::Delayed => {
            let left = notice.retry_until_ms.unwrap_or(notice.due_ms).saturating_sub(notice.due_ms);
            let _ = writeln!(t, "This message hasn't been delivered yet. Delivery will continue to be attempted.\n\nThe server will keep trying to deliver this message for the next {}. You'll be notified if the message can't be delivered by that time.\n", span(left));
        }
        Kind::Delivered => t.push('\n'),
        Kind::Expired => t.push_str("The server has tried to deliver this message, without success, and has stopped trying. Try sending this message again. If the problem continues, contact your help desk.\n\n"),
        _ => t.push_str("Your message couldn't be delivered. The recipient's email system said the address or the message was not accepted. Please check the recipient's email address and try to resend the message. If the problem continues, please contact your helpdesk.\n\n"),
    }
    if notice.kind != Kind::Delivered {
        let _ = writeln!(
            t,
            "\nDiagnostic information for administrators:\n\nGenerating server: {host}\n"
        );
        for (i, r) in notice.recipients.iter().enumerate() {
            // A give-up is Exchange's own verdict, with the last reply it met in brackets.
            let returned = match notice.kind {
                Kind::Expired => format!(
                    "550 4.4.7 QUEUE.Expired; message expired [Message={}] [LastAttemptedServerName={}]",
                    said(notice, i),
                    r.remote_mta()
                ),
                _ => said(notice, i),
            };
            let _ = writeln!(t, "{}\nRemote Server returned '{returned}'\n", r.recipient);
        }
        t.push_str("Original message headers:\n\n");
        let headers = super::plan::header_section(&notice.original.content);
        t.push_str(&String::from_utf8_lossy(headers).replace("\r\n", "\n"));
    }
}

/// The header fields Exchange Online stamps on its reports (Outlook.com's included), which
/// bounce parsers read to know one: `Content-Language`, `X-MS-Exchange-Message-Is-Ndr` on a
/// non-delivery or delay report, and the arrival time and origin of the cross-tenant headers.
fn outlook_headers(notice: &Notice) -> Vec<(&'static str, String)> {
    let arrival = notice.original.arrival_ms;
    // "Fri, 15 Jan 2027 08:00:00 +0000" becomes "15 Jan 2027 08:00:00.0000 (UTC)".
    let date = super::dsn::rfc822(arrival);
    let date = date
        .split(' ')
        .skip(1)
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    let mut headers = vec![("Content-Language", "en-US".to_owned())];
    if notice.kind != Kind::Delivered {
        headers.push(("X-MS-Exchange-Message-Is-Ndr", String::new()));
    }
    headers.push((
        "X-MS-Exchange-CrossTenant-OriginalArrivalTime",
        format!("{date}.{:03}0 (UTC)", arrival % 1000),
    ));
    headers.push((
        "X-MS-Exchange-CrossTenant-FromEntityHeader",
        "Hosted".to_owned(),
    ));
    headers
}

fn generic(notice: &Notice, t: &mut String) {
    let host = &notice.original.reporting_mta;
    let _ = writeln!(
        t,
        "This is an automatically generated Delivery Status Notification from {host}.\n"
    );
    match notice.kind {
        Kind::Delayed => {
            let until = notice.retry_until_ms.unwrap_or(notice.due_ms).saturating_sub(notice.original.arrival_ms);
            let _ = writeln!(t, "Delivery to the following recipients has been delayed. Delivery will be\nretried until the message is {} old; you need not resend it.\n", span(until));
        }
        Kind::Delivered => t.push_str("Your message was delivered to the following recipients:\n\n"),
        Kind::Expired => t.push_str("Delivery to the following recipients failed: the message could not be\ndelivered before its delivery time expired.\n\n"),
        _ => t.push_str("Delivery to the following recipients failed permanently:\n\n"),
    }
    for (i, r) in notice.recipients.iter().enumerate() {
        let _ = writeln!(t, "  {}\n    {}\n", r.recipient, said(notice, i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_map_to_styles() {
        assert_eq!(Style::of("ovh"), Style::Postfix);
        assert_eq!(Style::of("yandex"), Style::Postfix);
        assert_eq!(Style::of("mailru"), Style::Exim);
        assert_eq!(Style::of("exchange"), Style::Outlook);
        assert_eq!(Style::of("yahoo"), Style::Generic);
        assert_eq!(Style::of("gmail"), Style::Gmail);
        assert_eq!(Style::of("no-such-flavor"), Style::Generic);
        let listed: usize = Style::ALL.iter().map(|s| s.flavors().count()).sum();
        assert_eq!(
            listed,
            Flavor::ALL.len(),
            "every flavor writes in one style"
        );
        for style in Style::ALL {
            assert_eq!(Style::of(style.as_str()), style);
        }
    }

    #[test]
    fn spans() {
        assert_eq!(span(4 * 3_600_000), "4 hour(s)");
        assert_eq!(span(5 * 86_400_000), "5 days");
        assert_eq!(span(60_000), "1 minute(s)");
    }
}
