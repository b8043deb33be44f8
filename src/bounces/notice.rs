//! What a later notification is about: the message it answers ([`Original`], kept once for all
//! its notices), what it says ([`Kind`]) and for whom ([`NoticeRecipient`]).

use std::sync::Arc;

use bytes::Bytes;

use super::style::Style;
use crate::smtp::policy::{Fate, Later};
use crate::smtp::reply::{status, EnhancedStatus, Reply};

/// What a notice tells the envelope sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A delay notice: still being retried (`Action: delayed`).
    Delayed,
    /// A permanent failure (`Action: failed`, the 5xx status).
    Failed,
    /// A temporary failure retried until the give-up time, then failed (`Action: failed`,
    /// `Status: 4.4.7`, delivery time expired).
    Expired,
    /// A success notice (`Action: delivered`), sent only when asked with `NOTIFY=SUCCESS`.
    Delivered,
    /// An abuse feedback report (RFC 5965), not a DSN.
    Complaint,
    /// An auto-reply (RFC 3834), not a DSN.
    AutoReply,
}

impl Kind {
    /// The name in the API and in events: `delayed`, `failed`, `expired`, `delivered`,
    /// `complaint`, `auto_reply`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Delayed => "delayed",
            Kind::Failed => "failed",
            Kind::Expired => "expired",
            Kind::Delivered => "delivered",
            Kind::Complaint => "complaint",
            Kind::AutoReply => "auto_reply",
        }
    }

    /// The DSN `Action` field (RFC 3464 §2.3.3); `None` for the reports that are not DSNs.
    pub fn action(self) -> Option<&'static str> {
        match self {
            Kind::Delayed => Some("delayed"),
            Kind::Failed | Kind::Expired => Some("failed"),
            Kind::Delivered => Some("delivered"),
            Kind::Complaint | Kind::AutoReply => None,
        }
    }

    /// Whether this is a delivery status notification (`multipart/report;
    /// report-type=delivery-status`).
    pub fn is_dsn(self) -> bool {
        self.action().is_some()
    }
}

/// The accepted message a notice answers, as the notice needs it.
#[derive(Debug)]
pub struct Original {
    /// The queue id its 250 gave.
    pub queue_id: String,
    /// The envelope sender, exactly as given: the notice goes to it.
    pub mail_from: String,
    /// `ENVID`, decoded from xtext.
    pub envid: Option<String>,
    /// Whether `RET=FULL` asked for the whole message back.
    pub return_full: bool,
    /// The whole message (`RET=FULL`, reports) or its header section.
    pub content: Bytes,
    /// When it was accepted, in milliseconds since the epoch (on the clock).
    pub arrival_ms: u64,
    /// The name failmail reports as (`Reporting-MTA`).
    pub reporting_mta: String,
    /// The client's EHLO name and address (`Received-From-MTA`, `Source-IP`).
    pub client_helo: Option<String>,
    /// The client's IP address as text.
    pub client_ip: String,
}

/// One recipient listed in a notice.
#[derive(Debug, Clone)]
pub struct NoticeRecipient {
    /// The accepted recipient (`Final-Recipient`).
    pub recipient: String,
    /// `ORCPT`, decoded (`Original-Recipient`): `(address type, address)`.
    pub original: Option<(String, String)>,
    /// Its later fate, with the reply the next hop gave.
    pub later: Arc<Later>,
}

impl NoticeRecipient {
    /// The next hop's reply, for bounces.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.later.fate {
            Fate::Bounced { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The `Status` field for this recipient in a notice of `kind` (RFC 3463).
    pub fn status(&self, kind: Kind) -> EnhancedStatus {
        let given = self.reply().map(|reply| {
            reply
                .status()
                .unwrap_or(status((reply.code() / 100) as u8, 0, 0))
        });
        match (kind, given) {
            (Kind::Delivered | Kind::Complaint | Kind::AutoReply, _) | (_, None) => status(2, 0, 0),
            (Kind::Expired, _) => status(4, 4, 7),
            (Kind::Delayed, Some(s)) => EnhancedStatus { class: 4, ..s },
            (Kind::Failed, Some(s)) => s,
        }
    }

    /// The recipient's domain, or the whole address when it has none.
    pub fn domain(&self) -> &str {
        self.recipient
            .rsplit_once('@')
            .map_or(self.recipient.as_str(), |(_, domain)| domain)
    }

    /// The host that gave the reply (`Remote-MTA`), as the flavor that answered names it: for
    /// Outlook.com and Exchange Online, the host Exchange Online Protection gives every domain it
    /// receives for, the domain with its dots as hyphens under `mail.protection.outlook.com`
    /// (Microsoft's "Add DNS records to connect your domain": the MX points to
    /// `<domain-key>.mail.protection.outlook.com`); for the others, the recipient's domain.
    pub fn remote_mta(&self) -> String {
        match super::style::Style::of(self.later.style) {
            super::style::Style::Outlook => {
                format!(
                    "{}.mail.protection.outlook.com",
                    self.domain().replace('.', "-")
                )
            }
            _ => self.domain().to_owned(),
        }
    }
}

/// One notification, scheduled or sent: one per message, kind and due time, listing every
/// recipient that reached that state together, as real MTAs do.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Its id (`/api/bounces/{id}`), increasing from 1 (0 until scheduled).
    pub id: u64,
    /// The message it answers: its id in the journal (`/api/messages/{id}`).
    pub message_id: u64,
    /// When it is due, in milliseconds since the epoch (on the clock).
    pub due_ms: u64,
    /// What it says.
    pub kind: Kind,
    /// Whose style it is written in.
    pub style: Style,
    /// The message it answers.
    pub original: Arc<Original>,
    /// Who it is about.
    pub recipients: Vec<NoticeRecipient>,
    /// For a delay notice: until when delivery is retried.
    pub retry_until_ms: Option<u64>,
}

impl Notice {
    /// Roughly how many bytes it keeps, beyond the original it shares.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .recipients
                .iter()
                .map(|r| std::mem::size_of::<NoticeRecipient>() + r.recipient.len() + 128)
                .sum::<usize>()
    }
}
