//! What a session is told about the server ([`SessionConfig`]), and the message it hands over
//! to be stored ([`Message`]).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::smtp::queue_id::AcceptedReply;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 §4: AUTH lines may be up to 12288 octets; nothing longer is ever buffered.
pub const MAX_AUTH_LINE: usize = 12288;
/// Default of [`SessionConfig::max_errors`]: Postfix's `smtpd_hard_error_limit`.
pub const DEFAULT_MAX_ERRORS: usize = 20;
/// Default of [`SessionConfig::max_junk_commands`]: Postfix's `smtpd_junk_command_limit`.
pub const DEFAULT_MAX_JUNK_COMMANDS: usize = 100;
/// When AUTH is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Offer and accept AUTH before STARTTLS (handy in tests; real providers say no).
    pub allow_plaintext: bool,
    /// Refuse MAIL until the client authenticated (530 5.7.0).
    pub required: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            allow_plaintext: true,
            required: false,
        }
    }
}

/// Everything a session needs to know about the server; shared by all sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The name in the greeting and EHLO reply.
    pub hostname: String,
    /// Text after `220 <hostname> ` in the greeting.
    pub banner: String,
    /// Largest accepted message in octets (advertised as SIZE).
    pub max_message_size: u64,
    /// Most recipients per transaction; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Whether STARTTLS is offered: what the command line and the scenario's `[server] tls`
    /// want, made what the server can give when it installs the configuration.
    pub tls_available: bool,
    /// When AUTH is offered and whether it is required.
    pub auth: AuthPolicy,
    /// The 250 after an accepted message, in the flavor's style.
    pub accepted: AcceptedReply,
    /// Syntax errors (unrecognized commands, bad arguments, overlong lines, undecodable AUTH
    /// responses) a client may make before the session answers `421 4.7.0 <hostname> Error: too
    /// many errors` and closes, as Postfix's `smtpd_hard_error_limit` does. An accepted message
    /// starts the count over; refusals by the policy and bad sequence (503) do not count. 0 means
    /// no limit.
    pub max_errors: usize,
    /// NOOP, RSET, VRFY, EXPN and HELP commands a client may send without starting a transaction
    /// (a MAIL answered 250) before each further one also counts as an error, as Postfix's
    /// `smtpd_junk_command_limit` does: a client that only keeps its connection alive meets
    /// [`SessionConfig::max_errors`] and is closed with `421 4.7.0`. 0 means no limit.
    pub max_junk_commands: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            hostname: "mx.failmail.test".to_owned(),
            banner: "ESMTP failmail".to_owned(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            tls_available: true,
            auth: AuthPolicy::default(),
            accepted: AcceptedReply::default(),
            max_errors: DEFAULT_MAX_ERRORS,
            max_junk_commands: DEFAULT_MAX_JUNK_COMMANDS,
        }
    }
}

/// A message the server accepted, with its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The session that carried it.
    pub session_id: u64,
    /// The queue id given in the 250 reply.
    pub queue_id: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The EHLO/HELO argument.
    pub helo: Option<String>,
    /// The AUTH identity, if any.
    pub auth_user: Option<String>,
    /// Whether it came under TLS.
    pub tls: bool,
    /// The MAIL FROM address (empty for `<>`).
    pub mail_from: String,
    /// The accepted recipients.
    pub recipients: Vec<String>,
    /// The message exactly as received (dot-unstuffed, without the final `.` line).
    pub data: Bytes,
    /// What the client asked of DSNs and what becomes of each recipient later; `None` when
    /// nothing was asked nor decided.
    pub dsn: Option<Box<super::DsnEnvelope>>,
}
