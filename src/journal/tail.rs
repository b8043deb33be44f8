//! Following the journal live: a reader keeps a cursor (the id of the last event it read) and
//! reads the kept events after it, a batch at a time, at its own pace.
//!
//! The ring is the only queue: recording an event costs a live reader nothing (no channel, no
//! wake-up per event; a reader that waits is woken once by the next record), and a reader that
//! falls behind by more than the ring keeps is told how many events it missed. The event
//! stream of the API reads the journal so, however many pages are open.

use std::sync::Arc;

use super::events::{Event, EventLog};

/// One reader's place in the journal.
#[derive(Debug)]
pub struct Tail {
    log: Arc<EventLog>,
    /// The id of the last event read (or skipped): the next read starts after it.
    cursor: u64,
}

/// What one [`Tail::read`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Events after the cursor that were no longer kept (they fell out of the ring, or the
    /// journal was cleared, before this reader got to them).
    pub skipped: u64,
    /// Kept events looked at (wanted or not).
    pub scanned: usize,
}

impl Tail {
    /// A reader of the events after `since`, or with `None`, of those recorded from now on.
    pub fn new(log: Arc<EventLog>, since: Option<u64>) -> Self {
        let cursor = since.unwrap_or_else(|| log.recorded());
        Self { log, cursor }
    }

    /// The id of the last event read or skipped.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether events after the cursor have been recorded (kept or not).
    pub fn has_new(&self) -> bool {
        self.log.recorded() > self.cursor
    }

    /// Returns once events after the cursor have been recorded.
    pub async fn wait(&self) {
        self.log.recorded_after(self.cursor).await;
    }

    /// Looks at up to `max_scan` kept events after the cursor, oldest first, and appends those
    /// `wanted` keeps to `out`; the cursor moves past every event looked at or skipped. The
    /// journal's lock is held for the batch only, so that recording waits at most that long.
    pub fn read(
        &mut self,
        max_scan: usize,
        mut wanted: impl FnMut(&Event) -> bool,
        out: &mut Vec<Arc<Event>>,
    ) -> Read {
        let log = self.log.clone();
        log.with_kept(|kept| {
            if self.cursor >= log.recorded() {
                // Nothing new (or a cursor ahead of every id, which waits for them).
                return Read::default();
            }
            // The kept events' ids are consecutive (one per event recorded, in order), so the
            // cursor's place is found by subtraction.
            let first_kept = kept.front().map_or_else(|| log.recorded() + 1, |e| e.id);
            let mut read = Read::default();
            if self.cursor + 1 < first_kept {
                read.skipped = first_kept - self.cursor - 1;
                self.cursor = first_kept - 1;
            }
            let start = (self.cursor + 1 - first_kept) as usize;
            for event in kept.range(start.min(kept.len())..).take(max_scan) {
                debug_assert_eq!(event.id, self.cursor + 1);
                self.cursor = event.id;
                read.scanned += 1;
                if wanted(event) {
                    out.push(event.clone());
                }
            }
            read
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::EventKind;

    fn ids(events: &[Arc<Event>]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    fn record(log: &EventLog, session: u64, count: usize) {
        for _ in 0..count {
            log.record(0, session, [EventKind::TlsStarted]);
        }
    }

    #[test]
    fn reads_in_batches_what_it_wants_after_its_cursor() {
        let log = Arc::new(EventLog::new(100));
        record(&log, 1, 2);
        let mut from_start = Tail::new(log.clone(), Some(0));
        let mut from_now = Tail::new(log.clone(), None);
        assert!(from_start.has_new() && !from_now.has_new());
        record(&log, 2, 1);
        record(&log, 1, 2);
        let mut out = Vec::new();
        let read = from_start.read(3, |e| e.session == 1, &mut out);
        assert_eq!(
            read,
            Read {
                skipped: 0,
                scanned: 3
            }
        );
        assert_eq!(ids(&out), [1, 2]);
        // The unwanted event 3 was looked at: the next batch starts after it.
        assert_eq!(from_start.cursor(), 3);
        from_start.read(10, |e| e.session == 1, &mut out);
        assert_eq!(ids(&out), [1, 2, 4, 5]);
        assert!(!from_start.has_new());
        out.clear();
        from_now.read(10, |_| true, &mut out);
        assert_eq!(ids(&out), [3, 4, 5]);
    }

    #[test]
    fn a_reader_behind_the_ring_is_told_what_it_missed() {
        let log = Arc::new(EventLog::new(10));
        let mut tail = Tail::new(log.clone(), Some(0));
        record(&log, 1, 86);
        let mut out = Vec::new();
        assert_eq!(tail.read(4, |_| true, &mut out).skipped, 76);
        assert_eq!(ids(&out), [77, 78, 79, 80]);
        assert_eq!(
            tail.read(100, |_| true, &mut out),
            Read {
                skipped: 0,
                scanned: 6
            }
        );
        assert_eq!(*ids(&out).last().unwrap(), 86);
        // A cleared journal: what was recorded since the last read is gone; then on.
        record(&log, 1, 3);
        log.clear();
        record(&log, 1, 1);
        out.clear();
        assert_eq!(
            tail.read(100, |_| true, &mut out),
            Read {
                skipped: 3,
                scanned: 1
            }
        );
        assert_eq!(ids(&out), [90]);
    }

    #[test]
    fn a_cursor_ahead_of_every_id_waits_for_them() {
        let log = Arc::new(EventLog::new(10));
        record(&log, 1, 3);
        let mut out = Vec::new();
        for since in [3, 4, u64::MAX] {
            let mut tail = Tail::new(log.clone(), Some(since));
            assert!(!tail.has_new());
            assert_eq!(tail.read(10, |_| true, &mut out), Read::default());
            assert_eq!(tail.cursor(), since);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_journal_that_keeps_nothing_skips_everything() {
        let log = Arc::new(EventLog::new(0));
        let mut tail = Tail::new(log.clone(), None);
        record(&log, 1, 5);
        let mut out = Vec::new();
        assert_eq!(
            tail.read(100, |_| true, &mut out),
            Read {
                skipped: 5,
                scanned: 0
            }
        );
        assert!(out.is_empty() && !tail.has_new());
    }
}
