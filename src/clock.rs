//! The one clock every time-based behaviour reads (limit windows, greylisting, sequences).
//!
//! It is the real clock plus an offset that tests (or `POST /api/clock/advance`) can move forward,
//! so that "one hour later" takes milliseconds. Instances that share their state through a store
//! share this offset too (`limits::shared_clock`): moving the clock is then a request to the
//! store, which is why [`Clock::advance`] and [`Clock::reset`] answer an [`Eventual`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::eventual::Eventual;

/// The clock could not be moved: its offset lives in a shared store that did not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared clock is unavailable: {0}")]
pub struct ClockError(pub String);

/// One reading of a clock, as a store shared by several instances needs it: the time, and how
/// much of it is the offset those instances share. The store holds that offset too and may know
/// a newer value (another instance just moved it); it then reads the time as `ms -
/// shared_offset_ms + its offset`, so that every instance decides at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
    /// The part of `ms` that is the shared offset (0 for a clock of one instance).
    pub shared_offset_ms: u64,
}

impl From<u64> for Reading {
    /// A reading of a clock of one instance: nothing in it is shared.
    fn from(ms: u64) -> Self {
        Reading {
            ms,
            shared_offset_ms: 0,
        }
    }
}

/// A source of "now" that tests can move forward: the one clock a running failmail reads.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.now().as_millis() as u64
    }

    /// The time and its shared part, read at once, for a limit store.
    fn reading(&self) -> Reading {
        Reading::from(self.now_ms())
    }

    /// How far time was moved forward in all.
    fn offset(&self) -> Duration;

    /// Moves time forward (`POST /api/clock/advance`, `TestServer::advance_clock`); answers the
    /// new offset once every instance sharing the clock reads it.
    #[must_use = "the clock moves only when the answer is awaited"]
    fn advance(&self, by: Duration) -> Eventual<'_, Result<Duration, ClockError>>;

    /// Takes the offset back to zero (`POST /api/reset`).
    #[must_use = "the clock moves only when the answer is awaited"]
    fn reset(&self) -> Eventual<'_, Result<(), ClockError>>;
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

    /// Moves this clock forward at once (it is nobody else's).
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Duration {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        real + self.offset()
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    fn advance(&self, by: Duration) -> Eventual<'_, Result<Duration, ClockError>> {
        OffsetClock::advance(self, by);
        Eventual::now(Ok(self.offset()))
    }

    fn reset(&self) -> Eventual<'_, Result<(), ClockError>> {
        self.offset_ms.store(0, Ordering::SeqCst);
        Eventual::now(Ok(()))
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

    /// Moves this clock forward at once (it is nobody else's).
    pub fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.now_ms.load(Ordering::SeqCst))
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.now_ms.load(Ordering::SeqCst) - self.start_ms)
    }

    fn advance(&self, by: Duration) -> Eventual<'_, Result<Duration, ClockError>> {
        ManualClock::advance(self, by);
        Eventual::now(Ok(self.offset()))
    }

    fn reset(&self) -> Eventual<'_, Result<(), ClockError>> {
        self.now_ms.store(self.start_ms, Ordering::SeqCst);
        Eventual::now(Ok(()))
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

    #[test]
    fn reset_takes_the_offset_back_to_zero() {
        let manual = ManualClock::new(Duration::from_secs(100));
        let offset = OffsetClock::new();
        let clocks: [&dyn Clock; 2] = [&manual, &offset];
        for clock in clocks {
            let moved = clock.advance(Duration::from_secs(60)).ready().ok().unwrap();
            assert_eq!(moved.unwrap(), Duration::from_secs(60));
            assert_eq!(clock.reading().shared_offset_ms, 0, "nothing is shared");
            assert!(clock.reset().ready().ok().unwrap().is_ok());
            assert_eq!(clock.offset(), Duration::ZERO);
        }
        assert_eq!(manual.now_ms(), 100_000);
    }
}
