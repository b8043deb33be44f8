//! The one clock every time-based behaviour reads (limit windows, greylisting, sequences).
//!
//! It is the real clock plus an offset that tests (or `POST /api/clock/advance`) can move forward,
//! so that "one hour later" takes milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of "now".
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.now().as_millis() as u64
    }
}

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

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// How far time was moved forward in all.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Duration {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        real + self.offset()
    }
}

/// A clock that only moves when told to, for unit tests.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start` since the epoch.
    pub fn new(start: Duration) -> Self {
        Self {
            now_ms: AtomicU64::new(start.as_millis() as u64),
        }
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
