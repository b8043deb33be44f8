//! Later fates in scenarios: a recipient accepted now (250) and bounced, delivered, complained
//! about or auto-replied to later. Compiled from a rule's `bounce = { … }` / `deliver = { … }`
//! and from `+async` magic addresses; rendered per recipient into the
//! [`crate::smtp::policy::Later`] value the session keeps with the recipient.

use std::time::Duration;

use super::flavor::Flavor;
use super::rule::ReplySpec;
use crate::smtp::policy::{Fate, Later};
use crate::smtp::reply::Reply;

/// When a later fate comes when nothing says (`after`, and `+async` magic addresses).
pub const DEFAULT_AFTER: Duration = Duration::from_secs(60);
/// When a retried (4xx) `+async` bounce sends its "delayed" notice: Postfix's
/// `delay_warning_time` as commonly set (4h).
pub const MAGIC_DELAY_NOTICE: Duration = Duration::from_secs(4 * 3600);
/// When a retried (4xx) bounce gives up when nothing says: Postfix's `maximal_queue_lifetime`
/// default (5 days).
pub const DEFAULT_GIVE_UP: Duration = Duration::from_secs(5 * 86_400);

/// A compiled later fate.
#[derive(Debug, Clone)]
pub struct LaterSpec {
    /// What happens.
    pub fate: LaterFate,
    /// Whose style the notification is written in.
    pub flavor: Flavor,
}

/// The fates of [`LaterSpec`], with replies not yet rendered for a session.
#[derive(Debug, Clone)]
pub enum LaterFate {
    /// `bounce = { reply, after, delay_notice, give_up }`.
    Bounce {
        /// What the next hop says.
        reply: ReplySpec,
        /// When the first attempt meets the reply.
        after: Duration,
        /// When a "delayed" notice goes out, if at all.
        delay_notice: Option<Duration>,
        /// When a 4xx stops being retried.
        give_up: Duration,
    },
    /// `deliver = { after }`.
    Deliver {
        /// When it is delivered.
        after: Duration,
    },
    /// `complaint+async@…`: an abuse feedback report.
    Complaint,
    /// `ooto+async@…`: an out-of-office auto-reply.
    AutoReply,
}

impl LaterSpec {
    /// A `+async` magic address's bounce: after [`DEFAULT_AFTER`]; a 4xx reply is retried,
    /// with a "delayed" notice at 4 hours and the give-up at 5 days, as Postfix would.
    pub fn magic_bounce(reply: ReplySpec, flavor: Flavor) -> Self {
        let retried = (400..500).contains(&reply.code());
        Self {
            fate: LaterFate::Bounce {
                reply,
                after: DEFAULT_AFTER,
                delay_notice: retried.then_some(MAGIC_DELAY_NOTICE),
                give_up: DEFAULT_GIVE_UP,
            },
            flavor,
        }
    }

    /// The fate for one recipient, its reply rendered by `render` (with the session's values).
    pub fn render(&self, render: impl FnOnce(&ReplySpec) -> Reply) -> Later {
        let fate = match &self.fate {
            LaterFate::Bounce {
                reply,
                after,
                delay_notice,
                give_up,
            } => Fate::Bounced {
                reply: render(reply),
                catalog: reply.catalog_name(),
                after: *after,
                delay_notice: *delay_notice,
                give_up: *give_up,
            },
            LaterFate::Deliver { after } => Fate::Delivered { after: *after },
            LaterFate::Complaint => Fate::Complaint {
                after: DEFAULT_AFTER,
            },
            LaterFate::AutoReply => Fate::AutoReply {
                after: DEFAULT_AFTER,
            },
        };
        Later {
            fate,
            style: self.flavor.as_str(),
        }
    }
}
