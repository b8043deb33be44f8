//! What a limit is: `max` uses per sliding window, what one use counts, and the limits the
//! command line sets (`--limits ovh|gmail|exchange`, `--limit-account`, `--limit-ip`,
//! `--limit-recipient`, `--limit-recipient-domain`).

use std::time::Duration;

use crate::clock::parse_duration;

/// A rate limit: `max` uses per sliding window `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Uses allowed in one window.
    pub max: u64,
    /// The window length.
    pub per: Duration,
}

impl Window {
    /// Parses `200/1h` (max per window), as `--limit-account` and `--limit-ip` take it.
    pub fn parse(text: &str) -> Result<Window, String> {
        let (max, per) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: write max/window, e.g. 200/1h"))?;
        let max: u64 =
            max.trim().parse().ok().filter(|m| *m > 0).ok_or_else(|| {
                format!("{text:?}: the maximum must be a whole number of at least 1")
            })?;
        let per = parse_duration(per)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{text:?}: the window must be a duration such as 1h or 30m"))?;
        Ok(Window { max, per })
    }
}

/// What one use of a limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Count {
    /// One accepted message.
    #[default]
    Messages,
    /// One accepted recipient of an accepted message.
    Recipients,
}

/// Limits given on the command line; each one given replaces the scenario's limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Per account.
    pub per_account: Option<Window>,
    /// Per client IP.
    pub per_ip: Option<Window>,
    /// Per recipient mailbox (receiving).
    pub per_recipient: Option<Window>,
    /// Per recipient domain (receiving).
    pub per_recipient_domain: Option<Window>,
}

impl LimitOverrides {
    /// No limit.
    const NONE: LimitOverrides = LimitOverrides {
        per_account: None,
        per_ip: None,
        per_recipient: None,
        per_recipient_domain: None,
    };

    /// OVHcloud's sending limits: 200 mails per hour per account, 300 per hour per IP.
    pub const OVH: LimitOverrides = LimitOverrides {
        per_account: Some(Window {
            max: 200,
            per: Duration::from_secs(3600),
        }),
        per_ip: Some(Window {
            max: 300,
            per: Duration::from_secs(3600),
        }),
        ..Self::NONE
    };

    /// Gmail's receiving limit: 60 messages per minute per mailbox (Google Workspace Admin Help,
    /// "Gmail receiving limits in Google Workspace", support.google.com/a/answer/1366776: 60 per
    /// minute, 3,600 per hour, 86,400 per day, which the per-minute window implies).
    pub const GMAIL: LimitOverrides = LimitOverrides {
        per_recipient: Some(Window {
            max: 60,
            per: Duration::from_secs(60),
        }),
        ..Self::NONE
    };

    /// Exchange Online's receiving limit: 3,600 messages per hour per mailbox (Microsoft's
    /// "Exchange Online limits", receiving limits).
    pub const EXCHANGE: LimitOverrides = LimitOverrides {
        per_recipient: Some(Window {
            max: 3600,
            per: Duration::from_secs(3600),
        }),
        ..Self::NONE
    };

    /// Whether these set any limit.
    pub fn is_empty(&self) -> bool {
        *self == Self::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_windows() {
        assert_eq!(
            Window::parse("200/1h"),
            Ok(Window {
                max: 200,
                per: Duration::from_secs(3600)
            })
        );
        for bad in ["200", "0/1h", "x/1h", "5/0s", "5/forever"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }
}
