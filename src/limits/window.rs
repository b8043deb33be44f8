//! What a limit is: `max` uses per sliding window, what one use counts, and the limits the
//! command line sets (`--limits ovh`, `--limit-account`, `--limit-ip`).

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

/// Limits given on the command line; they replace a scenario's `per_account` / `per_ip`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// Per account.
    pub per_account: Option<Window>,
    /// Per client IP.
    pub per_ip: Option<Window>,
}

impl LimitOverrides {
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
    };

    /// Whether these set any limit.
    pub fn is_empty(&self) -> bool {
        self.per_account.is_none() && self.per_ip.is_none()
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
