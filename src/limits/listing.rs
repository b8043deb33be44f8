//! Bounded listings of the store's greylisting and sequence state, for the API and the web
//! page: at most a given number of entries, in a stated order, and whether any were left out.
//!
//! A store may hold millions of triplets during a load test; a listing keeps only the `limit`
//! first in its order while it walks them (`Top`), so that its memory is bounded by what it
//! returns, never by what the store holds.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

/// A greylisting triplet the store knows, and when it was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreyEntry {
    /// The triplet's key ([`super::keys::greylist_key`]).
    pub key: String,
    /// When it was first seen (ms, on the server's clock): its delay counts from there.
    pub first_seen_ms: u64,
}

/// A sequence the store counts, and how many attempts it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceEntry {
    /// The sequence's key ([`super::keys::sequence_key`]).
    pub key: String,
    /// Attempts counted so far: the next one gets the step at this index (the last repeats).
    pub attempts: u64,
}

/// At most the asked number of entries, in the listing's order, and whether others exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    /// The entries kept, first first.
    pub entries: Vec<T>,
    /// Whether the store holds more entries than were kept.
    pub truncated: bool,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            truncated: false,
        }
    }
}

/// An entry that can be listed: its key, and the order of a listing.
pub(crate) trait Ranked {
    /// The key, which names the entry once.
    fn key(&self) -> &str;
    /// `Less` when `self` comes before `other` in a listing.
    fn rank(&self, other: &Self) -> Ordering;
}

impl Ranked for GreyEntry {
    fn key(&self) -> &str {
        &self.key
    }

    /// The newest first (the triplets just refused, still waiting), then by key.
    fn rank(&self, other: &Self) -> Ordering {
        other
            .first_seen_ms
            .cmp(&self.first_seen_ms)
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl Ranked for SequenceEntry {
    fn key(&self) -> &str {
        &self.key
    }

    /// The most attempts first, then by key.
    fn rank(&self, other: &Self) -> Ordering {
        other
            .attempts
            .cmp(&self.attempts)
            .then_with(|| self.key.cmp(&other.key))
    }
}

/// An entry in the heap, ordered by its rank (the heap's top is the last one kept).
struct Kept<T>(T);

impl<T: Ranked> PartialEq for Kept<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ranked> Eq for Kept<T> {}

impl<T: Ranked> PartialOrd for Kept<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ranked> Ord for Kept<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.rank(&other.0)
    }
}

/// The first `limit` entries offered, in their order, in O(`limit`) memory. An entry offered
/// twice (Redis' SCAN may return a key twice) is kept and counted once.
pub(crate) struct Top<T> {
    limit: usize,
    heap: BinaryHeap<Kept<T>>,
    kept: HashSet<String>,
    /// The distinct keys offered, until there are more than `limit` (then `truncated`).
    seen: Option<HashSet<String>>,
    truncated: bool,
}

impl<T: Ranked> Top<T> {
    /// An empty selection of at most `limit` entries.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::with_capacity(limit.min(4096) + 1),
            kept: HashSet::new(),
            seen: Some(HashSet::new()),
            truncated: false,
        }
    }

    /// Offers one entry.
    pub(crate) fn offer(&mut self, entry: T) {
        if let Some(seen) = &mut self.seen {
            if !seen.contains(entry.key()) {
                seen.insert(entry.key().to_owned());
                if seen.len() > self.limit {
                    self.truncated = true;
                    self.seen = None;
                }
            }
        }
        if self.kept.contains(entry.key()) {
            return;
        }
        if self.heap.len() < self.limit {
            self.kept.insert(entry.key().to_owned());
            self.heap.push(Kept(entry));
            return;
        }
        let comes_first = self
            .heap
            .peek()
            .is_some_and(|last| entry.rank(&last.0) == Ordering::Less);
        if comes_first {
            if let Some(Kept(dropped)) = self.heap.pop() {
                self.kept.remove(dropped.key());
            }
            self.kept.insert(entry.key().to_owned());
            self.heap.push(Kept(entry));
        }
    }

    /// The entries kept, first first.
    pub(crate) fn finish(self) -> Listing<T> {
        Listing {
            entries: self
                .heap
                .into_sorted_vec()
                .into_iter()
                .map(|k| k.0)
                .collect(),
            truncated: self.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(key: &str, first_seen_ms: u64) -> GreyEntry {
        GreyEntry {
            key: key.to_owned(),
            first_seen_ms,
        }
    }

    fn keys<T: Ranked>(listing: &Listing<T>) -> Vec<&str> {
        listing.entries.iter().map(|e| e.key()).collect()
    }

    #[test]
    fn keeps_the_first_in_order_and_says_when_others_were_left_out() {
        let mut top = Top::new(3);
        for (i, at) in [5, 1, 9, 7, 3, 9].into_iter().enumerate() {
            top.offer(grey(&format!("k{i}"), at));
        }
        let listing = top.finish();
        assert_eq!(keys(&listing), ["k2", "k5", "k3"]);
        assert!(listing.truncated);

        let mut top = Top::new(3);
        top.offer(grey("a", 1));
        top.offer(grey("b", 2));
        let listing = top.finish();
        assert_eq!(keys(&listing), ["b", "a"]);
        assert!(!listing.truncated);
    }

    #[test]
    fn a_key_offered_twice_counts_once() {
        let mut top = Top::new(2);
        for entry in [grey("a", 1), grey("b", 2), grey("a", 1), grey("b", 2)] {
            top.offer(entry);
        }
        let listing = top.finish();
        assert_eq!(keys(&listing), ["b", "a"]);
        assert!(!listing.truncated, "two distinct keys fit in two");
    }

    #[test]
    fn sequences_list_the_most_attempts_first_and_a_zero_limit_lists_nothing() {
        let mut top = Top::new(2);
        for (key, attempts) in [("x", 1), ("y", 4), ("z", 2)] {
            top.offer(SequenceEntry {
                key: key.to_owned(),
                attempts,
            });
        }
        assert_eq!(keys(&top.finish()), ["y", "z"]);
        let mut none = Top::new(0);
        none.offer(grey("a", 1));
        let listing = none.finish();
        assert!(listing.entries.is_empty() && listing.truncated);
    }
}
