//! The pending notifications, ordered by due time on the clock, bounded in number and in bytes.
//!
//! A `BTreeMap` keyed by (due time, id): the earliest is the first key, everything due by a
//! time is one `split_off` away (so a clock jumped five days ahead fires every due notice, in
//! order, at once), and the listing for the API is already sorted.

use std::collections::BTreeMap;

use super::notice::Notice;

/// Notifications waiting for their time.
#[derive(Debug)]
pub struct Schedule {
    pending: BTreeMap<(u64, u64), Notice>,
    bytes: usize,
    max_notices: usize,
    max_bytes: usize,
}

/// The schedule has no room: the message is refused with 451 4.3.0 rather than accepted with a
/// notification that would never come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many pending bounces ({pending}; --max-pending-bounces)")]
pub struct Full {
    /// How many are pending.
    pub pending: usize,
}

impl Schedule {
    /// An empty schedule holding at most `max_notices` notifications and `max_bytes` bytes of
    /// them (their originals included).
    pub fn new(max_notices: usize, max_bytes: usize) -> Self {
        Self {
            pending: BTreeMap::new(),
            bytes: 0,
            max_notices,
            max_bytes,
        }
    }

    /// What one notice costs against the byte bound: itself and the original it keeps (counted
    /// for each of its notices, so the bound is never under-estimated).
    pub fn cost(notice: &Notice) -> usize {
        notice.footprint() + notice.original.content.len() + notice.original.mail_from.len()
    }

    /// Whether `count` more notices of `bytes` in all fit, beside `reserved` already promised.
    pub fn room(&self, count: usize, bytes: usize, reserved: (usize, usize)) -> Result<(), Full> {
        let notices = self.pending.len() + reserved.0 + count;
        let total = self.bytes + reserved.1 + bytes;
        if notices > self.max_notices || total > self.max_bytes {
            return Err(Full {
                pending: self.pending.len(),
            });
        }
        Ok(())
    }

    /// Adds a notice (its id set); room was checked before.
    pub fn insert(&mut self, notice: Notice) {
        self.bytes += Self::cost(&notice);
        self.pending.insert((notice.due_ms, notice.id), notice);
    }

    /// Takes up to `limit` notices due at `now_ms` or before, earliest first.
    pub fn take_due(&mut self, now_ms: u64, limit: usize) -> Vec<Notice> {
        let mut due = Vec::new();
        while due.len() < limit {
            match self.pending.first_key_value() {
                Some((&(at, _), _)) if at <= now_ms => {
                    let (_, notice) = self.pending.pop_first().expect("just seen");
                    self.bytes -= Self::cost(&notice);
                    due.push(notice);
                }
                _ => break,
            }
        }
        due
    }

    /// Forgets every pending notice.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.bytes = 0;
    }

    /// When the earliest notice is due.
    pub fn next_due(&self) -> Option<u64> {
        self.pending.first_key_value().map(|(&(at, _), _)| at)
    }

    /// The pending notices, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = &Notice> {
        self.pending.values()
    }

    /// How many are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The bytes they hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
