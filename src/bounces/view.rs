//! What `/api/bounces` and `TestServer::bounces` show of a notification, pending or sent; and
//! what the catalog (`GET /api/catalog`, `failmail catalog --styles`) shows of each notification
//! style.

use serde::Serialize;

use super::notice::{Kind, Notice};
use super::style::Style;
use super::{Forwarded, Sent};

/// One notification, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BounceView {
    /// Its id (`/api/bounces/{id}/raw`).
    pub id: u64,
    /// `pending` or `sent`.
    pub state: &'static str,
    /// `failed`, `expired`, `delayed`, `delivered`, `complaint` or `auto_reply`.
    pub kind: &'static str,
    /// The DSN `Action` (`failed`, `delayed`, `delivered`); none for complaints and auto-replies.
    pub action: Option<&'static str>,
    /// Whose style it is written in.
    pub style: &'static str,
    /// Who gets it: the message's envelope sender, exactly.
    pub to: String,
    /// The recipients it is about.
    pub recipients: Vec<RecipientView>,
    /// When it is (or was) due, in milliseconds since the epoch on the clock.
    pub due_at_ms: u64,
    /// When it was sent, on the clock.
    pub sent_at_ms: Option<u64>,
    /// The message it answers (`/api/messages/{id}`).
    pub original_message_id: u64,
    /// The notification stored as a message (`/api/messages/{id}`), once sent.
    pub message_id: Option<u64>,
    /// With `--bounce-to`: `pending`, `delivered` or `failed`.
    pub forwarded: Option<&'static str>,
}

/// One recipient of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientView {
    /// The recipient (`Final-Recipient`).
    pub recipient: String,
    /// The `Status` given for it.
    pub status: String,
    /// The reply its `Diagnostic-Code` quotes, for bounces.
    pub reply: Option<String>,
    /// The catalog name of that reply.
    pub catalog: Option<&'static str>,
}

impl BounceView {
    /// A pending notification.
    pub fn pending(notice: &Notice) -> Self {
        Self::of(notice, "pending", None, None, None)
    }

    /// A sent one.
    pub fn sent(sent: &Sent) -> Self {
        let forwarded = match sent.forwarded() {
            Forwarded::No => None,
            Forwarded::Pending => Some("pending"),
            Forwarded::Delivered => Some("delivered"),
            Forwarded::Failed => Some("failed"),
        };
        Self::of(
            &sent.notice,
            "sent",
            Some(sent.sent_ms),
            sent.message_id,
            forwarded,
        )
    }

    fn of(
        notice: &Notice,
        state: &'static str,
        sent_at_ms: Option<u64>,
        message_id: Option<u64>,
        forwarded: Option<&'static str>,
    ) -> Self {
        Self {
            id: notice.id,
            state,
            kind: notice.kind.as_str(),
            action: notice.kind.action(),
            style: notice.style.as_str(),
            to: notice.original.mail_from.clone(),
            recipients: notice
                .recipients
                .iter()
                .map(|r| RecipientView {
                    recipient: r.recipient.clone(),
                    status: r.status(notice.kind).to_string(),
                    reply: r.reply().map(super::dsn::joined_reply),
                    catalog: match &r.later.fate {
                        crate::smtp::policy::Fate::Bounced { catalog, .. } => *catalog,
                        _ => None,
                    },
                })
                .collect(),
            due_at_ms: notice.due_ms,
            sent_at_ms,
            original_message_id: notice.message_id,
            message_id,
            forwarded,
        }
    }
}

/// A notification style as the catalog shows it, beside the replies: who writes in it, what
/// its notices are titled and sent from, and the public source its wording follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StyleView {
    /// Its name (`BounceView::style`).
    pub name: &'static str,
    /// The flavors whose later bounces are written in it, each with the evidence for it.
    pub flavors: Vec<StyleFlavor>,
    /// The `From` of its notices, `{host}` standing for failmail's host name.
    pub from: String,
    /// The subject of each kind of DSN, `{subject}` standing for the original message's.
    pub subjects: StyleSubjects,
    /// Where its wording comes from.
    pub source: &'static str,
}

/// A flavor that writes in a style, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StyleFlavor {
    /// The flavor's name.
    pub flavor: &'static str,
    /// The public evidence that its provider writes so (or why it writes the generic style).
    pub evidence: &'static str,
}

/// The subjects of a style's DSNs, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StyleSubjects {
    /// A permanent failure.
    pub failed: String,
    /// A 4xx given up after its retries.
    pub expired: String,
    /// A delay notice.
    pub delayed: String,
    /// A success notice.
    pub delivered: String,
}

impl StyleView {
    /// Every style, generic first.
    pub fn all() -> Vec<StyleView> {
        Style::ALL.into_iter().map(StyleView::of).collect()
    }

    fn of(style: Style) -> Self {
        let (name, local) = style.sender();
        let subject = |kind| style.subject(kind, "{subject}");
        Self {
            name: style.as_str(),
            flavors: style
                .flavors()
                .map(|f| StyleFlavor {
                    flavor: f.as_str(),
                    evidence: Style::evidence(f),
                })
                .collect(),
            from: format!("{name} <{local}@{{host}}>"),
            subjects: StyleSubjects {
                failed: subject(Kind::Failed),
                expired: subject(Kind::Expired),
                delayed: subject(Kind::Delayed),
                delivered: subject(Kind::Delivered),
            },
            source: style.source(),
        }
    }
}
