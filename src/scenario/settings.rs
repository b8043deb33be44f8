//! The checked `[server]`, `[limits]` and `[greylisting]` sections of a scenario: the settings
//! that apply to every session, beside the rules.

use std::time::Duration;

use std::sync::Arc;

use super::domains::DomainFlavors;
use super::flavor::Flavor;
use super::pattern::PatternList;
use super::rule::{catalog_reply, ReplySpec, Voice};
use crate::limits::{Count, Window};
use crate::smtp::policy::Phase;
use crate::smtp::session::AuthPolicy;

/// `[limits]`, checked.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Per account.
    pub per_account: Option<Window>,
    /// Per client IP.
    pub per_ip: Option<Window>,
    /// Per recipient mailbox (receiving), checked at RCPT.
    pub per_recipient: Option<Window>,
    /// Per recipient domain (receiving), checked at RCPT.
    pub per_recipient_domain: Option<Window>,
    /// The refusal when a recipient's window is full (default `recipient_rate_limited`).
    pub recipient_reply: ReplySpec,
    /// The refusal when a recipient domain's window is full (default `rate_limited`).
    pub domain_reply: ReplySpec,
    /// Open connections per IP.
    pub connections_per_ip: Option<u32>,
    /// Messages per connection.
    pub messages_per_connection: Option<u32>,
    /// The refusal.
    pub reply: ReplySpec,
    /// What counts.
    pub count: Count,
    /// Where it is checked: mail or rcpt.
    pub check_at: Phase,
    /// IPv6 grouping prefix.
    pub ipv6_prefix: u8,
}

impl LimitSettings {
    /// No limit set yet; refusals in the flavor's (or the recipient domain's) wording; sending
    /// limits checked at MAIL.
    pub fn new(flavor: Flavor) -> Self {
        let voice = Voice::default_for(flavor);
        Self {
            per_account: None,
            per_ip: None,
            per_recipient: None,
            per_recipient_domain: None,
            recipient_reply: catalog_reply("recipient_rate_limited", voice),
            domain_reply: catalog_reply("rate_limited", voice),
            connections_per_ip: None,
            messages_per_connection: None,
            reply: catalog_reply("rate_limited", voice),
            count: Count::Messages,
            check_at: Phase::Mail,
            ipv6_prefix: 128,
        }
    }
}

/// `[greylisting]`'s `delay` when absent: postgrey's 300 s.
pub const DEFAULT_GREYLIST_DELAY: Duration = Duration::from_secs(300);

/// `[greylisting]`'s `retry_window` when absent: postgrey's 2 days.
pub const DEFAULT_GREYLIST_RETRY_WINDOW: Duration = Duration::from_secs(2 * 86_400);

/// `[greylisting]`, checked.
#[derive(Debug, Clone)]
pub struct GreylistSettings {
    /// Minimum wait before a retry passes.
    pub delay: Duration,
    /// How long a first attempt is remembered.
    pub retry_window: Duration,
    /// The refusal.
    pub reply: ReplySpec,
    /// Only these recipients (all when absent).
    pub rcpt: Option<PatternList>,
}

/// `[server]`, checked. `None` fields keep the command line's value.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    /// Host name.
    pub hostname: Option<String>,
    /// Greeting text.
    pub greeting: Option<String>,
    /// Default flavor.
    pub flavor: Flavor,
    /// Size limit.
    pub max_message_size: Option<u64>,
    /// Recipient limit.
    pub max_recipients: Option<usize>,
    /// AUTH policy.
    pub auth: Option<AuthPolicy>,
    /// Magic addresses on or off.
    pub magic_addresses: bool,
    /// STARTTLS on or off; `None` keeps the command line's choice.
    pub tls: Option<bool>,
    /// Whose voice each recipient domain gets: the built-in table and `flavor_by_domain`.
    pub domains: Arc<DomainFlavors>,
}
