//! Sending rate limits, greylisting and sequence state, behind one store: the one home of
//! everything about limits (windows and what they count, the store's keys, the per-IP
//! connection counter, the stores themselves).
//!
//! Limits are exact sliding windows: a use is a timestamp; a key may hold at most `max` timestamps
//! younger than its window. A use is reserved atomically when a transaction is checked (so that
//! concurrent senders can never get more than `max` through) and released if the transaction ends
//! without an accepted message. The store is in memory (sharded, no global lock) or Redis (one
//! script per decision), so that several instances behind one address act as one server.

pub mod connections;
pub mod keys;
pub mod listing;
pub mod memory;
pub mod redis;
pub mod shared_clock;
pub mod window;

pub use listing::{GreyEntry, Listing, SequenceEntry};
pub use window::{Count, LimitOverrides, Window};

use std::time::Duration;

use crate::clock::Reading;
use crate::eventual::Eventual;

/// A store operation failed (Redis unreachable, script error): answered with 451 4.3.0.
#[derive(Debug, Clone, thiserror::Error)]
#[error("limit store unavailable: {0}")]
pub struct StoreError(pub String);

/// One limit to check: the key and its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    /// The key, e.g. `account:alice@example.com` or `ip:192.0.2.1`.
    pub key: String,
    /// Uses allowed per window.
    pub max: u64,
    /// The window.
    pub per: Duration,
}

/// What a reservation attempt gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// Every limit had room; one use was taken in each.
    Reserved,
    /// The limit at this index of the checks is full; nothing was taken.
    Full(usize),
}

/// What greylisting says about a triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greylist {
    /// Known for long enough: let it through.
    Pass,
    /// New, or retried too early: refuse temporarily.
    Wait,
}

/// The current use of one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// The key.
    pub key: String,
    /// Uses within the last window.
    pub used: u64,
    /// When the oldest of them was taken (ms, on the server's clock): it leaves the window,
    /// and so frees one use, one window later.
    pub oldest_ms: u64,
}

/// Where limit, greylist and sequence state lives.
pub trait LimitStore: Send + Sync + std::fmt::Debug + 'static {
    /// Atomically: if every check has room at `now`, take one use in each, tagged `token`. (A
    /// store that shares the clock's offset reads `now` with its own offset: see [`Reading`].)
    fn reserve<'a>(
        &'a self,
        checks: &'a [LimitCheck],
        now: Reading,
        token: u64,
    ) -> Eventual<'a, Result<Reserve, StoreError>>;

    /// Gives back the uses tagged `token` (the transaction ended without an accepted message).
    fn release<'a>(
        &'a self,
        keys: &'a [String],
        token: u64,
    ) -> Eventual<'a, Result<(), StoreError>>;

    /// Greylisting: first sight of `key` at `now` starts its delay; a retry after `delay`
    /// (and within `retry_window` of the first sight) passes.
    fn greylist<'a>(
        &'a self,
        key: &'a str,
        now: Reading,
        delay: Duration,
        retry_window: Duration,
    ) -> Eventual<'a, Result<Greylist, StoreError>>;

    /// Counts one attempt of a sequence key; returns how many came before.
    fn bump<'a>(&'a self, key: &'a str) -> Eventual<'a, Result<u64, StoreError>>;

    /// The use of every limit key starting with `prefix`, within `window` of `now`.
    fn usage<'a>(
        &'a self,
        now: Reading,
        prefix: &'a str,
        window: Duration,
    ) -> Eventual<'a, Result<Vec<Usage>, StoreError>>;

    /// The greylisting triplets first seen at `since_ms` or later, the newest first, at most
    /// `limit` of them (for the API: what is waiting, and what passes now).
    fn greylist_entries<'a>(
        &'a self,
        since_ms: u64,
        limit: usize,
    ) -> Eventual<'a, Result<Listing<GreyEntry>, StoreError>>;

    /// The sequences counted, the most attempts first, at most `limit` of them.
    fn sequences<'a>(
        &'a self,
        limit: usize,
    ) -> Eventual<'a, Result<Listing<SequenceEntry>, StoreError>>;

    /// Forgets everything (limits, greylist, sequences) but the shared clock's offset.
    fn reset<'a>(&'a self) -> Eventual<'a, Result<(), StoreError>>;

    /// Whether every answer is ready at once (the memory store), so callers can skip boxing.
    fn is_immediate(&self) -> bool;
}
