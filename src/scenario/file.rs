//! The scenario file format (TOML), as read from disk, with positions for error messages.
//!
//! These types mirror the file one to one and refuse unknown keys; [`super::compile`] turns them
//! into the fast matcher and checks everything the types cannot.

use serde::Deserialize;
use toml::Spanned;

/// A whole scenario file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioFile {
    /// `[server]`: what the server says about itself.
    pub server: Option<ServerSection>,
    /// `[limits]`: sending rate limits.
    pub limits: Option<LimitsSection>,
    /// `[greylisting]`: the built-in greylisting behaviour.
    pub greylisting: Option<GreylistSection>,
    /// `[[rule]]`: rules tried in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleFile>>,
}

/// `[server]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// Host name in the greeting and EHLO reply.
    pub hostname: Option<String>,
    /// Text after `220 <hostname> ` in the greeting.
    pub greeting: Option<String>,
    /// Whose wording replies use by default.
    pub flavor: Option<Spanned<String>>,
    /// Largest accepted message (octets).
    pub max_message_size: Option<u64>,
    /// Most recipients per message.
    pub max_recipients: Option<usize>,
    /// `optional` (default), `required`, `tls_only` or `required_tls`.
    pub auth: Option<Spanned<String>>,
    /// Whether `user_unknown@…`-style addresses answer with their failure (default true).
    pub magic_addresses: Option<bool>,
    /// Offer STARTTLS (the command line's certificate, else the development one); absent: as the
    /// command line says (`--tls`, `--tls-cert`), which is off by default.
    pub tls: Option<bool>,
    /// Recipient domain (or glob) → flavor; extends the built-in table.
    pub flavor_by_domain: Option<Spanned<toml::Table>>,
    /// `false`: `flavor_by_domain` replaces the built-in table instead of extending it.
    pub flavor_by_domain_builtin: Option<bool>,
}

/// `[limits]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    /// Messages per account (AUTH identity, else MAIL FROM) per window.
    pub per_account: Option<Spanned<LimitFile>>,
    /// Messages per client IP per window.
    pub per_ip: Option<Spanned<LimitFile>>,
    /// Messages each recipient mailbox receives per window (checked at RCPT).
    pub per_recipient: Option<Spanned<LimitFile>>,
    /// Messages each recipient domain receives per window (checked at RCPT).
    pub per_recipient_domain: Option<Spanned<LimitFile>>,
    /// Open connections per client IP.
    pub connections_per_ip: Option<u32>,
    /// Messages per connection.
    pub messages_per_connection: Option<u32>,
    /// What a refusal says: a catalog name or an inline reply (default `rate_limited`).
    pub reply: Option<Spanned<toml::Value>>,
    /// `message` (default) or `recipient`: what one use counts.
    pub count: Option<Spanned<String>>,
    /// `mail` (default) or `rcpt`: where the limit is checked.
    pub check_at: Option<Spanned<String>>,
    /// IPv6 clients are grouped by this prefix length (default 128: each address alone).
    pub ipv6_prefix: Option<u8>,
}

/// `{ max = 200, per = "1h" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitFile {
    /// How many in one window.
    pub max: u64,
    /// The window, as a duration (`1h`).
    pub per: String,
}

/// `[greylisting]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct GreylistSection {
    /// Turn it on (default true when the section is present).
    pub enabled: Option<bool>,
    /// How long a new triplet must wait before a retry passes (postgrey: 300 s).
    pub delay: Option<Spanned<String>>,
    /// How long a triplet waits for its retry before it is forgotten (postgrey: 2 days).
    pub retry_window: Option<Spanned<String>>,
    /// The reply while greylisted (default the catalog's `greylisted`).
    pub reply: Option<Spanned<toml::Value>>,
    /// Only these recipients are greylisted (default all).
    pub rcpt: Option<Spanned<toml::Value>>,
}

/// One `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    /// A label for logs and events.
    pub name: Option<String>,
    /// The phase the rule acts at; inferred from the reply and the matchers when absent.
    pub at: Option<Spanned<String>>,
    /// Recipient pattern(s).
    pub rcpt: Option<Spanned<toml::Value>>,
    /// Sender pattern(s).
    pub mail_from: Option<Spanned<toml::Value>>,
    /// AUTH identity pattern(s).
    pub auth_user: Option<Spanned<toml::Value>>,
    /// EHLO/HELO argument pattern(s).
    pub helo: Option<Spanned<toml::Value>>,
    /// Client IP block(s), CIDR.
    pub client_ip: Option<Spanned<toml::Value>>,
    /// A catalog name or `{ code, status, text }`.
    pub reply: Option<Spanned<toml::Value>>,
    /// Whose wording this rule's catalog replies use.
    pub flavor: Option<Spanned<String>>,
    /// Per (client IP, sender, recipient) attempt: catalog names, inline replies or actions.
    pub sequence: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    /// The chance the rule acts when it matches (seeded by `--seed`).
    pub probability: Option<Spanned<f64>>,
    /// Wait before answering.
    pub delay: Option<Spanned<String>>,
    /// `accept`, `disconnect`, `hang` or `abort`.
    pub then: Option<Spanned<String>>,
    /// The rule acts this many times, then falls through.
    pub times: Option<Spanned<u64>>,
    /// Accept now, bounce later: `{ reply, after, delay_notice, give_up }`.
    pub bounce: Option<Spanned<BounceFile>>,
    /// Accept now, delivered later: `{ after }` (a success DSN when the client asks for one).
    pub deliver: Option<Spanned<DeliverFile>>,
}

/// `bounce = { reply = "user_unknown", after = "10m", delay_notice = "4h", give_up = "5d" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BounceFile {
    /// What the next hop says: a catalog name or an inline reply, 4xx or 5xx.
    pub reply: Spanned<toml::Value>,
    /// When the first attempt meets the reply (default 1m).
    pub after: Option<Spanned<String>>,
    /// When a "delayed" notice goes out.
    pub delay_notice: Option<Spanned<String>>,
    /// When a 4xx stops being retried (default 5d).
    pub give_up: Option<Spanned<String>>,
}

/// `deliver = { after = "1m" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliverFile {
    /// When it is delivered (default 1m).
    pub after: Option<Spanned<String>>,
}
