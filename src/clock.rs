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
