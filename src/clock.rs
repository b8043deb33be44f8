//! The one clock every time-based behaviour reads (limit windows, greylisting, sequences).
//!
//! It is the real clock plus an offset that tests (or `POST /api/clock/advance`) can move forward,
//! so that "one hour later" takes milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of "now" that tests can move forward: the one clock a running failmail reads.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.now().as_millis() as u64
    }

    /// Moves time forward (`POST /api/clock/advance`, `TestServer::advance_clock`).
    fn advance(&self, by: Duration);

    /// How far time was moved forward in all.
    fn offset(&self) -> Duration;
}

/// The clock every part of one running failmail shares.
pub type SharedClock = std::sync::Arc<dyn Clock>;

/// The real clock, moved forward by whatever was advanced.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicU64,
}

impl OffsetClock {
    /// The real clock with no offset.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Duration {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        real + self.offset()
    }

    fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// A clock that only moves when told to, so that tests are deterministic.
#[derive(Debug)]
pub struct ManualClock {
    start_ms: u64,
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start` since the epoch.
    pub fn new(start: Duration) -> Self {
        let start_ms = start.as_millis() as u64;
        Self {
            start_ms,
            now_ms: AtomicU64::new(start_ms),
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms.load(Ordering::SeqCst))
    }

    fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.now_ms.load(Ordering::SeqCst) - self.start_ms)
    }
}

/// Parses durations as written in scenario files and on the command line (`500ms`, `20s`, `5m`,
/// `1h`, `2d`): `<number><unit>` with unit ms, s, m, h or d (a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return None,
    };
    (seconds.is_finite() && (0.0..1e12).contains(&seconds))
        .then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Some(Duration::from_secs(20)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in ["", "h", "1y", "-1s", "1 hour", "1e400s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn offset_clock_moves_forward_by_what_was_advanced() {
        let clock = OffsetClock::new();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.offset(), Duration::from_secs(3600));
        assert!(clock.now() >= before + Duration::from_secs(3600));
    }

    #[test]
    fn manual_clock_stands_still() {
        let clock = ManualClock::new(Duration::from_secs(100));
        assert_eq!(clock.now_ms(), 100_000);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), 100_005);
    }
}
